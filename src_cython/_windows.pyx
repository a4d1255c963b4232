# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The window-gather kernel behind :func:`npydir.windows.gather_windows`.

Everything here trusts its caller (``npydir/windows.py``), which has already checked dtypes,
shapes, ``out`` and the range of every start.  The only checks done here are the ones that are
cheaper in C than in NumPy (``first_bad_start``), and they run before any copy.

Layout of a job: ``x`` is addressed by a base pointer plus signed byte strides for rows and
channels, so any strided view (``x[:, ::2]``, Fortran order, ``x[::-1]``) is read in place.
``out`` is C-contiguous ``[n_windows, n_out, channels]``.

Threads are plain pthreads created per call, not OpenMP: a torch DataLoader forks worker
processes, and GNU libgomp deadlocks in a forked child whose parent already ran a parallel
region.  Helper threads are started per call and do no work once it returns, so nothing is left
for a fork to break; starting one costs ~20 us, so the Python layer only asks for them when a
batch is large enough to pay for it.  Work is handed out in chunks from an atomic counter, so a
helper thread that the OS schedules late (a busy machine) never delays the caller.
"""

from libc.stdint cimport int8_t, uint8_t, int16_t, uint16_t, int32_t, uint32_t, int64_t, uint64_t
from libc.string cimport memcpy, memset
from libc.stdlib cimport malloc, free, qsort

cimport numpy as cnp

cnp.import_array()

cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>
    #include <pthread.h>
    #include <sys/mman.h>
    #include <unistd.h>

    #define NPYDIR_FETCH_ADD(p, v) __atomic_fetch_add((p), (v), __ATOMIC_ACQ_REL)
    #define NPYDIR_LOAD(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)

    /* Software prefetch as volatile asm: with __builtin_prefetch, GCC 12 at -O2/-O3 emitted
       no prefetch instruction at all for this kernel (objdump; a reduced case of an inline
       helper that loads the address and may return early reproduces it).  Volatile asm stays.
       tests/test_windows.py checks the built module for prefetch instructions. */
    #if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
    #define NPYDIR_PREFETCH(p) __asm__ __volatile__("prefetcht0 %0" :: "m"(*(const char*)(p)))
    #elif (defined(__GNUC__) || defined(__clang__)) && defined(__aarch64__)
    #define NPYDIR_PREFETCH(p) __asm__ __volatile__("prfm pldl1keep, %0" :: "Q"(*(const char*)(p)))
    #elif defined(__GNUC__) || defined(__clang__)
    #define NPYDIR_PREFETCH(p) __builtin_prefetch((const void*)(p), 0, 3)
    #else
    #define NPYDIR_PREFETCH(p) ((void)0)
    #endif
    /* IEEE binary16 -> binary32, exact for every input: normals, subnormals, +-0, +-inf and
       NaN (payload kept, sign kept).  Branch-light variant of F. Giesen's half_to_float_fast. */
    static inline float npydir_half_to_float(uint16_t h) {
        const uint32_t shifted_exp = 0x7c00u << 13;      /* exponent mask after shift */
        uint32_t o = ((uint32_t)(h & 0x7fffu)) << 13;    /* exponent/mantissa bits */
        uint32_t exp = shifted_exp & o;
        float f;
        o += (uint32_t)(127 - 15) << 23;                 /* exponent adjust */
        if (exp == shifted_exp) {                        /* Inf/NaN */
            o += (uint32_t)(128 - 16) << 23;
            memcpy(&f, &o, 4);
        } else if (exp == 0) {                           /* zero or subnormal */
            const uint32_t magic_bits = (uint32_t)113 << 23;
            float magic;
            o += (uint32_t)1 << 23;
            memcpy(&f, &o, 4);
            memcpy(&magic, &magic_bits, 4);
            f -= magic;                                  /* renormalize, exact */
            memcpy(&o, &f, 4);
        } else {
            memcpy(&f, &o, 4);
        }
        memcpy(&o, &f, 4);
        o |= ((uint32_t)(h & 0x8000u)) << 16;            /* sign */
        memcpy(&f, &o, 4);
        return f;
    }

    /* float16 -> float32 of a unit-stride run with the F16C instruction when the CPU has it
       (checked once at import), 8 values per instruction; scalar conversion for the tail. */
    #if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
    #include <immintrin.h>
    /* vcvtph2ps quiets signalling NaNs; numpy keeps their bits.  Blocks of 8 holding one
       (exponent all ones, quiet bit clear, payload non-zero) take the scalar path instead. */
    __attribute__((target("avx,f16c")))
    static void npydir_half_run_f16c(const uint16_t* src, float* dst, Py_ssize_t n,
                                     float scale, int has_scale) {
        Py_ssize_t k = 0, i;
        const __m256 s = _mm256_set1_ps(scale);
        const __m128i exp_q = _mm_set1_epi16(0x7e00), exp_ones = _mm_set1_epi16(0x7c00);
        const __m128i payload = _mm_set1_epi16(0x01ff), zero = _mm_setzero_si128();
        for (; k + 8 <= n; k += 8) {
            __m128i h = _mm_loadu_si128((const __m128i*)(src + k));
            __m128i snan = _mm_andnot_si128(
                _mm_cmpeq_epi16(_mm_and_si128(h, payload), zero),
                _mm_cmpeq_epi16(_mm_and_si128(h, exp_q), exp_ones));
            if (_mm_movemask_epi8(snan)) {
                for (i = k; i < k + 8; i++)
                    dst[i] = has_scale ? npydir_half_to_float(src[i]) * scale
                                       : npydir_half_to_float(src[i]);
                continue;
            }
            __m256 f = _mm256_cvtph_ps(h);
            _mm256_storeu_ps(dst + k, has_scale ? _mm256_mul_ps(f, s) : f);
        }
        for (; k < n; k++)
            dst[k] = has_scale ? npydir_half_to_float(src[k]) * scale
                               : npydir_half_to_float(src[k]);
    }
    static int npydir_have_f16c(void) {
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx") && __builtin_cpu_supports("f16c");
    }
    #else
    static void npydir_half_run_f16c(const uint16_t* src, float* dst, Py_ssize_t n,
                                     float scale, int has_scale) {
        Py_ssize_t k;
        for (k = 0; k < n; k++)
            dst[k] = has_scale ? npydir_half_to_float(src[k]) * scale
                               : npydir_half_to_float(src[k]);
    }
    static int npydir_have_f16c(void) { return 0; }
    #endif
    """
    void NPYDIR_PREFETCH(const void* p) nogil
    Py_ssize_t NPYDIR_FETCH_ADD(Py_ssize_t* p, Py_ssize_t v) nogil
    Py_ssize_t NPYDIR_LOAD(Py_ssize_t* p) nogil
    float npydir_half_to_float(uint16_t h) nogil
    void npydir_half_run_f16c(const uint16_t* src, float* dst, Py_ssize_t n, float scale,
                              int has_scale) nogil
    int npydir_have_f16c()

cdef extern from "<pthread.h>" nogil:
    ctypedef unsigned long pthread_t
    int pthread_create(pthread_t* thread, const void* attr, void* (*start)(void*) noexcept nogil,
                       void* arg)
    int pthread_detach(pthread_t thread)

cdef extern from "<sched.h>" nogil:
    int sched_yield()

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

# Random windows of a file larger than the caches are latency-bound (a cache and TLB miss per
# window).  Prefetching the first and last line of the window PREFETCH_AHEAD windows ahead keeps
# a few misses in flight; the hardware prefetcher streams the rest of long windows.  More lines
# or a longer distance measured no better here (docs/kernel.md).
cdef enum:
    PREFETCH_AHEAD = 8
    STAGE_BYTES = 65536    # staging buffer of the cast kernel: fits in L2
    ADVISE_CHUNK = 131072  # bytes per madvise(WILLNEED) call, see willneed()


# Hardware float16 conversion, decided once per process (tests compare it to numpy bit by bit).
cdef int HAVE_F16C = npydir_have_f16c()
HAS_F16C = bool(HAVE_F16C)

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
    Py_ssize_t w0            # this job's windows: [w0, w1)
    Py_ssize_t w1


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


cdef void copy_windows(const Job* j) noexcept nogil:
    """Plain copy: output dtype is x's dtype."""
    cdef Py_ssize_t w, r, s, i, k
    cdef Py_ssize_t row_bytes = j.nch * j.itemsize
    cdef Py_ssize_t win_bytes = j.nout * row_bytes
    cdef bint contiguous = j.cs == j.itemsize and j.rs == row_bytes
    cdef const char* src
    cdef char* dst
    for k in range(PREFETCH_AHEAD):
        prefetch_window(j, j.w0 + k)
    for w in range(j.w0, j.w1):
        prefetch_window(j, w + PREFETCH_AHEAD)
        s = j.starts[w]
        dst = j.out + w * win_bytes
        if s >= 0 and s <= j.nrows - j.window:
            src = j.base + s * j.rs
            if contiguous and j.step == 1:
                # The whole window is one block of window * channels * itemsize bytes.
                memcpy(dst, src, win_bytes)
            else:
                for r in range(j.nout):
                    copy_row(dst + r * row_bytes, src + r * j.step * j.rs, j.nch, j.cs,
                             j.itemsize)
        else:
            for r in range(j.nout):
                i = map_row(s + r * j.step, j.nrows, j.pad)
                if i < 0:
                    memset(dst + r * row_bytes, 0, row_bytes)
                else:
                    copy_row(dst + r * row_bytes, j.base + i * j.rs, j.nch, j.cs, j.itemsize)


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
    out-of-order window), measured 2x slower than memcpy of the same windows.  So runs of such
    windows are first memcpy'd into a cache-resident staging buffer (many misses in flight, as
    in the plain copy), then converted from there.  Long windows stream and convert directly.
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
    if contiguous and j.step == 1 and win_bytes <= STAGE_BYTES // 4:
        stage = <char*>malloc(STAGE_BYTES)
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
    elif j.dst_double:
        cast_dispatch(j, <double*>NULL)
    else:
        cast_dispatch(j, <float*>NULL)


cdef struct Shared:
    # Work shared by the caller and its helper threads; freed by whoever leaves it last.
    Job proto
    Py_ssize_t nwin
    Py_ssize_t chunk
    Py_ssize_t next          # first window not yet claimed (atomic)
    Py_ssize_t done          # windows copied (atomic)
    Py_ssize_t refs          # caller + helpers still holding this struct (atomic)


cdef void work(Shared* sh) noexcept nogil:
    """Claim chunks of windows until none are left."""
    cdef Job job
    cdef Py_ssize_t lo, hi
    while True:
        lo = NPYDIR_FETCH_ADD(&sh.next, sh.chunk)
        if lo >= sh.nwin:
            return
        hi = lo + sh.chunk
        if hi > sh.nwin:
            hi = sh.nwin
        job = sh.proto
        job.w0 = lo
        job.w1 = hi
        run_job(&job)
        NPYDIR_FETCH_ADD(&sh.done, hi - lo)


cdef void release(Shared* sh) noexcept nogil:
    if NPYDIR_FETCH_ADD(&sh.refs, -1) == 1:
        free(sh)


cdef void* thread_main(void* arg) noexcept nogil:
    work(<Shared*>arg)
    release(<Shared*>arg)
    return NULL


cdef void run_threaded(Job* proto, Py_ssize_t nwin, int nthreads) noexcept nogil:
    """Copy windows [0, nwin) with the caller and up to nthreads - 1 helper threads.

    Windows are claimed in chunks from a shared counter, so the caller never waits for a
    helper the OS has not scheduled yet (on a busy machine that takes milliseconds): it copies
    whatever is left itself and waits only for chunks a helper has already started.  Helpers
    are detached; one that wakes up late finds no work and frees nothing the caller still needs.
    """
    cdef Shared* sh
    cdef pthread_t tid
    cdef int t
    if nthreads > nwin:
        nthreads = <int>nwin
    sh = NULL
    if nthreads > 1:
        sh = <Shared*>malloc(sizeof(Shared))
    if sh == NULL:
        proto.w0 = 0
        proto.w1 = nwin
        run_job(proto)
        return
    sh.proto = proto[0]
    sh.nwin = nwin
    # About four chunks per thread: fine enough to balance, coarse enough to stay cheap.
    sh.chunk = nwin // (4 * nthreads)
    if sh.chunk < 1:
        sh.chunk = 1
    sh.next = 0
    sh.done = 0
    sh.refs = 1
    for t in range(1, nthreads):
        NPYDIR_FETCH_ADD(&sh.refs, 1)
        if pthread_create(&tid, NULL, thread_main, sh) == 0:
            pthread_detach(tid)
        else:
            NPYDIR_FETCH_ADD(&sh.refs, -1)  # no thread (EAGAIN): the caller does its share
    work(sh)
    while NPYDIR_LOAD(&sh.done) < nwin:
        sched_yield()  # a helper is finishing its last chunk
    release(sh)


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


def gather(cnp.ndarray x, const int64_t[::1] starts, Py_ssize_t window, Py_ssize_t step,
           cnp.ndarray out, int pad, int src_code, bint dst_double, double scale,
           bint has_scale, int threads):
    """Fill out[w] with the window of x starting at starts[w].  Trusts every argument.

    x is 2-D [rows, channels] with any strides; out is C-contiguous [len(starts), nout, channels].
    src_code < 0 copies bytes (out.dtype == x.dtype); otherwise casts from the src_code type
    to float32 (or float64 when dst_double), multiplying by scale when has_scale.
    """
    cdef Job job
    cdef Py_ssize_t nwin = starts.shape[0]
    if nwin == 0:
        return out
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
    job.scale = scale
    job.has_scale = has_scale
    with nogil:
        run_threaded(&job, nwin, threads)
    return out


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
