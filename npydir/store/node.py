"""What every member of an open store shares: the store's state, the node base, attributes.

:class:`_Store` is the state of one opened store (root, mode, lock, the arrays handed out);
:class:`_Node` is the common base of :class:`~npydir.store.group.Group` and
:class:`~npydir.store.array.Array` (paths, names, equality); :class:`AttributeManager` is the
``.attrs`` mapping of either.  They live apart from ``group.py`` and ``array.py`` because both
need them and ``group.py`` imports ``array.py``.

A node reaches the other kind of node (an array its parent group, anything its root) through
the classes registered by kind (``class Group(_Node, kind="group")``), and unpickles through
:func:`_reopen`: so this module needs neither ``group.py`` nor ``array.py``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import weakref
from collections.abc import Callable, ItemsView, Iterator, KeysView, MutableMapping, ValuesView
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from . import fsutil
from .attrs import (
    decode_attrs,
    decode_legacy_attrs,
    read_attrs_bytes,
    read_legacy_bytes,
    write_attrs_file,
    write_attrs_pair,
)
from ..errors import (
    AttributeEncodingError,
    LockError,
    MemberNotFoundError,
    ReadOnlyError,
    StoreClosedError,
)
from .lock import StoreLock

if TYPE_CHECKING:
    from .array import Array
    from .group import Group

__all__ = ["AttributeManager"]


class _Store:
    """State shared by every Group/Array of one opened store."""

    def __init__(
        self, root: Path, mode: str, *, das_compat: bool, portable: bool, sync: bool = True
    ) -> None:
        self.root = root
        self.real = os.path.realpath(root)
        self.dev: int | None = None  # st_dev of the store, read on first use
        self.mode = mode
        self.readonly = mode == "r"
        self.das_compat = das_compat
        self.portable = portable
        self.sync = sync
        self.closed = False
        #: the process that opened the store: only it holds the writer lock (see check_writable)
        self.pid = os.getpid()
        self.lock: StoreLock | None = None
        self.arrays: weakref.WeakValueDictionary[tuple[str, ...], Array] = (
            weakref.WeakValueDictionary()
        )
        #: arrays written without fsync: kept alive until close() makes them durable
        self.dirty: set[Array] = set()

    def check_open(self) -> None:
        if self.closed:
            raise StoreClosedError(f"store {self.root} is closed")

    def check_writable(self, what: str) -> None:
        self.check_open()
        if self.readonly:
            raise ReadOnlyError(
                f"store {self.root} is open read-only (mode 'r'): cannot {what}; "
                "open it with mode 'r+' or 'a' to write"
            )
        if os.getpid() != self.pid:
            # A forked child shares the parent's lock but not its cached shapes: an append here
            # would be overwritten by the parent's next append (and attrs updates lost).
            raise LockError(
                f"store {self.root} was opened for writing by process {self.pid}; this forked "
                f"child (pid {os.getpid()}) cannot {what} through that handle, since only the "
                "opening process may write: write from the parent, or open the store in the "
                "child after the parent closed it"
            )

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for arr in set(self.arrays.values()) | self.dirty:
            if not self.readonly and self.sync:
                try:  # writes through maps and unsynced appends are durable once closed
                    arr.flush()
                except OSError:  # a deleted/moved file: nothing left to make durable
                    pass
            arr._drop()
        self.dirty.clear()
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def dir_of(self, parts: tuple[str, ...]) -> Path:
        return self.root.joinpath(*parts)

    @contextlib.contextmanager
    def directory(self, parts: tuple[str, ...], what: str = "") -> Iterator[fsutil.DirFd]:
        """The group directory ``parts``, opened and checked to be inside the store.

        Every file of a group or array is then opened relative to this descriptor: a directory
        swapped for a link after the lookup is either refused here (it leads out of the store)
        or not seen at all.  ``what`` names the member in the error when the directory is gone.

        Raises
        ------
        MemberNotFoundError
            The directory no longer exists.
        PathEscapeError
            It resolves outside the store (or onto another file system).
        FormatError
            It is not a directory any more.
        """
        path = self.dir_of(parts)
        if self.dev is None:
            self.dev = os.stat(self.real).st_dev
        try:
            fd = fsutil.open_dir(path, root=self.real, root_dev=self.dev)
        except FileNotFoundError:
            what = what or f"group {'/' + '/'.join(parts)!r} of store {self.root}"
            raise MemberNotFoundError(f"{what} no longer exists ({path})") from None
        try:
            yield fd
        finally:
            os.close(fd)


class AttributeManager(MutableMapping):
    """The attributes of a group or array: a dict persisted as JSON on every change.

    Every read -- ``attrs[k]``, ``get``, ``in``, ``len``, iteration, ``keys()``, ``items()``,
    ``values()``, ``dict(attrs)``, ``asdict()`` -- comes from one snapshot of the file: it is
    read once (writers replace it atomically, so that is one complete version) and parsed again
    only when its bytes changed.  A reader so sees a writer's updates, never a mix of two
    versions.  ``dict(attrs)`` (and ``{**attrs}``, ``d.update(attrs)``) asks ``keys()`` and then
    each value: those values come from the snapshot ``keys()`` read.  Values round-trip as the
    table in :mod:`npydir.store.attrs` says.
    """

    def __init__(
        self,
        store: _Store,
        path: Path,
        owner: str,
        legacy: Path | None = None,
        check: Callable[[], None] | None = None,
    ) -> None:
        self._store = store
        self._check = check or store.check_open  # an array's attrs die with the array
        self._path = path
        self._owner = owner
        self._legacy = legacy
        #: (the bytes of attrs.json, of attrs.npy) and what they parse to: replaced as one object
        self._snap: tuple[tuple[bytes | None, bytes | None], dict[str, Any]] | None = None
        #: thread id -> the snapshot keys() handed to a C-level consumer such as dict(): see _pin
        self._pins: dict[int, tuple] = {}

    def _directory(self) -> contextlib.AbstractContextManager[fsutil.DirFd]:
        """The directory holding the attrs files, opened and checked (see _Store.directory)."""
        return self._store.directory(self._dir_parts, self._owner)

    @property
    def _dir_parts(self) -> tuple[str, ...]:
        rel = self._path.parent.relative_to(self._store.root)
        return tuple(rel.parts)

    def _load(self) -> dict[str, Any]:
        """The attributes as the file holds them now: one read, parsed only if it changed.

        The returned dict is never mutated (writes build a new one), so views of it stay one
        snapshot.
        """
        self._check()
        self._pins.pop(threading.get_ident(), None)
        with self._directory() as dfd:  # files read in the checked directory, never by path
            raw = read_attrs_bytes(self._path, dir_fd=dfd)
            legacy = None
            if raw is None and self._legacy is not None:
                legacy = read_legacy_bytes(self._legacy, dir_fd=dfd)
        snap = self._snap
        if snap is not None and snap[0] == (raw, legacy):
            return snap[1]
        if raw is not None:
            data = decode_attrs(raw, self._path)
        elif legacy is not None:
            # legacy bytes are only ever read from self._legacy
            data = decode_legacy_attrs(legacy, self._legacy)  # type: ignore[arg-type]
        else:
            data = {}
        self._snap = ((raw, legacy), data)
        return data

    def _pin(self, data: dict[str, Any]) -> None:
        """Remember ``data`` for the ``len(data)`` lookups the caller's current instruction
        makes next (``dict(attrs)``: ``keys()``, then each key from C, all at one bytecode
        offset of one frame).  Any other access ends the pin, so it never serves a later read.
        """
        frame = sys._getframe(2)  # the code that called keys()
        self._pins[threading.get_ident()] = (
            id(frame), frame.f_code, frame.f_lasti, data, [len(data)]
        )

    def _from_pin(self) -> dict[str, Any] | None:
        tid = threading.get_ident()
        pinned = self._pins.pop(tid, None)
        if pinned is None:
            return None
        fid, code, lasti, data, left = pinned
        frame = sys._getframe(2)  # the code that called __getitem__
        if fid != id(frame) or code is not frame.f_code or lasti != frame.f_lasti:
            return None
        left[0] -= 1
        if left[0] > 0:
            self._pins[tid] = pinned
        return data

    def _write(self, data: dict[str, Any]) -> None:
        legacy = self._legacy
        with self._directory() as dfd:
            if legacy is not None and (
                self._store.das_compat or fsutil.lexists(legacy, dir_fd=dfd)
            ):
                # DAS's attrs.npy, derived from attrs.json (see write_attrs_pair for the order)
                write_attrs_pair(self._path, legacy, data, sync=self._store.sync, dir_fd=dfd)
            else:
                write_attrs_file(self._path, data, sync=self._store.sync, dir_fd=dfd)
        self._snap = None
        self._pins.clear()

    def __getitem__(self, key: str) -> Any:
        data = self._from_pin()
        if data is None:
            data = self._load()
        try:
            return data[key]
        except KeyError:
            raise MemberNotFoundError(f"no attribute {key!r} in {self._owner}") from None

    def get(self, key: str, default: Any = None) -> Any:
        return self._load().get(key, default)

    def keys(self) -> KeysView[str]:
        data = self._load()
        self._pin(data)
        return data.keys()

    def items(self) -> ItemsView[str, Any]:
        return self._load().items()

    def values(self) -> ValuesView[Any]:
        return self._load().values()

    def __setitem__(self, key: str, value: Any) -> None:
        self.update({key: value})

    def update(self, other: Any = (), /, **kwargs: Any) -> None:  # one write for many keys
        """Set several attributes with one write."""
        self._store.check_writable(f"set attributes of {self._owner}")
        self._check()
        new = dict(other.items() if hasattr(other, "items") else other, **kwargs)
        for k in new:
            if not isinstance(k, str):
                raise AttributeEncodingError(
                    f"attribute names must be str, got {type(k).__name__} {k!r}"
                )
        data = dict(self._load())
        data.update(new)
        self._write(data)  # encodes everything first; a bad value raises before anything is written

    def __delitem__(self, key: str) -> None:
        self._store.check_writable(f"delete attributes of {self._owner}")
        self._check()
        data = dict(self._load())
        if key not in data:
            raise MemberNotFoundError(f"no attribute {key!r} in {self._owner}")
        del data[key]
        self._write(data)

    def clear(self) -> None:
        self._store.check_writable(f"delete attributes of {self._owner}")
        self._check()
        self._write({})

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._load()))

    def __len__(self) -> int:
        return len(self._load())

    def __contains__(self, key: object) -> bool:
        return key in self._load()

    def asdict(self) -> dict[str, Any]:
        """A plain dict copy of the attributes."""
        return dict(self._load())

    def __repr__(self) -> str:
        return f"<Attributes of {self._owner}: {self._load()!r}>"


class _Node:
    """Base of the nodes of a store; each concrete class registers itself by ``kind``.

    ``class Group(_Node, kind="group")`` puts Group into :attr:`_kinds` of the nearest base
    that defines its own ``_kinds`` (the local store's here; remote nodes keep theirs), so a
    node builds its parent or root, and :func:`_reopen` a node of either kind, by kind alone.
    """

    _store: _Store
    _parts: tuple[str, ...]
    #: kind ("group", "array") -> the class of that kind, filled as the classes are defined
    _kinds: ClassVar[dict[str, type[_Node]]] = {}

    def __init_subclass__(cls, kind: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if kind is not None:
            cls._kinds[kind] = cls

    @property
    def path(self) -> str:
        """Store-relative path, ``"train/x"``; ``""`` for the root."""
        return "/".join(self._parts)

    @property
    def name(self) -> str:
        """h5py-style absolute name, ``"/train/x"``; ``"/"`` for the root."""
        return "/" + self.path

    @property
    def basename(self) -> str:
        """Last component of the path (``""`` for the root)."""
        return self._parts[-1] if self._parts else ""

    @property
    def mode(self) -> str:
        return self._store.mode

    @property
    def readonly(self) -> bool:
        return self._store.readonly

    @property
    def file(self) -> Group:
        """The root group of the store (h5py's ``.file``)."""
        return self._kinds["group"](self._store, ())  # type: ignore[return-value, call-arg]

    @property
    def parent(self) -> Group:
        return self._kinds["group"](self._store, self._parts[:-1])  # type: ignore[return-value, call-arg]

    @property
    def store_path(self) -> Path:
        """The store's root directory."""
        return self._store.root

    def _where(self) -> str:
        return f"{self.name!r} of store {self._store.root}"

    def __eq__(self, other: object) -> bool:
        return (
            type(other) is type(self)
            and other._store.real == self._store.real
            and other._parts == self._parts
        )

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._store.real, self._parts))


def _reopen(root: str, path: str, kind: str) -> Group | Array:
    """Unpickle a Group/Array: a fresh read-only store, nothing read until first use."""
    store = _Store(Path(root), "r", das_compat=False, portable=False)
    parts = tuple(p for p in path.split("/") if p)
    node = _Node._kinds[kind](store, parts)  # type: ignore[call-arg]
    if kind == "array":
        store.arrays[parts] = node  # type: ignore[assignment]
    return node  # type: ignore[return-value]


# Every pickle of a Group or Array names this function npydir.group._reopen: npydir._moved
# resolves that module name to npydir.store.group, which re-exports it.  The name pickles carry
# so stays one, whichever module defines the function, and every pickle npydir wrote loads.
_reopen.__module__ = "npydir.group"
