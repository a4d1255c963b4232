"""A conversion killed (SIGKILL) or interrupted (Ctrl-C) resumes where it stopped.

The converting child reads slowly (a sleep per block) so the parent can kill it mid-way once
the journal shows some finished blocks; running the same conversion again must skip those
blocks (checked against the journal) and give a result byte-identical to an uninterrupted one.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

import npydir
from npydir.errors import StoreNotFoundError

from _convert_fixtures import assert_same_tree, tree_of

zarr = pytest.importorskip("zarr")
h5py = pytest.importorskip("h5py")
from _zarr import create_array, formats, needs_zarr3, open_group, zarr_format  # noqa: E402

ROWS, CHUNK = 6_000, 100  # 60 chunks, 60 blocks with threads=1
BUDGET = 4 * CHUNK * 4 * 4  # 2 * (threads + 1) chunks of 4 float32 channels: 1 chunk per block

# child scripts' helper: a source class whose reads sleep (and skip the decode-into path)
SLOW_READS = """
import time

def slow(cls, seconds=0.03):
    real = cls.read
    def read(self, *args):
        time.sleep(seconds)
        return real(self, *args)
    cls.read = read
    cls.read_into = lambda self, *a: False
"""

CHILD = SLOW_READS + textwrap.dedent(
    """
    import sys, warnings
    warnings.simplefilter("ignore")
    import npydir
    from npydir.conversion.adapters.zarr_store import ZarrSource
    from npydir.conversion.adapters.hdf5 import Hdf5Source

    slow(ZarrSource); slow(Hdf5Source)
    npydir.convert(sys.argv[1], sys.argv[2], progress=False, memory_budget=int(sys.argv[3]),
                   threads=1, journal_interval=0)
    """
)


def _make_source(tmp_path: Path, kind: str) -> Path:
    data = np.arange(ROWS * 4, dtype=np.float32).reshape(ROWS, 4)
    if kind == "zarr":
        path = tmp_path / "src.zarr"
        root = open_group(path)
        root.attrs["samplerate_x_Hz"] = 10_000
        a = create_array(root.create_group("train"), "x", shape=data.shape, dtype=data.dtype,
                         chunks=(CHUNK, 4))
        a[:] = data
    else:
        path = tmp_path / "src.h5"
        with h5py.File(path, "w") as f:
            f.attrs["samplerate_x_Hz"] = 10_000
            f.create_dataset("train/x", data=data, chunks=(CHUNK, 4))
    return path


def _journal_blocks(journal: Path) -> int:
    if not journal.exists():
        return 0
    n = 0
    for line in journal.read_text().splitlines():
        try:
            n += "a" in json.loads(line)
        except json.JSONDecodeError:
            pass
    return n


def _start_child(src: Path, dst: Path) -> subprocess.Popen:
    script = dst.parent / "child.py"
    script.write_text(CHILD)
    return subprocess.Popen([sys.executable, str(script), str(src), str(dst), str(BUDGET)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _interrupt_after(proc: subprocess.Popen, journal: Path, blocks: int, sig: int) -> int:
    deadline = time.monotonic() + 60
    while _journal_blocks(journal) < blocks:
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "child made no progress"
        time.sleep(0.01)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0, "child finished before it was interrupted"
    proc.stderr_text = err.decode(errors="replace")
    return _journal_blocks(journal)


@pytest.mark.parametrize("kind,kill_after", [pytest.param("zarr", 5, marks=pytest.mark.zarr),
                                             ("zarr", 25), ("hdf5", 12)])
def test_sigkill_then_resume(tmp_path, kind, kill_after):
    src = _make_source(tmp_path, kind)
    npydir.convert(src, tmp_path / "ref.npy", progress=False)  # uninterrupted reference
    dst = tmp_path / "out.npy"
    journal = tmp_path / ".out.npy.partial.journal"
    proc = _start_child(src, dst)
    done = _interrupt_after(proc, journal, kill_after, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    # nothing half-written looks complete: the destination does not exist yet
    assert not dst.exists() and (tmp_path / ".out.npy.partial").is_dir()
    with pytest.raises(StoreNotFoundError, match="interrupted conversion"):
        npydir.load(dst)
    report = npydir.convert(src, dst, progress=False, memory_budget=BUDGET, threads=1)
    assert report.resumed
    assert report.blocks_skipped >= done >= kill_after
    assert report.blocks_written == ROWS // CHUNK - report.blocks_skipped
    assert_same_tree(tree_of(tmp_path / "ref.npy"), tree_of(dst))
    assert not journal.exists() and not (tmp_path / ".out.npy.partial").exists()


def test_killed_twice_still_converges(tmp_path):
    src = _make_source(tmp_path, "zarr")
    dst = tmp_path / "out.npy"
    journal = tmp_path / ".out.npy.partial.journal"
    first = _interrupt_after(_start_child(src, dst), journal, 8, signal.SIGKILL)
    second = _interrupt_after(_start_child(src, dst), journal, first + 8, signal.SIGKILL)
    assert second >= first + 8  # the second run added to the first one's journal
    report = npydir.convert(src, dst, progress=False, memory_budget=BUDGET, threads=1,
                            verify=True)
    assert report.blocks_skipped >= second
    np.testing.assert_array_equal(np.load(dst / "train" / "x.npy"),
                                  np.arange(ROWS * 4, dtype=np.float32).reshape(ROWS, 4))


def test_ctrl_c_then_resume(tmp_path):
    src = _make_source(tmp_path, "zarr")
    dst = tmp_path / "out.npy"
    journal = tmp_path / ".out.npy.partial.journal"
    proc = _start_child(src, dst)
    done = _interrupt_after(proc, journal, 10, signal.SIGINT)
    # an uncaught KeyboardInterrupt ends Python by re-raising SIGINT (exit status -2)
    assert proc.returncode == -signal.SIGINT
    assert "KeyboardInterrupt" in proc.stderr_text
    assert not dst.exists()
    report = npydir.convert(src, dst, progress=False, memory_budget=BUDGET, threads=1)
    assert report.blocks_skipped >= done
    assert report.blocks_skipped + report.blocks_written == ROWS // CHUNK
    np.testing.assert_array_equal(np.load(dst / "train" / "x.npy"),
                                  np.arange(ROWS * 4, dtype=np.float32).reshape(ROWS, 4))


def _interrupt_on_call(monkeypatch, cls, method: str, n: int):
    """Make ``cls.method`` raise KeyboardInterrupt on its ``n``-th call (as Ctrl-C would in the
    middle of a conversion); returns the original method so the test can restore it."""
    real = getattr(cls, method)
    calls = {"n": 0}

    def interrupted(self, *args):
        calls["n"] += 1
        if calls["n"] == n:
            raise KeyboardInterrupt
        return real(self, *args)

    monkeypatch.setattr(cls, method, interrupted)
    return real


@pytest.mark.zarr
@pytest.mark.parametrize("durable", [True, False])
def test_keyboard_interrupt_in_process_keeps_finished_blocks(tmp_path, monkeypatch, durable):
    from npydir.conversion.adapters.zarr_store import ZarrSource

    src = _make_source(tmp_path, "zarr")
    dst = tmp_path / "out.npy"
    real = _interrupt_on_call(monkeypatch, ZarrSource, "read", 20)
    monkeypatch.setattr(ZarrSource, "read_into", lambda self, *args: False)
    with pytest.raises(KeyboardInterrupt):
        npydir.convert(src, dst, progress=False, memory_budget=BUDGET, threads=2,
                       journal_interval=60, durable=durable)  # the interrupt must commit
    done = _journal_blocks(tmp_path / ".out.npy.partial.journal")
    assert done >= 15
    monkeypatch.setattr(ZarrSource, "read", real)
    report = npydir.convert(src, dst, progress=False, memory_budget=BUDGET, threads=2,
                            durable=durable)
    assert report.blocks_skipped == done
    np.testing.assert_array_equal(np.load(dst / "train" / "x.npy"),
                                  np.arange(ROWS * 4, dtype=np.float32).reshape(ROWS, 4))


@needs_zarr3
def test_changed_options_restart_instead_of_mixing(tmp_path):
    src = _make_source(tmp_path, "zarr")
    dst = tmp_path / "out.zarr"
    journal = tmp_path / ".out.zarr.partial.journal"
    script = tmp_path / "child.py"
    script.write_text(CHILD.replace("threads=1,", "threads=1, zarr_format=2,"))
    proc = subprocess.Popen([sys.executable, str(script), str(src), str(dst), str(BUDGET)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _interrupt_after(proc, journal, 5, signal.SIGKILL)
    report = npydir.convert(src, dst, progress=False, zarr_format=3, verify=True)
    assert not report.resumed and report.blocks_skipped == 0
    assert zarr_format(open_group(dst, mode="r")) == 3
    assert os.listdir(tmp_path).count(".out.zarr.partial") == 0


def test_hdf5_destination_unreadable_after_a_kill_is_rebuilt(tmp_path, monkeypatch):
    """A killed HDF5 writer can leave a partial file HDF5 cannot open: the rerun must then
    rebuild it from scratch, not trust the journal's blocks."""
    from npydir.conversion.adapters.hdf5 import Hdf5Dest

    src = tmp_path / "src.npy"
    data = np.arange(ROWS * 4, dtype=np.float32).reshape(ROWS, 4)
    with npydir.open(src, "w") as root:
        root.create_dataset("x", data=data)
    real = _interrupt_on_call(monkeypatch, Hdf5Dest, "write", 10)
    with pytest.raises(KeyboardInterrupt):
        npydir.convert(src, tmp_path / "out.h5", progress=False, chunks=CHUNK,
                       memory_budget=BUDGET, threads=1, journal_interval=0)
    assert _journal_blocks(tmp_path / ".out.h5.partial.journal") == 9
    monkeypatch.setattr(Hdf5Dest, "write", real)
    (tmp_path / ".out.h5.partial").write_bytes(b"torn")  # what a kill mid-metadata can leave
    report = npydir.convert(src, tmp_path / "out.h5", progress=False, chunks=CHUNK,
                            memory_budget=BUDGET, threads=1, verify=True)
    assert not report.resumed and report.blocks_skipped == 0
    with h5py.File(tmp_path / "out.h5", "r") as f:
        np.testing.assert_array_equal(f["x"][...], data)


def test_resume_removes_temp_files_of_the_killed_run(tmp_path, monkeypatch):
    """A run killed inside ``npyfile.atomic_write`` leaves ``.<name>.*.npydir-tmp`` files in
    its partial tree; the resumed run must not publish them (bug-log.md H7).  A temp-named link
    is removed without touching its target."""
    from npydir.conversion.adapters.zarr_store import ZarrSource

    src = _make_source(tmp_path, "zarr")
    dst = tmp_path / "out.npy"
    real = _interrupt_on_call(monkeypatch, ZarrSource, "read", 10)
    monkeypatch.setattr(ZarrSource, "read_into", lambda self, *args: False)
    with pytest.raises(KeyboardInterrupt):
        npydir.convert(src, dst, progress=False, memory_budget=BUDGET, threads=1,
                       journal_interval=0)
    monkeypatch.setattr(ZarrSource, "read", real)
    partial = tmp_path / ".out.npy.partial"
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"keep me")
    strays = [partial / "train" / ".x.npy.0badc0de.npydir-tmp",
              partial / ".attrs.json.12345678.npydir-tmp"]
    for p in strays:
        p.write_bytes(b"half a file")
    os.symlink(outside, partial / "train" / ".y.npy.deadbeef.npydir-tmp")
    report = npydir.convert(src, dst, progress=False, memory_budget=BUDGET, threads=1)
    assert report.resumed and report.blocks_skipped == 9
    names = [name for _, dirs, files in os.walk(dst) for name in dirs + files]
    assert not [n for n in names if n.endswith(".npydir-tmp")], names
    assert npydir.verify(dst).ok
    assert outside.read_bytes() == b"keep me"
    np.testing.assert_array_equal(np.load(dst / "train" / "x.npy"),
                                  np.arange(ROWS * 4, dtype=np.float32).reshape(ROWS, 4))


@pytest.mark.zarr
@pytest.mark.parametrize("fmt", formats())
def test_resumed_zarr_destination_keeps_negative_zeros(tmp_path, monkeypatch, fmt):
    """zarr skips writing chunks equal to the fill value, and -0.0 == 0.0: the destination
    writes every chunk, also through arrays reopened by a resumed run (which zarr opens
    with its global config, not the one they were created with)."""
    from npydir.conversion.adapters.zarr_store import ZarrDest

    src = tmp_path / "src.npy"
    x = np.full((ROWS, 4), -0.0, dtype=np.float32)
    z = np.full((), complex(0.0, -0.0), dtype="<c8")
    with npydir.open(src, "w") as root:
        root.create_dataset("x", data=x)
        root.create_dataset("z", data=z)
    real = _interrupt_on_call(monkeypatch, ZarrDest, "write", 10)
    dst = tmp_path / "out.zarr"
    with pytest.raises(KeyboardInterrupt):
        npydir.convert(src, dst, progress=False, chunks=CHUNK, memory_budget=BUDGET,
                       threads=1, journal_interval=0, zarr_format=fmt)
    monkeypatch.setattr(ZarrDest, "write", real)
    report = npydir.convert(src, dst, progress=False, chunks=CHUNK, memory_budget=BUDGET,
                            threads=1, zarr_format=fmt)
    assert report.resumed and report.blocks_skipped == 9
    npydir.convert(dst, tmp_path / "back.npy", progress=False)
    assert np.load(tmp_path / "back.npy" / "x.npy").tobytes() == x.tobytes()
    assert np.load(tmp_path / "back.npy" / "z.npy").tobytes() == z.tobytes()


KILL_IN_WRITE_PATH = textwrap.dedent(
    """
    import os, signal, sys, warnings
    warnings.simplefilter("ignore")
    import npydir
    from npydir import _convert_npydir

    target, n = sys.argv[4], int(sys.argv[5])
    calls = [0]

    def killer(real):
        def wrapped(*args):
            calls[0] += 1
            if calls[0] == n:  # the block's bytes are written, not yet on the disk for sure
                os.kill(os.getpid(), signal.SIGKILL)
            return real(*args)
        return wrapped

    if target == "writeback":  # between pwrite and the start of its writeback
        _convert_npydir.start_writeback = killer(_convert_npydir.start_writeback)
    else:  # between writing (and starting writeback) and the fdatasync before a commit
        _convert_npydir.RowsFile.flush = killer(_convert_npydir.RowsFile.flush)
    npydir.convert(sys.argv[1], sys.argv[2], progress=False, memory_budget=int(sys.argv[3]),
                   threads=2, journal_interval=0)
    """
)


@pytest.mark.parametrize("kind", ["zarr", "hdf5"])
# start_writeback runs once per (small, buffered) block: the 15th call is mid-way.  fdatasync
# runs once per journal commit, and a commit is skipped while the previous one still runs,
# so only the first few calls are certain: the 2nd is the next commit (or the final one)
@pytest.mark.parametrize("target,n", [("writeback", 15), ("fdatasync", 2)])
def test_sigkill_between_write_and_sync_then_resume(tmp_path, kind, target, n):
    """Killed after a block's pwrite but before its writeback started, or before the
    fdatasync that must precede its journal line: nothing is published, the journal lists
    only synced blocks, and the resumed run gives the uninterrupted bytes."""
    src = _make_source(tmp_path, kind)
    total = npydir.convert(src, tmp_path / "ref.npy", progress=False, memory_budget=BUDGET,
                           threads=2).blocks_written
    dst = tmp_path / "out.npy"
    journal = tmp_path / ".out.npy.partial.journal"
    script = tmp_path / "kill.py"
    script.write_text(KILL_IN_WRITE_PATH)
    # On a loaded machine the journal's commits (each skipped while the previous one runs)
    # can lag the writes: a kill that came before the first commit tests nothing, so it is
    # tried again, later, on a clean slate.
    for attempt in range(4):
        shutil.rmtree(tmp_path / ".out.npy.partial", ignore_errors=True)
        journal.unlink(missing_ok=True)
        at = n * (attempt + 1) if target == "writeback" else n + attempt
        proc = subprocess.run([sys.executable, str(script), str(src), str(dst), str(BUDGET),
                               target, str(at)], capture_output=True, text=True, timeout=120)
        assert proc.returncode == -signal.SIGKILL, proc.stderr
        done = _journal_blocks(journal)
        if done > 0:
            break
    assert 0 < done < total  # interrupted mid-way, after some commits
    assert not dst.exists() and (tmp_path / ".out.npy.partial").is_dir()
    with pytest.raises(StoreNotFoundError, match="interrupted conversion"):
        npydir.load(dst)
    report = npydir.convert(src, dst, progress=False, memory_budget=BUDGET, threads=2)
    assert report.resumed and report.blocks_skipped == done
    assert report.blocks_written == total - done
    assert_same_tree(tree_of(tmp_path / "ref.npy"), tree_of(dst))
    assert not journal.exists()


def test_start_writeback_is_only_a_hint(tmp_path):
    from npydir import _convert_writeback as wb

    path = tmp_path / "f.bin"
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        os.pwrite(fd, b"x" * 100_000, 0)
        assert wb.start_writeback(fd, 0, 100_000) == wb.available()
        assert wb.start_writeback(fd, 0, 0) is False  # nothing to write
    finally:
        os.close(fd)
    assert wb.start_writeback(fd, 0, 10) is False  # closed descriptor: no exception
    assert path.read_bytes() == b"x" * 100_000


KILL_WHILE_PUBLISHING = textwrap.dedent(
    """
    import os, shutil, signal, sys, warnings
    warnings.simplefilter("ignore")
    import npydir
    from npydir.store import fsutil

    src, dst, point, swap = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "swap"
    name = os.path.basename(dst)
    when, n = point.split("-")
    renames = [0]

    def publishing(args):  # a rename that moves the destination or onto it
        return any(isinstance(a, (str, bytes, os.PathLike))
                   and os.fsdecode(os.fspath(a)).endswith(name) for a in args)

    def wrap(real, counted):
        def wrapped(*args, **kwargs):
            hit = False
            if counted(args):
                renames[0] += 1
                hit = str(renames[0]) == n
            if hit and when == "before":
                os.kill(os.getpid(), signal.SIGKILL)
            out = real(*args, **kwargs)
            if hit and when == "after":
                os.kill(os.getpid(), signal.SIGKILL)
            return out
        return wrapped

    def old_copy(args):  # removing the old destination once it is out of the way
        return os.fsdecode(os.fspath(args[0])).endswith((name + ".replaced",
                                                          name + ".partial"))

    if n == "rmtree":  # after the old copy is removed (fsutil.remove, the one removal)
        def rmtree(real):
            def wrapped(path, *a, **k):
                out = real(path, *a, **k)
                if old_copy((path,)):
                    os.kill(os.getpid(), signal.SIGKILL)
                return out
            return wrapped
        fsutil.remove = rmtree(fsutil.remove)
    else:
        os.rename = wrap(os.rename, publishing)
        os.replace = wrap(os.replace, publishing)
        if getattr(fsutil, "_RENAMEAT2", None) is not None and swap:
            fsutil._RENAMEAT2 = wrap(fsutil._RENAMEAT2, publishing)
    if not swap:
        fsutil._RENAMEAT2 = None  # a system without renameat2
    npydir.convert(src, dst, progress=False, overwrite=True)
    print("not killed")
    """
)

_PUBLISH_POINTS = ([(k, "swap", p) for k in ("npy", "zarr")
                    for p in ("before-1", "after-1", "after-rmtree")]
                   + [(k, "no-swap", p) for k in ("npy", "zarr")
                      for p in ("before-1", "after-1", "after-2", "after-rmtree")]
                   + [("h5", "swap", p) for p in ("before-1", "after-1")])


def _x_of(path: Path, kind: str = "") -> np.ndarray:
    """``train/x`` of the dataset at ``path`` (``kind``: its backend, when the name hides it)."""
    if kind == "zarr":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return zarr.open_group(str(path), mode="r")["train/x"][...]
    if kind == "npy":
        return np.load(path / "train" / "x.npy")
    with npydir.load(path) as data:
        return np.asarray(data["train"]["x"][...])


@pytest.mark.parametrize("kind,swap,point", _PUBLISH_POINTS)
def test_overwrite_killed_while_publishing(tmp_path, kind, swap, point):
    """convert(overwrite=True) SIGKILLed at each step of replacing the destination: the old
    or the new destination is under its name (without renameat2, between the two renames,
    the old one is at .DST.replaced and the new one complete at .DST.partial), and the
    rerun finishes, leaving nothing else behind."""
    old, new = _make_source(tmp_path, "hdf5"), tmp_path / "new.h5"
    with h5py.File(new, "w") as f:
        f.create_dataset("train/x", data=-np.arange(ROWS * 4, dtype=np.float32).reshape(ROWS, 4))
    dst = tmp_path / f"out.{kind}"
    npydir.convert(old, dst, progress=False)
    before = _x_of(dst)
    script = tmp_path / "publish.py"
    script.write_text(KILL_WHILE_PUBLISHING)
    proc = subprocess.run([sys.executable, str(script), str(new), str(dst), point, swap],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    expected = -np.arange(ROWS * 4, dtype=np.float32).reshape(ROWS, 4)
    if dst.exists():
        got = _x_of(dst)
        assert np.array_equal(got, before) or np.array_equal(got, expected)
    else:  # only between the two renames of a system without renameat2
        assert (swap, point) == ("no-swap", "after-1")
        np.testing.assert_array_equal(_x_of(tmp_path / f".out.{kind}.replaced", kind), before)
        np.testing.assert_array_equal(_x_of(tmp_path / f".out.{kind}.partial", kind), expected)
    report = npydir.convert(new, dst, progress=False, overwrite=True)
    np.testing.assert_array_equal(_x_of(dst), expected)
    assert report.blocks_written == 0  # finished, not converted again
    assert sorted(os.listdir(tmp_path)) == sorted(["src.h5", "new.h5", dst.name, script.name])


SIGINT_CHILD = SLOW_READS + textwrap.dedent(
    """
    import functools, sys, warnings
    warnings.simplefilter("ignore")
    import npydir, npydir.tools.cli
    from npydir.conversion.adapters.npydir_store import NpydirSource

    mode, src, dst = sys.argv[1], sys.argv[2], sys.argv[3]
    if dst.endswith(".npy"):  # nothing slow to write: make the reads slow (in Python)
        slow(NpydirSource, 0.1)
    # HDF5 and zarr destinations: one chunk (9 MiB) larger than HDF5's chunk cache, written
    # in 2 MiB blocks, so each block's write decompresses, changes and recompresses the whole
    # chunk inside h5py's (and zarr's) C code: a SIGINT nearly always arrives in there
    options = {"journal_interval": 0, "threads": 1, "durable": False}  # a line per block
    if mode == "cli":
        # the options the CLI has no flags for, given to the convert the CLI calls
        npydir.tools.cli.convert = functools.partial(npydir.convert, **options)
        sys.exit(npydir.tools.cli.main(["convert", src, dst, "--no-progress", "--budget", "8MiB",
                                        "--compression", "gzip:1", "--chunks", "589824"]))
    npydir.convert(src, dst, progress=False, memory_budget=8 * 2**20, compression="gzip:1",
                   chunks=589824, **options)
    print("finished")
    """
)


@pytest.mark.parametrize("mode", ["cli", "python"])
@pytest.mark.parametrize("dst_name", ["out.h5", "out.zarr", "out.npy"])
def test_sigint_stops_the_conversion_and_the_rerun_resumes(tmp_path, mode, dst_name):
    """A real SIGINT (Ctrl-C) mid-conversion stops it promptly -- exit status 130 from the
    command line, KeyboardInterrupt from Python -- whatever the destination (h5py used to
    swallow it and finish with status 0), with the journal saved: the rerun resumes and
    gives the same bytes."""
    src = tmp_path / "src.npy"
    data = np.random.default_rng(1).standard_normal((600_000, 4)).astype(np.float32)
    with npydir.open(src, "w") as root:
        root.create_dataset("train/x", data=data)
    dst = tmp_path / dst_name
    journal = tmp_path / f".{dst_name}.partial.journal"
    script = tmp_path / "sigint.py"
    script.write_text(SIGINT_CHILD)
    proc = subprocess.Popen([sys.executable, str(script), mode, str(src), str(dst)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    done = _interrupt_after(proc, journal, 2, signal.SIGINT)
    if mode == "cli":
        assert proc.returncode == 130, proc.stderr_text
        assert proc.stderr_text.strip().endswith("npydir: interrupted"), proc.stderr_text
    else:
        assert proc.returncode == -signal.SIGINT, proc.stderr_text
        assert proc.stderr_text.rstrip().endswith("KeyboardInterrupt"), proc.stderr_text
    assert not dst.exists()
    left = _journal_blocks(journal)
    assert left >= done
    report = npydir.convert(src, dst, progress=False, memory_budget=8 * 2**20,
                            compression="gzip:1", chunks=589824, threads=1, durable=False)
    assert report.resumed and report.blocks_skipped == left
    assert report.blocks_written > 0  # it was stopped mid-way, not at the end
    assert _x_of(dst).tobytes() == data.tobytes()
    assert not journal.exists()
