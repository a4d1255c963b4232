"""Readers in other processes while a writer appends and updates attributes; the writer lock.

- Readers (separate processes, fresh and long-lived handles) racing one writer for
  ``NPYDIR_CONCURRENCY_SECONDS`` only ever see consistent shapes (never beyond the bytes on
  disk, every row complete) and complete attributes (valid JSON, the writer's keys, one
  generation, never ahead of the data).
- A second writer -- another process, or the same process -- gets ``LockError`` naming the
  holder; ``mode="w"`` does not empty a store someone else is writing; ``repair`` waits its
  turn too; readers are never blocked.
- The lock of a SIGKILLed writer is detected as stale and taken over, with a warning naming the
  dead pid.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time

import _hostile
import numpy as np
import pytest
from _rw_children import COLS

import npydir
from npydir.errors import LockError

pytestmark = [pytest.mark.hostile, pytest.mark.timeout(120)]

CHILD = str(_hostile.HERE / "_rw_children.py")
READERS = 2


def test_readers_see_consistent_shapes_and_attrs(tmp_path):
    store = tmp_path / "s.npy"
    with npydir.open(store, "w") as root:
        root.create_dataset("x", shape=(0, COLS), dtype="i8")
    secs = _hostile.CONCURRENCY_SECONDS
    env = _hostile.child_env()
    procs = [
        subprocess.Popen(
            [sys.executable, CHILD, "writer", str(store), str(secs)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
    ]
    procs += [
        subprocess.Popen(
            [sys.executable, CHILD, "reader", str(store), str(secs)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        for _ in range(READERS)
    ]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=secs + 90)
        assert p.returncode == 0, err.decode()[-3000:]
        outs.append(json.loads(out.decode().strip().splitlines()[-1]))
    writer, readers = outs[0], outs[1:]
    problems = [p for r in readers for p in r["problems"]]
    assert not problems, "readers saw inconsistent states:\n" + "\n".join(problems[:20])
    rounds = sum(r["rounds"] for r in readers)
    _hostile.record("concurrency", "writer appends + attrs updates", writer["appends"])
    _hostile.record("concurrency", f"reader rounds ({READERS} processes, {secs:g} s)", rounds)
    assert writer["appends"] > 10 and rounds > 10, (writer, readers)
    assert npydir.verify(store).ok


def _holder(store):
    code = (
        f"import npydir, time; r = npydir.open({str(store)!r}, 'a'); r['held'] = [1]; "
        "print('ready', flush=True); time.sleep(120)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, env=_hostile.child_env()
    )
    assert proc.stdout.readline() == b"ready\n"
    return proc


def test_second_writer_is_stopped_by_the_lock(tmp_path):
    store = tmp_path / "s.npy"
    with npydir.open(store, "w") as root:
        root["x"] = np.arange(10)
    proc = _holder(store)
    try:
        for mode in ("a", "r+", "w"):
            with pytest.raises(LockError, match=f"locked for writing by pid {proc.pid}") as info:
                npydir.open(store, mode)
            assert str(store) in str(info.value)
        with pytest.raises(LockError, match=str(proc.pid)):
            npydir.repair(store)
        # mode "w" refused before it emptied anything; readers are never blocked
        with npydir.open(store, "r") as root:
            np.testing.assert_array_equal(root["x"][:], np.arange(10))
            assert sorted(root) == ["held", "x"]
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


def test_second_writer_in_the_same_process(tmp_path):
    store = tmp_path / "s.npy"
    with npydir.open(store, "w"), pytest.raises(LockError, match="this process"):
        npydir.open(store, "a")
    with npydir.open(store, "a"):  # released on close
        pass


def test_stale_lock_of_a_killed_writer_is_detected(tmp_path, caplog):
    store = tmp_path / "s.npy"
    with npydir.open(store, "w") as root:
        root["x"] = np.arange(10)
    proc = _holder(store)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    lock = store / ".npydir.lock"
    assert (
        json.loads(lock.read_text())["pid"] == proc.pid
    )  # the dead writer's record is still there
    with caplog.at_level(logging.WARNING, logger="npydir"), npydir.open(store, "a") as root:
        root["after"] = [2]
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    msgs = [r.getMessage() for r in caplog.records]
    assert any("stale" in m and str(proc.pid) in m and "dead" in m for m in msgs), msgs
    assert lock.read_text() == ""  # a clean close leaves no holder behind
    assert npydir.verify(store).ok and npydir.repair(store).ok
    with npydir.open(store) as root:
        assert sorted(root) == ["after", "held", "x"]


RACER = """
import sys, time, npydir, numpy as np
from npydir.errors import AlreadyExistsError, LockError
store, i, t0, mode = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
while time.time() < t0:
    pass
tries = 0
while True:
    try:
        with npydir.open(store, mode) as r:
            r[f"a{i}"] = np.full(1000, i)
            r.attrs[f"w{i}"] = i
        print("ok", tries)
        break
    except LockError:
        tries += 1
        time.sleep(0.005)
    except AlreadyExistsError:
        print("exists", tries)
        break
"""


@pytest.mark.parametrize("mode", ["a", "w-"])
def test_writers_racing_to_create_a_store(tmp_path, mode):
    """Six processes create the same new store at the same instant.  With mode "a" the lock
    serialises them (LockError, retry) and every one's array and attribute end up stored; with
    "w-" exactly one creates it and the others get AlreadyExistsError."""
    store = tmp_path / "s.npy"
    script = tmp_path / "racer.py"
    script.write_text(RACER)
    start = time.time() + 2.0  # all six are running (imports done) before the start
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(store), str(i), str(start), mode],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_hostile.child_env(),
        )
        for i in range(6)
    ]
    outcomes = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err.decode()[-2000:]
        outcomes.append(out.decode().split()[0])
    with npydir.open(store) as root:
        arrays, attrs = sorted(root), sorted(root.attrs)
        for name in arrays:
            np.testing.assert_array_equal(root[name][:], np.full(1000, int(name[1:])))
    assert npydir.verify(store).ok
    if mode == "a":
        assert outcomes == ["ok"] * 6
        assert arrays == [f"a{i}" for i in range(6)] and attrs == [f"w{i}" for i in range(6)]
    else:
        assert sorted(outcomes) == ["exists"] * 5 + ["ok"]
        assert len(arrays) == 1 and len(attrs) == 1
    _hostile.record(
        "concurrency",
        f"6 writers racing to create a store (mode {mode!r})",
        ", ".join(sorted(outcomes)),
    )
