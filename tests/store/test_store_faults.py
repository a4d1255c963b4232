"""Fault injection: killed writers, full disks, truncated files; verify/repair behave."""

from __future__ import annotations

import errno
import logging
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import npydir
from npydir import npyfile
from npydir.errors import FormatError, IntegrityError

COLS = 512  # 4 KiB rows: appends take long enough to be killed in the middle

WRITER = textwrap.dedent(
    """
    import random, sys
    import numpy as np
    import npydir
    root = npydir.open(sys.argv[1], "a")
    x = root.require_dataset("x", (0, %d), "i8") if "x" not in root else root["x"]
    rng = random.Random(int(sys.argv[2]))
    print("ready", flush=True)
    while True:
        n = len(x)
        k = rng.randint(1, 64)
        rows = np.repeat(np.arange(n, n + k, dtype="i8")[:, None], x.shape[1], axis=1)
        x.append(rows)
    """
    % COLS
)


def _check_consistent(store):
    with npydir.open(store, "r") as r:
        x = r["x"][:]
        assert x.shape[1] == COLS
        # every row present is exactly what was written: row i holds i everywhere
        np.testing.assert_array_equal(x, np.repeat(np.arange(len(x))[:, None], COLS, axis=1))
        return len(x)


@pytest.mark.timeout(120)
def test_killed_appender_leaves_a_consistent_store(tmp_path):
    store = tmp_path / "s.npy"
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    rng = random.Random(1234)
    lengths, torn = [], 0
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    for trial in range(10):
        proc = subprocess.Popen(
            [sys.executable, str(script), str(store), str(trial)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        line = proc.stdout.readline()
        assert line == b"ready\n", proc.stderr.read().decode()
        time.sleep(rng.uniform(0.01, 0.25))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        stderr = proc.stderr.read().decode()
        proc.stdout.close()
        proc.stderr.close()
        if trial % 2:  # the previous writer was killed and nobody touched the lock since
            assert "taking over the stale writer lock" in stderr, stderr
        n = _check_consistent(store)
        assert n >= (lengths[-1] if lengths else 0)  # nothing committed was ever lost
        lengths.append(n)
        report = npydir.verify(store)
        x_file = store / "x.npy"
        with open(x_file, "rb") as fp:
            expected = npyfile.read_header(fp).expected_size
        size = os.path.getsize(x_file)
        if size > expected:
            torn += 1
            assert [p.kind for p in report.problems] == ["torn-append"]
            assert report.problems[0].expected == expected and report.problems[0].found == size
            assert not report.ok and not report
        else:
            assert report.ok, str(report)
        if trial % 2:  # repair half the time; the next writer copes with torn bytes either way
            fixed = npydir.repair(store)
            assert fixed.ok and len(fixed.repaired) == (size > expected)
            assert npydir.verify(store).ok
            assert _check_consistent(store) == n
    assert lengths[-1] > 0
    print(f"lengths {lengths}, torn appends seen: {torn}/10")


def test_stale_lock_of_a_killed_writer_is_taken_over(tmp_path, caplog):
    store = tmp_path / "s.npy"
    npydir.open(store, "w").close()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    code = (
        f"import npydir, time; r = npydir.open({str(store)!r}, 'a'); "
        "print('ready', flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, env=env)
    assert proc.stdout.readline() == b"ready\n"
    with pytest.raises(npydir.errors.LockError, match=f"locked for writing by pid {proc.pid}"):
        npydir.open(store, "a")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    with caplog.at_level(logging.WARNING, logger="npydir"):
        with npydir.open(store, "a") as r:
            r["x"] = np.zeros(1)
    assert any(
        "stale writer lock" in r.message and str(proc.pid) in r.message for r in caplog.records
    )


def test_torn_append_is_reported_and_trimmed(tmp_path):
    store = tmp_path / "s.npy"
    with npydir.open(store, "w") as r:
        x = r.create_dataset("g/x", data=np.arange(10, dtype="f4"))
    with open(x.filename, "ab") as f:  # the rows of an append whose header never came
        f.write(np.arange(3, dtype="f4").tobytes())
    assert npydir.open(store)["g/x"].shape == (10,)  # the old shape is valid
    rep = npydir.verify(store)
    assert rep.kinds() == ["torn-append"] and "12 bytes past the data" in str(rep)
    fixed = npydir.repair(store)
    assert [p.kind for p in fixed.repaired] == ["torn-append"] and fixed.ok
    assert os.path.getsize(x.filename) == npyfile.read_header_path(x.filename).expected_size
    np.testing.assert_array_equal(np.load(x.filename), np.arange(10))


def test_truncated_array_is_a_clear_error_and_not_repaired(tmp_path):
    store = tmp_path / "s.npy"
    with npydir.open(store, "w") as r:
        x = r.create_dataset("x", data=np.arange(100, dtype="i8"))
    with open(x.filename, "r+b") as f:
        f.truncate(os.path.getsize(x.filename) - 80)
    size = os.path.getsize(x.filename)
    r = npydir.open(store)
    assert r["x"].shape == (100,)  # the header is fine ...
    with pytest.raises(FormatError, match=r"x.npy: file is truncated.*found \d+ bytes"):
        r["x"][0]  # ... the data is not: a clear error, never a read past the mapping
    rep = npydir.verify(store)
    assert rep.kinds() == ["truncated"] and rep.problems[0].found == size
    with pytest.raises(IntegrityError, match="truncated") as info:
        npydir.repair(store)
    assert info.value.report.problems[0].kind == "truncated"
    assert os.path.getsize(x.filename) == size  # user data untouched


def test_verify_reports_every_kind(tmp_path):
    store = tmp_path / "s.npy"
    with npydir.open(store, "w") as r:
        r["ok"] = np.zeros(3)
        r["g/y"] = np.zeros(3)
        r["g"].attrs["a"] = 1
    (store / "bad.npy").write_bytes(b"garbage")
    (store / "g" / "attrs.json").write_text('{"a": NaN}')
    (store / ".x.npy.1234.npydir-tmp").write_bytes(b"half")
    np.save(store / "obj.npy", np.array([None]), allow_pickle=True)
    rep = npydir.verify(store)
    assert sorted(rep.kinds()) == ["bad-attrs", "bad-header", "bad-header", "stray-temp"]
    assert "bad.npy" in str(rep) and "NaN" in str(rep)
    with pytest.raises(IntegrityError) as info:
        npydir.repair(store)
    assert [p.kind for p in info.value.report.repaired] == ["stray-temp"]
    assert not (store / ".x.npy.1234.npydir-tmp").exists() and (store / "bad.npy").exists()


def test_repair_refuses_while_a_writer_is_open(tmp_path):
    store = tmp_path / "s.npy"
    with npydir.open(store, "w"):
        with pytest.raises(npydir.errors.LockError):
            npydir.repair(store)
    assert npydir.repair(store).ok


def _enospc_after(n_bytes, real):
    """A pwrite/write that writes ``n_bytes`` then fails like a full disk."""
    budget = [n_bytes]

    def fake(fd, data, *args):
        if budget[0] <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        data = bytes(data)[: budget[0]]
        budget[0] -= len(data)
        return real(fd, data, *args)

    return fake


def test_full_disk_during_append(tmp_path, monkeypatch):
    store = tmp_path / "s.npy"
    with npydir.open(store, "w") as r:
        x = r.create_dataset("x", data=np.arange(8, dtype="i8").reshape(4, 2))
        monkeypatch.setattr(npyfile.os, "pwrite", _enospc_after(24, os.pwrite))
        with pytest.raises(OSError, match="No space"):
            x.append(np.ones((10, 2), "i8"))
        monkeypatch.undo()
        assert x.shape == (4, 2)
    np.testing.assert_array_equal(npydir.open(store)["x"][:], np.arange(8).reshape(4, 2))
    assert npydir.verify(store).kinds() == ["torn-append"]
    assert npydir.repair(store).ok and npydir.verify(store).ok


def test_full_disk_during_atomic_write(tmp_path, monkeypatch):
    store = tmp_path / "s.npy"
    with npydir.open(store, "w") as r:
        r["x"] = np.arange(3)
        r.attrs["a"] = 1

        real_write = npyfile.atomic_write

        def failing(path, write, sync=True, **kwargs):
            def half(fp):
                fp.write(b"partial")
                raise OSError(errno.ENOSPC, "No space left on device")

            return real_write(path, half, sync=sync)

        monkeypatch.setattr(npyfile, "atomic_write", failing)
        import npydir.store.attrs as attrs_mod

        monkeypatch.setattr(attrs_mod, "atomic_write", failing)
        with pytest.raises(OSError, match="No space"):
            r["y"] = np.arange(1000)
        with pytest.raises(OSError, match="No space"):
            r.attrs["a"] = 2
        monkeypatch.undo()
        assert list(r) == ["x"] and r.attrs["a"] == 1
    assert sorted(os.listdir(store)) == [".npydir.json", ".npydir.lock", "attrs.json", "x.npy"]
    assert npydir.verify(store).ok


def test_readers_racing_an_appender_see_consistent_prefixes(tmp_path):
    store = tmp_path / "s.npy"
    with npydir.open(store, "w") as r:
        r.create_dataset("x", shape=(0, 8), dtype="i8")
    code = textwrap.dedent(
        f"""
        import numpy as np, npydir, time
        x = npydir.open({str(store)!r}, "a")["x"]
        print("ready", flush=True)
        t0 = time.time()
        while time.time() - t0 < 1.5:
            n = len(x)
            k = 1 + n % 7
            x.append(np.repeat(np.arange(n, n + k, dtype="i8")[:, None], 8, axis=1), sync=False)
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, env=env)
    try:
        assert proc.stdout.readline() == b"ready\n"
        seen = []
        while proc.poll() is None:
            with npydir.open(store, "r") as r:  # a fresh reader each time: new header, new map
                x = r["x"][:]
            np.testing.assert_array_equal(x, np.repeat(np.arange(len(x))[:, None], 8, axis=1))
            seen.append(len(x))
        assert proc.wait() == 0
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    assert len(seen) > 10 and seen == sorted(seen) and seen[-1] > 0


@pytest.mark.parametrize("crash_at", ["after-link", "after-rename"])
def test_interrupted_move_of_an_array_loses_nothing(tmp_path, monkeypatch, crash_at):
    import npydir.store.group as group_mod

    store = tmp_path / "s.npy"
    with npydir.open(store, "w") as r:
        r["a/x"] = np.arange(3)
        r["a/x"].attrs["unit"] = "V"
        real_rename, real_unlink = os.rename, os.unlink

        def crash(*args, **kwargs):
            raise KeyboardInterrupt("killed")

        # the move: link attrs, rename array, unlink old attrs name
        monkeypatch.setattr(group_mod.os, "rename" if crash_at == "after-link" else "unlink", crash)
        with pytest.raises(KeyboardInterrupt):
            r.move("a/x", "b/y")
        monkeypatch.setattr(group_mod.os, "rename", real_rename)
        monkeypatch.setattr(group_mod.os, "unlink", real_unlink)
    rep = npydir.verify(store)
    assert rep.kinds() == ["duplicate-attrs"]  # a second name of the same attrs, nothing lost
    where = "a/x" if crash_at == "after-link" else "b/y"
    with npydir.open(store, "r") as r:
        assert r[where].attrs["unit"] == "V" and r[where][:].tolist() == [0, 1, 2]
    assert npydir.repair(store).ok and npydir.verify(store).ok
    with npydir.open(store, "a") as r:
        if crash_at == "after-link":
            r.move("a/x", "b/y")  # repeating the move completes it
        assert r["b/y"].attrs["unit"] == "V" and "a/x" not in r


def test_orphan_attrs_are_reported_not_removed(tmp_path):
    store = tmp_path / "s.npy"
    npydir.open(store, "w").close()
    (store / "gone.attrs.json").write_text('{"a": 1}')
    assert npydir.verify(store).kinds() == ["orphan-attrs"]
    with pytest.raises(IntegrityError, match="orphan-attrs"):
        npydir.repair(store)
    assert (store / "gone.attrs.json").exists()
