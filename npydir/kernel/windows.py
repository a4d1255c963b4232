"""Cut windows out of a long ``[samples, channels]`` array into a batch.

:func:`gather_windows` is the fast path that training loops call for every batch: it checks its
arguments once in Python and hands raw pointers to the Cython kernel (``npydir.kernel._windows``),
which releases the GIL, copies with one ``memcpy`` per window where the layout allows it, casts
and scales inside the copy when ``dtype``/``scale`` ask for it, and splits large batches over
threads.  :func:`gather_windows_reference` does the same in plain NumPy (the bottleneck-style
twin the tests compare against).  :func:`advise_windows` asks the kernel of the operating system
to start reading the pages of a batch of windows from disk, without waiting for them.

Semantics shared by both
------------------------
``out[k] = x[starts[k] : starts[k] + window : step]``, shape ``[len(starts), ceil(window / step),
channels]``; a 1-D ``x`` is one channel.  ``dtype`` converts like ``ndarray.astype`` (unsafe
casting), then ``scale`` multiplies in the output dtype (so ``int16`` to ``float32`` with
``scale=s`` equals ``x.astype(np.float32) * np.float32(s)``, bit for bit).

``pad`` decides what a window that runs past either end of ``x`` reads:

``"error"``
    every start must lie in ``[0, len(x) - window]``; otherwise :class:`IndexError` naming the
    first bad start, its position and the valid range.
``"zero"``, ``"edge"``, ``"reflect"``
    exactly ``numpy.pad(x, ..., mode="constant" | "edge" | "reflect")`` along the sample axis,
    windowed.  ``"reflect"`` mirrors about the first and last sample without repeating them
    (``[a b c d]`` extends to ``... c b [a b c d] c b a b ...``), periodically with period
    ``2 * (len(x) - 1)`` for windows much longer than ``x``; a one-sample array repeats its
    sample.  ``"edge"`` and ``"reflect"`` need at least one sample.
"""

from __future__ import annotations

import errno
import operator
import os
from collections.abc import Callable
from typing import Any, Literal, NoReturn

import numpy as np

from . import _windows

__all__ = [
    "CopyLane",
    "GatherJob",
    "advise_windows",
    "gather_windows",
    "gather_windows_reference",
    "sampled_advisor",
    "start_gather_windows",
]

PadMode = Literal["error", "zero", "edge", "reflect"]
_PAD_CODES: dict[str, int] = dict(_windows.PAD_CODES)
_NP_PAD_MODE: dict[str, Literal["constant", "edge", "reflect"]] = {
    "zero": "constant", "edge": "edge", "reflect": "reflect"
}

# Source dtypes the cast kernel reads (codes match the enum in src_cython/_windows.pyx).
_SRC_CODES: dict[np.dtype, int] = {
    np.dtype(np.int8): 0,
    np.dtype(np.uint8): 1,
    np.dtype(np.bool_): 1,  # numpy bools are the bytes 0 and 1
    np.dtype(np.int16): 2,
    np.dtype(np.uint16): 3,
    np.dtype(np.int32): 4,
    np.dtype(np.uint32): 5,
    np.dtype(np.int64): 6,
    np.dtype(np.uint64): 7,
    np.dtype(np.float32): 8,
    np.dtype(np.float64): 9,
    np.dtype(np.float16): 10,
}
_F32 = np.dtype(np.float32)
_F64 = np.dtype(np.float64)

# The rules shared with the kernel's fast path live in the kernel (one copy each):
# starts and windows stay far from the int64 limits so that start + window never overflows;
# threads=None gives each thread at least _MIN_BYTES_PER_THREAD of output (helper threads are
# pooled, so a second thread pays off from small batches on); for batches of a file mapping
# (of at least 64 KiB, ``_windows.tune(advise_min_bytes=)``), mincore() looks at
# _ADVISE_SAMPLE windows and, if a page is missing, madvise(WILLNEED) asks for all windows'
# pages at once before the copy (docs/kernel.md has the numbers behind these).
_LIMIT: int = _windows.LIMIT
_MIN_BYTES_PER_THREAD: int = _windows.MIN_BYTES_PER_THREAD
_ADVISE_SAMPLE: int = _windows.ADVISE_SAMPLE

_cpu_count_cache: int | None = None


def _forget_after_fork() -> None:
    """A forked child may run with another affinity."""
    global _cpu_count_cache
    _cpu_count_cache = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


def available_cores() -> int:
    """Cores this process may run on (``os.sched_getaffinity``; cached, forgotten in a forked
    child).  The one count of cores npydir uses: the kernel's threads, the loader's copiers,
    conversion's threads and the bench's report all ask here."""
    global _cpu_count_cache
    if _cpu_count_cache is None:
        try:
            n = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            n = os.cpu_count() or 1
        _cpu_count_cache = max(1, n)
    return _cpu_count_cache


def _as_2d(x: Any) -> np.ndarray:
    # Plain arrays and memmaps as they are (np.asarray of a memmap costs a new view per call).
    a = x if type(x) is np.ndarray or type(x) is np.memmap else np.asarray(x)
    if a.ndim == 2:
        return a
    if a.ndim == 1:
        return a[:, None]
    raise ValueError(
        f"x must be 1-D [samples] or 2-D [samples, channels], found {a.ndim}-D shape {a.shape}"
    )


def _as_starts(starts: Any) -> np.ndarray:
    if type(starts) is np.ndarray and starts.dtype == np.int64 and starts.ndim == 1:
        return starts if starts.flags.c_contiguous else np.ascontiguousarray(starts)
    s = np.asarray(starts)
    if s.ndim != 1:
        raise ValueError(f"starts must be 1-D, found {s.ndim}-D shape {s.shape}")
    if s.size == 0:
        return np.empty(0, np.int64)
    if s.dtype.kind not in "iu":
        raise TypeError(f"starts must be integers, found dtype {s.dtype}")
    if s.dtype == np.uint64 and s.max() > np.iinfo(np.int64).max:
        k = int(np.argmax(s > np.iinfo(np.int64).max))
        raise IndexError(f"start {int(s[k])} at index {k} does not fit in int64")
    return np.ascontiguousarray(s, dtype=np.int64)


def _positive_int(value: Any, name: str) -> int:
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, found {type(value).__name__}") from None
    if not 1 <= v < _LIMIT:
        raise ValueError(f"{name} must be a positive integer below 2**62, found {v}")
    return v


def _resolve_dtype(a: np.ndarray, dtype: Any, out: np.ndarray | None, scale: Any) -> np.dtype:
    if dtype is not None:
        dt = np.dtype(dtype)
        if out is not None and isinstance(out, np.ndarray) and out.dtype != dt:
            raise ValueError(f"out has dtype {out.dtype}, expected dtype={dt}")
    elif out is not None and isinstance(out, np.ndarray):
        dt = out.dtype
    else:
        dt = a.dtype
    if dt.hasobject or a.dtype.hasobject:
        raise TypeError(f"object dtypes are not supported (x: {a.dtype}, output: {dt})")
    if scale is not None and dt.kind not in "fc":
        raise ValueError(
            f"scale needs a floating-point output dtype, found {dt}; pass e.g. dtype=np.float32"
        )
    return dt


def _start_bounds(nrows: int, window: int, pad: str) -> tuple[int, int]:
    """Inclusive range [lo, hi] every start must lie in (hi < lo: no start is valid)."""
    if pad == "error":
        return 0, nrows - window
    if nrows == 0 and pad != "zero":
        raise ValueError(f"pad={pad!r} needs at least one sample, x has none")
    return -_LIMIT, _LIMIT


def _check_starts(starts: np.ndarray, nrows: int, window: int, pad: str) -> None:
    if starts.size == 0:
        return
    lo, hi = _start_bounds(nrows, window, pad)
    bad = _windows.first_bad_start(starts, nrows, window, lo, hi) if hi >= lo else 0
    if bad >= 0:
        _raise_bad_start(starts, bad, nrows, window, pad, lo, hi)


def _raise_bad_start(
    starts: np.ndarray, bad: int, nrows: int, window: int, pad: str, lo: int, hi: int
) -> NoReturn:
    s = int(starts[bad])
    if pad != "error":
        raise IndexError(f"start {s} at index {bad} is beyond the supported range +-2**62")
    if hi < lo:
        raise IndexError(
            f"start {s} at index {bad} is out of range: window {window} is longer than x "
            f"({nrows} samples); pass pad='zero', 'edge' or 'reflect' to pad"
        )
    raise IndexError(
        f"start {s} at index {bad} is out of range: with window {window} and {nrows} samples, "
        f"starts must lie in [0, {hi}] (or pass pad='zero', 'edge' or 'reflect')"
    )


def _check_out(out: Any, shape: tuple[int, int, int], dtype: np.dtype, a: np.ndarray) -> None:
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy array, found {type(out).__name__}")
    if out.shape != shape:
        raise ValueError(f"out has shape {out.shape}, expected {shape}")
    if out.dtype != dtype:
        raise ValueError(f"out has dtype {out.dtype}, expected {dtype}")
    flags = out.flags
    if not flags.c_contiguous:
        raise ValueError("out must be C-contiguous")
    if not flags.writeable:
        raise ValueError("out is read-only")
    if out.size and a.size and np.may_share_memory(out, a):
        raise ValueError("out overlaps x; pass a separate buffer")


def _prepare(x, starts, window, step, out, dtype, scale, pad, threads, check_starts=True):
    """Validate the arguments shared by the kernel and the reference (everything, once).

    With ``check_starts=False`` the caller checks the range of every start itself (the
    kernel does it in the same call as the copy, see ``gather_windows``).
    """
    a = _as_2d(x)
    st = _as_starts(starts)
    window = _positive_int(window, "window")
    step = _positive_int(step, "step")
    if pad not in _PAD_CODES:
        raise ValueError(f"pad must be one of {sorted(_PAD_CODES)}, found {pad!r}")
    if scale is not None:
        if isinstance(scale, (complex, np.complexfloating)) or not np.isscalar(scale):
            raise TypeError(f"scale must be a real number, found {scale!r}")
        scale = float(scale)
    if threads is not None and operator.index(threads) < 1:
        raise ValueError(f"threads must be >= 1 or None, found {threads}")
    dt = _resolve_dtype(a, dtype, out, scale)
    if check_starts:
        _check_starts(st, a.shape[0], window, pad)
    shape = (st.shape[0], -(-window // step), a.shape[1])
    if out is None:
        out = np.empty(shape, dt)
    else:
        _check_out(out, shape, dt, a)
    return a, st, window, step, out, dt, scale


# The np.memmap or mmap.mmap that x's memory is (a view of), or None.
_mapping = _windows.mapping_of


def _file_mapped(x: Any) -> bool:
    """True when x's memory is (a view of) a file mapping: np.memmap or an mmap.mmap buffer."""
    return _mapping(x) is not None


def _mapped_file_name(*objs: Any) -> str:
    """The file behind the first of objs that is (a view of) an np.memmap, else a description."""
    for x in objs:
        m = _mapping(x)
        if isinstance(m, np.memmap) and m.filename:
            return str(m.filename)
    return "the file mapped by x"


def _raise_mapping_shrank(x: Any, a: np.ndarray) -> NoReturn:
    """The kernel caught a SIGBUS: x's file is now shorter than its mapping."""
    name = _mapped_file_name(x, a)
    raise OSError(
        errno.EIO,
        f"{name}: the file shrank while windows were being copied out of its memory map "
        "(truncated or replaced in place by another process?); the batch was not completed",
    )


def _pick_threads(threads: int | None, nwin: int, nbytes: int) -> int:
    return _windows.pick_threads(threads, nwin, nbytes, available_cores())


def gather_windows(
    x: Any,
    starts: Any,
    window: int,
    *,
    step: int = 1,
    out: np.ndarray | None = None,
    dtype: Any = None,
    scale: float | None = None,
    pad: PadMode = "error",
    threads: int | None = None,
    nontemporal: bool = False,
) -> np.ndarray:
    """Copy the windows ``x[s : s + window : step]`` for every ``s`` in ``starts`` into a batch.

    Parameters
    ----------
    x : npydir Array, numpy.memmap or ndarray
        ``[samples, channels]``; 1-D is one channel.  Any strides (views such as ``x[:, ::2]``,
        Fortran order) are read in place.
    starts : array_like of int
        First sample of each window, 1-D.
    window : int
        Samples per window (>= 1).  With padding it may exceed ``len(x)``.
    step : int, optional
        Keep every ``step``-th sample of the window; the output has ``ceil(window / step)``.
    out : ndarray, optional
        C-contiguous, writeable ``[len(starts), ceil(window / step), channels]`` array of the
        output dtype, not overlapping ``x``; filled and returned.
    dtype : dtype, optional
        Output dtype (default: ``out.dtype`` or ``x.dtype``).  Casts to float32/float64 happen
        inside the copy in one pass; other casts go through a second pass.
    scale : float, optional
        Multiply after the cast, in the output dtype (which must be floating point).
    pad : {"error", "zero", "edge", "reflect"}
        What windows running past either end read; see the module docstring.
    threads : int, optional
        Threads to split the windows over (the caller and pooled helper threads), capped at
        the number of windows.  ``None``: one thread per 64 KiB of output (so one below
        128 KiB), at most the cores this process may run on (``os.sched_getaffinity``).
        Concurrent calls share one pool of helpers, so they never add up to more threads
        than one call asks for.
    nontemporal : bool, default False
        Write whole windows with non-temporal stores, around the caches (x86; elsewhere a
        plain copy; casts ignore it).  Faster when the output is not in cache yet -- a loader
        cycling through several batch buffers, as :class:`npydir.Batches` does -- and slower
        when it is (an ``out=`` reused every call).  The result is the same.

    Returns
    -------
    ndarray
        Fresh, writeable, C-contiguous (or ``out``).

    Raises
    ------
    IndexError
        A start is out of range (``pad="error"``); the message names it and the valid range.
    ValueError, TypeError
        Bad shapes, dtypes, ``out``, ``step``, ``window``, ``pad`` or ``scale``.
    OSError
        ``x`` is a file mapping and the file shrank under it while the windows were copied
        (another process truncated it); the message names the file.  The copy catches the
        ``SIGBUS`` this raises instead of letting it kill the interpreter; ``out`` is then
        partly written.  Plain numpy indexing of such a mapping cannot be protected this way.
    """
    return _gather(x, starts, window, step, out, dtype, scale, pad, threads, nontemporal, None)


def _gather(x, starts, window, step, out, dtype, scale, pad, threads, nontemporal, pending):
    """:func:`gather_windows`; with ``pending`` (a ``_windows.PendingCopy``) the kernel's copy
    is queued for its background runner where it can be (``pending.queued`` says whether it
    was) and the batch returned is filled once ``pending.wait()`` returned."""
    tx = type(x)
    if tx is not np.memmap and tx is not np.ndarray and hasattr(tx, "_npydir_gather_windows"):
        # an array that gathers its own windows (one in object storage: byte-range requests)
        return x._npydir_gather_windows(starts, window, step=step, out=out, dtype=dtype,
                                        scale=scale, pad=pad, threads=threads)
    if dtype is None and scale is None:
        # The common call (a training loop's): the kernel checks it in C and copies, and
        # returns NOT_HANDLED for anything else, which the general path below checks.
        r = _windows.gather_plain(x, starts, window, step, out, pad, threads, nontemporal,
                                  available_cores() if threads is None else 1, pending)
        if not isinstance(r, int):
            return r
        if r == -2:
            _raise_mapping_shrank(x, _as_2d(x))
        # NOT_HANDLED, or a bad start (nothing copied): the general path explains it.
    # Without out, bad starts are checked before the batch is allocated (a window longer than
    # x is an IndexError, not a MemoryError); otherwise the kernel checks them with the copy.
    a, st, window, step, res, dt, scale = _prepare(
        x, starts, window, step, out, dtype, scale, pad, threads, check_starts=out is None
    )
    nrows = a.shape[0]
    if res.size == 0 or not a.flags.aligned:
        _check_starts(st, nrows, window, pad)
        if res.size == 0:
            return res
        # Misaligned items (a view at an odd byte offset) would be undefined behaviour in C
        # and fault on some CPUs; numpy handles them, slowly.  npy files are always aligned.
        return _gather_indexed(a, st, window, step, res, dt, scale, pad)
    lo, hi = _start_bounds(nrows, window, pad)  # the kernel checks every start against these
    nthreads = _pick_threads(threads, st.shape[0], res.nbytes)
    # Cold pages: for batches of a file mapping, the kernel checks a few windows with mincore()
    # and, if a page is missing, asks for all windows' pages at once rather than one fault at
    # a time (docs/kernel.md has the numbers behind this).
    sample = _ADVISE_SAMPLE if _file_mapped(a) else 0
    pad_code = _PAD_CODES[pad]
    src = a.dtype
    if dt == src and scale is None:
        bad = _windows.gather(a, st, window, res, step=step, pad=pad_code, threads=nthreads,
                              lo=lo, hi=hi, cold_sample=sample, stream=nontemporal,
                              pending=pending)
    elif (dt == _F32 or dt == _F64) and src in _SRC_CODES:
        bad = _windows.gather(a, st, window, res, step=step, pad=pad_code, threads=nthreads,
                              lo=lo, hi=hi, cold_sample=sample, src_code=_SRC_CODES[src],
                              dst_double=dt == _F64, scale=scale, pending=pending)
    else:
        # A cast the one-pass kernel does not cover (e.g. to int32 or float16, or from a
        # non-native byte order): gather in x's dtype, then convert like astype() (in this
        # thread: the second pass is numpy's).
        tmp = np.empty(res.shape, src)
        bad = _windows.gather(a, st, window, tmp, step=step, pad=pad_code, threads=nthreads,
                              lo=lo, hi=hi, cold_sample=sample, stream=nontemporal)
        if bad == -1:
            np.copyto(res, tmp, casting="unsafe")
            if scale is not None:
                np.multiply(res, res.dtype.type(scale), out=res)
    if bad == -2:
        _raise_mapping_shrank(x, a)
    if bad >= 0:
        _raise_bad_start(st, bad, nrows, window, pad, lo, hi)
    return res


#: a lane of the kernel's background runners (see :func:`start_gather_windows`)
CopyLane = _windows.CopyLane


class GatherJob:
    """Windows being copied in the kernel's background thread: :func:`start_gather_windows`.

    :meth:`result` waits for the copy (without the GIL) and returns the batch.  Dropping a
    job withdraws its copy if it has not started, or waits for it if it has: the batch's
    memory is never written after the job is gone.
    """

    __slots__ = ("_batch", "_code", "_pending", "_x")

    def __init__(self, batch: np.ndarray, pending: Any, x: Any) -> None:
        self._batch = batch
        self._pending = pending if pending is not None and pending.queued else None
        self._x = x
        self._code = -1  # how the copy went, once waited for (see PendingCopy.wait)

    def _settle(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            self._code = pending.wait()

    def done(self) -> bool:
        """Whether :meth:`result` would return without waiting."""
        return self._pending is None or self._pending.done()

    def result(self) -> np.ndarray:
        """The batch, once copied.

        Raises
        ------
        OSError
            ``x`` is a file mapping and the file shrank under the copy (as
            :func:`gather_windows`).
        RuntimeError
            The job was started in the parent of this process, before a ``fork()``, and its
            copy was never made here; or it was withdrawn by :meth:`cancel`.
        """
        self._settle()
        code = self._code
        if code == -2:
            _raise_mapping_shrank(self._x, _as_2d(self._x))
        if code == _windows.FORKED:
            raise RuntimeError(
                "npydir: these windows were being copied when the process forked; the "
                "copy belongs to the parent process. Start the copy again in this one"
            )
        if code == _windows.CANCELLED:
            raise RuntimeError("npydir: this copy was cancelled before it ran; the batch is unfilled")
        return self._batch

    def cancel(self) -> bool:
        """Withdraw the copy if it has not started (True: :meth:`result` then raises), else
        wait for it to end (False)."""
        pending, self._pending = self._pending, None
        if pending is None:
            return False
        withdrawn = pending.cancel()
        self._code = pending.wait()  # CANCELLED, or how the copy went
        return bool(withdrawn)


def start_gather_windows(
    x: Any,
    starts: Any,
    window: int,
    *,
    step: int = 1,
    out: np.ndarray | None = None,
    dtype: Any = None,
    scale: float | None = None,
    pad: PadMode = "error",
    threads: int | None = None,
    nontemporal: bool = False,
    lane: CopyLane | None = None,
) -> GatherJob:
    """:func:`gather_windows`, copied in the kernel's background thread while you go on.

    Checks every argument and start now (and raises as :func:`gather_windows` does), queues
    the copy behind those started before it, and returns at once.  ``job.result()`` waits for
    the copy and returns the batch; until then the batch (and ``out``) must not be read.
    The copy needs no Python, so the calling thread keeps the GIL and other Python threads
    run freely: what :class:`npydir.Batches` prefetches with.  Arrays that gather their own
    windows (object storage), casts the one-pass kernel does not cover and misaligned
    arrays are copied now, in this thread.

    Parameters
    ----------
    x, starts, window, step, out, dtype, scale, pad, threads, nontemporal
        As for :func:`gather_windows`.
    lane : CopyLane, optional
        Copies of one lane start in the order they were queued, at most
        ``lane.concurrency`` at a time (each splitting its windows over ``threads``).  The
        default lane runs one copy at a time.

    Returns
    -------
    GatherJob
    """
    pending = _windows.PendingCopy(lane)
    batch = _gather(x, starts, window, step, out, dtype, scale, pad, threads, nontemporal,
                    pending)
    return GatherJob(batch, pending, x)


def gather_windows_reference(
    x: Any,
    starts: Any,
    window: int,
    *,
    step: int = 1,
    out: np.ndarray | None = None,
    dtype: Any = None,
    scale: float | None = None,
    pad: PadMode = "error",
    threads: int | None = None,
    nontemporal: bool = False,
) -> np.ndarray:
    """Pure-NumPy twin of :func:`gather_windows`: same signature, same result, slow.

    Padding is done by ``numpy.pad`` itself on the stretch of ``x`` the windows need, so the
    semantics of ``pad`` are numpy's by construction.  ``threads`` and ``nontemporal`` are
    accepted and ignored.
    Meant for tests and as executable documentation, not for large pads (it materialises them).
    """
    a, st, window, step, res, dt, scale = _prepare(
        x, starts, window, step, out, dtype, scale, pad, threads
    )
    if res.size == 0:
        return res
    return _gather_numpy(a, st, window, step, res, dt, scale, pad)


def _gather_numpy(a, st, window, step, res, dt, scale, pad) -> np.ndarray:
    """The reference computation on validated arguments."""
    offset = 0
    src = a
    if pad != "error":
        n = a.shape[0]
        before = max(0, -int(st.min()))
        after = max(0, int(st.max()) + window - n)
        src = np.pad(a, ((before, after), (0, 0)), mode=_NP_PAD_MODE[pad])
        offset = before
    idx = (st + offset)[:, None] + np.arange(0, window, step)
    windows = src[idx].astype(dt)
    if scale is not None:
        windows *= dt.type(scale)
    res[...] = windows
    return res


def _map_rows(idx: np.ndarray, n: int, pad: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Rows of ``x`` (``n`` rows) that padded row indices ``idx`` read, as the kernel maps
    them, and for ``pad="zero"`` the mask of indices outside (which read zeros)."""
    outside = None
    if pad == "zero":
        outside = (idx < 0) | (idx >= n)
        idx = np.where(outside, 0, idx)
    elif pad == "edge":
        idx = np.clip(idx, 0, n - 1)
    elif pad == "reflect":
        if n == 1:
            idx = np.zeros_like(idx)
        else:
            period = 2 * (n - 1)
            idx = np.mod(idx, period)
            idx = np.where(idx >= n, period - idx, idx)
    return idx, outside


def _gather_indexed(a, st, window, step, res, dt, scale, pad) -> np.ndarray:
    """NumPy fancy indexing with the kernel's row mapping: O(output), no padded copy of x."""
    n = a.shape[0]
    idx, outside = _map_rows(st[:, None] + np.arange(0, window, step), n, pad)
    if n == 0:  # pad="zero" on an empty x
        windows = np.zeros(res.shape, dt)
    else:
        windows = a[idx].astype(dt)
        if outside is not None:
            windows[outside] = 0
    if scale is not None:
        windows *= dt.type(scale)
    res[...] = windows
    return res


def advise_windows(x: Any, starts: Any, window: int, *, step: int = 1) -> None:
    """Ask the OS to read the pages of these windows of ``x`` ahead (``madvise(MADV_WILLNEED)``).

    Returns at once: the reads run in the background, many at a time, so a following
    :func:`gather_windows` of the same windows finds them in memory.  A loader calls this for
    the next batch while it copies the current one.  Overlapping and adjacent windows are merged
    into one request.  Starts outside ``x`` are clipped (this is only a hint); arrays that are
    not file mappings are ignored.

    Parameters are those of :func:`gather_windows`; ``step`` is accepted for symmetry (the pages
    between kept samples are read anyway when rows are smaller than a page).
    """
    _positive_int(step, "step")
    window = _positive_int(window, "window")
    a = _as_2d(x)
    if not _file_mapped(a):
        return
    st = _as_starts(starts)
    _advise(a, st, window, 0)


def sampled_advisor(x: Any, window: int, sample: int) -> Callable[[Any], int] | None:
    """A function of starts that asks the OS to read ahead the pages of those windows of ``x``
    only when ``mincore`` finds one of ``sample`` sampled windows cold (two ``mincore`` calls
    when warm), returning what it advised; None when ``x`` is not file-mapped (nothing to read
    ahead).  The loader advises the next batch with it."""
    if not _file_mapped(x):
        return None
    a = _as_2d(x)
    return lambda starts: _advise(a, starts, window, sample)


def _advise(a: np.ndarray, st: np.ndarray, window: int, sample: int) -> int:
    """madvise(WILLNEED) the windows' pages; with sample > 0 only if mincore finds one cold.

    ``a`` is 2-D (see ``_as_2d``) and file-mapped.
    """
    st = _as_starts(st)
    if st.size == 0 or a.size == 0:
        return 0
    # Bytes one row spans from its lowest to its highest channel address.
    span = a.itemsize + abs(a.strides[1]) * (a.shape[1] - 1)
    if a.strides[1] < 0:
        # Rows with reversed channels start below the address of channel 0.
        a = a[:, ::-1]
    return _windows.advise(a, st, window, span, sample > 0, sample)
