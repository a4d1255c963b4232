"""HDF5 side of conversions (h5py): read any HDF5 file, write chunked/compressed datasets.

Attributes written to HDF5 are stored natively whenever h5py gives back exactly the same
value (strings, numbers, numeric arrays); a Python ``int``/``float``/``bool``/``list`` that
h5py would return as a numpy value is stored natively too and its Python type is recorded in
the hidden attribute :data:`ATTR_TYPES`, so reading back through npydir restores it.  Values
HDF5 cannot hold (dicts, mixed lists, None, ...) are stored as a string in npydir's JSON
encoding, marked ``"json"`` in the same record.

numpy unicode arrays (``<U``) have no HDF5 type: they are written as fixed-length UTF-8
strings of 4 bytes per character, with the numpy dtype in :data:`NUMPY_DTYPE`.
"""

from __future__ import annotations

import errno
import json
import os
import re
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .hdf5_direct import DirectReader
from .zarr_store import default_chunks
from ..protocol import Destination, Node, Source, join, not_an_array
from ..values import (
    NUMPY_DTYPE,
    clean_foreign_attr,
    max_string_length,
    plan_dtype,
    same_value,
)
from ..._optional import require
from ...errors import ConversionError, StoreNotFoundError
from ...store.attrs import decode_attrs, encode_attrs

#: hidden attribute: {attr key: python type or "json"} for exact attribute round trips
ATTR_TYPES = "npydir_attr_types"


def _h5py():
    return require("h5py", "reading and writing HDF5 files")


def open_hdf5(path: str | os.PathLike, mode: str = "r"):
    h5py = _h5py()
    path = os.fspath(path)
    if mode == "r" and not os.path.exists(path):
        raise StoreNotFoundError(f"HDF5 file {path!r} does not exist")
    try:
        return h5py.File(path, mode)
    except OSError as exc:
        named = _named(exc, Path(path), "opening" if mode in ("r", "r+") else "creating")
        if named.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO):
            raise named from exc  # the disk, not the file: a retry may succeed
        raise ConversionError(f"{path!r} is not a readable HDF5 file: "
                              f"{' '.join(str(exc).split())}") from exc


# --------------------------------------------------------------------------- attrs


def read_attrs(obj, where: str) -> tuple[dict, dict]:
    """h5py attrs -> (values, dropped) with the hints of :data:`ATTR_TYPES` applied."""
    h5py = _h5py()
    out, dropped = {}, {}
    hints: dict = {}
    if ATTR_TYPES in obj.attrs:
        try:
            hints = json.loads(obj.attrs[ATTR_TYPES])
        except Exception:
            hints = {}
    for key in obj.attrs.keys():
        if key in (ATTR_TYPES, NUMPY_DTYPE):
            continue
        try:
            raw = obj.attrs[key]
        except Exception as exc:  # unsupported HDF5 types raise on read
            dropped[key] = f"{where}: attribute {key!r} cannot be read: {exc}"
            continue
        if isinstance(raw, np.ndarray) and raw.dtype.kind == "O" and raw.size and any(
            isinstance(v, (h5py.Reference, h5py.RegionReference)) for v in raw.ravel()
        ) or isinstance(raw, (h5py.Reference, h5py.RegionReference)):
            dropped[key] = f"{where}: attribute {key!r} holds HDF5 object references"
            continue
        value = clean_foreign_attr(raw)
        hint = hints.get(key)
        try:
            out[key] = _apply_hint(hint, value)
        except Exception as exc:
            dropped[key] = f"{where}: attribute {key!r}: {exc}"
    return out, dropped


def _apply_hint(hint: str | None, value: Any) -> Any:
    if hint is None:
        return value
    if hint == "json":
        return decode_attrs(value)["v"]
    if hint == "int":
        return int(value)
    if hint == "float":
        return float(value)
    if hint == "bool":
        return bool(value)
    if hint == "bytes":
        return bytes(value)
    if hint == "list":
        return value.tolist() if isinstance(value, np.ndarray) else list(value)
    raise ValueError(f"unknown attribute type hint {hint!r}")


def write_attrs(obj, attrs: dict) -> None:
    """Write ``attrs`` to an h5py object so that :func:`read_attrs` returns them exactly."""
    hints: dict = {}
    for key, value in attrs.items():
        stored = False
        try:
            obj.attrs[key] = value
            back = clean_foreign_attr(obj.attrs[key])
            for hint in (None, "int", "float", "bool", "bytes", "list"):
                try:
                    if same_value(_apply_hint(hint, back), value):
                        if hint:
                            hints[key] = hint
                        stored = True
                        break
                except Exception:
                    continue
        except Exception:
            pass
        if not stored:
            if key in obj.attrs:
                del obj.attrs[key]
            obj.attrs[key] = encode_attrs({"v": value})
            hints[key] = "json"
    if hints:
        obj.attrs[ATTR_TYPES] = json.dumps(hints, sort_keys=True)
    elif ATTR_TYPES in obj.attrs:
        del obj.attrs[ATTR_TYPES]


# --------------------------------------------------------------------------- source


class Hdf5Source(Source):
    """Walks and reads an HDF5 file; links other than hard links are reported, not followed.

    Datasets whose data lies in other files (external storage, virtual datasets mapping
    other files) are refused unless ``allow_external``: reading them would copy whatever
    local file they name into the output."""

    kind = "hdf5"

    def __init__(self, path: str | os.PathLike, *, allow_external: bool = False):
        self.path = os.fspath(path)
        self.allow_external = allow_external
        self.spec = ("hdf5", self.path, allow_external)
        self.file = open_hdf5(self.path)
        self._dsets: dict[str, Any] = {}
        self._transforms: dict[str, tuple | None] = {}
        # our own descriptor for reads outside h5py (copy_file_range, DirectReader)
        try:
            self._fd: int | None = os.open(self.path, os.O_RDONLY)
        except OSError:
            self.file.close()
            raise
        # path -> DirectReader (reads outside h5py's lock) or None (h5py reads it)
        self._direct: dict[str, Any] = {}

    def nodes(self) -> Iterator[Node]:
        yield from self._walk(self.file, "")

    def _walk(self, group, path: str) -> Iterator[Node]:
        h5py = _h5py()
        attrs, dropped = read_attrs(group, f"{self.path}:/{path}")
        links: dict[str, str] = {}
        members = []
        for name in sorted(group.keys()):
            link = group.get(name, getlink=True)
            if isinstance(link, h5py.SoftLink):
                links[name] = link.path
            elif isinstance(link, h5py.ExternalLink):
                links[name] = f"{link.filename}:{link.path}"
            else:
                members.append(name)
        yield Node(path=path, kind="group", attrs=attrs, dropped_attrs=dropped,
                   reason=json.dumps(links) if links else "")
        for name, target in links.items():
            yield Node(path=join(path, name), kind="link", reason=target)
        for name in members:
            child = join(path, name)
            try:
                obj = group[name]
            except Exception as exc:
                yield Node(path=child, kind="refused", reason=f"cannot be opened: {exc}")
                continue
            if isinstance(obj, h5py.Group):
                yield from self._walk(obj, child)
            elif isinstance(obj, h5py.Dataset):
                yield self._dataset_node(obj, child)
            else:  # named datatypes
                yield Node(path=child, kind="refused",
                           reason=f"{type(obj).__name__} is not a dataset or group")

    def _dataset_node(self, dset, path: str) -> Node:
        h5py = _h5py()
        where = f"{self.path}:/{path}"
        attrs, dropped = read_attrs(dset, where)
        node = Node(path=path, kind="array", attrs=attrs, dropped_attrs=dropped,
                    src_dtype=str(dset.dtype))
        if dset.shape is None:
            node.kind, node.reason = "refused", "empty HDF5 dataspace (no shape, no data)"
            return node
        node.shape = tuple(int(s) for s in dset.shape)
        dtype = dset.dtype
        outside = None if self.allow_external else _outside_files(dset)
        if outside:
            node.kind, node.reason = "refused", (
                f"its data lies outside the file ({outside}); expected data stored in the "
                "file itself (allow_external=True, or --allow-external, copies it)")
            return node
        self._dsets[path] = dset
        if node.shape:
            if dset.chunks:
                node.chunk_rows = int(dset.chunks[0])
            else:  # contiguous: read ~4 MiB at a time
                inner = int(np.prod(node.shape[1:], dtype=np.int64)) * max(dtype.itemsize, 1)
                node.chunk_rows = max(1, (4 * 2**20) // max(inner, 1))
        string = h5py.check_string_dtype(dtype)
        if h5py.check_ref_dtype(dtype) is not None:
            node.kind, node.reason = "refused", "HDF5 object/region references cannot be stored"
            return node
        if string is not None and string.length is None:  # variable-length strings
            utf8 = string.encoding == "utf-8"
            width = 0
            for start in range(0, node.rows, max(1, node.chunk_rows)):
                width = max(width, max_string_length(self._read_raw(dset, start,
                                                                    start + node.chunk_rows)))
            node.dtype = np.dtype(f"<U{max(width, 1)}" if utf8 else f"S{max(width, 1)}")
            node.transform = ("str" if utf8 else "bytes", node.dtype.str)
        elif string is not None and string.encoding == "utf-8":  # fixed-length UTF-8
            if NUMPY_DTYPE in dset.attrs:
                node.dtype = np.dtype(str(dset.attrs[NUMPY_DTYPE]))
            else:
                node.dtype = np.dtype(f"<U{string.length}")
            node.transform = ("utf8", node.dtype.str)
        elif h5py.check_vlen_dtype(dtype) is not None:
            node.kind, node.reason = "refused", "variable-length (ragged) arrays cannot be stored"
            return node
        else:
            node.dtype = np.dtype(dtype)
            _, reason = plan_dtype(node.dtype, dest="npydir")
            if reason:
                node.kind, node.reason = "refused", reason
        self._transforms[path] = node.transform
        return node

    @staticmethod
    def _read_raw(dset, start: int, stop: int):
        if len(dset.shape) == 0:
            return dset[...] if dset.dtype.kind != "O" else dset[()]
        return dset[start:stop]

    def _dset(self, path: str):
        dset = self._dsets.get(path)
        if dset is None:
            h5py = _h5py()
            try:
                dset = self.file[path]
            except KeyError:
                raise not_an_array(self.path, path) from None
            if not isinstance(dset, h5py.Dataset):
                raise not_an_array(self.path, path, f"a {type(dset).__name__}")
            outside = None if self.allow_external else _outside_files(dset)
            if outside:  # not planned by nodes() (a Dask worker): refuse here too
                raise ConversionError(f"{self.path}:/{path}: its data lies outside the file "
                                      f"({outside}); pass allow_external=True to copy it")
            self._dsets[path] = dset
        return dset

    def read(self, path: str, start: int, stop: int) -> np.ndarray:
        return np.asarray(self._read_raw(self._dset(path), start, stop))

    def _fileno(self) -> int:
        if self._fd is None:
            raise ConversionError(f"{self.path!r} is closed")
        return self._fd

    def _direct_reader(self, path: str):
        if path not in self._direct:  # decided once per dataset (a race decides it twice)
            self._direct[path] = DirectReader.create(self._dset(path), self._fileno(),
                                                     f"{self.path}:/{path}")
        return self._direct[path]

    def read_into(self, path: str, start: int, stop: int, out: np.ndarray) -> bool:
        """Rows ``start:stop`` into ``out`` (a reused per-thread buffer): from the file's
        bytes outside h5py's lock where the layout allows (:mod:`npydir.conversion.adapters.hdf5_direct`),
        else with h5py's ``read_direct``."""
        direct = self._direct_reader(path)
        if direct is not None and direct.read_into(start, stop, out):
            return True
        dset = self._dset(path)
        if (dset.dtype != out.dtype or not out.flags.c_contiguous or not dset.shape
                or stop <= start or dset.dtype.kind in "OSUV" or dset.dtype.names is not None):
            return False
        dset.read_direct(out, np.s_[start:stop], np.s_[0:stop - start])
        return True

    def copy_rows_to(self, path: str, start: int, stop: int, dst_fd: int, offset: int) -> bool:
        """Copy rows ``start:stop`` of an unfiltered dataset byte for byte from the HDF5 file
        into ``dst_fd`` at ``offset`` with ``copy_file_range`` (in the kernel, no copy through
        Python).  Only where the stored bytes are exactly the rows: contiguous layout, or
        chunks of whole rows with every chunk allocated; numeric dtypes.  False otherwise
        (nothing done, or a partial copy the caller's ordinary path simply overwrites)."""
        if not hasattr(os, "copy_file_range"):
            return False
        dset = self._dset(path)
        dtype = dset.dtype
        if (not dset.shape or stop <= start or dtype.kind not in "biufc" or dtype.names
                or dset.external or dset.id.get_create_plist().get_nfilters()):
            return False
        row_bytes = int(np.prod(dset.shape[1:], dtype=np.int64)) * dtype.itemsize
        pieces = []  # (file offset, bytes, destination offset)
        if dset.chunks is None:
            base = dset.id.get_offset()
            if base is None:  # never written: the fill value, not bytes in the file
                return False
            pieces.append((base + start * row_bytes, (stop - start) * row_bytes, offset))
        else:
            rows = dset.chunks[0]
            if tuple(dset.chunks[1:]) != tuple(dset.shape[1:]) or start % rows:
                return False
            zeros = (0,) * (len(dset.shape) - 1)
            for first in range(start, stop, rows):
                info = dset.id.get_chunk_info_by_coord((first,) + zeros)
                if info.byte_offset is None or info.filter_mask:
                    return False
                n = min(rows, stop - first) * row_bytes
                pieces.append((info.byte_offset, n, offset + (first - start) * row_bytes))
        fd = self._fileno()
        try:
            for src_off, n, dst_off in pieces:
                while n:
                    done = os.copy_file_range(fd, dst_fd, n, src_off, dst_off)
                    if done <= 0:
                        return False
                    src_off, dst_off, n = src_off + done, dst_off + done, n - done
        except OSError:  # e.g. no copy_file_range across these filesystems
            return False
        return True

    def close(self) -> None:
        try:
            self.file.close()
        except Exception:
            pass
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _outside_files(dset) -> str | None:
    """Where ``dset``'s data lies if not in its own file: a description of the external
    storage files or the other files a virtual dataset maps, else None."""
    try:
        external = dset.external
    except Exception:
        external = None
    if external:
        names = sorted({os.fsdecode(e[0]) for e in external})
        return "external storage in " + ", ".join(repr(n) for n in names)
    if getattr(dset, "is_virtual", False):
        try:
            files = sorted({m.file_name for m in dset.virtual_sources()} - {"."})
        except Exception as exc:  # cannot tell: treat as outside
            return f"a virtual dataset whose sources cannot be listed ({exc})"
        if files:
            return "a virtual dataset mapping " + ", ".join(repr(f) for f in files)
    return None


# --------------------------------------------------------------------------- destination


class Hdf5Dest(Destination):
    """Writes one HDF5 file: chunked datasets with optional compression."""

    kind = "hdf5"

    def __init__(self, path: Path, *, chunks: Any = None, compression: Any = None,
                 create: bool = False):
        self.path = Path(path)
        self.chunks = chunks
        self.compression, self.compression_opts = _h5_compression(compression)
        # create: the (empty) file the conversion just made is formatted; else reopened
        self.file = open_hdf5(self.path, "w" if create else "r+")
        self._dsets: dict[str, Any] = {}
        self._encode: dict[str, bool] = {}

    def check(self, node: Node) -> str | None:
        assert node.dtype is not None  # an array's node
        _, reason = plan_dtype(node.dtype, dest="hdf5")
        return reason

    def group(self, path: str, attrs: dict, dropped: dict | None = None) -> None:
        try:
            g = self.file.require_group(path) if path else self.file
            write_attrs(g, attrs)
        except OSError as exc:
            raise _named(exc, self.path, f"creating group /{path}") from exc

    def _stored_dtype(self, dtype: np.dtype):
        if dtype.kind == "U":  # no HDF5 type for UCS-4: fixed-length UTF-8, 4 bytes a char
            return _h5py().string_dtype("utf-8", max(1, dtype.itemsize)), True
        return dtype, False

    def array(self, path: str, node: Node, attrs: dict, dropped: dict | None = None) -> None:
        try:
            self._array(path, node, attrs)
        except OSError as exc:
            raise _named(exc, self.path, f"creating dataset /{path}") from exc

    def _array(self, path: str, node: Node, attrs: dict) -> None:
        assert node.dtype is not None  # an array's node
        stored, encode = self._stored_dtype(node.dtype)
        dset = self.file.get(path)
        if dset is not None and (tuple(dset.shape or ()) != tuple(node.shape)
                                 or dset.dtype != stored):
            del self.file[path]
            dset = None
        if dset is None:
            kwargs: dict = {}
            # HDF5 chunks may not exceed the shape: empty arrays stay contiguous, and a
            # scalar (0-d) dataset takes no chunk or filter options at all
            if node.shape and node.nbytes and (self.chunks is not None
                                               or self.compression is not None):
                kwargs["chunks"] = default_chunks(node.shape, node.dtype.itemsize, self.chunks)
                if self.compression is not None:
                    kwargs["compression"] = self.compression
                    kwargs["compression_opts"] = self.compression_opts
            dset = self.file.create_dataset(path, shape=node.shape, dtype=stored, **kwargs)
        write_attrs(dset, attrs)
        if encode:
            dset.attrs[NUMPY_DTYPE] = node.dtype.str
        self._dsets[path] = dset
        self._encode[path] = encode

    def chunk_rows(self, path: str) -> int:
        dset = self._dsets[path]
        return int(dset.chunks[0]) if dset.chunks else 1

    def opened_stat(self) -> os.stat_result | None:
        """``fstat`` of the file h5py actually opened (None where the driver hides it)."""
        try:
            return os.fstat(self.file.id.get_vfd_handle())
        except Exception:
            return None

    def write(self, path: str, start: int, stop: int, block: np.ndarray) -> None:
        dset = self._dsets[path]
        if self._encode[path]:
            block = np.char.encode(np.asarray(block), "utf-8").astype(dset.dtype)
        try:
            if dset.shape:
                dset[start:stop] = block
            else:
                dset[()] = block
        except OSError as exc:  # h5py's message spans lines and names no dataset
            raise _named(exc, self.path, f"writing rows {start}:{stop} of /{path}") from exc

    def flush(self, durable: bool = True) -> None:
        """Out of HDF5's caches into the file — always, a killed process would lose them —
        and to the disk when ``durable``."""
        try:
            self.file.flush()
        except OSError as exc:
            raise _named(exc, self.path, "flushing") from exc
        if durable:
            fd = os.open(self.path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def close(self) -> None:
        self._dsets.clear()
        try:
            self.file.close()
        except Exception:
            pass


def _named(exc: OSError, path: Path, doing: str) -> OSError:
    """``exc`` as one line naming the file (errno kept: ENOSPC stays ENOSPC)."""
    err = exc.errno
    if err is None:  # h5py puts the C library's errno in its text only
        found = re.search(r"errno = (\d+)", str(exc))
        err = int(found.group(1)) if found else None
    text = os.strerror(err) if err else " ".join(str(exc).split())
    return OSError(err, f"{text} ({doing})", os.fspath(path))


def _h5_compression(spec: Any) -> tuple[Any, Any]:
    """``None``/"none" -> no filter; "gzip[:level]", "lzf", "szip" -> h5py's arguments."""
    if spec is None:
        return None, None
    if not isinstance(spec, str):
        return spec, None
    name, *opts = spec.lower().split(":")
    if name in ("none", "raw", ""):
        return None, None
    if name == "gzip":
        return "gzip", int(opts[0]) if opts else 4
    if name in ("lzf", "szip"):
        return name, None
    raise ConversionError(f"unknown HDF5 compression {spec!r}; use none, gzip[:level] or lzf")
