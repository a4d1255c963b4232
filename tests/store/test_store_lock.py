"""The writer lock: one writer, any number of readers, stale locks taken over."""

from __future__ import annotations

import json
import os
import socket

import numpy as np
import pytest

import npydir
from npydir.errors import LockError
from npydir.store.lock import StoreLock


def test_second_writer_is_refused_naming_the_holder(tmp_path):
    store = tmp_path / "s.npy"
    w = npydir.open(store, "w")
    w["x"] = np.arange(3)
    info = json.loads((store / ".npydir.lock").read_text())
    assert info["pid"] == os.getpid() and info["host"] == socket.gethostname()
    for mode in ("r+", "a", "w"):
        with pytest.raises(LockError, match=rf"{store}.*pid {os.getpid()}") as exc:
            npydir.open(store, mode)
        assert "this process" in str(exc.value)
    assert npydir.open(store, "r")["x"].shape == (3,)  # readers take no lock
    assert list(npydir.open(store)) == ["x"]  # the refused 'w' wiped nothing
    w.close()
    assert (store / ".npydir.lock").read_text() == ""  # released and emptied
    with npydir.open(store, "r+") as again:
        again["x"][0] = 1


def test_readers_do_not_touch_the_store(tmp_path):
    store = tmp_path / "s.npy"
    npydir.open(store, "w").close()
    before = sorted(os.listdir(store))
    with npydir.open(store, "r") as r1, npydir.open(store, "r") as r2:
        assert r1 and r2
    assert sorted(os.listdir(store)) == before


def test_lock_object_is_reentrant_and_releases(tmp_path):
    lock = StoreLock(tmp_path)
    lock.acquire()
    lock.acquire()  # no-op when held
    assert lock.held
    other = StoreLock(tmp_path)
    with pytest.raises(LockError):
        other.acquire()
    lock.release()
    lock.release()
    other.acquire()
    assert other.held
    other.release()


def test_stale_lock_file_without_holder_is_taken_over(tmp_path, caplog):
    store = tmp_path / "s.npy"
    npydir.open(store, "w").close()
    (store / ".npydir.lock").write_text(
        json.dumps({"pid": 2**22 + 12345, "host": socket.gethostname()})
    )
    with caplog.at_level("WARNING", logger="npydir"):
        with npydir.open(store, "a"):
            pass
    assert any("stale writer lock" in r.message and "is dead" in r.message for r in caplog.records)


def test_forked_child_does_not_keep_the_lock(tmp_path):
    store = tmp_path / "s.npy"
    w = npydir.open(store, "w")
    r, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: outlives the parent's close, like a DataLoader worker
        os.close(r)
        os.write(wfd, b"x")
        import time

        time.sleep(2)
        os._exit(0)
    try:
        os.close(wfd)
        assert os.read(r, 1) == b"x"
        w.close()
        with npydir.open(store, "a") as again:  # not blocked by the child's inherited descriptor
            assert again
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        os.close(r)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_write_mode_on_a_read_only_directory(tmp_path):
    store = tmp_path / "s.npy"
    npydir.open(store, "w").close()
    os.unlink(store / ".npydir.lock")
    os.chmod(store, 0o555)
    try:
        with pytest.raises(npydir.errors.ReadOnlyError, match="mode 'r'"):
            npydir.open(store, "r+")
        assert npydir.open(store, "r") is not None
    finally:
        os.chmod(store, 0o755)


def test_lock_on_read_only_filesystem_is_a_read_only_error(tmp_path, monkeypatch):
    import errno as errno_mod

    import npydir.store.lock as lock_mod

    def erofs(*args, **kwargs):
        raise OSError(errno_mod.EROFS, "Read-only file system")

    monkeypatch.setattr(lock_mod.os, "open", erofs)
    with pytest.raises(npydir.errors.ReadOnlyError, match="Read-only file system"):
        StoreLock(tmp_path).acquire()
