"""Fuzzing .npy headers: the reader, ``npydir.open`` on a store holding the file, and verify.

Every case must end in success or :class:`npydir.errors.FormatError` (whose subclass
``UnsupportedDTypeError`` refuses object dtypes), and a successful read must return exactly
the file's data bytes (never a byte from outside the file).  The fuzzers run in child
processes (see ``_fuzz_worker.py``), so a segfault or a hang fails the test instead of
killing pytest.
"""

from __future__ import annotations

import io

import _hostile
import numpy as np
import pytest

import npydir
from npydir import npyfile
from npydir.errors import FormatError

pytestmark = pytest.mark.hostile

# a header that makes numpy's legacy header filter (tokenize) fail with TokenError
TOKEN_ERROR_HEADER = b"\x93NUMPY\x02\x00\x03\x00\x00\x00{\r\n"


def test_hypothesis_fuzz_npy_headers():
    _hostile.check_hypothesis_fuzz("npy", {"FormatError", "UnsupportedDTypeError"})


def test_atheris_fuzz_npy_headers():
    _hostile.check_atheris_fuzz("npy")


def test_unterminated_header_is_a_format_error():
    """Found by the fuzzer: tokenize.TokenError escaped read_header (bug-log.md H1)."""
    with pytest.raises(FormatError, match="x.npy"):
        npyfile.read_header(io.BytesIO(TOKEN_ERROR_HEADER), "x.npy")


def test_unterminated_header_in_a_store_is_reported_by_verify(tmp_path):
    store = tmp_path / "s.npy"
    with npydir.open(store, "w") as root:
        root["good"] = np.arange(3)
    (store / "bad.npy").write_bytes(TOKEN_ERROR_HEADER)
    report = npydir.verify(store)  # must report, not raise
    assert report.kinds() == ["bad-header"]
    with npydir.open(store) as root:
        with pytest.raises(FormatError, match="bad.npy"):
            root["bad"].shape
        np.testing.assert_array_equal(root["good"][:], np.arange(3))


def test_header_promising_more_than_the_file_never_maps_past_it(tmp_path):
    """A header whose shape needs more bytes than the file has: error, not SIGBUS."""
    store = tmp_path / "s.npy"
    with npydir.open(store, "w") as root:
        root["x"] = np.arange(1000, dtype="f8")
    path = store / "x.npy"
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size - 4096 - 8)  # less than the last page
    with npydir.open(store) as root:
        assert root["x"].shape == (1000,)
        with pytest.raises(FormatError, match="truncated"):
            root["x"][-1]


def test_empty_array_with_huge_dimensions_is_a_format_error(tmp_path):
    """Found by the fuzzer: a header whose shape holds a 0 and dimensions past numpy's limit has
    zero bytes of data; reading it raised a bare ValueError from np.zeros (bug-log.md H11)."""
    store = tmp_path / "s.npy"
    npydir.open(store, "w").close()
    header = npyfile.build_header((2**63, 4, 2**64 + 1, 0), np.dtype("<i4"))
    (store / "x.npy").write_bytes(header)
    with npydir.open(store) as root:
        try:
            values = root["x"][...]
        except FormatError as exc:
            assert "x.npy" in str(exc)
        else:
            assert values.size == 0
