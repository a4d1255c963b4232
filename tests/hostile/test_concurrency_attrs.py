"""Attribute reads while another process rewrites them: each read is one written version.

A writer process (``_attrs_race.py``) rewrites a group's and an array's attributes as fast as
it can, adding a key and deleting the previous generation's; two reader processes read them
every way a mapping can be read (``dict(attrs)``, ``{**attrs}``, ``items()``, ``values()``,
``keys()``, iteration, ``len``, ``in``, ``get``, ``asdict()``) through long-lived and fresh
handles for ``NPYDIR_CONCURRENCY_SECONDS``.  Every result must be exactly one state the writer
left -- never values of two generations, never a ``KeyError`` for a key that was listed.
"""

from __future__ import annotations

import threading
import time

import _attrs_race
import _hostile
import numpy as np
import pytest

import npydir

pytestmark = [pytest.mark.hostile, pytest.mark.timeout(120)]

CHILD = str(_hostile.HERE / "_attrs_race.py")
READERS = 2


def test_attribute_reads_are_never_torn(tmp_path):
    store = tmp_path / "s.npy"
    with npydir.open(store, "w") as root:
        root["x"] = np.zeros(3)
        for attrs in (root.attrs, root["x"].attrs):
            attrs.update({"gen": 0, "a": 0, "b": [0, 0], "k0": 0})
    secs = _hostile.CONCURRENCY_SECONDS
    outs = _hostile.run_json_parallel(
        [[CHILD, role, str(store), str(secs)] for role in ["writer"] + ["reader"] * READERS],
        timeout=secs + 90,
    )
    writer, readers = outs[0], outs[1:]
    problems = [p for r in readers for p in r["problems"]]
    reads = sum(r["reads"] for r in readers)
    _hostile.record("concurrency", f"attrs writes racing {READERS} readers ({secs:g} s)",
                    writer["writes"])
    _hostile.record("concurrency", "attrs reads checked (11 ways each)", reads)
    assert not problems, f"{len(problems)} torn reads, e.g.:\n" + "\n".join(problems[:10])
    assert writer["writes"] > 20 and reads > 100, (writer, readers)


def test_threads_sharing_one_attrs_handle_read_whole_versions(tmp_path):
    """The same in one process: reader threads share one ``.attrs`` object (its cache and the
    snapshot ``dict(attrs)`` pins are per object) while a thread writes through another."""
    store = tmp_path / "s.npy"
    stop = threading.Event()
    problems: list[str] = []
    counts = {"reads": 0, "writes": 0}
    with npydir.open(store, "w", sync=False) as root:
        root.attrs.update({"gen": 0, "a": 0, "b": [0, 0], "k0": 0})
        shared = npydir.open(store, "r").attrs

        def write():
            g = 0
            while not stop.is_set():
                g += 1
                root.attrs.update({"gen": g, "a": g, "b": [g, g], f"k{g}": g})
                del root.attrs[f"k{g - 1}"]
                counts["writes"] += 2

        def read():
            while not stop.is_set() and len(problems) < 20:
                try:
                    got = _attrs_race._reads(shared)
                except Exception as exc:  # noqa: BLE001 - a KeyError here is the bug
                    problems.append(f"{type(exc).__name__}: {exc}")
                    continue
                counts["reads"] += len(got)
                for way in ("dict", "unpack", "items", "asdict", "values"):
                    bad = _attrs_race.consistent(got[way])
                    if bad:
                        problems.append(f"{way}: {bad}")

        threads = [threading.Thread(target=write)] + [threading.Thread(target=read)
                                                      for _ in range(3)]
        for t in threads:
            t.start()
        time.sleep(min(_hostile.CONCURRENCY_SECONDS, 2.0))
        stop.set()
        for t in threads:
            t.join(30)
    _hostile.record("concurrency", "attrs reads checked (3 threads, one handle)", counts["reads"])
    assert not problems, "\n".join(problems[:10])
    assert counts["writes"] > 20 and counts["reads"] > 100, counts
