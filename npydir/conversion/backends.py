"""``load()`` and ``save()``: any DAS dataset, by extension (``.npy`` store, ``.zarr``, ``.h5``).

``load`` mirrors DAS's ``das.io.load``: it returns a nested dict of arrays with an ``.attrs``
dict, whatever the backend, and applies DAS's suffix selection.  Arrays stay lazy: npydir
arrays are memory maps, zarr arrays and h5py datasets read nothing until sliced.

``save`` writes a nested Mapping (any depth, ``.attrs`` on the root and on sub-mappings) to a
new npydir store, zarr store or HDF5 file.  The result is built under a hidden name beside the
destination and renamed into place when complete, so a crash never leaves a half-written
dataset under the real name.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .adapters import zarr_compat as zc
from .adapters.hdf5 import _h5py, open_hdf5, read_attrs
from .adapters.mapping import MappingSource
from .adapters.zarr_store import decode_json_attrs, open_zarr_group, zarr_options
from .engine import ConversionReport, NullJournal, copy_tree, open_partial, partial_path, publish
from .registry import EXTENSIONS, backend_of
from ..errors import (
    AlreadyExistsError,
    ConversionError,
    MemberNotFoundError,
    StoreNotFoundError,
    UnknownBackendError,
)
from ..remote._url import is_remote_url
from ..remote._open import open as open_store
from ..store.fsutil import remove

__all__ = ["Dataset", "load", "save"]

SPLITS = ("test", "val", "train")


class Dataset(dict):
    """A dict of arrays and sub-``Dataset`` s with an ``attrs`` dict (DAS's data structure).

    ``close()`` (or ``with``) closes the underlying file of an HDF5 or zarr-zip dataset;
    npydir and zarr-directory datasets need no closing.
    """

    def __init__(self, *args: Any, attrs: dict | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.attrs: dict = dict(attrs or {})
        self._handle: Any = None

    def close(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            handle.close()

    def __enter__(self) -> "Dataset":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Dataset({dict.__repr__(self)}, attrs={self.attrs!r})"


def _missing(path: str) -> StoreNotFoundError:
    partial, journal = partial_path(path)
    hint = ""
    if partial.exists() or journal.exists():
        hint = (f"; an interrupted conversion left {partial.name} beside it: run the same "
                "npydir.convert(...) again to finish it")
    return StoreNotFoundError(f"dataset {path!r} does not exist{hint}")


def load(
    path: str | os.PathLike,
    x_suffix: str = "",
    y_suffix: str = "",
    *,
    storage_options: dict | None = None,
) -> Dataset:
    """Open a dataset for training: a ``.npy`` store, a ``.zarr`` store or an ``.h5`` file.

    Parameters
    ----------
    path : path
        Backend chosen by extension: ``.npy`` (npydir or DAS npy_dir store), ``.zarr`` (zarr
        format 2 or 3, a directory or a ``.zip``), ``.h5``/``.hdf5``.
    x_suffix, y_suffix : str
        DAS suffix selection.  In each of ``test``, ``val``, ``train``: ``y_<y_suffix>`` is
        also available as ``y`` (and ``eventtimes_<y_suffix>`` as ``eventtimes``),
        ``x_<x_suffix>`` as ``x``; the attrs ``class_names_<y_suffix>``/``class_types_<y_suffix>``
        (when both exist) become ``class_names``/``class_types`` and
        ``samplerate_x_<x_suffix>_Hz`` becomes ``samplerate_x_Hz``.
    storage_options : dict, optional
        For a ``s3://`` or ``http(s)://`` URL (an npydir store, read by byte ranges, or a
        zarr store, through fsspec): credentials and endpoint in fsspec/s3fs's names.

    Returns
    -------
    Dataset
        Nested dict of lazy arrays with ``.attrs``.

    Raises
    ------
    UnknownBackendError
        The extension is not one of the supported ones (the message lists them).
    StoreNotFoundError
        Nothing at ``path``.
    MemberNotFoundError
        A non-empty suffix was asked for but no split has ``x_<suffix>``/``y_<suffix>``.
    """
    if is_remote_url(path):
        return _load_remote(str(path), x_suffix, y_suffix, storage_options)
    if storage_options is not None:
        raise ValueError(f"storage_options is for s3:// and http(s):// URLs, not {path!r}")
    path = os.path.normpath(os.fspath(path))
    kind = backend_of(path, role="dataset")
    if not os.path.exists(path):
        raise _missing(path)
    if kind == "npydir":
        data = _load_npydir(path)
    elif kind == "zarr":
        data = _load_zarr(path)
    else:
        data = _load_hdf5(path)
    if x_suffix or y_suffix:
        _select(data, x_suffix, y_suffix, path)
    return data


def _load_remote(url: str, x_suffix: str, y_suffix: str, options: dict | None) -> Dataset:
    """:func:`load` of a store at a URL: npydir stores natively, zarr through fsspec."""
    kind = backend_of(url.rstrip("/"), role="dataset")
    if kind == "npydir":
        data = _load_npydir(url, options)
    elif kind == "zarr":
        data = _load_zarr(url, options)
    else:
        raise UnknownBackendError(
            f"dataset {url!r}: HDF5 files are read from local paths only; copy it first or "
            f"convert it to an npydir store"
        )
    if x_suffix or y_suffix:
        _select(data, x_suffix, y_suffix, url)
    return data


def _load_npydir(path: str, storage_options: dict | None = None) -> Dataset:
    root = open_store(path, "r", storage_options=storage_options)

    def walk(group) -> Dataset:
        out = Dataset(attrs=dict(group.attrs))
        for name in group.keys():
            member = group[name]
            out[name] = walk(member) if hasattr(member, "keys") else member
        return out

    data = walk(root)
    data._handle = root if hasattr(root, "close") else None
    return data


def _load_zarr(path: str, storage_options: dict | None = None) -> Dataset:
    root = open_zarr_group(path, storage_options=storage_options)

    def walk(group, where: str) -> Dataset:
        attrs, _ = decode_json_attrs(group.attrs.asdict(), f"{path}:/{where}")
        out = Dataset(attrs=attrs)
        for name, member in zc.members(group):
            out[name] = walk(member, f"{where}/{name}") if zc.is_group(member) else member
        return out

    data = walk(root, "")
    store = getattr(root, "store", None)
    data._handle = store if os.path.isfile(path) and hasattr(store, "close") else None
    return data


def _load_hdf5(path: str) -> Dataset:
    h5py = _h5py()
    f = open_hdf5(path)

    def walk(group, where: str) -> Dataset:
        attrs, _ = read_attrs(group, f"{path}:/{where}")
        out = Dataset(attrs=attrs)
        for name in group.keys():
            try:
                member = group[name]
            except KeyError:  # dangling soft or external link
                continue
            is_group = isinstance(member, h5py.Group)
            out[name] = walk(member, f"{where}/{name}") if is_group else member
        return out

    data = walk(f, "")
    data._handle = f
    return data


def _select(data: Dataset, x_suffix: str, y_suffix: str, path: str) -> None:
    """DAS's ``_select``: alias suffixed members and attrs to the plain names, in place."""
    found = {"x": not x_suffix, "y": not y_suffix}
    for split in SPLITS:
        if split not in data or not isinstance(data[split], Mapping):
            continue
        group = data[split]
        for axis, suffix in (("y", y_suffix), ("x", x_suffix)):
            if not suffix:
                continue
            if f"{axis}_{suffix}" in group:
                found[axis] = True
                group[axis] = group[f"{axis}_{suffix}"]
                if f"eventtimes_{suffix}" in group:
                    group["eventtimes"] = group[f"eventtimes_{suffix}"]
    for axis, suffix in (("x", x_suffix), ("y", y_suffix)):
        if not found[axis]:
            available = sorted({k for s in SPLITS if isinstance(data.get(s), Mapping)
                                for k in data[s] if k.startswith(f"{axis}_")})
            raise MemberNotFoundError(
                f"{path}: no split has {axis}_{suffix!s}; available: "
                + (", ".join(available) if available else f"no {axis}_<suffix> members")
            )
    attrs = data.attrs
    if x_suffix and f"samplerate_x_{x_suffix}_Hz" in attrs:
        attrs["samplerate_x_Hz"] = attrs[f"samplerate_x_{x_suffix}_Hz"]
    if y_suffix and f"class_names_{y_suffix}" in attrs and f"class_types_{y_suffix}" in attrs:
        attrs["class_names"] = attrs[f"class_names_{y_suffix}"]
        attrs["class_types"] = attrs[f"class_types_{y_suffix}"]


def save(
    path: str | os.PathLike,
    mapping: Mapping,
    das_compat: bool = False,
    *,
    overwrite: bool = False,
    zarr_format: int = 2,
    chunks: int | tuple | None = None,
    compression: Any = None,
    memory_budget: int = 256 * 2**20,
) -> None:
    """Write a nested Mapping (any depth, ``.attrs`` anywhere) as a new dataset.

    Parameters
    ----------
    path : path
        ``.npy`` (npydir store), ``.zarr`` (zarr directory) or ``.h5``/``.hdf5``.
    mapping : Mapping
        Values are numpy arrays, anything :func:`numpy.asarray` accepts, or lazy arrays (zarr,
        h5py, npydir), which are copied block by block within ``memory_budget``.  Sub-mappings
        become groups; ``.attrs`` of the mapping and its sub-mappings become attributes.
    das_compat : bool
        Write for DAS: an npydir store also gets the pickled ``attrs.npy`` DAS's own loader
        reads; a zarr store is zarr format 2 as DAS's ``make_dataset`` writes it
        (``zarr_format=3`` is refused).
    overwrite : bool
        Replace an existing dataset at ``path`` (after the new one is complete).  By default
        an existing path is an error, so stored data is never lost by accident.
    zarr_format, chunks, compression
        As for :func:`npydir.convert` (zarr/HDF5 destinations).

    Raises
    ------
    ConversionError
        A value cannot be stored (object arrays, non-string keys); nothing is written then.
    """
    if not isinstance(mapping, Mapping) and not hasattr(mapping, "keys"):
        raise TypeError(f"save({os.fspath(path)!r}): expected a Mapping, got "
                        f"{type(mapping).__name__}")
    kind = backend_of(path, role="destination")
    dst = Path(os.path.abspath(os.path.normpath(os.fspath(path))))
    if kind == "zarr" and dst.name.lower().endswith(".zip"):
        raise ConversionError(f"{os.fspath(path)!r}: zip stores can be read, not written")
    if kind == "zarr":
        zarr_format, chunks, compression = zarr_options(
            zarr_format, chunks, compression, das_compat=das_compat,
            where=f"save({os.fspath(path)!r})")
    if dst.exists() and not overwrite:
        raise AlreadyExistsError(
            f"{os.fspath(path)!r} already exists (pass overwrite=True to replace it)")
    source = MappingSource(mapping, os.fspath(path))
    nodes = list(source.nodes())
    refused = {n.path: n.reason for n in nodes if n.kind == "refused"}
    partial, _ = partial_path(dst)
    remove(partial)
    options = {"zarr_format": zarr_format, "chunks": chunks, "compression": compression}
    dest = open_partial(kind, partial, options, das_compat)
    try:
        report = ConversionReport(src="<mapping>", dst=os.fspath(path))
        for node in nodes:  # the destination may refuse more (e.g. datetimes in HDF5)
            reason = dest.check(node) if node.kind == "array" else None
            if reason:
                refused[node.path] = reason
        if refused:
            raise ConversionError(
                f"save({os.fspath(path)!r}): cannot store "
                + "; ".join(f"{k!r}: {v}" for k, v in refused.items()))
        copy_tree(source, nodes, dest, NullJournal(), report, memory_budget=memory_budget,
                  threads=1)
        if report.dropped_attrs:
            raise ConversionError(f"save({os.fspath(path)!r}): "
                                  + "; ".join(report.dropped_attrs.values()))
    except BaseException:
        dest.close()
        shutil.rmtree(partial, ignore_errors=True) if partial.is_dir() else remove(partial)
        raise
    dest.close()
    publish(partial, dst, overwrite)


def supported_extensions() -> dict[str, tuple[str, ...]]:
    """Extensions by backend, as recognised by load(), save() and convert()."""
    return dict(EXTENSIONS)
