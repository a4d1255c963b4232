"""Every .zarr path under the installed zarr-python (2.18 or 3), DAS's format 2, the refusals.

``make test`` runs this file (with every other ``zarr``-marked test) once with zarr 3 and once
with zarr 2.18 first on the path.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings

import npydir
from npydir.conversion.backends import Dataset
from npydir.tools.cli import main
from npydir.errors import ConversionError, MissingDependencyError

from npydir.conversion.values import same_value

from _convert_fixtures import DAS_ATTRS, assert_same_tree, das_arrays, make_npydir, tree_of
from _zarr import ZARR2, das_reads, das_store, formats, needs_zarr3, open_group, zarr, \
    zarr_format
from test_convert_roundtrip import trees

pytestmark = [pytest.mark.zarr,
              pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning",
                                         "ignore::RuntimeWarning")]

only_zarr2 = pytest.mark.skipif(not ZARR2, reason="zarr 3 writes format 3 as asked")


def _mapping(tree) -> Dataset:
    """A tree of test_convert_roundtrip's strategy as the nested Dataset save() takes."""
    out = Dataset(attrs=tree["__attrs__"])
    for name, value in tree.items():
        if name != "__attrs__":
            out[name] = _mapping(value) if isinstance(value, dict) else value[0]
    return out


def _formats_on_disk(path: Path) -> set:
    """The zarr formats of every group/array metadata file under ``path``."""
    found = set()
    for _, _, files in os.walk(path):
        found |= {3} if "zarr.json" in files else set()
        found |= {2} if {".zgroup", ".zarray"} & set(files) else set()
    return found


def _nothing_written(tmp_path: Path, name: str) -> bool:
    return not [p.name for p in tmp_path.iterdir() if name in p.name]


# ----------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("fmt", formats())
@settings(max_examples=15)
@given(tree=trees())
def test_save_load_convert_round_trip(fmt, tree):
    """save() to zarr, load() back, convert() zarr -> npydir -> zarr -> npydir: the same
    arrays (dtype, shape, bytes) and attrs all the way."""
    tmp = Path(tempfile.mkdtemp())
    try:
        npydir.save(tmp / "a.zarr", _mapping(tree), zarr_format=fmt, chunks=2)
        assert _formats_on_disk(tmp / "a.zarr") == {fmt}
        npydir.save(tmp / "ref.npy", _mapping(tree))
        ref_arrays, ref_attrs = tree_of(tmp / "ref.npy")
        with npydir.load(tmp / "a.zarr") as loaded:
            got = {}

            def walk(group, prefix):
                assert same_value(group.attrs, ref_attrs[prefix.rstrip("/")])
                for name, value in group.items():
                    if isinstance(value, dict):
                        walk(value, f"{prefix}{name}/")
                    else:
                        # zarr 3 reads a 0-d array as a scalar of the value's own width
                        got[prefix + name] = np.asarray(value[...], dtype=value.dtype)

            walk(loaded, "")
        assert sorted(got) == sorted(ref_arrays)
        for key, want in ref_arrays.items():
            if fmt == 3:  # format 3 has no byte order: read native (convert restores it)
                want = want.astype(want.dtype.newbyteorder("="))
            assert got[key].dtype == want.dtype and got[key].tobytes() == want.tobytes(), key
        npydir.convert(tmp / "a.zarr", tmp / "b.npy", progress=False, verify=True)
        npydir.convert(tmp / "b.npy", tmp / "c.zarr", progress=False, verify=True,
                       zarr_format=fmt, chunks=3)
        npydir.convert(tmp / "c.zarr", tmp / "d.npy", progress=False, verify=True)
        assert_same_tree(tree_of(tmp / "ref.npy"), tree_of(tmp / "d.npy"))
    finally:
        shutil.rmtree(tmp)


def test_default_format_is_2_read_by_every_zarr(tmp_path):
    make_npydir(tmp_path / "a.npy")
    npydir.convert(tmp_path / "a.npy", tmp_path / "c.zarr", progress=False)
    npydir.save(tmp_path / "s.zarr", npydir.load(tmp_path / "a.npy"))
    for name in ("c.zarr", "s.zarr"):
        assert _formats_on_disk(tmp_path / name) == {2}
        data, attrs = das_reads(tmp_path / name)
        assert attrs == DAS_ATTRS
        np.testing.assert_array_equal(data["train"]["x"], das_arrays()["train"]["x"])


# ----------------------------------------------------------------------------- DAS


def _das_made(tmp_path: Path, chunk_len: int = 700) -> tuple[Path, dict]:
    arrays = das_arrays(seed=5)
    arrays["test"] = {k: v[:0] for k, v in arrays["val"].items()}  # DAS keeps empty splits
    das_store(tmp_path / "das.zarr", arrays, DAS_ATTRS, chunk_len=chunk_len)
    return tmp_path / "das.zarr", arrays


def test_store_das_made_loads(tmp_path):
    """A store as DAS's init_store makes it (format 2, appended, attrs one by one)."""
    path, arrays = _das_made(tmp_path)
    with npydir.load(path) as data:
        assert sorted(data) == ["test", "train", "val"]
        assert data.attrs == DAS_ATTRS
        for split, members in arrays.items():
            assert sorted(data[split]) == sorted(members)
            for name, value in members.items():
                got = np.asarray(data[split][name][...])
                assert got.dtype == np.float16 and got.shape == value.shape
                np.testing.assert_array_equal(got, value.astype(np.float16))
    with npydir.load(path, y_suffix="pulse") as data:
        for split in arrays:
            assert data[split]["y"] is data[split]["y_pulse"]
        assert data.attrs["class_names"] == ["noise", "pulse"]
        assert data.attrs["samplerate_x_Hz"] == DAS_ATTRS["samplerate_x_Hz"]


def test_store_das_made_converts_through_the_chunk_file_reader(tmp_path, monkeypatch):
    """x and y (chunks of whole rows) take the chunk-file reader; y_pulse, whose chunks are
    wider than its rows (as DAS makes them), takes zarr's own reading; both match zarr."""
    import npydir.conversion.adapters.zarr_store as Z

    path, arrays = _das_made(tmp_path)
    used = []
    real = Z._read_v2_chunks

    def spy(arr, *args):
        used.append((arr.shape[1], real(arr, *args)))
        return used[-1][1]

    monkeypatch.setattr(Z, "_read_v2_chunks", spy)
    npydir.convert(path, tmp_path / "d.npy", progress=False, memory_budget=40_000,
                   verify=True, threads=1)
    assert any(ok for _, ok in used)
    assert all(ok for width, ok in used if width == 3)  # x and y: 3 columns
    got, attrs = tree_of(tmp_path / "d.npy")
    np.testing.assert_array_equal(got["train/x"], arrays["train"]["x"].astype(np.float16))
    np.testing.assert_array_equal(got["val/y_pulse"], arrays["val"]["y_pulse"].astype("f2"))
    assert got["test/x"].shape == (0, 3)
    assert attrs[""] == DAS_ATTRS


def _check_das_layout(path: Path, rows: dict, clamp: bool = True) -> None:
    """Format 2 only, each array as DAS's init_store lays it out: whole-row chunks of
    1,000,000 rows (fewer for a shorter array when ``clamp``), Blosc lz4 with byte shuffle,
    "." chunk keys."""
    assert _formats_on_disk(path) == {2}
    assert json.loads((path / ".zgroup").read_text()) == {"zarr_format": 2}
    for name, n in rows.items():
        meta = json.loads((path / name / ".zarray").read_text())
        assert meta["zarr_format"] == 2 and meta["dimension_separator"] == "."
        assert meta["chunks"][0] == (max(1, min(1_000_000, n)) if clamp else 1_000_000), name
        assert meta["chunks"][1:] == meta["shape"][1:], name
        codec = meta["compressor"]
        assert (codec["id"], codec["cname"], codec["shuffle"]) == ("blosc", "lz4", 1), name


def _make_for_das(how: str, tmp_path: Path) -> Path:
    src = tmp_path / "src.npy"
    make_npydir(src)
    dst = tmp_path / "out.zarr"
    if how == "save":
        npydir.save(dst, npydir.load(src), das_compat=True)
    elif how == "convert":
        npydir.convert(src, dst, das_compat=True, progress=False)
    else:
        assert main(["convert", str(src), str(dst), "--das", "--no-progress"]) == 0
    return dst


@pytest.mark.parametrize("how", ["save", "convert", "cli"])
def test_das_writes_are_format_2_that_das_reads(tmp_path, how):
    dst = _make_for_das(how, tmp_path)
    ref = das_arrays()
    _check_das_layout(dst, {f"{s}/{n}": len(v) for s in ref for n, v in ref[s].items()})
    data, attrs = das_reads(dst)
    assert attrs == DAS_ATTRS
    assert sorted(data) == ["train", "val"]
    for split, members in ref.items():
        for name, value in members.items():
            assert data[split][name].dtype == value.dtype
            np.testing.assert_array_equal(data[split][name], value)


def test_make_dataset_to_zarr_is_what_das_reads(tmp_path):
    from npydir.das.synthetic import make_recordings

    pairs = make_recordings(tmp_path / "rec", n_recordings=3, seconds=1.0, samplerate=8000,
                            channels=2, seed=1)
    npydir.das.make_dataset(pairs, tmp_path / "ds.npy", suffixes=True)
    out = npydir.das.make_dataset(pairs, tmp_path / "ds.zarr", suffixes=True)
    assert out == tmp_path / "ds.zarr"
    ref = npydir.load(tmp_path / "ds.npy")
    names = [f"{s}/{n}" for s in ref for n in ref[s]]
    _check_das_layout(out, {n: ref[n.split("/")[0]][n.split("/")[1]].shape[0] for n in names})
    data, attrs = das_reads(out)
    assert sorted(data) == ["test", "train", "val"]
    for name in names:
        split, member = name.split("/")
        np.testing.assert_array_equal(data[split][member], np.asarray(ref[split][member]))
    for key in ("samplerate_x_Hz", "class_names", "class_types", "filename_train",
                "filename_startsample_val", "filename_endsample_test", "class_names_pulse"):
        assert attrs[key] == (ref.attrs[key].tolist() if isinstance(ref.attrs[key], np.ndarray)
                              else ref.attrs[key]), key
    # a second run replaces the zarr store (a store, so overwrite=True may replace it)
    npydir.das.make_dataset(pairs, out, suffixes=False, overwrite=True)
    assert "y_pulse" not in das_reads(out)[0]["train"]
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".ds.zarr")]


def test_make_dataset_to_zarr_interrupted_leaves_nothing(tmp_path, monkeypatch):
    """Interrupted while converting its build to zarr: no store under the name, no hidden
    build or partial conversion; an old store being replaced stays whole; the next run
    discards what a killed one left and never resumes it."""
    from npydir.conversion.adapters.zarr_store import ZarrDest
    from npydir.das.synthetic import make_recordings

    pairs = make_recordings(tmp_path / "rec", n_recordings=3, seconds=1.0, samplerate=8000,
                            channels=1, seed=2)
    out = tmp_path / "ds.zarr"
    real, calls = ZarrDest.write, []

    def interrupted(self, *args):
        calls.append(args[0])
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(self, *args)

    def hidden():
        return sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".ds.zarr"))

    monkeypatch.setattr(ZarrDest, "write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        npydir.das.make_dataset(pairs, out)
    assert not out.exists() and hidden() == []
    monkeypatch.setattr(ZarrDest, "write", real)
    npydir.das.make_dataset(pairs, out, suffixes=True)
    before = das_reads(out)
    calls.clear()
    monkeypatch.setattr(ZarrDest, "write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        npydir.das.make_dataset(pairs, out, overwrite=True)
    assert hidden() == []
    after = das_reads(out)
    assert after[1] == before[1] and sorted(after[0]["train"]) == sorted(before[0]["train"])
    # what a killed conversion leaves: a partial store and its journal, never resumed
    monkeypatch.setattr(ZarrDest, "write", real)
    (tmp_path / ".ds.zarr.partial").mkdir()
    (tmp_path / ".ds.zarr.partial" / "stale").write_text("from a killed run")
    (tmp_path / ".ds.zarr.partial.journal").write_text('{"plan": {}}\n')
    npydir.das.make_dataset(pairs, out, overwrite=True)
    assert hidden() == [] and "y_pulse" not in das_reads(out)[0]["train"]


def _assert_format_3_refused(tmp_path, capsys, how, *, das, error, message, cli_says):
    """save / convert / ``npydir convert`` of an npydir store into ``out.zarr`` with format 3
    (``das``: and for DAS) fail with ``error`` matching ``message`` (the CLI: one line holding
    every word of ``cli_says``), and write nothing."""
    src = tmp_path / "src.npy"
    make_npydir(src)
    dst = tmp_path / "out.zarr"
    if how == "cli":
        args = ["convert", str(src), str(dst), "--zarr-format", "3"] + (["--das"] if das else [])
        assert main(args) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and all(word in err[0] for word in cli_says), err
    else:
        with pytest.raises(error, match=message):
            if how == "save":
                npydir.save(dst, npydir.load(src), das_compat=das, zarr_format=3)
            else:
                npydir.convert(src, dst, das_compat=das, zarr_format=3, progress=False)
    assert _nothing_written(tmp_path, "out.zarr")


@pytest.mark.parametrize("how", ["save", "convert", "cli"])
def test_das_compat_with_format_3_is_refused_and_writes_nothing(tmp_path, capsys, how):
    _assert_format_3_refused(
        tmp_path, capsys, how, das=True, error=ConversionError,
        message=r"das_compat=True \(--das\) writes zarr format 2.*das\.io\.load",
        cli_says=("das.io.load", "out.zarr", "--zarr-format 3"))


# ----------------------------------------------------------------------------- zarr 2 limits


@only_zarr2
@pytest.mark.parametrize("how", ["save", "convert", "cli"])
def test_format_3_asked_of_zarr2_names_the_version(tmp_path, capsys, how):
    _assert_format_3_refused(
        tmp_path, capsys, how, das=False, error=MissingDependencyError,
        message=rf"zarr_format=3 .*needs zarr-python 3.*zarr {zarr.__version__}.*zarr_format=2",
        cli_says=(zarr.__version__, "--zarr-format 2", "out.zarr"))


def _format3_store(path: Path) -> Path:
    """A minimal zarr format 3 store (a root group with one attribute), written by hand so
    that zarr 2 can be shown one."""
    path.mkdir()
    (path / "zarr.json").write_text(json.dumps(
        {"zarr_format": 3, "node_type": "group", "attributes": {"rate": 8000}}))
    return path


@only_zarr2
def test_format_3_store_under_zarr2_is_a_clear_error(tmp_path):
    path = _format3_store(tmp_path / "v3.zarr")
    for call in (lambda: npydir.load(path),
                 lambda: npydir.convert(path, tmp_path / "o.npy", progress=False)):
        with pytest.raises(MissingDependencyError, match=r"format 3.*zarr>=3") as err:
            call()
        assert str(path) in str(err.value) and zarr.__version__ in str(err.value)
    assert not (tmp_path / "o.npy").exists()
    assert sorted(os.listdir(path)) == ["zarr.json"]  # nothing added to the store


@needs_zarr3
def test_format_3_store_under_zarr3_loads(tmp_path):
    path = _format3_store(tmp_path / "v3.zarr")
    with npydir.load(path) as data:
        assert dict(data) == {} and data.attrs == {"rate": 8000}


# ----------------------------------------------------------------------------- unsupported zarr


def _fake_zarr(version: str, **api) -> types.ModuleType:
    fake = types.ModuleType("zarr")
    fake.__version__ = version
    fake.__file__ = "/fake/zarr/__init__.py"
    for name, value in api.items():
        setattr(fake, name, value)
    return fake


@pytest.mark.parametrize("fake,expect", [
    (_fake_zarr("2.17.2", open_group=object), r"2\.18.*found zarr 2\.17\.2"),
    (_fake_zarr("2.11.0"), r"2\.18.*found zarr 2\.11\.0"),
    (_fake_zarr("3.0.0", open_group=object), r"found zarr 3\.0\.0.*API is neither"),
    (_fake_zarr("1.1"), r"found zarr 1\.1.*API is neither"),
    (_fake_zarr(""), r"found zarr unknown"),
], ids=["2.17", "2.11", "3-without-create_array", "1.x", "no-version"])
def test_unsupported_zarr_is_a_missing_dependency_error(tmp_path, monkeypatch, capsys, fake,
                                                       expect):
    make_npydir(tmp_path / "a.npy")
    npydir.convert(tmp_path / "a.npy", tmp_path / "a.zarr", progress=False)
    monkeypatch.setitem(sys.modules, "zarr", fake)
    calls = {
        "load": lambda: npydir.load(tmp_path / "a.zarr"),
        "convert from": lambda: npydir.convert(tmp_path / "a.zarr", tmp_path / "b.npy",
                                               progress=False),
        "convert to": lambda: npydir.convert(tmp_path / "a.npy", tmp_path / "b.zarr",
                                             progress=False),
        "save": lambda: npydir.save(tmp_path / "c.zarr", {"x": np.arange(3)}),
    }
    for what, call in calls.items():
        with pytest.raises(MissingDependencyError, match=expect):
            call()
    assert main(["info", str(tmp_path / "a.zarr")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "2.18" in err[0]
    for name in ("b.npy", "b.zarr", "c.zarr"):
        assert _nothing_written(tmp_path, name)


# ----------------------------------------------------------------------------- CLI, bench


def test_cli_info_reports_zarr_sizes_on_disk(tmp_path, capsys):
    npydir.save(tmp_path / "d.zarr", {"x": np.zeros((1000, 2), np.float32)}, compression="none")
    assert main(["info", str(tmp_path / "d.zarr")]) == 0
    out = capsys.readouterr().out
    line = next(s for s in out.splitlines() if "x  (1000, 2) float32" in s)
    # the chunk file (8.0 kB) plus what zarr counts for the metadata
    assert re.search(r"8\.0 kB, 8\.\d kB on disk", line), line


def test_bench_zarr_rows(tmp_path):
    from npydir.tools import bench

    store = bench.make_synthetic(tmp_path / "s.npy", size=40_000, channels=2)
    result = bench.run_bench(store, backends=["zarr", "zarr-das"], batch=2, window=16,
                             repeats=1, batches=1, workdir=tmp_path / "work")
    assert {"zarr", "zarr-das"} <= set(result["results"]["warm"])
    default, das = result["backends"]["zarr"], result["backends"]["zarr-das"]
    assert default["zarr_format"] == (2 if ZARR2 else 3)  # zarr's own default
    assert das["zarr_format"] == 2 and "lz4" in das["compressors"][0]
    _check_das_layout(Path(das["path"]), {"train/x": 5000}, clamp=False)
    root = open_group(das["path"], mode="r")
    assert zarr_format(root["train/x"]) == 2 and root["train/x"].dtype == np.float16
