"""The writer lock of a store: one writer at a time, readers take no lock.

Write modes take an exclusive, non-blocking ``fcntl.flock`` on ``<root>/.npydir.lock`` and record
``{"pid", "host", "time"}`` in it.  A second writer (another process, or the same process
opening the store again) gets :class:`~npydir.errors.LockError` naming the store and the pid
holding it.  The kernel drops a flock when its holder dies, so a lock file still naming a
writer while the flock is free was left by a killed writer: it is taken over, with a warning on
the ``npydir`` logger.  Closing empties the file and releases the flock (the file is kept:
unlinking a lock file races with the next locker).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import time
import weakref
from pathlib import Path

from .errors import LockError, ReadOnlyError

__all__ = ["LOCK_NAME", "StoreLock"]

LOCK_NAME = ".npydir.lock"
log = logging.getLogger("npydir")

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locking
    fcntl = None


#: locks held by this process; a forked child must not keep them (see _drop_in_child)
_HELD: weakref.WeakSet[StoreLock] = weakref.WeakSet()


def _drop_in_child() -> None:
    """After fork: close the child's copies of lock descriptors without releasing the lock.

    A flock belongs to the open file description, which the child shares; if the child kept its
    copy (e.g. a DataLoader worker), the store would stay locked after the parent closed it.
    Closing the copy leaves the parent's lock in place.
    """
    for lock in list(_HELD):
        fd, lock._fd = lock._fd, None
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

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock or raise :class:`LockError`."""
        if self._fd is not None:
            return
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except (PermissionError, OSError) as exc:
            if isinstance(exc, PermissionError) or exc.errno == errno.EROFS:
                raise ReadOnlyError(
                    f"cannot open store {self.root} for writing: {exc.strerror} "
                    f"({self.path}); open it read-only with mode 'r'"
                ) from None
            raise
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = _read_holder(fd)
                os.close(fd)
                who = (
                    f"pid {holder.get('pid')} on host {holder.get('host')}"
                    if holder
                    else "another process (no pid recorded)"
                )
                if holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
                    who = f"this process (pid {os.getpid()}): close the other write handle first"
                raise LockError(
                    f"store {self.root} is locked for writing by {who}; "
                    f"open it read-only (mode 'r') or wait for that writer to close it"
                ) from None
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
        os.ftruncate(fd, 0)
        os.pwrite(fd, info, 0)
        self._fd = fd
        _HELD.add(self)

    def release(self) -> None:
        """Empty the lock file and release the lock (idempotent)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        _HELD.discard(self)
        try:
            os.ftruncate(fd, 0)
        except OSError:
            pass
        finally:
            os.close(fd)  # closing the descriptor releases the flock

    def __del__(self) -> None:  # a forgotten writer must not keep the store locked forever
        try:
            self.release()
        except Exception:
            pass
