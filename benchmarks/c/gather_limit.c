/* The plain-C limit the window kernel is measured against (benchmarks/bench_limit.py).

   Copies the windows x[s : s + window] (rows of row_bytes contiguous bytes) of a batch into a
   reused output buffer, one thread, three ways, so that the kernel's figure is a ratio to the
   best a straightforward C loop does on the same data in the same run:

   scheme 0, plain:      one memcpy per window, in order;
   scheme 1, ahead:      the same, prefetching the first and last cache line of the window
                         AHEAD windows later into L1;
   scheme 2, two-pass:   windows in blocks of about block_bytes: first every cache line of the
                         block's windows is prefetched into L2, then the block is copied.

   No checks, no Python, no threads: this is what the copy alone costs.  Built as a shared
   library by `make limit` (or by the benchmark itself) with the compiler flags of the kernel. */
#include <stdint.h>
#include <string.h>
#include <time.h>

#define AHEAD 8
#define LINE 64

#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#define PREFETCH_L1(p) __asm__ __volatile__("prefetcht0 %0" :: "m"(*(const char*)(p)))
#define PREFETCH_L2(p) __asm__ __volatile__("prefetcht2 %0" :: "m"(*(const char*)(p)))
#elif defined(__GNUC__) || defined(__clang__)
#define PREFETCH_L1(p) __builtin_prefetch((const void*)(p), 0, 3)
#define PREFETCH_L2(p) __builtin_prefetch((const void*)(p), 0, 2)
#else
#define PREFETCH_L1(p) ((void)0)
#define PREFETCH_L2(p) ((void)0)
#endif

static void plain(const char* base, const int64_t* starts, int64_t n, int64_t bytes,
                  int64_t row_bytes, char* out) {
    for (int64_t w = 0; w < n; w++)
        memcpy(out + w * bytes, base + starts[w] * row_bytes, (size_t)bytes);
}

static void ahead(const char* base, const int64_t* starts, int64_t n, int64_t bytes,
                  int64_t row_bytes, char* out) {
    for (int64_t w = 0; w < n && w < AHEAD; w++) {
        PREFETCH_L1(base + starts[w] * row_bytes);
        PREFETCH_L1(base + starts[w] * row_bytes + bytes - 1);
    }
    for (int64_t w = 0; w < n; w++) {
        if (w + AHEAD < n) {
            const char* p = base + starts[w + AHEAD] * row_bytes;
            PREFETCH_L1(p);
            PREFETCH_L1(p + bytes - 1);
        }
        memcpy(out + w * bytes, base + starts[w] * row_bytes, (size_t)bytes);
    }
}

static void two_pass(const char* base, const int64_t* starts, int64_t n, int64_t bytes,
                     int64_t row_bytes, char* out, int64_t block_bytes) {
    int64_t per_block = block_bytes / bytes > 0 ? block_bytes / bytes : 1;
    for (int64_t w0 = 0; w0 < n; w0 += per_block) {
        int64_t w1 = w0 + per_block < n ? w0 + per_block : n;
        for (int64_t w = w0; w < w1; w++) {
            uintptr_t a = (uintptr_t)(base + starts[w] * row_bytes) & ~(uintptr_t)(LINE - 1);
            uintptr_t end = (uintptr_t)(base + starts[w] * row_bytes + bytes);
            for (; a < end; a += LINE)
                PREFETCH_L2((const char*)a);
        }
        for (int64_t w = w0; w < w1; w++)
            memcpy(out + w * bytes, base + starts[w] * row_bytes, (size_t)bytes);
    }
}

/* Copy nbatch batches of nwin windows of window rows each; starts holds nbatch * nwin row
   indices, every batch goes to the same out buffer.  Returns the nanoseconds it took. */
int64_t gather_limit(const char* base, int64_t row_bytes, const int64_t* starts, int64_t nwin,
                     int64_t nbatch, int64_t window, char* out, int scheme,
                     int64_t block_bytes) {
    struct timespec t0, t1;
    int64_t bytes = window * row_bytes;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int64_t b = 0; b < nbatch; b++) {
        const int64_t* s = starts + b * nwin;
        if (scheme == 0)
            plain(base, s, nwin, bytes, row_bytes, out);
        else if (scheme == 1)
            ahead(base, s, nwin, bytes, row_bytes, out);
        else
            two_pass(base, s, nwin, bytes, row_bytes, out, block_bytes);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (int64_t)(t1.tv_sec - t0.tv_sec) * 1000000000 + (t1.tv_nsec - t0.tv_nsec);
}
