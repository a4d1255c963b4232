# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The window-gather kernel behind :func:`npydir.kernel.windows.gather_windows`.

Everything here but ``gather_plain`` trusts its caller (``npydir/windows.py``), which has
already checked dtypes, shapes and ``out``.  The checks done here are the ones that are cheaper
in C than in NumPy: the range of every start (``gather``'s ``lo``/``hi``, ``first_bad_start``),
which runs before any copy, and the cold-page probe (mincore), done in the same call so that a
batch costs one Python-to-C transition.  ``gather_plain`` is the fast path of the call a
training loop makes every batch (no cast): it checks that common case itself, in C, because the
Python checks cost more than their own time there -- the interpreter's code and objects they
touch are evicted by every batch and come back as cache misses -- and hands anything else back
to the Python layer.

Layout of a job: ``x`` is addressed by a base pointer plus signed byte strides for rows and
channels, so any strided view (``x[:, ::2]``, Fortran order, ``x[::-1]``) is read in place.
``out`` is C-contiguous ``[n_windows, n_out, channels]``.

Prefetch: small windows are copied in two passes over blocks (every line of the block into L2,
then the copy); long windows prefetch the first and last line a few windows ahead (see the
comment above BLOCK_BYTES).

The C underneath lives in ``src_cython/c/``: ``npydir_simd.h`` (prefetch, streaming stores),
``npydir_half.h/.c`` (float16 conversion), ``npydir_pool.h/.c`` (the persistent helper-thread
pool, fork-safe, tested on its own by ``tests/kernel/c/test_pool.c``), ``npydir_runner.h/.c``
(background runner threads for queued copies, ``tests/kernel/c/test_runner.c``),
``npydir_threads.h`` (the signal mask both start their threads with) and ``npydir_guard.h``
(the SIGBUS guard around copies out of file mappings).  This module keeps the copy loops, which
Cython's fused types specialise per dtype.
"""

from libc.stdint cimport int8_t, uint8_t, int16_t, uint16_t, int32_t, uint32_t, int64_t, uint64_t
from libc.stdint cimport INT64_MIN, INT64_MAX
from libc.string cimport memcpy, memset
from libc.stdlib cimport malloc, free, qsort

from cpython.long cimport PyLong_CheckExact, PyLong_AsLongLongAndOverflow
from cpython.ref cimport Py_INCREF

cimport cython
cimport numpy as cnp

import mmap as _mmap

import numpy as np

cnp.import_array()

cdef extern from "npydir_simd.h" nogil:
    void NPYDIR_PREFETCH(const void* p)
    void NPYDIR_PREFETCH_L2(const void* p)
    Py_ssize_t NPYDIR_FETCH_ADD(Py_ssize_t* p, Py_ssize_t v)
    void npydir_copy_stream(char* dst, const char* src, size_t n)
    void npydir_stream_fence()
    int NPYDIR_HAVE_STREAM

cdef extern from "npydir_half.h" nogil:
    float npydir_half_to_float(uint16_t h)
    void npydir_half_run_f16c(const uint16_t* src, float* dst, Py_ssize_t n, float scale,
                              int has_scale)
    int npydir_have_f16c()

cdef extern from "npydir_pool.h" nogil:
    ctypedef void (*npydir_task_fn)(void*) noexcept nogil
    int npydir_pool_start(int want, npydir_task_fn fn, void* arg)
    void npydir_pool_finish()
    void npydir_pool_set_spin(long ns)
    long npydir_pool_helpers()

cdef extern from "npydir_runner.h" nogil:
    ctypedef struct npydir_lane_t:
        int limit
        int running
    cdef struct npydir_task:
        npydir_task* next
        void (*fn)(npydir_task*) noexcept nogil
        npydir_lane_t* lane
        int state
        int result
    int npydir_runner_submit(npydir_task* t)
    void npydir_runner_wait(npydir_task* t)
    int npydir_runner_cancel(npydir_task* t)
    void npydir_runner_set_spin(long runner_ns, long waiter_ns)
    long npydir_runner_count()
    int npydir_runner_threads()
    long npydir_runner_inflight()
    int NPYDIR_MAX_RUNNERS
    int NPYDIR_TASK_NEW
    int NPYDIR_TASK_DONE
    int NPYDIR_TASK_CANCELLED
    int NPYDIR_TASK_FORKED

cdef extern from "npydir_guard.h" nogil:
    ctypedef void (*npydir_guarded_fn)(void*) noexcept nogil
    int npydir_guarded_run(npydir_guarded_fn fn, void* arg)
    int npydir_guard_ensure()
    void npydir_guard_own(void* p)


cdef extern from "numpy/arrayobject.h":
    object PyArray_Empty(int nd, cnp.npy_intp* dims, cnp.PyArray_Descr* descr, int fortran)

cdef extern from "<sys/mman.h>" nogil:
    int madvise(void* addr, size_t length, int advice)
    int mincore(void* addr, size_t length, unsigned char* vec)
    int MADV_WILLNEED

cdef extern from "<unistd.h>" nogil:
    long sysconf(int name)
    int _SC_PAGESIZE


ctypedef struct half_t:
    uint16_t bits

ctypedef fused src_t:
    int8_t
    uint8_t
    int16_t
    uint16_t
    int32_t
    uint32_t
    int64_t
    uint64_t
    float
    double
    half_t

ctypedef fused dst_t:
    float
    double

# Pad modes; the Python layer maps names to these.
cdef enum:
    PAD_ERROR = 0
    PAD_ZERO = 1
    PAD_EDGE = 2
    PAD_REFLECT = 3

# Source type codes for the cast kernel (match _SRC_CODES in windows.py).
cdef enum:
    C_INT8 = 0
    C_UINT8 = 1
    C_INT16 = 2
    C_UINT16 = 3
    C_INT32 = 4
    C_UINT32 = 5
    C_INT64 = 6
    C_UINT64 = 7
    C_FLOAT32 = 8
    C_FLOAT64 = 9
    C_FLOAT16 = 10

# Random windows of a file larger than the caches are latency-bound: each window is a cache
# miss, and a core keeps only so many misses in flight.  Two schemes, chosen by window size:
#
# * small windows (at most SMALL_WINDOW bytes): two passes over blocks of about BLOCK_BYTES.
#   First every cache line of every window of the block is prefetched into L2, then the block
#   is copied.  The prefetches carry no data dependency and retire at once, so the whole
#   block's misses are in flight together; the copy then reads from L2.
# * long windows: the hardware prefetcher streams each window once it has started, so the
#   first and last line of the window PREFETCH_AHEAD windows ahead is enough; prefetching every
#   line of long windows measured slower (it evicts the lines being copied).
# The numbers behind both are in docs/kernel.md.
cdef enum:
    PREFETCH_AHEAD = 8
    STAGE_BYTES = 65536    # staging buffer of the cast kernel: fits in L2
    ADVISE_CHUNK = 131072  # bytes per madvise(WILLNEED) call, see willneed()
    LINE = 64              # cache line assumed by the block prefetch

cdef Py_ssize_t BLOCK_BYTES = 32 * 1024
cdef Py_ssize_t SMALL_WINDOW = 12 * 1024
# Plain copies of whole windows inside x follow SMALL_WINDOW like every other copy (two-pass
# blocks below it) unless tune(ahead_plain=True) sends them all to copy_ahead: which of the two
# is faster depends on the CPU (benchmarks/bench_limit.py measures both; docs/kernel.md).
cdef bint AHEAD_PLAIN = False


# Hardware float16 conversion, decided once per process (tests compare it to numpy bit by bit).
cdef int HAVE_F16C = npydir_have_f16c()
HAS_F16C = bool(HAVE_F16C)
HAS_STREAM = bool(NPYDIR_HAVE_STREAM)  # non-temporal stores compiled in (x86 SSE2)

PAD_CODES = {"error": PAD_ERROR, "zero": PAD_ZERO, "edge": PAD_EDGE, "reflect": PAD_REFLECT}


cdef struct Job:
    const char* base        # address of x[0, 0]
    Py_ssize_t nrows
    Py_ssize_t nch
    Py_ssize_t rs            # byte stride between rows (may be negative or zero)
    Py_ssize_t cs            # byte stride between channels
    Py_ssize_t itemsize      # of x
    const int64_t* starts
    Py_ssize_t window
    Py_ssize_t step
    Py_ssize_t nout          # ceil(window / step)
    char* out                # C-contiguous [n_windows, nout, nch] of the output dtype
    Py_ssize_t out_itemsize
    int pad
    int src_code             # -1: plain copy (output dtype == x dtype)
    int dst_double           # cast kernel writes float64 (else float32)
    double scale
    int has_scale
    Py_ssize_t block         # > 0: windows per two-pass block; 0: prefetch ahead
    int stream               # plain copies of whole windows use non-temporal stores
    Py_ssize_t span          # bytes of x one window covers (block mode)
    Py_ssize_t w0            # this job's windows: [w0, w1)
    Py_ssize_t w1
    int inside               # every start is known to lie in [0, nrows - window]


cdef void plan(Job* j) noexcept nogil:
    """Pick the prefetch scheme: two-pass blocks for small windows of dense rows, except for
    a plain copy of whole windows inside x, which copy_ahead does faster at every size."""
    cdef Py_ssize_t span = j.window * j.rs
    j.block = 0
    j.span = 0
    if (j.src_code < 0 and j.inside and not j.stream and j.step == 1 and j.rs > 0
            and j.cs == j.itemsize and j.rs == j.nch * j.itemsize and AHEAD_PLAIN):
        return
    # Dense: rows are contiguous and every line of the window holds a row the copy reads.
    if (j.rs > 0 and j.cs == j.itemsize and j.rs == j.nch * j.itemsize
            and (j.step == 1 or j.step * j.rs <= LINE) and j.window <= SMALL_WINDOW
            and span <= SMALL_WINDOW):
        j.span = span
        j.block = BLOCK_BYTES // span
        if j.block < 1:
            j.block = 1


cdef inline Py_ssize_t map_row(Py_ssize_t i, Py_ssize_t n, int pad) noexcept nogil:
    """Row of x that padded row i reads, or -1 for a zero row (numpy.pad semantics)."""
    cdef Py_ssize_t period
    if 0 <= i < n:
        return i
    if pad == PAD_ZERO:
        return -1
    if pad == PAD_EDGE:
        return 0 if i < 0 else n - 1
    # reflect: mirror about the first and last row without repeating them; repeated reflection
    # for pads longer than the array is periodic with period 2 * (n - 1).
    if n == 1:
        return 0
    period = 2 * (n - 1)
    i = i % period
    if i < 0:
        i += period
    if i >= n:
        i = period - i
    return i


cdef inline void copy_row(char* dst, const char* src, Py_ssize_t nch, Py_ssize_t cs,
                          Py_ssize_t itemsize) noexcept nogil:
    """Copy one row of nch items of itemsize bytes, channel stride cs bytes."""
    cdef Py_ssize_t c
    if cs == itemsize:
        memcpy(dst, src, nch * itemsize)
    elif itemsize == 4:
        for c in range(nch):
            (<uint32_t*>dst)[c] = (<const uint32_t*>(src + c * cs))[0]
    elif itemsize == 8:
        for c in range(nch):
            (<uint64_t*>dst)[c] = (<const uint64_t*>(src + c * cs))[0]
    elif itemsize == 2:
        for c in range(nch):
            (<uint16_t*>dst)[c] = (<const uint16_t*>(src + c * cs))[0]
    elif itemsize == 1:
        for c in range(nch):
            dst[c] = src[c * cs]
    else:
        for c in range(nch):
            memcpy(dst + c * itemsize, src + c * cs, itemsize)


cdef inline void prefetch_window(const Job* j, Py_ssize_t w) noexcept nogil:
    """Ask the cache for the first and last line of window w (windows inside x only)."""
    cdef Py_ssize_t s
    cdef const char* p
    if w >= j.w1:
        return
    s = j.starts[w]
    if s < 0 or s > j.nrows - j.window or j.rs <= 0:
        return
    p = j.base + s * j.rs
    NPYDIR_PREFETCH(p)
    NPYDIR_PREFETCH(p + j.window * j.rs - 1)


cdef inline void prefetch_block(const Job* j, Py_ssize_t w, Py_ssize_t e) noexcept nogil:
    """Prefetch into L2 every line of windows [w, e) that lie inside x (first pass)."""
    cdef Py_ssize_t k, s
    cdef size_t a, end
    for k in range(w, e):
        s = j.starts[k]
        if s < 0 or s > j.nrows - j.window:
            continue
        a = <size_t>(j.base + s * j.rs)
        end = a + <size_t>j.span
        a &= ~(<size_t>(LINE - 1))
        while a < end:
            NPYDIR_PREFETCH_L2(<const void*>a)
            a += LINE


cdef inline void copy_one(const Job* j, Py_ssize_t w, Py_ssize_t row_bytes,
                          bint contiguous) noexcept nogil:
    """Plain copy of window w."""
    cdef Py_ssize_t r, i
    cdef Py_ssize_t s = j.starts[w]
    cdef char* dst = j.out + w * j.nout * row_bytes
    cdef const char* src
    if s >= 0 and s <= j.nrows - j.window:
        src = j.base + s * j.rs
        if contiguous and j.step == 1:
            # The whole window is one block of window * channels * itemsize bytes.
            if j.stream:
                npydir_copy_stream(dst, src, j.nout * row_bytes)
            else:
                memcpy(dst, src, j.nout * row_bytes)
        else:
            for r in range(j.nout):
                copy_row(dst + r * row_bytes, src + r * j.step * j.rs, j.nch, j.cs, j.itemsize)
    else:
        for r in range(j.nout):
            i = map_row(s + r * j.step, j.nrows, j.pad)
            if i < 0:
                memset(dst + r * row_bytes, 0, row_bytes)
            else:
                copy_row(dst + r * row_bytes, j.base + i * j.rs, j.nch, j.cs, j.itemsize)


cdef inline void copy_span(const Job* j, Py_ssize_t w, Py_ssize_t e, Py_ssize_t row_bytes,
                           bint contiguous) noexcept nogil:
    """Copy windows [w, e); whole windows inside x with contiguous rows are one memcpy each,
    without a function call per window (small windows: ~6 ns of 23 per window in L2)."""
    cdef Py_ssize_t k, s
    cdef Py_ssize_t win_bytes = j.nout * row_bytes
    cdef Py_ssize_t hi = j.nrows - j.window
    cdef const char* base = j.base
    cdef const int64_t* starts = j.starts
    cdef char* out = j.out
    cdef Py_ssize_t rs = j.rs
    if contiguous and j.step == 1:
        for k in range(w, e):
            s = starts[k]
            if s >= 0 and s <= hi:
                if j.stream:  # the same every window: predicted, free next to the copy
                    npydir_copy_stream(out + k * win_bytes, base + s * rs, win_bytes)
                else:
                    memcpy(out + k * win_bytes, base + s * rs, win_bytes)
            else:
                copy_one(j, k, row_bytes, contiguous)
    else:
        for k in range(w, e):
            copy_one(j, k, row_bytes, contiguous)


cdef void copy_windows(const Job* j) noexcept nogil:
    """Plain copy: output dtype is x's dtype."""
    cdef Py_ssize_t w, e, k
    cdef Py_ssize_t row_bytes = j.nch * j.itemsize
    cdef bint contiguous = j.cs == j.itemsize and j.rs == row_bytes
    if j.block > 0:
        w = j.w0
        while w < j.w1:
            e = w + j.block if w + j.block < j.w1 else j.w1
            prefetch_block(j, w, e)
            copy_span(j, w, e, row_bytes, contiguous)
            w = e
        return
    for k in range(PREFETCH_AHEAD):
        prefetch_window(j, j.w0 + k)
    if contiguous and j.step == 1 and not j.stream:
        copy_ahead(j, row_bytes)
        return
    for w in range(j.w0, j.w1):
        prefetch_window(j, w + PREFETCH_AHEAD)
        copy_one(j, w, row_bytes, contiguous)


cdef void copy_ahead(const Job* j, Py_ssize_t row_bytes) noexcept nogil:
    """Whole windows of contiguous rows, prefetching PREFETCH_AHEAD windows ahead: the loop
    of the plain-C limit, with the job's fields in registers (through ``j`` the compiler
    reloads them after every memcpy, which may write anywhere)."""
    cdef Py_ssize_t w, s, t
    cdef Py_ssize_t win_bytes = j.nout * row_bytes
    cdef Py_ssize_t hi = j.nrows - j.window
    cdef Py_ssize_t rs = j.rs
    cdef Py_ssize_t w1 = j.w1
    cdef Py_ssize_t ahead_end = w1 - PREFETCH_AHEAD
    cdef const char* base = j.base
    cdef const int64_t* starts = j.starts
    cdef char* out = j.out
    cdef const char* p
    if j.inside:
        # Every window lies inside x (checked before the copy): the loop of the C limit.
        w = j.w0
        while w < ahead_end:
            p = base + starts[w + PREFETCH_AHEAD] * rs
            NPYDIR_PREFETCH(p)
            NPYDIR_PREFETCH(p + win_bytes - 1)
            memcpy(out + w * win_bytes, base + starts[w] * rs, win_bytes)
            w += 1
        while w < w1:
            memcpy(out + w * win_bytes, base + starts[w] * rs, win_bytes)
            w += 1
        return
    for w in range(j.w0, w1):
        if w < ahead_end:
            t = starts[w + PREFETCH_AHEAD]
            if t >= 0 and t <= hi:
                p = base + t * rs
                NPYDIR_PREFETCH(p)
                NPYDIR_PREFETCH(p + win_bytes - 1)
        s = starts[w]
        if s >= 0 and s <= hi:
            memcpy(out + w * win_bytes, base + s * rs, win_bytes)
        else:
            copy_one(j, w, row_bytes, True)


cdef inline void cast_run(const char* src, Py_ssize_t stride, Py_ssize_t count, dst_t* out,
                          dst_t scale, bint has_scale, src_t* kind) noexcept nogil:
    """out[k] = dst_t(src[k]) (* scale) for count items of src_t spaced stride bytes apart."""
    cdef const src_t* p = <const src_t*>src
    cdef Py_ssize_t k
    if src_t is half_t:
        if dst_t is float:
            if HAVE_F16C and stride == 2:
                npydir_half_run_f16c(<const uint16_t*>src, out, count, scale, has_scale)
                return
    if stride == sizeof(src_t):
        # Unit stride: a loop the compiler vectorises (convert + multiply).
        if has_scale:
            for k in range(count):
                if src_t is half_t:
                    out[k] = <dst_t>npydir_half_to_float(p[k].bits) * scale
                else:
                    out[k] = <dst_t>p[k] * scale
        else:
            for k in range(count):
                if src_t is half_t:
                    out[k] = <dst_t>npydir_half_to_float(p[k].bits)
                else:
                    out[k] = <dst_t>p[k]
    else:
        for k in range(count):
            p = <const src_t*>(src + k * stride)
            if src_t is half_t:
                out[k] = <dst_t>npydir_half_to_float(p[0].bits)
            else:
                out[k] = <dst_t>p[0]
            if has_scale:
                out[k] = out[k] * scale


cdef inline void cast_window(const Job* j, Py_ssize_t w, bint contiguous, dst_t scale,
                             bint has_scale, src_t* kind) noexcept nogil:
    """Cast (and scale) window w straight from x into out."""
    cdef Py_ssize_t r, i, nch = j.nch
    cdef Py_ssize_t s = j.starts[w]
    cdef const char* src
    cdef dst_t* dst = (<dst_t*>j.out) + w * j.nout * nch
    if s >= 0 and s <= j.nrows - j.window:
        src = j.base + s * j.rs
        if contiguous and j.step == 1:
            cast_run(src, j.cs, j.window * nch, dst, scale, has_scale, kind)
        else:
            for r in range(j.nout):
                cast_run(src + r * j.step * j.rs, j.cs, nch, dst + r * nch, scale, has_scale,
                         kind)
    else:
        for r in range(j.nout):
            i = map_row(s + r * j.step, j.nrows, j.pad)
            if i < 0:
                memset(dst + r * nch, 0, nch * sizeof(dst_t))
            else:
                cast_run(j.base + i * j.rs, j.cs, nch, dst + r * nch, scale, has_scale, kind)


cdef void cast_windows(const Job* j, src_t* kind, dst_t* dkind) noexcept nogil:
    """Cast (and scale) while copying: one pass over x, no temporary the size of the batch.

    Small contiguous windows are latency-bound: every window is a cache and TLB miss.  A
    converting loop keeps few of them in flight (its loads feed conversions, which fill the
    out-of-order window), measured 2x slower than memcpy of the same windows.  In block mode
    the first pass has already brought the whole block into L2 with many misses in flight, so
    the conversion reads from L2 (copying each window to an L1 buffer first measured no
    faster).  Outside block mode, runs of windows of at most STAGE_BYTES / 4 are first
    memcpy'd into a cache-resident staging buffer (many misses in flight, as in the plain
    copy), then converted from there.  Long windows stream and convert directly.
    """
    cdef Py_ssize_t w, e, s, k, used
    cdef Py_ssize_t nch = j.nch
    cdef Py_ssize_t itemsize = sizeof(src_t)
    cdef bint contiguous = j.cs == itemsize and j.rs == nch * itemsize
    cdef Py_ssize_t win_items = j.window * nch
    cdef Py_ssize_t win_bytes = win_items * itemsize
    cdef dst_t scale = <dst_t>j.scale
    cdef bint has_scale = j.has_scale
    cdef char* stage = NULL
    if j.block > 0:
        w = j.w0
        while w < j.w1:
            e = w + j.block if w + j.block < j.w1 else j.w1
            prefetch_block(j, w, e)
            for k in range(w, e):
                cast_window(j, k, contiguous, scale, has_scale, kind)
            w = e
        return
    if contiguous and j.step == 1 and win_bytes <= STAGE_BYTES // 4:
        stage = <char*>malloc(STAGE_BYTES)
        npydir_guard_own(stage)  # freed by the guard if a SIGBUS cuts the copy short
    for k in range(PREFETCH_AHEAD):
        prefetch_window(j, j.w0 + k)
    w = j.w0
    while w < j.w1:
        if stage != NULL:
            e = w
            used = 0
            while e < j.w1 and used + win_bytes <= STAGE_BYTES:
                s = j.starts[e]
                if s < 0 or s > j.nrows - j.window:
                    break
                prefetch_window(j, e + PREFETCH_AHEAD)
                memcpy(stage + used, j.base + s * j.rs, win_bytes)
                used += win_bytes
                e += 1
            if e > w:
                for k in range(w, e):
                    cast_run(stage + (k - w) * win_bytes, itemsize, win_items,
                             (<dst_t*>j.out) + k * j.nout * nch, scale, has_scale, kind)
                w = e
                continue
        prefetch_window(j, w + PREFETCH_AHEAD)
        cast_window(j, w, contiguous, scale, has_scale, kind)
        w += 1
    npydir_guard_own(NULL)
    free(stage)


cdef void cast_dispatch(const Job* j, dst_t* dkind) noexcept nogil:
    cdef int c = j.src_code
    if c == C_INT8:
        cast_windows(j, <int8_t*>NULL, dkind)
    elif c == C_UINT8:
        cast_windows(j, <uint8_t*>NULL, dkind)
    elif c == C_INT16:
        cast_windows(j, <int16_t*>NULL, dkind)
    elif c == C_UINT16:
        cast_windows(j, <uint16_t*>NULL, dkind)
    elif c == C_INT32:
        cast_windows(j, <int32_t*>NULL, dkind)
    elif c == C_UINT32:
        cast_windows(j, <uint32_t*>NULL, dkind)
    elif c == C_INT64:
        cast_windows(j, <int64_t*>NULL, dkind)
    elif c == C_UINT64:
        cast_windows(j, <uint64_t*>NULL, dkind)
    elif c == C_FLOAT32:
        cast_windows(j, <float*>NULL, dkind)
    elif c == C_FLOAT64:
        cast_windows(j, <double*>NULL, dkind)
    elif c == C_FLOAT16:
        cast_windows(j, <half_t*>NULL, dkind)


cdef void run_job(const Job* j) noexcept nogil:
    if j.src_code < 0:
        copy_windows(j)
        if j.stream:
            npydir_stream_fence()  # before the chunk counts as done for the caller
    elif j.dst_double:
        cast_dispatch(j, <double*>NULL)
    else:
        cast_dispatch(j, <float*>NULL)


cdef struct Shared:
    # One threaded call: lives on the caller's stack; npydir_pool_finish() returns only after
    # every helper that joined has left it.
    Job proto
    Py_ssize_t nwin
    Py_ssize_t chunk
    Py_ssize_t nchunks
    Py_ssize_t claimed       # chunks claimed by anyone (atomic)
    Py_ssize_t back          # chunks claimed by helpers, from the end (atomic)
    Py_ssize_t front         # chunks claimed by the caller, from the start (caller only)
    Py_ssize_t faulted       # threads whose share a SIGBUS cut short (atomic)


cdef void run_chunk(Shared* sh, Py_ssize_t c) noexcept nogil:
    cdef Job job = sh.proto
    job.w0 = c * sh.chunk
    job.w1 = job.w0 + sh.chunk
    if job.w1 > sh.nwin:
        job.w1 = sh.nwin
    run_job(&job)


cdef void caller_share(void* arg) noexcept nogil:
    """The caller claims chunks from the start of the batch until none are left."""
    cdef Shared* sh = <Shared*>arg
    while NPYDIR_FETCH_ADD(&sh.faulted, 0) == 0 and NPYDIR_FETCH_ADD(&sh.claimed, 1) < sh.nchunks:
        run_chunk(sh, sh.front)
        sh.front += 1


cdef void helper_share(void* arg) noexcept nogil:
    """A helper claims chunks from the end of the batch until none are left.

    The caller works from the front and helpers from the back, so from one call to the next
    each thread mostly writes the same part of a reused ``out`` buffer, which then stays in its
    own cache instead of moving between cores.  ``claimed`` counts both, so they never overlap.
    """
    cdef Shared* sh = <Shared*>arg
    while NPYDIR_FETCH_ADD(&sh.faulted, 0) == 0 and NPYDIR_FETCH_ADD(&sh.claimed, 1) < sh.nchunks:
        run_chunk(sh, sh.nchunks - 1 - NPYDIR_FETCH_ADD(&sh.back, 1))


cdef void work_caller(Shared* sh) noexcept nogil:
    if npydir_guarded_run(caller_share, sh):
        NPYDIR_FETCH_ADD(&sh.faulted, 1)


cdef void work_helper(void* arg) noexcept nogil:
    cdef Shared* sh = <Shared*>arg
    if npydir_guarded_run(helper_share, sh):
        NPYDIR_FETCH_ADD(&sh.faulted, 1)


cdef void whole_job(void* arg) noexcept nogil:
    run_job(<const Job*>arg)


cdef int run_threaded(Job* proto, Py_ssize_t nwin, int nthreads) noexcept nogil:
    """Copy windows [0, nwin) with the caller and up to nthreads - 1 pooled helper threads.

    Windows are claimed in chunks from a shared counter, so the caller starts at once and never
    waits for a helper the OS has not scheduled yet (on a busy machine that takes
    milliseconds): it copies whatever is left itself and waits only for chunks a helper has
    already started.  If another call owns the pool, this one runs alone.

    Every thread's share runs under the SIGBUS guard (npydir_guard.h).  Returns 0, or 1 when
    the source mapping shrank under the copy and some windows were not copied.
    """
    cdef Shared sh
    if nthreads > nwin:
        nthreads = <int>nwin
    plan(proto)
    if nthreads > 1:
        sh.proto = proto[0]
        sh.nwin = nwin
        # About four chunks per thread: fine enough to balance, coarse enough to stay cheap;
        # whole prefetch blocks, so that no block is cut short.
        sh.chunk = (nwin + 4 * nthreads - 1) // (4 * nthreads)
        if proto.block > 0:
            sh.chunk = (sh.chunk + proto.block - 1) // proto.block * proto.block
        sh.nchunks = (nwin + sh.chunk - 1) // sh.chunk
        sh.claimed = 0
        sh.back = 0
        sh.front = 0
        sh.faulted = 0
        if npydir_pool_start(nthreads - 1, work_helper, &sh) > 0:
            work_caller(&sh)
            npydir_pool_finish()
            return sh.faulted > 0
    proto.w0 = 0
    proto.w1 = nwin
    return npydir_guarded_run(whole_job, proto)


# What gather_windows decides per call, kept here so that its fast path (gather_plain) and its
# general path (npydir/windows.py) share one copy of each rule.

# Starts and windows stay far from the int64 limits so that start + window never overflows.
cdef int64_t START_LIMIT = (<int64_t>1) << 62
# threads=None: one thread per this many bytes of output, so one thread below twice as many.
cdef Py_ssize_t THREAD_BYTES = 64 * 1024
# Cold-page probe: batches of a file mapping of at least ADVISE_BYTES (a tunable) have
# ADVISE_SAMPLE windows checked with mincore() before the copy (see advise_nogil).
cdef Py_ssize_t ADVISE_BYTES = 64 * 1024
cdef int PROBE_SAMPLE = 2
LIMIT = START_LIMIT
MIN_BYTES_PER_THREAD = THREAD_BYTES
ADVISE_SAMPLE = PROBE_SAMPLE
# gather_plain's answer when a call is not one it takes: the caller runs its general path.
NOT_HANDLED = -3

cdef tuple MAPPINGS = (np.memmap, _mmap.mmap)
cdef type MEMMAP = np.memmap
cdef dict PADS = PAD_CODES


def mapping_of(x, int depth=8):
    """The np.memmap or mmap.mmap that x's memory is (a view of), or None.

    Follows ``.base`` (and a memoryview's ``.obj``) at most ``depth`` steps.
    """
    return find_mapping(x, depth)


cdef object find_mapping(object x, int depth):
    obj = x
    for _ in range(depth):
        if obj is None:
            return None
        if isinstance(obj, MAPPINGS):
            return obj
        obj = getattr(obj, "base", None)
        if isinstance(obj, memoryview):
            obj = (<memoryview>obj).obj
    return None


cdef Py_ssize_t resolve_threads(object threads, Py_ssize_t nwin, Py_ssize_t nbytes,
                                Py_ssize_t cores) except -1:
    """Threads for a call: ``threads`` capped at the windows, or for None the documented rule
    (one thread per MIN_BYTES_PER_THREAD of output, at most ``cores`` and the windows)."""
    cdef Py_ssize_t n
    if threads is not None:
        n = threads if threads < nwin else nwin
        return n if n > 1 else 1
    if nbytes < 2 * THREAD_BYTES or nwin < 2:
        return 1
    n = nbytes // THREAD_BYTES
    if cores < n:
        n = cores
    if nwin < n:
        n = nwin
    return n if n > 1 else 1


def pick_threads(threads, Py_ssize_t nwin, Py_ssize_t nbytes, Py_ssize_t cores):
    """Threads a call uses: ``threads`` (an int >= 1) capped at ``nwin`` windows, or for None
    one per 64 KiB of output (one below 128 KiB) but at most ``cores`` and ``nwin``."""
    if threads is not None:
        threads = min(threads, nwin)  # a Python int of any size
    return resolve_threads(threads, nwin, nbytes, cores)


cdef bint small_int(object v, long long* out) noexcept:
    """v is a Python int in [1, LIMIT); stores it."""
    cdef int overflow = 0
    cdef long long n
    if not PyLong_CheckExact(v):
        return False
    n = PyLong_AsLongLongAndOverflow(v, &overflow)
    if overflow or n < 1 or n >= START_LIMIT:
        return False
    out[0] = n
    return True


def gather_plain(x, starts, window, step, out, pad, threads, bint stream, Py_ssize_t cores,
                 PendingCopy pending=None):
    """gather_windows without dtype or scale, for the arguments a training loop passes.

    Checks in C what npydir.kernel.windows checks in Python, for the common case only: ``x`` a plain
    ndarray or np.memmap, 1-D or 2-D, aligned, non-empty, of a numeric dtype; ``starts`` a
    non-empty C-contiguous native int64 ndarray; ``window``/``step`` ints in [1, 2**62);
    ``pad`` one of PAD_CODES; ``threads`` None or an int >= 1; ``out`` None or a plain ndarray
    of the right shape and x's dtype, C-contiguous, writeable, not overlapping x.  Anything
    else returns NOT_HANDLED before any copy, and the caller's general path checks (and
    explains) it.  Otherwise returns the filled batch (``out``, or a fresh array), or the
    index of the first start out of range (nothing copied), or -2 when a SIGBUS cut the copy
    short (x's file shrank).  With ``pending``, the copy is queued for the background runner
    (see PendingCopy) and the batch returned at once is filled only once ``pending.wait()``
    returned.
    """
    cdef cnp.ndarray a, st, res
    cdef Job job
    cdef long long w, s
    cdef Py_ssize_t nwin, nout, nch, nthreads, nbytes, k, lo_x, hi_x, extent
    cdef cnp.npy_intp dims[3]
    cdef int64_t lo, hi
    cdef int typenum, sample = 0
    cdef const int64_t* starts_p
    cdef object code, descr
    if type(x) is not cnp.ndarray and type(x) is not MEMMAP:
        return NOT_HANDLED
    a = <cnp.ndarray>x
    typenum = cnp.PyArray_TYPE(a)
    if not (typenum <= cnp.NPY_CLONGDOUBLE or typenum == cnp.NPY_FLOAT16):
        return NOT_HANDLED  # object, datetime, string, structured: the general path
    if cnp.PyArray_NDIM(a) == 2:
        nch = cnp.PyArray_DIM(a, 1)
        job.cs = cnp.PyArray_STRIDE(a, 1)
    elif cnp.PyArray_NDIM(a) == 1:
        nch = 1
        job.cs = cnp.PyArray_ITEMSIZE(a)
    else:
        return NOT_HANDLED
    job.nrows = cnp.PyArray_DIM(a, 0)
    if job.nrows == 0 or nch == 0 or not cnp.PyArray_ISALIGNED(a):
        return NOT_HANDLED
    if type(starts) is not cnp.ndarray:
        return NOT_HANDLED
    st = <cnp.ndarray>starts
    if (cnp.PyArray_NDIM(st) != 1 or cnp.PyArray_TYPE(st) != cnp.NPY_INT64
            or not cnp.PyArray_ISNOTSWAPPED(st) or not cnp.PyArray_IS_C_CONTIGUOUS(st)):
        return NOT_HANDLED
    nwin = cnp.PyArray_DIM(st, 0)
    if nwin == 0 or not small_int(window, &w) or not small_int(step, &s):
        return NOT_HANDLED
    if type(pad) is not str:
        return NOT_HANDLED
    code = PADS.get(pad)
    if code is None:
        return NOT_HANDLED
    job.pad = code
    if threads is not None and (not PyLong_CheckExact(threads) or threads < 1):
        return NOT_HANDLED
    nout = (w + s - 1) // s
    if job.pad == PAD_ERROR:
        lo = 0
        hi = job.nrows - w
    else:
        lo = -START_LIMIT
        hi = START_LIMIT
    if out is None:
        # Bad starts before the allocation: a window longer than x must be an IndexError, not
        # a MemoryError for a batch that would never be filled.
        starts_p = <const int64_t*>cnp.PyArray_DATA(st)
        for k in range(nwin):
            if starts_p[k] < lo or starts_p[k] > hi:
                return k
        dims[0] = nwin
        dims[1] = nout
        dims[2] = nch
        descr = <cnp.dtype>cnp.PyArray_DESCR(a)
        Py_INCREF(descr)  # PyArray_Empty steals a reference
        res = PyArray_Empty(3, dims, <cnp.PyArray_Descr*>descr, 0)
    else:
        if type(out) is not cnp.ndarray:
            return NOT_HANDLED
        res = <cnp.ndarray>out
        if (cnp.PyArray_NDIM(res) != 3 or cnp.PyArray_DIM(res, 0) != nwin
                or cnp.PyArray_DIM(res, 1) != nout or cnp.PyArray_DIM(res, 2) != nch
                or not cnp.PyArray_EquivTypes(<cnp.dtype>cnp.PyArray_DESCR(res),
                                           <cnp.dtype>cnp.PyArray_DESCR(a))
                or not cnp.PyArray_IS_C_CONTIGUOUS(res) or not cnp.PyArray_ISWRITEABLE(res)):
            return NOT_HANDLED
        # out must not overlap x: the same bounds test as np.may_share_memory (max_work=None).
        lo_x = <Py_ssize_t>cnp.PyArray_DATA(a)
        hi_x = lo_x + cnp.PyArray_ITEMSIZE(a)
        for k in range(cnp.PyArray_NDIM(a)):
            extent = cnp.PyArray_STRIDE(a, k) * (cnp.PyArray_DIM(a, k) - 1)
            if extent < 0:
                lo_x += extent
            else:
                hi_x += extent
        if (<Py_ssize_t>cnp.PyArray_DATA(res) < hi_x
                and lo_x < <Py_ssize_t>cnp.PyArray_DATA(res) + cnp.PyArray_NBYTES(res)):
            return NOT_HANDLED
    nbytes = cnp.PyArray_NBYTES(res)
    if nbytes == 0:
        return NOT_HANDLED
    nthreads = resolve_threads(threads, nwin, nbytes, cores)
    # A 1-D x is viewed as [:, None] by the general path: one step less to its mapping.
    if nbytes >= ADVISE_BYTES and find_mapping(a, 8 if cnp.PyArray_NDIM(a) == 2 else 7) is not None:
        sample = PROBE_SAMPLE
    job.base = <const char*>cnp.PyArray_DATA(a)
    job.nch = nch
    job.rs = cnp.PyArray_STRIDE(a, 0)
    job.itemsize = cnp.PyArray_ITEMSIZE(a)
    job.starts = <const int64_t*>cnp.PyArray_DATA(st)
    job.window = w
    job.step = s
    job.nout = nout
    job.out = <char*>cnp.PyArray_DATA(res)
    job.out_itemsize = job.itemsize
    job.src_code = -1
    job.dst_double = 0
    job.scale = 1.0
    job.has_scale = 0
    job.stream = stream
    k = check_and_run(&job, nwin, lo, hi, sample, <int>nthreads, pending,
                      None if pending is None else (a, st, res))
    return res if k == -1 else k


def first_bad_start(const int64_t[::1] starts, Py_ssize_t nrows, Py_ssize_t window,
                    int64_t lo, int64_t hi):
    """Index of the first start outside [lo, hi], or -1.  (hi is inclusive.)"""
    cdef Py_ssize_t k, n = starts.shape[0]
    cdef Py_ssize_t bad = -1
    with nogil:
        for k in range(n):
            if starts[k] < lo or starts[k] > hi:
                bad = k
                break
    return bad


def gather(cnp.ndarray x, const int64_t[::1] starts, Py_ssize_t window, cnp.ndarray out, *,
           Py_ssize_t step=1, int pad=PAD_ERROR, int src_code=-1, bint dst_double=False,
           scale=None, int threads=1, int64_t lo=INT64_MIN, int64_t hi=INT64_MAX,
           int cold_sample=0, bint stream=False, PendingCopy pending=None):
    """Fill out[w] with the window of x starting at starts[w].  Trusts every argument.

    x is 2-D [rows, channels] with any strides; out is C-contiguous [len(starts), nout, channels]
    with nout = ceil(window / step).  pad is a PAD_CODES value.  src_code < 0 copies bytes
    (out.dtype == x.dtype); otherwise casts from the src_code type to float32 (or float64 when
    dst_double), multiplying by scale unless it is None.  threads: the caller plus pooled
    helpers.

    Before copying, in the same call (one Python-to-C transition per batch): every start must
    lie in [lo, hi], else nothing is copied and the index of the first bad one is returned;
    then, with cold_sample > 0 (x is a file mapping) and at least advise_min_bytes (see tune)
    of output, mincore() checks that many windows and, if a page is missing, madvise(WILLNEED)
    asks for every window's pages (see advise()).
    stream: plain copies of whole windows use non-temporal stores (see npydir_copy_stream).
    Returns -1 when the windows were copied, and -2 when a SIGBUS cut the copy short: x is a
    file mapping and the file shrank under it (truncated by another process).
    With ``pending``, a copy whose starts passed the check is queued for the background
    runner instead (see PendingCopy): -1 at once, ``out`` filled once ``pending.wait()``
    returned.
    """
    cdef Job job
    cdef Py_ssize_t nwin = starts.shape[0]
    if nwin == 0:
        return -1
    job.base = <const char*>cnp.PyArray_DATA(x)
    job.nrows = cnp.PyArray_DIM(x, 0)
    job.nch = cnp.PyArray_DIM(x, 1)
    job.rs = cnp.PyArray_STRIDE(x, 0)
    job.cs = cnp.PyArray_STRIDE(x, 1)
    job.itemsize = cnp.PyArray_ITEMSIZE(x)
    job.starts = &starts[0]
    job.window = window
    job.step = step
    job.nout = (window + step - 1) // step
    job.out = <char*>cnp.PyArray_DATA(out)
    job.out_itemsize = cnp.PyArray_ITEMSIZE(out)
    job.pad = pad
    job.src_code = src_code
    job.dst_double = dst_double
    job.scale = 1.0 if scale is None else <double>scale
    job.has_scale = scale is not None
    job.stream = stream and src_code < 0
    if cnp.PyArray_NBYTES(out) < ADVISE_BYTES:
        cold_sample = 0
    return check_and_run(&job, nwin, lo, hi, cold_sample, threads, pending,
                         None if pending is None else (x, starts.base, out))


cdef Py_ssize_t check_and_run(Job* job, Py_ssize_t nwin, int64_t lo, int64_t hi,
                              int cold_sample, int threads, PendingCopy pending,
                              object keep) except -3:
    """The part of a call after the arguments: range check, then the copy (nogil).

    Returns -1 when copied, the index of the first start outside [lo, hi] (nothing copied),
    or -2 when a SIGBUS cut the copy short.  With ``pending``, a copy whose starts passed the
    check is queued for the background runner instead (returns -1 at once; ``pending.wait()``
    tells how it went) and ``keep`` (whatever the job points into) stays alive until it ran.
    """
    cdef int faulted = 0
    cdef Py_ssize_t k, bad = -1
    # pad="error" bounds: once every start passed the check, no copy loop needs to test one.
    job.inside = lo >= 0 and hi <= job.nrows - job.window
    npydir_guard_ensure()
    with nogil:
        if lo > INT64_MIN or hi < INT64_MAX:
            for k in range(nwin):
                if job.starts[k] < lo or job.starts[k] > hi:
                    bad = k
                    break
        if bad < 0 and pending is None:
            faulted = copy_job(job, nwin, cold_sample, threads)
    if bad < 0 and pending is not None:
        pending.start(job, nwin, cold_sample, threads, keep)
    return -2 if faulted else bad


cdef int copy_job(Job* job, Py_ssize_t nwin, int cold_sample, int threads) noexcept nogil:
    """Cold-page probe, then the copy; 1 when a SIGBUS cut it short, else 0."""
    cdef Py_ssize_t span, low
    if cold_sample > 0 and job.nrows > 0:
        # Bytes one row spans from its lowest to its highest channel address.
        span = job.itemsize + (job.cs if job.cs > 0 else -job.cs) * (job.nch - 1)
        low = <Py_ssize_t>job.base + (job.cs * (job.nch - 1) if job.cs < 0 else 0)
        advise_nogil(low, job.nrows, job.rs, job.starts, nwin, job.window, span, True,
                     cold_sample)
    return run_threaded(job, nwin, threads)


# ---- copies in the background ---------------------------------------------------------------
# A prefetching loader queues each batch's copy with the runner (npydir_runner.h) and waits for
# it only when the batch is wanted: no Python thread, so nothing but the caller ever needs the
# GIL for a batch (docs/batches.md, "Prefetching").

cdef struct AsyncCopy:
    npydir_task task     # first: the runner's task pointer is this struct's
    Job job
    Py_ssize_t nwin
    int cold_sample
    int threads


cdef void run_async_copy(npydir_task* t) noexcept nogil:
    cdef AsyncCopy* c = <AsyncCopy*>t
    t.result = -2 if copy_job(&c.job, c.nwin, c.cold_sample, c.threads) else -1


@cython.final
cdef class CopyLane:
    """A lane of the background runners: at most ``concurrency`` of its copies run at once,
    started in the order they were queued.  Copies without a lane run one at a time."""
    cdef npydir_lane_t lane

    def __cinit__(self, int concurrency=1):
        if not 1 <= concurrency <= NPYDIR_MAX_RUNNERS:
            raise ValueError(
                f"CopyLane: concurrency must lie in [1, {NPYDIR_MAX_RUNNERS}], found {concurrency}"
            )
        self.lane.limit = concurrency
        self.lane.running = 0

    @property
    def concurrency(self):
        """Copies of this lane that may run at once."""
        return self.lane.limit

    @property
    def running(self):
        """Copies of this lane running now (a snapshot)."""
        return self.lane.running


# Dropping a PendingCopy whose copy is queued withdraws it, and one that is running waits for
# it: the runner writes into arrays ``keep`` holds.  no_gc_clear: the garbage collector must
# not drop ``keep`` (and with it the output) before __dealloc__ has waited.
@cython.no_gc_clear
@cython.final
cdef class PendingCopy:
    """A window copy queued for the kernel's background runners (see ``gather``), in
    ``lane`` (a CopyLane; None: the default lane, one copy at a time).

    ``wait()`` returns once it ran: -1 copied, -2 a SIGBUS cut it short (x's file shrank),
    ``CANCELLED`` withdrawn by ``cancel()``, ``FORKED`` started in the parent of this
    process (a fork()ed child never gets it), ``-1`` as well if nothing was queued.
    """
    cdef AsyncCopy c
    cdef object keep
    cdef CopyLane lane_ref   # the lane's struct must outlive the queued task
    cdef readonly bint queued

    def __cinit__(self, CopyLane lane=None):
        self.c.task.state = NPYDIR_TASK_NEW
        self.c.task.result = -1
        self.c.task.fn = run_async_copy
        self.c.task.lane = NULL if lane is None else &lane.lane
        self.lane_ref = lane
        self.queued = False

    cdef void start(self, Job* job, Py_ssize_t nwin, int cold_sample, int threads,
                    object keep) except *:
        if self.queued:
            raise RuntimeError("PendingCopy: already holds a copy")
        self.c.job = job[0]
        self.c.nwin = nwin
        self.c.cold_sample = cold_sample
        self.c.threads = threads
        self.keep = keep
        self.queued = True
        if npydir_runner_submit(&self.c.task) != 0:
            # no thread to run it: copy now, in this thread, as a synchronous call would
            with nogil:
                run_async_copy(&self.c.task)
            self.c.task.state = NPYDIR_TASK_DONE

    def wait(self):
        """Block (without the GIL) until the copy ran; its result code (see the class)."""
        if self.queued:
            with nogil:
                npydir_runner_wait(&self.c.task)
            self.keep = None
        return self.c.task.result

    def done(self):
        """Whether ``wait()`` would return at once."""
        return not self.queued or self.c.task.state == NPYDIR_TASK_DONE

    def cancel(self):
        """Withdraw the copy if it has not started (True), else wait for it (False)."""
        cdef int withdrawn = 0
        if self.queued:
            with nogil:
                withdrawn = npydir_runner_cancel(&self.c.task)
            self.keep = None
        return bool(withdrawn)

    def __dealloc__(self):
        if self.queued and self.c.task.state != NPYDIR_TASK_DONE:
            with nogil:
                npydir_runner_cancel(&self.c.task)


CANCELLED = NPYDIR_TASK_CANCELLED
FORKED = NPYDIR_TASK_FORKED


def runner_tasks():
    """Copies the background runners have run in this process (since it started or forked)."""
    return npydir_runner_count()


def runner_inflight():
    """Copies queued for the background runners or running now, in this process."""
    return npydir_runner_inflight()


def runner_threads():
    """Background runner threads started in this process (0 in a fork()ed child at first)."""
    return npydir_runner_threads()


cdef int cmp_range(const void* a, const void* b) noexcept nogil:
    cdef Py_ssize_t x = (<const Py_ssize_t*>a)[0]
    cdef Py_ssize_t y = (<const Py_ssize_t*>b)[0]
    return (x > y) - (x < y)


cdef Py_ssize_t window_pages(Py_ssize_t base, Py_ssize_t rs, Py_ssize_t row_span,
                             Py_ssize_t nrows, int64_t s, Py_ssize_t window,
                             Py_ssize_t page, Py_ssize_t* lo, Py_ssize_t* hi) noexcept nogil:
    """Page-aligned address range [lo, hi) holding rows max(s,0)..min(s+window,nrows)-1."""
    cdef int64_t a = s if s > 0 else 0
    cdef int64_t b = s + window
    cdef Py_ssize_t first, last
    if b > nrows:
        b = nrows
    if a >= b:
        return 0
    first = base + a * rs
    last = base + (b - 1) * rs
    if first > last:          # negative row stride
        first, last = last, first
    last += row_span
    lo[0] = first - (first % page)
    hi[0] = last
    return 1


cdef Py_ssize_t willneed(Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    """madvise(MADV_WILLNEED) on [lo, hi) in pieces of at most ADVISE_CHUNK bytes.

    Linux reads at most max(read-ahead size, device request size) pages per WILLNEED call
    (force_page_cache_ra), 128 KiB with default settings: a longer range would have its tail
    left to page faults one at a time.  Returns the number of calls.
    """
    cdef Py_ssize_t n = 0
    while lo < hi:
        madvise(<void*>lo, hi - lo if hi - lo < ADVISE_CHUNK else ADVISE_CHUNK, MADV_WILLNEED)
        lo += ADVISE_CHUNK
        n += 1
    return n


cdef Py_ssize_t advise_nogil(Py_ssize_t base, Py_ssize_t nrows, Py_ssize_t rs,
                             const int64_t* starts, Py_ssize_t n, Py_ssize_t window,
                             Py_ssize_t row_span, bint only_if_cold, int sample) noexcept nogil:
    cdef Py_ssize_t page = sysconf(_SC_PAGESIZE)
    cdef Py_ssize_t* ranges
    cdef Py_ssize_t k, m, lo = 0, hi = 0, cur_lo, cur_hi, calls = 0, npages, idx, nsample
    cdef unsigned char vec[64]
    cdef bint cold
    if only_if_cold:
        cold = False
        nsample = sample if sample < n else n
        for k in range(nsample):
            idx = (k * n) // nsample
            if not window_pages(base, rs, row_span, nrows, starts[idx], window, page, &lo, &hi):
                continue
            npages = (hi - lo + page - 1) // page
            if npages > 64:
                npages = 64
            if mincore(<void*>lo, npages * page, vec) != 0:
                continue
            for m in range(npages):
                if not (vec[m] & 1):
                    cold = True
                    break
            if cold:
                break
        if not cold:
            return 0
    ranges = <Py_ssize_t*>malloc(2 * n * sizeof(Py_ssize_t))
    if ranges == NULL:
        return 0
    m = 0
    for k in range(n):
        if window_pages(base, rs, row_span, nrows, starts[k], window, page, &lo, &hi):
            ranges[2 * m] = lo
            ranges[2 * m + 1] = hi
            m += 1
    qsort(ranges, m, 2 * sizeof(Py_ssize_t), cmp_range)
    if m > 0:
        cur_lo = ranges[0]
        cur_hi = ranges[1]
        for k in range(1, m):
            if ranges[2 * k] <= cur_hi + page:
                if ranges[2 * k + 1] > cur_hi:
                    cur_hi = ranges[2 * k + 1]
            else:
                calls += willneed(cur_lo, cur_hi)
                cur_lo = ranges[2 * k]
                cur_hi = ranges[2 * k + 1]
        calls += willneed(cur_lo, cur_hi)
    free(ranges)
    return calls


def advise(cnp.ndarray x, const int64_t[::1] starts, Py_ssize_t window, Py_ssize_t row_span,
           bint only_if_cold, int sample):
    """madvise(MADV_WILLNEED) the pages of every window of x (a file mapping).

    Ranges are page-aligned, sorted and merged so that overlapping or adjacent windows cost one
    syscall.  With only_if_cold, first checks up to ``sample`` windows with mincore() and does
    nothing when they are all resident (the warm path then costs ``sample`` cheap syscalls).
    Returns the number of madvise calls made.
    """
    cdef Py_ssize_t n = starts.shape[0]
    cdef Py_ssize_t base = <Py_ssize_t>cnp.PyArray_DATA(x)
    cdef Py_ssize_t nrows = cnp.PyArray_DIM(x, 0)
    cdef Py_ssize_t rs = cnp.PyArray_STRIDE(x, 0)
    cdef Py_ssize_t calls
    if n == 0 or window <= 0 or nrows == 0:
        return 0
    with nogil:
        calls = advise_nogil(base, nrows, rs, &starts[0], n, window, row_span, only_if_cold,
                             sample)
    return calls


def half_to_float_bits(const uint16_t[::1] h, float[::1] out):
    """Convert float16 bit patterns with the kernel's own conversion (tested exhaustively)."""
    cdef Py_ssize_t k
    with nogil:
        for k in range(h.shape[0]):
            out[k] = npydir_half_to_float(h[k])


# Idle helpers spin this long before they sleep: back-to-back calls (a training loop) then find
# them awake; waking a sleeping one costs a system call and tens of microseconds.
cdef long SPIN_NS = 100000
cdef long RUNNER_SPIN_NS = 100000
cdef long WAIT_SPIN_NS = 10000
npydir_pool_set_spin(SPIN_NS)
npydir_runner_set_spin(RUNNER_SPIN_NS, WAIT_SPIN_NS)


def tune(block_bytes=None, small_window=None, spin_ns=None, advise_min_bytes=None,
         ahead_plain=None, wait_spin_ns=None, runner_spin_ns=None):
    """Set the kernel's tunables (benchmarks and tests use it); returns them all as a dict.

    block_bytes: bytes of small windows prefetched per block (at most 64 KiB); small_window:
    largest window (bytes of x) that uses the two-pass blocks, 0 for none; spin_ns: how long
    an idle helper thread spins before it sleeps; runner_spin_ns: the same for an idle
    background runner; wait_spin_ns: how long a thread waiting for a queued copy
    (PendingCopy.wait) spins before it sleeps; advise_min_bytes: smallest batch (bytes of
    output) of a file mapping whose pages are probed with mincore() before the copy;
    ahead_plain: plain copies of whole windows inside x prefetch ahead whatever their size
    (False: they follow small_window like every other copy).
    Not thread-safe: set before gathering.
    """
    global BLOCK_BYTES, SMALL_WINDOW, SPIN_NS, ADVISE_BYTES, AHEAD_PLAIN, WAIT_SPIN_NS
    global RUNNER_SPIN_NS
    if block_bytes is not None:
        if not 0 < block_bytes <= STAGE_BYTES:
            raise ValueError(f"block_bytes must lie in (0, {STAGE_BYTES}], found {block_bytes}")
        BLOCK_BYTES = block_bytes
    if small_window is not None:
        if small_window < 0:
            raise ValueError(f"small_window must be >= 0, found {small_window}")
        SMALL_WINDOW = small_window
    if spin_ns is not None:
        if spin_ns < 0:
            raise ValueError(f"spin_ns must be >= 0, found {spin_ns}")
        SPIN_NS = spin_ns
        npydir_pool_set_spin(SPIN_NS)
    if runner_spin_ns is not None:
        if runner_spin_ns < 0:
            raise ValueError(f"runner_spin_ns must be >= 0, found {runner_spin_ns}")
        RUNNER_SPIN_NS = runner_spin_ns
        npydir_runner_set_spin(RUNNER_SPIN_NS, -1)
    if wait_spin_ns is not None:
        if wait_spin_ns < 0:
            raise ValueError(f"wait_spin_ns must be >= 0, found {wait_spin_ns}")
        WAIT_SPIN_NS = wait_spin_ns
        npydir_runner_set_spin(-1, WAIT_SPIN_NS)
    if advise_min_bytes is not None:
        if advise_min_bytes < 0:
            raise ValueError(f"advise_min_bytes must be >= 0, found {advise_min_bytes}")
        ADVISE_BYTES = min(advise_min_bytes, START_LIMIT)
    if ahead_plain is not None:
        AHEAD_PLAIN = bool(ahead_plain)
    return {"block_bytes": BLOCK_BYTES, "small_window": SMALL_WINDOW, "spin_ns": SPIN_NS,
            "advise_min_bytes": ADVISE_BYTES, "ahead_plain": bool(AHEAD_PLAIN),
            "wait_spin_ns": WAIT_SPIN_NS, "runner_spin_ns": RUNNER_SPIN_NS}


def pool_helpers():
    """Helper threads this process has started (0 in a child forked before its first use)."""
    return npydir_pool_helpers()
