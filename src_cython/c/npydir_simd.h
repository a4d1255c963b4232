/* Memory-access primitives of the window kernel: software prefetch, the spin-wait hint,
   streaming (non-temporal) copies and the atomic counter used to hand out work.
   Everything is static inline: these sit in the innermost loops. */
#ifndef NPYDIR_SIMD_H
#define NPYDIR_SIMD_H

#include <stdint.h>
#include <string.h>

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

/* Symbols shared between the kernel's C files but not exported from the extension. */
#if defined(__GNUC__) || defined(__clang__)
#define NPYDIR_INTERNAL __attribute__((visibility("hidden")))
#else
#define NPYDIR_INTERNAL
#endif

#endif
