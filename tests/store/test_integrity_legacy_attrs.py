"""attrs.json and DAS's attrs.npy (das_compat): written together, checked by verify, repaired.

attrs.json is the source of truth; attrs.npy is derived from it (npydir.store.attrs.write_attrs_pair).
An update interrupted between publishing the two leaves attrs.npy disagreeing with attrs.json:
verify reports ``stale-attrs-npy`` naming the keys, repair rewrites attrs.npy from attrs.json.
"""

from __future__ import annotations

import errno
import math
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import _mounts
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_attrs import assert_same
from test_attrs import values as attr_values

import npydir
import npydir.store.attrs as attrs_mod
import npydir.store.integrity as integrity
from npydir.store.attrs import (
    legacy_mismatch,
    read_attrs_file,
    read_legacy_attrs,
    write_attrs_file,
    write_legacy_attrs,
)
from npydir.errors import AttributeEncodingError, IntegrityError
from npydir.store.integrity import Problem, Report

OLD = {"samplerate_x_Hz": 10_000, "class_names": ["noise", "pulse"], "gen": 0}
NEW = {"class_names": ["noise", "pulse", "sine"], "gen": 1, "added": np.float32(0.5)}


def das_store(path: Path, attrs=OLD) -> Path:
    with npydir.open(path, "w", das_compat=True) as root:
        root["train/x"] = np.arange(6, dtype="f4").reshape(3, 2)
        root.attrs.update(attrs)
    assert npydir.verify(path).ok
    return path


def das_view(path: Path) -> dict:
    """What DAS's own loader reads (np.load with pickles allowed)."""
    return np.load(path / "attrs.npy", allow_pickle=True)[()]


def assert_in_sync(path: Path) -> None:
    mine, legacy = read_attrs_file(path / "attrs.json"), read_legacy_attrs(path / "attrs.npy")
    assert legacy_mismatch(mine, legacy) == []
    assert legacy_mismatch(mine, das_view(path)) == []


def _temp_files(path: Path) -> list[str]:
    return sorted(n for n in os.listdir(path) if n.endswith(".npydir-tmp"))


# ============================================================================ what "match" means


@pytest.mark.parametrize(
    "a, b",
    [
        (math.nan, math.nan),
        (np.float64("nan"), np.float64("nan")),
        ((1, 2), [1, 2]),
        ({"x": 1, "y": 2}, {"y": 2, "x": 1}),  # key order is not part of a value
        (bytearray(b"ab"), b"ab"),
        (np.arange(3), np.arange(3)),
        ([np.str_("a"), {"k": (1.5,)}], [np.str_("a"), {"k": [1.5]}]),
        # pickle does not keep byte order: the same values in either order match
        (np.arange(3, dtype=">i2"), np.arange(3, dtype="<i2")),
        (np.array(["ab"], dtype=">U2"), np.array(["ab"], dtype="<U2")),
        (np.ones(2, dtype=[("a", ">i4")]), np.ones(2, dtype=[("a", "<i4")])),
    ],
)
def test_values_that_match(a, b):
    assert legacy_mismatch({"k": a}, {"k": b}) == []


@pytest.mark.parametrize(
    "a, b",
    [
        (1, 1.0),
        (1, True),
        (0.0, -0.0),
        (np.float32(1), 1.0),  # the dtype is part of the encoding
        (np.arange(3, dtype="i4"), np.arange(3, dtype="i8")),
        (np.arange(3), np.arange(3).reshape(3, 1)),
        (np.arange(3, dtype=">i2"), np.arange(1, 4, dtype="<i2")),
        ("a", b"a"),
        ([1, 2], [2, 1]),
        ({"x": 1}, {"x": 1, "y": 2}),
        ({"x": 1}, {1: 1}),  # the encoding refuses int dict keys: never a match
    ],
)
def test_values_that_differ(a, b):
    assert legacy_mismatch({"k": a}, {"k": b}) == ["k"]
    assert legacy_mismatch({"k": b}, {"k": a}) == ["k"]


def test_missing_and_extra_keys_differ():
    assert legacy_mismatch({"a": 1, "b": 2}, {"b": 2, "c": 3}) == ["a", "c"]
    assert legacy_mismatch({}, {}) == []


# ============================================================================ the writer


def test_attrs_npy_holds_what_attrs_json_decodes_to(tmp_path):
    """Tuples, bytearrays, str subclasses are stored as attrs.json reads them back, so DAS and
    npydir see the same values (and the restricted unpickler reads the file back)."""

    class Name(str):
        pass

    store = das_store(tmp_path / "s.npy")
    with npydir.open(store, "a", das_compat=True) as root:
        root.attrs.update(t=(1, (2, 3)), ba=bytearray(b"\x00\xff"), s=Name("x"), f=np.float16(1))
    view = das_view(store)
    assert view["t"] == [1, [2, 3]] and view["ba"] == b"\x00\xff" and type(view["s"]) is str
    assert_same(np.float16(1), view["f"])
    assert_in_sync(store)
    assert npydir.verify(store).ok


def test_a_value_that_cannot_be_stored_writes_neither_file(tmp_path):
    store = das_store(tmp_path / "s.npy")
    before = {n: (store / n).read_bytes() for n in ("attrs.json", "attrs.npy")}
    with npydir.open(store, "a", das_compat=True) as root:
        with pytest.raises(AttributeEncodingError, match="bad"):
            root.attrs["bad"] = {1, 2}
    assert {n: (store / n).read_bytes() for n in before} == before
    assert _temp_files(store) == [] and npydir.verify(store).ok


def test_a_full_disk_while_staging_leaves_both_files_as_they_were(tmp_path, monkeypatch):
    """Both files are staged before either is renamed: a full disk while staging the second
    (attrs.json's fsync fails) publishes nothing and leaves no temp file."""
    store = das_store(tmp_path / "s.npy")
    before = {n: (store / n).read_bytes() for n in ("attrs.json", "attrs.npy")}
    real_fsync, calls = os.fsync, []

    def fsync(fd):
        calls.append(os.readlink(f"/proc/self/fd/{fd}"))
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    with npydir.open(store, "a", das_compat=True) as root:
        monkeypatch.setattr(attrs_mod.os, "fsync", fsync)
        with pytest.raises(OSError, match="No space.*attrs.json"):
            root.attrs.update(NEW)
        monkeypatch.undo()
        assert root.attrs["gen"] == 0
    assert [Path(c).name.split(".")[1] for c in calls] == ["attrs", "attrs"]
    assert [Path(c).suffix for c in calls] == [".npydir-tmp"] * 2
    assert {n: (store / n).read_bytes() for n in before} == before
    assert _temp_files(store) == [] and npydir.verify(store).ok


# ============================================================================ fault injection


def _interrupt_before(monkeypatch, name: str, exc: BaseException) -> None:
    """Make the rename that publishes ``name`` raise ``exc`` (the other renames work)."""
    real = os.replace

    def replace(src, dst, *args, **kwargs):
        if Path(dst).name == name:
            raise exc
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(attrs_mod.os, "replace", replace)


def test_interrupted_between_the_two_renames_is_reported_and_repaired(tmp_path, monkeypatch):
    store = das_store(tmp_path / "s.npy")
    json_before = (store / "attrs.json").read_bytes()
    with npydir.open(store, "a", das_compat=True) as root:
        _interrupt_before(monkeypatch, "attrs.json", KeyboardInterrupt("killed"))
        with pytest.raises(KeyboardInterrupt):
            root.attrs.update(NEW)
        monkeypatch.undo()
        assert root.attrs["gen"] == 0  # the update never committed: attrs.json is unchanged
    assert (store / "attrs.json").read_bytes() == json_before
    assert das_view(store)["gen"] == 1  # attrs.npy went first and is one update ahead

    rep = npydir.verify(store)
    assert rep.kinds() == ["stale-attrs-npy"], str(rep)
    (problem,) = rep.problems
    assert problem.file == store / "attrs.npy" and problem.repairable
    assert problem.keys == ("added", "class_names", "gen")
    assert "group '/'" in problem.detail and "source of truth" in problem.detail
    assert "differ: 'class_names', 'gen'" in problem.detail
    assert "only in attrs.npy: 'added'" in problem.detail

    fixed = npydir.repair(store)
    assert fixed.ok and [p.kind for p in fixed.repaired] == ["stale-attrs-npy"]
    assert npydir.verify(store).ok
    assert (store / "attrs.json").read_bytes() == json_before  # the truth is never rewritten
    assert_in_sync(store)
    assert das_view(store)["gen"] == 0 and "added" not in das_view(store)


def test_first_das_compat_write_interrupted_is_detected(tmp_path, monkeypatch):
    """A store without attrs.npy opened with das_compat for the first time: attrs.npy is
    published first, so a kill before attrs.json leaves a mismatch verify sees (had attrs.json
    gone first, the store would look like one that never had attrs.npy)."""
    store = tmp_path / "s.npy"
    with npydir.open(store, "w") as root:
        root.attrs.update(OLD)
    assert not (store / "attrs.npy").exists()
    with npydir.open(store, "a", das_compat=True) as root:
        _interrupt_before(monkeypatch, "attrs.json", OSError(errno.EIO, "I/O error"))
        with pytest.raises(OSError):
            root.attrs["gen"] = 7
    monkeypatch.undo()
    rep = npydir.verify(store)
    assert rep.kinds() == ["stale-attrs-npy"] and rep.problems[0].keys == ("gen",)
    npydir.repair(store)
    assert_in_sync(store) and das_view(store)["gen"] == 0


def test_stores_that_were_never_written_twice_are_not_compared(tmp_path):
    """DAS's own stores (attrs.npy only) and plain stores (attrs.json only) are sound."""
    das = tmp_path / "das.npy"
    das.mkdir()
    np.save(das / "attrs.npy", {"a": 1}, allow_pickle=True)
    plain = tmp_path / "plain.npy"
    with npydir.open(plain, "w") as root:
        root.attrs["a"] = 1
    assert npydir.verify(das).ok and npydir.verify(plain).ok


def test_only_the_root_is_compared(tmp_path):
    """npydir keeps attrs.npy at the root only; a file of that name in a group is left alone."""
    store = das_store(tmp_path / "s.npy")
    with npydir.open(store, "a") as root:
        root["train"].attrs["k"] = 1
    write_legacy_attrs(store / "train" / "attrs.npy", {"k": 2})
    assert npydir.verify(store).ok


_SIGKILL_CHILD = """
import os, signal, sys
import numpy as np
import npydir, npydir.store.attrs as attrs_mod

real = os.replace

def replace(src, dst, *a, **k):
    if os.path.basename(dst) == "attrs.json":
        os.kill(os.getpid(), signal.SIGKILL)  # killed between publishing attrs.npy and attrs.json
    return real(src, dst, *a, **k)

root = npydir.open(sys.argv[1], "a", das_compat=True)
attrs_mod.os.replace = replace
root.attrs.update(class_names=["noise", "pulse", "sine"], gen=1, added=np.float32(0.5))
print("not killed")
"""


def test_writer_sigkilled_between_the_two_renames(tmp_path):
    """A real SIGKILL (no finally blocks, no cleanup) at the one point where the pair disagrees."""
    store = das_store(tmp_path / "s.npy")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = subprocess.run(
        [sys.executable, "-c", _SIGKILL_CHILD, str(store)],
        capture_output=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    assert len(_temp_files(store)) == 1  # attrs.json's staged temp file, never renamed
    rep = npydir.verify(store)
    assert sorted(rep.kinds()) == ["stale-attrs-npy", "stray-temp"], str(rep)
    stale = next(p for p in rep.problems if p.kind == "stale-attrs-npy")
    assert stale.keys == ("added", "class_names", "gen")
    with npydir.open(store, "r") as root:  # readers see the last committed attributes
        assert root.attrs["gen"] == 0
    # the dead writer's lock is taken over by repair
    fixed = npydir.repair(store)
    assert sorted(p.kind for p in fixed.repaired) == ["stale-attrs-npy", "stray-temp"]
    assert npydir.verify(store).ok and _temp_files(store) == []
    assert_in_sync(store)


# ============================================================================ repair's limits


def test_repair_never_follows_links_out_of_the_store(tmp_path):
    outside = tmp_path / "outside.npy"
    write_legacy_attrs(outside, {"gen": 99})
    before = outside.read_bytes()
    store = das_store(tmp_path / "s.npy")
    (store / "attrs.npy").unlink()
    (store / "attrs.npy").symlink_to(outside)
    rep = npydir.verify(store)
    assert rep.kinds() == ["path-escape"]  # not read, so not compared
    with pytest.raises(IntegrityError, match="path-escape"):
        npydir.repair(store)
    assert outside.read_bytes() == before


def test_repair_rechecks_a_link_swapped_in_after_verify(tmp_path, monkeypatch):
    """attrs.json replaced by a link out of the store between verify and repair: repair must not
    read it (nor write attrs.npy from it)."""
    store = das_store(tmp_path / "s.npy")
    write_legacy_attrs(store / "attrs.npy", {"gen": 5})
    stale = npydir.verify(store)
    assert stale.kinds() == ["stale-attrs-npy"]
    outside = tmp_path / "evil.json"
    write_attrs_file(outside, {"gen": 666})
    (store / "attrs.json").unlink()
    (store / "attrs.json").symlink_to(outside)
    npy_before = (store / "attrs.npy").read_bytes()
    monkeypatch.setattr(integrity, "verify", lambda root: stale)
    with pytest.raises(IntegrityError, match="path-escape"):
        npydir.repair(store)
    assert (store / "attrs.npy").read_bytes() == npy_before


def test_repair_writes_a_link_inside_the_store_by_replacing_it(tmp_path):
    """attrs.npy as a link to another file of the store: the link is replaced, the file it
    pointed to is not written."""
    store = das_store(tmp_path / "s.npy")
    target = store / "train" / "other.bin"
    write_legacy_attrs(target, {"gen": 3})
    before = target.read_bytes()
    (store / "attrs.npy").unlink()
    (store / "attrs.npy").symlink_to(target)
    assert npydir.verify(store).kinds() == ["stale-attrs-npy"]
    npydir.repair(store)
    assert not (store / "attrs.npy").is_symlink() and target.read_bytes() == before
    assert_in_sync(store) and npydir.verify(store).ok


def test_repair_leaves_a_stale_report_alone_once_the_files_agree(tmp_path, monkeypatch):
    """Everything is re-checked under the lock: a report that no longer holds writes nothing."""
    store = das_store(tmp_path / "s.npy")
    stale = Report(store, [Problem(store / "attrs.npy", "stale-attrs-npy", keys=("gen",))])
    monkeypatch.setattr(integrity, "verify", lambda root: stale)
    ino = os.stat(store / "attrs.npy").st_ino
    assert npydir.repair(store).ok
    assert os.stat(store / "attrs.npy").st_ino == ino  # not rewritten


def test_long_key_lists_are_shortened_in_the_text_not_in_keys(tmp_path):
    store = das_store(tmp_path / "s.npy", {f"k{i:02d}": i for i in range(30)})
    write_legacy_attrs(store / "attrs.npy", {})
    (problem,) = npydir.verify(store).problems
    assert len(problem.keys) == 30 and "and 20 more" in problem.detail


# ============================================================================ read-only stores

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_WRITE_EVENTS = {
    "os.rename", "os.remove", "os.rmdir", "os.mkdir", "os.truncate", "os.chmod", "os.chown",
    "os.link", "os.symlink", "os.utime", "shutil.rmtree", "shutil.move", "shutil.copyfile",
}  # fmt: skip
_watching: list[list[str]] = []


def _audit(event: str, args: tuple) -> None:
    if not _watching:
        return
    if event == "open":
        path, mode, flags = args
        if (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & _WRITE_FLAGS
        ):
            _watching[-1].append(f"open {path} {mode} {flags}")
    elif event in _WRITE_EVENTS:
        _watching[-1].append(f"{event} {args}")


sys.addaudithook(_audit)  # audit hooks cannot be removed; it records only inside _no_writes


def _snapshot(root: Path) -> dict:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            st = os.lstat(p)
            data = p.read_bytes() if p.is_file() and not p.is_symlink() else None
            out[str(p)] = (st.st_ino, st.st_mode, st.st_size, st.st_mtime_ns, data)
    st = os.lstat(root)
    out[str(root)] = (st.st_ino, st.st_mode, st.st_mtime_ns)
    return out


def test_verify_writes_nothing_to_a_store_with_a_stale_attrs_npy(tmp_path):
    """Proof by audit hook (every open for writing, rename, unlink, ... in this process while
    verify runs) and by snapshot (bytes, inode, mtime of every entry): verify only reads."""
    store = das_store(tmp_path / "s.npy")
    write_legacy_attrs(store / "attrs.npy", {"gen": 5})
    (store / ".attrs.json.0badc0de.npydir-tmp").write_bytes(b"left by a kill")
    before = _snapshot(store)
    _watching.append([])
    try:
        rep = npydir.verify(store)
        # the hook sees writes: the control, so a silent hook cannot pass the test
        with open(tmp_path / "control", "wb"):
            pass
    finally:
        writes = _watching.pop()
    assert writes[-1].startswith(f"open {tmp_path / 'control'}"), writes
    assert writes[:-1] == [], f"verify wrote: {writes[:-1]}"
    assert sorted(rep.kinds()) == ["stale-attrs-npy", "stray-temp"]
    assert _snapshot(store) == before


@pytest.fixture
def ro_mount(tmp_path):
    with _mounts.tmpfs(tmp_path / "ro", "16m") as mnt:
        yield mnt


def test_stale_attrs_npy_on_a_read_only_mount(ro_mount):
    """On a file system mounted read-only (EROFS even for root) verify still reports the stale
    copy, and repair fails with an OSError rather than half-repairing."""
    store = das_store(ro_mount / "s.npy")
    write_legacy_attrs(store / "attrs.npy", {"gen": 5})
    _mounts.remount_read_only(ro_mount)
    with pytest.raises(OSError):
        (store / "probe").write_bytes(b"x")
    before = _snapshot(store)
    rep = npydir.verify(store)
    assert rep.kinds() == ["stale-attrs-npy"] and rep.problems[0].keys == (
        "class_names",
        "gen",
        "samplerate_x_Hz",
    )
    with pytest.raises(OSError):
        npydir.repair(store)
    assert _snapshot(store) == before


# ============================================================================ property

keys = st.sampled_from(["a", "b", "c", "gen", "class_names", "é", "__npydir__"])
ops = st.one_of(
    st.tuples(st.just("set"), keys, attr_values),
    st.tuples(st.just("update"), st.dictionaries(keys, attr_values, max_size=3)),
    st.tuples(st.just("delete"), keys),
    st.tuples(st.just("clear")),
    st.tuples(st.just("reopen")),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ops, min_size=1, max_size=8))
def test_attrs_json_and_attrs_npy_agree_after_any_sequence_of_updates(sequence):
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "s.npy"
        model: dict = {}
        root = npydir.open(store, "w", das_compat=True, sync=False)
        try:
            for op in sequence:
                if op[0] == "set":
                    root.attrs[op[1]] = op[2]
                    model[op[1]] = op[2]
                elif op[0] == "update":
                    root.attrs.update(op[1])
                    model.update(op[1])
                elif op[0] == "delete":
                    if op[1] in model:
                        del root.attrs[op[1]]
                        del model[op[1]]
                elif op[0] == "clear":
                    root.attrs.clear()
                    model.clear()
                else:
                    root.close()
                    root = npydir.open(store, "a", das_compat=True, sync=False)
                if not (store / "attrs.json").exists():
                    continue  # only "delete" of a missing key so far: nothing written yet
                mine = read_attrs_file(store / "attrs.json")
                legacy = read_legacy_attrs(store / "attrs.npy")
                assert legacy_mismatch(mine, legacy) == [], op
                assert legacy_mismatch(mine, model) == [], op  # and both hold what was set
                assert list(mine) == list(legacy)
        finally:
            root.close()
        assert npydir.verify(store).ok
