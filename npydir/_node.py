"""What every member of an open store shares: the store's state, the node base, attributes.

:class:`_Store` is the state of one opened store (root, mode, lock, the arrays handed out);
:class:`_Node` is the common base of :class:`~npydir.group.Group` and
:class:`~npydir.array.Array` (paths, names, equality); :class:`AttributeManager` is the
``.attrs`` mapping of either.  They live apart from ``group.py`` and ``array.py`` because both
need them and ``group.py`` imports ``array.py``.
"""

from __future__ import annotations

import contextlib
import os
import stat
import weakref
from collections.abc import Callable, Iterator, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _fsutil
from .attrs import read_attrs_file, read_legacy_attrs, write_attrs_file, write_attrs_pair
from .errors import (
    AttributeEncodingError,
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
    def directory(self, parts: tuple[str, ...], what: str = "") -> Iterator[_fsutil.DirFd]:
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
            fd = _fsutil.open_dir(path, root=self.real, root_dev=self.dev)
        except FileNotFoundError:
            what = what or f"group {'/' + '/'.join(parts)!r} of store {self.root}"
            raise MemberNotFoundError(f"{what} no longer exists ({path})") from None
        try:
            yield fd
        finally:
            os.close(fd)


class AttributeManager(MutableMapping):
    """The attributes of a group or array: a dict persisted as JSON on every change.

    Reading re-reads the file when it changed on disk (one ``stat`` per access), so a reader sees
    a writer's updates.  Values round-trip as the table in :mod:`npydir.attrs` says.
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
        self._cache: dict[str, Any] | None = None
        self._stamp: tuple | None = None

    def _directory(self) -> contextlib.AbstractContextManager[_fsutil.DirFd]:
        """The directory holding the attrs files, opened and checked (see _Store.directory)."""
        return self._store.directory(self._dir_parts, self._owner)

    @property
    def _dir_parts(self) -> tuple[str, ...]:
        rel = self._path.parent.relative_to(self._store.root)
        return tuple(rel.parts)

    def _stat(self, dfd: int | None = None) -> tuple:
        """(inode, mtime, size) of the attrs file and of the legacy one (None: missing).

        With ``dfd`` they are looked up in that checked directory; without, by path: only to
        see whether the cache is still current (nothing is read by path).
        """

        def stamp(p: Path | None) -> tuple | None:
            if p is None:
                return None
            try:
                st = os.stat(p.name, dir_fd=dfd) if dfd is not None else os.stat(p)
            except (FileNotFoundError, NotADirectoryError):
                return None
            if not stat.S_ISREG(st.st_mode):  # a FIFO/device is refused when it is opened
                return (st.st_ino, st.st_mode, 0, 0)
            return (st.st_ino, st.st_mtime_ns, st.st_size)

        return (stamp(self._path), stamp(self._legacy))

    def _load(self) -> dict[str, Any]:
        self._check()
        if self._cache is not None and self._stat() == self._stamp:
            return self._cache  # unchanged on disk: one stat, no open
        with self._directory() as dfd:
            stamp = self._stat(dfd)
            if self._cache is None or stamp != self._stamp:
                if stamp[0] is not None:
                    data = read_attrs_file(self._path, dir_fd=dfd)
                elif stamp[1] is not None:
                    data = read_legacy_attrs(self._legacy, dir_fd=dfd)
                else:
                    data = {}
                self._cache, self._stamp = data, stamp
        return self._cache

    def _write(self, data: dict[str, Any]) -> None:
        legacy = self._legacy
        with self._directory() as dfd:
            if legacy is not None and (
                self._store.das_compat or _fsutil.lexists(legacy, dir_fd=dfd)
            ):
                # DAS's attrs.npy, derived from attrs.json (see write_attrs_pair for the order)
                write_attrs_pair(self._path, legacy, data, sync=self._store.sync, dir_fd=dfd)
            else:
                write_attrs_file(self._path, data, sync=self._store.sync, dir_fd=dfd)
        self._cache = None

    def __getitem__(self, key: str) -> Any:
        data = self._load()
        try:
            return data[key]
        except KeyError:
            raise MemberNotFoundError(f"no attribute {key!r} in {self._owner}") from None

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
    _store: _Store
    _parts: tuple[str, ...]

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
        from .group import Group  # group.py imports this module: import at use

        return Group(self._store, ())

    @property
    def parent(self) -> Group:
        from .group import Group

        return Group(self._store, self._parts[:-1])

    @property
    def store_path(self) -> Path:
        """The store's root directory."""
        return self._store.root

    def _where(self) -> str:
        return f"{self.name!r} of store {self._store.root}"

    def __eq__(self, other: object) -> bool:
        return (
            type(other) is type(self)
            and other._store.real == self._store.real  # type: ignore[attr-defined]
            and other._parts == self._parts
        )  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._store.real, self._parts))
