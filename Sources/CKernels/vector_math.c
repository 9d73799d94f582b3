// Vectorized exp for the softmax of attention and the SiLU of the MLP, which otherwise call
// libm's scalar expf tens of millions of times per 512-token prefill.
//
// exp(x) = 2^k · e^r with k = round(x · log2 e) and r = x − k · ln 2 in [−ln 2 / 2, ln 2 / 2];
// e^r comes from its degree-7 Taylor polynomial (truncation error below 1e-8 relative), and 2^k
// is applied to the exponent bits. Inputs are clamped to [−87.3, 88.7], so the result is always a normal
// float: an input below −87.3 gives about 1.2e-38 instead of a smaller number or zero.

#include "ckernels.h"

#include <math.h>

#if defined(__x86_64__)
#include <immintrin.h>

__attribute__((target("avx512f")))
static inline __m512 exp512(__m512 x) {
  x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(88.7f)), _mm512_set1_ps(-87.3f));
  const __m512 k = _mm512_roundscale_ps(
      _mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  // r = x − k·ln 2 in two parts (Cody–Waite), so that r keeps x's precision for large |x|.
  __m512 r = _mm512_fnmadd_ps(k, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(k, _mm512_set1_ps(-2.12194440e-4f), r);
  // e^r = Σ r^n / n!, n ≤ 7, in Horner form, for |r| ≤ ln 2 / 2.
  __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, k);
}

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
