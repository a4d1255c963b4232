"""zarr side of conversions: read zarr format 2/3 stores (directory or zip), write format 2/3.

Attributes go through npydir's one JSON encoding (:mod:`npydir.store.attrs`): values that are plain
JSON stay plain (so DAS and other zarr users read them as before), numpy scalars/arrays,
bytes and non-finite floats are stored in the tagged form of that encoding and come back as
the same Python/numpy values.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from . import zarr_compat as _zc
from ..protocol import Destination, Node, Source, join, not_an_array, read_file_into, select_rows
from ..values import NUMPY_DTYPE, is_vlen_string, max_string_length, plan_dtype
from ..._optional import require
from ...errors import ConversionError, StoreNotFoundError
from ...remote._url import fsspec_options, is_remote_url
from ...store.attrs import decode_attrs, encode_attrs


def open_zarr_group(path: str | os.PathLike, mode: str = "r", storage_options: dict | None = None):
    """Open a zarr group (format 2 or 3) in a directory or a ``.zip`` file, or read-only at an
    ``s3://``/``http(s)://`` URL (through fsspec, with fsspec's ``storage_options``)."""
    path = os.fspath(path)
    if is_remote_url(path):
        try:
            return _zc.zarr_module().open_group(
                path, mode="r", storage_options=fsspec_options(storage_options)
            )
        except FileNotFoundError:
            raise StoreNotFoundError(f"zarr store {path!r} does not exist") from None
        except Exception as exc:  # zarr and fsspec raise several types for a non-store
            raise ConversionError(f"{path!r} is not a readable zarr store: {exc}") from exc
    if not os.path.exists(path):
        raise StoreNotFoundError(f"zarr store {path!r} does not exist")
    return _zc.open_group(path, mode)


def decode_json_attrs(raw: dict, where: str) -> tuple[dict, dict]:
    """zarr attrs (plain JSON) -> Python/numpy values through npydir's attr encoding."""
    try:
        return decode_attrs(json.dumps(dict(raw), allow_nan=False)), {}
    except Exception:
        pass
    out, dropped = {}, {}
    for key, value in dict(raw).items():
        try:
            out[key] = decode_attrs(json.dumps({key: value}, allow_nan=False))[key]
        except ValueError:  # non-finite floats written by a non-strict writer: keep as read
            out[key] = value
        except Exception as exc:
            dropped[key] = f"{where}: attribute {key!r} cannot be decoded: {exc}"
    return out, dropped


def encode_json_attrs(attrs: dict) -> dict:
    """Python/numpy values -> plain-JSON dict (npydir's encoding) for zarr attrs."""
    return json.loads(encode_attrs(dict(attrs)))


#: metadata files of a zarr group (format 3, format 2, consolidated)
_GROUP_METADATA = ("zarr.json", ".zgroup", ".zattrs", ".zmetadata")


def foreign_entries(root: str) -> dict[str, str]:
    """Entries of the directory store ``root`` that are not its own plain files: symbolic
    links (to files or directories, never followed) and special files, by relative path
    (``/`` separators), each with what it is."""
    found: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        rel = "" if rel == "." else rel.replace(os.sep, "/")
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            try:
                st = os.lstat(full)
            except FileNotFoundError:
                continue
            if stat.S_ISLNK(st.st_mode):
                try:
                    target = os.readlink(full)
                except OSError:
                    target = "?"
                what = f"a symbolic link to {target!r}"
            elif stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode):
                continue
            else:
                what = "not a regular file (a FIFO, socket or device)"
            found[f"{rel}/{name}" if rel else name] = what
    return found


class ZarrSource(Source):
    """Walks and reads a zarr store; arrays stay lazy until read.

    In a directory store, an array whose files include a symbolic link (a chunk file, its
    directory or a group directory above it) or a special file is refused unless
    ``allow_external``: a link would copy whatever local file it names into the output, a
    FIFO would hang the read.  A group whose metadata file is a link keeps no attributes."""

    kind = "zarr"

    def __init__(self, path: str | os.PathLike, *, allow_external: bool = False,
                 storage_options: dict | None = None):
        self.path = os.fspath(path)
        self.allow_external = allow_external
        self.spec = ("zarr", self.path, allow_external)
        if storage_options is not None:  # a remote store: workers open it with the same options
            self.spec += (storage_options,)
        self.root = open_zarr_group(self.path, storage_options=storage_options)
        self._arrays: dict[str, Any] = {}
        self._foreign = ({} if allow_external or not os.path.isdir(self.path)
                         else foreign_entries(self.path))

    def _outside(self, path: str, *, group: bool = False) -> str | None:
        """Why member ``path`` reaches outside the store (None when it does not)."""
        for rel, what in self._foreign.items():
            if group:
                hit = rel == path or (rel.rpartition("/")[0] == path
                                      and rel.rpartition("/")[2] in _GROUP_METADATA)
            else:
                hit = rel == path or rel.startswith(path + "/") or path.startswith(rel + "/")
            if hit:
                return (f"{rel!r} in the store is {what}; expected the store's own files "
                        "(allow_external=True, or --allow-external, follows links)")
        return None

    def _array(self, path: str):
        arr = self._arrays.get(path)
        if arr is None:
            reason = self._outside(path)
            if reason:  # not planned by nodes() (a Dask worker): refuse here too
                raise ConversionError(f"{self.path}:/{path}: {reason}")
            try:
                arr = self.root[path]
            except KeyError:
                raise not_an_array(self.path, path) from None
            if _zc.is_group(arr):
                raise not_an_array(self.path, path, "a group")
            self._arrays[path] = arr
        return arr

    def nodes(self) -> Iterator[Node]:
        yield from self._walk(self.root, "")

    def _walk(self, group, path: str) -> Iterator[Node]:
        outside = self._outside(path, group=True)
        attrs: dict[str, Any]
        if outside:
            attrs, dropped = {}, {"*": f"{self.path}:/{path}: attributes not read: {outside}"}
        else:
            attrs, dropped = decode_json_attrs(group.attrs.asdict(), f"{self.path}:/{path}")
        yield Node(path=path, kind="group", attrs=attrs, dropped_attrs=dropped)
        for name, member in _zc.members(group):
            child = join(path, name)
            if _zc.is_group(member):
                yield from self._walk(member, child)
            else:
                yield self._array_node(member, child)

    def _array_node(self, arr, path: str) -> Node:
        where = f"{self.path}:/{path}"
        outside = self._outside(path)
        if outside:  # before reading anything of it, attributes included
            return Node(path=path, kind="refused", src_dtype=str(arr.dtype), reason=outside)
        attrs, dropped = decode_json_attrs(arr.attrs.asdict(), where)
        self._arrays[path] = arr
        shape = tuple(int(s) for s in arr.shape)
        dtype = np.dtype(arr.dtype)
        # read along whole shards when the array is sharded: one shard is one object to fetch
        shards = getattr(arr, "shards", None)
        chunk_rows = int((shards or arr.chunks)[0]) if shape else 1
        node = Node(path=path, kind="array", attrs=attrs, shape=shape, dtype=dtype,
                    src_dtype=str(dtype), chunk_rows=max(1, chunk_rows), dropped_attrs=dropped)
        if is_vlen_string(dtype) or dtype.kind == "O":
            # variable-length strings: one pass to find the widest, then fixed-width unicode
            width, is_bytes = 0, False
            for start in range(0, node.rows, max(1, node.chunk_rows)):
                block = select_rows(arr, start, start + node.chunk_rows)
                block = np.asarray(block)
                if block.dtype.kind == "O" and block.size:
                    is_bytes = isinstance(block.ravel()[0], bytes)
                width = max(width, max_string_length(block))
            node.dtype = np.dtype(f"S{max(width, 1)}" if is_bytes else f"<U{max(width, 1)}")
            node.transform = ("bytes" if is_bytes else "str", node.dtype.str)
            return node
        original = attrs.pop(NUMPY_DTYPE, None)
        if isinstance(original, str):  # byte order zarr 3 does not keep (see ZarrDest)
            node.dtype = np.dtype(original)
            node.transform = ("astype", node.dtype.str)
        _, reason = plan_dtype(dtype, dest="npydir")
        if reason:
            node.kind, node.reason = "refused", reason
        return node

    def read(self, path: str, start: int, stop: int) -> np.ndarray:
        return np.asarray(select_rows(self._array(path), start, stop))

    def read_into(self, path: str, start: int, stop: int, out: np.ndarray) -> bool:
        """Decode rows ``start:stop`` straight into ``out`` (a reused per-thread buffer)."""
        arr = self._array(path)
        if (not arr.shape or np.dtype(arr.dtype) != out.dtype or not out.flags.c_contiguous
                or out.dtype.kind in "OTV" or out.dtype.byteorder == ">"):
            return False
        if _read_v2_chunks(arr, start, stop, out, self.allow_external):
            return True
        return _zc.read_into(arr, start, stop, out)

    def close(self) -> None:
        store = getattr(self.root, "store", None)
        close = getattr(store, "close", None)
        if callable(close):
            try:
                close()
            except Exception:
                pass


def _read_v2_chunks(arr, start: int, stop: int, out: np.ndarray,
                    follow: bool = False) -> bool:
    """Fast path for zarr format 2 directory stores as DAS writes them (whole rows per chunk,
    one numcodecs compressor, no filters, C order): each chunk file is decompressed straight
    into its rows of ``out`` — one copy, where zarr's own path decodes into a chunk buffer and
    copies that again.  Returns False (nothing done) for anything else."""
    meta = _zc.v2_layout(arr)
    if meta is None:  # not format 2 in a directory store, or filters / F order
        return False
    codec = meta.compressor
    chunk_rows = int(meta.chunks[0])
    if (tuple(meta.chunks[1:]) != tuple(arr.shape[1:]) or start % chunk_rows
            or codec is None or not hasattr(codec, "decode")):
        return False
    base, sep = meta.directory, meta.separator
    tail = sep.join("0" for _ in arr.shape[1:])
    row_bytes = out.nbytes // max(stop - start, 1)
    flat = out.reshape(-1).view(np.uint8)
    for first in range(start, stop, chunk_rows):
        rows = min(chunk_rows, stop - first, arr.shape[0] - first)
        key = str(first // chunk_rows) + (sep + tail if tail else "")
        dest = out[first - start:first - start + rows]
        chunk_file = os.path.join(base, key)
        try:
            raw = read_file_into(chunk_file, follow=follow)
        except FileNotFoundError:  # missing chunk: zarr knows its fill value semantics
            dest[...] = arr[first:first + rows]
            continue
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # became a link after the store was checked
                raise ConversionError(f"{chunk_file}: is a symbolic link; expected a chunk "
                                      "file of the store (allow_external=True follows "
                                      "links)") from None
            raise
        if rows == chunk_rows:
            lo = (first - start) * row_bytes
            codec.decode(raw, out=flat[lo:lo + rows * row_bytes])
        else:  # the last, partial chunk is stored whole: decode aside, keep its rows
            full = np.empty((chunk_rows,) + tuple(arr.shape[1:]), dtype=out.dtype)
            codec.decode(raw, out=full.reshape(-1).view(np.uint8))
            dest[...] = full[:rows]
    return True


# --------------------------------------------------------------------------- destination


#: The layout of the zarr stores DAS's make_dataset writes (zarr 2's defaults: Blosc lz4 with
#: byte shuffle), used for ``das_compat`` destinations where no chunks/compression are given.
DAS_CHUNK_ROWS = 1_000_000
DAS_COMPRESSION = "blosc:lz4:5"


def zarr_options(zarr_format: Any, chunks: Any, compression: Any, *, das_compat: bool,
                 where: str) -> tuple[int, Any, Any]:
    """``(zarr_format, chunks, compression)`` of a zarr destination, checked before anything
    is written; ``das_compat`` asks for a store DAS's ``das.io.load`` reads.

    Raises
    ------
    ConversionError
        A bad format, or ``das_compat`` with format 3 (DAS would see an empty store).
    MissingDependencyError
        zarr missing or unsupported, or format 3 asked of zarr 2.
    """
    if das_compat:
        if zarr_format == 3:
            raise ConversionError(
                f"{where}: das_compat=True (--das) writes zarr format 2, the only format DAS's "
                f"das.io.load reads (a format 3 store loads there as an empty dataset); drop "
                f"zarr_format=3 (--zarr-format 3)")
        chunks = DAS_CHUNK_ROWS if chunks is None else chunks
        compression = DAS_COMPRESSION if compression is None else compression
    return _zc.check_format(zarr_format, where), chunks, compression


def zarr_compressors(compression: Any, zarr_format: int):
    """Map a compression spec to zarr's ``compressors`` argument.

    ``None`` -> zarr's default for the format; ``"none"`` -> uncompressed;
    ``"blosc[:cname[:clevel]]"``, ``"zstd[:level]"``, ``"gzip[:level]"``; anything else (a
    codec object) is passed through.
    """
    if compression is None:
        return "auto"
    if not isinstance(compression, str):
        return compression
    name, *opts = compression.lower().split(":")
    if name in ("none", "raw", ""):
        return None
    if zarr_format == 2:
        numcodecs = require("numcodecs", "zarr format 2 compressors")
        if name == "blosc":
            return numcodecs.Blosc(cname=opts[0] if opts else "lz4",
                                   clevel=int(opts[1]) if len(opts) > 1 else 5,
                                   shuffle=numcodecs.Blosc.SHUFFLE)
        if name == "zstd":
            return numcodecs.Zstd(level=int(opts[0]) if opts else 3)
        if name == "gzip":
            return numcodecs.GZip(level=int(opts[0]) if opts else 5)
    else:
        from zarr import codecs

        if name == "blosc":
            # cname: the user's string, which zarr checks
            return codecs.BloscCodec(cname=opts[0] if opts else "lz4",  # type: ignore[arg-type]
                                     clevel=int(opts[1]) if len(opts) > 1 else 5,
                                     shuffle="shuffle")
        if name == "zstd":
            return codecs.ZstdCodec(level=int(opts[0]) if opts else 3)
        if name == "gzip":
            return codecs.GzipCodec(level=int(opts[0]) if opts else 5)
    raise ConversionError(
        f"unknown zarr compression {compression!r}; use none, blosc[:cname[:clevel]], "
        "zstd[:level] or gzip[:level]"
    )


def default_chunks(shape: tuple, itemsize: int, chunks: Any, target: int = 8 * 2**20) -> tuple:
    """Destination chunk shape: ``chunks`` (rows as int, or a full tuple) or ~8 MiB of rows."""
    if not shape:
        return ()
    if isinstance(chunks, (tuple, list)):
        if len(chunks) != len(shape):
            chunks = (int(chunks[0]),) + tuple(shape[1:])
        return tuple(max(1, min(int(c), max(int(s), 1))) for c, s in zip(chunks, shape))
    inner = int(np.prod(shape[1:], dtype=np.int64)) * itemsize
    rows = int(chunks) if chunks else max(1, target // max(inner, 1))
    return (max(1, min(rows, max(int(shape[0]), 1))),) + tuple(max(int(s), 1) for s in shape[1:])


class ZarrDest(Destination):
    """Writes a zarr directory store (format 2 or 3)."""

    kind = "zarr"

    def __init__(self, path: Path, *, zarr_format: int = 2, chunks: Any = None,
                 compression: Any = None):
        self.path, self.zarr_format = Path(path), _zc.check_format(zarr_format)
        self.chunks, self.compression = chunks, compression
        try:
            self.root = _zc.create_root(self.path, self.zarr_format)
        except OSError as exc:
            raise self._named(exc, "", "creating the root group") from exc
        self._arrays: dict[str, Any] = {}

    def check(self, node: Node) -> str | None:
        assert node.dtype is not None  # an array's node
        _, reason = plan_dtype(node.dtype, dest="zarr")
        return reason

    def _named(self, exc: OSError, path: str, doing: str) -> OSError:
        """``exc`` naming the member's files (zarr's own message often names none)."""
        where = os.path.join(os.fspath(self.path), *[p for p in path.split("/") if p])
        return OSError(exc.errno, f"{exc.strerror or exc} ({doing})", exc.filename or where)

    def group(self, path: str, attrs: dict, dropped: dict | None = None) -> None:
        try:
            g = self.root.require_group(path) if path else self.root
            g.attrs.update(encode_json_attrs(attrs))
        except OSError as exc:
            raise self._named(exc, path, f"creating group /{path}") from exc

    def array(self, path: str, node: Node, attrs: dict, dropped: dict | None = None) -> None:
        try:
            self._array(path, node, attrs)
        except OSError as exc:
            raise self._named(exc, path, f"creating array /{path}") from exc

    def _array(self, path: str, node: Node, attrs: dict) -> None:
        assert node.dtype is not None  # an array's node
        chunks = default_chunks(node.shape, node.dtype.itemsize, self.chunks)
        existing = None
        try:
            existing = self.root[path]
        except KeyError:
            pass
        if existing is not None and (tuple(existing.shape) != tuple(node.shape)
                                     or np.dtype(existing.dtype) != node.dtype):
            del self.root[path]
            existing = None
        if existing is None:
            existing = _zc.create_array(
                self.root, path, shape=node.shape, dtype=node.dtype, chunks=chunks,
                compressors=zarr_compressors(self.compression, self.zarr_format),
                zarr_format=self.zarr_format, fill_value=None)
        else:
            # Every chunk written, also into an array a resumed run reopened (see
            # writes_every_chunk: zarr compares complex chunks with the fill value by ==).
            existing = _zc.writes_every_chunk(existing)
        attrs = dict(attrs)
        if self.zarr_format == 3 and node.dtype.byteorder == ">":  # zarr 3 reads it as native
            attrs[NUMPY_DTYPE] = node.dtype.str
        existing.attrs.update(encode_json_attrs(attrs))
        self._arrays[path] = existing

    def chunk_rows(self, path: str) -> int:
        arr = self._arrays[path]
        return int(arr.chunks[0]) if arr.shape else 1

    def write(self, path: str, start: int, stop: int, block: np.ndarray) -> None:
        arr = self._arrays[path]
        try:
            if arr.shape:
                arr[start:stop] = block
            else:
                arr[()] = block
        except OSError as exc:
            raise self._named(exc, path, f"writing rows {start}:{stop} of /{path}") from exc

    def flush(self, durable: bool = True) -> None:
        # every chunk is its own file, written before write() returns; chunk files are not
        # fsynced one by one (zarr's store does not offer it)
        pass

    def close(self) -> None:
        self._arrays.clear()
