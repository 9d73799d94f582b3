// Hot loops that Swift cannot yet emit with the processor's widest vector instructions:
// the bfloat16 matrix-vector product of decode. Each entry point checks the processor at run
// time and falls back to portable C.
#ifndef XLLAMA_CKERNELS_H
#define XLLAMA_CKERNELS_H

#include <stddef.h>
#include <stdint.h>

/// y[r] (+)= Σ_j bf16(w[r, j]) · x[j] for rows [row_begin, row_end) of a (rows × columns)
/// row-major bfloat16 matrix. `even` and `odd` hold x's even and odd elements (columns / 2
/// each), so that each 32-bit word of a row multiplies one even and one odd element without
/// shuffles. With `accumulate` non-zero the products are added to y.
void xl_bf16_matvec_rows(
    const uint16_t *w, size_t row_begin, size_t row_end, size_t columns, const float *x,
    const float *even, const float *odd, float *y, int accumulate);

/// 1 when the AVX-512 path of `xl_bf16_matvec_rows` runs on this processor, else 0.
int xl_bf16_uses_avx512(void);

#endif
