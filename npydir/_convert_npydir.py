"""npydir side of conversions: walk a store as a source, fill preallocated arrays as destination.

The destination preallocates every array with ``create_dataset(path, shape=..., dtype=...)``
(a sparse file of the full size) and writes row ranges through a shared, writable memory map
of that ``.npy`` file.  Writers therefore never grow anonymous memory: dirty pages belong to
the page cache, and several threads (or Dask workers on other hosts of a shared filesystem)
can fill disjoint row ranges of one array at the same time.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ._convert_base import Node, Source, join, select_rows
from ._convert_values import ORIGINAL_NAME, escape_name, fully_escaped, plan_dtype
from .errors import InvalidNameError


def _is_group(obj) -> bool:
    from .group import Group

    return isinstance(obj, Group)


class NpydirSource(Source):
    """Walks an npydir store; names escaped by an earlier conversion get their originals back."""

    kind = "npydir"

    def __init__(self, path: str | os.PathLike):
        from .group import open as open_store

        self.path = os.fspath(path)
        self.spec = ("npydir", self.path)
        self.root = open_store(self.path, "r")
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
            arr = self._arrays[path] = self.root[path]
        return arr

    def read(self, path: str, start: int, stop: int) -> np.ndarray:
        # a view of the memmap: the copy happens in the destination's write
        return np.asarray(select_rows(self._array(path), start, stop))

    def close(self) -> None:
        close = getattr(self.root, "close", None)
        if callable(close):
            close()


def open_rows_memmap(filename: str | os.PathLike) -> np.ndarray | None:
    """Writable shared memmap of an ``.npy`` file; None for an empty array (nothing to map)."""
    header = np.load(filename, mmap_mode="r")  # parses the header; maps read-only
    if header.size == 0:
        return None
    del header
    return np.load(filename, mmap_mode="r+")


def write_rows(mm: np.ndarray, start: int, stop: int, block: np.ndarray) -> None:
    if mm.ndim == 0:
        mm[...] = block
    else:
        mm[start:stop] = block


class NpydirDest:
    """Fills an npydir store (the conversion's partial directory)."""

    kind = "npydir"
    concurrent_writes = True

    def __init__(self, path: Path, *, das_compat: bool = False):
        from .group import open as open_store

        self.path = Path(path)
        self.root = open_store(self.path, "a", das_compat=das_compat)
        self._memmaps: dict[str, np.ndarray | None] = {}
        self._files: dict[str, Path] = {}
        self._names: dict[str, set[str]] = {}

    # names ------------------------------------------------------------------------------
    def out_name(self, parent: str, name: str) -> str:
        """Escaped, unique name for ``name`` inside destination group ``parent``."""
        taken = self._names.setdefault(parent, set())
        return escape_name(name, taken)

    def check(self, node: Node) -> str | None:
        _, reason = plan_dtype(node.dtype, dest="npydir")
        return reason

    def _set_attrs(self, obj, attrs: dict, dropped: dict, where: str) -> None:
        from .errors import AttributeEncodingError

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
        if dict(g.attrs) != attrs:  # unchanged on resume: skip rewriting attrs
            self._set_attrs(g, attrs, dropped if dropped is not None else {}, path or "/")

    def array(self, path: str, node: Node, attrs: dict, dropped: dict | None = None) -> None:
        arr = None
        if path in self.root:
            arr = self.root[path]
            if _is_group(arr) or tuple(arr.shape) != tuple(node.shape) or arr.dtype != node.dtype:
                del self.root[path]
                arr = None
        if arr is None:
            arr = self.root.create_dataset(path, shape=node.shape, dtype=node.dtype)
        if dict(arr.attrs) != attrs:
            self._set_attrs(arr, attrs, dropped if dropped is not None else {}, path)
        self._files[path] = Path(arr.filename)

    def filename(self, path: str) -> Path:
        return self._files[path]

    def memmap(self, path: str) -> np.ndarray | None:
        if path not in self._memmaps:
            self._memmaps[path] = open_rows_memmap(self._files[path])
        return self._memmaps[path]

    def chunk_rows(self, path: str) -> int:
        return 1

    def write(self, path: str, start: int, stop: int, block: np.ndarray) -> None:
        mm = self.memmap(path)
        if mm is not None:
            write_rows(mm, start, stop, block)

    def flush(self) -> None:
        # msync every map written since the last flush; the journal is fsynced after this
        for mm in self._memmaps.values():
            if mm is not None:
                mm.flush()

    def close(self) -> None:
        self.flush()
        self._memmaps.clear()
        close = getattr(self.root, "close", None)
        if callable(close):
            close()


def safe_store_name(dest: NpydirDest, parent: str, name: str, *, array: bool = False) -> str:
    """Escaped name, falling back to a fully percent-encoded one if the store still refuses."""
    from .names import validate_name

    out = dest.out_name(parent, name)
    try:
        validate_name(out, array=array)
    except InvalidNameError:
        out = fully_escaped(name)[:200]
    return out
