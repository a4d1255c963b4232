"""npydir side of conversions: walk a store as a source, fill preallocated arrays as destination.

The destination preallocates every array with ``create_dataset(path, shape=..., dtype=...)``
(a sparse file of the full size) and writes row ranges into that ``.npy`` file with
``pwrite`` at ``header offset + row * row bytes`` (:class:`RowsFile`).  Several threads (or
Dask workers on other hosts of a shared filesystem) fill disjoint row ranges of one array at
the same time; written pages belong to the page cache, not to the writer's anonymous memory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..protocol import ConcurrentDestination, Node, Source, join, not_an_array, select_rows
from ..values import ORIGINAL_NAME, escape_name, fully_escaped, plan_dtype, same_value
from ..writeback import start_writeback
from ...errors import AttributeEncodingError, InvalidNameError
from ...remote._open import open as open_store_or_url
from ...store.group import Group
from ...store.group import open as open_store
from ...store.names import validate_name
from ...store.npyfile import read_header_path


def _is_group(obj) -> bool:
    return isinstance(obj, Group) or type(obj).__name__ == "RemoteGroup"


class NpydirSource(Source):
    """Walks an npydir store; names escaped by an earlier conversion get their originals back."""

    kind = "npydir"

    def __init__(self, path: str | os.PathLike, storage_options: dict | None = None):
        self.path = os.fspath(path)
        self.spec = ("npydir", self.path)
        if storage_options is not None:  # a remote store: workers open it with the same options
            self.spec += (storage_options,)
        self.root = open_store_or_url(self.path, "r", storage_options=storage_options)
        self._arrays: dict[str, Any] = {}

    def nodes(self) -> Iterator[Node]:
        yield from self._walk(self.root, "", "")

    def _walk(self, group, path: str, out_path: str) -> Iterator[Node]:
        attrs = dict(group.attrs)
        attrs.pop(ORIGINAL_NAME, None)
        node = Node(path=path, kind="group", attrs=attrs)
        node.out_path = out_path  # type: ignore[attr-defined]
        yield node
        for name in sorted(group.keys()):
            member = group[name]
            child = join(path, name)
            original = member.attrs.get(ORIGINAL_NAME, name)
            out_child = join(out_path, original if isinstance(original, str) else name)
            if _is_group(member):
                yield from self._walk(member, child, out_child)
            else:
                yield self._array_node(member, child, out_child)

    def _array_node(self, arr, path: str, out_path: str) -> Node:
        attrs = dict(arr.attrs)
        attrs.pop(ORIGINAL_NAME, None)
        dtype = np.dtype(arr.dtype)
        self._arrays[path] = arr
        node = Node(path=path, kind="array", attrs=attrs, shape=tuple(arr.shape), dtype=dtype,
                    src_dtype=str(dtype), chunk_rows=1)
        node.out_path = out_path  # type: ignore[attr-defined]
        _, reason = plan_dtype(dtype, dest="npydir")
        if reason:
            node.kind, node.reason = "refused", reason
        return node

    def _array(self, path: str):
        arr = self._arrays.get(path)
        if arr is None:
            try:
                arr = self.root[path]
            except KeyError:  # MemberNotFoundError, also from a remote store
                raise not_an_array(self.path, path) from None
            if _is_group(arr):
                raise not_an_array(self.path, path, "a group")
            self._arrays[path] = arr
        return arr

    def read(self, path: str, start: int, stop: int) -> np.ndarray:
        # a view of the memmap: the copy happens in the destination's write
        return np.asarray(select_rows(self._array(path), start, stop))

    def close(self) -> None:
        close = getattr(self.root, "close", None)
        if callable(close):
            close()


#: page size that direct I/O offsets, lengths and buffer addresses are aligned to
ALIGN = 4096


class RowsFile:
    """Writes row ranges of one preallocated ``.npy`` file with ``pwrite`` (no memory map).

    Row ``i`` lives at ``offset + i * row_bytes``; blocks of disjoint rows can be written from
    several threads or processes at once.  ``pwrite`` copies into the page cache in bulk,
    which measured about twice as fast as filling a fresh shared memory map page fault by
    page fault, and leaves no dirty mapping to ``msync``.

    Where the filesystem allows it, the 4 KiB-aligned interior of a block goes out with
    ``O_DIRECT`` (straight from the caller's buffer to the disk, skipping the page cache,
    which on the test machine took buffered writes down to ~450 MB/s against ~1.8 GB/s
    direct); the unaligned head and tail pages go through the page cache, so neighbouring
    blocks written by other threads never share a direct-I/O page.  The caller places its
    block in memory with :data:`ALIGN` phase ``file_phase(start)`` for this to apply
    (see :func:`npydir.conversion.engine._block_buffer`); otherwise, or if ``O_DIRECT`` fails, every
    byte is written buffered.  Whatever goes through the page cache has its disk write
    started right away (:func:`npydir.conversion.writeback.start_writeback`), so the disk is
    not idle until the next ``fdatasync``.

    Why not buffered writes with early writeback throughout (no alignment games)?  Measured
    on the test machine, in alternation with this code (2 GiB, durable): buffered +
    ``sync_file_range`` per block converted at 0.4-2.5 GB/s, direct at 1.2-2.6 GB/s, because
    ~80 % of the buffered run was the kernel copying into *fresh* page-cache pages
    (``copy_folio_from_iter_atomic`` in ``perf``), which on this VM cost far more than
    copying out of cached ones; direct writes need no new pages.  docs/backends.md has the
    numbers.
    """

    def __init__(self, filename: str | os.PathLike, *, direct: bool = True):
        header = read_header_path(filename)
        self.filename = os.fspath(filename)
        self.dtype = header.dtype
        self.shape = tuple(header.shape)
        self.offset = header.offset
        inner = int(np.prod(self.shape[1:], dtype=np.int64)) if self.shape else 1
        self.row_bytes = inner * self.dtype.itemsize
        self.nbytes = header.nbytes
        self.fd = os.open(self.filename, os.O_RDWR) if self.nbytes else -1
        self.dfd = -1
        if self.nbytes >= 4 * ALIGN and direct and hasattr(os, "O_DIRECT"):
            try:
                self.dfd = os.open(self.filename, os.O_RDWR | os.O_DIRECT)
            except OSError:  # tmpfs and others refuse O_DIRECT
                self.dfd = -1

    def file_phase(self, start: int) -> int:
        """Where row ``start`` falls within an :data:`ALIGN` page of the file."""
        return (self.offset + start * self.row_bytes) % ALIGN

    def copy_from(self, source, path: str, start: int, stop: int) -> bool:
        """Let ``source`` copy rows ``start:stop`` into this file directly (no decoding).

        Not used when direct I/O is available: a kernel copy goes through the page cache,
        which measured slower than reading into a buffer and writing it direct."""
        if self.fd < 0 or not self.shape or self.dfd >= 0:
            return False
        pos = self.offset + start * self.row_bytes
        if not source.copy_rows_to(path, start, stop, self.fd, pos):
            return False
        start_writeback(self.fd, pos, (stop - start) * self.row_bytes)
        return True

    def write(self, start: int, stop: int, block: np.ndarray) -> None:
        if self.fd < 0:
            return
        if not self.shape:
            start, stop = 0, 1
        arr = np.ascontiguousarray(block, dtype=self.dtype)
        expected = (stop - start) * self.row_bytes
        data = arr.reshape(-1).view(np.uint8).data
        if len(data) != expected:
            raise ValueError(f"{self.filename}: block of {len(data)} bytes for rows "
                             f"{start}:{stop} ({expected} bytes expected)")
        pos = self.offset + start * self.row_bytes
        if self.dfd >= 0 and len(data) >= 2 * ALIGN:
            head = -pos % ALIGN
            body = (len(data) - head) // ALIGN * ALIGN
            if body and (arr.ctypes.data + head) % ALIGN == 0:
                try:
                    _pwrite_all(self.dfd, data[head:head + body], pos + head)
                except OSError:
                    os.close(self.dfd)  # not supported after all: buffered from now on
                    self.dfd = -1
                else:
                    _pwrite_all(self.fd, data[:head], pos)
                    _pwrite_all(self.fd, data[head + body:], pos + head + body)
                    start_writeback(self.fd, pos, head)
                    start_writeback(self.fd, pos + head + body, len(data) - head - body)
                    return
        _pwrite_all(self.fd, data, pos)
        # buffered: start the disk write now, so the fdatasync before the next journal
        # commit (durable=True) finds little left to do
        start_writeback(self.fd, pos, len(data))

    def flush(self) -> None:
        if self.fd >= 0:
            os.fdatasync(self.fd)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.dfd >= 0:
            os.close(self.dfd)
            self.dfd = -1


def _pwrite_all(fd: int, data: memoryview, pos: int) -> None:
    while len(data):  # pwrite may write less than asked (signals, > 2 GiB)
        n = os.pwrite(fd, data, pos)
        data, pos = data[n:], pos + n


class NpydirDest(ConcurrentDestination):
    """Fills an npydir store (the conversion's partial directory)."""

    kind = "npydir"

    def __init__(self, path: Path, *, das_compat: bool = False):
        self.path = Path(path)
        try:
            self.root = open_store(self.path, "a", das_compat=das_compat)
        except OSError as exc:
            if exc.filename is not None:
                raise
            raise OSError(exc.errno, f"{exc.strerror or exc} (creating the store)",
                          str(self.path)) from exc
        self._rows: dict[str, RowsFile] = {}
        self._names: dict[str, set[str]] = {}

    # names ------------------------------------------------------------------------------
    def out_name(self, parent: str, name: str) -> str:
        """Escaped, unique name for ``name`` inside destination group ``parent``."""
        taken = self._names.setdefault(parent, set())
        return escape_name(name, taken)

    def check(self, node: Node) -> str | None:
        assert node.dtype is not None  # an array's node
        _, reason = plan_dtype(node.dtype, dest="npydir")
        return reason

    def _set_attrs(self, obj, attrs: dict, dropped: dict, where: str) -> None:
        try:  # one (fsynced) attrs file write for all keys
            obj.attrs.update(attrs)
            return
        except (AttributeEncodingError, TypeError, ValueError):
            pass  # some value is refused: store the others one by one, report that one
        for key, value in attrs.items():
            try:
                obj.attrs[key] = value
            except (AttributeEncodingError, TypeError, ValueError) as exc:
                try:  # e.g. an array dtype the JSON encoding refuses: keep it as a list
                    obj.attrs[key] = np.asarray(value).tolist()
                except Exception:
                    dropped[key] = f"{where}: attribute {key!r} cannot be stored: {exc}"

    def group(self, path: str, attrs: dict, dropped: dict | None = None) -> None:
        g = self.root.require_group(path) if path else self.root
        if not same_value(dict(g.attrs), attrs):  # unchanged on resume: skip rewriting attrs
            self._set_attrs(g, attrs, dropped if dropped is not None else {}, path or "/")

    def array(self, path: str, node: Node, attrs: dict, dropped: dict | None = None) -> None:
        arr: Any = None  # the store's Array (a Group in its place is deleted)
        if path in self.root:
            arr = self.root[path]
            if _is_group(arr) or tuple(arr.shape) != tuple(node.shape) or arr.dtype != node.dtype:
                del self.root[path]
                arr = None
        if arr is None:  # preallocated at full size (a sparse file)
            arr = self.root.create_dataset(path, shape=node.shape, dtype=node.dtype)
        if not same_value(dict(arr.attrs), attrs):  # (array values compare by same_value)
            self._set_attrs(arr, attrs, dropped if dropped is not None else {}, path)
        # opened here, in one thread: reader threads then only look it up
        self._rows[path] = RowsFile(arr.filename)

    def filename(self, path: str) -> Path:
        return Path(self._rows[path].filename)

    def chunk_rows(self, path: str) -> int:
        return 1

    def rows_file(self, path: str) -> RowsFile:
        return self._rows[path]

    def write(self, path: str, start: int, stop: int, block: np.ndarray) -> None:
        self._rows[path].write(start, stop, block)

    def flush(self, durable: bool = True) -> None:
        """Rows are written with pwrite (nothing buffered in the process); ``durable``
        also fdatasyncs every file."""
        if durable:
            for rows in self._rows.values():
                rows.flush()

    def close(self) -> None:
        # no flush here: the caller flushes when it wants durability (convert(durable=True))
        for rows in self._rows.values():
            rows.close()
        self._rows.clear()
        close = getattr(self.root, "close", None)
        if callable(close):
            close()


def safe_store_name(dest: NpydirDest, parent: str, name: str, *, array: bool = False) -> str:
    """Escaped name, falling back to a fully percent-encoded one if the store still refuses."""
    out = dest.out_name(parent, name)
    try:
        validate_name(out, array=array)
    except InvalidNameError:
        out = fully_escaped(name)[:200]
    return out
