"""convert(): every direction, every kind of value, every refusal."""

from __future__ import annotations

import json
import sys
import warnings

import numpy as np
import pytest

import npydir
from npydir.errors import (
    AlreadyExistsError,
    ConversionError,
    IntegrityError,
    StoreNotFoundError,
    UnknownBackendError,
)

from _convert_fixtures import (
    DAS_ATTRS,
    assert_same_tree,
    make_hdf5,
    make_npydir,
    make_zarr,
    tree_of,
)

zarr = pytest.importorskip("zarr")
h5py = pytest.importorskip("h5py")
from _zarr import compressor_text, create_array, formats, zarr_format  # noqa: E402
from _zarr import open_group as _zarr_group  # noqa: E402

C = sys.modules["npydir.conversion.engine"]

pytestmark = [pytest.mark.zarr,
              pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning",
                                         "ignore::RuntimeWarning")]


@pytest.mark.parametrize("fmt", formats())
def test_zarr_to_npydir_das_dataset(tmp_path, fmt):
    arrays = make_zarr(tmp_path / "d.zarr", zarr_format=fmt, chunk_rows=400)
    report = npydir.convert(tmp_path / "d.zarr", tmp_path / "d.npy", progress=False,
                            memory_budget=20_000, verify=True)
    got, attrs = tree_of(tmp_path / "d.npy")
    for split, members in arrays.items():
        for name, value in members.items():
            assert got[f"{split}/{name}"].dtype == value.dtype
            np.testing.assert_array_equal(got[f"{split}/{name}"], value)
    assert attrs[""] == DAS_ATTRS
    assert report.blocks_written > len(report.arrays)  # really streamed in several blocks
    assert set(report.checksums) == set(got)
    assert not (tmp_path / ".d.npy.partial").exists()
    assert not (tmp_path / ".d.npy.partial.journal").exists()


def test_zarr_zip_source(tmp_path):
    from zarr.storage import ZipStore

    store = ZipStore(tmp_path / "d.zarr.zip", mode="w")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        root = _zarr_group(store)
        root.attrs["samplerate_x_Hz"] = 8000
        x = create_array(root.create_group("train"), "x", shape=(100, 2), dtype="i2",
                         chunks=(30, 2))
        x[:] = np.arange(200, dtype="i2").reshape(100, 2)
    store.close()
    npydir.convert(tmp_path / "d.zarr.zip", tmp_path / "d.npy", progress=False, verify=True)
    got, attrs = tree_of(tmp_path / "d.npy")
    np.testing.assert_array_equal(got["train/x"], np.arange(200).reshape(100, 2))
    assert attrs[""] == {"samplerate_x_Hz": 8000}


def test_hdf5_to_npydir(tmp_path):
    arrays = make_hdf5(tmp_path / "d.h5", chunk_rows=300)
    report = npydir.convert(tmp_path / "d.h5", tmp_path / "d.npy", progress=False, verify=True,
                            memory_budget=30_000)
    got, attrs = tree_of(tmp_path / "d.npy")
    np.testing.assert_array_equal(got["train/x"], arrays["train"]["x"])
    np.testing.assert_array_equal(got["val/y_pulse"], arrays["val"]["y_pulse"])
    # h5py hands back numpy values; the store keeps them as such
    assert attrs[""]["class_names"] == DAS_ATTRS["class_names"]
    assert int(attrs[""]["samplerate_x_Hz"]) == 10_000
    assert report.refused == {}


@pytest.mark.parametrize("fmt", formats())
def test_npydir_to_zarr_options(tmp_path, fmt):
    make_npydir(tmp_path / "d.npy")
    npydir.convert(tmp_path / "d.npy", tmp_path / "d.zarr", progress=False, zarr_format=fmt,
                   chunks=256, compression="zstd:1", verify=True)
    root = _zarr_group(tmp_path / "d.zarr", fmt, mode="r")
    assert zarr_format(root) == fmt
    x = root["train/x"]
    assert x.chunks == (256, 3)
    assert dict(root.attrs)["class_names"] == DAS_ATTRS["class_names"]
    assert "zstd" in compressor_text(x).lower()


def test_npydir_to_hdf5_options(tmp_path):
    arrays = make_npydir(tmp_path / "d.npy")
    npydir.convert(tmp_path / "d.npy", tmp_path / "d.h5", progress=False, chunks=(128, 3),
                   compression="gzip:3", verify=True)
    with h5py.File(tmp_path / "d.h5", "r") as f:
        x = f["train/x"]
        assert x.chunks == (128, 3) and x.compression == "gzip" and x.compression_opts == 3
        np.testing.assert_array_equal(x[...], arrays["train"]["x"])
        assert f.attrs["samplerate_x_Hz"] == 10_000  # native HDF5 value for other readers


def test_progress_bar_reports_bytes(tmp_path, capsys):
    make_zarr(tmp_path / "d.zarr")
    npydir.convert(tmp_path / "d.zarr", tmp_path / "d.npy", progress=True)
    err = capsys.readouterr().err
    assert "B/s" in err and "convert d.zarr" in err


# ----------------------------------------------------------------------------- every value


def _zoo():
    rng = np.random.default_rng(1)
    return {
        "f2": rng.standard_normal((7, 2)).astype("f2"),
        "f8_be": np.arange(9, dtype=">f8").reshape(3, 3),
        "i8_be": np.arange(5, dtype=">i8"),
        "u1": np.arange(6, dtype="u1"),
        "bool": np.array([True, False, True]),
        "c16": (np.arange(4) + 1j * np.arange(4)).astype("c16"),
        "c8": np.ones(3, "c8") * (1 - 2j),
        "S": np.array([b"ab", b"", b"xyz"], dtype="S3"),
        "U": np.array(["ä", "bcd", ""], dtype="U3"),
        "struct": np.array([(1, 2.5), (3, -1.0)], dtype=[("a", "<i4"), ("b", "<f8")]),
        "zero_d": np.array(3.25),
        "empty": np.zeros((0, 4), "f4"),
        "empty2": np.zeros((5, 0), "i2"),
    }


@pytest.mark.parametrize("fmt", formats())
def test_every_value_round_trips_through_zarr(tmp_path, fmt):
    zoo = _zoo()
    with npydir.open(tmp_path / "a.npy", "w") as root:
        for name, value in zoo.items():
            root.create_dataset(name, data=value)
    npydir.convert(tmp_path / "a.npy", tmp_path / "b.zarr", progress=False, zarr_format=fmt,
                   verify=True)
    npydir.convert(tmp_path / "b.zarr", tmp_path / "c.npy", progress=False, verify=True)
    assert_same_tree(tree_of(tmp_path / "a.npy"), tree_of(tmp_path / "c.npy"))


def test_every_value_round_trips_through_hdf5(tmp_path):
    zoo = _zoo()
    with npydir.open(tmp_path / "a.npy", "w") as root:
        for name, value in zoo.items():
            root.create_dataset(name, data=value)
    npydir.convert(tmp_path / "a.npy", tmp_path / "b.h5", progress=False, verify=True)
    with h5py.File(tmp_path / "b.h5", "r") as f:
        assert f["f8_be"].dtype == np.dtype(">f8")  # byte order kept in HDF5
        assert f["U"].attrs["npydir_dtype"] == "<U3"
    npydir.convert(tmp_path / "b.h5", tmp_path / "c.npy", progress=False, verify=True)
    assert_same_tree(tree_of(tmp_path / "a.npy"), tree_of(tmp_path / "c.npy"))


def test_big_endian_kept_in_npydir(tmp_path):
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f["x"] = np.arange(10, dtype=">i4")
    npydir.convert(tmp_path / "a.h5", tmp_path / "a.npy", progress=False)
    x = np.load(tmp_path / "a.npy" / "x.npy")
    assert x.dtype == np.dtype(">i4") and x.tolist() == list(range(10))


@pytest.mark.parametrize("fmt", formats())
def test_zarr_fill_values_and_missing_chunks(tmp_path, fmt):
    root = _zarr_group(tmp_path / "a.zarr", fmt)
    a = create_array(root, "x", shape=(10, 2), dtype="f4", chunks=(3, 2), fill_value=np.nan)
    a[3:6] = 1.0  # only one chunk written; the others are missing
    b = create_array(root, "i", shape=(7,), dtype="i2", chunks=(2,), fill_value=-5)
    b[0:2] = [1, 2]
    npydir.convert(tmp_path / "a.zarr", tmp_path / "a.npy", progress=False)
    x = np.load(tmp_path / "a.npy" / "x.npy")
    assert np.isnan(x[:3]).all() and (x[3:6] == 1).all() and np.isnan(x[6:]).all()
    assert np.load(tmp_path / "a.npy" / "i.npy").tolist() == [1, 2, -5, -5, -5, -5, -5]


@pytest.mark.parametrize("fmt", formats())
def test_zarr_vlen_strings_become_fixed_width(tmp_path, fmt):
    root = _zarr_group(tmp_path / "a.zarr", fmt)
    a = create_array(root, "names", shape=(4,), dtype=str, chunks=(3,))
    a[:] = np.array(["pulse", "", "sine-song", "ä"], dtype=object)
    report = npydir.convert(tmp_path / "a.zarr", tmp_path / "a.npy", progress=False, verify=True)
    got = np.load(tmp_path / "a.npy" / "names.npy")
    assert got.dtype == np.dtype("<U9")
    assert got.tolist() == ["pulse", "", "sine-song", "ä"]
    assert report.converted["names"][1] == "<U9"
    assert "dtype converted: names" in str(report)


def test_hdf5_vlen_strings_and_fixed_utf8(tmp_path):
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f.create_dataset("v", data=np.array(["a", "bbb", "é"], dtype=object),
                         dtype=h5py.string_dtype())
        f.create_dataset("vb", data=np.array([b"a", b"bb"], dtype=object),
                         dtype=h5py.string_dtype("ascii"))
        fixed = h5py.string_dtype("utf-8", 2)
        f.create_dataset("fixed", data=np.array(["xy".encode(), "é".encode()], dtype=fixed))
        f.create_dataset("ascii", data=np.array([b"ab", b"c"], dtype="S2"))
        f["scalar_str"] = "hello"
    report = npydir.convert(tmp_path / "a.h5", tmp_path / "a.npy", progress=False)
    load = lambda n: np.load(tmp_path / "a.npy" / f"{n}.npy")  # noqa: E731
    assert load("v").tolist() == ["a", "bbb", "é"] and load("v").dtype == np.dtype("<U3")
    assert load("vb").tolist() == [b"a", b"bb"] and load("vb").dtype == np.dtype("S2")
    assert load("fixed").tolist() == ["xy", "é"]
    assert load("ascii").dtype == np.dtype("S2")
    assert load("scalar_str").shape == () and load("scalar_str")[()] == "hello"
    assert {"v", "vb", "fixed", "scalar_str"} <= set(report.converted)


# ----------------------------------------------------------------------------- refusals


def test_hdf5_references_ragged_and_null_refused_per_array(tmp_path):
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f["ok"] = np.arange(3)
        refs = f.create_dataset("refs", (2,), dtype=h5py.ref_dtype)
        refs[0] = f["ok"].ref
        rag = f.create_dataset("ragged", (2,), dtype=h5py.vlen_dtype("i4"))
        rag[0] = [1, 2]
        rag[1] = [3]
        f.create_dataset("null", data=h5py.Empty("f4"))
        f.attrs["ref_attr"] = f["ok"].ref
    with pytest.warns(UserWarning, match="refs not converted"):
        report = npydir.convert(tmp_path / "a.h5", tmp_path / "a.npy", progress=False)
    assert set(report.refused) == {"refs", "ragged", "null"}
    assert "reference" in report.refused["refs"]
    assert "ragged" in report.refused["ragged"]
    assert "dataspace" in report.refused["null"]
    assert "ref_attr" in next(iter(report.dropped_attrs))
    root = npydir.open(tmp_path / "a.npy", "r")
    assert list(root) == ["ok"]
    assert set(root.attrs["npydir_refused"]) == {"refs", "ragged", "null"}
    with pytest.raises(ConversionError, match="3 arrays cannot be converted"):
        npydir.convert(tmp_path / "a.h5", tmp_path / "b.npy", progress=False, strict=True)
    assert not (tmp_path / "b.npy").exists() and not (tmp_path / ".b.npy.partial").exists()


def test_hdf5_destination_refuses_datetimes(tmp_path):
    with npydir.open(tmp_path / "a.npy", "w") as root:
        t = root.create_dataset("t", shape=(1,), dtype="M8[D]")
        t[...] = np.array(["2024-01-01"], dtype="M8[D]")
        root.create_dataset("x", data=np.arange(3))
        root.create_dataset("su", data=np.array([(1, "a")], dtype=[("i", "i4"), ("s", "U2")]))
    with pytest.warns(UserWarning, match="not converted"):
        report = npydir.convert(tmp_path / "a.npy", tmp_path / "a.h5", progress=False)
    assert "datetime" in report.refused["t"]
    assert "field HDF5 cannot store" in report.refused["su"]
    with h5py.File(tmp_path / "a.h5", "r") as f:
        assert list(f) == ["x"]


def test_soft_and_external_links_recorded_not_followed(tmp_path):
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["data"] = np.arange(3)
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f["g/x"] = np.arange(4)
        f["g/soft"] = h5py.SoftLink("/g/x")
        f["g/ext"] = h5py.ExternalLink("other.h5", "/data")
    with pytest.warns(UserWarning, match="link"):
        report = npydir.convert(tmp_path / "a.h5", tmp_path / "a.npy", progress=False)
    assert report.links == {"g/soft": "/g/x", "g/ext": "other.h5:/data"}
    g = npydir.open(tmp_path / "a.npy", "r")["g"]
    assert list(g) == ["x"]
    assert g.attrs["npydir_links"] == {"soft": "/g/x", "ext": "other.h5:/data"}


def test_unusable_names_escaped_and_restored(tmp_path):
    names = [".hidden", "a:b", "attrs", "x.npy", "CON", "Case", "case", "per%cent", "sp ace "]
    with h5py.File(tmp_path / "a.h5", "w") as f:
        for i, name in enumerate(names):
            f[name] = np.full(2, i)
        f.create_group("grp?").attrs["k"] = 1
    report = npydir.convert(tmp_path / "a.h5", tmp_path / "a.npy", progress=False)
    root = npydir.open(tmp_path / "a.npy", "r")
    stored = {root[k].attrs.get("npydir_original_name", k): k for k in root}
    assert set(stored) == set(names) | {"grp?"}
    for i, name in enumerate(names):
        assert root[stored[name]][...].tolist() == [i, i]
    assert set(report.renamed) == set(names) - {"Case"} | {"grp?"}  # 'Case' came first
    # and back: the original names return
    npydir.convert(tmp_path / "a.npy", tmp_path / "b.h5", progress=False)
    with h5py.File(tmp_path / "b.h5", "r") as f:
        assert set(f) == set(names) | {"grp?"}
        assert "npydir_original_name" not in f["attrs"].attrs
        assert f["grp?"].attrs["k"] == 1


def test_refusals_of_paths_and_options(tmp_path):
    make_npydir(tmp_path / "a.npy")
    with pytest.raises(UnknownBackendError, match=r"\.zarr"):
        npydir.convert(tmp_path / "a.npy", tmp_path / "a.parquet", progress=False)
    with pytest.raises(StoreNotFoundError, match="missing.zarr"):
        npydir.convert(tmp_path / "missing.zarr", tmp_path / "b.npy", progress=False)
    with pytest.raises(ConversionError, match="zip"):
        npydir.convert(tmp_path / "a.npy", tmp_path / "b.zarr.zip", progress=False)
    with pytest.raises(ConversionError, match="Dask"):
        npydir.convert(tmp_path / "a.npy", tmp_path / "b.h5", progress=False, client=object())
    with pytest.raises(ConversionError, match="zarr_format"):
        npydir.convert(tmp_path / "a.npy", tmp_path / "b.zarr", progress=False, zarr_format=4)
    with pytest.raises(ConversionError, match="compression"):
        npydir.convert(tmp_path / "a.npy", tmp_path / "b.h5", progress=False, compression="xz")
    with pytest.raises(ConversionError, match="zarr compression 'lzma'"):
        npydir.convert(tmp_path / "a.npy", tmp_path / "b.zarr", progress=False,
                       compression="lzma")
    with pytest.raises(ValueError, match="memory_budget"):
        npydir.convert(tmp_path / "a.npy", tmp_path / "c.zarr", progress=False, memory_budget=0)
    npydir.convert(tmp_path / "a.npy", tmp_path / "d.zarr", progress=False)
    with pytest.raises(AlreadyExistsError, match="overwrite=True"):
        npydir.convert(tmp_path / "a.npy", tmp_path / "d.zarr", progress=False)
    npydir.convert(tmp_path / "a.npy", tmp_path / "d.zarr", progress=False, overwrite=True)
    assert not (tmp_path / ".d.zarr.replaced").exists()


def test_verify_detects_corruption(tmp_path, monkeypatch):
    from npydir.conversion.adapters.zarr_store import ZarrDest

    make_npydir(tmp_path / "a.npy")
    real = ZarrDest.write

    def corrupt(self, path, start, stop, block):  # one wrong value on the way to the disk
        block = np.array(block)
        if path == "train/x" and start == 0:
            block.flat[0] += 1
        real(self, path, start, stop, block)

    monkeypatch.setattr(ZarrDest, "write", corrupt)
    with pytest.raises(IntegrityError, match="train/x"):
        npydir.convert(tmp_path / "a.npy", tmp_path / "b.zarr", progress=False, verify=True)


def test_checksums_match_between_backends(tmp_path):
    make_zarr(tmp_path / "a.zarr")
    make_hdf5(tmp_path / "a.h5")
    assert C.checksums(tmp_path / "a.zarr") == C.checksums(tmp_path / "a.h5")


def test_journal_is_json_lines_with_plan(tmp_path):
    make_zarr(tmp_path / "a.zarr")
    from npydir.conversion.journal import Journal

    plan = {"src": "x", "arrays": []}
    j = Journal(tmp_path / ".j", plan, interval=0)
    j.record("a", 0, 10)
    j.commit(lambda: None)
    j.close()
    lines = (tmp_path / ".j").read_text().splitlines()
    assert json.loads(lines[0]) == {"plan": plan}
    assert json.loads(lines[1]) == {"a": "a", "r": [0, 10]}
    with open(tmp_path / ".j", "a") as fh:
        fh.write('{"a": "a", "r": [10')  # torn tail from a kill
    j = Journal(tmp_path / ".j", plan)
    assert j.matched and j.is_done("a", 0, 10) and not j.is_done("a", 0, 11)
    with pytest.raises(npydir.errors.LockError, match="running"):
        Journal(tmp_path / ".j", plan)
    j.close()


@pytest.mark.parametrize("separator", [".", "/"])
def test_zarr2_fast_path_matches_zarr(tmp_path, separator, monkeypatch):
    """DAS-style zarr 2 stores are decompressed chunk file by chunk file into the block
    buffer; the result must equal zarr's own reading, missing and partial chunks included."""
    import npydir.conversion.adapters.zarr_store as Z

    root = _zarr_group(tmp_path / "a.zarr", 2)
    data = np.random.default_rng(3).standard_normal((1_050, 3)).astype("f2")
    a = create_array(root, "x", shape=data.shape, dtype=data.dtype, chunks=(100, 3),
                     fill_value=7, separator=separator)
    a[:500] = data[:500]
    a[600:] = data[600:]  # chunk 5 (rows 500-599) never written
    used = []
    real = Z._read_v2_chunks
    def spy(*args):
        used.append(real(*args))
        return used[-1]

    monkeypatch.setattr(Z, "_read_v2_chunks", spy)
    npydir.convert(tmp_path / "a.zarr", tmp_path / "a.npy", progress=False, memory_budget=20_000)
    assert len(used) >= 2 and all(used)  # every block took the fast path
    got = np.load(tmp_path / "a.npy" / "x.npy")
    np.testing.assert_array_equal(got, a[...])
    assert (got[500:600] == 7).all()


def test_npydir_to_npydir_keeps_escaped_names(tmp_path):
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f["a:b"] = np.arange(3)
    npydir.convert(tmp_path / "a.h5", tmp_path / "a.npy", progress=False)
    npydir.convert(tmp_path / "a.npy", tmp_path / "b.npy", progress=False, verify=True)
    root = npydir.open(tmp_path / "b.npy", "r")
    assert list(root) == ["a%3Ab"]
    assert root["a%3Ab"].attrs["npydir_original_name"] == "a:b"


@pytest.mark.parametrize("layout", ["contiguous", "chunked", "chunked-partial", "gzip"])
def test_hdf5_raw_copy_matches_decoding(tmp_path, layout, monkeypatch):
    """Unfiltered HDF5 rows are copied file to file (copy_file_range); the result must equal
    h5py's reading, big-endian and a partial last chunk included; filtered data decodes."""
    from npydir.conversion.adapters.hdf5 import Hdf5Source

    data = np.arange(1_000 * 3, dtype=">i4").reshape(1_000, 3)
    with h5py.File(tmp_path / "a.h5", "w") as f:
        kw = {"contiguous": {}, "chunked": {"chunks": (100, 3)},
              "chunked-partial": {"chunks": (300, 3)},
              "gzip": {"chunks": (100, 3), "compression": "gzip"}}[layout]
        f.create_dataset("x", data=data, **kw)
    copied = []
    real = Hdf5Source.copy_rows_to

    def spy(self, *args):
        copied.append(real(self, *args))
        return copied[-1]

    monkeypatch.setattr(Hdf5Source, "copy_rows_to", spy)
    npydir.convert(tmp_path / "a.h5", tmp_path / "a.npy", progress=False, memory_budget=30_000,
                   verify=True)
    got = np.load(tmp_path / "a.npy" / "x.npy")
    assert got.dtype == np.dtype(">i4")
    np.testing.assert_array_equal(got, data)
    assert len(copied) >= 2
    assert all(copied) if layout != "gzip" else not any(copied)


@pytest.mark.parametrize("fmt", formats())
def test_unwritten_string_chunks_read_as_empty(tmp_path, fmt):
    """zarr skips chunks equal to the fill value; for strings that must come back as ''."""
    root = _zarr_group(tmp_path / "a.zarr", fmt)
    a = create_array(root, "u", shape=(6,), dtype="<U2", chunks=(2,))
    a[:] = np.array(["", "", "ab", "", "", ""], dtype="<U2")
    npydir.convert(tmp_path / "a.zarr", tmp_path / "a.npy", progress=False, verify=True)
    assert np.load(tmp_path / "a.npy" / "u.npy").tolist() == ["", "", "ab", "", "", ""]


def test_rows_file_direct_and_buffered_writes_agree(tmp_path):
    """RowsFile writes the 4 KiB-aligned interior of a block with O_DIRECT and the edges
    buffered; blocks of odd sizes at odd offsets, aligned or not, must land byte-exact."""
    from npydir.conversion.adapters.npydir_store import RowsFile

    shape = (5_000, 3)
    expected = np.random.default_rng(0).standard_normal(shape).astype("<f4")
    with npydir.open(tmp_path / "a.npy", "w") as root:
        root.create_dataset("x", shape=shape, dtype="<f4")
    rows = RowsFile(tmp_path / "a.npy" / "x.npy")
    if rows.dfd < 0:
        pytest.skip("the filesystem refuses O_DIRECT")
    node = C.Node(path="x", kind="array", shape=shape, dtype=np.dtype("<f4"))
    bounds = [0, 1, 700, 701, 2_345, 4_000, 4_999, 5_000]
    for i, (start, stop) in enumerate(zip(bounds, bounds[1:])):
        if i % 2:  # a plain array: buffered
            rows.write(start, stop, expected[start:stop].copy())
        else:  # the thread buffer placed at the file's phase: the direct path
            buf = C._block_buffer(node, start, stop, rows.file_phase(start))
            buf[...] = expected[start:stop]
            rows.write(start, stop, buf)
    assert rows.dfd >= 0  # no fallback happened
    rows.flush()
    rows.close()
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy" / "x.npy"), expected)


@pytest.mark.parametrize("fmt", formats())
def test_negative_zero_survives_zarr(tmp_path, fmt):
    with npydir.open(tmp_path / "a.npy", "w") as root:
        root.create_dataset("z", data=np.array(-0.0 - 0.0j, dtype="c8"))
        root.create_dataset("f", data=np.array([-0.0, 0.0, -0.0], dtype="f4"))
    npydir.convert(tmp_path / "a.npy", tmp_path / "b.zarr", progress=False, zarr_format=fmt)
    npydir.convert(tmp_path / "b.zarr", tmp_path / "c.npy", progress=False, verify=True)
    assert_same_tree(tree_of(tmp_path / "a.npy"), tree_of(tmp_path / "c.npy"))


@pytest.mark.parametrize("fmt", formats())
def test_zarr_to_hdf5_and_back(tmp_path, fmt):
    arrays = make_zarr(tmp_path / "a.zarr", zarr_format=fmt, chunk_rows=700)
    npydir.convert(tmp_path / "a.zarr", tmp_path / "b.h5", progress=False, verify=True,
                   compression="gzip:1")
    npydir.convert(tmp_path / "b.h5", tmp_path / "c.zarr", progress=False, verify=True,
                   zarr_format=fmt)
    with npydir.load(tmp_path / "c.zarr") as data:
        np.testing.assert_array_equal(data["train"]["y_pulse"][...], arrays["train"]["y_pulse"])
        assert data.attrs == DAS_ATTRS
