"""verify()/repair() reports (the fault scenarios are in test_store_faults.py)."""

from __future__ import annotations

import numpy as np
import pytest

import npydir
from npydir.errors import FormatError, IntegrityError, StoreNotFoundError
from npydir.store.integrity import Problem, Report


def test_sound_store_reports_ok(tmp_path):
    store = tmp_path / "s.npy"
    with npydir.open(store, "w") as r:
        r["a/x"] = np.arange(5)
        r["a"].attrs["k"] = [1, 2]
        r["a/x"].attrs["u"] = "V"
    rep = npydir.verify(store)
    assert (
        rep.ok and rep and rep.problems == [] and rep.checked == 4
    )  # .npydir.json, x.npy, 2 attrs
    assert "OK" in str(rep)
    fixed = npydir.repair(store)
    assert fixed.ok and fixed.repaired == []


def test_missing_store(tmp_path):
    with pytest.raises(StoreNotFoundError):
        npydir.verify(tmp_path / "nope")
    with pytest.raises(StoreNotFoundError):
        npydir.repair(tmp_path / "nope")


def test_bad_format_file_is_reported_not_repaired(tmp_path):
    store = tmp_path / "s.npy"
    npydir.open(store, "w").close()
    (store / ".npydir.json").write_text('{"format": "zarr"}')
    rep = npydir.verify(store)
    assert rep.kinds() == ["bad-format-file"]
    with pytest.raises(IntegrityError, match="bad-format-file"):
        npydir.repair(store)
    assert (store / ".npydir.json").read_text() == '{"format": "zarr"}'


def test_problem_and_report_text(tmp_path):
    p = Problem(tmp_path / "x.npy", "truncated", 100, 90, "data missing")
    assert str(p) == f"truncated: {tmp_path / 'x.npy'} (expected 100, found 90): data missing"
    assert not p.repairable and Problem(tmp_path, "torn-append").repairable
    rep = Report(tmp_path, [p], checked=1)
    assert not rep and rep.kinds() == ["truncated"] and "1 problem(s)" in str(rep)


def test_verify_changes_nothing(tmp_path):
    store = tmp_path / "s.npy"
    with npydir.open(store, "w") as r:
        x = r.create_dataset("x", data=np.arange(4, dtype="i4"))
    with open(x.filename, "ab") as f:
        f.write(b"\0" * 4)
    before = x.filename.read_bytes()
    assert npydir.verify(store).kinds() == ["torn-append"]
    assert x.filename.read_bytes() == before


@pytest.mark.parametrize(
    "content",
    [
        b"[" * 100_000,  # RecursionError in json (H12)
        b'{"format": "npydir", "version": ' + b"[" * 100_000 + b"}",
        b'{"format": "npydir"}',  # no version: open refused, verify said clean (H12)
        b'{"format": "npydir", "version": 1e400}',
        b'{"format": "npydir", "version": true}',
        b'{"format": "npydir", "version": 0}',
        b'{"format": "npydir", "version": 2}',
        b"\xff\xfe",
        b"",
        "dir",
        "symlink",
    ],
)
def test_open_and_verify_agree_on_bad_format_files(tmp_path, content):
    """H12: one check for open (every mode that reads it) and verify; always a FormatError naming
    .npydir.json, never RecursionError, and verify reports bad-format-file exactly then."""
    store = tmp_path / "s.npy"
    npydir.open(store, "w").close()
    fmt = store / ".npydir.json"
    fmt.unlink()
    if content == "dir":
        fmt.mkdir()
    elif content == "symlink":
        (tmp_path / "outside.json").write_text('{"format": "npydir", "version": 1}')
        fmt.symlink_to(tmp_path / "outside.json")
    else:
        fmt.write_bytes(content)
    for mode in ("r", "r+", "a"):
        with pytest.raises(FormatError, match=r"\.npydir\.json"):
            npydir.open(store, mode)
    assert npydir.verify(store).kinds() == ["bad-format-file"]


def test_good_format_file_and_none_are_accepted(tmp_path):
    store = tmp_path / "s.npy"
    npydir.open(store, "w").close()
    assert npydir.verify(store).ok
    (store / ".npydir.json").unlink()  # DAS stores have none
    npydir.open(store, "r").close()
    assert npydir.verify(store).ok


def _torn_outside(tmp_path):
    outside = tmp_path / "outside.npy"
    np.save(outside, np.arange(10))
    with open(outside, "ab") as f:
        f.write(b"bytes that belong to someone else")
    return outside, outside.read_bytes()


def test_links_out_of_the_store_are_reported_never_written(tmp_path):
    """H13: verify read a .npy linked from outside the store and called it a torn append; repair
    then truncated the file outside.  Links out (files and directories) are now path-escape
    problems, not followed, and repair refuses them."""
    outside, before = _torn_outside(tmp_path)
    (tmp_path / "elsewhere").mkdir()
    np.save(tmp_path / "elsewhere" / "y.npy", np.arange(3))
    store = tmp_path / "s.npy"
    with npydir.open(store, "w") as r:
        r["ok"] = np.arange(3)
    (store / "x.npy").symlink_to(outside)
    (store / "x.attrs.json").symlink_to(outside)
    (store / "g").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    rep = npydir.verify(store)
    assert sorted(rep.kinds()) == ["path-escape"] * 3, rep
    assert {p.file.name for p in rep.problems} == {"x.npy", "x.attrs.json", "g"}
    with pytest.raises(IntegrityError, match="path-escape") as info:
        npydir.repair(store)
    assert info.value.report.repaired == []
    assert outside.read_bytes() == before


def test_repair_rechecks_links_swapped_in_after_verify(tmp_path, monkeypatch):
    """A link put in place between verify and the truncate must not redirect the write."""
    import npydir.store.integrity as integrity

    outside, before = _torn_outside(tmp_path)
    store = tmp_path / "s.npy"
    npydir.open(store, "w").close()
    link = store / "x.npy"
    link.symlink_to(outside)
    stale = Report(store, [Problem(link, "torn-append", 80, 113)], checked=1)
    monkeypatch.setattr(integrity, "verify", lambda root: stale)
    with pytest.raises(IntegrityError, match="path-escape"):
        npydir.repair(store)
    assert outside.read_bytes() == before


def test_links_inside_the_store_are_still_checked_and_repaired(tmp_path):
    store = tmp_path / "s.npy"
    with npydir.open(store, "w") as r:
        r["data/x"] = np.arange(4, dtype="i4")
    real = store / "data" / "x.npy"
    with open(real, "ab") as f:
        f.write(b"\0" * 4)
    (store / "y.npy").symlink_to(real)
    assert npydir.verify(store).kinds() == ["torn-append", "torn-append"]
    fixed = npydir.repair(store)
    assert len(fixed.repaired) == 2 and npydir.verify(store).ok
    np.testing.assert_array_equal(np.load(real), np.arange(4))
