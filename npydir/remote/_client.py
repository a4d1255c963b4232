"""A byte-range client for one remote store: whole small files, and many ranges at once.

Requests run on one asyncio event loop in a daemon thread of this process (a fresh one after
``fork``), so any thread may call in and dozens of requests are in flight per call.  Every
call waits at most ``Settings.deadline`` seconds: a dead or hanging server is an error, never a
hang.  Errors become the builtin exceptions npydir promises (``FileNotFoundError``,
``PermissionError``, :class:`~npydir.errors.RemoteChangedError`,
:class:`~npydir.errors.RemoteUnavailableError`), each naming the URL.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .._optional import require
from ..errors import RemoteChangedError, RemotePermissionError, RemoteUnavailableError
from ._url import make_store

#: an HTTP 401/403 as obstore words it for a plain HTTP store ("...status code: 403
#: Forbidden"); the status, not any "403" of the message (a port, a path, a duration)
_DENIED_STATUS = re.compile(r"status code: 40[13]\b|\b40[13] (?:Forbidden|Unauthorized)\b")

#: the process whose obstore runtime is running (set at its first request)
_used_pid: int | None = None
_loop_lock = threading.Lock()
_loop: tuple[int, asyncio.AbstractEventLoop] | None = None


def _event_loop() -> asyncio.AbstractEventLoop:
    """This process's request loop, started on first use (and again in a forked child)."""
    global _loop
    with _loop_lock:
        if _loop is None or _loop[0] != os.getpid():
            loop = asyncio.new_event_loop()
            threading.Thread(
                target=loop.run_forever, name="npydir-remote-io", daemon=True
            ).start()
            _loop = (os.getpid(), loop)
        return _loop[1]


@dataclass(frozen=True)
class Meta:
    """Size and ETag of an object, as seen when its header was read."""

    size: int
    etag: str | None


class _Short(Exception):
    """A body shorter than the range asked for (a connection cut mid-reply)."""


class Client:
    """Reads objects of the store at ``url`` (the store's root) by byte ranges.

    Parameters
    ----------
    url : str
        ``s3://bucket/prefix`` or ``http(s)://host/path`` of the store root.
    storage_options : dict, optional
        See :mod:`npydir.remote._url`.
    """

    def __init__(self, url: str, storage_options: dict | None = None) -> None:
        self.url = url.rstrip("/")
        self.storage_options = dict(storage_options or {})
        self._store, self.settings = make_store(self.url, self.storage_options)
        self._pid = os.getpid()
        self._ob = require("obstore", "reading stores over s3:// and http(s)://")
        self._exc = require("obstore.exceptions", "reading stores over s3:// and http(s)://")
        #: bytes received from the server (for the benchmark's fetched/delivered ratio)
        self.bytes_fetched = 0
        self.requests = 0

    @property
    def store(self) -> Any:
        """The library's store object (made again in a child process)."""
        global _used_pid
        pid = os.getpid()
        if _used_pid is not None and _used_pid != pid:
            # obstore's I/O runtime does not survive fork(): requests from the child would
            # wait forever.  Refuse instead of hanging.
            raise RemoteUnavailableError(
                f"reading {self.url} in a process forked after this process read remote "
                f"data: not supported (the I/O runtime does not survive fork). Use "
                f"DataLoader(..., num_workers=0) -- remote batches are fetched by threads, "
                f"many requests at once -- or multiprocessing_context='spawn'"
            )
        if self._pid != pid:
            self._store, _ = make_store(self.url, self.storage_options)
            self._pid = pid
        _used_pid = pid
        return self._store

    def where(self, path: str) -> str:
        return f"{self.url}/{path}" if path else self.url

    # ---------------------------------------------------------------- running

    def _run(self, coro: Any, what: str) -> Any:
        future = asyncio.run_coroutine_threadsafe(coro, _event_loop())
        try:
            return future.result(self.settings.deadline)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise RemoteUnavailableError(
                f"{what}: no complete answer within {self.settings.deadline:.0f} s "
                f"(storage_options timeout={self.settings.timeout}, "
                f"retries={self.settings.retries})"
            ) from None

    def _translate(self, exc: BaseException, path: str) -> BaseException:
        """The npydir error for a library error on ``path``."""
        where = self.where(path)
        e = self._exc
        if isinstance(exc, (e.NotFoundError, FileNotFoundError)):
            return FileNotFoundError(2, f"{where} does not exist", where)
        denied = (e.PermissionDeniedError, e.UnauthenticatedError, PermissionError)
        if isinstance(exc, denied) or _DENIED_STATUS.search(str(exc).split("\n", 1)[0]):
            return RemotePermissionError(
                f"permission denied reading {where} (HTTP 403/401): check the credentials "
                f"(storage_options key/secret/token, or anon=True for a public bucket)"
            )
        if isinstance(exc, e.PreconditionError):
            return RemoteChangedError(
                f"{where} changed on the server since its header was read (ETag no longer "
                f"matches); reopen the store to read the new version"
            )
        first = str(exc).strip().split("\n", 1)[0]
        return RemoteUnavailableError(f"reading {where} failed: {type(exc).__name__}: {first}")

    # ---------------------------------------------------------------- requests

    async def _get(self, path: str, options: dict) -> tuple[Any, Any]:
        self.requests += 1
        result = await self._ob.get_async(self.store, path, options=options)
        data = await result.bytes_async()
        self.bytes_fetched += len(data)
        return result.meta, data

    async def _read(self, path: str, start: int | None, end: int | None, meta: Meta | None):
        """Bytes ``[start, end)`` of ``path`` (the whole object when ``start`` is None),
        checked against ``meta``; cut-off bodies are retried."""
        options: dict[str, Any] = {}
        if start is not None:
            options["range"] = (start, end)
        if meta is not None and meta.etag:
            options["if_match"] = meta.etag
        delay = 0.1
        for attempt in range(self.settings.retries + 1):
            try:
                got, data = await self._get(path, options)
                etag_moved = (meta is not None and meta.etag
                              and got["e_tag"] not in (None, meta.etag))
                if meta is not None and (got["size"] != meta.size or etag_moved):
                    raise RemoteChangedError(
                        f"{self.where(path)} changed on the server since its header was read "
                        f"(size {meta.size} -> {got['size']}, ETag {meta.etag} -> "
                        f"{got['e_tag']}); reopen the store to read the new version"
                    )
                want = None if start is None or end is None else end - start
                if want is not None and len(data) != want:
                    raise _Short(f"{len(data)} of {want} bytes")
                return got, data
            except (RemoteChangedError, FileNotFoundError, PermissionError, self._exc.NotFoundError,
                    self._exc.PreconditionError, self._exc.PermissionDeniedError,
                    self._exc.UnauthenticatedError):
                raise
            except (_Short, self._exc.GenericError, OSError) as exc:
                # the library already retried connecting and 5xx answers; a body cut short
                # surfaces here, after the status line: retry it the same way
                if attempt == self.settings.retries:
                    if isinstance(exc, _Short):
                        raise RemoteUnavailableError(
                            f"reading {self.where(path)} bytes [{start}, {end}) failed: the "
                            f"body was cut short ({exc}) {attempt + 1} times"
                        ) from None
                    raise
                await asyncio.sleep(delay)
                delay = min(2.0, delay * 2)
        raise AssertionError("unreachable")

    def read(self, path: str, start: int | None = None, end: int | None = None,
             meta: Meta | None = None) -> tuple[Meta, bytes]:
        """``(meta, bytes)`` of a whole object or of the range ``[start, end)``."""
        try:
            got, data = self._run(self._read(path, start, end, meta), f"reading {self.where(path)}")
        except (RemoteChangedError, RemoteUnavailableError):
            raise
        except (self._exc.BaseError, OSError) as exc:
            raise self._translate(exc, path) from exc
        return Meta(int(got["size"]), got["e_tag"]), bytes(data) if start is None else data

    def head(self, path: str) -> Meta:
        """Size and ETag of ``path``."""

        async def head() -> Any:
            self.requests += 1
            return await self._ob.head_async(self.store, path)

        try:
            got = self._run(head(), f"reading {self.where(path)}")
        except RemoteUnavailableError:
            raise
        except Exception as exc:  # noqa: BLE001 - translated, chained
            raise self._translate(exc, path) from exc
        return Meta(int(got["size"]), got["e_tag"])

    def read_ranges(
        self,
        path: str,
        ranges: Sequence[tuple[int, int]],
        meta: Meta,
        deliver: Callable[[int, Any], None],
    ) -> None:
        """Fetch every ``[start, end)`` of ``ranges`` (``concurrency`` at a time) and call
        ``deliver(i, data)`` in the I/O thread as range ``i`` arrives.

        The first failure cancels the requests still in flight and is raised.
        """
        if not ranges:
            return

        async def all_ranges() -> None:
            sem = asyncio.Semaphore(self.settings.concurrency)

            async def one(i: int, start: int, end: int) -> None:
                async with sem:
                    _, data = await self._read(path, start, end, meta)
                deliver(i, data)

            tasks = [asyncio.ensure_future(one(i, s, e)) for i, (s, e) in enumerate(ranges)]
            try:
                await asyncio.gather(*tasks)
            finally:
                for t in tasks:
                    t.cancel()

        try:
            self._run(all_ranges(), f"reading {len(ranges)} ranges of {self.where(path)}")
        except (RemoteChangedError, RemoteUnavailableError):
            raise
        except (self._exc.BaseError, OSError) as exc:
            raise self._translate(exc, path) from exc

    def list(self) -> dict[str, int]:
        """Every object below the store root: ``{relative path: size}`` (S3 only)."""

        async def listing() -> dict[str, int]:
            self.requests += 1
            out: dict[str, int] = {}
            stream = self._ob.list(self.store, None, chunk_size=1000)
            async for chunk in stream:
                for meta in chunk:
                    out[meta["path"]] = int(meta["size"])
            return out

        try:
            return self._run(listing(), f"listing {self.url}")
        except RemoteUnavailableError:
            raise
        except Exception as exc:  # noqa: BLE001 - translated, chained
            raise self._translate(exc, "") from exc
