"""Arrays of a store: :class:`Array`, a thin object over a memory map of one ``.npy`` file.

Nothing is read until a property or the data is touched; then the header (for ``shape`` and
``dtype``) or the whole file (a memory map) is opened, once.  Writes go through the map
(``a[i:j] = v``) or through :mod:`npydir.store.npyfile` (``append``, ``resize``), which keep the
file a valid ``.npy`` at every moment (docs/design.md, section 2).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np

from . import npyfile
from .node import AttributeManager, _Node, _reopen, _Store
from ..errors import FormatError, MemberNotFoundError
from .layout import ARRAY_SUFFIX, ATTRS_SUFFIX

__all__ = ["Array"]


class Array(_Node, kind="array"):
    """An array of a store: a thin object over a memory map of its ``.npy`` file.

    ``a[...]`` returns numpy views of the map (no copy); ``np.asarray(a)`` is the map.  Writes
    (``a[i:j] = v``, :meth:`append`, :meth:`resize`) need a write mode.  Pickling stores the
    store root and path only; the unpickled array reopens the file (read-only) on first use.
    """

    def __init__(self, store: _Store, parts: tuple[str, ...]) -> None:
        self._store = store
        self._parts = tuple(parts)
        d = store.dir_of(self._parts)
        self._file = d.with_name(d.name + ARRAY_SUFFIX)
        self._header: npyfile.Header | None = None
        self._mm: np.ndarray | None = None
        self._detached = False
        self._dirty = False  # appended/resized without fsync (see flush)

    # ------------------------------------------------------------------ loading

    def _drop(self) -> None:
        self._mm = None
        self._header = None
        self._detached = True

    def _check(self) -> None:
        self._store.check_open()
        if self._detached:
            raise MemberNotFoundError(f"array {self._where()} was deleted or moved")

    def _directory(self) -> contextlib.AbstractContextManager[int]:
        """This array's group directory, opened and checked to be inside the store.

        Every open of the ``.npy`` file goes through it (``dir_fd``), so a file or directory
        swapped for a link after the lookup can never lead a read or write out of the store.
        """
        return self._store.directory(self._parts[:-1], f"array {self._where()}")

    def _hdr(self) -> npyfile.Header:
        if self._header is None:
            self._check()
            try:
                with self._directory() as dfd:
                    self._header = self._retry(
                        lambda: npyfile.read_header_path(self._file, dir_fd=dfd)
                    )
            except FileNotFoundError:
                raise MemberNotFoundError(
                    f"array {self._where()} no longer exists ({self._file})"
                ) from None
        return self._header

    def _retry(self, read: Callable[[], Any]) -> Any:
        """Run ``read``; in a read-only store, once more after a FormatError.

        A writer in another process rewrites the header in place while it appends; a reader
        that happens to read those bytes mid-write sees a garbled header once, never twice.
        A writer (holding the lock) has no one to race with and fails at once.
        """
        try:
            return read()
        except npyfile.UnsupportedDTypeError:
            raise
        except FormatError:
            if not self._store.readonly:
                raise
            return read()

    def _data(self) -> np.ndarray:
        if self._mm is None:
            self._check()
            mode: Literal["r", "r+"] = "r" if self._store.readonly else "r+"
            try:
                with self._directory() as dfd:
                    try:
                        self._mm, self._header = npyfile.open_memmap(
                            self._file, mode, self._header, dir_fd=dfd
                        )
                    except FormatError:
                        if not self._store.readonly or self._header is None:
                            raise
                        self._header = None  # maybe read mid-append: read the header afresh
                        self._mm, self._header = self._retry(
                            lambda: npyfile.open_memmap(self._file, mode, dir_fd=dfd)
                        )
            except FileNotFoundError:
                raise MemberNotFoundError(
                    f"array {self._where()} no longer exists ({self._file})"
                ) from None
        return self._mm

    # ------------------------------------------------------------------ metadata

    @property
    def filename(self) -> Path:
        """The ``.npy`` file."""
        return self._file

    @property
    def shape(self) -> tuple[int, ...]:
        return self._hdr().shape

    @property
    def dtype(self) -> np.dtype:
        return self._hdr().dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self._hdr().nbytes

    @property
    def maxshape(self) -> tuple[int | None, ...]:
        """As h5py: axis 0 is unlimited (arrays grow by :meth:`append`)."""
        return (None,) + self.shape[1:] if self.shape else ()

    chunks = None

    @property
    def attrs(self) -> AttributeManager:
        """Array attributes, persisted in ``<name>.attrs.json`` beside the ``.npy`` file."""
        return AttributeManager(
            self._store,
            self._file.with_name(self.basename + ATTRS_SUFFIX),
            f"array {self._where()}",
            check=self._check,
        )

    def __len__(self) -> int:
        shape = self.shape
        if not shape:
            raise TypeError(f"len() of a 0-d array ({self._where()})")
        return shape[0]

    def __repr__(self) -> str:
        if self._store.closed:
            return f"<npydir.Array {self.name!r} (closed store)>"
        try:
            desc = f"shape {self.shape} {self.dtype}"
        except Exception as exc:
            desc = f"unreadable: {exc}"
        where = f"in {str(self._store.root)!r} (mode {self._store.mode!r})"
        return f"<npydir.Array {self.name!r} {desc} {where}>"

    # ------------------------------------------------------------------ data

    def __getitem__(self, key: Any) -> Any:
        return self._data()[key]

    def __setitem__(self, key: Any, value: Any) -> None:
        self._store.check_writable(f"write to array {self.name!r}")
        self._check()
        self._data()[key] = value
        self._store.dirty.add(self)  # msync at close even if the caller drops this object

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        data = self._data()
        if dtype is not None and np.dtype(dtype) != data.dtype:
            if copy is False:
                raise ValueError(
                    f"array {self.name!r}: converting {data.dtype} to {dtype} needs a copy"
                )
            return data.astype(dtype)
        return np.array(data, copy=True) if copy else data

    def __iter__(self) -> Iterator[Any]:
        if not self.shape:
            raise TypeError(f"iteration over a 0-d array ({self._where()})")
        return iter(self._data())

    def read(self) -> np.ndarray:
        """The whole array as an in-memory copy."""
        return np.array(self._data(), copy=True)

    def flush(self) -> None:
        """Make writes durable: msync the map, fsync the file after unsynced appends/resizes.

        Closing a store opened with ``sync=True`` flushes every array it wrote.
        """
        if self._mm is not None and isinstance(self._mm, np.memmap):
            self._mm.flush()
        if self._dirty:
            with self._directory() as dfd:
                npyfile.fsync_file(self._file, dir_fd=dfd)
            self._dirty = False
        self._store.dirty.discard(self)

    def append(self, block: Any, *, sync: bool = True) -> None:
        """Append rows along axis 0, in place.

        Parameters
        ----------
        block : array_like
            Rows of shape ``shape[1:]``: an array of shape ``(k,) + shape[1:]``, or one row of
            shape ``shape[1:]``.  numpy arrays are cast with ``casting="safe"``; Python sequences
            and scalars are converted to the array's dtype as numpy assignment does.
        sync : bool
            fsync data then header (the crash-safe default).  ``False`` skips both fsyncs (faster
            for many small appends; the order of writes is unchanged).

        Notes
        -----
        This Array sees the new length immediately; readers that opened the store before see it
        after reopening.  Views returned earlier keep their old length.
        """
        self._store.check_writable(f"append to array {self.name!r}")
        self._check()
        header = self._hdr()
        if not header.shape:
            raise ValueError(f"cannot append to 0-d array {self._where()}")
        if isinstance(block, Array):
            block = block[...]
        if isinstance(block, (np.ndarray, np.generic)):
            block = np.asarray(block)
            if not np.can_cast(block.dtype, header.dtype, casting="safe"):
                raise TypeError(
                    f"append to {self.name!r}: cannot cast {block.dtype} to {header.dtype} safely "
                    "(cast explicitly with .astype)"
                )
            block = block.astype(header.dtype, copy=False)
        else:
            try:
                block = np.asarray(block, dtype=header.dtype)
            except (TypeError, ValueError, OverflowError) as exc:
                raise TypeError(
                    f"append to {self.name!r}: cannot convert block to {header.dtype}: {exc}"
                ) from None
        row = header.shape[1:]
        if block.shape == row:
            block = block.reshape((1,) + row)
        if block.ndim != len(header.shape) or block.shape[1:] != row:
            expected = f"(k, {', '.join(map(str, row))})" if row else "(k,)"
            raise ValueError(
                f"append to {self.name!r}: block of shape {block.shape} does not fit rows of "
                f"shape {row} (expected {expected} or {row})"
            )
        synced = sync and self._store.sync
        self._mm = None  # the map of the old length must not be written past its end
        # we hold the writer lock, so the header we know is the file's header
        with self._directory() as dfd:
            self._header = npyfile.append_rows(
                self._file, block, sync=synced, header=header, dir_fd=dfd
            )
        if not synced:
            self._dirty = True
            self._store.dirty.add(self)

    def resize(self, size: Any, axis: int | None = None) -> None:
        """Change the length of axis 0 in place (h5py-like); new rows are zero.

        Shrinking discards the rows past ``size``.
        """
        self._store.check_writable(f"resize array {self.name!r}")
        self._check()
        shape = self.shape
        if axis not in (None, 0):
            raise ValueError(f"resize {self.name!r}: only axis 0 can change")
        if isinstance(size, (int, np.integer)):
            n = int(size)
        else:
            new = _as_shape(size)
            if new[1:] != shape[1:] or len(new) != len(shape):
                raise ValueError(
                    f"resize {self.name!r}: only axis 0 can change (shape {shape}, asked {new})"
                )
            n = new[0]
        if n < 0:
            raise ValueError(f"resize {self.name!r}: negative length {n}")
        self._mm = None
        with self._directory() as dfd:
            self._header = npyfile.resize_rows(self._file, n, sync=self._store.sync, dir_fd=dfd)
        if not self._store.sync:
            self._dirty = True
            self._store.dirty.add(self)

    # ------------------------------------------------------------------ pickling

    def __reduce__(self) -> tuple:
        # the callable pickles name is npydir.group._reopen (see node._reopen)
        return (_reopen, (str(self._store.root), self.path, "array"))


def _as_shape(shape: Any) -> tuple[int, ...]:
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    try:
        out = tuple(int(n) for n in shape)
    except TypeError:
        raise TypeError(f"shape must be an int or a tuple of ints, got {shape!r}") from None
    if any(n < 0 for n in out):
        raise ValueError(f"negative dimension in shape {out}")
    return out
