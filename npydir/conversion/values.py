"""Value policy of conversions: member names, dtypes and attribute values.

Everything here is pure (no I/O) so the source and destination adapters of
:mod:`npydir.conversion.engine` share one set of rules:

* :func:`escape_name` turns any zarr/HDF5 member name into one the npydir store accepts
  (docs/design.md, section 2) by percent-encoding the offending characters; the original name is
  kept in the member's attrs under :data:`ORIGINAL_NAME`, and converting back restores it.
* :func:`plan_dtype` decides, per array, whether its dtype is copied as it is, converted
  (variable-length strings to fixed-width), or refused (object references, ragged arrays),
  with the reason in words.
* :func:`apply_transform` is the per-block conversion named by a picklable spec, so Dask
  workers run the same code as the local threads.
* :func:`same_value` is the strict equality (types included, NaN equal to NaN) used to check
  that attributes survive a round trip.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import numpy as np

from ..store.names import is_device_name

#: attr key holding a member's name in the source when it had to be escaped
ORIGINAL_NAME = "npydir_original_name"
#: array attr key: the numpy dtype when the backend cannot keep it (unicode in HDF5, byte
#: order in zarr 3); restored when converting back
NUMPY_DTYPE = "npydir_dtype"
#: group attr key: {member name: link target} for soft/external links that were not followed
LINKS = "npydir_links"
#: group attr key: {member name: reason} for arrays that were refused
REFUSED = "npydir_refused"

_UNSAFE = set('/\\<>:"|?*%')  # '%' is the escape character itself


def _pct(ch: str) -> str:
    return "".join(f"%{b:02X}" for b in ch.encode("utf-8", "surrogatepass"))


def escape_name(name: str, taken: set[str] | None = None) -> str:
    """Return ``name`` unchanged if npydir accepts it, else an escaped, unique variant.

    Parameters
    ----------
    name : str
        Member name in the source (zarr or HDF5 allow almost anything but ``/``).
    taken : set of str, optional
        Lower-cased names already used among the siblings; a name that differs from one of
        them only in case gets a ``%~N`` suffix (portable stores refuse such siblings).
        The chosen name is added to it.
    """
    out = "".join(_pct(c) if (c in _UNSAFE or ord(c) < 32 or ord(c) == 127) else c for c in name)
    if not out:
        out = "%"
    if out.startswith("."):
        out = "%2E" + out[1:]
    # the store's rule for Windows device names (npydir.store.names.validate_name)
    if out.lower() == "attrs" or is_device_name(out):
        out = _pct(out[0]) + out[1:]
    low = out.lower()
    if low.endswith(".npy") or low.endswith(".json"):
        dot = out.rfind(".")
        out = out[:dot] + "%2E" + out[dot + 1 :]
    if out.endswith(" "):  # Windows drops trailing blanks and dots
        out = out[:-1] + "%20"
    elif out.endswith("."):
        out = out[:-1] + "%2E"
    if len(out.encode("utf-8", "surrogatepass")) > 200:
        digest = hashlib.blake2b(name.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()
        out = out.encode("utf-8", "surrogatepass")[:180].decode("utf-8", "ignore") + "%~" + digest
    if taken is not None:
        base, n = out, 1
        while out.lower() in taken:
            out = f"{base}%~{n}"
            n += 1
        taken.add(out.lower())
    return out


def fully_escaped(name: str) -> str:
    """Last-resort escape: every character outside ``[A-Za-z0-9_-]`` percent-encoded."""
    return "".join(c if (c.isascii() and (c.isalnum() or c in "_-")) else _pct(c) for c in name)


# --------------------------------------------------------------------------- dtypes


def is_vlen_string(dtype: np.dtype) -> bool:
    """True for numpy's StringDType (zarr 3 reads variable-length strings as it)."""
    return dtype.kind == "T"


def plan_dtype(dtype: np.dtype, *, dest: str) -> tuple[np.dtype | None, str | None]:
    """Check that ``dtype`` can be stored in a ``dest`` ("npydir", "zarr", "hdf5") array.

    Returns ``(dtype_to_store, refusal_reason)``; exactly one of them is None.  Variable-length
    strings are handled by the source adapters (they know how to measure them) before this.
    """
    if dtype.hasobject or dtype.kind == "O":
        return None, f"dtype {dtype} holds Python objects (references or ragged data)"
    if dest == "hdf5":
        if dtype.kind in "mM":
            return None, f"HDF5 has no {dtype} (datetime/timedelta) type"
        if dtype.names is not None and any(
            # a dtype with names has fields
            dtype.fields[f][0].kind in "UmMT" for f in dtype.names  # type: ignore[index]
        ):
            return None, f"structured dtype {dtype} has a field HDF5 cannot store"
    if dtype.kind == "T":
        return None, "variable-length strings must be converted to fixed width first"
    return dtype, None


def apply_transform(spec: tuple | None, block: Any) -> np.ndarray:
    """Convert one block as ``spec`` says; ``None`` means unchanged.

    Specs (picklable, so Dask workers apply the same code):

    * ``("str", "<U12")``: variable-length strings (StringDType or objects) to fixed width;
      bytes are decoded as UTF-8.
    * ``("bytes", "|S12")``: variable-length bytes to fixed width.
    * ``("utf8", "<U12")``: fixed-length UTF-8 bytes (HDF5) decoded to unicode.
    """
    if spec is None:
        return np.asarray(block)
    kind, dtype = spec
    arr = np.asarray(block)
    if kind == "str":
        if arr.dtype.kind == "O":
            flat: list[Any] = [
                v.decode("utf-8") if isinstance(v, bytes) else ("" if v is None else str(v))
                for v in arr.ravel().tolist()
            ]
            return np.array(flat, dtype=dtype).reshape(arr.shape)
        return arr.astype(dtype)
    if kind == "bytes":
        if arr.dtype.kind == "O":
            flat = [v if isinstance(v, bytes) else str(v).encode("utf-8")
                    for v in arr.ravel().tolist()]
            return np.array(flat, dtype=dtype).reshape(arr.shape)
        return arr.astype(dtype)
    if kind == "astype":
        return arr.astype(dtype, copy=False)
    if kind == "utf8":
        return np.char.decode(arr, "utf-8").astype(dtype) if arr.size else arr.astype(dtype)
    raise ValueError(f"unknown transform {spec!r}")


def max_string_length(block: Any) -> int:
    """Longest string (characters, or bytes for bytes objects) in a block of strings."""
    arr = np.asarray(block)
    if arr.size == 0:
        return 0
    if arr.dtype.kind == "T":
        return int(np.strings.str_len(arr).max())
    if arr.dtype.kind in "SU":
        return int(np.char.str_len(arr).max())
    return max(len(v) if v is not None else 0 for v in arr.ravel().tolist())


# --------------------------------------------------------------------------- attrs


def same_value(a: Any, b: Any) -> bool:
    """Strict equality for attribute values: same types, NaN equals NaN, arrays by dtype+data."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)):
            return False
        if a.dtype != b.dtype or a.shape != b.shape:
            return False
        if a.dtype.kind in "fc":
            return bool(np.array_equal(a, b, equal_nan=True))
        return bool(np.array_equal(a, b))
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    if isinstance(a, (float, np.floating)):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if isinstance(a, (complex, np.complexfloating)):
        return same_value(a.real, b.real) and same_value(a.imag, b.imag)
    if isinstance(a, np.generic):
        return a.dtype == b.dtype and bool(a == b)
    return bool(a == b)


def clean_foreign_attr(value: Any) -> Any:
    """Make an attribute read by h5py/zarr storable in npydir's JSON encoding.

    Object arrays (HDF5 variable-length strings) become lists of str; bytes inside them are
    decoded as UTF-8 when possible.  ``h5py.Empty`` becomes None.
    """
    if type(value).__name__ == "Empty":
        return None
    if isinstance(value, np.ndarray) and value.dtype.kind == "O":
        return [clean_foreign_attr(v) for v in value.tolist()]
    if isinstance(value, list):
        return [clean_foreign_attr(v) for v in value]
    return value
