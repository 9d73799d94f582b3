// Hot loops that Swift cannot yet emit with the processor's widest vector instructions:
// the bfloat16 matrix-vector product of decode, exp for softmax and SiLU. Each entry point checks the processor at run
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

/// x[i] = exp(x[i]) for `count` elements; relative error below 1e-6 against libm on the AVX-512
/// path (inputs below −87.3 give exp(−87.3) instead of a subnormal or zero).
void xl_exp_inplace(float *x, size_t count);

/// gate[i] = silu(gate[i]) · up[i] = gate[i] / (1 + exp(−gate[i])) · up[i].
void xl_silu_multiply(float *gate, const float *up, size_t count);

/// 1 when the AVX-512 paths of these kernels run on this processor, else 0.
int xl_bf16_uses_avx512(void);

#endif
