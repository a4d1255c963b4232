"""Stores, groups and arrays: :func:`open`, :class:`Group` (a MutableMapping) and :class:`Array`.

A store is a directory; a group is a directory; an array is ``<name>.npy`` in its group's
directory (DESIGN.md section 2).  Everything is lazy: opening a store reads at most its small
``.npydir.json``; looking up ``root["train/x"]`` stats paths; only touching an array's shape or
data opens that one file.  Modes follow h5py:

=======  ===============================================================
``r``    read only, store must exist (default)
``r+``   read/write, store must exist
``a``    read/write, create if missing
``w``    create, or empty an existing store (refuses non-store directories)
``w-``   create, fail if the path exists (also ``x``)
=======  ===============================================================

Write modes hold the store's writer lock (:mod:`npydir.lock`) until :meth:`Group.close`.
"""

from __future__ import annotations

import json
import os
import stat
import weakref
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from pathlib import Path
from typing import Any

import numpy as np

from . import npyfile
from .attrs import read_attrs_file, read_legacy_attrs, write_attrs_file, write_legacy_attrs
from .errors import (
    AlreadyExistsError,
    AttributeEncodingError,
    FormatError,
    IncompatibleError,
    InvalidNameError,
    MemberNotFoundError,
    PathEscapeError,
    ReadOnlyError,
    StoreClosedError,
    StoreNotFoundError,
)
from .lock import LOCK_NAME, StoreLock
from .names import (
    ARRAY_SUFFIX,
    ATTRS_SUFFIX,
    check_inside,
    check_sibling_case,
    split_key,
    validate_name,
)

__all__ = ["Array", "AttributeManager", "Group", "open"]

MODES = ("r", "r+", "a", "w", "w-", "x")
FORMAT_FILE = ".npydir.json"
FORMAT_VERSION = 1
GROUP_ATTRS = "attrs.json"
LEGACY_ATTRS = "attrs.npy"
#: longest path (bytes) of any file npydir creates; Linux PATH_MAX is 4096 including the NUL
MAX_PATH_BYTES = 4095


# ============================================================================ the store


class _Store:
    """State shared by every Group/Array of one opened store."""

    def __init__(
        self, root: Path, mode: str, *, das_compat: bool, portable: bool, sync: bool = True
    ) -> None:
        self.root = root
        self.real = os.path.realpath(root)
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


def _looks_like_store(path: Path) -> bool:
    return any((path / n).exists() for n in (FORMAT_FILE, GROUP_ATTRS, LEGACY_ATTRS, LOCK_NAME))


def open(
    path: str | os.PathLike,
    mode: str = "r",
    *,
    das_compat: bool = False,
    portable: bool = True,
    sync: bool = True,
) -> Group:
    """Open a store and return its root :class:`Group`.

    Parameters
    ----------
    path : str or path
        The store directory (by DAS convention named ``*.npy``).
    mode : {"r", "r+", "a", "w", "w-", "x"}
        As h5py (see the module docstring).
    das_compat : bool
        Also write DAS's pickled ``attrs.npy`` whenever the root attributes change, so DAS's own
        loader reads the attributes.  Stores that already have an ``attrs.npy`` keep it in sync
        regardless.
    portable : bool
        Refuse names that do not work on Windows or case-insensitive file systems.
    sync : bool
        fsync every write (the default).  ``False`` keeps the order of writes and the atomic
        renames -- a killed process still leaves a consistent store -- but not durability across
        a power loss; an fsync costs milliseconds on many disks (README.md, "Crash safety", has numbers).

    Returns
    -------
    Group
        The root group; use it as a context manager or call ``close()``.

    Examples
    --------
    >>> with npydir.open("data.npy", "w") as root:             # doctest: +SKIP
    ...     x = root.create_dataset("train/x", data=np.zeros((100, 2), "f4"))
    ...     root.attrs["samplerate_x_Hz"] = 10_000
    """
    if mode not in MODES:
        raise ValueError(f"invalid mode {mode!r}; expected one of {', '.join(MODES)}")
    # absolute, so pickled arrays reopen from any working directory
    root = Path(os.path.abspath(os.fspath(path)))
    created = False
    if mode in ("w-", "x"):
        try:
            os.mkdir(root)
        except FileExistsError:
            raise AlreadyExistsError(
                f"{root} already exists (mode {mode!r} creates a new store only)"
            ) from None
        except FileNotFoundError:
            raise StoreNotFoundError(
                f"cannot create store {root}: parent directory does not exist"
            ) from None
        created = True
    elif mode in ("r", "r+"):
        if not root.exists():
            raise StoreNotFoundError(
                f"store {root} does not exist (mode {mode!r} opens existing stores; "
                "use 'a' or 'w' to create one)"
            )
        if not root.is_dir():
            raise FormatError(f"{root} is not a directory, so not an npydir store")
    else:  # "a", "w"
        if root.exists():
            if not root.is_dir():
                raise FormatError(f"{root} exists and is not a directory, so not an npydir store")
            with os.scandir(root) as entries:
                nonempty = any(True for _ in entries)
            if mode == "w" and nonempty and not _looks_like_store(root):
                raise AlreadyExistsError(
                    f"refusing to empty {root} for mode 'w': it is a non-empty directory "
                    f"that is not an npydir store (no {FORMAT_FILE}, attrs.json or "
                    "attrs.npy); remove it yourself or choose "
                    "another path"
                )
        else:
            try:
                os.mkdir(root)
            except FileNotFoundError:
                raise StoreNotFoundError(
                    f"cannot create store {root}: parent directory does not exist"
                ) from None
            except FileExistsError:  # raced with another creator: fine, the lock decides
                pass
            created = True
    if not created and mode != "w":
        check_format_file(root)
    store = _Store(root, mode, das_compat=das_compat, portable=portable, sync=sync)
    if not store.readonly:
        store.lock = StoreLock(root)
        store.lock.acquire()
        try:
            if mode == "w" and not created:
                _empty_directory(root)
            if not (root / FORMAT_FILE).exists():
                text = json.dumps({"format": "npydir", "version": FORMAT_VERSION}) + "\n"
                npyfile.atomic_write(
                    root / FORMAT_FILE, lambda fp: fp.write(text.encode()), sync=store.sync
                )
        except BaseException:
            store.close()
            raise
    return Group(store, ())


def check_format_file(root: Path) -> None:
    """Check the store's ``.npydir.json``, if any: the one check used by ``open`` and ``verify``.

    Accepted: a regular file holding a JSON object with ``"format": "npydir"`` and an integer
    ``"version"`` from 1 to :data:`FORMAT_VERSION`.  A missing file is fine (DAS stores and plain
    directories of ``.npy`` files have none).

    Raises
    ------
    FormatError
        Anything else, naming the file: not a regular file, not JSON (including nesting too deep
        for the parser), not npydir's, or a version this npydir does not read.
    """
    path = Path(root) / FORMAT_FILE
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(st.st_mode):  # a directory, or a link that could lead out of the store
        raise FormatError(f"{path}: not a regular file")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise FormatError(f"{path}: cannot be read ({exc.strerror})") from None
    try:
        info = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # RecursionError: "[[[[..." nested past the stack
        raise FormatError(f"{path}: not valid JSON ({type(exc).__name__}: {exc})") from None
    if not isinstance(info, dict) or info.get("format") != "npydir":
        shown = repr(info) if len(raw) <= 200 else f"{type(info).__name__} of {len(raw)} bytes"
        raise FormatError(f"{path}: expected {{'format': 'npydir', ...}}, found {shown}")
    version = info.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise FormatError(
            f"{path}: store format version must be an integer from 1, found {version!r}"
        )
    if version > FORMAT_VERSION:
        raise FormatError(
            f"{path}: store format version {version!r} is newer than this npydir reads "
            f"(version {FORMAT_VERSION}); upgrade npydir"
        )


def _empty_directory(root: Path) -> None:
    for entry in os.scandir(root):
        if entry.name == LOCK_NAME:
            continue
        if entry.is_dir(follow_symlinks=False):
            _rmtree(entry.path)
        else:
            os.unlink(entry.path)


def _rmtree(top: str | os.PathLike) -> None:
    """Remove a directory tree without recursion (shutil.rmtree recurses once per level and
    fails on the ~2000-level trees a 4 KiB path allows) and without following symlinks."""
    stack = [os.fspath(top)]
    while stack:
        d = stack[-1]
        subdirs = []
        with os.scandir(d) as it:
            for entry in it:
                if entry.is_dir(follow_symlinks=False):
                    subdirs.append(entry.path)
                else:
                    os.unlink(entry.path)
        if subdirs:
            stack.extend(subdirs)
        else:
            os.rmdir(d)
            stack.pop()


# ============================================================================ attributes


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

    def _stat(self) -> tuple:
        def stamp(p: Path | None) -> tuple | None:
            if p is None:
                return None
            try:
                st = os.stat(p)
            except FileNotFoundError:
                return None
            return (st.st_ino, st.st_mtime_ns, st.st_size)

        return (stamp(self._path), stamp(self._legacy))

    def _load(self) -> dict[str, Any]:
        self._check()
        stamp = self._stat()
        if self._cache is None or stamp != self._stamp:
            if stamp[0] is not None:
                data = read_attrs_file(self._path)
            elif stamp[1] is not None:
                data = read_legacy_attrs(self._legacy)
            else:
                data = {}
            self._cache, self._stamp = data, stamp
        return self._cache

    def _write(self, data: dict[str, Any]) -> None:
        write_attrs_file(self._path, data, sync=self._store.sync)
        if self._legacy is not None and (self._store.das_compat or self._legacy.exists()):
            write_legacy_attrs(self._legacy, data, sync=self._store.sync)
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


# ============================================================================ nodes


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
        return Group(self._store, ())

    @property
    def parent(self) -> Group:
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


class Group(_Node, MutableMapping):
    """A group of a store: a directory, used as a MutableMapping of names to Groups and Arrays.

    Iteration is in sorted name order.  Keys may be paths (``"train/x"``); a key starting with
    ``/`` is resolved from the store root (h5py semantics).
    """

    def __init__(self, store: _Store, parts: tuple[str, ...]) -> None:
        self._store = store
        self._parts = tuple(parts)

    # ------------------------------------------------------------------ basics

    @property
    def filename(self) -> Path:
        """The group's directory."""
        return self._store.dir_of(self._parts)

    @property
    def attrs(self) -> AttributeManager:
        """Group attributes, persisted in ``<dir>/attrs.json`` on every change."""
        d = self.filename
        legacy = d / LEGACY_ATTRS if not self._parts else None
        return AttributeManager(self._store, d / GROUP_ATTRS, f"group {self._where()}", legacy)

    def close(self) -> None:
        """Close the store: release the writer lock; further use raises StoreClosedError.

        Arrays already handed out as numpy views stay valid (their mappings live on).
        """
        self._store.close()

    def __enter__(self) -> Group:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __bool__(self) -> bool:  # a Group is a handle, not a container to test for emptiness
        return not self._store.closed

    def __repr__(self) -> str:
        state = "closed" if self._store.closed else f"mode {self._store.mode!r}"
        return f"<npydir.Group {self.name!r} in {str(self._store.root)!r} ({state})>"

    def __reduce__(self) -> tuple:
        return (_reopen, (str(self._store.root), self.path, "group"))

    # ------------------------------------------------------------------ resolution

    def _resolve(self, key: Any) -> tuple[str, ...]:
        parts, absolute = split_key(key)
        base = () if absolute else self._parts
        for part in parts:
            validate_name(part, portable=False)
        return base + parts

    def _kind(self, parts: tuple[str, ...], key: Any = "") -> str | None:
        """'group', 'array' or None; refuses paths whose real location leaves the store."""
        store = self._store
        store.check_open()
        if not parts:
            return "group"
        d = store.dir_of(parts)
        if os.path.isdir(d):
            check_inside(store.real, d, str(key))
            return "group"
        f = d.with_name(d.name + ARRAY_SUFFIX)
        if os.path.isfile(f):
            check_inside(store.real, f, str(key))
            return "array"
        # a dangling or escaping symlink: say so rather than "not found"
        for p in (d, f):
            if os.path.islink(p):
                check_inside(store.real, p, str(key))
        return None

    def _node(self, parts: tuple[str, ...], kind: str) -> Group | Array:
        if kind == "group":
            return Group(self._store, parts)
        arr = self._store.arrays.get(parts)
        if arr is None:
            arr = Array(self._store, parts)
            self._store.arrays[parts] = arr
        return arr

    def __getitem__(self, key: str) -> Group | Array:
        parts = self._resolve(key)
        kind = self._kind(parts, key)
        if kind is None:
            raise MemberNotFoundError(f"no member {key!r} in group {self._where()}")
        return self._node(parts, kind)

    def __contains__(self, key: object) -> bool:
        try:
            parts = self._resolve(key)
            return self._kind(parts, key) is not None
        except (InvalidNameError, PathEscapeError):  # not a name that can exist in the store
            return False

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    # ------------------------------------------------------------------ listing

    def _entries(self) -> list[tuple[str, str]]:
        """Sorted (name, kind) of the members of this group."""
        self._store.check_open()
        found: dict[str, str] = {}
        try:
            it = os.scandir(self.filename)
        except FileNotFoundError:
            raise MemberNotFoundError(f"group {self._where()} no longer exists") from None
        with it:
            for entry in it:
                n = entry.name
                if n.startswith("."):
                    continue
                try:
                    if entry.is_dir():
                        validate_name(n, portable=False)
                        found.setdefault(n, "group")
                    elif n.endswith(ARRAY_SUFFIX) and entry.is_file():
                        stem = n[: -len(ARRAY_SUFFIX)]
                        validate_name(stem, portable=False)
                        found[stem] = "array"
                except ValueError:
                    continue  # not a member (attrs.npy, foreign files)
        return sorted(found.items())

    def __iter__(self) -> Iterator[str]:
        return iter([n for n, _ in self._entries()])

    def __len__(self) -> int:
        return len(self._entries())

    def keys(self) -> list[str]:  # type: ignore[override]
        """Member names in sorted order."""
        return [n for n, _ in self._entries()]

    def group_keys(self) -> list[str]:
        """Names of the subgroups, sorted."""
        return [n for n, k in self._entries() if k == "group"]

    def array_keys(self) -> list[str]:
        """Names of the arrays, sorted."""
        return [n for n, k in self._entries() if k == "array"]

    def groups(self) -> list[tuple[str, Group]]:
        """``(name, Group)`` pairs of the subgroups, sorted by name."""
        return [(n, self[n]) for n in self.group_keys()]  # type: ignore[misc]

    def arrays(self) -> list[tuple[str, Array]]:
        """``(name, Array)`` pairs of the arrays, sorted by name."""
        return [(n, self[n]) for n in self.array_keys()]  # type: ignore[misc]

    def members(self, max_depth: int | None = None) -> tuple[tuple[str, Group | Array], ...]:
        """All members below this group as ``(relative path, object)``, depth-first, sorted.

        Parameters
        ----------
        max_depth : int or None
            ``0`` lists direct members only, ``1`` also their members, ...; ``None`` recurses fully.
        """
        out: list[tuple[str, Group | Array]] = []

        def walk(group: Group, prefix: str, depth: int) -> None:
            for n, kind in group._entries():
                obj = group._node(group._parts + (n,), kind)
                path = f"{prefix}{n}"
                out.append((path, obj))
                if kind == "group" and (max_depth is None or depth < max_depth):
                    walk(obj, path + "/", depth + 1)  # type: ignore[arg-type]

        walk(self, "", 0)
        return tuple(out)

    def visit(self, func: Callable[[str], Any]) -> Any:
        """Call ``func(relative_path)`` for every member below this group (h5py semantics).

        A non-None return value stops the walk and is returned.
        """
        return self.visititems(lambda name, obj: func(name))

    def visititems(self, func: Callable[[str, Group | Array], Any]) -> Any:
        """Call ``func(relative_path, obj)`` for every member below; a non-None return stops."""

        def walk(group: Group, prefix: str) -> Any:
            for n, kind in group._entries():
                obj = group._node(group._parts + (n,), kind)
                path = f"{prefix}{n}"
                result = func(path, obj)
                if result is not None:
                    return result
                if kind == "group":
                    result = walk(obj, path + "/")  # type: ignore[arg-type]
                    if result is not None:
                        return result
            return None

        return walk(self, "")

    def tree(self, max_depth: int | None = None) -> Tree:
        """A readable text tree of this group: groups, then arrays with shape and dtype."""
        lines = [self.name if not self._parts else self.basename]

        def label(n: str, obj: Group | Array) -> str:
            if isinstance(obj, Group):
                return n
            try:
                return f"{n} {obj.shape} {obj.dtype}"
            except Exception as exc:  # a broken file must not hide the rest of the tree
                return f"{n} <unreadable: {exc}>"

        def walk(group: Group, prefix: str, depth: int) -> None:
            entries = group._entries()
            for i, (n, kind) in enumerate(entries):
                last = i == len(entries) - 1
                obj = group._node(group._parts + (n,), kind)
                lines.append(prefix + ("└── " if last else "├── ") + label(n, obj))
                if kind == "group" and (max_depth is None or depth < max_depth):
                    walk(obj, prefix + ("    " if last else "│   "), depth + 1)  # type: ignore[arg-type]

        walk(self, "", 0)
        return Tree("\n".join(lines))

    # ------------------------------------------------------------------ creation

    def _siblings(self, directory: Path) -> list[str]:
        names = []
        for entry in os.scandir(directory):
            n = entry.name
            if n.startswith("."):
                continue
            if n.endswith(ARRAY_SUFFIX):
                n = n[: -len(ARRAY_SUFFIX)]
            elif n.endswith(ATTRS_SUFFIX) or n in (GROUP_ATTRS, LEGACY_ATTRS):
                continue
            names.append(n)
        return names

    def _prepare_new(self, parts: tuple[str, ...], key: Any, *, array: bool) -> Path:
        """Validate a new member's path, create its parents, refuse clashes; return its dir."""
        store = self._store
        if not parts:
            raise AlreadyExistsError(f"{key!r} names the group itself ({self._where()})")
        for i, part in enumerate(parts):
            validate_name(part, portable=store.portable, array=array and i == len(parts) - 1)
        nbytes = len(os.fsencode(str(store.dir_of(parts)))) + len(ATTRS_SUFFIX)
        if nbytes > MAX_PATH_BYTES:
            raise InvalidNameError(
                f"key {str(key)[:100]!r}: its files' paths ({nbytes} bytes) would exceed the "
                f"{MAX_PATH_BYTES} bytes operating systems allow"
            )
        # How many leading components exist as groups already?  One realpath of the deepest
        # one then covers every symbolic link on the way (no per-level realpath: O(depth^2)).
        m = 0
        while m < len(parts) - 1 and os.path.isdir(store.dir_of(parts[: m + 1])):
            m += 1
        check_inside(store.real, store.dir_of(parts[:m]), str(key))
        if m == len(parts) - 1:
            kind = self._kind(parts, key)
            if kind is not None:
                raise AlreadyExistsError(
                    f"{'/'.join(parts)!r} already exists in store {store.root} (a {kind}); "
                    "delete it first or use require_*"
                )
        else:
            missing = store.dir_of(parts[: m + 1])
            kind = self._kind(parts[: m + 1], key)
            if kind is not None or os.path.lexists(missing):
                raise AlreadyExistsError(
                    f"cannot create group {'/'.join(parts[: m + 1])!r} in store {store.root}: "
                    f"{'an array' if kind == 'array' else 'a non-group entry'} of that name exists"
                )
        parent = store.dir_of(parts[:m])
        if store.portable:  # deeper levels are fresh, empty directories: no siblings to clash
            check_sibling_case(parent, parts[m], self._siblings(parent))
        for j in range(m + 1, len(parts)):
            try:
                os.mkdir(store.dir_of(parts[:j]))
            except FileExistsError:
                pass
        return store.dir_of(parts[:-1])

    def create_group(self, name: str) -> Group:
        """Create a group (and missing parents, for ``"a/b"``); AlreadyExistsError if it exists."""
        self._store.check_writable(f"create group {name!r}")
        parts = self._resolve(name)
        self._prepare_new(parts, name, array=False)
        os.mkdir(self._store.dir_of(parts))
        return Group(self._store, parts)

    def require_group(self, name: str) -> Group:
        """Return group ``name``, creating it if missing; IncompatibleError for an array."""
        parts = self._resolve(name)
        kind = self._kind(parts, name)
        if kind == "group":
            return Group(self._store, parts)
        if kind == "array":
            raise IncompatibleError(
                f"require_group({name!r}): an array exists there in store {self._store.root}, "
                "expected a group"
            )
        return self.create_group(name)

    def create_dataset(
        self,
        name: str,
        shape: Any = None,
        dtype: Any = None,
        data: Any = None,
        fillvalue: Any = None,
        *,
        maxshape: Any = None,
        chunks: Any = None,
        fill_value: Any = None,
    ) -> Array:
        """Create an array, from ``data`` or as ``shape``/``dtype`` filled with ``fillvalue``.

        Parameters
        ----------
        name : str
            Name or path (missing parent groups are created).
        shape : tuple of int, optional
            Shape; with ``data``, data of the same size is reshaped to it.
        dtype : dtype, optional
            Default: ``data``'s dtype, else float32 (as h5py).
        data : array_like, optional
            Initial contents, written atomically.
        fillvalue : scalar, optional
            Value of every element when no data is given (default 0).  Zero fill
            reserves the disk blocks without writing them (a full disk is ENOSPC here).
        maxshape, chunks
            Accepted for h5py compatibility: ``maxshape`` may only leave axis 0 unlimited
            (``None``) since arrays grow along axis 0; ``chunks`` is ignored.

        Raises
        ------
        AlreadyExistsError, InvalidNameError, PathEscapeError, ReadOnlyError, UnsupportedDTypeError
        """
        self._store.check_writable(f"create array {name!r}")
        fillvalue = fill_value if fillvalue is None else fillvalue
        parts = self._resolve(name)
        if data is None and shape is None:
            raise TypeError(f"create_dataset({name!r}): give data or shape")
        arr = None
        if data is not None:
            if isinstance(data, Array):
                data = data[...]
            try:
                arr = np.asarray(data, dtype=dtype)
            except (TypeError, ValueError) as exc:
                raise TypeError(
                    f"create_dataset({name!r}): data cannot be converted to an array: {exc}"
                ) from None
            npyfile.check_dtype(arr.dtype, f"array {name!r}")
            if shape is not None:
                shape = _as_shape(shape)
                if shape != arr.shape:
                    if int(np.prod(shape)) != arr.size:
                        raise ValueError(
                            f"create_dataset({name!r}): shape {shape} does not match data of "
                            f"shape {arr.shape}"
                        )
                    arr = arr.reshape(shape)
            shape = arr.shape
        else:
            shape = _as_shape(shape)
            dtype = np.dtype("f4" if dtype is None else dtype)
            npyfile.check_dtype(dtype, f"array {name!r}")
        if maxshape is not None:
            maxshape = (maxshape,) if np.isscalar(maxshape) or maxshape is None else tuple(maxshape)
            if (
                len(maxshape) != len(shape)
                or any(m != s for m, s in zip(maxshape[1:], shape[1:], strict=True))
                or (shape and maxshape[0] is not None and maxshape[0] < shape[0])
            ):
                raise ValueError(
                    f"create_dataset({name!r}): maxshape {maxshape} unsupported for shape {shape}; "
                    "arrays grow along axis 0 only (use maxshape=(None, ...))"
                )
        parent = self._prepare_new(parts, name, array=True)
        path = parent / (parts[-1] + ARRAY_SUFFIX)
        stale_attrs = parent / (parts[-1] + ATTRS_SUFFIX)
        if stale_attrs.exists():  # left behind by an interrupted delete: not this array's
            os.unlink(stale_attrs)
        if arr is not None:
            npyfile.save_array(path, arr, sync=self._store.sync)
        else:
            try:
                npyfile.create_array_file(path, shape, dtype, fillvalue, sync=self._store.sync)
            except (TypeError, ValueError, OverflowError) as exc:
                raise type(exc)(f"create_dataset({name!r}): {exc}") from None
        return self._node(parts, "array")  # type: ignore[return-value]

    create_array = create_dataset

    def require_dataset(
        self, name: str, shape: Any, dtype: Any, exact: bool = False, **kwds: Any
    ) -> Array:
        """Return the array ``name`` if it matches, else create it (h5py semantics).

        An existing array matches if its shape equals ``shape`` and ``dtype`` can be cast to its
        dtype safely (``np.can_cast``), or equals it with ``exact=True``.

        Raises
        ------
        IncompatibleError
            The member exists but is a group, or its shape/dtype do not match (message names the
            key, expected and found).
        """
        parts = self._resolve(name)
        kind = self._kind(parts, name)
        if kind is None:
            return self.create_dataset(name, shape=shape, dtype=dtype, **kwds)
        if kind == "group":
            raise IncompatibleError(
                f"require_dataset({name!r}): a group exists there in store "
                f"{self._store.root}, expected an array"
            )
        arr: Array = self._node(parts, "array")  # type: ignore[assignment]
        shape = _as_shape(shape)
        if arr.shape != shape:
            raise IncompatibleError(
                f"require_dataset({name!r}): shapes do not match (expected {shape}, "
                f"found {arr.shape})"
            )
        want = np.dtype(dtype)
        if exact:
            if want != arr.dtype:
                raise IncompatibleError(
                    f"require_dataset({name!r}): dtypes do not match exactly "
                    f"(expected {want}, found {arr.dtype})"
                )
        elif not np.can_cast(want, arr.dtype):
            raise IncompatibleError(
                f"require_dataset({name!r}): dtype {want} cannot be safely cast to the "
                f"existing {arr.dtype}"
            )
        return arr

    require_array = require_dataset

    def __setitem__(self, key: str, value: Any) -> None:
        """``g[key] = array_like`` creates an array; ``g[key] = mapping`` creates a group tree."""
        if isinstance(value, (Group, Mapping)) and not isinstance(value, np.ndarray):
            g = self.create_group(key)
            for k, v in value.items():
                g[k] = v
            src_attrs = getattr(value, "attrs", None)
            if src_attrs:
                g.attrs.update(dict(src_attrs))
            return
        arr = self.create_dataset(key, data=value)
        src_attrs = getattr(value, "attrs", None)
        if isinstance(value, Array) and src_attrs:
            arr.attrs.update(dict(src_attrs))

    def __delitem__(self, key: str) -> None:
        """Delete an array (and its attrs) or a group with everything below it."""
        self._store.check_writable(f"delete {key!r}")
        parts = self._resolve(key)
        if not parts:
            raise ValueError(f"cannot delete the root of store {self._store.root}")
        kind = self._kind(parts, key)
        if kind is None:
            raise MemberNotFoundError(f"no member {key!r} in group {self._where()}")
        self._forget(parts)
        d = self._store.dir_of(parts)
        if kind == "group":
            if os.path.islink(d):  # a link inside the store to a group: remove the link only
                os.unlink(d)
            else:
                _rmtree(d)
        else:
            # attrs first: a crash in between leaves an array without attrs (it was being
            # deleted anyway), never attrs without an array
            try:
                os.unlink(d.with_name(d.name + ATTRS_SUFFIX))
            except FileNotFoundError:
                pass
            os.unlink(d.with_name(d.name + ARRAY_SUFFIX))

    def _forget(self, parts: tuple[str, ...]) -> None:
        """Detach cached Array objects at or below ``parts`` (deleted or moved)."""
        n = len(parts)
        for p in list(self._store.arrays.keys()):
            if p[:n] == parts:
                arr = self._store.arrays.pop(p, None)
                if arr is not None:
                    self._store.dirty.discard(arr)
                    arr._drop()

    def move(self, source: str, dest: str) -> None:
        """Move (rename) a member within the store; missing parents of ``dest`` are created."""
        self._store.check_writable(f"move {source!r} to {dest!r}")
        src = self._resolve(source)
        dst = self._resolve(dest)
        kind = self._kind(src, source)
        if kind is None:
            raise MemberNotFoundError(f"no member {source!r} in group {self._where()}")
        if not src:
            raise ValueError("cannot move the root group")
        if dst[: len(src)] == src:
            raise ValueError(f"cannot move {source!r} into itself ({dest!r})")
        parent = self._prepare_new(dst, dest, array=kind == "array")
        self._forget(src)
        s = self._store.dir_of(src)
        d = parent / dst[-1]
        if kind == "group":
            os.rename(s, d)  # one rename: atomic
        else:
            _move_array_files(s, d)


def _move_array_files(s: Path, d: Path) -> None:
    """Move ``<s>.npy`` and ``<s>.attrs.json`` to ``<d>.*`` so a crash loses nothing.

    The attrs file is hard-linked to its new name first, then the array is renamed, then the old
    attrs name is removed.  A crash leaves at most an extra name of the same attrs inode (link
    count 2), which :func:`npydir.repair` removes; repeating the move completes it.  Where hard
    links are not supported, the attrs file is renamed first, and a repeated move still finds it.
    """
    s_npy, d_npy = s.with_name(s.name + ARRAY_SUFFIX), d.with_name(d.name + ARRAY_SUFFIX)
    s_attrs, d_attrs = s.with_name(s.name + ATTRS_SUFFIX), d.with_name(d.name + ATTRS_SUFFIX)
    linked = False
    if os.path.exists(s_attrs):
        if os.path.lexists(d_attrs):  # a stale duplicate from an interrupted move
            os.unlink(d_attrs)
        try:
            os.link(s_attrs, d_attrs)
            linked = True
        except OSError:
            os.rename(s_attrs, d_attrs)
    os.rename(s_npy, d_npy)
    if linked:
        os.unlink(s_attrs)


class Tree(str):
    """Text of :meth:`Group.tree`; its repr is the text itself, for the REPL."""

    def __repr__(self) -> str:
        return str(self)


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


# ============================================================================ arrays


class Array(_Node):
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

    def _hdr(self) -> npyfile.Header:
        if self._header is None:
            self._check()
            try:
                self._header = self._retry(lambda: npyfile.read_header_path(self._file))
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
            mode = "r" if self._store.readonly else "r+"
            try:
                try:
                    self._mm, self._header = npyfile.open_memmap(self._file, mode, self._header)
                except FormatError:
                    if not self._store.readonly or self._header is None:
                        raise
                    self._header = None  # maybe read mid-append: read the header afresh
                    self._mm, self._header = self._retry(
                        lambda: npyfile.open_memmap(self._file, mode)
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
            npyfile.fsync_file(self._file)
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
        self._header = npyfile.append_rows(self._file, block, sync=synced, header=header)
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
        self._header = npyfile.resize_rows(self._file, n, sync=self._store.sync)
        if not self._store.sync:
            self._dirty = True
            self._store.dirty.add(self)

    # ------------------------------------------------------------------ pickling

    def __reduce__(self) -> tuple:
        return (_reopen, (str(self._store.root), self.path, "array"))


def _reopen(root: str, path: str, kind: str) -> Group | Array:
    """Unpickle a Group/Array: a fresh read-only store, nothing read until first use."""
    store = _Store(Path(root), "r", das_compat=False, portable=False)
    parts = tuple(p for p in path.split("/") if p)
    if kind == "group":
        return Group(store, parts)
    arr = Array(store, parts)
    store.arrays[parts] = arr
    return arr
