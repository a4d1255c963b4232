"""Stores and groups: :func:`open` and :class:`Group` (a MutableMapping of Groups and Arrays).

A store is a directory; a group is a directory; an array is ``<name>.npy`` in its group's
directory (docs/design.md, section 2; :mod:`npydir.store.layout` is the on-disk spec).
Everything is lazy: opening a store reads at most its small ``.npydir.json``; looking up
``root["train/x"]`` stats paths; only touching an array's shape or data opens that one file.
Modes follow h5py:

=======  ===============================================================
``r``    read only, store must exist (default)
``r+``   read/write, store must exist
``a``    read/write, create if missing
``w``    create, or empty an existing store (one holding ``.npydir.json``, or empty)
``w-``   create, fail if the path exists (also ``x``)
=======  ===============================================================

Every mode refuses a directory that is not a store (see :func:`store_kind`) before writing
anything into it.

Write modes hold the store's writer lock (:mod:`npydir.store.lock`) until :meth:`Group.close`.
Arrays are :class:`npydir.store.array.Array`; what groups and arrays share (the store's state, the
``.attrs`` mapping) is in :mod:`npydir.store.node`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from pathlib import Path
from typing import Any

import numpy as np

from . import fsutil, npyfile
from .node import AttributeManager, _Node, _reopen, _Store
from .array import Array, _as_shape
from ..errors import (
    AlreadyExistsError,
    FormatError,
    IncompatibleError,
    InvalidNameError,
    MemberNotFoundError,
    PathEscapeError,
    StoreNotFoundError,
)
from .layout import (
    ARRAY_SUFFIX,
    ATTRS_SUFFIX,
    FORMAT_FILE,
    FORMAT_NAME,
    FORMAT_VERSION,
    GROUP_ATTRS,
    LEGACY_ATTRS,
    LOCK_NAME,
    is_temp_name,
)
from .lock import StoreLock
from .names import (
    check_inside,
    check_sibling_case,
    split_key,
    validate_name,
)
from .tree import draw

# Array and AttributeManager live in array.py and node.py, _reopen in node.py; they stay
# importable from here: pickles name npydir.group.Array and npydir.group._reopen (the flat
# layout's path of this module).
__all__ = ["Array", "AttributeManager", "Group", "open"]

MODES = ("r", "r+", "a", "w", "w-", "x")
#: longest path (bytes) of any file npydir creates; Linux PATH_MAX is 4096 including the NUL
MAX_PATH_BYTES = 4095


#: metadata files of zarr stores, to tell a user which tool reads a directory
_ZARR_FILES = ("zarr.json", ".zgroup", ".zarray", ".zattrs", ".zmetadata")
#: what a directory npydir opens as a store may be (see store_kind)
STORE_KINDS = ("npydir", "das", "empty")


def _own_entry(name: str) -> bool:
    """An entry npydir itself may leave in a directory before its format marker is written."""
    return name == LOCK_NAME or is_temp_name(name)


def store_kind(root: str | os.PathLike) -> str:
    """What the existing directory ``root`` is as a store: one of :data:`STORE_KINDS`.

    ``"npydir"``: it holds the format marker ``.npydir.json`` (every store npydir has opened for
    writing holds it: it is written atomically, under the writer lock, before anything else).
    ``"das"``: it holds DAS's root ``attrs.npy`` (an ``npy_dir`` store written by DAS, which
    writes no marker).  ``"empty"``: nothing in it but what an interrupted first open leaves
    (``.npydir.lock``, temp files).  The marker's contents are checked by
    :func:`check_format_file`, not here.

    Raises
    ------
    FormatError
        Anything else (a zarr store, a directory of recordings, a store that lost its marker),
        with a one-line message saying what the directory looks like and what to do.
    """
    root = Path(root)
    if os.path.lexists(root / FORMAT_FILE):
        return "npydir"
    try:
        if stat.S_ISREG(os.lstat(root / LEGACY_ATTRS).st_mode):
            return "das"
    except FileNotFoundError:
        pass
    names = sorted(n for n in os.listdir(root) if not _own_entry(n))
    if not names:
        return "empty"
    raise FormatError(_foreign_directory(root, names))


def _foreign_directory(root: Path, names: list[str]) -> str:
    """One line saying what the non-store directory ``root`` holding ``names`` looks like."""
    zarr_files = [n for n in _ZARR_FILES if n in names]
    if zarr_files:
        return (
            f"{root}: a zarr store ({', '.join(zarr_files)}), not an npydir store; read it with "
            "npydir.load() (named *.zarr) or make an npydir store of it with npydir.convert() or "
            "'npydir convert'"
        )
    shown = ", ".join(repr(n) for n in names[:3]) + (", ..." if len(names) > 3 else "")
    if any(n.endswith(ARRAY_SUFFIX) for n in names) or GROUP_ATTRS in names:
        marker = json.dumps({"format": FORMAT_NAME, "version": FORMAT_VERSION})
        return (
            f"{root}: not an npydir store: it holds {len(names)} entries ({shown}) but no format "
            f"marker {FORMAT_FILE} (nor DAS's {LEGACY_ATTRS}); if it is a store that lost its "
            f"hidden files, restore the marker by writing {marker} to {root / FORMAT_FILE}"
        )
    return (
        f"{root}: not an npydir store: a directory of {len(names)} entries ({shown}) with no "
        f"format marker {FORMAT_FILE} (nor DAS's {LEGACY_ATTRS}); stores are new or empty "
        "directories, or ones npydir or DAS wrote"
    )


def open(
    path: str | os.PathLike,
    mode: str = "r",
    *,
    das_compat: bool = False,
    portable: bool = True,
    sync: bool = True,
    storage_options: dict | None = None,
) -> Group:
    """Open a local store and return its root :class:`Group`.

    :func:`npydir.open` is this function for local paths; it also opens URLs.

    Parameters
    ----------
    path : str or path
        The store directory (by DAS convention named ``*.npy``).
    mode : {"r", "r+", "a", "w", "w-", "x"}
        As h5py (see the module docstring).
    das_compat, portable, sync : bool
        As :func:`npydir.open` says: DAS's ``attrs.npy`` kept too, names refused that do not
        work on Windows or case-insensitive file systems, every write fsynced.
    storage_options : None
        Only for URLs, which this function does not open: :func:`npydir.open` opens
        ``s3://`` and ``http(s)://`` stores (:mod:`npydir.remote`) and local ones (here).

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
    if storage_options is not None:
        raise ValueError(f"storage_options is for s3:// and http(s):// URLs, not {path!r}")
    # absolute, so pickled arrays reopen from any working directory
    root = Path(os.path.abspath(os.fspath(path)))
    created = False
    if mode != "r":
        _check_path_length(root, os.fspath(path), store=True)
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
        else:
            try:
                os.mkdir(root)
                created = True
            except FileNotFoundError:
                raise StoreNotFoundError(
                    f"cannot create store {root}: parent directory does not exist"
                ) from None
            except FileExistsError:  # raced with another creator: fine, the lock decides
                pass
    # Before anything is written: a directory that is not a store gets no lock file.
    if not created:
        _checked_kind(root, mode)
    store = _Store(root, mode, das_compat=das_compat, portable=portable, sync=sync)
    if not store.readonly:
        store.lock = StoreLock(root)
        store.lock.acquire()
        try:
            # again under the lock: what is emptied or marked is what was checked
            kind = _checked_kind(root, mode)
            if mode == "w":
                _empty_directory(root)
            if not os.path.lexists(root / FORMAT_FILE):
                _write_marker(root, kind, sync=store.sync)
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
        raw = fsutil.read_bytes(path, follow=False)  # swapped for a link/FIFO: refused
    except OSError as exc:
        raise FormatError(f"{path}: cannot be read ({exc.strerror})") from None
    try:
        info = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # RecursionError: "[[[[..." nested past the stack
        raise FormatError(f"{path}: not valid JSON ({type(exc).__name__}: {exc})") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT_NAME:
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


def _checked_kind(root: Path, mode: str) -> str:
    """:func:`store_kind` of ``root`` plus what ``mode`` requires of it.

    Mode "w" empties only a directory holding npydir's valid marker or nothing but an interrupted
    first open's files; everything else is refused, never wiped.
    """
    try:
        kind = store_kind(root)
    except FormatError as exc:
        if mode != "w":
            raise
        raise AlreadyExistsError(f"refusing to empty for mode 'w': {exc}") from None
    if mode == "w" and kind == "das":
        raise AlreadyExistsError(
            f"refusing to empty {root} for mode 'w': a DAS npy_dir store ({LEGACY_ATTRS}) without "
            f"npydir's format marker {FORMAT_FILE}; remove it yourself, or open it with mode 'a' "
            "to keep its data"
        )
    if kind == "npydir":
        try:
            check_format_file(root)
        except FormatError as exc:
            if mode != "w":
                raise
            raise AlreadyExistsError(f"refusing to empty for mode 'w': {exc}") from None
    return kind


def _write_marker(root: Path, kind: str, *, sync: bool) -> None:
    """Write ``.npydir.json`` (atomically; the caller holds the lock).

    A DAS store that cannot get its marker (full disk, quota) still opens: its ``attrs.npy``
    identifies it, and a full store must open so that something can be deleted.  An empty
    directory must get the marker before it holds data, so there the error is raised.
    """
    text = json.dumps({"format": FORMAT_NAME, "version": FORMAT_VERSION}) + "\n"
    try:
        npyfile.atomic_write(root / FORMAT_FILE, lambda fp: fp.write(text.encode()), sync=sync)
    except OSError as exc:
        if kind != "das" or exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise


def _longest_file(member: Path) -> Path:
    """The longest path npydir writes for the array or group at ``member``.

    That is the temp file of an attrs write: ``.<name>.attrs.json.<hex>.npydir-tmp`` beside an
    array, ``.attrs.json.<hex>.npydir-tmp`` inside a group (the same length); the ``.npy`` and
    its temp files are shorter.
    """
    return npyfile.temp_path(member / GROUP_ATTRS)


def _check_path_length(member: Path, key: Any, deepest: int = 0, *, store: bool = False) -> None:
    """Refuse a member whose files' paths would exceed :data:`MAX_PATH_BYTES`.

    ``deepest`` adds the longest path below a group being moved to ``member``; ``store`` checks
    a store root, whose longest file is the temp file of its ``.npydir.json``.
    """
    longest = npyfile.temp_path(member / FORMAT_FILE) if store else _longest_file(member)
    nbytes = len(os.fsencode(str(longest))) + deepest
    if nbytes > MAX_PATH_BYTES:
        shown = str(member)
        if len(shown) > 160:
            shown = f"{shown[:70]}...{shown[-70:]}"
        raise InvalidNameError(
            f"{'store' if store else 'key'} {str(key)[:80]!r}: the path {shown} is too long: the "
            f"files npydir writes for it (and their temp files) would need {nbytes} bytes, "
            f"exceeding the {MAX_PATH_BYTES} bytes (PATH_MAX) operating systems allow; use "
            "shorter names or fewer levels"
        )


def _deepest_below(top: Path) -> int:
    """Bytes of the longest ``/<relative path>`` below directory ``top`` (links not followed)."""
    deepest = 0
    start = len(os.fsencode(str(top)))
    for dirpath, dirnames, filenames in os.walk(top):
        here = len(os.fsencode(dirpath)) - start
        for n in dirnames + filenames:
            deepest = max(deepest, here + 1 + len(os.fsencode(n)))
    return deepest


def _empty_directory(root: Path) -> None:
    """Remove everything in the store directory but the lock, through one descriptor of it.

    Subdirectories are removed by :func:`npydir.store.fsutil.remove_tree`, which opens each level
    ``O_NOFOLLOW`` relative to its parent: one swapped for a link meanwhile is unlinked as a
    link, and nothing outside the store is ever listed or deleted.
    """
    with fsutil.directory(root) as fd:
        with os.scandir(fd) as it:
            entries = [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
        for name, is_dir in entries:
            if name == LOCK_NAME:
                continue
            if is_dir:
                fsutil.remove_tree(fd, name, root / name)
                continue
            try:
                os.unlink(name, dir_fd=fd)
            except IsADirectoryError:  # became a directory since listed
                fsutil.remove_tree(fd, name, root / name)
            except FileNotFoundError:
                pass


def _is_special(entry: os.DirEntry) -> bool:
    """A FIFO, socket or device (following a link): listed, refused with a clear error on use."""
    try:
        mode = entry.stat().st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


class Group(_Node, MutableMapping, kind="group"):
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
        if os.path.exists(f) and not os.path.isdir(f):
            # a FIFO or device is an array too: opening it says what it is
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

    # Any, as h5py: a Group or an Array, which one the caller knows from the key; a union
    # would make every ``root["train/x"].shape`` a type error until narrowed.
    def __getitem__(self, key: str) -> Any:
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
        """Sorted (name, kind) of the members of this group.

        A symbolic link that resolves outside the store is not a member: it is not listed (so
        ``members``, ``visititems`` and ``tree`` never walk into it), as ``self[name]`` refuses
        it; :func:`npydir.verify` reports it.  The directory is listed through a descriptor
        checked to be inside the store.
        """
        store = self._store
        store.check_open()
        found: dict[str, str] = {}
        with store.directory(self._parts, f"group {self._where()}") as dfd:
            here = fsutil.fd_path(dfd) or os.fspath(self.filename)
            with os.scandir(dfd) as it:  # entries stat relative to dfd: classify while open
                for entry in it:
                    n = entry.name
                    if n.startswith("."):
                        continue
                    try:
                        if entry.is_symlink():
                            check_inside(store.real, os.path.join(here, n), n)
                        if entry.is_dir():
                            validate_name(n, portable=False)
                            found.setdefault(n, "group")
                        elif n.endswith(ARRAY_SUFFIX) and (
                            entry.is_file() or _is_special(entry)
                        ):
                            stem = n[: -len(ARRAY_SUFFIX)]
                            validate_name(stem, portable=False)
                            found[stem] = "array"
                    except (ValueError, OSError):
                        continue  # not a member (attrs.npy, foreign files, links leaving it)
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
        return [(n, self[n]) for n in self.group_keys()]

    def arrays(self) -> list[tuple[str, Array]]:
        """``(name, Array)`` pairs of the arrays, sorted by name."""
        return [(n, self[n]) for n in self.array_keys()]

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

        def children(group: Group) -> list[tuple[str, Group | Array, bool]]:
            return [
                (n, group._node(group._parts + (n,), kind), kind == "group")
                for n, kind in group._entries()
            ]

        def label(n: str, obj: Group | Array, is_group: bool) -> str:
            if is_group:
                return n
            try:
                return f"{n} {obj.shape} {obj.dtype}"  # type: ignore[union-attr]
            except Exception as exc:  # a broken file must not hide the rest of the tree
                return f"{n} <unreadable: {exc}>"

        head = self.name if not self._parts else self.basename
        return Tree("\n".join([head, *draw(self, children, label, max_depth=max_depth)]))

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

    def _prepare_new(self, parts: tuple[str, ...], key: Any, *, array: bool) -> fsutil.DirFd:
        """Validate a new member's path, create its parents, refuse clashes.

        Returns the new member's parent directory, open (the caller closes it) and checked to
        be inside the store: the member is then created relative to it, so a directory swapped
        for a link after these checks cannot redirect the write.
        """
        store = self._store
        if not parts:
            raise AlreadyExistsError(f"{key!r} names the group itself ({self._where()})")
        for i, part in enumerate(parts):
            validate_name(part, portable=store.portable, array=array and i == len(parts) - 1)
        _check_path_length(store.dir_of(parts), key)
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
        with store.directory(parts[:m]) as top:
            cur = fsutil.DirFd(os.dup(top), top.root, top.root_dev)
        try:
            # each missing level is made and opened (O_NOFOLLOW) in the one before: one path
            # resolution in all, and no link swapped in between can be followed
            for j in range(m + 1, len(parts)):
                name = parts[j - 1]
                try:
                    os.mkdir(name, dir_fd=cur)
                except FileExistsError:
                    pass
                nxt = fsutil.open_dir(
                    store.dir_of(parts[:j]), dir_fd=cur, follow=False,
                    root=store.real, root_dev=store.dev,
                )
                os.close(cur)
                cur = nxt
        except BaseException:
            os.close(cur)
            raise
        return cur

    def create_group(self, name: str) -> Group:
        """Create a group (and missing parents, for ``"a/b"``); AlreadyExistsError if it exists."""
        self._store.check_writable(f"create group {name!r}")
        parts = self._resolve(name)
        with fsutil.owned(self._prepare_new(parts, name, array=False)) as parent:
            os.mkdir(parts[-1], dir_fd=parent)
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
        with fsutil.owned(self._prepare_new(parts, name, array=True)) as parent:
            base = self._store.dir_of(parts)
            path = base.with_name(parts[-1] + ARRAY_SUFFIX)
            # stale attrs, left behind by an interrupted delete, are not this array's
            npyfile.remove_if_present(base.with_name(parts[-1] + ATTRS_SUFFIX), dir_fd=parent)
            if arr is not None:
                npyfile.save_array(path, arr, sync=self._store.sync, dir_fd=parent)
            else:
                try:
                    npyfile.create_array_file(
                        path, shape, dtype, fillvalue, sync=self._store.sync, dir_fd=parent
                    )
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
            parts = self._resolve(key)
            if (
                isinstance(value, Group)
                and value._store.real == self._store.real
                and parts[: len(value._parts)] == value._parts
            ):
                raise ValueError(
                    f"cannot copy group {value.name!r} into itself ({'/' + '/'.join(parts)!r}) "
                    f"in store {self._store.root}: the copy would contain itself without end"
                )
            # the first level create_group makes (missing parents included) is ours to remove
            m = 0
            while m < len(parts) - 1 and os.path.isdir(self._store.dir_of(parts[: m + 1])):
                m += 1
            g = self.create_group(key)
            try:
                g._copy_from(value, [value])
            except BaseException:  # nothing half-copied is left behind
                self._forget(parts[: m + 1])
                with self._store.directory(parts[:m]) as parent:
                    fsutil.remove_tree(parent, parts[m], self._store.dir_of(parts[: m + 1]))
                raise
            return
        arr = self.create_dataset(key, data=value)
        src_attrs = getattr(value, "attrs", None)
        if isinstance(value, Array) and src_attrs:
            arr.attrs.update(dict(src_attrs))

    def _copy_from(self, value: Any, path: list[Any]) -> None:
        """Copy the members and attrs of the mapping ``value`` into this new, empty group.

        ``path`` holds the mappings being copied, outermost first: a mapping that contains
        itself is refused instead of recursing without end.
        """
        for k, v in value.items():
            if isinstance(v, (Group, Mapping)) and not isinstance(v, np.ndarray):
                if any(v is p or (isinstance(v, Group) and v == p) for p in path):
                    raise ValueError(
                        f"cannot copy {k!r} into group {self._where()}: the mapping contains "
                        "itself, so the copy would never end"
                    )
                g = self.create_group(k)
                g._copy_from(v, path + [v])
            else:
                self[k] = v
        src_attrs = getattr(value, "attrs", None)
        if src_attrs:
            self.attrs.update(dict(src_attrs))

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
        # everything relative to the parent's descriptor: what is deleted is what is in the
        # store now, whatever was swapped in since the lookup (nothing is followed)
        with self._store.directory(parts[:-1]) as parent:
            if kind == "group":
                # a link (inside the store) to a group: only the link is removed
                fsutil.remove_tree(parent, parts[-1], d)
            else:
                # attrs first: a crash in between leaves an array without attrs (it was being
                # deleted anyway), never attrs without an array
                npyfile.remove_if_present(d.name + ATTRS_SUFFIX, dir_fd=parent)
                os.unlink(d.name + ARRAY_SUFFIX, dir_fd=parent)

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
        if kind == "group":  # everything below must stay within PATH_MAX at its new place
            deepest = _deepest_below(self._store.dir_of(src))
            _check_path_length(self._store.dir_of(dst), dest, deepest)
        with contextlib.ExitStack() as stack:
            dfd = stack.enter_context(
                fsutil.owned(self._prepare_new(dst, dest, array=kind == "array"))
            )
            sfd = stack.enter_context(self._store.directory(src[:-1]))
            self._forget(src)
            s = self._store.dir_of(src)
            d = self._store.dir_of(dst)
            if kind == "group":
                # one rename: atomic; between the two checked directories, following nothing
                os.rename(src[-1], dst[-1], src_dir_fd=sfd, dst_dir_fd=dfd)
            else:
                _move_array_files(s, d, sfd, dfd)


def _move_array_files(s: Path, d: Path, sfd: int, dfd: int) -> None:
    """Move ``<s>.npy`` and ``<s>.attrs.json`` to ``<d>.*`` so a crash loses nothing.

    The attrs file is hard-linked to its new name first, then the array is renamed, then the old
    attrs name is removed.  A crash leaves at most an extra name of the same attrs inode (link
    count 2), which :func:`npydir.repair` removes; repeating the move completes it.  Where hard
    links are not supported, the attrs file is renamed first, and a repeated move still finds it.
    """
    s_npy, d_npy = s.name + ARRAY_SUFFIX, d.name + ARRAY_SUFFIX
    s_attrs, d_attrs = s.name + ATTRS_SUFFIX, d.name + ATTRS_SUFFIX
    src, dst = {"src_dir_fd": sfd, "dst_dir_fd": dfd}, {"dir_fd": dfd}
    linked = False
    if fsutil.lexists(s_attrs, dir_fd=sfd):
        if fsutil.lexists(d_attrs, dir_fd=dfd):  # a stale duplicate from an interrupted move
            os.unlink(d_attrs, **dst)
        try:
            os.link(s_attrs, d_attrs, follow_symlinks=False, **src)
            linked = True
        except OSError:
            os.rename(s_attrs, d_attrs, **src)
    os.rename(s_npy, d_npy, **src)
    if linked:
        os.unlink(s_attrs, dir_fd=sfd)


class Tree(str):
    """Text of :meth:`Group.tree`; its repr is the text itself, for the REPL."""

    def __repr__(self) -> str:
        return str(self)
