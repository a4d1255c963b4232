"""Attribute reads while another process rewrites them: each read is one written version.

A writer process (``_attrs_race.py``) rewrites a group's and an array's attributes as fast as
it can, adding a key and deleting the previous generation's; two reader processes read them
every way a mapping can be read (``dict(attrs)``, ``{**attrs}``, ``items()``, ``values()``,
``keys()``, iteration, ``len``, ``in``, ``get``, ``asdict()``) through long-lived and fresh
handles for ``NPYDIR_CONCURRENCY_SECONDS``.  Every result must be exactly one state the writer
left -- never values of two generations, never a ``KeyError`` for a key that was listed.
"""

from __future__ import annotations

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
