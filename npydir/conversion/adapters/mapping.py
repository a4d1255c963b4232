"""An in-memory nested Mapping as a conversion source, so ``save()`` shares the copy engine.

Values may be numpy arrays, anything ``np.asarray`` turns into one (lists, scalars), or lazy
arrays with ``shape``/``dtype`` and slicing (zarr arrays, h5py datasets, npydir arrays), which
are copied block by block.  ``.attrs`` on the mapping and on any sub-mapping become attributes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Iterator

import numpy as np

from ..protocol import Node, Source, join, not_an_array, select_rows
from ..values import is_vlen_string, max_string_length, plan_dtype


def _is_group(value: Any) -> bool:
    if isinstance(value, Mapping):
        return True
    # zarr groups are not registered Mappings but walk like one
    return hasattr(value, "keys") and hasattr(value, "__getitem__") and not hasattr(value, "shape")


def _is_lazy_array(value: Any) -> bool:
    return (not isinstance(value, np.ndarray) and hasattr(value, "shape")
            and hasattr(value, "dtype") and hasattr(value, "__getitem__"))


class MappingSource(Source):
    """A nested Mapping as a source; nothing to close (the mapping and its lazy arrays stay
    the caller's)."""

    kind = "mapping"

    def __init__(self, mapping: Any, name: str = "<mapping>"):
        self.mapping = mapping
        self.name = name
        self.spec = ("mapping", name)
        self._values: dict[str, Any] = {}

    def nodes(self) -> Iterator[Node]:
        yield from self._walk(self.mapping, "")

    def _walk(self, group: Any, path: str) -> Iterator[Node]:
        yield Node(path=path, kind="group", attrs=dict(getattr(group, "attrs", None) or {}))
        for key in sorted(group.keys(), key=str):
            if not isinstance(key, str):
                yield Node(path=join(path, str(key)), kind="refused",
                           reason=f"key {key!r} is not a string")
                continue
            value = group[key]
            child = join(path, key)
            if _is_group(value):
                yield from self._walk(value, child)
            else:
                yield self._array_node(value, child)

    def _array_node(self, value: Any, path: str) -> Node:
        if not _is_lazy_array(value):
            value = np.asarray(value)
        self._values[path] = value
        dtype = np.dtype(value.dtype)
        shape = tuple(int(s) for s in value.shape)
        chunks = getattr(value, "chunks", None)
        chunk_rows = int(chunks[0]) if shape and isinstance(chunks, tuple) and chunks else 1
        node = Node(path=path, kind="array", attrs=dict(getattr(value, "attrs", None) or {}),
                    shape=shape, dtype=dtype, src_dtype=str(dtype), chunk_rows=chunk_rows)
        if is_vlen_string(dtype) or (dtype.kind == "O" and shape and all(
                isinstance(v, str) for v in np.asarray(value).ravel().tolist())):
            width = max_string_length(np.asarray(value))
            node.dtype = np.dtype(f"<U{max(width, 1)}")
            node.transform = ("str", node.dtype.str)
            return node
        _, reason = plan_dtype(dtype, dest="npydir")
        if reason:
            node.kind, node.reason = "refused", reason
        return node

    def _value(self, path: str) -> Any:
        value = self._values.get(path)
        if value is None:  # not listed by nodes(): look it up
            value = self.mapping
            for part in path.split("/"):
                if not _is_group(value) or part not in value:
                    raise not_an_array(self.name, path)
                value = value[part]
            if _is_group(value):
                raise not_an_array(self.name, path, "a group")
            value = self._values[path] = value if _is_lazy_array(value) else np.asarray(value)
        return value

    def read(self, path: str, start: int, stop: int) -> np.ndarray:
        return np.asarray(select_rows(self._value(path), start, stop))
