"""The one place that knows zarr-python 2.18 from zarr-python 3.

npydir reads and writes zarr through the functions below and nowhere else, so the rest of the
code is the same under both.  zarr 2.18 is what an environment with DAS has (DAS subclasses
``zarr.storage.DirectoryStore``, which zarr 3 removed); zarr 3 is what a fresh install gets.

* zarr 2.18 reads and writes zarr format 2 only.  Asking it for format 3 (writing, or reading a
  store with a ``zarr.json``) is a :class:`~npydir.errors.MissingDependencyError` that names
  the installed version and what to install.
* zarr 3 reads and writes both formats.
* Anything else (older than 2.18, or a module whose API is neither) is a
  :class:`~npydir.errors.MissingDependencyError` naming the versions npydir supports, raised
  before any zarr call could fail with a bare ``AttributeError``.
"""

from __future__ import annotations

import os
import re
import warnings
import zipfile
from types import ModuleType
from typing import Any, NamedTuple

import numpy as np

from ..._optional import require
from ...errors import ConversionError, MissingDependencyError

#: The oldest zarr-python 2 npydir supports: the last zarr 2 line, the one DAS environments have.
MIN_ZARR2 = (2, 18)
SUPPORTED = "zarr-python 2.18.x or 3.x"


def zarr_module(purpose: str = "reading and writing zarr stores") -> ModuleType:
    """Import zarr and check it is a version npydir can drive (see the module docstring)."""
    zarr = require("zarr", purpose)
    api_major(zarr)
    return zarr


def _version(zarr: ModuleType) -> tuple[str, tuple[int, ...]]:
    text = str(getattr(zarr, "__version__", "") or "")
    nums = tuple(int(n) for n in re.findall(r"\d+", text.split("+")[0])[:2])
    return text or "unknown", nums


def api_major(zarr: ModuleType) -> int:
    """2 or 3: which zarr-python API ``zarr`` offers; MissingDependencyError for neither."""
    text, nums = _version(zarr)
    where = getattr(zarr, "__file__", None) or "?"
    if nums[:1] == (2,):
        if nums < MIN_ZARR2:
            raise MissingDependencyError(
                f"npydir needs {SUPPORTED}; found zarr {text} ({where}): "
                f"pip install \"zarr>=2.18,<3\" (beside DAS) or \"zarr>=3\"")
        storage = getattr(zarr, "storage", None)
        if hasattr(zarr, "open_group") and hasattr(storage, "DirectoryStore"):
            return 2
    elif nums and nums[0] >= 3:
        if hasattr(zarr, "create_array") and hasattr(zarr, "open_group"):
            return 3
    raise MissingDependencyError(
        f"npydir needs {SUPPORTED}; found zarr {text} ({where}), whose API is neither: "
        f"pip install \"zarr>=3\" (or \"zarr>=2.18,<3\" beside DAS)")


def installed_major() -> int:
    """2 or 3 for the installed zarr (errors as :func:`zarr_module`)."""
    return api_major(zarr_module())


def default_format() -> int:
    """The format zarr itself writes when not told (3 under zarr 3, 2 under zarr 2)."""
    return installed_major()


def check_format(zarr_format: Any, purpose: str = "a zarr destination") -> int:
    """The zarr format to write, checked against the installed zarr.

    Raises
    ------
    ConversionError
        ``zarr_format`` is not 2 or 3.
    MissingDependencyError
        zarr is not installed, not supported, or is zarr 2 and format 3 was asked for.
    """
    if zarr_format not in (2, 3) or isinstance(zarr_format, bool):
        raise ConversionError(f"zarr_format must be 2 or 3, not {zarr_format!r}")
    zarr = zarr_module()
    if zarr_format == 3 and api_major(zarr) == 2:
        raise MissingDependencyError(
            f"zarr_format=3 for {purpose} needs zarr-python 3, but zarr {_version(zarr)[0]} "
            f"is installed, which writes format 2 only: pass zarr_format=2 (--zarr-format 2), "
            f"or pip install \"zarr>=3\" (not beside DAS, which needs zarr 2)")
    return int(zarr_format)


def _is_format3(path: str) -> bool:
    """Whether the store at ``path`` (directory or zip) is zarr format 3 at its root."""
    if os.path.isdir(path):
        return (os.path.isfile(os.path.join(path, "zarr.json"))
                and not os.path.isfile(os.path.join(path, ".zgroup")))
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
    except (OSError, zipfile.BadZipFile):
        return False
    return "zarr.json" in names and ".zgroup" not in names


def open_group(path: str, mode: str = "r"):
    """Open the zarr group (format 2, or 3 under zarr 3) in a directory or a ``.zip`` file.

    Raises
    ------
    MissingDependencyError
        The store is format 3 and the installed zarr is zarr 2.
    ConversionError
        ``path`` holds no zarr group zarr can open.
    """
    zarr = zarr_module()
    major = api_major(zarr)
    if major == 2 and _is_format3(path):
        raise MissingDependencyError(
            f"{path!r} is a zarr format 3 store (zarr.json), which zarr {_version(zarr)[0]} "
            f"cannot read: pip install \"zarr>=3\" (in an environment without DAS), or "
            f"convert it there with zarr_format=2")
    store: Any = path
    if os.path.isfile(path):
        store = zarr.storage.ZipStore(path, mode="r")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # zarr warns about v2 stores and unstable specs
            return zarr.open_group(store, mode=mode)
    except Exception as exc:  # zarr raises several types for a non-store
        if store is not path:
            store.close()
        raise ConversionError(f"{path!r} is not a readable zarr store: {exc}") from exc


def create_root(path: str | os.PathLike, zarr_format: int, mode: str = "a"):
    """Open (creating if needed) the root group of a directory store for writing."""
    zarr = zarr_module()
    zarr_format = check_format(zarr_format)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if api_major(zarr) == 2:
            return zarr.open_group(os.fspath(path), mode=mode)
        return zarr.open_group(os.fspath(path), mode=mode, zarr_format=zarr_format)


def create_array(root, name: str, *, shape: tuple, dtype: np.dtype, chunks: tuple | None,
                 compressors: Any, zarr_format: int, fill_value: Any = None):
    """Create array ``name`` (a path below ``root``) that stores every chunk it is given.

    ``compressors`` takes zarr 3's values: ``"auto"`` (zarr's default), ``None`` (no
    compression), one codec or a sequence of them (zarr 2: at most one).  A big-endian dtype
    in format 3 is stored big-endian (zarr 3 would otherwise store it little-endian).
    """
    zarr = zarr_module()
    dtype = np.dtype(dtype)
    kwargs: dict = {}
    if chunks is not None and shape:
        kwargs["chunks"] = tuple(chunks)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if api_major(zarr) == 2:
            if isinstance(compressors, (list, tuple)):
                if len(compressors) > 1:
                    raise ConversionError(
                        f"zarr format 2 takes one compressor, got {len(compressors)}: "
                        f"{compressors!r}")
                compressors = compressors[0] if compressors else None
            compressor = "default" if isinstance(compressors, str) else compressors
            # "." said explicitly, as zarr 2 writes it for DAS and zarr 3 always does
            return root.create_dataset(name, shape=shape, dtype=dtype, compressor=compressor,
                                       fill_value=fill_value, write_empty_chunks=True,
                                       dimension_separator=".", **kwargs)
        if zarr_format == 3 and dtype.byteorder == ">":
            from zarr.codecs import BytesCodec

            kwargs["serializer"] = BytesCodec(endian="big")
        arr = zarr.create_array(root.store, name=name, shape=shape, dtype=dtype,
                                compressors=compressors, zarr_format=zarr_format,
                                fill_value=fill_value, **kwargs)
    return writes_every_chunk(arr)


def writes_every_chunk(arr):
    """``arr`` set to store every chunk written, also one "equal" to the fill value.

    zarr skips such chunks by default in zarr 3, and for complex dtypes it compares with
    ``==``, so a chunk of -0j would not be stored and would read back as +0j."""
    if hasattr(arr, "with_config"):  # zarr 3
        return arr.with_config({"write_empty_chunks": True})
    if getattr(arr, "write_empty_chunks", True):  # zarr 2's default since 2.11
        return arr
    zarr = zarr_module()
    return zarr.open_array(arr.store, mode="r+", path=arr.path, write_empty_chunks=True)


def is_group(obj: Any) -> bool:
    return isinstance(obj, zarr_module().Group)


def members(group) -> list[tuple[str, Any]]:
    """``(name, member)`` of the groups and arrays in ``group``, sorted by name."""
    if hasattr(group, "members"):  # zarr 3
        items = list(group.members())
    else:
        items = list(group.groups()) + list(group.arrays())
    return sorted(items, key=lambda kv: kv[0])


def array_format(arr) -> int:
    """The zarr format (2 or 3) of an array."""
    meta = getattr(arr, "metadata", None)
    if meta is not None and getattr(meta, "zarr_format", None) in (2, 3):
        return int(meta.zarr_format)
    return 2  # zarr 2 arrays have no metadata object and are format 2


def compressor_names(arr) -> list[str]:
    """The compressors of an array, as text (for reports)."""
    if hasattr(arr, "compressors"):  # zarr 3
        return [str(c) for c in arr.compressors]
    return [str(arr.compressor)] if getattr(arr, "compressor", None) is not None else []


def nbytes_stored(arr) -> int:
    """Bytes an array's chunks and metadata take in its store."""
    stored = arr.nbytes_stored  # zarr 3: a method; zarr 2: a property
    return int(stored() if callable(stored) else stored)


def read_into(arr, start: int, stop: int, out: np.ndarray) -> bool:
    """Decode rows ``start:stop`` of ``arr`` into ``out`` with zarr's ``out=``.

    Returns False where this zarr cannot (the caller then reads a copy)."""
    if hasattr(arr, "metadata"):  # zarr 3
        try:
            from zarr.core.buffer.cpu import NDBuffer
        except ImportError:
            return False
        arr.get_basic_selection(np.s_[start:stop], out=NDBuffer.from_numpy_array(out))
        return True
    arr.get_basic_selection(np.s_[start:stop], out=out)
    return True


class V2Layout(NamedTuple):
    """Where and how a zarr format 2 array in a directory store keeps its chunk files."""

    directory: str
    chunks: tuple
    compressor: Any
    separator: str


def v2_layout(arr) -> V2Layout | None:
    """The chunk files of a format 2 array in a local directory store, stored plainly (no
    filters, C order); None for anything else (zip, memory, remote, format 3, filters)."""
    meta = getattr(arr, "metadata", None)
    if meta is not None:  # zarr 3
        if getattr(meta, "zarr_format", None) != 2 or meta.filters or meta.order != "C":
            return None
        store_path: Any = getattr(arr, "store_path", None)  # not None if root is not
        root = getattr(getattr(store_path, "store", None), "root", None)
        if root is None:  # not a local directory store
            return None
        return V2Layout(os.path.join(os.fspath(root), store_path.path), tuple(meta.chunks),
                        meta.compressor, meta.dimension_separator or ".")
    zarr = zarr_module()
    store = getattr(arr, "store", None)
    if (not isinstance(store, zarr.storage.DirectoryStore) or arr.filters or arr.order != "C"
            or getattr(arr, "chunk_store", store) not in (None, store)):
        return None
    # zarr 2 resolves the separator from .zarray, then the store, then "." into this attribute;
    # zarr 2 is frozen at 2.18, so the private name cannot move
    sep = getattr(arr, "_dimension_separator", None) or "."
    return V2Layout(os.path.join(store.path, arr.path), tuple(arr.chunks), arr.compressor, sep)
