"""Dtypes an attribute value may have, built only from validated parts.

Both attribute decoders (``attrs.json`` and DAS's pickled ``attrs.npy``) name dtypes with data
from the file.  numpy accepts far more than attributes ever hold: ``"(20000,20000)f8"`` is a
3.2 GB subarray type, ``"f8,(9,)i4"`` a structured one, ``"O"`` holds Python objects.  Here a
dtype is only a plain kind (bool, int, uint, float, complex, str, bytes, void, datetime,
timedelta) or a structured type whose fields are such dtypes (with a bounded subarray shape),
and a decoded value's size is checked before anything is allocated for it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.lib import format as npformat

#: the kinds of dtype an attribute value may have (``O`` objects and numpy's variable-width
#: ``T`` strings hold pointers, not values)
KINDS = frozenset("biufcUSVMm")
#: longest dtype string accepted (``"<M8[100ns]"`` is 10)
MAX_DTYPE_TEXT = 64
#: most dimensions of a subarray field
MAX_SUBARRAY_DIMS = 32


class DTypeRefused(ValueError):
    """A dtype description outside :data:`KINDS` or otherwise malformed (the message says why)."""


def check_dtype(dtype: np.dtype) -> np.dtype:
    """Return ``dtype`` if it is one an attribute may have, else raise :class:`DTypeRefused`."""
    if dtype.fields is not None:
        for field in dtype.fields.values():
            check_dtype(field[0])
        return dtype
    if dtype.subdtype is not None:
        base, shape = dtype.subdtype
        if len(shape) > MAX_SUBARRAY_DIMS:
            raise DTypeRefused(f"subarray of {len(shape)} dimensions")
        check_dtype(base)
        return dtype
    if dtype.kind not in KINDS:
        what = {"O": "object", "T": "variable-width string"}.get(dtype.kind, repr(dtype.kind))
        raise DTypeRefused(
            f"dtype {dtype.str} ({what}) is not one attributes hold "
            "(bool, int, uint, float, complex, str, bytes, void, datetime, timedelta)"
        )
    return dtype


def simple_dtype(text: Any) -> np.dtype:
    """The dtype a string such as ``"<f8"``, ``"|S3"``, ``"<M8[ns]"`` names.

    Only a single plain kind: a string numpy would read as a structured or subarray type
    (``"f8,i4"``, ``"(3,)f8"``) is refused, as is anything outside :data:`KINDS`.
    """
    if not isinstance(text, str) or not text or len(text) > MAX_DTYPE_TEXT:
        raise DTypeRefused(f"dtype must be a short string such as '<f8', found {text!r:.80}")
    try:
        dtype = np.dtype(text)
    except Exception as exc:  # noqa: BLE001 - numpy raises several types for bad strings
        raise DTypeRefused(f"dtype {text!r} does not parse ({type(exc).__name__})") from None
    if dtype.fields is not None or dtype.subdtype is not None:
        raise DTypeRefused(f"dtype {text!r} is not a single plain type")
    return check_dtype(dtype)


def _shape(value: Any) -> tuple[int, ...]:
    if not isinstance(value, (list, tuple)) or len(value) > MAX_SUBARRAY_DIMS:
        raise DTypeRefused(f"subarray shape must be a short list of sizes, found {value!r:.80}")
    if not all(type(n) is int and n >= 0 for n in value):
        raise DTypeRefused(f"subarray shape must hold sizes >= 0, found {value!r:.80}")
    return tuple(value)


def _field_name(value: Any) -> Any:
    if isinstance(value, str):
        return value
    if (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(isinstance(v, str) for v in value)
    ):
        return tuple(value)  # (title, name)
    raise DTypeRefused(f"field name must be a str or [title, name], found {value!r:.80}")


def descr_dtype(descr: Any, depth: int = 0) -> np.dtype:
    """The dtype of a ``.npy``-style description: a string, or a list of fields
    ``[name, descr]`` / ``[name, descr, shape]`` (lists and tuples alike, nested)."""
    if isinstance(descr, str):
        return simple_dtype(descr)
    if depth > 32 or not isinstance(descr, (list, tuple)):
        raise DTypeRefused(f"dtype must be a string or a list of fields, found {descr!r:.80}")
    fields: list[Any] = []
    for field in descr:
        if not isinstance(field, (list, tuple)) or len(field) not in (2, 3):
            raise DTypeRefused(f"a field must be [name, dtype] or [name, dtype, shape], "
                               f"found {field!r:.80}")
        name = _field_name(field[0])
        sub = descr_dtype(field[1], depth + 1)
        fields.append((name, sub.descr if sub.fields is not None else sub.str)
                      + ((_shape(field[2]),) if len(field) == 3 else ()))
    try:
        dtype = npformat.descr_to_dtype(fields)
    except Exception as exc:  # noqa: BLE001 - duplicate names, bad titles, ...
        raise DTypeRefused(f"fields do not make a dtype ({type(exc).__name__}: {exc})") from None
    return check_dtype(dtype)


def nbytes(dtype: np.dtype, shape: tuple[int, ...]) -> int:
    """Bytes an array of ``dtype`` and ``shape`` takes (exact; Python ints never overflow)."""
    return dtype.itemsize * math.prod(shape)
