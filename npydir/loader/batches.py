"""Random-window training batches with the semantics of DAS's ``AudioSequence``.

A :class:`Batches` cuts windows of ``window`` samples out of a long ``[samples, channels]``
array ``x`` (an npydir :class:`~npydir.Array`, a ``numpy.memmap`` or an ``ndarray``) and
pairs each with its target from ``y``:

* ``y_window=False``: the target row ``y[start + y_offset]`` (default ``y_offset =
  window // 2``, the centre of the window) -> ``y`` batch ``[batch, classes]``;
* ``y_window=True``: the targets under the whole window, every ``output_stride``-th row,
  ``y[start:start + window:output_stride]`` -> ``[batch, window // output_stride, classes]``.

Window ``k`` of a recording segment ``[lo, hi)`` starts at ``lo + k * stride``; only whole
windows are used, and with ``boundaries`` no window straddles two recordings.  An epoch
visits every window exactly once, in an order given by a keyed bijection (see
:mod:`npydir.loader.permutation`) so that batch ``i`` is computed directly, in O(batch) time and
memory, with no permutation of all windows.  docs/batches.md maps each argument to DAS.
"""

from __future__ import annotations

import mmap
import os
import queue
import threading
from collections import deque
from collections.abc import Generator, Iterator, Sequence
from typing import Any

import numpy as np

from ..kernel import _feistel
from ..kernel import windows as _windows
from ._buffers import BlockPool
from .permutation import FeistelPermutation

__all__ = ["Batches"]

#: windows whose starts are computed in one vectorised call while iterating
_CHUNK_WINDOWS = 8192
_NO_KEYS = np.empty(0, dtype=np.uint64)
#: windows of the next batch whose pages mincore() checks in advise="auto"
_ADVISE_SAMPLE = 2
#: most batches advise="auto" skips between checks while the data stays in the page cache
_ADVISE_MAX_SKIP = 31


#: batch bytes per prefetch thread (with ``prefetch >= 2``, up to one thread per core)
_MIN_BYTES_PER_COPIER = 256 * 1024


#: batches made ahead (``prefetch``) may hold at most this share of the machine's memory
_PREFETCH_MEMORY_SHARE = 0.25
#: bookkeeping bytes per batch made ahead, on top of its arrays (queue slots, tuples, views)
_PREFETCH_SLOT_BYTES = 4096


def _physical_memory() -> int | None:
    """Bytes of RAM, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


#: with several copiers, batches are handed over in groups of up to this many bytes ...
_GROUP_BYTES = 4 << 20
#: ... and up to this many batches
_GROUP_MAX = 8

#: batches of windows up to this many bytes, in reused blocks, are written with streaming stores
#: (``gather_windows(nontemporal=True)``): measured 0.63-0.79 -> 0.78-0.82 of the kernel's
#: rate for (256, 64) and (1024, 16); for (32, 4096) 0.85-0.88 -> 0.72-0.75, so not there
_NONTEMPORAL_WINDOW_BYTES = 12 * 1024


def _no_advice(starts: np.ndarray) -> None:
    return None


class _BackoffAdvice:
    """Call ``check(starts)`` (returns how many read-ahead requests it made) for the next
    batch, but after checks that found everything cached, skip 1, 3, 7, ... up to
    ``_ADVISE_MAX_SKIP`` batches: warm data then costs a check every 32 batches, and cold
    data is back to every batch from the first check that finds a page missing.  (The
    kernel still checks each batch it copies itself.)"""

    def __init__(self, check) -> None:
        self.check = check
        self.skip = 0
        self.warm_streak = 0

    def __call__(self, starts: np.ndarray) -> None:
        if self.skip:
            self.skip -= 1
            return
        if self.check(starts):
            self.warm_streak = 0
        else:
            self.warm_streak += 1
            self.skip = min((1 << self.warm_streak) - 1, _ADVISE_MAX_SKIP)


# --------------------------------------------------------------------------------------
# array sources: what is stored in a Batches, and how it travels to worker processes


class _Source:
    """One of ``x``/``y``: the object the user passed plus a cached ndarray view of it.

    Pickling (DataLoader workers with ``spawn``) never copies the data of file-backed
    arrays: an npydir Array pickles by path, a ``numpy.memmap`` (or a view of one) by file
    name, byte offset, shape, dtype and strides, and is mapped again read-only in the
    worker.  A plain in-memory ``ndarray`` pickles by value, as numpy does.
    """

    def __init__(self, obj: Any, name: str) -> None:
        if isinstance(obj, np.ndarray):
            self.obj = obj
        elif type(obj).__module__.split(".")[0] == "npydir" and hasattr(obj, "shape"):
            self.obj = obj  # npydir Array: np.asarray() gives its memmap, pickles by path
        else:
            raise TypeError(
                f"Batches: {name} must be an npydir Array, a numpy.memmap or a numpy.ndarray, "
                f"got {type(obj).__module__}.{type(obj).__qualname__}; convert zarr/HDF5 "
                f"data with npydir.convert() (or pass np.asarray({name}) if it fits in memory)"
            )
        self.name = name
        self._array: np.ndarray | None = None

    @property
    def label(self) -> str:
        """``x`` or ``y``, with the store key or file behind it when there is one."""
        where = (
            getattr(self.obj, "name", None)
            if not isinstance(self.obj, np.ndarray)
            else getattr(self.obj, "filename", None)
        )
        return f"{self.name} ({where})" if where else self.name

    @property
    def remote(self) -> bool:
        """Whether the data is in object storage (:mod:`npydir.remote`)."""
        return getattr(self.obj, "_npydir_remote", False)

    @property
    def array(self) -> np.ndarray:
        if self._array is None:
            # a remote array stays itself: windows and target rows come by byte ranges
            arr = self.obj if self.remote else np.asarray(self.obj)
            if arr.ndim == 0:
                raise ValueError(f"Batches: {self.name} must have a samples axis, got a scalar")
            self._array = arr
        return self._array

    def __getstate__(self) -> dict:
        state: dict[str, Any] = {"name": self.name, "obj": self.obj, "_array": None, "memmap": None}
        if isinstance(self.obj, np.ndarray):
            descriptor = _memmap_descriptor(self.obj)
            if descriptor is not None:
                state["obj"] = None
                state["memmap"] = descriptor
        return state

    def __setstate__(self, state: dict) -> None:
        self.name = state["name"]
        self._array = None
        if state["memmap"] is not None:
            self.obj = _reopen_memmap(*state["memmap"])
        else:
            self.obj = state["obj"]


def _memmap_descriptor(arr: np.ndarray) -> tuple | None:
    """(filename, byte offset, shape, dtype, strides) of an array whose memory is (a view
    of) a ``numpy.memmap``, or None when it is not, or cannot be described that way."""
    root: np.ndarray | None = arr
    for _ in range(16):  # np.asarray(memmap) and slices are plain views of the memmap
        if isinstance(root, np.memmap) or not isinstance(root, np.ndarray):
            break
        root = root.base
    if not isinstance(root, np.memmap):
        return None
    mm = getattr(root, "_mmap", None)
    if root.filename is None or mm is None or any(s < 0 for s in arr.strides):
        return None
    try:
        base_addr = np.frombuffer(mm, dtype=np.uint8).ctypes.data
    except (TypeError, ValueError):  # closed map
        return None
    # numpy maps from the offset rounded down to the allocation granularity (memmap.__new__)
    map_start = root.offset - root.offset % mmap.ALLOCATIONGRANULARITY
    byte_offset = map_start + (arr.ctypes.data - base_addr)
    return (
        str(root.filename),
        int(byte_offset),
        tuple(arr.shape),
        arr.dtype.str,
        tuple(arr.strides),
    )


def _reopen_memmap(
    filename: str, offset: int, shape: tuple, dtype: str, strides: tuple
) -> np.ndarray:
    whole = np.memmap(filename, dtype=np.uint8, mode="r")
    return np.ndarray(shape, dtype=np.dtype(dtype), buffer=whole, offset=offset, strides=strides)


# --------------------------------------------------------------------------------------
# prefetching iterator


class _Failure:
    """Carries an exception from the prefetch thread to the consumer."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


_END = object()


def _lookahead(plan: Iterator[np.ndarray]) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """Pairs ``(starts, next_starts)``; ``next_starts`` is None for the last batch."""
    current = next(plan, None)
    while current is not None:
        try:
            following = next(plan, None)
        except Exception:
            # the current batch does not depend on the next one: hand it out, then fail
            yield current, None
            raise
        yield current, following
        current = following


def _flatten(chunks: Iterator[list]) -> Iterator:
    """The items of each list in ``chunks``; closing it closes ``chunks``."""
    try:
        for chunk in chunks:
            yield from chunk
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


def _advising(plan: Iterator[np.ndarray], advise) -> Iterator[np.ndarray]:
    """The starts of each batch of ``plan``, advising the next batch's pages first."""
    try:
        for starts, following in _lookahead(plan):
            if following is not None:
                advise(following)
            yield starts
    finally:
        close = getattr(plan, "close", None)
        if close is not None:
            close()


def _making(make, plan: Iterator[np.ndarray]) -> Generator[tuple, None, None]:
    """``make(starts)`` for each batch of ``plan``, in the caller's thread."""
    try:
        for starts in plan:
            yield make(starts)
    finally:
        close = getattr(plan, "close", None)
        if close is not None:
            close()


def _background(
    source: Iterator,
    make,
    depth: int,
    workers: int,
    name: str,
    group: int = 1,
    make_group=None,
    on_close=None,
) -> Generator:
    """Yield ``make(item, hand_over)`` for the items of ``source``, in order, computed by
    ``workers`` daemon threads at most ``depth`` groups of ``group`` items ahead of the
    consumer.

    Each worker takes the next group of items of ``source`` under a lock (so ``source``
    runs in order, one item at a time: it may advise the OS about the next batch) and
    makes them outside the lock, where the copy releases the GIL: with two workers, one
    copies while the other draws and hands over.  ``make_group(items, hand_over)``, if
    given, makes a whole group in one go; if it raises, the group is made item by item so
    that the failure surfaces at its own item.  Group ``g`` goes to ``ring[g % depth]`` as
    a list; the consumer reads the ring in order.  At most ``depth`` groups are taken and
    not yet consumed, so two of them never share a ring cell.

    A worker hands a finished item over when ``make`` calls ``hand_over()``, just before
    it starts copying the next one (or before the worker waits for anything): the
    consumer, woken by the hand-over, then finds the GIL free instead of waking up only to
    wait for it while the worker prepares the next copy — one thread wake-up per item
    instead of two, which is what a hand-off costs most on a virtual machine.

    Exceptions raised by ``source`` or ``make`` are re-raised in the consumer, at the item
    where they happened.  Abandoning the iterator (``break``, ``del``, ``close()``) stops
    the workers, closes ``source`` and joins the threads; then ``on_close()``, if given,
    runs.

    C-level ``SimpleQueue`` s rather than ``queue.Queue`` (whose locking is Python code):
    ``ring`` carries items to the consumer, ``slots`` holds one token per item the workers
    may take ahead, returned by the consumer as it takes each item.
    """
    ring: list[queue.SimpleQueue] = [queue.SimpleQueue() for _ in range(depth)]
    slots: queue.SimpleQueue = queue.SimpleQueue()
    for _ in range(depth):
        slots.put(None)
    stop = threading.Event()
    lock = threading.Lock()
    it = iter(source)
    state = {"next": 0, "done": False}

    def take(hand_over) -> tuple[int, list, Any]:
        """(index, items, tail) of the next group: up to ``group`` items, then ``tail``:
        None, or _END / a _Failure when ``source`` ended or failed; index -1 once another
        worker saw either."""
        if not lock.acquire(blocking=False):
            hand_over()  # another worker is drawing (maybe a whole chunk): don't make the
            lock.acquire()  # consumer wait for that too
        with _held(lock):
            if state["done"]:
                return -1, [], _END
            g = state["next"]
            state["next"] = g + 1
            items: list = []
            try:
                for _ in range(group):
                    items.append(next(it))
            except StopIteration:
                state["done"] = True
                return g, items, _END
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer
                state["done"] = True
                return g, items, _Failure(exc)
            return g, items, None

    def produce() -> None:
        made: list = []  # [ring cell, item] made and not yet handed over

        def hand_over() -> None:
            if made:
                cell, item = made
                made.clear()
                cell.put(item)

        try:
            while True:
                try:
                    slots.get_nowait()
                except queue.Empty:
                    hand_over()  # the consumer returns a slot only after taking an item
                    while True:  # wait for a free slot; look at ``stop`` now and then
                        try:
                            slots.get(timeout=0.05)
                            break
                        except queue.Empty:
                            if stop.is_set():
                                return
                if stop.is_set():
                    return
                g, items, tail = take(hand_over)
                if g < 0:  # another worker met the end or a failure
                    return
                batches = None
                if make_group is not None and len(items) > 1:
                    try:  # one call for the whole group; on failure, find the failing item
                        batches = make_group(items, hand_over)
                    except Exception:  # noqa: BLE001 - retried one by one just below
                        batches = None
                if batches is not None:
                    items = []
                else:
                    batches = []
                for item in items:
                    try:
                        batches.append(make(item, hand_over))
                    except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer
                        with lock:
                            state["done"] = True  # nothing after a failed item is wanted
                        tail = _Failure(exc)
                        break
                hand_over()  # in case ``make`` did not copy anything
                if tail is not None:
                    batches.append(tail)
                    ring[g % depth].put(batches)
                    return
                made[:] = [ring[g % depth], batches]
        finally:
            hand_over()

    threads = [
        threading.Thread(target=produce, name=name, daemon=True) for _ in range(workers)
    ]
    for thread in threads:
        thread.start()
    try:
        g = 0
        while True:
            # Blocking get: group g is always delivered (ending in _END or a _Failure if it
            # is the last) by the worker that took it, and only this consumer sets ``stop``.
            batches = ring[g % depth].get()
            slots.put(None)
            g += 1
            for j in range(len(batches)):
                item = batches[j]
                batches[j] = None  # the list must not keep a dropped batch's block
                if item is _END:
                    return
                if isinstance(item, _Failure):
                    raise item.exc
                yield item
                del item
    finally:
        stop.set()
        for _ in threads:
            slots.put(None)  # wake workers waiting for a slot: they see ``stop`` and end
        me = threading.current_thread()
        for thread in threads:
            if thread is not me:  # a finaliser may run anywhere
                thread.join()
        close = getattr(source, "close", None)
        if close is not None and me not in threads:  # every worker has left ``source``
            close()
        if on_close is not None:
            on_close()


class _Copying:
    """A batch whose windows the kernel's background runner is copying (``job``)."""

    __slots__ = ("job", "batch")

    def __init__(self, job: _windows.GatherJob, batch: np.ndarray) -> None:
        self.job = job
        self.batch = batch


def _result(part: Any) -> Any:
    """A batch array (or None) from :meth:`Batches._start`, once copied."""
    if type(part) is _Copying:
        part.job.result()
        return part.batch
    return part


def _pipelined(
    start, finish, plan: Iterator, depth: int, group: int = 1, on_close=None
) -> Generator:
    """Yield the batches of ``plan``'s items, in order: ``finish(items, start(items))`` makes
    a list of batches out of a group of up to ``group`` items, and ``start`` runs up to
    ``depth`` groups ahead of the one the consumer takes.

    ``start`` queues a group's copies for the kernel's background runners and returns at
    once; ``finish`` waits for them.  No Python thread of ours needs the GIL: the consumer's
    thread does the bookkeeping, so a consumer that lets go of the GIL (a framework's hooks,
    every torch operation) gets it back at once.

    An exception raised by ``plan`` or by ``start`` reaches the consumer at its own item,
    after the items before it (a group that fails to start is started again item by item).
    Abandoning the iterator (``break``, ``del``, ``close()``) withdraws the copies not started
    yet, waits for those running, closes ``plan``; then ``on_close()``, if given, runs.
    """
    inflight: deque = deque()  # (items, started), oldest first
    ended = False  # no item left to start: ``plan`` ended, or ``failure`` came
    failure: Exception | None = None

    def top_up() -> None:
        nonlocal ended, failure
        while not ended and len(inflight) < depth:
            items = []
            try:
                for _ in range(group):
                    items.append(next(plan))
            except StopIteration:
                ended = True
            except Exception as exc:  # noqa: BLE001 - raised after the items before it
                ended, failure = True, exc
            if not items:
                return
            try:
                inflight.append((items, start(items)))
            except Exception as exc:  # noqa: BLE001 - found again item by item
                if len(items) == 1:
                    ended, failure = True, exc
                    return
                for item in items:
                    try:
                        inflight.append(([item], start([item])))
                    except Exception as exc:  # noqa: BLE001 - raised at its own item
                        ended, failure = True, exc
                        return

    try:
        top_up()
        while inflight:
            items, started = inflight.popleft()
            batches = finish(items, started)
            del started
            top_up()  # the freed slot goes to the runners before the consumer takes these
            for j in range(len(batches)):
                batch = batches[j]
                batches[j] = None  # the list must not keep a dropped batch's block
                yield batch
                del batch
        if failure is not None:
            raise failure
    finally:
        while inflight:  # newest first: the runners never start one only to be waited for
            for part in inflight.pop()[1]:
                if type(part) is _Copying:
                    part.job.cancel()
        close = getattr(plan, "close", None)
        if close is not None:
            close()
        if on_close is not None:
            on_close()


class _held:
    """``with _held(lock)``: release a lock acquired beforehand."""

    __slots__ = ("lock",)

    def __init__(self, lock) -> None:
        self.lock = lock

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc) -> None:
        self.lock.release()


# --------------------------------------------------------------------------------------


def _as_int(value: Any, name: str, minimum: int | None = None) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"Batches: {name} must be an integer, got {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"Batches: {name} must be >= {minimum}, got {value}")
    return value


class Batches:
    """Batches of random windows for training, following DAS ``AudioSequence``.

    Parameters
    ----------
    x : npydir.Array, numpy.memmap or numpy.ndarray
        Inputs, ``[samples, ...]`` (1-D is one channel; more than 2-D is flattened per
        sample for the copy and reshaped back).
    y : same types as ``x``, optional
        Targets, ``[samples, classes]``, as long as ``x``.  Without ``y`` a batch is ``(x,)``.
    window : int
        Samples per window (DAS ``nb_hist``).
    batch_size : int, default 32
        Windows per batch; the last batch of an epoch may be smaller unless ``drop_last``.
    stride : int, default 1
        Samples between consecutive window starts (DAS ``stride``).
    shuffle : bool, default True
        Visit windows in a keyed pseudo-random order, different each epoch.
    seed : int, optional
        Key of the order.  None draws fresh entropy once, at construction, so copies in
        worker processes agree.  The same seed and epoch give the same batches everywhere.
    y_offset : int, optional
        With ``y_window=False`` the target of the window starting at ``s`` is
        ``y[s + y_offset]``; default ``window // 2`` (DAS ``int(nb_hist / 2)``).
    y_window : bool, default False
        Return the targets under the whole window (DAS ``with_y_hist``).
    output_stride : int, default 1
        With ``y_window``, keep every ``output_stride``-th target; ``window`` must be a
        multiple of it (DAS ``output_stride``).
    data_padding : int, default 0
        With ``y_window``, weights of the first and last ``data_padding`` samples of each
        window are zero (DAS ``data_padding``).  Weights are returned when ``y`` is given
        and ``data_padding > 0`` or ``class_weights`` is given.
    class_weights : sequence of float, optional
        Weight of each class, applied to the argmax class of each target (DAS).
    first, last : int
        Use samples ``[first, last)`` only (DAS ``first_sample``/``last_sample``).
    rank, world_size : int
        Shard for data-parallel training: rank ``r`` gets every ``world_size``-th window of
        the epoch's order, starting at ``r``.  Shards are disjoint and cover every window.
    prefetch : int, default 2
        Batches made ahead in background threads while iterating; 0 disables them.  Up to
        ``prefetch`` copier threads (one per core, one per 256 KiB of a batch, one for
        batches above 2 MiB) each make whole batches, small ones in groups of up to 4 MiB,
        so up to ``prefetch + copiers - 1`` groups are made ahead; their memory is reused
        once their arrays are freed (see Notes).  A ``prefetch`` whose
        batches would take more than a quarter of the machine's memory is refused
        (``ValueError`` naming the largest that fits).
    threads : int, optional
        Threads for :func:`npydir.gather_windows`.
    boundaries : sequence of int, optional
        Start samples of the recordings concatenated in ``x`` (DAS
        ``filename_startsample_<split>``); no window crosses one.
    drop_last : bool, default False
        Drop the incomplete last batch; then every rank has the same number of batches
        (``len`` is then DAS's ``len`` when ``world_size == 1``).
    dtype : numpy dtype, optional
        Cast ``x`` windows to this dtype inside the copy (e.g. int16 -> float32).
    scale : float, optional
        Multiply ``x`` windows by this factor inside the copy (with ``dtype``).
    advise : True, False or "auto", default "auto"
        While iterating, ask the OS to read the next batch's pages ahead while the current
        one is copied.  "auto": only when a sample of the next batch's pages is not in the
        page cache (cheap when warm); True: always (``npydir.kernel.windows.advise_windows``);
        False: never.  Only file-backed ``x`` is advised.

    Notes
    -----
    Batch lifetime: every batch is yours for as long as you keep it, like a fresh array.
    ``b[i]`` and ``prefetch=0`` allocate a new array for each batch.  A prefetching iterator
    makes its batches in blocks of memory it reuses (no fault-in of fresh pages for every
    batch), but a block is written again only after the batch array over it has been freed:
    while you, a view of it (``x[0]``, ``x[1:][2]``), a buffer export (``memoryview``), a
    ``torch.from_numpy`` tensor or its ``base`` can still reach its data, it is never
    overwritten, also after the iterator has ended.  The batch's ``base`` is a
    :class:`npydir.loader._buffers.Lease`, which returns the block when it is freed; nothing reads
    reference counts.  Idle blocks (at most ``prefetch + copiers + 1`` per array kind) are
    freed when the iterator ends.  Pickling or copying a batch copies its data.

    Examples
    --------
    >>> x = np.random.randn(10_000, 2).astype("f4")
    >>> y = np.eye(3, dtype="f4")[np.random.randint(0, 3, 10_000)]
    >>> b = Batches(x, y, window=64, batch_size=8, seed=0)
    >>> xb, yb = b[0]
    >>> xb.shape, yb.shape
    ((8, 64, 2), (8, 3))
    """

    def __init__(
        self,
        x: Any,
        y: Any = None,
        *,
        window: int,
        batch_size: int = 32,
        stride: int = 1,
        shuffle: bool = True,
        seed: int | None = None,
        y_offset: int | None = None,
        y_window: bool = False,
        output_stride: int = 1,
        data_padding: int = 0,
        class_weights: Sequence[float] | None = None,
        first: int = 0,
        last: int | None = None,
        rank: int = 0,
        world_size: int = 1,
        prefetch: int = 2,
        threads: int | None = None,
        boundaries: Sequence[int] | None = None,
        drop_last: bool = False,
        dtype: Any = None,
        scale: float | None = None,
        advise: bool | str = "auto",
    ) -> None:
        self._x = _Source(x, "x")
        self._y = None if y is None else _Source(y, "y")
        xa = self._x.array
        self._flat(xa)  # fail early on arrays that cannot be cut into windows
        n_samples = int(xa.shape[0])
        if n_samples == 0:
            raise ValueError(f"Batches: x has no samples (shape {xa.shape})")

        self.window = _as_int(window, "window", 1)
        self.batch_size = _as_int(batch_size, "batch_size", 1)
        self.stride = _as_int(stride, "stride", 1)
        self.output_stride = _as_int(output_stride, "output_stride", 1)
        self.data_padding = _as_int(data_padding, "data_padding", 0)
        self.prefetch = _as_int(prefetch, "prefetch", 0)
        self.world_size = _as_int(world_size, "world_size", 1)
        self.rank = _as_int(rank, "rank")
        if not 0 <= self.rank < self.world_size:
            raise ValueError(
                f"Batches: rank must be in [0, world_size={self.world_size}), got rank={self.rank}"
            )
        self.shuffle = bool(shuffle)
        self.y_window = bool(y_window)
        self.drop_last = bool(drop_last)
        self.threads = threads
        self.dtype = None if dtype is None else np.dtype(dtype)
        self.scale = scale
        if advise not in (True, False, "auto"):
            raise ValueError(f"Batches: advise must be True, False or 'auto', got {advise!r}")
        self.advise = advise
        if seed is None:
            seed = int(np.random.SeedSequence().entropy)  # type: ignore[arg-type]  # drawn: an int
        self.seed = _as_int(seed, "seed", 0)
        self.epoch = 0

        self.first = _as_int(first, "first", 0)
        self.last = n_samples if last is None else _as_int(last, "last", 0)
        if self.last > n_samples:
            raise ValueError(
                f"Batches: last={self.last} is past the end of "
                f"{self._x.label} ({n_samples} samples)"
            )
        if self.first >= self.last:
            raise ValueError(f"Batches: first={self.first} must be < last={self.last}")
        if self.window > self.last - self.first:
            raise ValueError(
                f"Batches: window={self.window} is longer than the data: {self._x.label} has "
                f"{self.last - self.first} samples in [first={self.first}, last={self.last})"
            )
        if self.y_window and self.window % self.output_stride:
            raise ValueError(
                f"Batches: window={self.window} must be a multiple of "
                f"output_stride={self.output_stride} with y_window=True (the model's "
                f"output has window // output_stride steps)"
            )
        if self.y_window and 2 * self.data_padding >= self.window:
            raise ValueError(
                f"Batches: data_padding={self.data_padding} leaves no sample "
                f"of window={self.window} with a non-zero weight"
            )

        self.y_offset = self.window // 2 if y_offset is None else _as_int(y_offset, "y_offset")
        self.class_weights = None
        if self._y is not None:
            ya = self._y.array
            if ya.shape[0] != n_samples:
                raise ValueError(
                    f"Batches: {self._y.label} has {ya.shape[0]} samples but "
                    f"{self._x.label} has {n_samples}; they must be equally long"
                )
            if class_weights is not None:
                cw = np.asarray(class_weights, dtype=np.float32).reshape(-1)
                n_classes = ya.shape[-1] if ya.ndim > 1 else None
                if n_classes is None or cw.size != n_classes:
                    raise ValueError(
                        f"Batches: class_weights has {cw.size} entries but y "
                        f"has shape {ya.shape} (one weight per class, last axis)"
                    )
                self.class_weights = cw
        elif class_weights is not None:
            raise ValueError("Batches: class_weights needs y")

        self._segments(boundaries, n_samples)

        if self._y is not None and not self.y_window:
            lo = int(self._seg_lo.min()) + self.y_offset if self.n_windows else 0
            hi = int(self._window_starts(np.array([self.n_windows - 1]))[0]) + self.y_offset
            if self.n_windows and (lo < 0 or hi >= n_samples):
                raise ValueError(
                    f"Batches: y_offset={self.y_offset} points outside y ({n_samples} "
                    f"samples) for windows starting in [{lo - self.y_offset}, "
                    f"{hi - self.y_offset}]"
                )

        # weight template for one window: zeros in the data_padding margins (DAS)
        self._pad_mask: np.ndarray | None = None
        if self.y_window:
            mask = np.ones(self.window, dtype=np.float32)
            if self.data_padding:
                mask[: self.data_padding] = 0
                mask[-self.data_padding :] = 0
            self._pad_mask = np.ascontiguousarray(mask[:: self.output_stride])
        self._perm_cache: tuple[int, FeistelPermutation] | None = None
        self._check_prefetch_memory()

    def _check_prefetch_memory(self) -> None:
        """Refuse a ``prefetch`` whose batches made ahead could not fit in memory.

        Iteration sets up its hand-over slots and keeps up to about ``prefetch`` batches
        ahead; an absurd value (``10**9``) would exhaust memory before the first batch.
        """
        memory = _physical_memory()
        if memory is None or self.prefetch == 0:
            return
        per_batch = self._all_batch_bytes() + _PREFETCH_SLOT_BYTES
        most = max(1, int(memory * _PREFETCH_MEMORY_SHARE) // per_batch - _windows.available_cores() - 2)
        if self.prefetch > most:
            raise ValueError(
                f"Batches: prefetch={self.prefetch} would make up to {self.prefetch} batches "
                f"of {per_batch:,} bytes ahead, more than a quarter of this machine's "
                f"{memory / 2**30:.1f} GiB of memory; use prefetch <= {most} (2 to 4 keep "
                f"the kernel busy)"
            )

    def _all_batch_bytes(self) -> int:
        """Bytes of one full batch: x windows, targets and weights."""
        total = self._batch_bytes()
        if self._y is not None:
            ya = self._y.array
            row = int(np.prod(ya.shape[1:], dtype=np.int64)) * ya.dtype.itemsize
            rows = -(-self.window // self.output_stride) if self.y_window else 1
            total += self.batch_size * rows * row
            if self.returns_weights:
                total += self.batch_size * rows * 4
        return total

    # ---------------------------------------------------------------- window geometry

    def _segments(self, boundaries: Sequence[int] | None, n_samples: int) -> None:
        """Split ``[first, last)`` at recording boundaries; count whole windows in each."""
        edges = [0, n_samples]
        if boundaries is not None:
            b = np.asarray(boundaries)
            if b.ndim != 1 or (b.size and not np.issubdtype(b.dtype, np.integer)):
                raise TypeError(
                    f"Batches: boundaries must be a 1-D sequence of integer "
                    f"sample indices, got {boundaries!r}"
                )
            if b.size and (b.min() < 0 or b.max() > n_samples):
                raise ValueError(
                    f"Batches: boundaries must lie in [0, {n_samples}] (the "
                    f"samples of x), got [{b.min()}, {b.max()}]"
                )
            edges = sorted(set(edges) | {int(v) for v in b})
        lo = np.clip(np.asarray(edges[:-1], dtype=np.int64), self.first, self.last)
        hi = np.clip(np.asarray(edges[1:], dtype=np.int64), self.first, self.last)
        span = hi - lo
        counts = np.where(span >= self.window, (span - self.window) // self.stride + 1, 0)
        keep = counts > 0
        self._seg_lo = lo[keep]
        self._cum = np.concatenate([[0], np.cumsum(counts[keep])]).astype(np.int64)
        #: number of windows per epoch over all ranks
        self.n_windows = int(self._cum[-1])
        if self.n_windows == 0:
            raise ValueError(
                f"Batches: no recording between boundaries holds a whole window of "
                f"{self.window} samples in [first={self.first}, last={self.last})"
            )

    def _window_starts(self, windows: np.ndarray) -> np.ndarray:
        """Start sample of each window index in ``[0, n_windows)``."""
        if len(self._seg_lo) == 1:  # one recording: no search
            starts = windows * self.stride if self.stride != 1 else windows.copy()
            starts += self._seg_lo[0]
            return starts
        seg = np.searchsorted(self._cum, windows, side="right") - 1
        return self._seg_lo[seg] + (windows - self._cum[seg]) * self.stride

    def _rank_count(self) -> int:
        """Windows this rank sees per epoch."""
        if self.drop_last:
            per_round = self.world_size * self.batch_size
            return (self.n_windows // per_round) * self.batch_size
        return (self.n_windows - self.rank + self.world_size - 1) // self.world_size

    def _permutation(self, epoch: int) -> FeistelPermutation:
        cache = self._perm_cache
        if cache is None or cache[0] != epoch:
            cache = (epoch, FeistelPermutation(self.n_windows, self.seed, epoch))
            self._perm_cache = cache
        return cache[1]

    def _order_keys(self, epoch: int) -> tuple[np.ndarray, int, int]:
        """``(keys, a, b)`` of ``epoch``'s order for the compiled kernels (no keys: in order)."""
        if not self.shuffle:
            return _NO_KEYS, 1, 1
        perm = self._permutation(epoch)
        return perm.keys, perm.a, perm.b

    def starts(self, i: int, epoch: int | None = None) -> np.ndarray:
        """Start samples of the windows in batch ``i`` of this rank (int64, fresh).

        Parameters
        ----------
        i : int
            Batch index, ``-len(self) <= i < len(self)``.
        epoch : int, optional
            Defaults to the epoch set by :meth:`set_epoch`.
        """
        n = len(self)
        if not isinstance(i, (int, np.integer)) or isinstance(i, bool):
            raise TypeError(f"Batches: batch index must be an integer, got {i!r}")
        if not -n <= i < n:
            raise IndexError(f"Batches: batch index {i} out of range for {n} batches")
        i = int(i) % n
        epoch = self.epoch if epoch is None else epoch
        # the loader's own pass: a batch's starts are the same whichever way they are asked for
        return self._starts_of_batches(np.array([i], dtype=np.int64), epoch)

    def _starts_of(self, slots: np.ndarray, epoch: int) -> np.ndarray:
        """Window starts of this rank's ``slots`` (positions in its share of the epoch).

        Compiled (``npydir.kernel._feistel``): one pass per position instead of dozens of numpy
        passes.  :meth:`_starts_of_reference` is its pure-NumPy twin, tested against it.
        """
        slots = np.ascontiguousarray(slots, dtype=np.int64)
        return self._starts_of_batches(slots, epoch, batch_size=1)  # a slot is a batch of 1

    def _starts_of_batches(
        self, indices: np.ndarray, epoch: int, batch_size: int | None = None
    ) -> np.ndarray:
        """Window starts of batches ``indices`` (int64 batch indices of this rank, of
        ``batch_size`` slots each, default :attr:`batch_size`), one batch after another:
        :meth:`_starts_of` of their slots, without the slot arrays."""
        bs = self.batch_size if batch_size is None else batch_size
        out = np.empty(len(indices) * bs, dtype=np.int64)
        keys, a, b = self._order_keys(epoch)
        filled = _feistel.batch_starts(
            indices, bs, self._rank_count(), self.world_size, self.rank, keys, a, b,
            self.n_windows, self._seg_lo, self._cum, self.stride, out,
        )  # fmt: skip
        return out[:filled]

    def _starts_of_reference(self, slots: np.ndarray, epoch: int) -> np.ndarray:
        """Pure-NumPy :meth:`_starts_of`."""
        positions = slots * self.world_size + self.rank
        if self.shuffle:
            positions = self._permutation(epoch)(positions)
        return self._window_starts(positions)

    def _plan(self, indices: Sequence[int], epoch: int) -> Iterator[list[np.ndarray]]:
        """Starts of batches ``indices``, as lists covering ~8k windows (a chunk) each.

        One call per chunk instead of one per batch: for small batches the fixed cost of the
        numpy calls around each draw would otherwise rival the copy itself.
        """
        bs = self.batch_size
        count = self._rank_count()
        per_chunk = max(1, _CHUNK_WINDOWS // bs)
        for c0 in range(0, len(indices), per_chunk):
            idx = np.ascontiguousarray(indices[c0 : c0 + per_chunk], dtype=np.int64)
            starts = self._starts_of_batches(idx, epoch)
            if len(starts) == len(idx) * bs:
                yield list(starts.reshape(len(idx), bs))  # views, one per batch
            else:  # only an epoch's last batch is short
                sizes = np.minimum(bs, count - idx * bs)
                yield np.split(starts, np.cumsum(sizes)[:-1])

    # ---------------------------------------------------------------- batches

    def __len__(self) -> int:
        return (self._rank_count() + self.batch_size - 1) // self.batch_size

    def set_epoch(self, epoch: int) -> None:
        """Select the order of epoch ``epoch`` (like ``DistributedSampler.set_epoch``)."""
        self.epoch = _as_int(epoch, "epoch", 0)

    @property
    def returns_weights(self) -> bool:
        """Whether batches are ``(x, y, weights)`` rather than ``(x, y)``."""
        return self._y is not None and (self.data_padding > 0 or self.class_weights is not None)

    def __getitem__(self, i: int) -> tuple:
        return self._make(self.starts(i))

    @staticmethod
    def _flat(arr: np.ndarray) -> np.ndarray:
        """``arr`` as the kernel takes it: 1-D or 2-D (a view; more axes flattened per row)."""
        if arr.ndim <= 2:
            return arr
        try:  # never copy a whole memmap to flatten it
            return np.reshape(arr, (arr.shape[0], -1), copy=False)
        except ValueError:
            raise ValueError(
                f"Batches: an array of shape {arr.shape} and strides "
                f"{arr.strides} cannot be flattened to [samples, features] "
                f"without copying it; pass a C-contiguous array"
            ) from None

    def _gather(
        self,
        source: _Source,
        starts: np.ndarray,
        window: int,
        step: int,
        threads: int | None,
        pool: BlockPool | None,
        dtype: np.dtype | None = None,
        before_copy=None,
        lane: _windows.CopyLane | None = None,
        **kw,
    ) -> Any:
        """The windows of ``source`` at ``starts``: a batch, or with ``lane`` (and ``pool``)
        a :class:`_Copying` whose windows the kernel's background runners copy in that
        lane."""
        arr = source.array
        flat = self._flat(arr)
        shape = (len(starts), -(-window // step), *arr.shape[1:])
        if pool is None:
            out = _windows.gather_windows(
                flat, starts, window, step=step, threads=threads, dtype=dtype, **kw
            )
            return out.reshape(shape)
        # the batch is an array over one of the pool's blocks; the kernel fills a [n, w, row]
        # view of it.  Blocks take turns, so the one written is rarely in cache: for small
        # windows streaming stores, which skip reading its lines first, paid (docs/batches.md);
        # for long windows they measured slower.
        res = pool.empty(shape, np.dtype(arr.dtype if dtype is None else dtype))
        window_bytes = res.nbytes // max(1, shape[0])
        nontemporal = 0 < window_bytes <= _NONTEMPORAL_WINDOW_BYTES
        if before_copy is not None:
            before_copy()
        out = res.reshape(shape[0], shape[1], -1)
        if lane is not None:
            job = _windows.start_gather_windows(
                flat, starts, window, step=step, threads=threads, dtype=dtype, out=out,
                nontemporal=nontemporal, lane=lane, **kw,
            )  # fmt: skip
            return _Copying(job, res)
        _windows.gather_windows(
            flat, starts, window, step=step, threads=threads, dtype=dtype, out=out,
            nontemporal=nontemporal, **kw,
        )  # fmt: skip
        return res

    def _make(
        self,
        starts: np.ndarray,
        threads: int | None = None,
        pools: tuple | None = None,
        before_copy=None,
    ) -> tuple:
        """The batch of windows starting at ``starts``.

        ``threads``: for the kernel (default the ``threads`` argument); ``pools``: the
        :class:`~npydir.loader._buffers.BlockPool` s x's and y's window arrays come from (default
        freshly allocated); ``before_copy``: called (with pools) just before x's windows
        are copied.
        """
        return self._finish(self._start(starts, threads, pools, before_copy))

    def _start(
        self,
        starts: np.ndarray,
        threads: int | None = None,
        pools: tuple | None = None,
        before_copy=None,
        lane: _windows.CopyLane | None = None,
    ) -> tuple:
        """What :meth:`_finish` turns into the batch at ``starts``: with ``lane`` (and
        ``pools``) the kernel's background runners copy the windows meanwhile."""
        threads = self.threads if threads is None else threads
        rx, ry = (None, None) if pools is None else pools
        lane = lane if pools is not None else None
        xb = self._gather(
            self._x, starts, self.window, 1, threads, rx,
            dtype=self.dtype, scale=self.scale, before_copy=before_copy, lane=lane,
        )  # fmt: skip
        if self._y is None:
            return (xb, None)
        if self.y_window:
            yb = self._gather(
                self._y, starts, self.window, self.output_stride, threads, ry, lane=lane
            )
        else:
            # one row per window: a fancy-indexed copy reads only those rows of the map
            yb = np.ascontiguousarray(self._y.array[starts + self.y_offset])
        return (xb, yb)

    def _finish(self, started: tuple) -> tuple:
        xb, yb = (_result(a) for a in started)
        if yb is None:
            return (xb,)
        if not self.returns_weights:
            return (xb, yb)
        if self.y_window:
            shape = yb.shape[:2]
            base = self._pad_mask
        else:
            shape = yb.shape[:1]
            base = np.float32(1)
        if self.class_weights is not None:
            labels = np.argmax(yb, axis=-1) if yb.ndim > len(shape) else yb.astype(np.intp)
            weights = self.class_weights[labels] * base
        else:
            weights = np.empty(shape, dtype=np.float32)
            weights[...] = base
        return (xb, yb, np.ascontiguousarray(weights, dtype=np.float32))

    def __iter__(self) -> Iterator[tuple]:
        """Batches ``0 .. len-1`` of the current epoch, prefetched in a thread."""
        return self._iterate(range(len(self)))

    def _advisor(self):
        """``advise(starts)`` for the next batch, or a no-op; see the ``advise`` parameter.

        ``"auto"`` uses the kernel's sampled check (``mincore`` on two windows, then one
        ``madvise`` for all windows only when a page is missing), backing off while it
        keeps finding the data warm: next to nothing per batch when warm, the whole next
        batch requested ahead when cold.  ``advise_windows``
        itself always issues the ``madvise`` calls, which costs more than a small window's
        copy on the warm path, so it is used only with ``advise=True``.
        """
        if self.advise is False or self._x.remote:
            return _no_advice
        flat = self._flat(self._x.array)
        window = self.window
        if self.advise is True:
            return lambda starts: _windows.advise_windows(flat, starts, window)
        sampled = _windows.sampled_advisor(flat, window, _ADVISE_SAMPLE)
        if sampled is None:
            return _no_advice  # in memory: nothing to read ahead
        return _BackoffAdvice(sampled)

    def _copiers(self) -> int:
        """Batches (or groups of them) copied side by side: one per core, up to
        ``prefetch``, and one per ``_MIN_BYTES_PER_COPIER`` of a batch (below that the
        bookkeeping around each copy, not the copy, bounds the rate); one for batches above
        ``_GROUP_BYTES // 2``, which the kernel's own threads split instead."""
        if self.prefetch <= 1:
            return max(1, self.prefetch)
        if self._x.remote:
            return self.prefetch  # waiting on the network, not copying: fetch batches at once
        nbytes = self._batch_bytes()
        if nbytes > _GROUP_BYTES // 2:
            # Too big to travel in groups: one copier, and the kernel's own thread pool
            # splits each batch (measured for 4.7 MB batches: 0.86x the kernel's rate
            # against 0.60x with two copiers of one thread each, same minute).
            return 1
        return max(1, min(self.prefetch, _windows.available_cores(), nbytes // _MIN_BYTES_PER_COPIER))

    def _batch_bytes(self) -> int:
        """Bytes of a full batch's x windows."""
        x = self._x.array
        row = int(np.prod(x.shape[1:], dtype=np.int64)) * (self.dtype or x.dtype).itemsize
        return self.batch_size * self.window * row

    def _iterate(
        self, indices: Sequence[int], copiers: int | None = None
    ) -> Generator[tuple, None, None]:
        """Batches ``indices`` (a range stays a range: never a list of every index).

        ``copiers``: batches (or groups) copied side by side (default :meth:`_copiers`).
        Local data is copied by the kernel's background runners, in a lane of ``copiers``
        (:func:`_pipelined`); data in object storage by ``copiers`` threads, which wait on
        the network side by side (:func:`_background`).
        """
        epoch = self.epoch  # fixed for this pass even if set_epoch() is called meanwhile
        self._check_prefetch_memory()  # ``prefetch`` may have been set since __init__
        plan = _advising(_flatten(self._plan(indices, epoch)), self._advisor())
        if self.prefetch == 0:
            return _making(self._make, plan)
        copiers = self._copiers() if copiers is None else max(1, min(copiers, self.prefetch))
        threads = self.threads
        if threads is None and copiers > 1:
            # the copiers already keep the cores busy: a kernel call splitting its windows
            # over more threads would only add hand-offs between them
            threads = max(1, _windows.available_cores() // copiers)
        # ``prefetch`` batches ready ahead, and each further copier making one more: with
        # only ``prefetch`` in flight two copiers would often both wait for the consumer
        # (measured: 0.99x -> 1.17x the kernel's rate for 1024 windows of 16, 2 copiers).
        depth = self.prefetch + copiers - 1
        # With several copiers, small batches travel in groups of up to _GROUP_BYTES: one
        # kernel call and one hand-over per group instead of per batch, which for small
        # batches cost more than the copy.
        group = 1
        if copiers > 1:
            group = max(1, min(_GROUP_MAX, _GROUP_BYTES // max(1, self._batch_bytes())))
        # Batches alive at once: up to ``depth`` groups made ahead, the consumer's group,
        # and the one its loop variable still holds while the next is handed over.  A
        # group is one array: the pools keep that many idle blocks at most.
        keep = depth + 2
        pools = (BlockPool(keep), BlockPool(keep))

        def close_pools() -> None:  # idle blocks go now, not with the last batch kept
            for pool in pools:
                pool.close()

        def split(items: list, arrays: tuple) -> list[tuple]:
            # the batches of a group are consecutive slices of one batch made in one call:
            # views, each C-contiguous and writable, sharing nothing with the others
            if len(items) == 1:
                return [arrays]
            batches = []
            lo = 0
            for starts in items:
                hi = lo + len(starts)
                batches.append(tuple(a[lo:hi] for a in arrays))
                lo = hi
            return batches

        if not self._x.remote and (self._y is None or not self._y.remote):
            lane = _windows.CopyLane(copiers)

            def start(items: list) -> tuple:
                starts = items[0] if len(items) == 1 else np.concatenate(items)
                return self._start(starts, threads, pools, lane=lane)

            return _pipelined(
                start,
                lambda items, started: split(items, self._finish(started)),
                plan,
                depth,
                group,
                close_pools,
            )

        def make_group(items: list, hand_over) -> list[tuple]:
            return split(items, self._make(np.concatenate(items), threads, pools, hand_over))

        return _background(
            plan,
            lambda starts, hand_over: self._make(starts, threads, pools, hand_over),
            depth,
            copiers,
            "npydir-batches-prefetch",
            group,
            make_group,
            close_pools,
        )

    def __repr__(self) -> str:
        return (
            f"Batches({len(self)} batches of {self.batch_size} windows of {self.window} "
            f"samples, {self.n_windows} windows, x{tuple(self._x.array.shape)}, "
            f"rank {self.rank}/{self.world_size}, epoch {self.epoch})"
        )

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_perm_cache"] = None
        return state
