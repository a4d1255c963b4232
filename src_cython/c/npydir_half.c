/* float16 -> float32 runs: see npydir_half.h. */
#include "npydir_half.h"

/* float16 -> float32 of a unit-stride run with the F16C instruction when the CPU has it
   (checked once at import), 8 values per instruction; scalar conversion for the tail. */
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
/* vcvtph2ps quiets signalling NaNs; numpy keeps their bits.  Blocks of 8 holding one
   (exponent all ones, quiet bit clear, payload non-zero) take the scalar path instead. */
__attribute__((target("avx,f16c")))
void npydir_half_run_f16c(const uint16_t* src, float* dst, ptrdiff_t n,
                                 float scale, int has_scale) {
    ptrdiff_t k = 0, i;
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
int npydir_have_f16c(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx") && __builtin_cpu_supports("f16c");
}
#else
void npydir_half_run_f16c(const uint16_t* src, float* dst, ptrdiff_t n,
                                 float scale, int has_scale) {
    ptrdiff_t k;
    for (k = 0; k < n; k++)
        dst[k] = has_scale ? npydir_half_to_float(src[k]) * scale
                           : npydir_half_to_float(src[k]);
}
int npydir_have_f16c(void) { return 0; }
#endif
