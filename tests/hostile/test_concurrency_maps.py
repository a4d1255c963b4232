"""Readers holding memory maps while a writer shrinks, rewrites, deletes and moves arrays.

A reader's view of an array is a memory map of its file.  If a writer truncated that file in
place, the next read of a page past the new end would raise SIGBUS and kill the reader (no
exception can catch it).  The writer here resizes arrays down and up, appends, deletes and
recreates, moves, and finally re-creates the whole store with mode "w", while a reader process
keeps 50 views alive and reads every page of them in a loop.  The reader must survive, and the
only exceptions it may see are npydir's own (an array deleted or replaced between listing and
opening it).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest

import npydir

import _hostile

pytestmark = [pytest.mark.hostile, pytest.mark.timeout(120)]


def test_live_maps_survive_every_writer_operation(tmp_path):
    store = tmp_path / "s.npy"
    rows = 64 * 1024  # 8 pages per column block: shrinking really drops pages
    with npydir.open(store, "w") as root:
        for name in ("a", "b", "c"):
            root[name] = np.ones((rows, 4), "f4")
    secs = max(2.0, _hostile.CONCURRENCY_SECONDS)
    reader = subprocess.Popen(
        [
            sys.executable,
            "-X",
            "faulthandler",
            str(_hostile.HERE / "_maps_reader.py"),
            str(store),
            str(secs),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_hostile.child_env(),
    )
    ops = 0
    deadline = time.monotonic() + secs - 0.5
    rng = np.random.default_rng(3)
    while time.monotonic() < deadline:
        with npydir.open(store, "a") as root:
            a = root["a"]
            a.resize(int(rng.integers(1, rows)))  # shrink under the reader's maps
            a.resize(rows)  # and grow back
            root["b"].append(np.ones((100, 4), "f4"))
            root["b"].resize(rows // 2)
            del root["c"]
            root["c"] = np.ones((rows, 4), "f4")
            root.move("c", "d")
            root.move("d", "c")
            ops += 8
        if ops % 80 == 0:
            with npydir.open(store, "w") as root:  # empty and rebuild the store
                for name in ("a", "b", "c"):
                    root[name] = np.ones((rows, 4), "f4")
            ops += 1
    out, err = reader.communicate(timeout=60)
    assert reader.returncode == 0, (
        f"the reader died (status {reader.returncode}) while the writer changed files under its "
        f"memory maps:\n{err.decode()[-3000:]}"
    )
    res = json.loads(out.decode().strip().splitlines()[-1])
    undocumented = {k: v for k, v in res["errors"].items() if not k.startswith("npydir.errors.")}
    assert not undocumented, f"reader saw undocumented exceptions: {undocumented}"
    _hostile.record("concurrency/maps", "writer operations under live maps", ops)
    _hostile.record(
        "concurrency/maps",
        "reader rounds / views read / npydir errors",
        f"{res['rounds']} / {res['views']} / {dict(res['errors'])}",
    )
    assert res["views"] > 10 and ops > 8
