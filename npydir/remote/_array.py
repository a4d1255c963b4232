"""Arrays of a remote store: :class:`RemoteArray`, read by byte ranges."""

from __future__ import annotations

import operator
from collections.abc import Iterator
from math import prod
from typing import Any

import numpy as np

from ..errors import ReadOnlyError
from ..kernel.windows import gather_windows
from ..store.layout import ARRAY_SUFFIX, ATTRS_SUFFIX
from . import _nodes
from ._gather import gather_remote


class RemoteArray(_nodes._RemoteNode, kind="array"):
    """An array of a remote store: shape, dtype and attrs of the local API, data by ranges.

    ``a[i:j]``, ``a[i]``, ``a[[i, j, k]]`` (and any further index on the other axes) fetch
    only the rows asked for, as fresh in-memory arrays.  ``np.asarray(a)`` downloads the whole
    array only up to :data:`npydir.remote.MAX_ASARRAY_BYTES` (64 MiB) and refuses larger
    ones; use slices, :func:`npydir.gather_windows` / :class:`npydir.Batches`, or copy the
    store with :func:`npydir.convert`.  Pickles by URL, ``storage_options`` and key.
    """

    #: tells Batches to take its remote branch
    _npydir_remote = True

    def _npydir_gather_windows(self, starts: Any, window: int, **options: Any) -> np.ndarray:
        """What :func:`npydir.gather_windows` calls for an array that is not in memory: the
        windows by byte-range requests (the kernel knows nothing of remote stores)."""
        return gather_remote(self, starts, window, **options)

    def __init__(
        self,
        store: _nodes.RemoteStore,
        parts: tuple[str, ...],
        row_shape: tuple[int, ...] | None = None,
    ) -> None:
        self._store = store
        self._parts = tuple(parts)
        self._rel = "/".join(parts) + ARRAY_SUFFIX
        self._row_shape = row_shape  # a reshape()d view: same rows, other per-row shape

    def __repr__(self) -> str:
        try:
            desc = f"shape {self.shape} {self.dtype}"
        except Exception as exc:  # noqa: BLE001 - repr must not raise
            desc = f"unreadable: {exc}"
        return f"<npydir.RemoteArray {self.name!r} {desc} in {self._store.url!r}>"

    def __reduce__(self) -> tuple:
        if self._row_shape is not None:
            return (_reshaped, (self._base(), self.shape))
        return (
            _nodes._reopen,
            (self._store.url, self._store.client.storage_options, self.path, "array"),
        )

    def _base(self) -> RemoteArray:
        return RemoteArray(self._store, self._parts)

    # ---------------------------------------------------------------- header

    def _hdr(self) -> Any:
        return self._store.header(self._parts)

    @property
    def shape(self) -> tuple[int, ...]:
        shape = self._hdr()[0].shape
        if self._row_shape is not None:
            return (shape[0], *self._row_shape)
        return shape

    @property
    def dtype(self) -> np.dtype:
        return self._hdr()[0].dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    @property
    def maxshape(self) -> tuple[int | None, ...]:
        return (None, *self.shape[1:])

    @property
    def filename(self) -> str:
        return self.url

    @property
    def attrs(self) -> _nodes.RemoteAttrs:
        rel = "/".join(self._parts[:-1] + (self.basename + ATTRS_SUFFIX,))
        return _nodes.RemoteAttrs(lambda: self._store.json_attrs(rel), f"array {self._where()}")

    def __len__(self) -> int:
        shape = self.shape
        if not shape:
            raise TypeError(f"len() of a 0-d array ({self._where()})")
        return shape[0]

    def reshape(self, *shape: Any, order: str = "C", copy: bool | None = None) -> RemoteArray:
        """The same rows with another per-row shape (no data is read); the first axis stays.

        Only what ``np.reshape(a, (len(a), -1))`` needs: C order, ``shape[0] == len(a)``.
        """
        if len(shape) == 1 and not isinstance(shape[0], (int, np.integer)):
            shape = tuple(shape[0])
        own = self.shape
        if order != "C" or not shape or not own:
            raise ValueError(f"{self._where()}: only C-order reshapes keeping axis 0 are supported")
        rest = [int(v) for v in shape[1:]]
        row = prod(own[1:])
        if rest.count(-1) == 1:
            known = prod(v for v in rest if v != -1)
            rest[rest.index(-1)] = row // known if known else 0
        if int(shape[0]) not in (own[0], -1) or prod(rest) != row:
            raise ValueError(
                f"{self._where()}: cannot reshape {own} to {shape} (rows must stay rows)"
            )
        return RemoteArray(self._store, self._parts, tuple(rest))

    # ---------------------------------------------------------------- data

    def _row_bytes(self) -> int:
        return prod(self.shape[1:]) * self.dtype.itemsize

    def _read_rows(self, lo: int, hi: int) -> np.ndarray:
        """Rows ``[lo, hi)`` as a fresh array (one range request)."""
        header, meta = self._hdr()
        shape = self.shape
        if hi <= lo:
            return np.empty((0, *shape[1:]), self.dtype)
        row = self._row_bytes()
        if row == 0:
            return np.empty((hi - lo, *shape[1:]), self.dtype)
        start = header.offset + lo * row
        _, data = self._store.client.read(self._rel, start, start + (hi - lo) * row, meta)
        out = np.empty((hi - lo, *shape[1:]), self.dtype)
        np.frombuffer(out, np.uint8)[:] = np.frombuffer(data, np.uint8)
        return out

    def _take_rows(self, rows: np.ndarray) -> np.ndarray:
        """Rows ``rows`` (any order, repeats allowed), adjacent ones in one request."""
        shape = self.shape
        flat = self if len(shape) == 2 else self.reshape(shape[0], -1)
        got = gather_windows(flat, rows, 1)
        return got.reshape((len(rows), *shape[1:]))

    def __getitem__(self, key: Any) -> Any:
        shape = self.shape
        if not shape:  # 0-d: the whole (tiny) array
            return self._read_all()[key]
        if not isinstance(key, tuple):
            key = (key,)
        if any(k is None for k in key) or sum(k is Ellipsis for k in key) > 1:
            if self.nbytes > _nodes.MAX_ASARRAY_BYTES:
                self._refuse_all()
            return self._read_all()[key]
        if key and key[0] is Ellipsis:
            first, rest = slice(None), key if len(key) > 1 else ()
        elif key:
            first, rest = key[0], key[1:]
        else:
            first, rest = slice(None), ()
        n = shape[0]
        if isinstance(first, slice):
            start, stop, step = first.indices(n)
            if step == 1:
                block = self._read_rows(start, max(start, stop))
            elif step > 0 and step <= 2:
                block = self._read_rows(start, max(start, stop))[::step]
            else:
                block = self._take_rows(np.arange(start, stop, step, dtype=np.int64))
            # the tuple is spelled out: mypy reads a starred item in [] as 3.11 syntax
            return block[(slice(None),) + tuple(rest)] if rest else block
        if isinstance(first, (int, np.integer)) and not isinstance(first, bool):
            i = operator.index(first)
            if not -n <= i < n:
                raise IndexError(
                    f"index {i} is out of bounds for axis 0 with size {n} ({self._where()})"
                )
            i %= n
            row = self._read_rows(i, i + 1)[0]
            return row[rest] if rest else row
        idx = np.asarray(first)
        if idx.dtype == bool:
            if idx.shape != (n,):
                raise IndexError(f"boolean index of shape {idx.shape} does not match axis 0 ({n})")
            idx = np.flatnonzero(idx)
        if idx.dtype.kind not in "iu":
            raise IndexError(f"{self._where()}: unsupported index {first!r}")
        flat = idx.reshape(-1).astype(np.int64)
        if flat.size and (flat.min() < -n or flat.max() >= n):
            raise IndexError(f"index out of bounds for axis 0 with size {n} ({self._where()})")
        flat = np.where(flat < 0, flat + n, flat)
        block = self._take_rows(flat).reshape((*idx.shape, *shape[1:]))
        if rest:
            return block[(slice(None),) * idx.ndim + tuple(rest)]
        return block

    def _refuse_all(self) -> Any:
        raise MemoryError(
            f"refusing to download all of {self.url} ({self.nbytes:,} bytes, shape "
            f"{self.shape} {self.dtype}): more than npydir.remote.MAX_ASARRAY_BYTES "
            f"({_nodes.MAX_ASARRAY_BYTES:,}); read slices a[i:j], windows with "
            f"npydir.gather_windows/Batches, or copy the store with npydir.convert()"
        )

    def _read_all(self) -> np.ndarray:
        shape = self.shape
        if not shape:
            header, meta = self._hdr()
            _, data = self._store.client.read(
                self._rel, header.offset, header.offset + self.dtype.itemsize, meta
            )
            return np.frombuffer(bytes(data), self.dtype).reshape(()).copy()
        return self._read_rows(0, shape[0])

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        if copy is False:
            raise ValueError(f"{self._where()}: a remote array cannot be viewed without a copy")
        if self.nbytes > _nodes.MAX_ASARRAY_BYTES:
            self._refuse_all()
        data = self._read_all()
        return data if dtype is None else data.astype(dtype)

    def read(self) -> np.ndarray:
        """The whole array in memory, downloaded whatever its size."""
        return self._read_all()

    def __iter__(self) -> Iterator[Any]:
        if not self.shape:
            raise TypeError(f"iteration over a 0-d array ({self._where()})")
        return iter(np.asarray(self))

    # ---------------------------------------------------------------- writes: refused

    def __setitem__(self, key: Any, value: Any) -> None:
        raise self._refuse("write to an array")

    def append(self, block: Any, *, sync: bool = True) -> None:
        raise self._refuse("append to an array")

    def resize(self, size: Any, axis: int | None = None) -> None:
        raise self._refuse("resize an array")

    def flush(self) -> None:
        return None


def _reshaped(base: RemoteArray, shape: tuple[int, ...]) -> RemoteArray:
    return base.reshape(shape)


__all__ = ["RemoteArray", "ReadOnlyError"]
