"""Opening the store's files and directories safely: no links followed out, no special files.

A store may come from someone else's tarball, and another process may swap a file or directory
for a symbolic link (or a FIFO) between the moment npydir looks it up and the moment it opens it.
So the rules are:

* every path is resolved once: a directory is opened (:func:`open_dir`), checked to be inside
  the store and on its device, and everything below happens relative to that descriptor
  (``dir_fd=``), never through the path again;
* a file the store writes is opened with ``O_NOFOLLOW`` (``O_CREAT | O_EXCL`` where it is
  created), so a link in its place is refused instead of written through;
* every file is opened with ``O_NONBLOCK`` and checked with ``fstat``: a FIFO, socket or device
  in place of a store file is refused with :class:`~npydir.errors.FormatError` naming it,
  instead of blocking forever;
* a read may follow a link that stays inside the store (stores may alias groups and arrays with
  links); what was opened is then checked (``/proc/self/fd``), not the path.

Functions take a ``path`` (for messages, and to open when no ``dir_fd`` is given) and an optional
``dir_fd``: an open, already checked directory holding ``path``, relative to which the last
component of ``path`` is opened.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator

from ..errors import FormatError, PathEscapeError

__all__ = [
    "DirFd",
    "O_NOFOLLOW",
    "check_fd_inside",
    "directory",
    "fd_path",
    "lexists",
    "name_at",
    "open_dir",
    "owned",
    "open_file",
    "read_bytes",
    "remove_tree",
]

O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)

_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISLNK, "a symbolic link"),
    (stat.S_ISREG, "a regular file"),
)


def kind_of(mode: int) -> str:
    """What a file of ``st_mode`` ``mode`` is, in words ("a FIFO (named pipe)", ...)."""
    for test, words in _KINDS:
        if test(mode):
            return words
    return f"a special file (mode {oct(mode)})"


def name_at(path: str | os.PathLike, dir_fd: int | None) -> str:
    """What ``os`` calls take for ``path``: its last component with ``dir_fd``, else itself."""
    return os.path.basename(os.fspath(path)) if dir_fd is not None else os.fspath(path)


class DirFd(int):
    """The descriptor of an open directory, with the store it was checked against.

    An ``int`` (``os`` functions take it as ``dir_fd=``) that also carries the store's real path
    and device, so a read that follows a link in that directory (:func:`open_file` with
    ``follow=True``) can check where the link led.
    """

    root: str | None
    root_dev: int | None

    def __new__(cls, fd: int, root: str | None = None, root_dev: int | None = None) -> DirFd:
        self = super().__new__(cls, fd)
        self.root, self.root_dev = root, root_dev
        return self


def fd_path(fd: int) -> str | None:
    """Where the open ``fd`` is now (``/proc/self/fd``), or None where that cannot be known."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None


def check_fd_inside(
    fd: int, root: str, path: str | os.PathLike, root_dev: int | None = None
) -> None:
    """Raise :class:`PathEscapeError` unless the open ``fd`` lies inside ``root`` (a real path).

    Checks the descriptor, not the path: a link swapped in after the open changes nothing.
    ``root_dev`` (the store's ``st_dev``) also refuses another file system mounted inside.
    Without ``/proc`` the path is resolved and must name the same inode as ``fd``.
    """
    where = fd_path(fd)
    st = os.fstat(fd)
    if where is None:  # no /proc: resolve the path and require it to be what we opened
        where = os.path.realpath(path)
        try:
            again = os.stat(where)
        except OSError:
            again = None
        if again is None or (again.st_dev, again.st_ino) != (st.st_dev, st.st_ino):
            raise PathEscapeError(f"{path}: changed while it was being opened (a link swapped in?)")
    root = root.rstrip(os.sep) or os.sep
    if where != root and not where.startswith(root + os.sep if root != os.sep else root):
        raise PathEscapeError(
            f"{path} resolves to {where}, outside the store {root} (symbolic link?)"
        )
    if root_dev is not None and st.st_dev != root_dev:
        raise PathEscapeError(
            f"{path} is on another file system than the store {root} (a mount point inside it); "
            "npydir does not cross file systems"
        )


def open_dir(
    path: str | os.PathLike,
    *,
    dir_fd: int | None = None,
    follow: bool = True,
    root: str | None = None,
    root_dev: int | None = None,
) -> DirFd:
    """Open a directory (``O_DIRECTORY``) and return its descriptor (a :class:`DirFd`).

    Parameters
    ----------
    path : path
        The directory (opened by its last component when ``dir_fd`` is given).
    dir_fd : int, optional
        An open directory holding ``path``.
    follow : bool
        Follow a symbolic link as the last component (False: ``O_NOFOLLOW``, a link is refused).
    root, root_dev : optional
        The store's real path and device: the directory opened must lie inside (see
        :func:`check_fd_inside`).

    Raises
    ------
    FileNotFoundError
        It does not exist.
    FormatError
        It is not a directory (a file, a FIFO, ... or, with ``follow=False``, a link).
    PathEscapeError
        It lies outside ``root``.
    """
    flags = os.O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NONBLOCK | (0 if follow else O_NOFOLLOW)
    try:
        fd = os.open(name_at(path, dir_fd), flags, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ENOTDIR, errno.ELOOP):
            raise FormatError(f"{path}: {_found(path, dir_fd)}; expected a directory") from None
        raise
    try:
        if not stat.S_ISDIR(os.fstat(fd).st_mode):  # O_DIRECTORY missing on this platform
            raise FormatError(f"{path}: {kind_of(os.fstat(fd).st_mode)}; expected a directory")
        if root is not None:
            check_fd_inside(fd, root, path, root_dev)
    except BaseException:
        os.close(fd)
        raise
    return DirFd(fd, root, root_dev)


def _found(path: str | os.PathLike, dir_fd: int | None) -> str:
    try:
        return "is " + kind_of(os.lstat(name_at(path, dir_fd), dir_fd=dir_fd).st_mode)
    except OSError:
        return "cannot be opened as one"


@contextlib.contextmanager
def directory(path: str | os.PathLike, **kwargs) -> Iterator[DirFd]:
    """:func:`open_dir` as a context manager: the descriptor is closed at the end."""
    fd = open_dir(path, **kwargs)
    try:
        yield fd
    finally:
        os.close(fd)


@contextlib.contextmanager
def owned(fd: int) -> Iterator[int]:
    """Close the already open ``fd`` at the end of the ``with`` block."""
    try:
        yield fd
    finally:
        os.close(fd)


def open_file(
    path: str | os.PathLike,
    flags: int = os.O_RDONLY,
    *,
    dir_fd: int | None = None,
    follow: bool = False,
    root: str | None = None,
    root_dev: int | None = None,
    mode: int = 0o666,
) -> int:
    """Open a regular file of the store and return its descriptor (blocking mode, close-on-exec).

    Opened with ``O_NONBLOCK`` (a FIFO in its place would block a reader forever) and checked with
    ``fstat``; anything but a regular file is refused.  ``O_CREAT`` in ``flags`` adds ``O_EXCL``:
    the store only creates files under fresh names.

    Parameters
    ----------
    path : path
        The file (its last component when ``dir_fd`` is given).
    flags : int
        ``os.O_RDONLY``, ``os.O_RDWR``, ``os.O_WRONLY | os.O_CREAT``, ...
    dir_fd : int, optional
        An open, checked directory holding ``path``.
    follow : bool
        Follow a symbolic link as the last component (reads only; then ``root``, or the store
        a :class:`DirFd` was checked against, checks where it led).  False (the default):
        ``O_NOFOLLOW``, a link is refused.
    root, root_dev : optional
        Check the file opened lies inside the store (default: the ``root`` of a
        :class:`DirFd` ``dir_fd`` when following links).
    mode : int
        Permissions of a created file.

    Raises
    ------
    FileNotFoundError
        It does not exist (without ``O_CREAT``).
    FormatError
        It is not a regular file: a FIFO, socket, device, directory, or (``follow=False``) a
        symbolic link; the message names the file and what it is.
    PathEscapeError
        It lies outside ``root``.
    """
    if flags & os.O_CREAT:
        flags |= os.O_EXCL
    if follow and root is None and isinstance(dir_fd, DirFd):
        root, root_dev = dir_fd.root, dir_fd.root_dev
    full = flags | O_NONBLOCK | O_CLOEXEC | (0 if follow else O_NOFOLLOW)
    try:
        fd = os.open(name_at(path, dir_fd), full, mode, dir_fd=dir_fd)
    except OSError as exc:
        # ELOOP: a link under O_NOFOLLOW; ENXIO: a FIFO/socket opened for writing with no reader;
        # EISDIR: a directory opened for writing
        if exc.errno in (errno.ELOOP, errno.ENXIO, errno.EISDIR, errno.ENODEV, errno.EOPNOTSUPP):
            raise FormatError(
                f"{path}: {_found(path, dir_fd)}; expected a regular file"
                + (" (npydir does not write through links)" if exc.errno == errno.ELOOP else "")
            ) from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise FormatError(f"{path}: is {kind_of(st.st_mode)}; expected a regular file")
        if root is not None:
            check_fd_inside(fd, root, path, root_dev)
        if O_NONBLOCK:
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_bytes(
    path: str | os.PathLike,
    *,
    dir_fd: int | None = None,
    follow: bool = True,
    root: str | None = None,
    root_dev: int | None = None,
    limit: int | None = None,
) -> bytes:
    """The bytes of a regular file (refusing FIFOs, devices, ... as :func:`open_file` does).

    ``limit``: read at most that many bytes plus one (the caller refuses longer files).
    """
    fd = open_file(path, dir_fd=dir_fd, follow=follow, root=root, root_dev=root_dev)
    with os.fdopen(fd, "rb") as fp:
        return fp.read() if limit is None else fp.read(limit + 1)


def remove_tree(parent_fd: int, name: str, path: str | os.PathLike) -> None:
    """Delete the directory ``name`` of the open directory ``parent_fd`` and all below it.

    Nothing is resolved by path: each directory is opened ``O_NOFOLLOW`` relative to its parent's
    descriptor, so a directory swapped for a link (to anywhere) while this runs is unlinked as a
    link, never followed.  Iterative (a 4 KiB path allows ~2000 levels, past Python's recursion
    limit) with one directory open at a time: going back up opens ``..`` and checks it is the
    directory it came from (device and inode), else stops with :class:`PathEscapeError`.
    Another file system mounted below is not entered (PathEscapeError).  ``path`` names the
    tree in messages.  A ``name`` that is a link or a file is just unlinked.
    """
    try:
        top = open_dir(name, dir_fd=parent_fd, follow=False)
    except FormatError:  # a link or a file in its place: remove that name only
        os.unlink(name, dir_fd=parent_fd)
        return
    dev = os.fstat(parent_fd).st_dev
    cur: int = top
    # (name in its parent, (dev, ino)) from the top down to the current directory
    stack = [(name, _ident(top))]
    try:
        if stack[0][1][0] != dev:
            raise PathEscapeError(f"{path}: another file system is mounted here; not deleted")
        while stack:
            sub = None
            with os.scandir(cur) as it:
                for entry in it:
                    if entry.is_dir(follow_symlinks=False):
                        sub = entry.name
                        break
                    try:
                        os.unlink(entry.name, dir_fd=cur)
                    except FileNotFoundError:
                        pass
                    except IsADirectoryError:  # swapped for a directory since listed
                        sub = entry.name
                        break
            if sub is not None:
                try:
                    child = open_dir(sub, dir_fd=cur, follow=False)
                except FormatError:  # swapped for a link or file since listed
                    os.unlink(sub, dir_fd=cur)
                    continue
                except FileNotFoundError:
                    continue
                ident = _ident(child)
                if ident[0] != dev:
                    os.close(child)
                    where = os.path.join(os.fspath(path), *[n for n, _ in stack[1:]], sub)
                    raise PathEscapeError(
                        f"{where}: another file system is mounted here; not deleted"
                    )
                os.close(cur)
                cur = child
                stack.append((sub, ident))
                continue
            done, _ = stack.pop()
            if stack:
                up: int = open_dir("..", dir_fd=cur, follow=False)
                if _ident(up) != stack[-1][1]:
                    os.close(up)
                    raise PathEscapeError(
                        f"{path}: a directory was moved while it was being deleted; stopped"
                    )
            else:
                up = parent_fd
            os.close(cur)
            cur = up
            os.rmdir(done, dir_fd=up)
    finally:
        if cur != parent_fd:
            os.close(cur)


def lexists(path: str | os.PathLike, *, dir_fd: int | None = None) -> bool:
    """Whether ``path`` (in ``dir_fd``, if given) names anything, a dangling link included."""
    try:
        os.lstat(name_at(path, dir_fd), dir_fd=dir_fd)
    except FileNotFoundError:
        return False
    return True


def _ident(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return (st.st_dev, st.st_ino)
