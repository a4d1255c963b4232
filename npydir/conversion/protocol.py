"""The interfaces every conversion adapter implements: :class:`Source` and :class:`Destination`.

A *source* (an npydir store, zarr, HDF5, an in-memory mapping) lists its tree as :class:`Node`
records (groups before their members, members in sorted order) and reads row ranges of its
arrays.  A *destination* creates groups and preallocated arrays and writes row ranges into
them.  The engine (:mod:`npydir.conversion.engine`) talks to adapters only through these two
interfaces, so every direction shares the streaming, journalling, verification and Dask code;
:mod:`npydir.conversion.registry` maps a backend name to its adapter.  This module imports no
adapter: data flows from here to the adapters, to the registry, to the engine.

Who closes what: whoever opens a source or destination closes it (the engine closes both
when a conversion ends, also on an error or Ctrl-C); an adapter closes only the files it
opened itself, never objects it was handed (the arrays of a mapping, say).

tests/conversion/test_adapter_conformance.py checks this contract, as behaviour, on every
adapter.
"""

from __future__ import annotations

import abc
import os
import threading
from dataclasses import dataclass, field
from typing import Any, Iterator, TypeVar

import numpy as np

from ..errors import MemberNotFoundError


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


_S = TypeVar("_S", bound="Source")


class Source(abc.ABC):
    """What a conversion reads from.

    Attributes
    ----------
    kind : str
        The backend ("npydir", "zarr", "hdf5", "mapping").
    spec : tuple
        Picklable description from which :func:`npydir.conversion.registry.open_source`
        opens an equivalent source (in this process or on a Dask worker), which can then
        :meth:`read` any array without :meth:`nodes` having been listed.  An in-memory source
        has a spec that names it but cannot be reopened elsewhere.

    Threads: :meth:`nodes` runs in one thread, before any read.  After it, :meth:`read`,
    :meth:`read_into` and :meth:`copy_rows_to` may be called from several threads at once,
    for any rows.  :meth:`close` runs once no read is running.
    """

    kind: str = ""
    spec: tuple = ()

    @abc.abstractmethod
    def nodes(self) -> Iterator[Node]:
        """Every member of the tree, as :class:`Node` records.

        The root group (path "") comes first, each group before its members, the members of
        a group in sorted order.  An array the conversion cannot store (object references,
        ragged data, data outside the source) is a "refused" node with the reason; a soft or
        external link is a "link" node with its target, never followed.  Calling it again
        lists the same tree.
        """

    @abc.abstractmethod
    def read(self, path: str, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` of array ``path``, as stored in the source (the node's
        ``transform`` not yet applied); the whole value for a 0-d array.

        Raises
        ------
        MemberNotFoundError
            ``path`` is not an array of the source; the message names the source and the path.
        """

    def read_into(self, path: str, start: int, stop: int, out: np.ndarray) -> bool:
        """Decode rows ``start:stop`` of ``path`` straight into ``out`` (C-contiguous, the
        node's dtype and the rows' shape) if the backend can, and return True; return False
        when it cannot, and the caller falls back to :meth:`read` (``out`` may then hold
        anything).  A ``path`` that is not an array raises as in :meth:`read`, or gives
        False and the fallback raises."""
        return False

    def copy_rows_to(self, path: str, start: int, stop: int, fd: int, offset: int) -> bool:
        """Copy the stored bytes of rows ``start:stop`` into file ``fd`` at ``offset``
        without decoding, if the backend stores them as plain rows; False if not (anything
        already copied is overwritten by the caller's fallback).  A ``path`` that is not an
        array as for :meth:`read_into`."""
        return False

    def close(self) -> None:
        """Release what the source opened; calling it again does nothing."""

    def __enter__(self: _S) -> _S:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Destination(abc.ABC):
    """What a conversion writes into (for a conversion, its hidden partial result).

    The engine calls :meth:`group` for every group (parents first) and :meth:`array` for
    every array before any :meth:`write`, then writes every row once, then :meth:`flush`,
    then :meth:`close`.

    Resuming: a destination opened again on what an earlier, interrupted run left keeps its
    data: :meth:`array` on a path that holds an array of the node's shape and dtype keeps its
    rows (only the attributes are set again); a member of another shape, dtype or kind there
    is replaced.

    Threads: with ``concurrent_writes`` (a :class:`ConcurrentDestination`) several threads
    or processes write disjoint rows of one array at once; otherwise every call comes from
    one thread.

    Attributes
    ----------
    kind : str
        The backend ("npydir", "zarr", "hdf5").
    concurrent_writes : bool
        True for a :class:`ConcurrentDestination`.
    """

    kind: str = ""
    concurrent_writes: bool = False

    @abc.abstractmethod
    def check(self, node: Node) -> str | None:
        """Why array ``node`` (its ``dtype``) cannot be stored here, or None; no side effects.
        Every array it accepts comes back with the same dtype, shape and values."""

    @abc.abstractmethod
    def group(self, path: str, attrs: dict, dropped: dict | None = None) -> None:
        """Create group ``path`` ("" is the root; its parent exists) if missing and set
        ``attrs`` on it.  An attribute the backend cannot store is recorded in ``dropped``
        (key -> a one-line reason) where the backend can tell, else raised."""

    @abc.abstractmethod
    def array(self, path: str, node: Node, attrs: dict, dropped: dict | None = None) -> None:
        """Create array ``path`` with ``node.shape`` and ``node.dtype``, preallocated, and set
        ``attrs`` on it (``dropped`` as for :meth:`group`).  See the class docstring for an
        array already there."""

    @abc.abstractmethod
    def chunk_rows(self, path: str) -> int:
        """Rows per stored chunk of array ``path`` (1 where rows are not chunked), so writes
        can cover whole chunks."""

    @abc.abstractmethod
    def write(self, path: str, start: int, stop: int, block: np.ndarray) -> None:
        """Store ``block`` (the node's dtype, shape ``(stop - start,) + shape[1:]``; the
        value of a 0-d array) as rows ``start:stop`` of array ``path``.

        Raises
        ------
        OSError
            A failed write, naming the destination's file (errno kept: ENOSPC stays ENOSPC).
        """

    @abc.abstractmethod
    def flush(self, durable: bool = True) -> None:
        """Make everything written visible to a new reader of the files; with ``durable``,
        also on disk (survives a power cut)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release what the destination opened (no flush: the caller flushes when it wants
        the data kept); calling it again does nothing."""


class ConcurrentDestination(Destination):
    """A destination whose arrays are preallocated files of plain rows: reader threads and
    Dask workers write their rows straight into them, concurrently."""

    concurrent_writes = True

    @abc.abstractmethod
    def rows_file(self, path: str) -> Any:
        """The open row writer of array ``path`` (a
        :class:`~npydir.conversion.adapters.npydir_store.RowsFile`), shared by the threads
        writing it."""

    @abc.abstractmethod
    def filename(self, path: str) -> os.PathLike:
        """The file holding array ``path``, which a Dask worker opens to write its rows."""


def not_an_array(where: str, path: str, found: str = "nothing") -> MemberNotFoundError:
    """The error of :meth:`Source.read` for a ``path`` that is not an array of source
    ``where``; ``found`` says what is there."""
    return MemberNotFoundError(f"{where}: no array /{path} (found {found}); expected an "
                               "array the source listed")


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
