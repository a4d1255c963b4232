"""Attributes: the one JSON encoding, attrs files, and DAS's legacy pickled ``attrs.npy``.

Encoding (strict JSON, ``allow_nan=False``; values that plain JSON cannot hold become *tagged
objects* ``{"__npydir__": <tag>, ...}``):

===========================  ===============================================  ==================
Python value                 JSON                                             read back as
===========================  ===============================================  ==================
str, int, finite float,      the JSON value                                   same
bool, None
float NaN / inf / -inf       ``{"__npydir__": "float", "value": "nan"}``      float
complex                      ``{"__npydir__": "complex", "real": r,           complex
                             "imag": i}``
list, tuple                  JSON array (tuples become lists)                 list
dict with str keys           JSON object                                      dict
dict with a key              ``{"__npydir__": "dict", "items": [[k, v],..]}`` dict
``"__npydir__"``
bytes, bytearray             ``{"__npydir__": "bytes", "base64": "..."}``     bytes
numpy scalar                 ``{"__npydir__": "scalar", "dtype": "<f4",       numpy scalar of
                             "value": v}``                                    that dtype
numpy array                  ``{"__npydir__": "ndarray", "dtype": "<i8",      numpy array of
                             "shape": [2, 3], "data": [[...], ...]}``         that dtype/shape
===========================  ===============================================  ==================

Numeric, bool and str (``U``) arrays and scalars keep their values readable in ``data`` /
``value`` (non-finite floats as the strings ``"nan"``, ``"inf"``, ``"-inf"``, complex as
``[real, imag]``).  Other dtypes (structured, ``S`` bytes, datetime, long double) store their
raw bytes as ``"base64"`` with the full dtype description.  Object dtypes, sets, arbitrary
objects and non-str dict keys are refused with :class:`~npydir.errors.AttributeEncodingError`
(a ``TypeError``) naming the key.

An attrs file is the JSON object of its attributes, one per line.  The "dict with a key
``"__npydir__"``" rule holds for that object too: a group with an attribute named
``__npydir__`` is stored as one ``{"__npydir__": "dict", "items": [...]}`` line.

Decoding is bounded by the text: dtypes are plain kinds or fields of them
(:mod:`npydir.store.attrs_dtype`), and the arrays and scalars one text decodes to take at most
:func:`decode_limit` of its length, charged before they are allocated.

Legacy: DAS's ``npy_dir`` stores root attributes as ``np.save(path, attrs_dict)``, i.e. a
pickled 0-d object array.  :func:`read_legacy_attrs` never unpickles it: the opcodes are
interpreted on plain values (:mod:`npydir.store.legacy_pickle`) and arrays, scalars and dtypes are
built from validated parts; any other global in the pickle raises
:class:`~npydir.errors.UnsafePickleError` and nothing runs.

When a store keeps both (``das_compat``), ``attrs.json`` is the source of truth and ``attrs.npy``
is derived from it: :func:`write_attrs_pair` pickles exactly the values ``attrs.json`` decodes
to, and :func:`legacy_mismatch` says which keys of the two disagree (:func:`npydir.verify`
reports those, :func:`npydir.repair` rewrites ``attrs.npy`` from ``attrs.json``).
"""

from __future__ import annotations

import base64
import errno
import io
import json
import math
import os
import pickletools
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib import format as npformat

from . import fsutil
from .attrs_dtype import descr_dtype, nbytes
from .legacy_pickle import ObjectArray, Pending, load_plain
from ..errors import AttributeEncodingError, FormatError, UnsafePickleError
from .npyfile import (
    MAX_HEADER_SIZE,
    atomic_write,
    fsync_dir,
    read_header,
    remove_if_present,
    replace,
    write_temp,
)

__all__ = [
    "TAG",
    "decode_attrs",
    "decode_legacy_attrs",
    "decode_value",
    "encode_attrs",
    "encode_value",
    "legacy_mismatch",
    "read_attrs_bytes",
    "read_attrs_file",
    "read_legacy_attrs",
    "read_legacy_bytes",
    "write_attrs_file",
    "write_attrs_pair",
    "write_legacy_attrs",
]

TAG = "__npydir__"
#: deepest nesting of lists/dicts in one attribute value (deeper values are refused both ways)
MAX_DEPTH = 100
_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


# ----------------------------------------------------------------------------- encoding


def _float(x: float) -> Any:
    if math.isfinite(x):
        return x
    return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")


def _dtype_json(dtype: np.dtype) -> Any:
    descr = npformat.dtype_to_descr(dtype)
    return descr if isinstance(descr, str) else _tuples_to_lists(descr)


def _tuples_to_lists(x: Any) -> Any:
    if isinstance(x, (list, tuple)):
        return [_tuples_to_lists(v) for v in x]
    return x


def _lists_to_tuples(x: Any) -> Any:
    if isinstance(x, list):
        return tuple(_lists_to_tuples(v) for v in x)
    return x


def _dtype_from_json(d: Any) -> np.dtype:
    # a plain kind, or fields of plain kinds: never what else numpy would parse from the text
    return descr_dtype(d)


def _readable(dtype: np.dtype) -> bool:
    """Dtypes whose values are stored as readable JSON rather than base64."""
    if dtype.kind in "biu" or dtype.kind == "U":
        return True
    if dtype.kind == "f":
        return dtype.itemsize <= 8
    if dtype.kind == "c":
        return dtype.itemsize <= 16
    return False


def _element(x: Any, kind: str) -> Any:
    if kind == "f":
        return _float(float(x))
    if kind == "c":
        return [_float(float(x.real)), _float(float(x.imag))]
    if kind == "b":
        return bool(x)
    if kind in "iu":
        return int(x)
    return str(x)


def _to_json_data(arr: np.ndarray) -> Any:
    """Nested lists of JSON values for a readable dtype (non-finite floats as strings)."""
    data = arr.tolist()
    kind = arr.dtype.kind
    if kind not in "fc":
        return data

    def conv(x: Any) -> Any:
        if isinstance(x, list):
            return [conv(v) for v in x]
        return _element(x, kind)

    return conv(data)


def _encode_array(arr: np.ndarray, key: str) -> dict:
    if arr.dtype.hasobject:
        raise AttributeEncodingError(
            f"attribute {key!r}: object-dtype arrays cannot be stored; "
            "use a numeric, bool or str dtype"
        )
    out: dict[str, Any] = {
        TAG: "ndarray",
        "dtype": _dtype_json(arr.dtype),
        "shape": list(arr.shape),
    }
    if _readable(arr.dtype):
        out["data"] = _to_json_data(arr)
    else:
        out["base64"] = base64.b64encode(np.ascontiguousarray(arr).tobytes()).decode("ascii")
    return out


#: ints must have at most this many decimal digits: Python's default limit for converting an int
#: from JSON text (sys.int_info.default_max_str_digits), the same in every process
INT_MAX_DIGITS = 4300
_INT_BOUND = 10**INT_MAX_DIGITS
_INT_MAX_BITS = _INT_BOUND.bit_length() - 1  # below this many bits an int has fewer digits


def encode_value(value: Any, key: str = "", _depth: int = 0) -> Any:
    """Convert one attribute value to its JSON-compatible form (see the module table).

    Raises
    ------
    AttributeEncodingError
        ``value`` (or something nested in it) cannot be stored; the message names ``key``.
    """
    # numpy scalars first: np.float64 and np.str_ subclass float and str.
    if isinstance(value, np.generic):
        if value.dtype.hasobject:
            raise AttributeEncodingError(f"attribute {key!r}: numpy object scalar cannot be stored")
        if _readable(value.dtype):
            return {
                TAG: "scalar",
                "dtype": _dtype_json(value.dtype),
                "value": _element(value, value.dtype.kind),
            }
        return {
            TAG: "scalar",
            "dtype": _dtype_json(value.dtype),
            "base64": base64.b64encode(np.asarray(value).tobytes()).decode("ascii"),
        }
    if value is None or isinstance(value, (bool, str)):
        return str(value) if isinstance(value, str) and type(value) is not str else value
    if isinstance(value, int):
        if value.bit_length() > _INT_MAX_BITS and abs(value) >= _INT_BOUND:
            raise AttributeEncodingError(
                f"attribute {key[:100]!r}: an int of more than {INT_MAX_DIGITS} decimal digits "
                "(Python's default int/str conversion limit, so any Python process reads it "
                "back); store it as bytes (value.to_bytes(...)) or as a hex str"
            )
        return int(value)
    if isinstance(value, float):
        f = float(value)
        return f if math.isfinite(f) else {TAG: "float", "value": _float(f)}
    if isinstance(value, complex):
        return {TAG: "complex", "real": _float(value.real), "imag": _float(value.imag)}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {TAG: "bytes", "base64": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, np.ndarray):
        return _encode_array(np.asarray(value), key)
    if isinstance(value, (list, tuple, Mapping)) and _depth >= MAX_DEPTH:
        raise AttributeEncodingError(
            f"attribute {key[:100]!r}: lists/dicts nested deeper than {MAX_DEPTH} levels"
        )
    if isinstance(value, (list, tuple)):
        return [encode_value(v, f"{key}[{i}]", _depth + 1) for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        for k in value:
            if not isinstance(k, str):
                raise AttributeEncodingError(
                    f"attribute {key!r}: dict keys must be str, found {type(k).__name__} {k!r}"
                )
        if TAG in value:
            return {
                TAG: "dict",
                "items": [
                    [k, encode_value(v, f"{key}[{k!r}]", _depth + 1)] for k, v in value.items()
                ],
            }
        return {k: encode_value(v, f"{key}[{k!r}]", _depth + 1) for k, v in value.items()}
    raise AttributeEncodingError(
        f"attribute {key!r}: cannot store a value of type "
        f"{type(value).__module__}.{type(value).__qualname__}; "
        "attributes hold str, int, float, bool, None, bytes, lists, dicts with str keys, "
        "and numpy scalars/arrays of non-object dtype"
    )


def encode_attrs(attrs: Mapping[str, Any], *, indent: int | None = 1) -> str:
    """Encode a dict of attributes as strict JSON text (see the module table).

    Raises
    ------
    AttributeEncodingError
        A value cannot be stored, or the arrays and scalars take more than
        :func:`decode_limit` of the text's length (the reader would refuse them); the message
        names the key.
    """
    out = {}
    for k, v in attrs.items():
        if not isinstance(k, str):
            raise AttributeEncodingError(
                f"attribute names must be str, got {type(k).__name__} {k!r}"
            )
        out[k] = encode_value(v, k)
    text = _encode_object(out, indent)
    _check_decodable_size(attrs, text)
    return text


def _encode_object(out: dict[str, Any], indent: int | None) -> str:
    if TAG in out:
        # An attribute named like the tag: the whole object takes the table's tagged "dict"
        # form, or reading it back would take the file's top-level object for a tagged value
        # (and every attribute of the group would become unreadable).  ASCII-only JSON: it
        # carries lone surrogates too.
        tagged = {TAG: "dict", "items": [[k, v] for k, v in out.items()]}
        return json.dumps(tagged, allow_nan=False) + "\n"
    try:
        if indent is None:
            return json.dumps(out, allow_nan=False, ensure_ascii=False)
        # one attribute per line: diff-friendly and readable, without exploding arrays into lines
        lines = [_json_line(k, v) for k, v in out.items()]
        return (
            "{\n"
            + ",\n".join(" " * indent + line for line in lines)
            + ("\n}\n" if lines else "}\n")
        )
    except (TypeError, ValueError) as exc:  # pragma: no cover - encode_value leaves none
        raise AttributeEncodingError(f"attributes cannot be encoded: {exc}") from None


def _value_nbytes(value: Any) -> int:
    """Bytes the arrays and scalars in ``value`` take once decoded (what the reader charges)."""
    if isinstance(value, (np.ndarray, np.generic)):
        return value.nbytes
    if isinstance(value, (list, tuple)):
        return sum(_value_nbytes(v) for v in value)
    if isinstance(value, Mapping):
        return sum(_value_nbytes(v) for v in value.values())
    return 0


def _check_decodable_size(attrs: Mapping[str, Any], text: str) -> None:
    """Refuse to write what :func:`decode_attrs` would refuse to read back as too large."""
    sizes = [(k, _value_nbytes(v)) for k, v in attrs.items()]
    total = sum(n for _, n in sizes)
    if total <= DECODE_SLACK_BYTES:
        return
    limit = decode_limit(len(text.encode("utf-8", "surrogatepass")))
    running = 0
    for key, n in sizes:
        running += n
        if running > limit:
            raise AttributeEncodingError(
                f"attribute {key[:100]!r}: the arrays of these attributes take {total} bytes, "
                f"more than the {limit} bytes their {len(text)}-character JSON may decode to "
                "(string arrays declared much wider than their strings); store large arrays "
                "as datasets"
            )


def _json_line(k: str, v: Any) -> str:
    line = (
        json.dumps(k, ensure_ascii=False)
        + ": "
        + json.dumps(v, allow_nan=False, ensure_ascii=False)
    )
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: only \u escapes can carry them in UTF-8
        line = json.dumps(k) + ": " + json.dumps(v, allow_nan=False)
    return line


def _decode_float(x: Any) -> float:
    if isinstance(x, str):
        try:
            return _NONFINITE[x]
        except KeyError:
            raise FormatError(f"bad float {x!r} in attributes") from None
    return float(x)


def _decode_elements(data: Any, kind: str) -> Any:
    if isinstance(data, list):
        if kind == "c" and len(data) == 2 and not any(isinstance(v, list) for v in data):
            return complex(_decode_float(data[0]), _decode_float(data[1]))
        return [_decode_elements(v, kind) for v in data]
    if kind == "f":
        return _decode_float(data)
    return data


class _Budget:
    """How many bytes the arrays and scalars decoded from one attrs text may still take.

    A value's size is declared by its dtype and shape, not by its data: 72 bytes of JSON can ask
    for a ``"<U400000000"`` scalar (1.6 GB).  What one text decodes to is bounded by its length
    (:func:`decode_limit`) and charged before anything is allocated.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.limit = self.left = decode_limit(size)

    def charge(self, dtype: np.dtype, shape: tuple[int, ...]) -> None:
        need = nbytes(dtype, shape)
        if need > self.left:
            raise FormatError(
                f"a {dtype.str} value of shape {list(shape)} would take {need} bytes; "
                f"attribute values decoded from {self.size} bytes of JSON may take at most "
                f"{self.limit} bytes ({DECODE_BYTES_PER_BYTE} per byte + "
                f"{DECODE_SLACK_BYTES >> 20} MiB)"
            )
        self.left -= need


#: what the arrays/scalars decoded from an attrs text of n bytes may take: n times this ...
DECODE_BYTES_PER_BYTE = 64
#: ... plus this much.  Written values fit well inside (readable numbers take at least 2
#: characters per element, base64 4 per 3 bytes); a string array declared 16 times wider than
#: its strings and larger than the slack would not, and is refused when written.
DECODE_SLACK_BYTES = 16 << 20


def decode_limit(size: int) -> int:
    """Bytes the arrays and scalars decoded from ``size`` bytes of attrs JSON may take."""
    return DECODE_BYTES_PER_BYTE * size + DECODE_SLACK_BYTES


def _decode_array(obj: dict, budget: _Budget) -> np.ndarray:
    dtype = _dtype_from_json(obj["dtype"])
    shape = tuple(obj["shape"])
    if len(shape) > 64 or not all(type(n) is int and n >= 0 for n in shape):
        raise ValueError(f"bad shape {list(shape)!r}")
    budget.charge(dtype, shape)
    if "base64" in obj:
        raw = base64.b64decode(obj["base64"])
        return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
    kind = dtype.kind
    data = obj["data"]
    if kind == "c":

        def conv(v: Any) -> Any:
            if isinstance(v, list) and len(v) == 2 and not isinstance(v[0], list):
                return complex(_decode_float(v[0]), _decode_float(v[1]))
            return [conv(x) for x in v]

        data = conv(data) if shape else complex(_decode_float(data[0]), _decode_float(data[1]))
    elif kind == "f":
        data = _decode_elements(data, kind)
    if shape and 0 in shape:
        return np.zeros(shape, dtype=dtype)
    arr = np.array(data, dtype=dtype)
    if arr.shape != shape:
        raise ValueError(f"data of shape {arr.shape} does not match shape {list(shape)}")
    return arr


def _decode_tagged(obj: dict, budget: _Budget) -> Any:
    tag = obj.get(TAG)
    if tag is None:
        return obj
    try:
        if tag == "float":
            return _decode_float(obj["value"])
        if tag == "complex":
            return complex(_decode_float(obj["real"]), _decode_float(obj["imag"]))
        if tag == "bytes":
            return base64.b64decode(obj["base64"], validate=True)
        if tag == "dict":
            out = {}
            for k, v in obj["items"]:
                if not isinstance(k, str):
                    raise TypeError(f"dict keys must be str, found {k!r}")
                out[k] = v
            return out
        if tag == "ndarray":
            return _decode_array(obj, budget)
        if tag == "scalar":
            dtype = _dtype_from_json(obj["dtype"])
            budget.charge(dtype, ())
            if "base64" in obj:
                if dtype.itemsize == 0:  # np.bytes_(b"") and friends: nothing to decode
                    return dtype.type()
                return np.frombuffer(base64.b64decode(obj["base64"]), dtype=dtype)[0]
            v = obj["value"]
            if dtype.kind == "c":
                v = complex(_decode_float(v[0]), _decode_float(v[1]))
            elif dtype.kind == "f":
                v = _decode_float(v)
            return np.array(v, dtype=dtype)[()]
    except FormatError:
        raise
    except Exception as exc:  # noqa: BLE001 - numpy raises many types on bad dtypes/shapes
        raise FormatError(
            f"malformed {str(tag)[:50]!r} attribute value {_short(obj)}: "
            f"{type(exc).__name__}: {str(exc)[:200]}"
        ) from None
    raise FormatError(f"unknown attribute tag {str(tag)[:50]!r} in {_short(obj)}")


def _loads(text: str | bytes, budget: _Budget) -> Any:
    return json.loads(
        text,
        object_hook=lambda obj: _decode_tagged(obj, budget),
        parse_constant=_refuse_constant,
    )


def _short(obj: Any) -> str:
    text = repr(obj)
    return text if len(text) <= 200 else text[:200] + "..."


def _refuse_constant(token: str) -> Any:
    raise FormatError(f"non-standard JSON token {token} (attrs files are strict JSON)")


def decode_value(obj: Any) -> Any:
    """Inverse of :func:`encode_value` for an already JSON-parsed value."""
    text = json.dumps(obj, allow_nan=False)
    return _loads(text, _Budget(len(text)))


def decode_attrs(text: str | bytes, name: str | os.PathLike = "<attrs>") -> dict[str, Any]:
    """Decode JSON text written by :func:`encode_attrs` back into a dict of values.

    The arrays and scalars it decodes to may take at most :func:`decode_limit` of the text's
    length in bytes; a value declaring more is refused before it is allocated.

    Raises
    ------
    FormatError
        The text is not strict JSON, not an object, or holds a malformed or oversized tagged
        value; the message names ``name`` and, for a bad value, its attribute.
    """
    size = len(text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text)
    try:
        out = _loads(text, _Budget(size))
    except FormatError as exc:
        key = _failing_key(text, size)
        where = f"{name}: attribute {key[:100]!r}" if key is not None else f"{name}"
        raise FormatError(f"{where}: {exc}") from None
    except RecursionError:
        raise FormatError(f"{name}: attributes are nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise FormatError(f"{name}: attributes are not valid JSON ({exc})") from None
    if not isinstance(out, dict):
        raise FormatError(f"{name}: attributes must be a JSON object, found {type(out).__name__}")
    # what is read must be writable again (a reader may update and write it back)
    try:
        encode_attrs(out)
    except (AttributeEncodingError, RecursionError) as exc:
        raise FormatError(f"{name}: attributes cannot be stored back: {exc}") from None
    return out


def _failing_key(text: str | bytes, size: int) -> str | None:
    """The attribute whose value a decode of ``text`` refused (None: not one attribute's).

    Only run after a refusal: the values are decoded again one by one, charged to one budget
    as in the first pass, so the key found is the one the first pass stopped at.
    """
    try:
        raw = json.loads(text, parse_constant=_refuse_constant)
    except (FormatError, ValueError, RecursionError, UnicodeDecodeError):
        return None
    if not isinstance(raw, dict):
        return None
    items: Iterable[Any] = raw.items()
    if raw.get(TAG) == "dict" and isinstance(raw.get("items"), list):
        items = [kv for kv in raw["items"] if isinstance(kv, list) and len(kv) == 2]
    budget = _Budget(size)
    for key, value in items:
        try:
            _loads(json.dumps(value), budget)
        except FormatError:
            return str(key)
        except (ValueError, RecursionError):
            return None
    return None


def read_attrs_file(path: str | os.PathLike, *, dir_fd: int | None = None) -> dict[str, Any]:
    """Read an attrs JSON file; a missing file is an empty dict.

    ``dir_fd``: the open directory holding ``path`` (see :mod:`npydir.store.fsutil`); a FIFO or
    device in place of the file is a :class:`FormatError`.
    """
    data = read_attrs_bytes(path, dir_fd=dir_fd)
    return {} if data is None else decode_attrs(data, path)


def read_attrs_bytes(path: str | os.PathLike, *, dir_fd: int | None = None) -> bytes | None:
    """The bytes of an attrs JSON file, all from the one file opened (None if there is none).

    Unbuffered: ``.attrs`` calls this on every access to compare the bytes with its snapshot.
    """
    try:
        return fsutil.read_bytes(path, dir_fd=dir_fd)  # a regular file, never a FIFO
    except FileNotFoundError:
        return None


def write_attrs_file(
    path: str | os.PathLike,
    attrs: Mapping[str, Any],
    *,
    sync: bool = True,
    dir_fd: int | None = None,
) -> None:
    """Atomically write ``attrs`` as JSON (temp file + rename; in ``dir_fd`` when given)."""
    text = encode_attrs(attrs).encode("utf-8")
    atomic_write(path, lambda fp: fp.write(text), sync=sync, dir_fd=dir_fd)


# ----------------------------------------------------------------------------- legacy attrs.npy

#: Largest attrs.npy read (DAS writes a few kB; the whole file is read before unpickling).
MAX_LEGACY_BYTES = 64 << 20
#: Most values (array elements count one each) an attrs dict may expand to when walked as a tree:
#: a pickle's memo lets one list appear many times, so a few hundred bytes can describe 2**40.
MAX_LEGACY_VALUES = 1 << 24

_MEMO_PUT = {"PUT", "BINPUT", "LONG_BINPUT"}
_MEMO_GET = {"GET", "BINGET", "LONG_BINGET"}


def _prescan(data: bytes, name: str) -> None:
    """Check a pickle's opcodes without executing any (:func:`pickletools.genops`).

    Run before the interpreter, so a stream that does not parse or holds numbers no well formed
    pickle has is refused as a whole: no memo index beyond its number of opcodes (each one
    stores at most one entry; the C unpickler grew its memo array to twice such an index, ~16 GB
    for ``LONG_BINPUT 1e9`` in a 139-byte file) and no declared length beyond its end (genops
    refuses those while reading them from a BytesIO, which never allocates more than it holds).
    """
    ops = 0
    top = -1
    arg: Any  # an int for the memo and FRAME opcodes tested below
    try:
        for opcode, arg, _pos in pickletools.genops(io.BytesIO(data)):
            ops += 1
            if opcode.name in _MEMO_PUT or opcode.name in _MEMO_GET:
                top = max(top, int(arg))
            elif opcode.name == "FRAME" and int(arg) > len(data):
                raise ValueError(f"frame of {arg} bytes in a {len(data)}-byte pickle")
    except Exception as exc:  # noqa: BLE001 - truncated/unknown opcodes: a malformed pickle
        raise FormatError(
            f"{name}: attrs.npy pickle does not load ({type(exc).__name__}: {exc})"
        ) from None
    if top >= ops:
        raise FormatError(
            f"{name}: attrs.npy pickle uses memo slot {top} but has only {ops} opcodes "
            "(a corrupt or hostile pickle)"
        )


def _check_plain(value: Any, name: str) -> Any:
    """Refuse object arrays and non-plain values inside an unpickled legacy attrs dict.

    The value is a graph, not a tree: the pickle memo lets containers be shared (and even
    contain themselves).  Each container is checked once (by ``id``; all of them stay alive
    inside ``value``), and the size the value would have written out as a tree (what the JSON
    encoder will walk) is summed per container, so a shared-reference bomb is refused in time
    linear in the pickle instead of running for 2**40 steps.
    """
    sizes: dict[int, int] = {}  # id -> expanded size of a checked container
    active: set[int] = set()  # containers on the current path (a repeat is a cycle)

    def walk(v: Any, where: str, depth: int) -> int:
        if depth > 100:
            raise UnsafePickleError(f"{name}: attrs nested too deeply at {where}")
        if isinstance(v, np.ndarray):
            if v.dtype.hasobject:
                raise UnsafePickleError(f"{name}: object-dtype array at {where} is not allowed")
            return max(1, v.size)
        if isinstance(v, ObjectArray):
            raise UnsafePickleError(f"{name}: object-dtype array at {where} is not allowed")
        if isinstance(v, Pending):
            what = "a numpy dtype" if v.kind == "dtype" else "an array without its data"
            raise UnsafePickleError(f"{name}: {what} at {where} is not an attribute value")
        if isinstance(v, (dict, list, tuple)):
            key = id(v)
            if key in sizes:
                return sizes[key]
            if key in active:
                raise UnsafePickleError(f"{name}: attrs at {where} contain themselves")
            active.add(key)
            items = v.items() if isinstance(v, dict) else enumerate(v)
            total = 1
            for k, item in items:
                total += walk(item, f"{where}[{k!r}]", depth + 1)
                if total > MAX_LEGACY_VALUES:
                    raise UnsafePickleError(
                        f"{name}: attrs at {where} expand to more than {MAX_LEGACY_VALUES} "
                        "values (shared references repeated many times)"
                    )
            active.discard(key)
            sizes[key] = total
            return total
        if v is None or isinstance(v, (str, bytes, int, float, complex, np.generic)):
            if isinstance(v, np.generic) and v.dtype.hasobject:
                raise UnsafePickleError(f"{name}: object scalar at {where} is not allowed")
            return 1
        raise UnsafePickleError(
            f"{name}: value of type {type(v).__name__} at {where} is not allowed"
        )

    walk(value, "attrs", 0)
    return value


def read_legacy_attrs(path: str | os.PathLike, *, dir_fd: int | None = None) -> dict[str, Any]:
    """Read DAS's pickled ``attrs.npy`` safely (see :func:`decode_legacy_attrs`), in the open
    directory ``dir_fd`` if given."""
    raw = read_legacy_bytes(path, dir_fd=dir_fd)
    if raw is None:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), os.fspath(path))
    return decode_legacy_attrs(raw, path)


def read_legacy_bytes(path: str | os.PathLike, *, dir_fd: int | None = None) -> bytes | None:
    """The bytes of an ``attrs.npy`` (None if there is none), read up to one byte past what
    :func:`decode_legacy_attrs` accepts, so a huge file is refused without reading it."""
    try:
        limit = MAX_LEGACY_BYTES + MAX_HEADER_SIZE + 63
        return fsutil.read_bytes(path, dir_fd=dir_fd, limit=limit)
    except FileNotFoundError:
        return None


def decode_legacy_attrs(raw: bytes, name: str | os.PathLike = "<attrs.npy>") -> dict[str, Any]:
    """The attributes in the bytes of DAS's pickled ``attrs.npy``, as plain values.

    The pickle is never unpickled: :func:`npydir.store.legacy_pickle.load_plain` interprets its
    opcodes and builds arrays, scalars and dtypes from validated parts (so a value takes no
    more memory than its bytes in the file).

    Raises
    ------
    UnsafePickleError
        The pickle names a global outside the allowlist, constructs objects, or holds object
        arrays or sets; nothing from it is executed.
    FormatError
        Not an ``.npy`` file holding a dict, or a malformed pickle; the message names ``name``
        and says what was expected.
    """
    name = os.fspath(name)
    fp = io.BytesIO(raw)
    header = read_header(fp, name, allow_object=True)
    if not header.dtype.hasobject:
        # a plain array was saved (not DAS's dict): there are no attributes in it we can use
        raise FormatError(
            f"{name}: expected a pickled dict (0-d object array), "
            f"found {header.dtype} {header.shape}"
        )
    data = fp.read()
    if len(data) > MAX_LEGACY_BYTES:
        raise FormatError(
            f"{name}: attrs.npy is larger than {MAX_LEGACY_BYTES} bytes; DAS attributes are "
            "small (refused rather than unpickled)"
        )
    _prescan(data, name)
    try:
        obj = load_plain(data, name)  # plain values only: no pickle restore function runs
    except FormatError:
        raise
    except Exception as exc:  # noqa: BLE001 - numbers numpy or Python refuse: a malformed pickle
        raise FormatError(
            f"{name}: attrs.npy pickle does not load ({type(exc).__name__}: {str(exc)[:200]})"
        ) from None
    if isinstance(obj, ObjectArray):
        if obj.shape != ():
            raise FormatError(
                f"{name}: expected a 0-d object array holding a dict, found object {obj.shape}"
            )
        obj = obj.items[0]
    elif isinstance(obj, np.ndarray):
        raise FormatError(
            f"{name}: expected a 0-d object array holding a dict, found {obj.dtype} {obj.shape}"
        )
    if not isinstance(obj, dict):
        raise FormatError(f"{name}: expected a dict of attributes, found {type(obj).__name__}")
    _check_plain(obj, name)
    return {str(k): v for k, v in obj.items()}


def _legacy_bytes(attrs: Mapping[str, Any]) -> bytes:
    """The bytes of an ``attrs.npy`` holding ``attrs`` as DAS writes it (``np.save``)."""
    payload = np.empty((), dtype=object)
    payload[()] = dict(attrs)
    buf = io.BytesIO()
    np.save(buf, payload, allow_pickle=True)
    return buf.getvalue()


def write_legacy_attrs(
    path: str | os.PathLike,
    attrs: Mapping[str, Any],
    *,
    sync: bool = True,
    dir_fd: int | None = None,
) -> None:
    """Write ``attrs`` as DAS does (``np.save`` of the dict, i.e. a pickled 0-d object array).

    DAS reads it with ``np.load(path, allow_pickle=True)[()]``.  Written atomically.
    """
    data = _legacy_bytes(attrs)
    atomic_write(path, lambda fp: fp.write(data), sync=sync, dir_fd=dir_fd)


# ----------------------------------------------------------------------------- attrs.json + .npy


def _native(value: Any) -> Any:
    """``value`` with every numpy array and scalar in native byte order (values unchanged).

    Pickling (``attrs.npy``) keeps values but not always byte order: numpy unpickles a ``>i2``
    array as ``<i2`` on this machine.  Byte order is how a value is stored, not what it is.
    """
    if isinstance(value, (np.ndarray, np.generic)):
        native = value.dtype.newbyteorder("=")  # structured dtypes: every field
        if native == value.dtype:
            return value
        converted = np.asarray(value).astype(native)
        return converted if isinstance(value, np.ndarray) else converted[()]
    if isinstance(value, (list, tuple)):
        return [_native(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _native(v) for k, v in value.items()}
    return value


def _canonical(value: Any, key: str) -> str | None:
    """The JSON text the store's encoding gives ``value`` (None: the encoding refuses it)."""
    try:
        return json.dumps(encode_value(_native(value), key), sort_keys=True, allow_nan=False)
    except (AttributeEncodingError, RecursionError, ValueError, TypeError):
        return None


def legacy_mismatch(json_attrs: Mapping[str, Any], legacy_attrs: Mapping[str, Any]) -> list[str]:
    """The keys on which ``attrs.json``'s and ``attrs.npy``'s attributes disagree, sorted.

    Two values match when the store's one encoding (:func:`encode_value`, the module table)
    gives them the same JSON text, with object keys sorted and numpy values taken in native
    byte order (pickle does not keep byte order).  So NaN matches NaN, a tuple matches the list
    it is stored as and a ``>i2`` array the same ``<i2`` array, but ``1`` does not match
    ``1.0`` or ``True``, ``-0.0`` does not match ``0.0``, and ``np.float32(1)`` does not match
    ``1.0`` (the dtype is part of the encoding).  A key present on one side only disagrees,
    and so does a legacy value the encoding refuses.
    """
    out = []
    for key in sorted(set(json_attrs) | set(legacy_attrs)):
        if key not in json_attrs or key not in legacy_attrs:
            out.append(key)
            continue
        mine = _canonical(json_attrs[key], key)
        if mine is None or mine != _canonical(legacy_attrs[key], key):
            out.append(key)
    return out


def write_attrs_pair(
    json_path: str | os.PathLike,
    legacy_path: str | os.PathLike,
    attrs: Mapping[str, Any],
    *,
    sync: bool = True,
    dir_fd: int | None = None,
) -> None:
    """Write ``attrs.json`` and DAS's ``attrs.npy`` holding the same attributes.

    ``dir_fd``: the open directory holding both files (every step happens in it).

    ``attrs.json`` is the source of truth.  ``attrs.npy`` holds exactly what ``attrs.json``
    decodes to (tuples as lists, ``bytearray`` as ``bytes``, ...), so the two always match under
    :func:`legacy_mismatch` after a completed write.

    Order, so that an interrupted write is either invisible or detected by :func:`npydir.verify`:

    1. both files are encoded and written to fsynced temp files (an error here -- a value that
       cannot be stored, a full disk -- leaves both files as they were);
    2. ``attrs.npy`` is renamed into place;
    3. ``attrs.json`` is renamed into place: the commit point.

    A kill between the two renames leaves ``attrs.npy`` one update ahead of ``attrs.json``
    (and the JSON temp file): ``verify`` reports ``stale-attrs-npy`` and ``stray-temp``, and
    ``repair`` rewrites ``attrs.npy`` from ``attrs.json`` and removes the temp file.  Renaming
    ``attrs.npy`` first is what makes this detectable even when it did not exist before (a store
    opened with ``das_compat=True`` for the first time): had ``attrs.json`` gone first, the kill
    would leave a store that looks like one without ``attrs.npy``.

    Raises
    ------
    AttributeEncodingError
        A value cannot be stored (nothing is written).
    OSError
        Writing failed; the message names the file.
    """
    json_path, legacy_path = Path(json_path), Path(legacy_path)
    text = encode_attrs(attrs).encode("utf-8")
    data = _legacy_bytes(decode_attrs(text, json_path))  # what a reader of attrs.json gets
    at = {"dir_fd": dir_fd}
    legacy_tmp = write_temp(legacy_path, lambda fp: fp.write(data), sync=sync, **at)
    try:
        json_tmp = write_temp(json_path, lambda fp: fp.write(text), sync=sync, **at)
    except BaseException:
        remove_if_present(legacy_tmp, **at)
        raise
    try:
        replace(legacy_tmp, legacy_path, **at)
    except BaseException:
        remove_if_present(legacy_tmp, **at)
        remove_if_present(json_tmp, **at)
        raise
    try:
        replace(json_tmp, json_path, **at)
    except BaseException:
        remove_if_present(json_tmp, **at)
        raise
    if sync:
        fsync_dir(json_path.parent, fd=dir_fd)
        if legacy_path.parent != json_path.parent and dir_fd is None:
            fsync_dir(legacy_path.parent)
