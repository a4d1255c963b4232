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
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from pathlib import Path
from typing import Callable

from .errors import LockError


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
        self._pending: list[str] = []
        self._last = time.monotonic()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self._fd)
            raise LockError(
                f"another conversion into {self.path.name[1:-len('.partial.journal')]!r} is "
                f"running (journal {self.path} is locked)"
            ) from exc
        self._load()

    def _load(self) -> None:
        with open(self.path, encoding="utf-8", errors="replace") as fh:
            lines = fh.read().split("\n")
        records = []
        for line in lines:
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                break  # torn tail: everything after it is unreliable
        if records and records[0].get("plan") == self.plan:
            self.matched = True
            for rec in records[1:]:
                if "a" in rec:
                    self.done.setdefault(rec["a"], []).append(tuple(rec["r"]))
                elif rec.get("done"):
                    self.complete = True
        else:
            os.ftruncate(self._fd, 0)
            self._write_now([json.dumps({"plan": self.plan}, sort_keys=True)])

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

    def _write_now(self, lines: list[str]) -> None:
        data = ("\n".join(lines) + "\n").encode("utf-8")
        os.write(self._fd, data)
        if self.durable:
            os.fsync(self._fd)

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
