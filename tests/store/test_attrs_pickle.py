"""The pickle interpreter behind ``read_legacy_attrs``: what it refuses and how it says so.

(Compatibility with real files is in test_attrs_legacy_compat.py, hostile files that crashed or
leaked memory in tests/hostile/test_attrs_decoding.py.)
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from npydir import npyfile
from npydir.store.attrs import decode_legacy_attrs, read_legacy_attrs
from npydir.errors import FormatError, UnsafePickleError

NAME = "store/attrs.npy"


def _npy(pickled: bytes) -> bytes:
    return npyfile.build_header((), np.dtype(object)) + pickled


def _ops(value) -> bytes:
    return pickle.dumps(value, 2)[2:-1]


def _dict_of(key: str, value_ops: bytes) -> bytes:
    return _npy(b"\x80\x02}" + _ops(key) + value_ops + b"s.")


DTYPE_F8 = b"cnumpy\ndtype\n" + _ops(("f8", False, True)) + b"R" + _ops(
    (3, "<", None, None, None, -1, -1, 0)
) + b"b"
ARRAY = b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n" + _ops((0,)) + _ops(b"b")


def _array(shape, dtype_ops, data_ops, extra=b"") -> bytes:
    return ARRAY + b"\x87R(K\x01" + _ops(shape) + dtype_ops + b"\x89" + data_ops + b"tb" + extra


@pytest.mark.parametrize(
    "blob, error, match",
    [
        (_dict_of("s", b"c__builtin__\nset\n]\x85R"), UnsafePickleError, "global __builtin__.set"),
        (_npy(b"\x80\x04}\x8c\x01s\x8f(K\x01\x90s."), UnsafePickleError, "a set"),
        (_dict_of("o", b"(cnumpy\ndtype\no"), UnsafePickleError, "opcode OBJ"),
        (_dict_of("o", b"\x82\x01"), UnsafePickleError, "opcode EXT1"),
        (_dict_of("p", b"Pabc\n"), UnsafePickleError, "persistent ids"),
        (_dict_of("g", b"cos\nsystem\n"), UnsafePickleError, "global os.system"),
        (_dict_of("d", DTYPE_F8), UnsafePickleError, r"a numpy dtype at attrs\['d'\]"),
        (_dict_of("e", ARRAY + b"\x87R"), UnsafePickleError, "an array without its data"),
        (_dict_of("n", _array((3,), DTYPE_F8, _ops(b"\0" * 8))), FormatError,
         r"needs exactly 24 data bytes, found 8"),
        (_dict_of("t", _array((3,), DTYPE_F8, _ops(b"\0" * 24), b"Nb")), FormatError,
         "awaiting its state on the stack, found ndarray"),
        (_dict_of("s", b"cnumpy.core.multiarray\nscalar\n" + DTYPE_F8 + _ops(b"\0" * 4) + b"\x86R"),
         FormatError, "scalar <f8 needs exactly 8 bytes, found 4"),
        (_dict_of("x", b"cnumpy\ndtype\n" + _ops(("x9", False, True)) + b"R" + _ops(
            (3, "<", None, None, None, -1, -1, 0)) + b"b" + b"cnumpy.core.multiarray\nscalar\n"),
         FormatError, "does not parse"),
        (_dict_of("o", _array((2,), b"cnumpy\ndtype\n" + _ops(("O8", False, True)) + b"R",
                              b"(NNl")), UnsafePickleError, "object-dtype array"),
        (_npy(b"\x80\x02K\x01K\x02."), FormatError, "exactly one value"),
        (_dict_of("z", _array((2**62, 2**62), b"cnumpy\ndtype\n" + _ops(("V0", False, True))
                              + b"R" + _ops((3, "|", None, None, None, 0, 1, 0)) + b"b",
                              _ops(b""))), FormatError, "zero-width elements"),
        (_dict_of("c", b"c__builtin__\ncomplex\n" + _ops((10**400, 1)) + b"R"), FormatError,
         "does not load .OverflowError"),
        (_npy(b"\x80\x02]K\x01a"), FormatError, "no STOP|does not load"),
    ],
)
def test_refusals_are_one_line_naming_the_file(blob, error, match):
    with pytest.raises(error, match=match) as info:
        decode_legacy_attrs(blob, NAME)
    text = str(info.value)
    assert text.startswith(NAME) and "\n" not in text


def test_shared_values_stay_shared_and_arrays_are_writable_copies(tmp_path):
    arr = np.arange(3.0)
    names = ["a", "b"]
    p = tmp_path / "attrs.npy"
    np.save(p, {"x": arr, "y": arr, "n1": names, "n2": names}, allow_pickle=True)
    got = read_legacy_attrs(p)
    assert got["x"] is got["y"] and got["n1"] is got["n2"]  # as pickle's memo had them
    assert got["x"].flags.writeable and got["x"].flags.owndata
    np.testing.assert_array_equal(got["x"], arr)


def test_ordered_dict_and_python2_era_values(tmp_path):
    """OrderedDict (as a plain dict, order kept), bytes spelled with _codecs.encode (protocol 2)
    and Python 2 str data (read as latin-1)."""
    from collections import OrderedDict

    p = tmp_path / "attrs.npy"
    payload = np.empty((), dtype=object)
    payload[()] = {"od": OrderedDict([("b", 1), ("a", 2)]), "raw": b"\x00\xff", "e": b""}
    p.write_bytes(_npy(pickle.dumps(payload, protocol=2)))
    got = read_legacy_attrs(p)
    assert list(got["od"].items()) == [("b", 1), ("a", 2)]
    assert got["raw"] == b"\x00\xff" and got["e"] == b""
    # numpy 1.x under Python 2 pickled array data as a str: SHORT_BINSTRING
    blob = _dict_of("a", ARRAY + b"\x87R(K\x01" + _ops((2,)) + DTYPE_F8 + b"\x89U\x10"
                    + np.array([1.0, 2.0]).tobytes() + b"tb")
    np.testing.assert_array_equal(decode_legacy_attrs(blob, NAME)["a"], [1.0, 2.0])
