"""HDF5 rows read from the file's bytes (npydir.conversion.adapters.hdf5_direct) equal h5py's own read.

Every layout the direct reader takes on — contiguous, chunked (whole rows or not), deflate,
shuffle, both, partial edge chunks, never-written chunks and their fill values, big-endian,
chunks whose filter mask skipped a filter, a userblock — is compared byte for byte with
``dset[start:stop]``; layouts it must leave to h5py (other filters, no fill value) are
checked to be declined, and a conversion of them still gives h5py's bytes.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import numpy as np
import pytest
from _threads import run_in_threads
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import npydir
from npydir.errors import ConversionError

h5py = pytest.importorskip("h5py")
from npydir.conversion.adapters.hdf5_direct import DirectReader  # noqa: E402

RANGES = [(0, None), (0, 1), (5, 17), (63, 65), (100, 300), (-53, None), (-1, None)]


def _ranges(n: int):
    for a, b in RANGES:
        a = a % n if a < 0 else min(a, n - 1)
        b = n if b is None else min(b, n)
        if b > a:
            yield a, b


def _assert_same_as_h5py(path: Path, name: str, *, expect_direct: bool = True) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        with h5py.File(path, "r") as f:
            dset = f[name]
            reader = DirectReader.create(dset, fd, f"{path}:/{name}")
            if not expect_direct:
                assert reader is None
                return
            assert reader is not None, f"{name}: declined"
            for a, b in _ranges(dset.shape[0]):
                out = np.full((b - a,) + dset.shape[1:], 0x5A, dtype=dset.dtype)
                assert reader.read_into(a, b, out), (name, a, b)
                want = dset[a:b]
                assert out.dtype == want.dtype
                assert out.tobytes() == want.tobytes(), (name, a, b)
    finally:
        os.close(fd)


def _data(shape, dtype, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        return rng.integers(0, 2, shape).astype(bool)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        native = dtype.newbyteorder("=")
        return rng.integers(info.min, info.max, shape, endpoint=True, dtype=native).astype(dtype)
    if dtype.kind == "c":
        return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


LAYOUTS = {
    "contiguous": {},
    "chunked": {"chunks": (64, 7)},
    "chunked-part-columns": {"chunks": (64, 3)},
    "gzip": {"chunks": (100, 7), "compression": "gzip"},
    "shuffle-gzip": {"chunks": (100, 7), "compression": "gzip", "shuffle": True},
    "shuffle": {"chunks": (100, 7), "shuffle": True},
    "shuffle-gzip-part-columns": {"chunks": (50, 2), "compression": "gzip", "shuffle": True,
                                  "compression_opts": 9},
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("dtype", ["<f4", ">f4", ">i8", "<u2", "i1", "f2", "<f8", "c8", ">c16",
                                   "bool"])
def test_layouts_and_dtypes(tmp_path, layout, dtype):
    path = tmp_path / "a.h5"
    data = _data((1003, 7), dtype)  # 1003 rows: the last chunk is partial in every layout
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=data, **LAYOUTS[layout])
    _assert_same_as_h5py(path, "x")


def test_three_dimensional_chunks(tmp_path):
    path = tmp_path / "a.h5"
    data = _data((301, 4, 5), ">i4")
    with h5py.File(path, "w") as f:
        f.create_dataset("whole", data=data, chunks=(30, 4, 5), compression="gzip")
        f.create_dataset("split", data=data, chunks=(7, 3, 2), shuffle=True)
    _assert_same_as_h5py(path, "whole")
    _assert_same_as_h5py(path, "split")


@pytest.mark.parametrize("kwargs", [{}, {"compression": "gzip", "shuffle": True}])
@pytest.mark.parametrize("fillvalue", [None, -7])
def test_missing_chunks_read_as_the_fill_value(tmp_path, kwargs, fillvalue):
    path = tmp_path / "a.h5"
    with h5py.File(path, "w") as f:
        d = f.create_dataset("x", shape=(1000, 3), dtype=">i2", chunks=(100, 3),
                             fillvalue=fillvalue, **kwargs)
        d[150:260] = 3  # chunks 1 and 2 written (partly), the others never
        d[990:] = 4
        f.create_dataset("contig", shape=(500, 3), dtype="f4", fillvalue=fillvalue)  # unwritten
    with h5py.File(path, "r") as f:
        assert f["x"].id.get_chunk_info_by_coord((500, 0)).byte_offset is None
        assert f["contig"].id.get_offset() is None
    _assert_same_as_h5py(path, "x")
    _assert_same_as_h5py(path, "contig")


def test_no_fill_value_is_left_to_h5py(tmp_path):
    """With fill time "never" HDF5 leaves missing chunks to the caller: h5py decides."""
    path = tmp_path / "a.h5"
    with h5py.File(path, "w") as f:
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_chunk((100, 3))
        dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
        space = h5py.h5s.create_simple((1000, 3))
        dsid = h5py.h5d.create(f.id, b"x", h5py.h5t.NATIVE_FLOAT, space, dcpl=dcpl)
        d = h5py.Dataset(dsid)
        d[0:100] = 1.5
    fd = os.open(path, os.O_RDONLY)
    try:
        with h5py.File(path, "r") as f:
            reader = DirectReader.create(f["x"], fd, "x")
            out = np.empty((100, 3), "<f4")
            assert reader.read_into(0, 100, out)  # a written chunk: read directly
            assert (out == 1.5).all()
            assert not reader.read_into(0, 300, np.empty((300, 3), "<f4"))  # missing ones
    finally:
        os.close(fd)
    npydir.convert(path, tmp_path / "a.npy", progress=False)
    # rows of never-written chunks are whatever the buffer held (HDF5 leaves them alone),
    # so only the written rows have a value to compare
    got = np.load(tmp_path / "a.npy" / "x.npy")
    assert got.shape == (1000, 3) and (got[:100] == 1.5).all()


def test_chunk_with_a_skipped_filter(tmp_path):
    """A chunk's filter mask can say a filter was not applied (written raw): honour it."""
    path = tmp_path / "a.h5"
    data = _data((400, 3), "<i4")
    with h5py.File(path, "w") as f:
        d = f.create_dataset("x", data=data, chunks=(100, 3), compression="gzip")
        raw = data[100:200].tobytes()
        d.id.write_direct_chunk((100, 0), raw, filter_mask=1)  # deflate skipped
        d.id.write_direct_chunk((200, 0), zlib.compress(data[200:300].tobytes()))
    with h5py.File(path, "r") as f:
        assert f["x"].id.get_chunk_info_by_coord((100, 0)).filter_mask == 1
    _assert_same_as_h5py(path, "x")


def test_userblock(tmp_path):
    path = tmp_path / "a.h5"
    data = _data((500, 3), "<f8")
    with h5py.File(path, "w", userblock_size=1024) as f:
        f.create_dataset("contig", data=data)
        f.create_dataset("chunked", data=data, chunks=(64, 3), compression="gzip")
    _assert_same_as_h5py(path, "contig")
    _assert_same_as_h5py(path, "chunked")


@pytest.mark.parametrize("kwargs", [
    {"chunks": (100, 3), "compression": "lzf"},
    {"chunks": (100, 3), "fletcher32": True},
    {"chunks": (100, 3), "scaleoffset": 2},
])
def test_unknown_filters_fall_back_to_h5py(tmp_path, kwargs):
    path = tmp_path / "a.h5"
    data = _data((1003, 3), "<f4") if "scaleoffset" not in kwargs else _data((1003, 3), "<i4")
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=data, **kwargs)
    _assert_same_as_h5py(path, "x", expect_direct=False)
    npydir.convert(path, tmp_path / "a.npy", progress=False, memory_budget=40_000, verify=True)
    with h5py.File(path, "r") as f:
        assert np.load(tmp_path / "a.npy" / "x.npy").tobytes() == f["x"][...].tobytes()


def test_other_layouts_and_types_are_declined(tmp_path):
    path = tmp_path / "a.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("compact", data=np.arange(10, dtype="i4"),
                         dcpl=_compact_dcpl())
        f.create_dataset("strings", data=np.array([b"ab", b"cd"]), chunks=(1,))
        f.create_dataset("compound", data=np.zeros(4, dtype=[("a", "<i4"), ("b", "<f8")]))
        f.create_dataset("scalar", data=3.0)
    for name in ("compact", "strings", "compound", "scalar"):
        _assert_same_as_h5py(path, name, expect_direct=False)


def _compact_dcpl():
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_layout(h5py.h5d.COMPACT)
    return dcpl


def test_wrong_buffers_are_refused(tmp_path):
    path = tmp_path / "a.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=_data((100, 3), "<f4"), chunks=(10, 3))
    fd = os.open(path, os.O_RDONLY)
    try:
        with h5py.File(path, "r") as f:
            reader = DirectReader.create(f["x"], fd, "x")
            assert not reader.read_into(0, 10, np.empty((10, 3), "<f8"))  # dtype
            assert not reader.read_into(0, 10, np.empty((10, 4), "<f4"))  # shape
            assert not reader.read_into(0, 10, np.empty((3, 10), "<f4").T)  # not C order
            assert not reader.read_into(5, 5, np.empty((0, 3), "<f4"))  # empty range
            assert not reader.read_into(95, 105, np.empty((10, 3), "<f4"))  # past the end
    finally:
        os.close(fd)


@pytest.mark.parametrize("layout", ["contiguous", "gzip"])
def test_truncated_file_is_a_clear_error(tmp_path, layout):
    path = tmp_path / "a.h5"
    with h5py.File(path, "w") as f:
        kwargs = {"chunks": (1000, 3), "compression": "gzip"} if layout == "gzip" else {}
        f.create_dataset("x", data=_data((20_000, 3), "<f8"), **kwargs)
    fd = os.open(path, os.O_RDONLY)
    try:
        with h5py.File(path, "r") as f:
            reader = DirectReader.create(f["x"], fd, str(path))
            os.truncate(path, os.path.getsize(path) // 2)
            with pytest.raises(ConversionError, match=f"{path}.*(truncated|chunk)"):
                reader.read_into(0, 20_000, np.empty((20_000, 3), "<f8"))
    finally:
        os.close(fd)


def test_threads_read_disjoint_ranges_at_once(tmp_path):
    path = tmp_path / "a.h5"
    data = _data((20_000, 5), ">f4")
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=data, chunks=(333, 5), compression="gzip", shuffle=True)
    fd = os.open(path, os.O_RDONLY)
    out = np.empty_like(data)
    try:
        with h5py.File(path, "r") as f:
            reader = DirectReader.create(f["x"], fd, "x")

            def work(k):
                for a in range(k * 1000, 20_000, 4000):
                    assert reader.read_into(a, a + 1000, out[a:a + 1000])

            run_in_threads(work, 4)
    finally:
        os.close(fd)
    assert out.tobytes() == data.tobytes()


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.integers(1, 400), cols=st.integers(1, 6), chunk_rows=st.integers(1, 120),
       chunk_cols=st.integers(1, 6), dtype=st.sampled_from(["<i2", ">u4", "<f8", ">f2", "u1"]),
       compression=st.sampled_from([None, "gzip"]), shuffle=st.booleans(),
       contiguous=st.booleans(), written=st.integers(0, 400), seed=st.integers(0, 2**16),
       a=st.integers(0, 400), b=st.integers(1, 400))
def test_property_same_as_h5py(tmp_path_factory, rows, cols, chunk_rows, chunk_cols, dtype,
                               compression, shuffle, contiguous, written, seed, a, b):
    path = tmp_path_factory.mktemp("p") / "a.h5"
    data = _data((rows, cols), dtype, seed)
    kwargs: dict = {}
    if not contiguous or compression or shuffle:
        kwargs = {"chunks": (min(chunk_rows, rows), min(chunk_cols, cols)),
                  "compression": compression, "shuffle": shuffle}
    with h5py.File(path, "w") as f:
        d = f.create_dataset("x", shape=data.shape, dtype=data.dtype, fillvalue=data.flat[0],
                             **kwargs)
        d[:min(written, rows)] = data[:min(written, rows)]  # the rest: fill value / missing
    a, b = min(a, rows - 1), min(max(b, a + 1), rows)
    b = max(b, a + 1)
    fd = os.open(path, os.O_RDONLY)
    try:
        with h5py.File(path, "r") as f:
            reader = DirectReader.create(f["x"], fd, "x")
            assert reader is not None
            out = np.empty((b - a, cols), data.dtype)
            assert reader.read_into(a, b, out)
            assert out.tobytes() == f["x"][a:b].tobytes()
    finally:
        os.close(fd)


def test_conversion_uses_the_direct_reader_and_matches_h5py(tmp_path, monkeypatch):
    """End to end: convert() reads these datasets through DirectReader (none left to h5py's
    read_direct), and the result is h5py's bytes."""
    from npydir import _convert_h5direct
    from npydir.conversion.adapters.hdf5 import Hdf5Source

    path = tmp_path / "a.h5"
    with h5py.File(path, "w") as f:
        for name, kwargs in LAYOUTS.items():
            f.create_dataset(name, data=_data((3001, 7), ">f4"), **kwargs)
        f.create_dataset("missing", shape=(3001, 7), dtype="<i8", chunks=(128, 7),
                         fillvalue=9)[1000:1100] = 1
    calls = {"direct": 0}
    real = _convert_h5direct.DirectReader.read_into

    def counted(self, *args):
        ok = real(self, *args)
        calls["direct"] += ok
        return ok

    monkeypatch.setattr(_convert_h5direct.DirectReader, "read_into", counted)
    # without direct I/O (tmpfs) unfiltered rows would be copied file to file instead
    monkeypatch.setattr(Hdf5Source, "copy_rows_to", lambda self, *args: False)
    monkeypatch.setattr(h5py.Dataset, "read_direct",
                        lambda *a, **k: pytest.fail("h5py read_direct used"))
    npydir.convert(path, tmp_path / "a.npy", progress=False, memory_budget=200_000, threads=3)
    assert calls["direct"] >= len(LAYOUTS) + 1
    with h5py.File(path, "r") as f:
        for name in f:
            got = np.load(tmp_path / "a.npy" / f"{name}.npy")
            assert got.dtype == f[name].dtype and got.tobytes() == f[name][...].tobytes(), name
