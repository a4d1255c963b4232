"""The store's file-system primitives: safe opens, fsync of directories, publishing, removal.

Opening the store's files and directories safely: no links followed out, no special files.

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

Besides: :func:`fsync_dir` (make a rename durable), :func:`publish_directory` (put a finished
directory in place atomically, replacing an old one by swapping two names), and
:func:`remove_tree` / :func:`remove`, the one way npydir deletes a tree.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import stat
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from ..errors import FormatError, PathEscapeError

__all__ = [
    "DirFd",
    "O_NOFOLLOW",
    "check_fd_inside",
    "directory",
    "exchange",
    "fd_path",
    "fsync_dir",
    "lexists",
    "name_at",
    "open_dir",
    "owned",
    "open_file",
    "publish_directory",
    "read_bytes",
    "remove",
    "remove_tree",
    "rename_new",
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


#: errnos of a file system that cannot fsync a directory: nothing to make durable there
_FSYNC_UNSUPPORTED = frozenset(
    getattr(errno, n) for n in ("EINVAL", "ENOTSUP", "EOPNOTSUPP", "EROFS") if hasattr(errno, n)
)


def fsync_dir(directory: str | os.PathLike, *, fd: int | None = None) -> None:
    """fsync a directory so a rename or creation in it is durable (no-op where unsupported).

    ``fd``: the directory already open (then ``directory`` is not opened again).  A directory
    that cannot be opened, or a file system that cannot fsync one, is skipped; an I/O error
    of the fsync itself (the names may not be on the disk) is raised, naming the directory.
    """
    own = fd is None
    if fd is None:
        try:
            fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        except OSError:
            return
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in _FSYNC_UNSUPPORTED:
            raise OSError(exc.errno, f"{exc.strerror} (fsync of the directory)",
                          os.fspath(directory)) from None
    finally:
        if own:
            os.close(fd)


def remove(path: str | os.PathLike) -> None:
    """Remove what is at ``path``: a directory tree, a link (never its target) or a file.

    Nothing there is fine.  Trees go through :func:`remove_tree`, the one removal npydir uses:
    ``shutil.rmtree``'s descriptor-based walk also never follows a link, but it recurses (a
    deep tree raises RecursionError half-deleted), crosses into file systems mounted below and
    does not check that ``..`` is still the directory it came from.
    """
    path = os.path.abspath(os.fspath(path))
    try:
        with directory(os.path.dirname(path)) as parent:
            remove_tree(parent, os.path.basename(path), path)
    except FileNotFoundError:
        pass


#: renameat2 flags (<linux/fs.h>)
RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2


def _load_renameat2():
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_RENAMEAT2 = _load_renameat2()


def rename2(src: str | os.PathLike, dst: str | os.PathLike, flags: int) -> bool:
    """``renameat2(src, dst, flags)``; False when the system or file system lacks it.

    Any other failure is raised as an ``OSError`` naming both paths."""
    if _RENAMEAT2 is None:
        return False
    if _RENAMEAT2(-100, os.fsencode(src), -100, os.fsencode(dst), flags) == 0:  # AT_FDCWD
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), os.fspath(src), None, os.fspath(dst))


def exchange(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Swap the names ``a`` and ``b`` in one step; False where that is not supported."""
    return rename2(a, b, RENAME_EXCHANGE)


def rename_new(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Rename ``src`` to ``dst``, which must not exist (never replaces what appeared there)."""
    if rename2(src, dst, RENAME_NOREPLACE):
        return
    if os.path.lexists(dst):
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), os.fspath(dst))
    os.rename(src, dst)


def _identity(st: os.stat_result | None) -> tuple[int, int] | None:
    return None if st is None else (st.st_dev, st.st_ino)


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def publish_directory(
    partial: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    overwrite: bool,
    aside: str | os.PathLike,
    before_replace: Callable[[os.stat_result], None] | None = None,
) -> None:
    """Put the finished ``partial`` (a directory, or a file) at ``dst`` by renaming it.

    At every instant ``dst`` is either what it was or the complete result, and the change is
    durable (the parent directory is fsynced) when this returns:

    * a new ``dst`` appears with one rename that never replaces anything (``RENAME_NOREPLACE``;
      something that appeared at ``dst`` meanwhile is kept);
    * with ``overwrite``, an existing ``dst`` is swapped with the result in one step (Linux
      ``renameat2(RENAME_EXCHANGE)``; a file replacing a file needs only ``os.replace``) and
      the old one, now under the partial name, removed;
    * where two names cannot be swapped, the old ``dst`` is renamed to ``aside`` first, then
      the result to ``dst``, then ``aside`` removed.  A crash between the two renames leaves the
      old copy at ``aside`` and the complete result at ``partial``: the caller finishes that.

    Parameters
    ----------
    partial, dst, aside : path
        The result, where it goes, and where the old ``dst`` waits if it cannot be swapped
        (all in one directory; nothing may be at ``aside``).
    overwrite : bool
        Replace an existing ``dst``; False: an existing ``dst`` is an error.
    before_replace : callable, optional
        Called with the ``lstat`` of the ``dst`` about to be replaced, before anything moves
        (a journal records which directory may be removed after a crash).

    Raises
    ------
    FileExistsError
        ``dst`` exists (or appeared) and ``overwrite`` is False, or something is at ``aside``;
        its ``filename`` is that path.
    """
    partial, dst, aside = Path(partial), Path(dst), Path(aside)
    old = _lstat(dst)
    if old is None:
        rename_new(partial, dst)
        fsync_dir(dst.parent)
        return
    if not overwrite:
        raise FileExistsError(errno.EEXIST, "exists and overwrite is False", os.fspath(dst))
    if before_replace is not None:
        before_replace(old)
    new = _lstat(partial)
    if stat.S_ISREG(old.st_mode) and new is not None and stat.S_ISREG(new.st_mode):
        os.replace(partial, dst)
        fsync_dir(dst.parent)
        return
    if exchange(partial, dst):
        fsync_dir(dst.parent)
        moved = _lstat(partial)  # the old dst, not something planted there meanwhile
        if moved is not None and not stat.S_ISLNK(moved.st_mode) and (
            _identity(moved) == _identity(old)
        ):
            remove(partial)
            fsync_dir(dst.parent)
        return
    if _lstat(aside) is not None:
        raise FileExistsError(
            errno.EEXIST, f"exists; expected nothing there (the old {dst.name} is moved there "
            "while it is replaced)", os.fspath(aside),
        )
    rename_new(dst, aside)
    fsync_dir(dst.parent)
    rename_new(partial, dst)
    fsync_dir(dst.parent)
    remove(aside)
    fsync_dir(dst.parent)
