// The AdamW update and the stage-3 row loss, which Swift runs one scalar element at a time
// (with libm's expf per vocabulary entry in the loss). Shapes: AdamW works on any flattened
// tensor of N elements; the row loss on one position's V logits.
//
// Floating-point contraction is off in this file so that the portable path rounds each
// operation as written; the AVX-512 paths use fused multiply-add only where a comment marks it.

#include "training_kernels.h"

#include <math.h>

#pragma STDC FP_CONTRACT OFF

#if defined(__x86_64__)
#include <immintrin.h>

#include "exp512.h"

// Adds the 16 floats of `x` to two 8-lane double accumulators.
__attribute__((target("avx512f")))
static inline void add_to_doubles(__m512 x, __m512d *low, __m512d *high) {
  *low = _mm512_add_pd(*low, _mm512_cvtps_pd(_mm512_castps512_ps256(x)));
  *high = _mm512_add_pd(
      *high, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1))));
}

static inline __mmask16 tail_mask(size_t remaining) {
  return (__mmask16)((1u << remaining) - 1u);
}

__attribute__((target("avx512f")))
static void adamw_avx512(
    float *value, float *m, float *v, const float *g, size_t count, float beta1, float beta2,
    float eps, float decay_factor, float step_size, float inverse_root_correction2) {
  const __m512 b1 = _mm512_set1_ps(beta1), b2 = _mm512_set1_ps(beta2);
  const __m512 one_minus_b1 = _mm512_set1_ps(1 - beta1), one_minus_b2 = _mm512_set1_ps(1 - beta2);
  const __m512 e = _mm512_set1_ps(eps), decay = _mm512_set1_ps(decay_factor);
  const __m512 step = _mm512_set1_ps(step_size), correction = _mm512_set1_ps(inverse_root_correction2);
  for (size_t i = 0; i < count; i += 16) {
    const __mmask16 mask = count - i >= 16 ? (__mmask16)0xFFFF : tail_mask(count - i);
    const __m512 gi = _mm512_maskz_loadu_ps(mask, g + i);
    const __m512 mi = _mm512_add_ps(
        _mm512_mul_ps(b1, _mm512_maskz_loadu_ps(mask, m + i)), _mm512_mul_ps(one_minus_b1, gi));
    const __m512 vi = _mm512_add_ps(
        _mm512_mul_ps(b2, _mm512_maskz_loadu_ps(mask, v + i)),
        _mm512_mul_ps(_mm512_mul_ps(one_minus_b2, gi), gi));
    const __m512 denominator = _mm512_add_ps(_mm512_mul_ps(_mm512_sqrt_ps(vi), correction), e);
    const __m512 update = _mm512_div_ps(_mm512_mul_ps(step, mi), denominator);
    const __m512 pi = _mm512_sub_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(mask, value + i), decay), update);
    _mm512_mask_storeu_ps(m + i, mask, mi);
    _mm512_mask_storeu_ps(v + i, mask, vi);
    _mm512_mask_storeu_ps(value + i, mask, pi);
  }
}

__attribute__((target("avx512f")))
static float log_sum_exp_avx512(const float *x, size_t count) {
  __m512 largest = _mm512_set1_ps(-INFINITY);
  for (size_t i = 0; i < count; i += 16) {
    const __mmask16 mask = count - i >= 16 ? (__mmask16)0xFFFF : tail_mask(count - i);
    largest = _mm512_mask_max_ps(largest, mask, largest, _mm512_maskz_loadu_ps(mask, x + i));
  }
  const float top = _mm512_reduce_max_ps(largest);
  const __m512 shift = _mm512_set1_ps(top);
  __m512d low = _mm512_setzero_pd(), high = _mm512_setzero_pd();
  for (size_t i = 0; i < count; i += 16) {
    const __mmask16 mask = count - i >= 16 ? (__mmask16)0xFFFF : tail_mask(count - i);
    const __m512 e = exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(mask, x + i), shift));
    add_to_doubles(_mm512_maskz_mov_ps(mask, e), &low, &high);
  }
  const double total = _mm512_reduce_add_pd(_mm512_add_pd(low, high));
  return top + (float)log(total);
}

__attribute__((target("avx512f")))
static double distillation_row_avx512(
    const float *student, float student_log_z, const float *teacher, float teacher_log_z,
    size_t count, float q_scale, float kl_scale, float *grad) {
  const __m512 zs = _mm512_set1_ps(student_log_z), zt = _mm512_set1_ps(teacher_log_z);
  const __m512 qs = _mm512_set1_ps(q_scale), ks = _mm512_set1_ps(kl_scale);
  __m512d low = _mm512_setzero_pd(), high = _mm512_setzero_pd();
  for (size_t i = 0; i < count; i += 16) {
    const __mmask16 mask = count - i >= 16 ? (__mmask16)0xFFFF : tail_mask(count - i);
    const __m512 log_q = _mm512_sub_ps(_mm512_maskz_loadu_ps(mask, student + i), zs);
    if (teacher == NULL) {
      if (grad != NULL) _mm512_mask_storeu_ps(grad + i, mask, _mm512_mul_ps(qs, exp512(log_q)));
      continue;
    }
    const __m512 log_p = _mm512_sub_ps(_mm512_maskz_loadu_ps(mask, teacher + i), zt);
    const __m512 p = exp512(log_p);
    add_to_doubles(_mm512_maskz_mov_ps(mask, _mm512_mul_ps(p, _mm512_sub_ps(log_p, log_q))), &low, &high);
    if (grad != NULL) {
      const __m512 g = _mm512_sub_ps(_mm512_mul_ps(qs, exp512(log_q)), _mm512_mul_ps(ks, p));
      _mm512_mask_storeu_ps(grad + i, mask, g);
    }
  }
  return _mm512_reduce_add_pd(_mm512_add_pd(low, high));
}
#endif

static volatile int portable_only = 0;

void xl_training_set_portable_only(int value) { portable_only = value; }

int xl_training_uses_avx512(void) {
#if defined(__x86_64__)
  return !portable_only && __builtin_cpu_supports("avx512f") ? 1 : 0;
#else
  return 0;
#endif
}

void xl_adamw_update(
    float *value, float *m, float *v, const float *g, size_t count, float beta1, float beta2,
    float eps, float decay_factor, float step_size, float inverse_root_correction2) {
#if defined(__x86_64__)
  if (xl_training_uses_avx512()) {
    adamw_avx512(value, m, v, g, count, beta1, beta2, eps, decay_factor, step_size, inverse_root_correction2);
    return;
  }
#endif
  for (size_t i = 0; i < count; i++) {
    const float gi = g[i];
    m[i] = beta1 * m[i] + (1 - beta1) * gi;
    v[i] = beta2 * v[i] + (1 - beta2) * gi * gi;
    const float denominator = sqrtf(v[i]) * inverse_root_correction2 + eps;
    value[i] = value[i] * decay_factor - step_size * m[i] / denominator;
  }
}

float xl_log_sum_exp(const float *x, size_t count) {
#if defined(__x86_64__)
  if (xl_training_uses_avx512()) return log_sum_exp_avx512(x, count);
#endif
  float top = -INFINITY;
  for (size_t i = 0; i < count; i++) top = x[i] > top ? x[i] : top;
  double total = 0;
  for (size_t i = 0; i < count; i++) total += (double)expf(x[i] - top);
  return top + (float)log(total);
}

double xl_distillation_row(
    const float *student, float student_log_z, const float *teacher, float teacher_log_z,
    size_t count, float q_scale, float kl_scale, float *grad) {
#if defined(__x86_64__)
  if (xl_training_uses_avx512()) {
    return distillation_row_avx512(
        student, student_log_z, teacher, teacher_log_z, count, q_scale, kl_scale, grad);
  }
#endif
  double kl = 0;
  for (size_t i = 0; i < count; i++) {
    const float log_q = student[i] - student_log_z;
    if (teacher == NULL) {
      if (grad != NULL) grad[i] = q_scale * expf(log_q);
      continue;
    }
    const float log_p = teacher[i] - teacher_log_z;
    const float p = expf(log_p);
    kl += (double)(p * (log_p - log_q));
    if (grad != NULL) grad[i] = q_scale * expf(log_q) - kl_scale * p;
  }
  return kl;
}

// MARK: Gradient norm and scaling

#if defined(__x86_64__)
__attribute__((target("avx512f")))
static double sum_of_squares_avx512(const float *x, size_t count) {
  __m512d a0 = _mm512_setzero_pd(), a1 = _mm512_setzero_pd();
  size_t i = 0;
  for (; i + 16 <= count; i += 16) {
    const __m512d low = _mm512_cvtps_pd(_mm256_loadu_ps(x + i));
    const __m512d high = _mm512_cvtps_pd(_mm256_loadu_ps(x + i + 8));
    a0 = _mm512_fmadd_pd(low, low, a0);
    a1 = _mm512_fmadd_pd(high, high, a1);
  }
  double sum = _mm512_reduce_add_pd(_mm512_add_pd(a0, a1));
  for (; i < count; i++) sum += (double)x[i] * (double)x[i];
  return sum;
}

__attribute__((target("avx512f")))
static void scale_avx512(float *x, size_t count, float factor) {
  const __m512 f = _mm512_set1_ps(factor);
  size_t i = 0;
  for (; i + 16 <= count; i += 16) _mm512_storeu_ps(x + i, _mm512_mul_ps(_mm512_loadu_ps(x + i), f));
  for (; i < count; i++) x[i] *= factor;
}
#endif

double xl_sum_of_squares(const float *x, size_t count) {
#if defined(__x86_64__)
  if (xl_training_uses_avx512()) return sum_of_squares_avx512(x, count);
#endif
  double sum = 0;
  for (size_t i = 0; i < count; i++) sum += (double)x[i] * (double)x[i];
  return sum;
}

void xl_scale(float *x, size_t count, float factor) {
#if defined(__x86_64__)
  if (xl_training_uses_avx512()) {
    scale_avx512(x, count, factor);
    return;
  }
#endif
  for (size_t i = 0; i < count; i++) x[i] *= factor;
}
