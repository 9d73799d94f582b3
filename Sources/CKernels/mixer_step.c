// The per-token work of the student's mixer between its matrix products: one recurrent mLSTM
// step per head, and the per-head LayerNorm times the output gate.
//
// During decode the other thread waits while the caller runs this work, so its time adds to
// every token. Swift emits these loops with 128-bit vectors, and here they run 512 bits wide.
// The formulas are those of `MLSTMCell.stepHead` and of the plain loop in the tests, which
// are the reference paths the kernels are compared against.

#include "ckernels.h"

#include <math.h>

#if defined(__x86_64__)
#include <immintrin.h>

#include "exp512.h"
#endif

// logσ(x) = −log(1 + exp(−x)), without overflow for large |x|.
static inline float log_sigmoid(float x) { return (x < 0 ? x : 0) - log1pf(expf(-fabsf(x))); }

// C = forget_act · C + input_act · k vᵀ and h = Cᵀ (scale · q), the state update and read-out of
// one head, in plain loops.
static void update_state_portable(
    const float *q, const float *k, const float *v, float forget_act, float input_act, float *c,
    size_t key_dim, size_t value_dim, float scale, float *h) {
  for (size_t j = 0; j < value_dim; j++) h[j] = 0;
  for (size_t r = 0; r < key_dim; r++) {
    const float q_scaled = q[r] * scale;
    const float k_scaled = input_act * k[r];
    float *c_row = c + r * value_dim;
    for (size_t j = 0; j < value_dim; j++) {
      const float updated = forget_act * c_row[j] + k_scaled * v[j];
      c_row[j] = updated;
      h[j] += q_scaled * updated;
    }
  }
}

#if defined(__x86_64__)
// As `update_state_portable`, with the value columns in vectors of 16. The sums of h stay in
// registers, so widths that are not a multiple of 16 or exceed 128 take the plain loops.
__attribute__((target("avx512f")))
static void update_state_avx512(
    const float *q, const float *k, const float *v, float forget_act, float input_act, float *c,
    size_t key_dim, size_t value_dim, float scale, float *h) {
  const size_t vectors = value_dim / 16;
  if (vectors * 16 != value_dim || vectors > 8) {
    update_state_portable(q, k, v, forget_act, input_act, c, key_dim, value_dim, scale, h);
    return;
  }
  __m512 sums[8], values[8];
  for (size_t b = 0; b < vectors; b++) {
    sums[b] = _mm512_setzero_ps();
    values[b] = _mm512_loadu_ps(v + 16 * b);
  }
  const __m512 forget = _mm512_set1_ps(forget_act);
  for (size_t r = 0; r < key_dim; r++) {
    const __m512 k_scaled = _mm512_set1_ps(input_act * k[r]);
    const __m512 q_scaled = _mm512_set1_ps(q[r] * scale);
    float *c_row = c + r * value_dim;
    for (size_t b = 0; b < vectors; b++) {
      const __m512 kept = _mm512_mul_ps(forget, _mm512_loadu_ps(c_row + 16 * b));
      const __m512 updated = _mm512_fmadd_ps(k_scaled, values[b], kept);
      _mm512_storeu_ps(c_row + 16 * b, updated);
      sums[b] = _mm512_fmadd_ps(q_scaled, updated, sums[b]);
    }
  }
  for (size_t b = 0; b < vectors; b++) _mm512_storeu_ps(h + 16 * b, sums[b]);
}
#endif

void xl_mlstm_step(
    const float *q, const float *k, const float *v, float i, float f, float *c, float *n, float *m,
    size_t key_dim, size_t value_dim, float eps, float *h, int portable) {
  const float log_forget = log_sigmoid(f);
  const float m_new = fmaxf(log_forget + *m, i);
  const float forget_act = expf(log_forget + *m - m_new);
  const float input_act = expf(i - m_new);
  *m = m_new;
  const float scale = 1.0f / sqrtf((float)key_dim);

  // The normalizer state and its read-out q̃ · n, in the order of `MLSTMCell.stepHead`.
  float qn = 0;
  for (size_t r = 0; r < key_dim; r++) {
    n[r] = forget_act * n[r] + input_act * k[r];
    qn += q[r] * scale * n[r];
  }

#if defined(__x86_64__)
  if (!portable && xl_uses_avx512()) {
    update_state_avx512(q, k, v, forget_act, input_act, c, key_dim, value_dim, scale, h);
  } else {
    update_state_portable(q, k, v, forget_act, input_act, c, key_dim, value_dim, scale, h);
  }
#else
  (void)portable;
  update_state_portable(q, k, v, forget_act, input_act, c, key_dim, value_dim, scale, h);
#endif

  const float inverse = 1.0f / (fmaxf(fabsf(qn), expf(-m_new)) + eps);
  for (size_t j = 0; j < value_dim; j++) h[j] *= inverse;
}

// MARK: Head LayerNorm and output gate

static void norm_gate_portable(
    const float *h, const float *gate, const float *weight, size_t heads, size_t head_dim, float eps,
    float *out) {
  for (size_t head = 0; head < heads; head++) {
    const float *x = h + head * head_dim;
    float mean = 0;
    for (size_t j = 0; j < head_dim; j++) mean += x[j];
    mean /= (float)head_dim;
    float variance = 0;
    for (size_t j = 0; j < head_dim; j++) variance += (x[j] - mean) * (x[j] - mean);
    const float inverse = 1.0f / sqrtf(variance / (float)head_dim + eps);
    for (size_t j = 0; j < head_dim; j++) {
      const size_t column = head * head_dim + j;
      const float sigmoid = 1.0f / (1.0f + expf(-gate[column]));
      out[column] = (x[j] - mean) * inverse * weight[column] * sigmoid;
    }
  }
}

#if defined(__x86_64__)
__attribute__((target("avx512f")))
static void norm_gate_avx512(
    const float *h, const float *gate, const float *weight, size_t heads, size_t head_dim, float eps,
    float *out) {
  const __m512 ones = _mm512_set1_ps(1.0f);
  for (size_t head = 0; head < heads; head++) {
    const float *x = h + head * head_dim;
    __m512 total = _mm512_setzero_ps();
    for (size_t j = 0; j < head_dim; j += 16) total = _mm512_add_ps(total, _mm512_loadu_ps(x + j));
    const float mean = _mm512_reduce_add_ps(total) / (float)head_dim;
    const __m512 mean_vector = _mm512_set1_ps(mean);
    __m512 squares = _mm512_setzero_ps();
    for (size_t j = 0; j < head_dim; j += 16) {
      const __m512 centred = _mm512_sub_ps(_mm512_loadu_ps(x + j), mean_vector);
      squares = _mm512_fmadd_ps(centred, centred, squares);
    }
    const float inverse = 1.0f / sqrtf(_mm512_reduce_add_ps(squares) / (float)head_dim + eps);
    const __m512 inverse_vector = _mm512_set1_ps(inverse);
    for (size_t j = 0; j < head_dim; j += 16) {
      const size_t column = head * head_dim + j;
      const __m512 e = exp512(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_loadu_ps(gate + column)));
      const __m512 normed = _mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(x + j), mean_vector), inverse_vector);
      const __m512 scaled = _mm512_mul_ps(normed, _mm512_loadu_ps(weight + column));
      _mm512_storeu_ps(out + column, _mm512_div_ps(scaled, _mm512_add_ps(ones, e)));
    }
  }
}
#endif

void xl_head_norm_gate(
    const float *h, const float *gate, const float *weight, size_t heads, size_t head_dim, float eps,
    float *out, int portable) {
#if defined(__x86_64__)
  if (!portable && head_dim % 16 == 0 && xl_uses_avx512()) {
    norm_gate_avx512(h, gate, weight, heads, head_dim, eps, out);
    return;
  }
#else
  (void)portable;
#endif
  norm_gate_portable(h, gate, weight, heads, head_dim, eps, out);
}
