"""The journal that makes conversions resumable.

A conversion into ``DST`` builds ``.DST.partial`` next to it and keeps a journal
``.DST.partial.journal`` beside that: JSON lines, the first one the *plan* (source, options,
every array's shape and dtype), then one line per finished block ``{"a": path, "r": [i, j]}``
and finally ``{"done": true}``.  Block lines are appended only after the destination has been
flushed (msync / HDF5 flush) and the journal is fsynced after them, so a line in the journal
always means the rows are on disk.  A torn last line (the process died while writing it) is
ignored.  With ``durable=False`` nothing is fsynced: the order (data, then its journal line)
still holds for a killed process, whose writes the page cache keeps, but not for a power
cut.  The journal is locked (``flock``) for the duration of a conversion, so two
conversions into the same destination cannot interleave.

The journal is opened without following a link and must be a regular file with one name
(:func:`npydir.conversion.files.open_regular`).  Besides the plan and the blocks it records the
identity of the partial result (``{"partial": [dev, ino]}``, written before anything is
written into it) and, while ``overwrite=True`` replaces an existing destination, the identity
of the old one (``{"replace": [dev, ino]}``): a rerun only reuses or removes what carries a
recorded identity, and it can tell a published result from an unpublished one.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from pathlib import Path
from typing import Callable

from .files import open_regular
from ..errors import ConversionError, LockError
from ..store.layout import JOURNAL_SUFFIX


class Journal:
    """Append-only record of finished blocks; see the module docstring."""

    def __init__(self, path: Path, plan: dict, *, interval: float = 2.0, durable: bool = True):
        self.path = Path(path)
        self.durable = durable
        self.plan = plan
        self.interval = float(interval)
        self.done: dict[str, list[tuple[int, int]]] = {}
        self.complete = False
        self.matched = False  # True when an existing journal had the same plan
        self.owner: list[int] | None = None  # identity of the partial result it describes
        self.replacing: list[int] | None = None  # identity of a destination being replaced
        self._pending: list[str] = []
        self._last = time.monotonic()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._fd = open_regular(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND,
                                what="the conversion journal")
        try:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                raise LockError(
                    f"another conversion into {self.path.name[1:-len(JOURNAL_SUFFIX)]!r} "
                    f"is running (journal {self.path} is locked)"
                ) from exc
            self._load()
        except BaseException:  # also ENOSPC: a retry in this process must get the lock
            os.close(self._fd)
            self._fd = -1
            raise

    def _load(self) -> None:
        """Read the journal's state; an empty one gets its plan line (a foreign one is
        refused: it is not ours to truncate)."""
        with open(self._fd, "rb", closefd=False) as fh:
            raw = fh.read()
        if not raw:
            self.reset()
            return
        if not raw.startswith(b'{"plan": '):
            raise ConversionError(f"{self.path}: is not a conversion journal (expected a JSON "
                                  "plan on its first line); remove it or move it away")
        records = []
        for line in raw.decode("utf-8", errors="replace").split("\n"):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                break  # torn tail: everything after it is unreliable
        matched = bool(records) and records[0].get("plan") == self.plan
        for rec in records[1:]:
            if not isinstance(rec, dict):
                break
            if "partial" in rec:
                self.owner = _identity(rec["partial"])
            elif "replace" in rec:
                self.replacing = _identity(rec["replace"])
            elif "a" in rec and matched:
                self.done.setdefault(rec["a"], []).append(tuple(rec["r"]))
            elif rec.get("done"):
                self.complete = True
        self.matched = matched

    def reset(self) -> None:
        """Start the journal over: only the plan, nothing done, no partial result recorded."""
        os.ftruncate(self._fd, 0)
        self.done, self._pending = {}, []
        self.complete = self.matched = False
        self.owner = self.replacing = None
        self._write_now([json.dumps({"plan": self.plan}, sort_keys=True)])

    def record_owner(self, ident: list[int]) -> None:
        """Record (durably) that the partial result is the file or directory ``ident``."""
        self.owner = list(ident)
        self._write_now([json.dumps({"partial": self.owner})], sync=True)

    def record_replacing(self, ident: list[int]) -> None:
        """Record (durably) the identity of the destination about to be replaced."""
        self.replacing = list(ident)
        self._write_now([json.dumps({"replace": self.replacing})], sync=True)

    @property
    def had_previous(self) -> bool:
        return self.matched

    def is_done(self, path: str, start: int, stop: int) -> bool:
        """True when rows ``start:stop`` of ``path`` are covered by finished blocks."""
        covered = start
        for i, j in sorted(self.done.get(path, ())):
            if i <= covered < j:
                covered = j
            if covered >= stop:
                return True
        return covered >= stop

    def record(self, path: str, start: int, stop: int) -> None:
        """Remember a finished block; written at the next :meth:`commit`."""
        self.done.setdefault(path, []).append((start, stop))
        self._pending.append(json.dumps({"a": path, "r": [start, stop]}))

    def due(self) -> bool:
        return bool(self._pending) and (time.monotonic() - self._last >= self.interval)

    def commit(self, flush_data: Callable[[], None]) -> None:
        """Flush the data (``flush_data``: out of process buffers, and to the disk when
        durable), then append (and fsync, when durable) the pending block lines."""
        self.wait()
        if not self._pending:
            return
        lines, self._pending = self._pending, []  # blocks recorded so far: all written
        flush_data()
        self._write_now(lines)
        self._last = time.monotonic()

    def commit_in_background(self, flush_data: Callable[[], None]) -> None:
        """:meth:`commit` in a thread, so the copy goes on while the disk catches up.

        Does nothing while the previous background commit is still running (its blocks and
        the newer ones go into a later commit).  :meth:`commit` and :meth:`wait` join it.
        """
        if not self._pending or (self._thread is not None and self._thread.is_alive()):
            return
        self.wait()
        lines, self._pending = self._pending, []
        self._last = time.monotonic()

        def work() -> None:
            try:
                flush_data()
                self._write_now(lines)
            except BaseException as exc:  # reported by wait() in the converting thread
                self._error = exc

        self._thread = threading.Thread(target=work, name="npydir-journal", daemon=True)
        self._thread.start()

    def wait(self) -> None:
        """Join a background commit; re-raise its error, if any."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def finish(self) -> None:
        self._write_now([json.dumps({"done": True})])
        self.complete = True

    def _write_now(self, lines: list[str], *, sync: bool = False) -> None:
        data = ("\n".join(lines) + "\n").encode("utf-8")
        try:
            while data:
                data = data[os.write(self._fd, data):]
            if self.durable or sync:
                os.fsync(self._fd)
        except OSError as exc:  # e.g. a full disk: say which file
            raise OSError(exc.errno, f"{exc.strerror} (writing the conversion journal)",
                          str(self.path)) from exc

    def close(self, *, remove: bool = False) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._fd >= 0:
            if remove:
                try:
                    os.unlink(self.path)
                except FileNotFoundError:
                    pass
            os.close(self._fd)  # releases the lock
            self._fd = -1


def _identity(value) -> list[int] | None:
    if (isinstance(value, list) and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
        return value
    return None
