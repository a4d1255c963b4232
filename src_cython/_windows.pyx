# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The window-gather kernel behind :func:`npydir.windows.gather_windows`.

Everything here trusts its caller (``npydir/windows.py``), which has already checked dtypes,
shapes and ``out``.  The checks done here are the ones that are cheaper in C than in NumPy: the
range of every start (``gather``'s ``lo``/``hi``, ``first_bad_start``), which runs before any
copy, and the cold-page probe (mincore), done in the same call so that a batch costs one
Python-to-C transition.

Layout of a job: ``x`` is addressed by a base pointer plus signed byte strides for rows and
channels, so any strided view (``x[:, ::2]``, Fortran order, ``x[::-1]``) is read in place.
``out`` is C-contiguous ``[n_windows, n_out, channels]``.

Prefetch: small windows are copied in two passes over blocks (every line of the block into L2,
then the copy); long windows prefetch the first and last line a few windows ahead (see the
comment above BLOCK_BYTES).

Threads are a pool of plain pthreads, not OpenMP: a torch DataLoader forks worker processes,
and GNU libgomp deadlocks in a forked child whose parent already ran a parallel region.  The
pool is reset in a forked child by a pthread_atfork handler, and the child starts its own
helpers on its first threaded call.  Helpers persist between calls (starting a thread per call
cost ~20 us, more than a small batch), spin briefly after each call so that back-to-back calls
find them awake, then sleep.  Work is handed out in chunks from an atomic counter, so a helper
thread that the OS schedules late (a busy machine) never delays the caller.
"""

from libc.stdint cimport int8_t, uint8_t, int16_t, uint16_t, int32_t, uint32_t, int64_t, uint64_t
from libc.stdint cimport INT64_MIN, INT64_MAX
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

    /* Software prefetch as volatile asm: with __builtin_prefetch, GCC 12 at -O2/-O3 emitted
       no prefetch instruction at all for this kernel (objdump; a reduced case of an inline
       helper that loads the address and may return early reproduces it).  Volatile asm stays.
       tests/test_windows.py checks the built module for prefetch instructions. */
    /* NPYDIR_PREFETCH asks for a line in L1 (long windows, a few lines ahead);
       NPYDIR_PREFETCH_L2 for a line in L2 (every line of a block of small windows, see
       prefetch_block).  NPYDIR_PAUSE is the spin-wait hint. */
    #if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
    #define NPYDIR_PREFETCH(p) __asm__ __volatile__("prefetcht0 %0" :: "m"(*(const char*)(p)))
    #define NPYDIR_PREFETCH_L2(p) __asm__ __volatile__("prefetcht2 %0" :: "m"(*(const char*)(p)))
    #define NPYDIR_PAUSE() __asm__ __volatile__("pause")
    #elif (defined(__GNUC__) || defined(__clang__)) && defined(__aarch64__)
    #define NPYDIR_PREFETCH(p) __asm__ __volatile__("prfm pldl1keep, %0" :: "Q"(*(const char*)(p)))
    #define NPYDIR_PREFETCH_L2(p) \
        __asm__ __volatile__("prfm pldl2keep, %0" :: "Q"(*(const char*)(p)))
    #define NPYDIR_PAUSE() __asm__ __volatile__("yield")
    #elif defined(__GNUC__) || defined(__clang__)
    #define NPYDIR_PREFETCH(p) __builtin_prefetch((const void*)(p), 0, 3)
    #define NPYDIR_PREFETCH_L2(p) __builtin_prefetch((const void*)(p), 0, 2)
    #define NPYDIR_PAUSE() ((void)0)
    #else
    #define NPYDIR_PREFETCH(p) ((void)0)
    #define NPYDIR_PREFETCH_L2(p) ((void)0)
    #define NPYDIR_PAUSE() ((void)0)
    #endif
    /* Non-temporal copy (stream=True): stores that go around the caches.  When the output
       is not in cache already (a loader cycling through several batch buffers), a plain
       store first reads every destination line from memory (read-for-ownership) and evicts
       the lines the block prefetch just brought into L2; streaming stores do neither
       (measured on 256 x 64 windows into rotating buffers: 86 -> 60 us a batch).  Into a
       buffer that is already in L2 they are slower (51 -> 57 us), hence an option.  The
       destination must be 16-byte aligned for the SSE2 stores; otherwise memcpy. */
    #if defined(__SSE2__)
    #include <emmintrin.h>
    static inline void npydir_copy_stream(char* dst, const char* src, size_t n) {
        size_t i = 0;
        if (((uintptr_t)dst & 15u) != 0) {
            memcpy(dst, src, n);
            return;
        }
        for (; i + 64 <= n; i += 64) {
            __m128i a = _mm_loadu_si128((const __m128i*)(src + i));
            __m128i b = _mm_loadu_si128((const __m128i*)(src + i + 16));
            __m128i c = _mm_loadu_si128((const __m128i*)(src + i + 32));
            __m128i d = _mm_loadu_si128((const __m128i*)(src + i + 48));
            _mm_stream_si128((__m128i*)(dst + i), a);
            _mm_stream_si128((__m128i*)(dst + i + 16), b);
            _mm_stream_si128((__m128i*)(dst + i + 32), c);
            _mm_stream_si128((__m128i*)(dst + i + 48), d);
        }
        if (i < n)
            memcpy(dst + i, src + i, n - i);
    }
    /* Streaming stores are weakly ordered: fence before another thread may read them. */
    static inline void npydir_stream_fence(void) { _mm_sfence(); }
    #define NPYDIR_HAVE_STREAM 1
    #else
    static inline void npydir_copy_stream(char* dst, const char* src, size_t n) {
        memcpy(dst, src, n);
    }
    static inline void npydir_stream_fence(void) {}
    #define NPYDIR_HAVE_STREAM 0
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

    /* ---- persistent helper threads ------------------------------------------------------
       One process-wide pool of detached helper threads, created on first use and grown to the
       largest number ever asked for (at most NPYDIR_MAX_HELPERS).  One call at a time owns
       the pool (a try-lock): a call that finds it owned runs on its own thread, so concurrent
       calls never add up to more threads than were asked for.  The owner publishes a task and
       a number of open slots; helpers claim a slot, run the task (which claims chunks of
       windows from the caller's shared counter) and leave.  The caller starts on the task at
       once and, when no chunk is left, closes the slots and waits only for helpers that
       joined.  An idle helper spins for npydir_pool.spin_ns (so back-to-back calls do not pay
       a wake-up), then sleeps on a condition variable: no CPU is used when idle.
       fork(): the child has none of the parent's threads, so a pthread_atfork handler resets
       the pool there; the child's first threaded call starts new helpers. */
    #include <sched.h>
    #include <signal.h>
    #include <time.h>

    #define NPYDIR_MAX_HELPERS 63

    typedef void (*npydir_task_fn)(void*);

    static struct {
        pthread_mutex_t mu;    /* thread creation and sleeping */
        pthread_cond_t cv;
        int nhelpers;          /* helpers started (atomic) */
        int busy;              /* 1 while a call owns the pool (atomic try-lock) */
        uint64_t state;        /* (helpers inside the task << 32) | open slots (atomic) */
        unsigned seq;          /* bumped by every publish (atomic) */
        int sleepers;          /* helpers blocked on cv (atomic) */
        npydir_task_fn fn;     /* the task: written by the owner before it opens slots */
        void* arg;
        long spin_ns;          /* how long an idle helper spins before it sleeps */
        int owner_cpu;         /* core the last caller started on (-1: unknown) */
        int wanted;            /* helpers the last call asked for (atomic) */
        int numbered;          /* helpers that took an index (atomic) */
    } npydir_pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
                     0, 0, 0, 0, 0, NULL, NULL, 100000, -1, 0, 0};

    static pthread_once_t npydir_pool_once = PTHREAD_ONCE_INIT;

    static long npydir_now_ns(void) {
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        return (long)t.tv_sec * 1000000000L + t.tv_nsec;
    }

    static void npydir_pool_atfork_child(void) {
        /* Only the forking thread survives: forget the helpers (their stacks leak, a few
           pages) and any owner.  The mutex may have been held by a thread that is gone. */
        pthread_mutex_init(&npydir_pool.mu, NULL);
        pthread_cond_init(&npydir_pool.cv, NULL);
        npydir_pool.nhelpers = 0;
        npydir_pool.busy = 0;
        npydir_pool.state = 0;
        npydir_pool.sleepers = 0;
        npydir_pool.fn = NULL;
        npydir_pool.arg = NULL;
        npydir_pool.owner_cpu = -1;
        npydir_pool.wanted = 0;
        npydir_pool.numbered = 0;
    }

    static void npydir_pool_init_once(void) {
        pthread_atfork(NULL, NULL, npydir_pool_atfork_child);
    }

    /* Is this thread on the core the last caller ran on?  Unknown: no. */
    static int npydir_on_owner_cpu(void) {
    #if defined(__linux__)
        return sched_getcpu() == __atomic_load_n(&npydir_pool.owner_cpu, __ATOMIC_RELAXED);
    #else
        return 0;
    #endif
    }

    /* A helper that finds itself on the caller's core is useless there and keeps the caller
       off it.  The scheduler puts a woken helper there whenever no core is idle, and a core
       running only niced work is not idle: beside a nice-19 process, 2 threads ran no faster
       than one.  So the helper moves itself to another core it may run on (its affinity
       without the caller's core, then its affinity back: it stays where it landed).  Returns 0
       if it could not (one core only, or not Linux); the caller of this then yields instead. */
    static int npydir_move_off_owner_cpu(void) {
    #if defined(__linux__)
        cpu_set_t allowed, others;
        int cpu = __atomic_load_n(&npydir_pool.owner_cpu, __ATOMIC_RELAXED);
        if (cpu < 0 || cpu >= CPU_SETSIZE || sched_getaffinity(0, sizeof(allowed), &allowed))
            return 0;
        others = allowed;
        CPU_CLR(cpu, &others);
        if (CPU_COUNT(&others) == 0 || sched_setaffinity(0, sizeof(others), &others))
            return 0;
        sched_setaffinity(0, sizeof(allowed), &allowed);
        return 1;
    #else
        return 0;
    #endif
    }

    /* Wait until seq differs from seen: spin until *deadline, then sleep.  On the caller's own
       core, move off it (or yield it every few hundred nanoseconds): a plain spin there kept
       the caller off its core until the spin ended (measured: +50 us per call).  On another
       core, never yield: that hands the core to whatever else is runnable there, niced work
       included. */
    static unsigned npydir_pool_wait(unsigned seen, long* deadline) {
        unsigned s;
        int k;
        while (npydir_now_ns() < *deadline) {
            for (k = 0; k < 16; k++) {
                s = __atomic_load_n(&npydir_pool.seq, __ATOMIC_ACQUIRE);
                if (s != seen)
                    return s;
                NPYDIR_PAUSE();
            }
            if (npydir_on_owner_cpu() && !npydir_move_off_owner_cpu())
                sched_yield();
        }
        pthread_mutex_lock(&npydir_pool.mu);
        /* seq_cst pairs with the owner's seq bump then sleepers read: one sees the other. */
        __atomic_fetch_add(&npydir_pool.sleepers, 1, __ATOMIC_SEQ_CST);
        while ((s = __atomic_load_n(&npydir_pool.seq, __ATOMIC_SEQ_CST)) == seen)
            pthread_cond_wait(&npydir_pool.cv, &npydir_pool.mu);
        __atomic_fetch_sub(&npydir_pool.sleepers, 1, __ATOMIC_SEQ_CST);
        pthread_mutex_unlock(&npydir_pool.mu);
        return s;
    }

    static void* npydir_helper_main(void* p) {
        unsigned seen = (unsigned)(uintptr_t)p;
        int index = __atomic_fetch_add(&npydir_pool.numbered, 1, __ATOMIC_RELAXED);
        long deadline = 0;
        uint64_t st;
        for (;;) {
            seen = npydir_pool_wait(seen, &deadline);
            /* Calls are coming: the helpers the last call asked for stay awake for the next
               one, even if this one was over before we woke up (else a helper that wakes too
               late, on a busy machine, would sleep through every call).  Surplus helpers of
               a larger earlier call keep their old deadline and go back to sleep. */
            if (index < __atomic_load_n(&npydir_pool.wanted, __ATOMIC_RELAXED))
                deadline = npydir_now_ns() + __atomic_load_n(&npydir_pool.spin_ns,
                                                             __ATOMIC_RELAXED);
            if (npydir_on_owner_cpu())
                npydir_move_off_owner_cpu();
            /* Join: take a slot and count ourselves inside in one step, so the owner waits
               for exactly the helpers that run its task. */
            st = __atomic_load_n(&npydir_pool.state, __ATOMIC_SEQ_CST);
            while ((uint32_t)st > 0) {
                if (__atomic_compare_exchange_n(&npydir_pool.state, &st,
                                                st - 1 + ((uint64_t)1 << 32), 0,
                                                __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
                    npydir_pool.fn(npydir_pool.arg);
                    __atomic_fetch_sub(&npydir_pool.state, (uint64_t)1 << 32, __ATOMIC_SEQ_CST);
                    /* Worked: spin a while for the next call. */
                    deadline = npydir_now_ns() + __atomic_load_n(&npydir_pool.spin_ns,
                                                                 __ATOMIC_RELAXED);
                    break;
                }
            }
        }
        return NULL;
    }

    static void npydir_pool_grow(int want) {
        sigset_t all, old;
        pthread_attr_t attr;
        pthread_t tid;
        unsigned seen;
        pthread_mutex_lock(&npydir_pool.mu);
        if (pthread_attr_init(&attr) == 0) {
            pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
            /* Helpers block every signal (they inherit the mask): signals go to the
               interpreter's threads, never to a helper. */
            sigfillset(&all);
            /* ...but the synchronous ones a fault raises: blocked, they kill the process at
               once instead of reaching a handler (the SIGBUS guard, npydir_guard.h). */
            sigdelset(&all, SIGBUS);
            sigdelset(&all, SIGSEGV);
            sigdelset(&all, SIGFPE);
            sigdelset(&all, SIGILL);
            pthread_sigmask(SIG_SETMASK, &all, &old);
            while (npydir_pool.nhelpers < want) {
                seen = __atomic_load_n(&npydir_pool.seq, __ATOMIC_SEQ_CST);
                if (pthread_create(&tid, &attr, npydir_helper_main, (void*)(uintptr_t)seen))
                    break;  /* no more threads (EAGAIN): work with those we have */
                __atomic_store_n(&npydir_pool.nhelpers, npydir_pool.nhelpers + 1,
                                 __ATOMIC_RELEASE);
            }
            pthread_sigmask(SIG_SETMASK, &old, NULL);
            pthread_attr_destroy(&attr);
        }
        pthread_mutex_unlock(&npydir_pool.mu);
    }

    /* Own the pool and open up to want helper slots for fn(arg).  Returns the slots opened;
       0 (the pool is owned by another call, or no thread could be started) means the caller
       runs alone and must not call npydir_pool_finish. */
    static int npydir_pool_start(int want, npydir_task_fn fn, void* arg) {
        int expected = 0, have, sleepers, k;
        if (want <= 0)
            return 0;
        if (want > NPYDIR_MAX_HELPERS)
            want = NPYDIR_MAX_HELPERS;
        if (!__atomic_compare_exchange_n(&npydir_pool.busy, &expected, 1, 0,
                                         __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
            return 0;
        pthread_once(&npydir_pool_once, npydir_pool_init_once);
        if (__atomic_load_n(&npydir_pool.nhelpers, __ATOMIC_ACQUIRE) < want)
            npydir_pool_grow(want);
        have = __atomic_load_n(&npydir_pool.nhelpers, __ATOMIC_ACQUIRE);
        if (want > have)
            want = have;
        if (want == 0) {
            __atomic_store_n(&npydir_pool.busy, 0, __ATOMIC_RELEASE);
            return 0;
        }
        npydir_pool.fn = fn;
        npydir_pool.arg = arg;
    #if defined(__linux__)
        __atomic_store_n(&npydir_pool.owner_cpu, sched_getcpu(), __ATOMIC_RELAXED);
    #endif
        __atomic_store_n(&npydir_pool.wanted, want, __ATOMIC_RELAXED);
        __atomic_store_n(&npydir_pool.state, (uint64_t)want, __ATOMIC_SEQ_CST);
        __atomic_fetch_add(&npydir_pool.seq, 1, __ATOMIC_SEQ_CST);
        sleepers = __atomic_load_n(&npydir_pool.sleepers, __ATOMIC_SEQ_CST);
        if (sleepers > 0) {
            pthread_mutex_lock(&npydir_pool.mu);
            if (want >= sleepers)
                pthread_cond_broadcast(&npydir_pool.cv);
            else
                for (k = 0; k < want; k++)
                    pthread_cond_signal(&npydir_pool.cv);
            pthread_mutex_unlock(&npydir_pool.mu);
        }
        return want;
    }

    /* After the caller's own share: close the slots, wait for the helpers that joined. */
    static void npydir_pool_finish(void) {
        uint64_t st = __atomic_load_n(&npydir_pool.state, __ATOMIC_SEQ_CST);
        long spins = 0;
        while (!__atomic_compare_exchange_n(&npydir_pool.state, &st, st & ~(uint64_t)0xffffffffu,
                                            0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
            ;
        while (__atomic_load_n(&npydir_pool.state, __ATOMIC_SEQ_CST) >> 32) {
            /* A helper is finishing its last chunk.  It may share this core (then it runs
               only when we yield) or have been preempted: spin briefly, then yield. */
            if (++spins < 64)
                NPYDIR_PAUSE();
            else
                sched_yield();
        }
        __atomic_store_n(&npydir_pool.busy, 0, __ATOMIC_RELEASE);
    }

    static void npydir_pool_set_spin(long ns) {
        __atomic_store_n(&npydir_pool.spin_ns, ns, __ATOMIC_RELAXED);
    }
    static long npydir_pool_helpers(void) {
        return __atomic_load_n(&npydir_pool.nhelpers, __ATOMIC_ACQUIRE);
    }
    """
    void NPYDIR_PREFETCH(const void* p) nogil
    void NPYDIR_PREFETCH_L2(const void* p) nogil
    ctypedef void (*npydir_task_fn)(void*) noexcept nogil
    int npydir_pool_start(int want, npydir_task_fn fn, void* arg) nogil
    void npydir_pool_finish() nogil
    void npydir_pool_set_spin(long ns) nogil
    long npydir_pool_helpers() nogil
    Py_ssize_t NPYDIR_FETCH_ADD(Py_ssize_t* p, Py_ssize_t v) nogil
    float npydir_half_to_float(uint16_t h) nogil
    void npydir_copy_stream(char* dst, const char* src, size_t n) nogil
    void npydir_stream_fence() nogil
    int NPYDIR_HAVE_STREAM
    void npydir_half_run_f16c(const uint16_t* src, float* dst, Py_ssize_t n, float scale,
                              int has_scale) nogil
    int npydir_have_f16c()

cdef extern from "npydir_guard.h" nogil:
    ctypedef void (*npydir_guarded_fn)(void*) noexcept nogil
    int npydir_guarded_run(npydir_guarded_fn fn, void* arg)
    int npydir_guard_ensure()
    void npydir_guard_own(void* p)


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


cdef void plan(Job* j) noexcept nogil:
    """Pick the prefetch scheme: two-pass blocks for small windows of dense rows."""
    cdef Py_ssize_t span = j.window * j.rs
    j.block = 0
    j.span = 0
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
    for w in range(j.w0, j.w1):
        prefetch_window(j, w + PREFETCH_AHEAD)
        copy_one(j, w, row_bytes, contiguous)


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
           bint has_scale, int threads, int64_t lo=INT64_MIN, int64_t hi=INT64_MAX,
           int cold_sample=0, bint stream=False):
    """Fill out[w] with the window of x starting at starts[w].  Trusts every argument.

    x is 2-D [rows, channels] with any strides; out is C-contiguous [len(starts), nout, channels].
    src_code < 0 copies bytes (out.dtype == x.dtype); otherwise casts from the src_code type
    to float32 (or float64 when dst_double), multiplying by scale when has_scale.

    Before copying, in the same call (one Python-to-C transition per batch): every start must
    lie in [lo, hi], else nothing is copied and the index of the first bad one is returned;
    then, with cold_sample > 0 (x is a file mapping), mincore() checks that many windows and,
    if a page is missing, madvise(WILLNEED) asks for every window's pages (see advise()).
    stream: plain copies of whole windows use non-temporal stores (see npydir_copy_stream).
    Returns -1 when the windows were copied, and -2 when a SIGBUS cut the copy short: x is a
    file mapping and the file shrank under it (truncated by another process).
    """
    cdef Job job
    cdef int faulted = 0
    cdef Py_ssize_t nwin = starts.shape[0]
    cdef Py_ssize_t k, bad = -1, span, low
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
    job.scale = scale
    job.has_scale = has_scale
    job.stream = stream and src_code < 0
    npydir_guard_ensure()
    with nogil:
        if lo > INT64_MIN or hi < INT64_MAX:
            for k in range(nwin):
                if job.starts[k] < lo or job.starts[k] > hi:
                    bad = k
                    break
        if bad < 0:
            if cold_sample > 0 and job.nrows > 0:
                # Bytes one row spans from its lowest to its highest channel address.
                span = job.itemsize + (job.cs if job.cs > 0 else -job.cs) * (job.nch - 1)
                low = <Py_ssize_t>job.base + (job.cs * (job.nch - 1) if job.cs < 0 else 0)
                advise_nogil(low, job.nrows, job.rs, job.starts, nwin, window, span, True,
                             cold_sample)
            faulted = run_threaded(&job, nwin, threads)
    return -2 if faulted else bad


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
npydir_pool_set_spin(SPIN_NS)


def tune(block_bytes=None, small_window=None, spin_ns=None):
    """Set the kernel's tunables (benchmarks and tests use it); returns them all as a dict.

    block_bytes: bytes of small windows prefetched per block (at most 64 KiB); small_window:
    largest window (bytes of x) that uses the two-pass blocks, 0 for none; spin_ns: how long
    an idle helper thread spins before it sleeps.  Not thread-safe: set before gathering.
    """
    global BLOCK_BYTES, SMALL_WINDOW, SPIN_NS
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
    return {"block_bytes": BLOCK_BYTES, "small_window": SMALL_WINDOW, "spin_ns": SPIN_NS}


def pool_helpers():
    """Helper threads this process has started (0 in a child forked before its first use)."""
    return npydir_pool_helpers()
