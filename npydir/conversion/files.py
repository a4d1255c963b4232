"""The files a conversion owns beside its destination, opened and replaced without trusting names.

A conversion into ``DST`` keeps three names beside it: ``.DST.partial`` (the result being
built), ``.DST.partial.journal`` and, only where the file system cannot swap two names
atomically, ``.DST.replaced`` (the old ``DST`` while ``overwrite=True`` replaces it).  Anyone
who can write the parent directory (or a tarball unpacked there) can plant something under
those names: a symbolic link to a file of the user's, or a directory of their own.  So:

* every one of them is opened with ``O_NOFOLLOW`` (``O_CREAT | O_EXCL`` where it is created,
  ``O_DIRECTORY`` for directories, ``O_NONBLOCK`` so a FIFO cannot hang the open) and checked
  with ``fstat``: a link, a special file or a file with other hard links is refused with a
  one-line :class:`~npydir.errors.ConversionError` naming it;
* the journal records the identity (device and inode) of the partial result the conversion
  created, and nothing at ``.DST.partial`` or ``.DST.replaced`` is reused or removed unless its
  identity is the recorded one (an empty directory or empty file holds nothing and may go);
* ``DST`` is replaced by swapping the two names in one step (Linux ``renameat2`` with
  ``RENAME_EXCHANGE``), so at every instant either the old or the new ``DST`` is there; where
  that is not available, the old one is renamed aside first and a rerun finishes the swap.

This module is private to the conversion code: it holds the few file primitives that need
``O_NOFOLLOW`` semantics beside the destination.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from ..store.fsutil import kind_of
from ..errors import ConversionError

#: flags of every open of a conversion-owned name: never through a link, never blocking
SAFE = os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


def identity(st: os.stat_result) -> list[int]:
    """What the journal records to recognise a file or directory: device and inode."""
    return [int(st.st_dev), int(st.st_ino)]


def lstat(path: Path) -> os.stat_result | None:
    """``os.lstat`` (never through a link), or None when nothing is there."""
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def open_regular(path: Path, flags: int, mode: int = 0o644, *, what: str) -> int:
    """Open ``path`` (a file the conversion owns) without following a link; return the fd.

    ``flags`` are the usual ``os.O_*`` access and creation flags.  A link, a special file or
    a regular file with other hard links (a second name the conversion would write through)
    is refused with a :class:`ConversionError` naming ``path`` and ``what`` it should be.
    """
    try:
        fd = os.open(path, flags | SAFE, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ConversionError(f"{path}: is a symbolic link; expected {what} (a regular "
                                  "file), which is never opened through a link") from None
        if exc.errno == errno.EEXIST:
            raise ConversionError(f"{path}: already exists; expected to create {what} "
                                  "there") from None
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) or exc.filename is None:
            raise OSError(exc.errno, f"{exc.strerror} (opening {what})", os.fspath(path)) \
                from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConversionError(
                f"{path}: is {kind_of(st.st_mode)}; expected {what} (a regular file)"
            )
        if st.st_nlink > 1:
            raise ConversionError(f"{path}: has {st.st_nlink} hard links; expected {what} "
                                  "with one name only")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_directory(path: Path, *, what: str) -> int:
    """Open the directory ``path`` with ``O_DIRECTORY | O_NOFOLLOW``; return the fd.

    A link or anything that is not a directory is refused with a :class:`ConversionError`."""
    try:
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY | SAFE)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            st = lstat(path)
            found = kind_of(st.st_mode) if st is not None else "missing"
            raise ConversionError(f"{path}: is {found}; expected {what} (a directory, "
                                  "never opened through a link)") from None
        raise


def is_empty(path: Path, st: os.stat_result) -> bool:
    """True for an empty directory or an empty regular file (nothing in it to lose)."""
    if stat.S_ISREG(st.st_mode):
        return st.st_size == 0
    if stat.S_ISDIR(st.st_mode):
        fd = open_directory(path, what="a directory")
        try:
            return not os.listdir(fd)
        finally:
            os.close(fd)
    return False
