"""A store's life cycle under attack: its lock file, forks, killed opens, full disks, foreign dirs.

- the lock file planted as a link (to a user's file, dangling), a FIFO or a directory: every
  write open and ``repair`` refuse it, naming it, and write nothing anywhere;
- ``os.fork()``: the child cannot write through the parent's handle (it would race the parent's
  cached shapes under the parent's lock), so nothing the parent or child committed is lost;
- a directory that is not a store (a user's home, a zarr store, loose ``.npy`` files), also one
  holding a lock file left by a killed open: never wiped by mode "w", refused by every mode,
  ``verify``, ``repair`` and the CLI with one line saying what it is;
- a lock file removed or replaced under a writer: no second writer gets in;
- a file system without locks: said so, not "another writer holds the store";
- a full disk: the store still opens for writing (to delete something), errors name the file,
  and no descriptor leaks (the same process opens it again).
"""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import _hostile
import _mounts
import numpy as np
import pytest

import npydir
import npydir.store.lock as lock_mod
from npydir.errors import AlreadyExistsError, FormatError, LockError
from npydir.store.lock import StoreLock

pytestmark = pytest.mark.hostile

DEAD_PID = 2**22 + 4321  # above Linux's pid_max default: never a live process


def _make_store(path: Path) -> Path:
    with npydir.open(path, "w") as root:
        root["x"] = np.arange(10, dtype="i8")
        root.attrs["a"] = 1
        root["x"].attrs["unit"] = "V"
    return path


def _intact(path: Path) -> None:
    root = npydir.open(path)
    assert root["x"][:].tolist() == list(range(10))
    assert dict(root.attrs) == {"a": 1} and dict(root["x"].attrs) == {"unit": "V"}


def _write_op(op: str, store: Path) -> None:
    if op == "repair":
        npydir.repair(store)
    else:
        npydir.open(store, op).close()


# ----------------------------------------------------------------------------- the lock file


@pytest.mark.parametrize("plant", ["link", "dangling-link", "fifo", "directory"])
@pytest.mark.parametrize("op", ["a", "r+", "w", "repair"])
def test_lock_file_that_is_not_a_regular_file_is_never_written_through(tmp_path, plant, op):
    store = _make_store(tmp_path / "s.npy")
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    outside = tmp_path / "created-outside"
    lock = store / ".npydir.lock"
    lock.unlink()
    if plant == "link":
        os.symlink(victim, lock)
    elif plant == "dangling-link":
        os.symlink(outside, lock)
    elif plant == "fifo":
        os.mkfifo(lock)
    else:
        lock.mkdir()
    what = {"link": "symbolic link", "dangling-link": "symbolic link", "fifo": "FIFO",
            "directory": "directory"}[plant]
    with pytest.raises(FormatError, match=rf"\.npydir\.lock: .*is a {what}") as exc:
        _write_op(op, store)
    assert "\n" not in str(exc.value) and str(store) in str(exc.value)
    assert victim.read_text() == "precious" and not outside.exists()
    _intact(store)  # mode "w" emptied nothing
    _hostile.record("store lifecycle", f"lock file planted as a {plant}: refused", "ok")


# ----------------------------------------------------------------------------- fork


def test_forked_child_cannot_write_through_the_parents_handle(tmp_path):
    store = tmp_path / "s.npy"
    root = npydir.open(store, "w")
    x = root.create_dataset("x", shape=(0,), dtype="i8")
    x.append([0])
    root.attrs["parent"] = 1
    ops = {
        "append": lambda: x.append([100, 101, 102]),
        "write rows": lambda: x.__setitem__(0, 99),
        "resize": lambda: x.resize(50),
        "root attrs": lambda: root.attrs.__setitem__("child", 1),
        "array attrs": lambda: x.attrs.update(child=1),
        "delete attr": lambda: root.attrs.__delitem__("parent"),
        "create array": lambda: root.create_dataset("c", data=[1]),
        "create group": lambda: root.create_group("cg"),
        "setitem": lambda: root.__setitem__("s", np.zeros(3)),
        "move": lambda: root.move("x", "moved"),
        "delete": lambda: root.__delitem__("x"),
    }
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: try every writer, report what happened, never return to pytest
        try:
            os.close(rfd)
            out = {}
            for name, op in ops.items():
                try:
                    op()
                    out[name] = "ok"
                except BaseException as exc:  # noqa: BLE001 - reported to the parent
                    out[name] = f"{type(exc).__name__}: {exc}"
            os.write(wfd, json.dumps(out).encode())
        finally:
            os._exit(0)
    os.close(wfd)
    chunks = []
    while chunk := os.read(rfd, 65536):
        chunks.append(chunk)
    os.close(rfd)
    os.waitpid(pid, 0)
    results = json.loads(b"".join(chunks))
    x.append([1])  # the parent's next append: its cached shape must still be the file's
    root.close()
    for name, outcome in results.items():
        assert outcome.startswith("LockError:") and "forked child" in outcome, (name, outcome)
        assert f"pid {pid}" in outcome and str(store) in outcome
    again = npydir.open(store)
    assert again["x"][:].tolist() == [0, 1]
    assert sorted(again) == ["x"] and dict(again.attrs) == {"parent": 1}
    assert dict(again["x"].attrs) == {}
    assert npydir.verify(store).ok
    _hostile.record("store lifecycle", "writes refused in a forked child", len(results))


def test_child_opens_its_own_handle_after_the_parent_closed(tmp_path):
    store = _make_store(tmp_path / "s.npy")
    root = npydir.open(store, "a")
    root.close()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            with npydir.open(store, "a") as mine:
                mine["x"].append([10])
            code = 0
        finally:
            os._exit(code)
    assert os.waitpid(pid, 0)[1] == 0
    assert npydir.open(store)["x"][:].tolist() == list(range(11))


# ----------------------------------------------------------------------------- foreign dirs


def _user_dir(path: Path) -> Path:
    path.mkdir()
    (path / "thesis.tex").write_text("precious")
    (path / "data").mkdir()
    np.save(path / "data" / "recording.npy", np.arange(5))
    return path


def test_killed_open_never_makes_a_user_directory_wipeable(tmp_path):
    home = _user_dir(tmp_path / "home")
    # what a write open of earlier versions left when killed right after taking the lock
    (home / ".npydir.lock").write_text(
        json.dumps({"pid": DEAD_PID, "host": socket.gethostname(), "time": 0})
    )
    before = _hostile.snapshot(home)
    with pytest.raises(AlreadyExistsError, match=r"refusing to empty .*not an npydir store"):
        npydir.open(home, "w")
    for mode in ("a", "r+", "r"):
        with pytest.raises(FormatError, match="not an npydir store"):
            npydir.open(home, mode)
    assert _hostile.diff_snapshots(before, _hostile.snapshot(home)) == []
    assert (home / "thesis.tex").read_text() == "precious"
    # and this version's open refuses the directory before writing anything: no lock file
    os.unlink(home / ".npydir.lock")
    before = _hostile.snapshot(home)
    with pytest.raises(FormatError, match="not an npydir store"):
        npydir.open(home, "a")
    assert _hostile.diff_snapshots(before, _hostile.snapshot(home)) == []


def test_killed_first_open_of_a_new_store_still_opens(tmp_path):
    """A first open SIGKILLed between taking the lock and writing the marker: the directory
    holds only the lock file, which is the empty store it was about to be."""
    store = tmp_path / "new.npy"
    code = (
        "import os, signal, npydir, npydir.store.group as g\n"
        "g._write_marker = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)\n"
        f"npydir.open({str(store)!r}, 'a')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=_hostile.child_env(), timeout=60)
    assert proc.returncode == -9
    assert sorted(os.listdir(store)) == [".npydir.lock"]
    assert len(npydir.open(store)) == 0 and npydir.verify(store).ok
    with npydir.open(store, "w") as root:
        root["x"] = np.arange(3)
    assert (store / ".npydir.json").is_file() and npydir.open(store)["x"].shape == (3,)


def test_w_rechecks_under_the_lock(tmp_path, monkeypatch):
    """A file appearing in the directory between open's first look and its lock is kept."""
    d = tmp_path / "d"
    d.mkdir()
    real_acquire = StoreLock.acquire

    def acquire(self):
        real_acquire(self)
        (d / "arrived.txt").write_text("precious")

    monkeypatch.setattr(StoreLock, "acquire", acquire)
    with pytest.raises(AlreadyExistsError, match="not an npydir store"):
        npydir.open(d, "w")
    assert (d / "arrived.txt").read_text() == "precious"
    monkeypatch.undo()
    lock = StoreLock(d)
    lock.acquire()  # the refused open released its lock
    lock.release()


def _zarr_store(path: Path) -> Path:
    zarr = pytest.importorskip("zarr")
    g = zarr.open_group(str(path), mode="w")
    a = g.create_array("x", shape=(100, 4), chunks=(10, 4), dtype="f4")
    a[:] = 1.0
    g.create_group("sub")
    return path


def _loose_npy(path: Path) -> Path:
    path.mkdir()
    np.save(path / "a.npy", np.arange(3))
    (path / "g").mkdir()
    np.save(path / "g" / "b.npy", np.arange(4))
    return path


def _recordings(path: Path) -> Path:
    path.mkdir()
    for n in ("rec1.wav", "rec2.wav", "notes.txt"):
        (path / n).write_bytes(b"RIFF....")
    (path / "old").mkdir()
    return path


FOREIGN = {
    "zarr": (_zarr_store, "a zarr store"),
    "loose-npy": (_loose_npy, "restore the marker"),
    "recordings": (_recordings, "a directory of 4 entries"),
}


@pytest.mark.parametrize("kind", sorted(FOREIGN))
def test_a_directory_that_is_not_a_store_is_refused_everywhere(tmp_path, kind):
    make, says = FOREIGN[kind]
    d = make(tmp_path / "d")
    before = _hostile.snapshot(d)
    refusals = 0
    for mode in ("r", "r+", "a", "w"):
        err = AlreadyExistsError if mode == "w" else FormatError
        with pytest.raises(err, match="not an npydir store") as exc:
            npydir.open(d, mode)
        assert says in str(exc.value) and str(d) in str(exc.value) and "\n" not in str(exc.value)
        refusals += 1
    for api in (npydir.verify, npydir.repair):
        with pytest.raises(FormatError, match=says):
            api(d)
        refusals += 1
    cli = [sys.executable, "-m", "npydir"]
    for command in ("info", "tree", "verify", "repair"):
        proc = subprocess.run([*cli, command, str(d)], capture_output=True, text=True,
                              env=_hostile.child_env(), timeout=120)
        assert proc.returncode == 1, (command, proc.stdout, proc.stderr)
        err_lines = proc.stderr.strip().splitlines()
        assert len(err_lines) == 1 and says in err_lines[0] and str(d) in err_lines[0], proc.stderr
        assert "0 groups" not in proc.stdout and "OK" not in proc.stdout
        refusals += 1
    assert _hostile.diff_snapshots(before, _hostile.snapshot(d)) == []
    _hostile.record("store lifecycle", f"{kind} directory: refusals (API + CLI)", refusals)


def test_what_opens_as_a_store(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert len(npydir.open(empty)) == 0 and npydir.verify(empty).ok
    das = tmp_path / "das.npy"  # as DAS's npy_dir writes it: attrs.npy, split/name.npy, no marker
    (das / "train").mkdir(parents=True)
    np.save(das / "attrs.npy", {"samplerate_x_Hz": 10_000}, allow_pickle=True)
    np.save(das / "train" / "x.npy", np.zeros((8, 2), "f4"))
    root = npydir.open(das)
    assert root["train/x"].shape == (8, 2) and root.attrs["samplerate_x_Hz"] == 10_000
    assert npydir.verify(das).ok
    with pytest.raises(AlreadyExistsError, match="DAS npy_dir store"):
        npydir.open(das, "w")  # no marker: not wiped
    with npydir.open(das, "a") as root:  # a write open marks it as a store
        root["train/x"].append(np.ones((1, 2), "f4"))
    assert (das / ".npydir.json").is_file()
    with npydir.open(das, "w") as root:  # now it is npydir's to empty
        assert len(root) == 0


# ----------------------------------------------------------------------------- lock races


def test_removed_lock_file_admits_no_second_writer(tmp_path):
    store = _make_store(tmp_path / "s.npy")
    first = npydir.open(store, "a")
    os.unlink(store / ".npydir.lock")
    with pytest.raises(LockError, match="locked for writing"):
        npydir.open(store, "a")
    with pytest.raises(LockError):
        npydir.repair(store)
    code = f"import npydir; npydir.open({str(store)!r}, 'r+')"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=_hostile.child_env(), timeout=60)
    assert proc.returncode == 1 and "LockError" in proc.stderr, proc.stderr
    first["x"].append([10])
    first.close()
    with npydir.open(store, "a") as again:  # free again once the first writer closed
        assert again["x"].shape == (11,)


def test_lock_file_replaced_while_being_locked_is_locked_again(tmp_path, monkeypatch):
    store = _make_store(tmp_path / "s.npy")
    lock_path = store / ".npydir.lock"
    real_flock = lock_mod.fcntl.flock
    swapped = []

    def flock(fd, op):
        # the lock file (a regular file, not the directory), the first time: another process
        # replaces it between our open and our flock
        if not swapped and os.path.isfile(f"/proc/self/fd/{fd}"):
            tmp = lock_path.with_name(".replacement")
            tmp.write_text("")
            os.replace(tmp, lock_path)
            swapped.append(fd)
        return real_flock(fd, op)

    monkeypatch.setattr(lock_mod.fcntl, "flock", flock)
    lock = StoreLock(store)
    lock.acquire()
    try:
        assert swapped
        held, at_path = os.fstat(lock._fd), os.lstat(lock_path)
        assert (held.st_dev, held.st_ino) == (at_path.st_dev, at_path.st_ino)
        assert json.loads(lock_path.read_text())["pid"] == os.getpid()
    finally:
        lock.release()


def test_file_system_without_locks_is_named(tmp_path, monkeypatch):
    store = _make_store(tmp_path / "s.npy")

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(lock_mod.fcntl, "flock", no_locks)
    with pytest.raises(LockError, match="does not support file locks") as exc:
        npydir.open(store, "a")
    assert "ENOLCK" in str(exc.value) and ".npydir.lock" in str(exc.value)
    assert "locked for writing by" not in str(exc.value)
    monkeypatch.undo()
    with npydir.open(store, "a"):  # nothing leaked: the same process opens it
        pass


# ----------------------------------------------------------------------------- full disk


def _fill(mnt: Path) -> Path:
    """Write a file until the file system is full (not one more byte fits); return it."""
    filler = mnt / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        for size in (1 << 16, 1 << 12, 1 << 9, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


@pytest.mark.parametrize("lock_file", ["kept", "removed"])
def test_full_store_opens_to_delete_something(tmp_path, lock_file):
    with _mounts.tmpfs(tmp_path / "mnt", "1m") as mnt:
        store = mnt / "s.npy"
        with npydir.open(store, "w") as root:
            root["x"] = np.arange(20_000, dtype="i8")  # 160 kB to free
            root["keep"] = np.arange(10)
            root.attrs["a"] = 1
        if lock_file == "removed":
            os.unlink(store / ".npydir.lock")
        _fill(mnt)
        for _ in range(3):  # the same process again and again: no descriptor left locked
            with npydir.open(store, "a") as root:
                assert root["keep"][:].tolist() == list(range(10))
        with npydir.open(store, "a") as root:
            with pytest.raises(OSError) as exc:
                root["y"] = np.zeros(50_000)
            assert exc.value.errno == errno.ENOSPC and "y.npy" in str(exc.value)
            del root["x"]  # what the user came for
            root["y"] = np.zeros(1000)  # and there is room again
        root = npydir.open(store)
        assert sorted(root) == ["keep", "y"] and dict(root.attrs) == {"a": 1}
        assert npydir.verify(store).ok
        _hostile.record("full disk", f"store opened full ({lock_file} lock file)", "ok")


def test_new_store_on_a_full_disk_names_the_file_and_leaks_nothing(tmp_path):
    with _mounts.tmpfs(tmp_path / "mnt", "1m") as mnt:
        das = mnt / "das.npy"  # a DAS store cannot get its marker on a full disk, yet opens
        (das / "train").mkdir(parents=True)
        np.save(das / "attrs.npy", {"k": 1}, allow_pickle=True)
        np.save(das / "train" / "x.npy", np.zeros(4000))
        filler = _fill(mnt)
        with npydir.open(das, "a") as root:
            del root["train/x"]
        assert not (das / ".npydir.json").exists()
        _fill(mnt)
        new = mnt / "new.npy"
        with pytest.raises(OSError) as exc:
            npydir.open(new, "a")
        assert exc.value.errno == errno.ENOSPC and ".npydir.json" in str(exc.value)
        filler.unlink()
        with npydir.open(new, "a") as root:  # not blocked by anything the failed open left
            root["x"] = np.arange(3)
        assert npydir.open(new)["x"].shape == (3,)
