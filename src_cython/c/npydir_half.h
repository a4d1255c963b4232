/* float16 -> float32 conversion for the casting kernel: an exact scalar conversion (inline,
   used per value) and a run converter that uses the F16C instruction where the CPU has it. */
#ifndef NPYDIR_HALF_H
#define NPYDIR_HALF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "npydir_simd.h"

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

/* dst[k] = float(src[k]) (times scale when has_scale) for k < n; F16C when available. */
NPYDIR_INTERNAL void npydir_half_run_f16c(const uint16_t* src, float* dst, ptrdiff_t n,
                                          float scale, int has_scale);
/* 1 when the CPU has AVX and F16C (checked once, at import). */
NPYDIR_INTERNAL int npydir_have_f16c(void);

#endif
