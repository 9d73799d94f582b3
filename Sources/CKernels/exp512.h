// exp on the 16 lanes of an AVX-512 vector, shared by vector_math.c and training_kernels.c.
//
// exp(x) = 2^k · e^r with k = round(x · log2 e) and r = x − k · ln 2 in [−ln 2 / 2, ln 2 / 2];
// e^r comes from its degree-7 Taylor polynomial (truncation error below 1e-8 relative), and 2^k
// is applied to the exponent bits. Inputs are clamped to [−87.3, 88.7], so the result is always
// a normal float: an input below −87.3 gives about 1.2e-38 instead of a smaller number or zero,
// and a NaN input gives exp(88.7).
#ifndef XLLAMA_EXP512_H
#define XLLAMA_EXP512_H

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

#endif
