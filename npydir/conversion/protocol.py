"""What the source and destination adapters of a conversion have in common.

A *source* (zarr, HDF5, npydir) lists its tree as :class:`Node` records (groups before their
members, members in sorted order) and reads row ranges of its arrays.  A *destination* creates
groups and preallocated arrays and writes row ranges into them.  The orchestration in
:mod:`npydir.conversion.engine` only talks to these two small interfaces, so every direction shares the
streaming, journalling, verification and Dask code.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..errors import ConversionError, UnknownBackendError
from ..store.layout import FORMAT_FILE, STORE_SUFFIX

#: extensions recognised by load() and convert(), by backend
EXTENSIONS = {
    "npydir": (STORE_SUFFIX,),
    "zarr": (".zarr", ".zarr.zip", ".zip"),
    "hdf5": (".h5", ".hdf5", ".hdf", ".he5"),
}


def backend_of(path: str | os.PathLike, *, role: str = "path") -> str:
    """Backend name ("npydir", "zarr", "hdf5") of ``path`` from its extension.

    An existing directory holding ``.npydir.json`` counts as an npydir store whatever its name.
    """
    p = Path(os.path.normpath(os.fspath(path)))
    name = p.name.lower()
    for kind, exts in EXTENSIONS.items():
        if any(name.endswith(ext) for ext in exts):
            if kind == "npydir" and p.is_file():
                break  # a single .npy file is not a store
            return kind
    if p.is_dir() and (p / FORMAT_FILE).is_file():
        return "npydir"
    supported = ", ".join(ext for exts in EXTENSIONS.values() for ext in exts)
    raise UnknownBackendError(
        f"{role} {os.fspath(path)!r}: unknown extension; supported are {supported} "
        "(a .npy directory store, a .zarr directory or zip, an HDF5 file)"
    )


@dataclass
class Node:
    """One member of a source tree.

    ``path`` is relative to the source root with ``/`` separators ("" is the root).  ``kind``
    is "group", "array", "link" (not followed; ``reason`` holds the target) or "refused"
    (``reason`` says why).  For arrays, ``dtype`` is the dtype stored at the destination and
    ``transform`` the picklable spec of :func:`npydir.conversion.values.apply_transform` that
    turns a source block into it.  ``chunk_rows`` is the source's natural block height.
    """

    path: str
    kind: str
    attrs: dict = field(default_factory=dict)
    shape: tuple = ()
    dtype: np.dtype | None = None
    src_dtype: str = ""
    transform: tuple | None = None
    chunk_rows: int = 1
    reason: str = ""
    dropped_attrs: dict = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * (self.dtype.itemsize if self.dtype else 0)

    @property
    def rows(self) -> int:
        """Blocks run along axis 0; a 0-d array is one row."""
        return int(self.shape[0]) if self.shape else 1

    @property
    def row_bytes(self) -> int:
        inner = int(np.prod(self.shape[1:], dtype=np.int64)) if self.shape else 1
        return max(1, inner * (self.dtype.itemsize if self.dtype else 1))


class Source:
    """Interface of a conversion source; see the module docstring."""

    kind = ""
    spec: tuple = ()

    def nodes(self) -> Iterator[Node]:
        raise NotImplementedError

    def read(self, path: str, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` of array ``path`` (the whole value for a 0-d array)."""
        raise NotImplementedError

    def read_into(self, path: str, start: int, stop: int, out: np.ndarray) -> bool:
        """Read straight into ``out`` if the backend can (no temporary); False if not."""
        return False

    def copy_rows_to(self, path: str, start: int, stop: int, fd: int, offset: int) -> bool:
        """Copy the stored bytes of rows ``start:stop`` into file ``fd`` at ``offset``
        without decoding, if the backend stores them as plain rows; False if not."""
        return False

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_source(spec: tuple) -> Source:
    """Open a source from its picklable ``spec`` (used locally and on Dask workers):
    ``(kind, path)``, ``(kind, path, allow_external)`` or, for a remote source,
    ``(kind, url, allow_external, storage_options)`` (see :func:`npydir.convert`)."""
    kind, path = spec[0], spec[1]
    allow_external = bool(spec[2]) if len(spec) > 2 else False
    options = spec[3] if len(spec) > 3 else None  # storage_options of a remote source
    if kind == "zarr":
        from .adapters.zarr_store import ZarrSource

        return ZarrSource(path, allow_external=allow_external, storage_options=options)
    if kind == "hdf5":
        from .adapters.hdf5 import Hdf5Source

        if options is not None:
            raise ConversionError(f"{path}: HDF5 sources are read from local files only")
        return Hdf5Source(path, allow_external=allow_external)
    if kind == "npydir":
        from .adapters.npydir_store import NpydirSource

        return NpydirSource(path, options)
    raise ConversionError(f"unknown source kind {kind!r}")


def select_rows(arr: Any, start: int, stop: int) -> Any:
    """``arr[start:stop]`` for arrays with axis 0, ``arr[...]`` for 0-d ones.

    (``arr[()]`` would give a numpy scalar, always in native byte order.)"""
    if len(arr.shape) == 0:
        return arr[...]
    return arr[start:stop]


_LOCAL = threading.local()


def scratch(nbytes: int) -> memoryview:
    """This thread's reusable byte buffer of ``nbytes`` (stored, still encoded chunks).

    A fresh ``bytes`` per chunk costs a page fault per 4 KiB every time (and on the test VM
    a fresh page is far dearer than a reused one); one buffer per reader thread, grown when
    needed, keeps the decoder's input in pages that are already there."""
    buf = getattr(_LOCAL, "buf", None)
    if buf is None or len(buf) < nbytes:
        buf = _LOCAL.buf = bytearray(max(nbytes, 1 << 20))
    return memoryview(buf)[:nbytes]


def read_file_into(path: str, *, follow: bool = True) -> memoryview:
    """The whole file at ``path``, read into this thread's :func:`scratch` buffer.

    With ``follow=False`` a symbolic link is refused (``OSError`` ELOOP) instead of read."""
    flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | (0 if follow else os.O_NOFOLLOW)
    with open(os.open(path, flags), "rb", buffering=0) as fh:
        size = os.fstat(fh.fileno()).st_size
        view = scratch(size)
        done = 0
        while done < size:
            n = fh.readinto(view[done:])
            if not n:  # the file shrank while we read it
                return view[:done]
            done += n
    return view


def join(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name
