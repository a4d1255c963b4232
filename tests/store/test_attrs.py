"""The JSON attribute encoding and the legacy (DAS) attrs.npy reader/writer."""

from __future__ import annotations

import json
import math
import os
import pickle
import re
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from npydir.store.attrs import (
    decode_attrs,
    encode_attrs,
    read_attrs_file,
    read_legacy_attrs,
    write_attrs_file,
    write_legacy_attrs,
)
from npydir.errors import AttributeEncodingError, FormatError, UnsafePickleError


def roundtrip(d):
    text = encode_attrs(d)
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON token {c}"))
    return decode_attrs(text)


def assert_same(a, b):
    """Equal values of equal types (NaN == NaN)."""
    if isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape
        assert a.tobytes() == b.tobytes() or np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")
    elif isinstance(a, np.generic):
        assert type(a) is type(b) and a.dtype == b.dtype
        if a.dtype.kind in "fc" and np.isnan(a):  # NaN sign/payload bits are not kept
            assert np.isnan(b) and np.array_equal(a, b, equal_nan=True)
        else:  # everything else bit for bit (-0.0 included)
            assert np.asarray(a).tobytes() == np.asarray(b).tobytes()
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b)
        for k in a:
            assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, list) and len(a) == len(b)  # tuples come back as lists
        for x, y in zip(a, b, strict=True):
            assert_same(x, y)
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b)
    elif isinstance(a, complex):
        assert isinstance(b, complex) and np.array_equal(a, b, equal_nan=True)
    else:
        assert type(a) is type(b) and a == b


TABLE = {
    "str": "ünï",
    "int": -(2**70),
    "float": 0.1,
    "bool": True,
    "none": None,
    "nan": math.nan,
    "inf": math.inf,
    "-inf": -math.inf,
    "complex": complex(1, math.nan),
    "list": [1, "a", None, [2.5]],
    "tuple": (1, 2),
    "dict": {"a": {"b": [1]}},
    "tagged-looking dict": {"__npydir__": "ndarray", "x": 1},
    "bytes": b"\x00\xff",
    "bytearray": bytearray(b"ab"),
    "np.float32": np.float32(1.5),
    "np.int64": np.int64(-3),
    "np.uint8": np.uint8(200),
    "np.bool_": np.bool_(True),
    "np.str_": np.str_("hi"),
    "np.bytes_": np.bytes_(b"x"),
    "np.complex64": np.complex64(1 - 2j),
    "np.float16 nan": np.float16("nan"),
    "np.longdouble": np.longdouble(1) / 3,
    "np.datetime64": np.datetime64("2024-01-02T03:04"),
    "array f4": np.array([[1.0, np.nan], [np.inf, -0.0]], dtype="f4"),
    "array >i4": np.arange(3, dtype=">i4"),
    "array 0-d": np.array(5, dtype="u2"),
    "array empty": np.zeros((0, 3)),
    "array U": np.array(["noise", "pulse", "sine"]),
    "array S": np.array([b"a", b"bc"]),
    "array c8": np.array([1 + 1j, np.nan], dtype="c8"),
    "array bool": np.array([[True, False]]),
    "array struct": np.array([(1, 2.0)], dtype=[("a", "<i2"), ("b", "<f8")]),
}


@pytest.mark.parametrize("key", list(TABLE))
def test_encoding_table_roundtrips(key):
    value = TABLE[key]
    back = roundtrip({key: value})
    if isinstance(value, bytearray):
        assert back[key] == bytes(value) and type(back[key]) is bytes
    else:
        assert_same(value, back[key])


def test_readable_json_forms():
    text = encode_attrs({"a": np.array([1.0, np.nan]), "b": math.inf, "c": np.int16(3), "d": b"hi"})
    d = json.loads(text)
    assert d["a"] == {"__npydir__": "ndarray", "dtype": "<f8", "shape": [2], "data": [1.0, "nan"]}
    assert d["b"] == {"__npydir__": "float", "value": "inf"}
    assert d["c"] == {"__npydir__": "scalar", "dtype": "<i2", "value": 3}
    assert d["d"] == {"__npydir__": "bytes", "base64": "aGk="}


class Custom:
    pass


@pytest.mark.parametrize(
    "value, match",
    [
        ({1, 2}, "set"),
        (Custom(), "Custom"),
        (np.array([1, "a"], dtype=object), "object-dtype"),
        ({"inner": {3: "x"}}, "dict keys must be str"),
        ([1, [Custom()]], "Custom"),
        (np.dtype("f4"), "dtype"),
    ],
)
def test_unstorable_values_name_the_key(value, match):
    with pytest.raises(AttributeEncodingError, match=match) as info:
        encode_attrs({"the_key": value})
    assert "the_key" in str(info.value)
    assert isinstance(info.value, TypeError)


def test_non_str_attribute_names():
    with pytest.raises(AttributeEncodingError, match="str"):
        encode_attrs({1: 2})


@pytest.mark.parametrize(
    "text, match",
    [
        ('{"a": NaN}', "non-standard JSON token NaN"),
        ('{"a": Infinity}', "Infinity"),
        ("[1, 2]", "JSON object"),
        ("{", "not valid JSON"),
        ('{"a": {"__npydir__": "martian"}}', "unknown attribute tag"),
        ('{"a": {"__npydir__": "ndarray", "dtype": "<f4"}}', "malformed"),
    ],
)
def test_bad_attrs_text(text, match):
    with pytest.raises(FormatError, match=match) as info:
        decode_attrs(text, "g/attrs.json")
    assert "g/attrs.json" in str(info.value)


def test_attrs_files_are_atomic(tmp_path):
    p = tmp_path / "attrs.json"
    assert read_attrs_file(p) == {}
    write_attrs_file(p, {"a": 1})
    with pytest.raises(AttributeEncodingError):
        write_attrs_file(p, {"a": 2, "b": {1}})
    assert read_attrs_file(p) == {"a": 1}  # the failed write changed nothing
    assert os.listdir(tmp_path) == ["attrs.json"]


# ---------------------------------------------------------------------------------- hypothesis

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**80), 2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.binary(max_size=8),
    st.complex_numbers(allow_nan=True, allow_infinity=True),
)
np_dtypes = st.one_of(
    hnp.integer_dtypes(),
    hnp.unsigned_integer_dtypes(),
    hnp.floating_dtypes(),
    hnp.complex_number_dtypes(),
    hnp.boolean_dtypes(),
    hnp.unicode_string_dtypes(max_len=4),
    hnp.byte_string_dtypes(max_len=4),
)
np_arrays = hnp.arrays(np_dtypes, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3))
np_scalars = np_arrays.filter(lambda a: a.size > 0).map(lambda a: a.reshape(-1)[0])
values = st.recursive(
    st.one_of(scalars, np_arrays, np_scalars),
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)


# names the decoder looks at (the tag, the keys of tagged objects) next to arbitrary ones
attr_names = st.one_of(
    st.text(max_size=10), st.sampled_from(["__npydir__", "value", "items", "dtype", "base64"])
)


@given(st.dictionaries(attr_names, values, max_size=5))
def test_property_roundtrip(d):
    back = roundtrip(d)
    assert_same(d, back)


@pytest.mark.parametrize(
    "attrs",
    [
        {"__npydir__": []},
        {"__npydir__": "float", "value": "nan"},  # read back as NaN, "not an object", before
        {"a": 1, "__npydir__": {"__npydir__": "x"}, "s": "\ud800"},
    ],
)
def test_an_attribute_named_like_the_tag_roundtrips(tmp_path, attrs):
    """Such a name made the group's attrs.json unreadable (and so never updatable again)."""
    assert_same(attrs, roundtrip(attrs))
    assert_same(attrs, decode_attrs(encode_attrs(attrs, indent=None)))
    p = tmp_path / "attrs.json"
    write_attrs_file(p, attrs)
    assert_same(attrs, read_attrs_file(p))
    write_attrs_file(p, {**read_attrs_file(p), "more": 1})
    assert read_attrs_file(p)["more"] == 1


# ------------------------------------------------------------------------ legacy attrs.npy


def test_legacy_das_attrs_read(tmp_path):
    attrs = {
        "samplerate_x_Hz": 10000,
        "class_names": ["noise", "pulse"],
        "class_types": np.array(["segment"]),
        "rate": np.float64(2.5),
        "nested": {"t": (1, 2)},
        "z": 1j,
        "b": b"x",
    }
    p = tmp_path / "attrs.npy"
    np.save(p, attrs, allow_pickle=True)  # exactly what DAS's npy_dir.save does
    got = read_legacy_attrs(p)
    assert got["samplerate_x_Hz"] == 10000 and got["class_names"] == ["noise", "pulse"]
    np.testing.assert_array_equal(got["class_types"], ["segment"])
    assert got["rate"] == 2.5 and isinstance(got["rate"], np.float64)
    assert got["nested"] == {"t": (1, 2)} and got["z"] == 1j and got["b"] == b"x"


def test_legacy_writer_is_what_das_reads(tmp_path):
    p = tmp_path / "attrs.npy"
    attrs = {"a": np.arange(3), "names": ["x"], "f": np.float32(1)}
    write_legacy_attrs(p, attrs)
    das_view = np.load(p, allow_pickle=True)[()]  # DAS's own loader
    assert das_view.keys() == attrs.keys()
    np.testing.assert_array_equal(das_view["a"], attrs["a"])
    assert_same(read_legacy_attrs(p), {"a": attrs["a"], "names": ["x"], "f": np.float32(1)})


class Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    p = tmp_path / "attrs.npy"
    np.save(p, {"samplerate": 1, "evil": Evil(marker)}, allow_pickle=True)
    with pytest.raises(UnsafePickleError, match=r"attrs.npy.*(posix|os)\.system"):
        read_legacy_attrs(p)
    assert not marker.exists()


@pytest.mark.parametrize(
    "payload, match",
    [
        ({"a": np.array([1, "x"], dtype=object)}, "object-dtype array"),
        ({"a": Custom()}, "Custom"),
        ({"a": {1, 2}}, "set"),
    ],
)
def test_legacy_refusals(tmp_path, payload, match):
    p = tmp_path / "attrs.npy"
    np.save(p, payload, allow_pickle=True)
    with pytest.raises(UnsafePickleError, match=match):
        read_legacy_attrs(p)


def test_legacy_not_a_dict(tmp_path):
    p = tmp_path / "attrs.npy"
    np.save(p, np.arange(3))
    with pytest.raises(FormatError, match="pickled dict"):
        read_legacy_attrs(p)
    p.write_bytes(
        b"\x93NUMPY\x01\x00"
        + b"\x40\x00"
        + b"{'descr': '|O', 'fortran_order': False, 'shape': (), }".ljust(63)
        + b"\n"
        + pickle.dumps([1])
    )
    with pytest.raises(FormatError, match="dict"):
        read_legacy_attrs(p)
    p.write_bytes(p.read_bytes()[:80])
    with pytest.raises(FormatError, match="does not load"):
        read_legacy_attrs(p)


@pytest.mark.parametrize(
    "text, match",
    [
        ("[" * 100_000 + "]" * 100_000, "nested too deeply|not valid JSON"),
        ('{"a": ' + "[" * 150 + "]" * 150 + "}", "cannot be stored back"),
        ('{"a": {"__npydir__": "ndarray", "dtype": "|O", "shape": [1], "data": [1]}}', "object"),
        ('{"a": {"__npydir__": "scalar", "dtype": "|O", "value": 1}}', "object"),
        ('{"a": {"__npydir__": "dict", "items": [[1, 2]]}}', "keys must be str"),
        ('{"a": {"__npydir__": "scalar", "dtype": "|i1", "value": 1000}}', "malformed"),
        (
            '{"a": {"__npydir__": "ndarray", "dtype": "<f4", "shape": [-1], "data": []}}',
            "malformed",
        ),
    ],
)
def test_hostile_attrs_text(text, match):
    with pytest.raises(FormatError, match=match):
        decode_attrs(text, "attrs.json")


def test_nesting_limit_and_surrogates():
    deep = []
    for _ in range(150):
        deep = [deep]
    with pytest.raises(AttributeEncodingError, match="nested deeper than 100"):
        encode_attrs({"deep": deep})
    text = encode_attrs({"s\udc80": "lone \ud800 surrogate", "ok": "ünï"})
    text.encode("utf-8")  # always writable as UTF-8
    assert "ünï" in text  # readable where possible
    assert decode_attrs(text) == {"s\udc80": "lone \ud800 surrogate", "ok": "ünï"}


# ------------------------------------------------------------- hostile attrs.npy (H6, H10)

_OBJECT_HEADER = (
    b"\x93NUMPY\x01\x00"
    + b"\x40\x00"
    + b"{'descr': '|O', 'fortran_order': False, 'shape': (), }".ljust(63)
    + b"\n"
)


def _save_object(p, value):
    payload = np.empty((), dtype=object)
    payload[()] = value
    np.save(p, payload, allow_pickle=True)


def test_legacy_shared_references_are_walked_once(tmp_path):
    """H6: ``[c, c]`` nested 40 times pickles to ~500 bytes but is 2**40 values as a tree; it
    is refused at once (the JSON encoder would walk the tree), while a few shared lists, as a
    DAS params dict may hold, still read."""
    p = tmp_path / "attrs.npy"
    cur = [1]
    for _ in range(40):
        cur = [cur, cur]
    _save_object(p, {"a": cur})
    assert p.stat().st_size < 1000
    with pytest.raises(UnsafePickleError, match="expand to more than"):
        read_legacy_attrs(p)
    names = ["pulse", "sine"]
    _save_object(p, {"class_names": names, "class_names_orig": names, "deep": [[names] * 3] * 3})
    got = read_legacy_attrs(p)
    assert got["class_names"] == got["class_names_orig"] == names
    assert got["deep"] == [[names] * 3] * 3


def test_legacy_self_containing_list_is_refused(tmp_path):
    loop = [1]
    loop.append(loop)
    p = tmp_path / "attrs.npy"
    _save_object(p, {"a": loop})
    with pytest.raises(UnsafePickleError, match="contain themselves"):
        read_legacy_attrs(p)


@pytest.mark.parametrize(
    "pickled, match",
    [
        # LONG_BINPUT into memo slot 1e9: the C unpickler would allocate ~16 GB for its memo
        (b"\x80\x04\x8c\x01a" + b"r" + (10**9).to_bytes(4, "little") + b".", "memo slot"),
        (b"\x80\x04\x8c\x01a" + b"h\xff" + b".", "memo slot"),  # BINGET of a slot never stored
        # BINUNICODE declaring 2 GB in a file of a few bytes
        (b"\x80\x03X" + (2**31).to_bytes(4, "little") + b"ab.", "does not load"),
        (b"\x80\x04\x95" + (2**60).to_bytes(8, "little") + b"}.", "does not load|frame"),
    ],
)
def test_legacy_hostile_pickle_numbers_are_refused_before_unpickling(tmp_path, pickled, match):
    """H10: the opcodes are scanned (nothing executed) before the C unpickler sees them.  Run in
    a child with a capped address space, so a regression is a MemoryError, not an OOM here."""
    p = tmp_path / "attrs.npy"
    p.write_bytes(_OBJECT_HEADER + pickled)
    code = (
        "import resource, sys\n"
        "from npydir.store.attrs import read_legacy_attrs\n"
        "from npydir.errors import FormatError\n"
        "resource.setrlimit(resource.RLIMIT_AS, (4 << 30, resource.RLIM_INFINITY))\n"
        "try:\n"
        f"    read_legacy_attrs({str(p)!r})\n"
        "except FormatError as exc:\n"
        "    print('refused', exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    text = out.stdout.decode()
    assert text.startswith("refused") and "attrs.npy" in text, text
    assert re.search(match, text), text


def test_legacy_oversized_file_is_refused(tmp_path, monkeypatch):
    import npydir.store.attrs as attrs_mod

    p = tmp_path / "attrs.npy"
    _save_object(p, {"a": "x" * 1000})
    monkeypatch.setattr(attrs_mod, "MAX_LEGACY_BYTES", 500)
    with pytest.raises(FormatError, match="larger than 500 bytes"):
        read_legacy_attrs(p)
    monkeypatch.setattr(attrs_mod, "MAX_LEGACY_BYTES", 64 << 20)
    assert read_legacy_attrs(p) == {"a": "x" * 1000}
