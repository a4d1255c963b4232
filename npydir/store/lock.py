"""The writer lock of a store: one writer at a time, readers take no lock.

Write modes take an exclusive, non-blocking ``fcntl.flock`` on the store directory and on
``<root>/.npydir.lock``, and record ``{"pid", "host", "time"}`` in the lock file.  A second
writer (another process, or the same process opening the store again) gets
:class:`~npydir.errors.LockError` naming the store and the pid holding it.  The directory's lock
keeps a second writer out even if the lock file is removed under the first; the lock file's lock
keeps out any writer that locks only the file (the lock :mod:`npydir.store.layout` names), and is
checked to still be the file at its path once locked.  The lock file is opened without following links (a link or special
file in its place is refused, never written through).  The kernel drops a flock when its holder
dies, so a lock file still naming a writer while the flock is free was left by a killed writer:
it is taken over, with a warning on the ``npydir`` logger.  Closing empties the file and
releases the flocks (the file is kept: unlinking a lock file races with the next locker).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import stat
import time
import weakref
from pathlib import Path

from .fsutil import O_CLOEXEC, O_DIRECTORY, O_NOFOLLOW, O_NONBLOCK, kind_of
from ..errors import FormatError, LockError, ReadOnlyError
from .layout import LOCK_NAME
from .npyfile import named_oserror

__all__ = ["LOCK_NAME", "StoreLock"]

log = logging.getLogger("npydir")

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locking
    fcntl = None  # type: ignore[assignment]  # checked before every use


#: how often a lock file replaced while being locked is tried again
_RETRIES = 100
#: errnos of a file system that has no (working) flock
_NO_LOCKING = frozenset(
    getattr(errno, n) for n in ("ENOLCK", "EOPNOTSUPP", "ENOTSUP", "ENOSYS", "EINVAL", "EBADF")
    if hasattr(errno, n)
)
#: errnos of a full disk, quota or file-size limit
_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


#: locks held by this process; a forked child must not keep them (see _drop_in_child)
_HELD: weakref.WeakSet[StoreLock] = weakref.WeakSet()


def _drop_in_child() -> None:
    """After fork: close the child's copies of lock descriptors without releasing the lock.

    A flock belongs to the open file description, which the child shares; if the child kept its
    copy (e.g. a DataLoader worker), the store would stay locked after the parent closed it.
    Closing the copy leaves the parent's lock in place.
    """
    for lock in list(_HELD):
        fds = (lock._fd, lock._dir_fd)
        lock._fd = lock._dir_fd = None
        for fd in fds:
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_drop_in_child)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def _read_holder(fd: int) -> dict:
    try:
        raw = os.pread(fd, 4096, 0)
        info = json.loads(raw.decode("utf-8")) if raw.strip() else {}
        return info if isinstance(info, dict) else {}
    except (OSError, ValueError):
        return {}


class StoreLock:
    """Exclusive writer lock on a store directory.

    Parameters
    ----------
    root : path
        The store directory.
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.path = self.root / LOCK_NAME
        self._fd: int | None = None
        self._dir_fd: int | None = None
        self._pid = os.getpid()

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock or raise :class:`LockError`.

        Two locks are taken: a flock on the store directory, which no one can delete or replace
        while the store exists (so removing ``.npydir.lock`` under a writer admits no second
        one), and a flock on ``.npydir.lock``, which also excludes any writer that locks only
        the file (the lock the on-disk layout names).  The lock file is opened without following links and must be a regular file
        of the store; after its flock is taken it must still be the file at its path (else it
        was replaced in between and the whole acquisition is retried).
        """
        if self._fd is not None:
            return
        self._pid = os.getpid()
        dir_fd = self._lock_directory()
        try:
            for _ in range(_RETRIES):
                fd = self._open_lock_file()
                try:
                    self._flock_file(fd)
                    if self._still_at_path(fd):
                        self._record_holder(fd)
                        break
                except BaseException:
                    os.close(fd)
                    raise
                os.close(fd)  # replaced between open and flock: the path's file is the lock
            else:
                raise LockError(
                    f"cannot lock store {self.root}: {self.path} was replaced {_RETRIES} times "
                    "while being locked; something keeps recreating it"
                )
        except BaseException:
            if dir_fd is not None:
                os.close(dir_fd)
            raise
        self._fd, self._dir_fd = fd, dir_fd
        _HELD.add(self)

    def _who(self, fd: int | None) -> str:
        holder = _read_holder(fd) if fd is not None else {}
        if holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
            return f"this process (pid {os.getpid()}): close the other write handle first"
        if holder:
            return f"pid {holder.get('pid')} on host {holder.get('host')}"
        return "another process (no pid recorded)"

    def _held_elsewhere(self, fd: int | None) -> LockError:
        return LockError(
            f"store {self.root} is locked for writing by {self._who(fd)}; "
            f"open it read-only (mode 'r') or wait for that writer to close it"
        )

    def _lock_directory(self) -> int | None:
        """flock the store directory itself; None where directories cannot be locked."""
        if fcntl is None:
            return None
        try:
            dir_fd = os.open(self.root, os.O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        except OSError as exc:
            raise self._cannot_open(exc, self.root) from None
        try:
            fcntl.flock(dir_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(dir_fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                fd = self._open_existing_quietly()
                try:
                    raise self._held_elsewhere(fd) from None
                finally:
                    if fd is not None:
                        os.close(fd)
            if exc.errno in _NO_LOCKING:
                # e.g. NFS refuses a lock on a read-only descriptor: the lock file alone decides
                return None
            raise named_oserror(exc, self.root) from None
        return dir_fd

    def _open_existing_quietly(self) -> int | None:
        """The lock file, for reading the holder's pid; None if it is not a plain file."""
        try:
            fd = os.open(self.path, os.O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        except OSError:
            return None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            return None
        return fd

    def _refuse_kind(self, st: os.stat_result) -> FormatError:
        what = kind_of(st.st_mode)
        extra = ""
        if stat.S_ISLNK(st.st_mode):
            try:
                extra = f" to {os.readlink(self.path)}"
            except OSError:
                pass
        return FormatError(
            f"{self.path}: the store's lock file is {what}{extra}, expected a regular file "
            f"(npydir never writes through it); remove it and open the store again"
        )

    def _open_lock_file(self) -> int:
        """Open (or create) the lock file: never through a link, never a special file."""
        flags = os.O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC
        for _ in range(_RETRIES):
            try:
                st = os.lstat(self.path)
            except FileNotFoundError:
                try:  # create it ourselves: O_EXCL never opens what someone else put there
                    return os.open(self.path, flags | os.O_CREAT | os.O_EXCL, 0o644)
                except FileExistsError:
                    continue  # another locker created it first: open theirs
                except OSError as exc:
                    raise self._cannot_open(exc) from None
            except OSError as exc:
                raise self._cannot_open(exc) from None
            if not stat.S_ISREG(st.st_mode):
                raise self._refuse_kind(st)
            try:
                fd = os.open(self.path, flags)
            except FileNotFoundError:
                continue  # removed since lstat: look again
            except OSError as exc:
                if exc.errno == errno.ELOOP:  # replaced by a link since lstat
                    raise self._refuse_kind(os.lstat(self.path)) from None
                raise self._cannot_open(exc) from None
            fst = os.fstat(fd)
            if not stat.S_ISREG(fst.st_mode):
                os.close(fd)
                raise self._refuse_kind(fst)
            return fd
        raise LockError(
            f"cannot lock store {self.root}: {self.path} kept appearing and disappearing"
        )

    def _cannot_open(self, exc: OSError, path: Path | None = None) -> OSError:
        path = self.path if path is None else path
        if isinstance(exc, PermissionError) or exc.errno == errno.EROFS:
            return ReadOnlyError(
                f"cannot open store {self.root} for writing: {exc.strerror} "
                f"({path}); open it read-only with mode 'r'"
            )
        return named_oserror(exc, path)

    def _flock_file(self, fd: int) -> None:
        if fcntl is None:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise self._held_elsewhere(fd) from None
            if exc.errno in _NO_LOCKING:
                raise LockError(
                    f"cannot lock store {self.root}: the file system of {self.path} does not "
                    f"support file locks ({errno.errorcode.get(exc.errno or 0, exc.errno)}: "
                    f"{exc.strerror}), so npydir cannot keep a second writer out; "
                    "write the store on a local file system"
                ) from None
            raise named_oserror(exc, self.path) from None

    def _still_at_path(self, fd: int) -> bool:
        """Whether the locked file is still the one at the path (not removed or replaced)."""
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return False
        fst = os.fstat(fd)
        return (st.st_dev, st.st_ino) == (fst.st_dev, fst.st_ino)

    def _record_holder(self, fd: int) -> None:
        """Log a dead writer's lock being taken over; record this writer (best effort)."""
        stale = _read_holder(fd)
        if stale:
            pid = stale.get("pid")
            same_host = stale.get("host") == socket.gethostname()
            state = (
                "is dead"
                if (same_host and isinstance(pid, int) and not _pid_alive(pid))
                else "did not close the store"
            )
            log.warning(
                "npydir: taking over the stale writer lock of %s left by pid %s on host %s (it %s)",
                self.root,
                pid,
                stale.get("host"),
                state,
            )
        info = json.dumps(
            {"pid": os.getpid(), "host": socket.gethostname(), "time": time.time()}
        ).encode()
        try:
            # Overwrite first, then cut: no moment with an empty file, and the lock is held
            # either way.  On a full disk the pid cannot be recorded: the lock still works
            # (a second writer is told "no pid recorded"), so a full store can be opened to
            # delete something.
            os.pwrite(fd, info, 0)
            os.ftruncate(fd, len(info))
        except OSError as exc:
            if exc.errno not in _NO_SPACE:
                raise named_oserror(exc, self.path) from None
            try:
                os.ftruncate(fd, 0)  # no half-written pid
            except OSError:
                pass

    def release(self) -> None:
        """Empty the lock file and release the lock (idempotent)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        dir_fd, self._dir_fd = self._dir_fd, None
        _HELD.discard(self)
        try:
            if os.getpid() == self._pid:  # a forked copy must not erase its parent's record
                os.ftruncate(fd, 0)
        except OSError:
            pass
        finally:
            os.close(fd)  # closing the descriptors releases the flocks
            if dir_fd is not None:
                os.close(dir_fd)

    def __del__(self) -> None:  # a forgotten writer must not keep the store locked forever
        try:
            self.release()
        except Exception:
            pass
