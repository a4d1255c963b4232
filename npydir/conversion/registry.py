"""Which adapter serves which backend: file extensions to backend names, backend names to the
:class:`~npydir.conversion.protocol.Source` and
:class:`~npydir.conversion.protocol.Destination` adapters.

The one module that knows every adapter; the engine and ``load``/``save`` open sources and
destinations through it.
"""

from __future__ import annotations

import os
from pathlib import Path

from .adapters.hdf5 import Hdf5Dest, Hdf5Source
from .adapters.npydir_store import NpydirDest, NpydirSource
from .adapters.zarr_store import ZarrDest, ZarrSource
from .protocol import Destination, Source
from ..errors import ConversionError, UnknownBackendError
from ..store.layout import FORMAT_FILE, STORE_SUFFIX

__all__ = ["EXTENSIONS", "backend_of", "open_destination", "open_source"]

#: extensions recognised by load() and convert(), by backend
EXTENSIONS = {
    "npydir": (STORE_SUFFIX,),
    "zarr": (".zarr", ".zarr.zip", ".zip"),
    "hdf5": (".h5", ".hdf5", ".hdf", ".he5"),
}


def backend_of(path: str | os.PathLike, *, role: str = "path") -> str:
    """Backend name ("npydir", "zarr", "hdf5") of ``path`` from its extension.

    An existing directory holding ``.npydir.json`` counts as an npydir store whatever its name.

    Raises
    ------
    UnknownBackendError
        Neither; the message names ``path`` as ``role`` and lists the extensions.
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


def open_source(spec: tuple) -> Source:
    """Open a source from its picklable ``spec`` (used locally and on Dask workers):
    ``(kind, path)``, ``(kind, path, allow_external)`` or, for a remote source,
    ``(kind, url, allow_external, storage_options)`` (see :func:`npydir.convert`)."""
    kind, path = spec[0], spec[1]
    allow_external = bool(spec[2]) if len(spec) > 2 else False
    options = spec[3] if len(spec) > 3 else None  # storage_options of a remote source
    if kind == "zarr":
        return ZarrSource(path, allow_external=allow_external, storage_options=options)
    if kind == "hdf5":
        if options is not None:
            raise ConversionError(f"{path}: HDF5 sources are read from local files only")
        return Hdf5Source(path, allow_external=allow_external)
    if kind == "npydir":
        return NpydirSource(path, options)
    raise ConversionError(f"unknown source kind {kind!r}")


def open_destination(kind: str, path: Path, *, options: dict, das_compat: bool = False,
                     create: bool = False) -> Destination:
    """The destination adapter of backend ``kind`` writing at ``path``.

    ``path`` exists: a directory (npydir, zarr) or a file (HDF5; ``create`` formats it,
    else the file is reopened to resume).  ``options`` holds ``zarr_format``, ``chunks``
    and ``compression`` as :func:`npydir.convert` takes them.
    """
    if kind == "npydir":
        return NpydirDest(path, das_compat=das_compat)
    if kind == "zarr":
        return ZarrDest(path, zarr_format=options["zarr_format"], chunks=options["chunks"],
                        compression=options["compression"])
    if kind == "hdf5":
        return Hdf5Dest(path, create=create, chunks=options["chunks"],
                        compression=options["compression"])
    raise ConversionError(f"unknown destination kind {kind!r}")

