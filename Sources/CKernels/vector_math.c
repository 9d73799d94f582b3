// Vectorized exp for the softmax of attention and the SiLU of the MLP, which otherwise call
// libm's scalar expf tens of millions of times per 512-token prefill. The exp itself is in
// exp512.h.

#include "ckernels.h"

#include <math.h>

#if defined(__x86_64__)
#include <immintrin.h>

#include "exp512.h"

__attribute__((target("avx512f")))
static void exp_avx512(float *x, size_t count) {
  size_t i = 0;
  for (; i + 16 <= count; i += 16) _mm512_storeu_ps(x + i, exp512(_mm512_loadu_ps(x + i)));
  if (i < count) {
    const __mmask16 mask = (__mmask16)((1u << (count - i)) - 1u);
    _mm512_mask_storeu_ps(x + i, mask, exp512(_mm512_maskz_loadu_ps(mask, x + i)));
  }
}

__attribute__((target("avx512f")))
static void silu_multiply_avx512(float *gate, const float *up, size_t count) {
  const __m512 one = _mm512_set1_ps(1.0f);
  size_t i = 0;
  for (; i + 16 <= count; i += 16) {
    const __m512 g = _mm512_loadu_ps(gate + i);
    const __m512 e = exp512(_mm512_sub_ps(_mm512_setzero_ps(), g));
    _mm512_storeu_ps(gate + i, _mm512_mul_ps(_mm512_div_ps(g, _mm512_add_ps(one, e)), _mm512_loadu_ps(up + i)));
  }
  for (; i < count; i++) gate[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}
#endif

void xl_exp_inplace(float *x, size_t count) {
#if defined(__x86_64__)
  if (xl_uses_avx512()) {
    exp_avx512(x, count);
    return;
  }
#endif
  for (size_t i = 0; i < count; i++) x[i] = expf(x[i]);
}

void xl_silu_multiply(float *gate, const float *up, size_t count) {
#if defined(__x86_64__)
  if (xl_uses_avx512()) {
    silu_multiply_avx512(gate, up, count);
    return;
  }
#endif
  for (size_t i = 0; i < count; i++) gate[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}
