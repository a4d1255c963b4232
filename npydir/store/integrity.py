"""Checking and repairing a store on disk: :func:`verify` and :func:`repair`.

:func:`verify` walks a store and reports, without changing anything:

==================  ==========================================================================
kind                meaning
==================  ==========================================================================
``torn-append``     an ``.npy`` file is longer than its header says: an append wrote its rows
                    but was killed before it wrote the new shape (the old shape is valid)
``truncated``       an ``.npy`` file is shorter than its header says: data is missing
``bad-header``      an ``.npy`` header does not parse, or holds an object dtype
``bad-attrs``       an attrs JSON file (or a legacy ``attrs.npy``) does not decode
``stale-attrs-npy`` the root's ``attrs.npy`` (DAS's copy of the root attributes) disagrees with
                    ``attrs.json``: an attrs update was interrupted between writing the two
``stray-temp``      a temp file left by an interrupted atomic write
``duplicate-attrs`` ``<name>.attrs.json`` without ``<name>.npy`` that is a second name of another
                    attrs file (link count > 1): left by an interrupted move
``orphan-attrs``    ``<name>.attrs.json`` without ``<name>.npy`` and no other name
``bad-format-file`` ``.npydir.json`` is not what it should be
``path-escape``     a file or directory of the store is a symbolic link that resolves outside
                    it: not read, not followed, never written through
``special-file``    a FIFO, socket or device where a store file (``.npy``, attrs) should be:
                    never opened (a FIFO would block every reader)
==================  ==========================================================================

:func:`repair` takes the store's writer lock, trims torn appends back to their header's shape,
removes stray temp files and second names left by a move, and rewrites a stale ``attrs.npy``
from ``attrs.json``.  It never guesses at user data: truncated arrays, broken headers and broken
attrs are left as they are and reported by an :class:`~npydir.errors.IntegrityError` (after the
safe repairs are done).

``attrs.json`` and ``attrs.npy``: when a store keeps both at its root (``das_compat``),
``attrs.json`` is the source of truth and ``attrs.npy`` a copy DAS's loader reads.  They *match*
when they hold the same keys and every value gets the same JSON text from the store's one
encoding, numpy values taken in native byte order (:func:`npydir.store.attrs.legacy_mismatch`): NaN
matches NaN, a tuple the list it is stored as; ``1``, ``1.0`` and ``True`` all differ, and so do
``-0.0`` and ``0.0`` or ``np.float32(1)`` and ``1.0``.  Only the root is compared: npydir keeps
no ``attrs.npy`` elsewhere.  Nothing is compared when either file is missing, does not decode
(``bad-attrs``) or leaves the store (``path-escape``).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import fsutil
from .attrs import legacy_mismatch, read_attrs_file, read_legacy_attrs, write_legacy_attrs
from ..errors import (
    FormatError,
    IntegrityError,
    PathEscapeError,
    StoreNotFoundError,
    UnsafePickleError,
)
from .group import check_format_file, store_kind
from .layout import (
    ARRAY_SUFFIX,
    ATTRS_SUFFIX,
    FORMAT_FILE,
    GROUP_ATTRS,
    JSON_SUFFIX,
    LEGACY_ATTRS,
    RESERVED_SUFFIXES,
    is_temp_name,
)
from .lock import StoreLock
from .names import check_inside
from .npyfile import read_header

__all__ = ["Problem", "Report", "repair", "verify"]

#: problem kinds repair() fixes
REPAIRABLE = frozenset({"torn-append", "stray-temp", "duplicate-attrs", "stale-attrs-npy"})
#: at most this many keys are spelled out in a stale-attrs-npy problem's text (all are in .keys)
_SHOWN_KEYS = 10


@dataclass(frozen=True)
class Problem:
    """One problem found by :func:`verify`.

    Attributes
    ----------
    file : Path
        The file concerned.
    kind : str
        See the table in the module docstring.
    expected, found
        What the format says versus what is on disk (sizes in bytes where applicable).
    detail : str
        Human-readable explanation.
    keys : tuple of str
        ``stale-attrs-npy``: the attribute names on which ``attrs.npy`` and ``attrs.json``
        disagree, sorted (empty for other kinds).
    """

    file: Path
    kind: str
    expected: Any = None
    found: Any = None
    detail: str = ""
    keys: tuple[str, ...] = ()

    @property
    def repairable(self) -> bool:
        return self.kind in REPAIRABLE

    def __str__(self) -> str:
        ef = f" (expected {self.expected}, found {self.found})" if self.expected is not None else ""
        return f"{self.kind}: {self.file}{ef}{': ' + self.detail if self.detail else ''}"


@dataclass
class Report:
    """Result of :func:`verify` / :func:`repair`; truthy when the store is sound.

    Attributes
    ----------
    root : Path
        The store.
    problems : list of Problem
        What is (still) wrong.
    repaired : list of Problem
        What :func:`repair` fixed (empty for :func:`verify`).
    checked : int
        Number of files checked.
    """

    root: Path
    problems: list[Problem] = field(default_factory=list)
    repaired: list[Problem] = field(default_factory=list)
    checked: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def __bool__(self) -> bool:
        return self.ok

    def kinds(self) -> list[str]:
        """Kinds of the problems, in order."""
        return [p.kind for p in self.problems]

    def __str__(self) -> str:
        lines = [
            f"{self.root}: {self.checked} files checked, "
            + ("OK" if self.ok else f"{len(self.problems)} problem(s)")
        ]
        lines += [f"  {p}" for p in self.problems]
        if self.repaired:
            lines.append(f"  repaired {len(self.repaired)}:")
            lines += [f"    {p}" for p in self.repaired]
        return "\n".join(lines)


def _check_npy(path: Path, report: Report, real_root: str) -> None:
    try:
        with open(fsutil.open_file(path, follow=True, root=real_root), "rb") as fp:
            header = read_header(fp, path)
            size = os.fstat(fp.fileno()).st_size
    except FormatError as exc:  # includes object dtypes
        report.problems.append(
            Problem(path, "bad-header", detail=str(exc).removeprefix(f"{path}: "))
        )
        return
    except PathEscapeError as exc:  # swapped for a link since the walk looked
        report.problems.append(Problem(path, "path-escape", detail=str(exc)))
        return
    except OSError as exc:
        report.problems.append(Problem(path, "unreadable", detail=str(exc)))
        return
    expected = header.expected_size
    if size > expected:
        report.problems.append(
            Problem(
                path,
                "torn-append",
                expected,
                size,
                f"{size - expected} bytes past the data of shape {header.shape}",
            )
        )
    elif size < expected:
        report.problems.append(
            Problem(
                path,
                "truncated",
                expected,
                size,
                f"header says shape {header.shape} {header.dtype}; "
                f"{expected - size} bytes of data are missing",
            )
        )


def verify(path: str | os.PathLike) -> Report:
    """Check every file of the store at ``path``; return a :class:`Report` (nothing is changed).

    A directory that is not a store (no ``.npydir.json``, no DAS ``attrs.npy``, not empty) is
    refused with :class:`~npydir.errors.FormatError` saying what it is.
    """
    root = Path(path)
    if not root.is_dir():
        raise StoreNotFoundError(f"store {root} does not exist or is not a directory")
    store_kind(root)  # a directory that is not a store is refused (FormatError), not "OK"
    report = Report(root)
    real_root = os.path.realpath(root)
    if os.path.lexists(root / FORMAT_FILE):
        report.checked += 1
        _check_format_file(root, report)
    # os.walk does not descend into symlinked directories (followlinks=False); those leading out
    # of the store are reported, and no file is opened through a link that leaves it
    # (docs/design.md, section 3)
    at_root = True
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        decoded: dict[str, dict | None] = {}  # this directory's attrs files that decode
        dirnames[:] = sorted(
            d
            for d in dirnames
            if not d.startswith(".") and not _escapes(real_root, here / d, report)
        )
        for name in sorted(filenames):
            p = here / name
            # dot files are not read here (temp files are only unlinked, which never follows a
            # link; .npydir.json has its own check above)
            if not name.startswith(".") and _escapes(real_root, p, report):
                report.checked += 1
                continue
            if not name.startswith(".") and _special(p, report):
                report.checked += 1
                continue
            if is_temp_name(name):
                report.checked += 1
                report.problems.append(
                    Problem(p, "stray-temp", detail="left by an interrupted write")
                )
            elif name.startswith("."):  # the lock file, .npydir.json (checked above)
                pass
            elif name == LEGACY_ATTRS:
                report.checked += 1
                try:
                    decoded[name] = read_legacy_attrs(p)
                except (FormatError, UnsafePickleError, OSError) as exc:
                    report.problems.append(Problem(p, "bad-attrs", detail=str(exc)))
            elif name.endswith(ARRAY_SUFFIX):
                report.checked += 1
                _check_npy(p, report, real_root)
            elif name.endswith(JSON_SUFFIX):
                report.checked += 1
                decoded[name] = _check_attrs(p, set(filenames), report)
        if at_root:
            _compare_legacy(here, decoded, report)
            at_root = False
    return report


def _compare_legacy(root: Path, decoded: dict[str, dict | None], report: Report) -> None:
    """Report the root's attrs.npy as stale if it disagrees with attrs.json (both decoded)."""
    mine, legacy = decoded.get(GROUP_ATTRS), decoded.get(LEGACY_ATTRS)
    if mine is None or legacy is None:
        return
    keys = legacy_mismatch(mine, legacy)
    if keys:
        report.problems.append(_stale_problem(root / LEGACY_ATTRS, mine, legacy, keys))


def _stale_problem(path: Path, mine: dict, legacy: dict, keys: list[str]) -> Problem:
    def names(which: list[str]) -> str:
        shown = ", ".join(repr(k) for k in which[:_SHOWN_KEYS])
        more = len(which) - _SHOWN_KEYS
        return shown + (f" and {more} more" if more > 0 else "")

    parts = []
    for label, which in (
        ("differ", [k for k in keys if k in mine and k in legacy]),
        ("missing from attrs.npy", [k for k in keys if k not in legacy]),
        ("only in attrs.npy", [k for k in keys if k not in mine]),
    ):
        if which:
            parts.append(f"{label}: {names(which)}")
    detail = (
        f"the attributes of group '/' in attrs.npy do not match attrs.json ({'; '.join(parts)}); "
        "attrs.json is the source of truth (an attrs update was interrupted)"
    )
    return Problem(path, "stale-attrs-npy", detail=detail, keys=tuple(keys))


def _special(p: Path, report: Report) -> bool:
    """Report ``p`` as ``special-file`` if it is a FIFO, socket or device; True if it is.

    Only the store's own files (``.npy``, ``.json``) are checked; a file swapped for one after
    this look is still never read (every open refuses it), only reported as unreadable.
    """
    if not p.name.endswith(RESERVED_SUFFIXES):
        return False
    try:
        mode = os.stat(p).st_mode  # links inside the store: what they lead to
    except OSError:
        return False
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return False
    report.problems.append(
        Problem(p, "special-file", detail=f"is {fsutil.kind_of(mode)}; expected a regular file")
    )
    return True


def _escapes(real_root: str, p: Path, report: Report) -> bool:
    """Report ``p`` as ``path-escape`` if it resolves outside the store; True if it does."""
    if not os.path.islink(p):  # the walk follows no links: only a link itself can escape
        return False
    try:
        check_inside(real_root, p)
    except PathEscapeError as exc:
        detail = str(exc).split(" resolves to ", 1)[-1]
        report.problems.append(
            Problem(p, "path-escape", detail=f"symbolic link resolving to {detail}")
        )
        return True
    return False


def _open_inside(real_root: str, path: Path, flags: int) -> int:
    """Open ``path`` for a repair only if the file opened is inside the store.

    The path is resolved first and its last component opened with ``O_NOFOLLOW``; the open
    descriptor is then resolved again (``/proc/self/fd``), so a link swapped in after
    :func:`verify` looked cannot redirect the write out of the store.
    """
    real = os.path.realpath(path)
    check_inside(real_root, real)
    return fsutil.open_file(real, flags, root=real_root)


def _rewrite_legacy(real_root: str, problem: Problem) -> Problem | None:
    """Rewrite a stale ``attrs.npy`` from the ``attrs.json`` beside it, atomically.

    Everything is re-checked under the lock: both files must resolve inside the store, both
    must still decode, and they must still disagree (else nothing is written).  The new
    ``attrs.npy`` is written to a temp file in the store's own (resolved) directory and renamed
    over the old name, which replaces a symbolic link there rather than writing through it.
    Returns the problem that remains, or None when repaired.
    """
    legacy = problem.file
    mine = legacy.with_name(GROUP_ATTRS)
    try:
        mine_real = os.path.realpath(mine)
        check_inside(real_root, mine_real)
        check_inside(real_root, os.path.realpath(legacy))
        directory = os.path.realpath(legacy.parent)
        check_inside(real_root, directory)
    except PathEscapeError as exc:  # a link swapped in since verify looked
        return Problem(legacy, "path-escape", detail=str(exc))
    if not (os.path.isfile(mine_real) and os.path.isfile(legacy)):
        return None  # one of the two is gone: nothing left to disagree
    try:
        values = read_attrs_file(mine_real)
    except (FormatError, OSError) as exc:
        return Problem(mine, "bad-attrs", detail=str(exc))
    try:
        stale = legacy_mismatch(values, read_legacy_attrs(legacy))
    except (FormatError, UnsafePickleError, OSError) as exc:
        return Problem(legacy, "bad-attrs", detail=str(exc))
    if stale:
        write_legacy_attrs(Path(directory) / legacy.name, values)
    return None


def _check_format_file(root: Path, report: Report) -> None:
    # the same check as npydir.open: verify reports bad-format-file exactly when open refuses
    try:
        check_format_file(root)
    except FormatError as exc:
        detail = str(exc).removeprefix(f"{root / FORMAT_FILE}: ")
        report.problems.append(Problem(root / FORMAT_FILE, "bad-format-file", detail=detail))


def _check_attrs(p: Path, siblings: set[str], report: Report) -> dict | None:
    """Check one attrs JSON file; return its attributes (None if it does not decode)."""
    decoded = None
    try:
        decoded = read_attrs_file(p)
    except (FormatError, OSError) as exc:
        report.problems.append(Problem(p, "bad-attrs", detail=str(exc)))
    if not p.name.endswith(ATTRS_SUFFIX):
        return decoded
    stem = p.name[: -len(ATTRS_SUFFIX)]
    if stem + ARRAY_SUFFIX in siblings:
        return decoded
    try:
        links = os.lstat(p).st_nlink
    except OSError:
        links = 1
    if links > 1:  # the same attrs live on under another name: an interrupted move
        detail = f"a second name of attrs linked elsewhere ({links} links): an interrupted move"
        report.problems.append(Problem(p, "duplicate-attrs", detail=detail))
    else:
        report.problems.append(Problem(p, "orphan-attrs", detail=f"no array {stem}.npy beside it"))
    return decoded


def repair(path: str | os.PathLike) -> Report:
    """Fix what can be fixed without touching user data; raise for what cannot.

    Trims torn appends back to the shape in their header, removes stray temp files and second
    names of moved attrs, and rewrites a stale ``attrs.npy`` from ``attrs.json`` (the source of
    truth), holding the store's writer lock (so it refuses to run while a writer has the store
    open).  Nothing is written through a symbolic link that leaves the store.

    Returns
    -------
    Report
        ``repaired`` lists what was fixed; ``problems`` is empty.

    Raises
    ------
    IntegrityError
        Problems remain that repair refuses to guess at (truncated data, broken headers or
        attrs); the safe repairs have been done.  ``exc.report`` holds the report.
    LockError
        A writer holds the store.
    FormatError
        The directory is not a store (see :func:`npydir.store.group.store_kind`).
    """
    root = Path(path)
    if not root.is_dir():
        raise StoreNotFoundError(f"store {root} does not exist or is not a directory")
    store_kind(root)  # before the lock: a directory that is not a store gets no lock file
    real_root = os.path.realpath(root)
    lock = StoreLock(root)
    lock.acquire()
    try:
        found = verify(root)
        report = Report(root, checked=found.checked)
        for problem in found.problems:
            if problem.kind == "torn-append":
                try:
                    fd = _open_inside(real_root, problem.file, os.O_RDWR)
                except PathEscapeError as exc:  # a link swapped in since verify looked
                    report.problems.append(Problem(problem.file, "path-escape", detail=str(exc)))
                    continue
                with open(fd, "r+b") as fp:
                    # re-read under the lock: trim to exactly what the header promises now
                    header = read_header(fp, problem.file)
                    if os.fstat(fp.fileno()).st_size > header.expected_size:
                        fp.truncate(header.expected_size)
                        fp.flush()
                        os.fsync(fp.fileno())
                report.repaired.append(problem)
            elif problem.kind in ("duplicate-attrs", "stray-temp"):
                # unlinked in its directory, opened and checked to be inside the store: a
                # directory swapped for a link since verify looked leads nowhere
                try:
                    with fsutil.directory(problem.file.parent, root=real_root) as dfd:
                        name = problem.file.name
                        # re-check under the lock: only a second name of a still-linked inode
                        if problem.kind == "stray-temp" or os.lstat(name, dir_fd=dfd).st_nlink > 1:
                            os.unlink(name, dir_fd=dfd)
                except FileNotFoundError:
                    pass
                except PathEscapeError as exc:
                    report.problems.append(Problem(problem.file, "path-escape", detail=str(exc)))
                    continue
                report.repaired.append(problem)
            elif problem.kind == "stale-attrs-npy":
                left = _rewrite_legacy(real_root, problem)
                if left is None:
                    report.repaired.append(problem)
                else:
                    report.problems.append(left)
            else:
                report.problems.append(problem)
    finally:
        lock.release()
    if report.problems:
        error = IntegrityError(
            f"repair of {root} left {len(report.problems)} problem(s) it will not guess at "
            f"(repaired {len(report.repaired)}):\n"
            + "\n".join(f"  {p}" for p in report.problems)
            + "\nrestore these files from a copy, or delete the affected arrays"
        )
        error.report = report  # type: ignore[attr-defined]
        raise error
    return report
