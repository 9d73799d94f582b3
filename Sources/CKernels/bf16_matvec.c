// bfloat16 matrix-vector product for decode: the weights stay in bfloat16 and widen to
// float32 in registers (a bfloat16 is the upper half of a float32), so each weight is read
// once at half the bytes of float32, and every product accumulates in float32.

#include "ckernels.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

static inline float widen(uint16_t bits) {
  union { uint32_t u; float f; } value = { .u = (uint32_t)bits << 16 };
  return value.f;
}

// The elements past the last full vector step, one at a time.
static inline float tail_sum(const uint16_t *row, size_t from, size_t columns, const float *x) {
  float sum = 0;
  for (size_t j = from; j < columns; j++) sum += widen(row[j]) * x[j];
  return sum;
}

static void rows_portable(
    const uint16_t *w, size_t row_begin, size_t row_end, size_t columns, const float *x,
    float *y, int accumulate) {
  for (size_t r = row_begin; r < row_end; r++) {
    float sum = tail_sum(w + r * columns, 0, columns, x);
    y[r] = accumulate ? y[r] + sum : sum;
  }
}

#if defined(__x86_64__)
// Four rows per pass so that each load of x serves four rows; 32 elements (16 words) per
// step. A word's low half is the even element (`word << 16`) and its high half the odd one
// (`word & 0xFFFF0000`). Rows of odd width start mid-word, so loads are unaligned.
__attribute__((target("avx512f")))
static void rows_avx512(
    const uint16_t *w, size_t row_begin, size_t row_end, size_t columns, const float *x,
    const float *even, const float *odd, float *y, int accumulate) {
  const size_t steps = columns / 32;
  const __m512i high = _mm512_set1_epi32((int)0xFFFF0000u);
  size_t r = row_begin;
  for (; r + 4 <= row_end; r += 4) {
    const uint16_t *r0 = w + r * columns, *r1 = r0 + columns, *r2 = r1 + columns, *r3 = r2 + columns;
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    __m512 a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
    for (size_t s = 0; s < steps; s++) {
      const __m512 xe = _mm512_loadu_ps(even + 16 * s);
      const __m512 xo = _mm512_loadu_ps(odd + 16 * s);
      const __m512i w0 = _mm512_loadu_si512(r0 + 32 * s), w1 = _mm512_loadu_si512(r1 + 32 * s);
      const __m512i w2 = _mm512_loadu_si512(r2 + 32 * s), w3 = _mm512_loadu_si512(r3 + 32 * s);
      a0 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(w0, 16)), xe, a0);
      a1 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(w1, 16)), xe, a1);
      a2 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(w2, 16)), xe, a2);
      a3 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(w3, 16)), xe, a3);
      a0 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_and_si512(w0, high)), xo, a0);
      a1 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_and_si512(w1, high)), xo, a1);
      a2 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_and_si512(w2, high)), xo, a2);
      a3 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_and_si512(w3, high)), xo, a3);
    }
    const size_t done = 32 * steps;
    const float s0 = _mm512_reduce_add_ps(a0) + tail_sum(r0, done, columns, x);
    const float s1 = _mm512_reduce_add_ps(a1) + tail_sum(r1, done, columns, x);
    const float s2 = _mm512_reduce_add_ps(a2) + tail_sum(r2, done, columns, x);
    const float s3 = _mm512_reduce_add_ps(a3) + tail_sum(r3, done, columns, x);
    y[r] = accumulate ? y[r] + s0 : s0;
    y[r + 1] = accumulate ? y[r + 1] + s1 : s1;
    y[r + 2] = accumulate ? y[r + 2] + s2 : s2;
    y[r + 3] = accumulate ? y[r + 3] + s3 : s3;
  }
  for (; r < row_end; r++) {
    const uint16_t *r0 = w + r * columns;
    __m512 a0 = _mm512_setzero_ps();
    for (size_t s = 0; s < steps; s++) {
      const __m512i w0 = _mm512_loadu_si512(r0 + 32 * s);
      a0 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(w0, 16)), _mm512_loadu_ps(even + 16 * s), a0);
      a0 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_and_si512(w0, high)), _mm512_loadu_ps(odd + 16 * s), a0);
    }
    const float s0 = _mm512_reduce_add_ps(a0) + tail_sum(r0, 32 * steps, columns, x);
    y[r] = accumulate ? y[r] + s0 : s0;
  }
}
#endif

int xl_bf16_uses_avx512(void) {
#if defined(__x86_64__)
  static int supported = -1;
  if (supported < 0) {
    __builtin_cpu_init();
    supported = __builtin_cpu_supports("avx512f") ? 1 : 0;
  }
  return supported;
#else
  return 0;
#endif
}

void xl_bf16_matvec_rows(
    const uint16_t *w, size_t row_begin, size_t row_end, size_t columns, const float *x,
    const float *even, const float *odd, float *y, int accumulate) {
#if defined(__x86_64__)
  if (xl_bf16_uses_avx512()) {
    rows_avx512(w, row_begin, row_end, columns, x, even, odd, y, accumulate);
    return;
  }
#endif
  (void)even;
  (void)odd;
  rows_portable(w, row_begin, row_end, columns, x, y, accumulate);
}
