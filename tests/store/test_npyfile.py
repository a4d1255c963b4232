"""The .npy layer: growable headers, atomic writes, appends, memmaps and refusals."""

from __future__ import annotations

import errno
import io
import os
import struct

import numpy as np
import pytest
from numpy.lib import format as npformat

from npydir import npyfile
from npydir.errors import FormatError, UnsupportedDTypeError


def _header_of(path):
    with open(path, "rb") as fp:
        return npyfile.read_header(fp, path)


@pytest.mark.parametrize("shape", [(0,), (5,), (3, 4), (0, 7), (2, 3, 4)])
@pytest.mark.parametrize(
    "dtype", ["<f4", ">i8", "|b1", "<c16", "<U3", [("a", "<i2"), ("b", "<f8")]]
)
def test_build_header_matches_numpy_and_has_room(shape, dtype):
    dtype = np.dtype(dtype)
    ours = npyfile.build_header(shape, dtype)
    buf = io.BytesIO()
    npformat.write_array_header_1_0(
        buf, {"descr": npformat.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
    )
    assert ours == buf.getvalue()  # identical to numpy >= 1.24 (padded for growth)
    assert len(ours) % 64 == 0
    # room for shape[0] to reach 21 digits without changing the header length
    big = (10**20,) + shape[1:]
    assert len(npyfile.build_header(big, dtype, length=len(ours))) == len(ours)


def test_header_v3_for_non_latin1_field_names(tmp_path):
    arr = np.zeros(2, dtype=[("ü€", "<i4")])
    p = tmp_path / "a.npy"
    npyfile.save_array(p, arr)
    h = _header_of(p)
    assert h.version == (3, 0)
    assert np.load(p).dtype == arr.dtype


def test_save_array_is_loadable_by_numpy_and_leaves_no_temp(tmp_path):
    arr = np.arange(12, dtype="<i4").reshape(3, 4)[:, ::2]  # non-contiguous input
    p = tmp_path / "x.npy"
    h = npyfile.save_array(p, arr)
    np.testing.assert_array_equal(np.load(p, mmap_mode="r"), arr)
    assert h.shape == (3, 2) and h.expected_size == os.path.getsize(p)
    assert os.listdir(tmp_path) == ["x.npy"]


def test_atomic_write_failure_keeps_old_file_and_removes_temp(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"old")

    def boom(fp):
        fp.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        npyfile.atomic_write(p, boom)
    assert p.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f"]


def test_create_array_file_fill_and_sparse(tmp_path):
    p = tmp_path / "z.npy"
    npyfile.create_array_file(p, (1000, 3), np.dtype("f4"))
    np.testing.assert_array_equal(np.load(p), 0)
    q = tmp_path / "f.npy"
    npyfile.create_array_file(q, (5, 2), np.dtype("i2"), fillvalue=-7)
    np.testing.assert_array_equal(np.load(q), np.full((5, 2), -7, "i2"))
    with pytest.raises(ValueError, match="scalar"):
        npyfile.create_array_file(tmp_path / "g.npy", (2,), np.dtype("f4"), fillvalue=[1, 2])


@pytest.mark.parametrize("dtype", ["<f8", "|u1", [("a", "<i4"), ("b", "|S2")]])
def test_append_rows_grows_in_place(tmp_path, dtype):
    dtype = np.dtype(dtype)
    p = tmp_path / "x.npy"
    npyfile.save_array(p, np.zeros((0, 3), dtype))
    size0 = _header_of(p).offset
    ino = os.stat(p).st_ino
    rows = []
    for i in range(5):
        block = (
            np.full((i + 1, 3), i, dtype=dtype)
            if dtype.names is None
            else np.zeros((i + 1, 3), dtype)
        )
        npyfile.append_rows(p, block)
        rows.append(block)
        assert _header_of(p).offset == size0  # header length unchanged
    expect = np.concatenate(rows)
    np.testing.assert_array_equal(np.load(p), expect)
    assert os.stat(p).st_ino == ino  # same file: appended in place, not rewritten
    assert os.path.getsize(p) == _header_of(p).expected_size


def test_append_trims_torn_bytes_first(tmp_path):
    p = tmp_path / "x.npy"
    npyfile.save_array(p, np.arange(4, dtype="<i8"))
    with open(p, "ab") as f:
        f.write(b"\xff" * 13)  # a torn append
    npyfile.append_rows(p, np.array([9], "<i8"))
    np.testing.assert_array_equal(np.load(p), [0, 1, 2, 3, 9])
    assert os.path.getsize(p) == _header_of(p).expected_size


def _tight_header_file(path, arr):
    """An .npy file whose header has no spare byte (as tools without growth padding write)."""
    d = "{'descr': '%s', 'fortran_order': False, 'shape': %r, }" % (arr.dtype.str, arr.shape)
    hdr = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(d) + 1) + d.encode() + b"\n"  # unpadded
    path.write_bytes(hdr + arr.tobytes())
    return len(hdr)


def test_append_to_header_without_room_rewrites_once(tmp_path):
    p = tmp_path / "old.npy"
    arr = np.arange(9, dtype="<i2")
    hlen = _tight_header_file(p, arr)
    np.testing.assert_array_equal(np.load(p), arr)
    ino = os.stat(p).st_ino
    npyfile.append_rows(p, np.ones(10**6, "<i2"))  # shape[0] gains 6 digits: the header must grow
    h = _header_of(p)
    assert h.shape == (10**6 + 9,) and h.offset > hlen
    assert os.stat(p).st_ino != ino  # rewritten atomically with a roomy header
    data = np.load(p, mmap_mode="r")
    np.testing.assert_array_equal(data[:9], arr)
    assert (data[9:] == 1).all()
    npyfile.append_rows(p, np.ones(1, "<i2"))  # now in place
    assert _header_of(p).offset == h.offset and os.listdir(tmp_path) == ["old.npy"]


def test_resize_rows(tmp_path):
    p = tmp_path / "x.npy"
    npyfile.save_array(p, np.arange(6.0).reshape(3, 2))
    npyfile.resize_rows(p, 5)
    np.testing.assert_array_equal(np.load(p)[3:], 0)
    npyfile.resize_rows(p, 2)
    np.testing.assert_array_equal(np.load(p), [[0, 1], [2, 3]])
    assert os.path.getsize(p) == _header_of(p).expected_size


def test_open_memmap_special_shapes(tmp_path):
    cases = {
        "zero_d": np.array(3.5),
        "empty": np.zeros((0, 4), "f4"),
        "struct": np.array([(1, "ab"), (2, "c")], dtype=[("i", "<i4"), ("s", "<U2")]),
        "unicode": np.array(["x", "yz"]),
        "void0": np.zeros(3, dtype=np.dtype([])),
    }
    for name, arr in cases.items():
        p = tmp_path / f"{name}.npy"
        npyfile.save_array(p, arr)
        mm, h = npyfile.open_memmap(p, "r")
        assert mm.shape == arr.shape and mm.dtype == arr.dtype
        np.testing.assert_array_equal(mm, arr)
        assert not mm.flags.writeable
    mm, _ = npyfile.open_memmap(tmp_path / "zero_d.npy", "r+")
    mm[()] = 7
    mm.flush()
    del mm
    assert np.load(tmp_path / "zero_d.npy")[()] == 7


def test_fortran_files_read_but_do_not_grow(tmp_path):
    arr = np.asfortranarray(np.arange(6).reshape(2, 3))
    p = tmp_path / "f.npy"
    np.save(p, arr)
    mm, h = npyfile.open_memmap(p)
    assert h.fortran_order
    np.testing.assert_array_equal(mm, arr)
    with pytest.raises(FormatError, match="Fortran"):
        npyfile.append_rows(p, np.zeros((1, 3), arr.dtype))


def test_refuses_object_dtype(tmp_path):
    p = tmp_path / "o.npy"
    np.save(p, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(UnsupportedDTypeError, match="o.npy.*object"):
        npyfile.open_memmap(p)
    with pytest.raises(UnsupportedDTypeError, match="object"):
        npyfile.save_array(tmp_path / "p.npy", np.array([1, "a"], dtype=object))
    with pytest.raises(UnsupportedDTypeError):
        npyfile.create_array_file(tmp_path / "q.npy", (2,), np.dtype([("a", "O")]))


@pytest.mark.parametrize(
    "content, match",
    [
        (b"", "not an .npy file"),
        (b"hello world, not numpy", "not an .npy file"),
        (b"\x93NUMPY\x09\x00", "version"),
        (b"\x93NUMPY\x01\x00\x20\x00{'descr': '<f4', 'shape': }     \n", "does not parse"),
        (b"\x93NUMPY\x01\x00\xff\x00{'descr'", "does not parse"),
    ],
)
def test_bad_headers_are_format_errors_naming_the_file(tmp_path, content, match):
    p = tmp_path / "bad.npy"
    p.write_bytes(content)
    with pytest.raises(FormatError, match=match) as info:
        npyfile.open_memmap(p)
    assert "bad.npy" in str(info.value)


def test_truncated_file_is_a_clear_error(tmp_path):
    p = tmp_path / "t.npy"
    npyfile.save_array(p, np.arange(100, dtype="<f8"))
    with open(p, "r+b") as f:
        f.truncate(os.path.getsize(p) - 8)
    with pytest.raises(
        FormatError, match=r"t.npy: file is truncated.*expected 928 bytes\), found 920"
    ):
        npyfile.open_memmap(p)


def test_temp_names_fit_in_255_bytes(tmp_path):
    name = "é" * 120 + ".attrs.json"  # 251 bytes
    p = tmp_path / name
    t = npyfile.temp_path(p)
    assert len(os.fsencode(t.name)) <= 255 and npyfile.is_temp_name(t.name)
    npyfile.atomic_write(p, lambda fp: fp.write(b"{}"))
    assert p.read_bytes() == b"{}"


@pytest.mark.parametrize(
    "header",
    [
        b"{'descr': '<f4', 'fortran_order': False, 'shape': (3,\n",  # tokenizer error
        b"{'descr': '<f4', 'fortran_order': False, 'shape': " + b"(" * 5000 + b"}\n",
        b"{'descr': 'V99999999999999999999', 'fortran_order': False, 'shape': (1,), }\n",
        b"{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }\n",
    ],
)
def test_hostile_headers_are_format_errors(tmp_path, header):
    p = tmp_path / "h.npy"
    p.write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + b"\0" * 64)
    with pytest.raises(FormatError, match="h.npy"):
        npyfile.open_memmap(p)


# ----------------------------------------------------------------------------- full disk (H8, H9)


def _fail_with(err):
    def fail(*args, **kwargs):
        raise OSError(err, os.strerror(err))

    return fail


def test_preallocation_reserves_blocks_so_a_full_disk_is_enospc(tmp_path, monkeypatch):
    """H8: a sparse file on a full disk turns the first memmap write into SIGBUS; the blocks are
    reserved at create time, so the disk being full is an ENOSPC there, naming the file."""
    calls = []
    real = os.posix_fallocate
    monkeypatch.setattr(os, "posix_fallocate", lambda fd, o, n: (calls.append(n), real(fd, o, n)))
    path = tmp_path / "x.npy"
    npyfile.create_array_file(path, (1000, 3), np.dtype("<f8"))
    assert calls and os.stat(path).st_blocks * 512 >= 1000 * 3 * 8
    assert np.load(path).shape == (1000, 3) and not np.load(path).any()

    monkeypatch.setattr(os, "posix_fallocate", _fail_with(errno.ENOSPC))
    target = tmp_path / "y.npy"
    with pytest.raises(OSError) as info:
        npyfile.create_array_file(target, (1000,), np.dtype("<f4"))
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert os.listdir(tmp_path) == ["x.npy"]  # no target, no temp file left
    # growing in place reserves too, and a failure leaves the file as it was
    before = path.read_bytes()
    with pytest.raises(OSError) as info:
        npyfile.resize_rows(path, 5000)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(path)
    assert path.read_bytes() == before


@pytest.mark.parametrize("err", [errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS])
def test_preallocation_falls_back_to_sparse_where_unsupported(tmp_path, monkeypatch, err):
    monkeypatch.setattr(os, "posix_fallocate", _fail_with(err))
    path = tmp_path / "x.npy"
    npyfile.create_array_file(path, (10, 4), np.dtype("<i4"))
    np.testing.assert_array_equal(np.load(path), np.zeros((10, 4), "<i4"))
    npyfile.resize_rows(path, 20)
    np.testing.assert_array_equal(np.load(path), np.zeros((20, 4), "<i4"))


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EFBIG])
def test_write_errors_name_the_file(tmp_path, monkeypatch, err):
    """H9: ENOSPC / EFBIG from write/pwrite carry no path; they are re-raised naming the file,
    errno unchanged, and the file is left as it was."""
    path = tmp_path / "x.npy"
    npyfile.save_array(path, np.arange(6).reshape(3, 2))
    before = path.read_bytes()
    with monkeypatch.context() as m:
        m.setattr(os, "pwrite", _fail_with(err))
        with pytest.raises(OSError) as info:
            npyfile.append_rows(path, np.arange(4).reshape(2, 2))
    assert info.value.errno == err and info.value.filename == str(path)
    assert str(path) in str(info.value)
    assert path.read_bytes() == before

    def write(fp):
        fp.write(b"partial")
        raise OSError(err, os.strerror(err))

    with pytest.raises(OSError) as info:
        npyfile.atomic_write(path, write)
    assert info.value.errno == err and info.value.filename == str(path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["x.npy"]
    # errors that already name a file are left alone
    with pytest.raises(FileNotFoundError) as info:
        npyfile.append_rows(tmp_path / "missing.npy", np.arange(2).reshape(1, 2))
    assert info.value.filename == str(tmp_path / "missing.npy")


# ------------------------------------------------------------- shapes numpy refuses (H11)


@pytest.mark.parametrize(
    "shape",
    [(2**63, 4, 2**64 + 1, 0), (2**62, 4, 0), (0, 2**63 - 1), (0,) * 65],
)
def test_unrepresentable_empty_shapes_are_format_errors(tmp_path, shape):
    """H11: a 0 in the shape means no data, so the size check passes whatever the other
    dimensions say; numpy then refused them with a bare ValueError."""
    path = tmp_path / "x.npy"
    path.write_bytes(npyfile.build_header(shape, np.dtype("<i4")))
    with pytest.raises(FormatError, match="x.npy"):
        _header_of(path)
    with pytest.raises(FormatError, match="x.npy"):
        npyfile.open_memmap(path)


def test_largest_representable_empty_shape_reads(tmp_path):
    path = tmp_path / "x.npy"
    shape = (2**59 - 1, 4, 0)  # 4 * 4 * (2**59 - 1) bytes still fit in intp
    path.write_bytes(npyfile.build_header(shape, np.dtype("<i4")))
    arr, header = npyfile.open_memmap(path)
    assert arr.shape == shape and arr.size == 0 and header.shape == shape


@pytest.mark.parametrize("dtype", ["|S0", "<U0", "|V0"])
def test_zero_itemsize_elements_allocate_nothing(tmp_path, dtype):
    """numpy widens 'S0'/'U0' to one character: np.zeros of 10**12 such elements would try to
    allocate terabytes for a header of 128 bytes."""
    path = tmp_path / "x.npy"
    path.write_bytes(npyfile.build_header((10**12,), np.dtype(dtype)))
    arr, _ = npyfile.open_memmap(path)
    assert arr.shape == (10**12,) and arr.strides == (0,) and not arr.flags.writeable


def test_fsync_dir_skips_unsupported_file_systems_and_raises_io_errors(tmp_path, monkeypatch):
    def failing(code):
        def fsync(fd):
            raise OSError(code, os.strerror(code))
        return fsync

    monkeypatch.setattr(os, "fsync", failing(errno.EINVAL))
    npyfile.fsync_dir(tmp_path)  # a file system that cannot fsync a directory: nothing to do
    monkeypatch.setattr(os, "fsync", failing(errno.EIO))
    with pytest.raises(OSError, match="fsync of the directory") as err:
        npyfile.fsync_dir(tmp_path)
    assert err.value.errno == errno.EIO and err.value.filename == str(tmp_path)
    npyfile.fsync_dir(tmp_path / "missing")  # cannot be opened: skipped
