"""Attribute values that would crash numpy, leak memory or allocate gigabytes when decoded.

- Legacy ``attrs.npy`` (DAS's pickled dict), using only the globals the old restricted
  unpickler admitted: ``_reconstruct`` without its state hands out an uninitialised array (a
  secret freed just before comes back in it) or allocates 2 GB; a void dtype flagged for list
  pickling, or a structured dtype whose field lies outside it, crashes numpy.  Now the pickle is
  interpreted on plain values and each of these is refused.
- ``attrs.json``: a few bytes of JSON declaring a ``"<U400000000"`` scalar or a
  ``"(15000,15000)f8"`` subarray type allocated 1.6 / 1.8 GB.  Now a decoded value may take at
  most ``decode_limit(len(text))`` bytes and dtypes are plain kinds.

Each case runs in a child (``_attrs_child.py``) whose address space is capped 1 GiB above its
size after imports: a crash is a failed test (not a dead pytest), an attempted multi-GB
allocation a MemoryError.  Every way in must refuse with one line naming the file (and, for
JSON, the attribute): the decoder, ``.attrs``, ``npydir.load``, and ``verify`` (which reports
``bad-attrs``).
"""

from __future__ import annotations

import json
import pickle

import _hostile
import numpy as np
import pytest

import npydir

from npydir import npyfile
from npydir.store.attrs import decode_attrs, encode_attrs
from npydir.errors import AttributeEncodingError, FormatError

pytestmark = [pytest.mark.hostile, pytest.mark.timeout(300)]

CHILD = str(_hostile.HERE / "_attrs_child.py")
SECRET = "TOP-SECRET-attrs-leak-canary"

# ----------------------------------------------------------------------- pickle building blocks


def _ops(value) -> bytes:
    """The opcodes protocol 2 writes for a plain value (no PROTO, no STOP)."""
    return pickle.dumps(value, 2)[2:-1]


def _dtype(arg: str, state: bytes | None = None) -> bytes:
    """``numpy.dtype(arg, False, True)`` and, if given, its BUILD state opcodes."""
    out = b"cnumpy\ndtype\n" + _ops((arg, False, True)) + b"R"
    return out + (state + b"b" if state is not None else b"")


F8 = _dtype("f8", _ops((3, "<", None, None, None, -1, -1, 0)))
RECONSTRUCT = b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n"


def _reconstruct(shape, dtype_ops: bytes) -> bytes:
    """``_reconstruct(ndarray, shape, dtype)`` without the BUILD that would fill it."""
    return RECONSTRUCT + _ops(shape) + dtype_ops + b"\x87R"


def _array(shape, dtype_ops: bytes, data_ops: bytes) -> bytes:
    return RECONSTRUCT + _ops((0,)) + _ops(b"b") + b"\x87R(K\x01" + _ops(shape) + dtype_ops + (
        b"\x89" + data_ops + b"tb"
    )


def _attrs_npy(key: str, value_ops: bytes) -> bytes:
    return npyfile.build_header((), np.dtype(object)) + b"\x80\x02}" + _ops(key) + value_ops + b"s."


_FIELD_OUTSIDE = _dtype(  # a structured dtype of 8 bytes with a field at 1 GiB
    "V8",
    b"(K\x03X\x01\x00\x00\x00|N" + _ops(("a",)) + b"}" + _ops("a") + F8 + b"J\x00\x00\x00\x40\x86s"
    + b"K\x08K\x01K\x00t",
)
_LIST_PICKLE_VOID = _dtype("V64", b"(K\x03X\x01\x00\x00\x00|NNNK@K\x01K\x02t")  # flag 0x02

LEGACY = {
    # (a) an array without its state: np.empty's memory, here 20,000 bytes of it
    "uninitialised-void": _attrs_npy("leak", _reconstruct((20_000,), _dtype("V1"))),
    "uninitialised-f8": _attrs_npy("leak", _reconstruct((4_000,), F8)),
    # (a) ... of a 2 GB void type
    "void-2GB": _attrs_npy("big", _reconstruct((1,), _dtype("V2000000000"))),
    "void-2GB-elsize-from-state": _attrs_npy(  # "V8" whose state says 2,000,000,000 bytes
        "big", _reconstruct((1,), _dtype("V8", b"(K\x03X\x01\x00\x00\x00|NNNJ\x00\x94\x35\x77"
                                                 b"K\x01K\x00t"))
    ),
    # (b) crafted dtype states numpy accepts and then crashes on
    "void-list-pickle-flag": _attrs_npy("crash", _array((4,), _LIST_PICKLE_VOID, b"](C\x00e")),
    "field-outside-dtype-scalar": _attrs_npy(
        "crash", b"cnumpy.core.multiarray\nscalar\n" + _FIELD_OUTSIDE + _ops(b"\0" * 8) + b"\x86R"
    ),
    "field-outside-dtype-array": _attrs_npy(
        "crash", _array((2,), _FIELD_OUTSIDE, _ops(b"\0" * 16))
    ),
    "f8-with-object-flags": _attrs_npy(
        "crash", _array((2,), _dtype("f8", _ops((3, "<", None, None, None, -1, -1, 0x3F))), b"]")
    ),
}

JSON = {
    # 72 bytes asking for 1.6 GB
    "U400000000-scalar": ("s", {"__npydir__": "scalar", "dtype": "<U400000000", "value": "x"}),
    # numpy reads a subarray type from the string: a (15000, 15000) float64 array, 1.8 GB
    "subarray-string-scalar": (
        "m", {"__npydir__": "scalar", "dtype": "(15000,15000)<f8", "value": 0}
    ),
    "subarray-string-array": (
        "m", {"__npydir__": "ndarray", "dtype": "(15000,15000)<f8", "shape": [], "data": 0}
    ),
    # a structured type with a 1.8 GB subarray field, given a value to broadcast
    "subarray-field-scalar": (
        "f", {"__npydir__": "scalar", "dtype": [["a", "<f8", [15000, 15000]]], "value": 0}
    ),
    # 20 strings of one character in a type 400 MB wide each
    "wide-string-array": (
        "w", {"__npydir__": "ndarray", "dtype": "<U100000000", "shape": [20], "data": ["a"] * 20}
    ),
    "comma-string-dtype": ("c", {"__npydir__": "scalar", "dtype": "f8,(9999,9999)i4", "value": 0}),
}


def _store(tmp_path, name):
    """A real store (format marker included) holding train/x; the test then plants a file."""
    store = tmp_path / name
    with npydir.open(store, "w") as root:
        root["train/x"] = np.zeros((4, 1), dtype="f4")
    return store


def _check_refused(result: dict, filename: str, key: str | None) -> None:
    for way in ("decode", "attrs", "load"):
        got = result[way]
        assert isinstance(got, str), f"{way} returned a value: {str(got)[:300]}"
        assert got.startswith(("FormatError", "UnsafePickleError")), f"{way}: {got[:500]}"
        assert filename in got and "\n" not in got, f"{way}: {got[:500]}"
        assert "MemoryError" not in got, f"{way} tried to allocate: {got[:500]}"
        if key is not None:
            assert repr(key) in got, f"{way} does not name the attribute {key!r}: {got[:500]}"
    problems = result["verify"]
    assert isinstance(problems, dict) and any(
        "bad-attrs" in p and filename in p for p in problems["ok"]
    ), problems


@pytest.mark.parametrize("case", list(LEGACY))
def test_hostile_legacy_attrs_are_refused_without_running_numpy_restore(tmp_path, case):
    store = _store(tmp_path, "s.npy")
    (store / "attrs.npy").write_bytes(LEGACY[case])
    result = _hostile.run_json([CHILD, str(store), "1024", SECRET], timeout=120)
    assert SECRET.encode().hex() not in json.dumps(result)
    key = next(k for k in ("leak", "big", "crash") if _ops(k) in LEGACY[case])
    _check_refused(result, "attrs.npy", key)
    _hostile.record("attrs decoding", "hostile attrs.npy refused (child, 1 GiB cap)", len(LEGACY))


@pytest.mark.parametrize("case", list(JSON))
def test_small_attrs_json_cannot_allocate_gigabytes(tmp_path, case):
    key, value = JSON[case]
    store = _store(tmp_path, "s.npy")
    text = json.dumps({key: value})
    assert len(text) < 200
    (store / "attrs.json").write_text(text)
    result = _hostile.run_json([CHILD, str(store), "1024"], timeout=120)
    _check_refused(result, "attrs.json", key)
    _hostile.record("attrs decoding", "oversized attrs.json values refused (child, 1 GiB cap)",
                    len(JSON))


def test_the_size_bound_keeps_what_is_written_readable():
    """Values well inside the bound round-trip; the writer refuses (naming the key) what the
    reader would refuse, so a store never holds attributes it cannot read back."""
    ok = {
        "wide": np.array(["a"] * 1000, dtype="<U100"),  # 400 kB from ~5 kB of JSON
        "empty-but-wide": np.zeros((0,), dtype="<U400000000"),  # takes nothing
        "f8": np.zeros(100_000),
    }
    back = decode_attrs(encode_attrs(ok))
    assert back["wide"].dtype == np.dtype("<U100") and back["empty-but-wide"].shape == (0,)
    with pytest.raises(AttributeEncodingError, match=r"attribute 'too_wide'.*store large arrays"):
        encode_attrs({"fine": 1, "too_wide": np.array([""] * 200, dtype="<U100000")})
    with pytest.raises(FormatError, match=r"attrs.json: attribute 'b': .*at most"):
        decode_attrs(
            json.dumps(
                {"a": 1, "b": {"__npydir__": "ndarray", "dtype": "<U100000", "shape": [200],
                               "data": [""] * 200}}
            ),
            "attrs.json",
        )
