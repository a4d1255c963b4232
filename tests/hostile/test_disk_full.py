"""Full disks and file-size limits: a clear error, and nothing stored before is lost.

Two ways to run out of room, both in child processes:

- ``RLIMIT_FSIZE`` (any machine): the child lowers its file-size limit below what the writes
  need and ignores ``SIGXFSZ``, so writes past it fail with ``OSError(EFBIG)``;
- a 1 MiB tmpfs (needs root or CAP_SYS_ADMIN; skipped with the reason otherwise): writes fail
  with ``OSError(ENOSPC)``.

The documented error is the builtin ``OSError`` with ``errno`` EFBIG or ENOSPC (npydir lets
the operating system's error through; the atomic writers remove their temp files first).
Afterwards the arrays and attributes written before are intact, ``verify`` is clean or
reports only what ``repair`` fixes (torn appends, stray temp files), and the store takes
writes again once there is room.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import _hostile
import _mounts
import numpy as np
import pytest

import npydir

pytestmark = pytest.mark.hostile

TRIALS = max(5, _hostile.DISK_TRIALS)
KEEP = np.arange(4096, dtype="<f8")
GROW = np.arange(100 * 16, dtype="<f4").reshape(100, 16)


def _prepare(store: Path) -> None:
    with npydir.open(store, "w") as root:
        root["keep"] = KEEP
        root["grow"] = GROW
        root.attrs.update(a=1, b=[1, 2], c={"nested": "yes"})
        root["keep"].attrs["unit"] = "V"


def _run_child(store: Path, limit: int, trials: int) -> list[dict]:
    args = [str(_hostile.HERE / "_disk_child.py"), str(store), str(limit), str(trials)]
    return _hostile.run_json(args, timeout=240)


def _check_outcomes(results: list[dict], errnos: set[int], area: str) -> None:
    failed = [r for r in results if r["outcome"] != "ok"]
    assert failed, f"no write ever failed: the limit did not bite {results}"
    for r in failed:
        assert "OSError" in r["mro"] and r["errno"] in errnos, (
            f"{r['step']}: undocumented error {r}"
        )
    _hostile.record(
        area, "write attempts / refused with OSError", f"{len(results)} / {len(failed)}"
    )
    steps = sorted({r["step"] for r in failed})
    _hostile.record(area, "operations refused", ", ".join(steps))
    named = sum(1 for r in failed if ".npy" in r["message"] or ".json" in r["message"])
    _hostile.record(area, "errors naming the file", f"{named} / {len(failed)}")
    _LAST_FAILED[area] = failed


_LAST_FAILED: dict[str, list] = {}


def _check_store(store: Path, area: str) -> None:
    """Old arrays and attrs intact; verify clean or repairable; writable again."""
    report = npydir.verify(store)
    assert set(report.kinds()) <= {"torn-append", "stray-temp"}, str(report)
    if not report.ok:
        fixed = npydir.repair(store)
        assert fixed.ok, str(fixed)
    _hostile.record(
        area,
        "verify after the failures",
        "clean" if report.ok else ", ".join(sorted(set(report.kinds()))) + " (repaired)",
    )
    assert npydir.verify(store).ok
    with npydir.open(store, "r") as root:
        np.testing.assert_array_equal(root["keep"][:], KEEP)
        np.testing.assert_array_equal(root["grow"][:100], GROW)
        assert np.all(root["grow"][100:] == 1)  # only complete appends of ones, if any fitted
        a = root.attrs.asdict()
        assert (a["a"], a["b"], a["c"]) == (1, [1, 2], {"nested": "yes"})
        assert root["keep"].attrs["unit"] == "V"
        for name, obj in root.members():
            if isinstance(obj, npydir.Array):
                obj[...]  # every array listed reads completely
    temps = [n for _, _, files in os.walk(store) for n in files if n.endswith(".npydir-tmp")]
    assert not temps, f"temp files left: {temps}"


def test_file_size_limit(tmp_path):
    store = tmp_path / "s.npy"
    _prepare(store)
    limit = 256 * 1024  # larger than anything stored before, smaller than the new writes
    results = _run_child(store, limit, TRIALS)
    _check_outcomes(results, {errno.EFBIG}, "disk/RLIMIT_FSIZE")
    _check_store(store, "disk/RLIMIT_FSIZE")
    with npydir.open(store, "a") as root:  # room again: writes work
        root["grow"].append(np.ones((2, 16), "f4"))
        root.attrs["after"] = True


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 1 MiB tmpfs mounted under tmp_path, or skip with the reason."""
    with _mounts.tmpfs(tmp_path / f"tmpfs-{uuid.uuid4().hex[:6]}", "1m") as mnt:
        yield mnt


def test_full_disk(small_tmpfs):
    store = small_tmpfs / "s.npy"
    _prepare(store)
    results = _run_child(store, 0, TRIALS)
    _check_outcomes(results, {errno.ENOSPC}, "disk/tmpfs 1 MiB")
    _check_store(store, "disk/tmpfs 1 MiB")
    # free some room (drop the arrays that did fit) and write again
    with npydir.open(store, "a") as root:
        for name in [n for n in root if n.startswith("new") or (n[:1] == "g" and n[1:].isdigit())]:
            del root[name]
        root["grow"].append(np.ones((2, 16), "f4"))
        root.attrs["after"] = True
    assert npydir.verify(store).ok


def _run_python(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a child interpreter (faulthandler on), so a crash kills only the child."""
    return _run_python_args(code)


def _run_python_args(code: str, *args: str) -> subprocess.CompletedProcess:
    """:func:`_run_python` with ``sys.argv[1:]`` set to ``args``."""
    return subprocess.run(
        [sys.executable, "-X", "faulthandler", "-c", code, *args],
        capture_output=True,
        timeout=240,
        env=_hostile.child_env(),
    )


def test_preallocated_array_on_a_full_disk_never_kills_the_process(small_tmpfs):
    """``create_dataset(shape=...)`` preallocates sparsely: on a full disk the create succeeds
    and the first write through the memory map raised SIGBUS, killing the interpreter
    (bug-log.md H8).  Expected: an ``OSError`` (ENOSPC) from create_dataset or from the write.
    """
    store = small_tmpfs / "s.npy"
    _prepare(store)
    code = f"""
import errno, numpy as np, npydir
root = npydir.open({str(store)!r}, "a")
try:
    a = root.create_dataset("sparse", shape=(1_000_000,), dtype="f4")
    a[:] = 1
    a.flush()
    print("ok")
except OSError as exc:
    print("OSError", exc.errno == errno.ENOSPC)
root.close()
"""
    out = _run_python(code)
    assert out.returncode >= 0, (
        f"the interpreter was killed by signal {-out.returncode} writing a preallocated "
        f"array on a full disk:\n{out.stderr.decode()[-2000:]}"
    )
    assert out.stdout.decode().split() in (["ok"], ["OSError", "True"]), (
        out.stdout.decode() + out.stderr.decode()
    )
    _check_store(store, "disk/tmpfs preallocated")


def test_conversion_onto_a_full_disk_is_an_error_not_a_crash(small_tmpfs, tmp_path):
    """convert preallocates every array and fills it in blocks: same SIGBUS risk (bug-log.md H8)."""
    pytest.importorskip("h5py")
    import h5py

    src = tmp_path / "src.h5"
    with h5py.File(src, "w") as f:
        f.create_dataset("train/x", data=np.ones((200_000, 4), "f4"), chunks=(10_000, 4))
    dst = small_tmpfs / "dst.npy"
    code = f"""
import warnings, errno, npydir
warnings.simplefilter("ignore")
try:
    npydir.convert({str(src)!r}, {str(dst)!r}, progress=False, threads=1)
    print("ok")
except OSError as exc:
    print("OSError", exc.errno == errno.ENOSPC)
"""
    out = _run_python(code)
    assert out.returncode >= 0, (
        f"convert was killed by signal {-out.returncode} on a full disk:\n"
        f"{out.stderr.decode()[-2000:]}"
    )
    assert out.stdout.decode().split() == ["OSError", "True"], (
        out.stdout.decode() + out.stderr.decode()[-2000:]
    )
    assert not dst.exists()


def test_disk_errors_name_the_file(tmp_path):
    """The OSError of a full disk / size limit says which store file could not be written
    (errors name the store and the key), not only "[Errno 27] File too large"
    (bug-log.md H9).
    """
    store = tmp_path / "s.npy"
    _prepare(store)
    results = _run_child(store, 256 * 1024, 5)
    failed = [r for r in results if r["outcome"] != "ok"]
    assert failed
    unnamed = [f"{r['step']}: {r['message']}" for r in failed if str(store) not in r["message"]]
    assert not unnamed, "errors that do not name the store file:\n" + "\n".join(unnamed)


CONVERT_ON_A_FULL_DISK = """
import json, os, shutil, sys, warnings
warnings.simplefilter("ignore")
import numpy as np, npydir

src, mnt, name, sizes = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
dst = os.path.join(mnt, name)
journal = os.path.join(mnt, f".{name}.partial.journal")
options = dict(progress=False, threads=1, journal_interval=0, memory_budget=4 * 160_000)


def blocks():
    try:
        with open(journal) as fh:
            return sum('"a":' in line for line in fh)
    except FileNotFoundError:
        return 0


def fill(free_kib):
    with open(os.path.join(mnt, "filler"), "wb") as fh:
        try:
            while True:
                fh.write(b"x" * 65536)
                fh.flush()
        except OSError:
            pass
    size = os.path.getsize(os.path.join(mnt, "filler"))
    os.truncate(os.path.join(mnt, "filler"), max(0, size - free_kib * 1024))


expected = npydir.load(src)["train"]["x"][...]
out = []
for free in [int(s) for s in sys.argv[4].split(",")]:
    for entry in os.listdir(mnt):
        path = os.path.join(mnt, entry)
        shutil.rmtree(path) if os.path.isdir(path) else os.unlink(path)
    fill(free)
    r = {"free_kib": free}
    try:
        npydir.convert(src, dst, **options)
        r["first"] = "ok"
    except Exception as exc:
        r.update(first=type(exc).__name__, errno=getattr(exc, "errno", None),
                 message=str(exc), journalled=blocks())
    os.unlink(os.path.join(mnt, "filler"))  # room again
    try:
        report = npydir.convert(src, dst, **options)
        with npydir.load(dst) as data:
            same = np.asarray(data["train"]["x"][...]).tobytes() == expected.tobytes()
        r.update(retry="ok", skipped=report.blocks_skipped, same=same)
    except Exception as exc:
        r["retry"] = f"{type(exc).__name__}: {exc}"
    r["left"] = sorted(os.listdir(mnt))
    out.append(r)
print(json.dumps(out))
"""


@pytest.mark.parametrize("dst_name", ["d.npy", "d.zarr", "d.h5"])
def test_conversion_on_a_full_disk_names_the_file_and_the_retry_resumes(tmp_path, dst_name):
    """convert onto a full disk, at several levels of fullness (nothing left, a few KiB, a few
    blocks' worth): ENOSPC as one line naming the file it could not write (the journal, the
    partial result, a file inside it), no lock or descriptor kept, so once there is room the
    same call in the same process goes on -- skipping every block journalled before -- and
    the result has the source's bytes.  Nothing else is left on the disk."""
    h5py = pytest.importorskip("h5py")
    if dst_name.endswith(".zarr"):
        pytest.importorskip("zarr")
    src = tmp_path / "src.h5"
    data = np.random.default_rng(5).standard_normal((100_000, 4)).astype("f4")
    with h5py.File(src, "w") as f:
        f.create_dataset("train/x", data=data, chunks=(10_000, 4))
    sizes = "0,1,2,4,8,16,64,512"
    with _mounts.tmpfs(tmp_path / "mnt", "4m") as mnt:
        out = _run_python_args(CONVERT_ON_A_FULL_DISK, str(src), str(mnt), dst_name, sizes)
    assert out.returncode == 0, out.stderr.decode()[-3000:]
    results = json.loads(out.stdout.decode().strip().splitlines()[-1])
    for r in results:
        assert r["first"] == "OSError" and r["errno"] == errno.ENOSPC, r
        assert str(mnt) in r["message"] and "\n" not in r["message"], r
        assert r["retry"] == "ok" and r["same"], r
        assert r["skipped"] == r["journalled"], r  # resumed from what was journalled
        assert r["left"] == [dst_name], r
    resumed = sum(r["journalled"] > 0 for r in results)
    _hostile.record("disk/convert", f"full-disk levels / resumed after freeing ({dst_name})",
                    f"{len(results)} / {resumed}")
    if not dst_name.endswith(".npy"):  # npydir reserves every array's blocks up front
        assert resumed > 0
