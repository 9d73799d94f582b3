// Element-wise hot loops of training: the AdamW update and the stage-3 loss over one row of the
// vocabulary. Each entry point checks the processor at run time (AVX-512F) and otherwise runs
// portable C.
#ifndef XLLAMA_TRAINING_KERNELS_H
#define XLLAMA_TRAINING_KERNELS_H

#include <stddef.h>

/// One AdamW step on `count` elements, in place, in this order and with no fused multiply-add,
/// so that both paths round as the plain formula does:
///
///     m = beta1 · m + (1 − beta1) · g
///     v = beta2 · v + (1 − beta2) · g · g
///     value = value · decay_factor − step_size · m / (sqrt(v) · inverse_root_correction2 + eps)
///
/// with decay_factor = 1 − lr · weight_decay, step_size = lr / (1 − beta1ᵗ) and
/// inverse_root_correction2 = 1 / sqrt(1 − beta2ᵗ). Elements are independent, so any split of
/// a tensor into ranges gives the same result.
void xl_adamw_update(
    float *value, float *m, float *v, const float *g, size_t count, float beta1, float beta2,
    float eps, float decay_factor, float step_size, float inverse_root_correction2);

/// log Σ_j exp(x[j]) over `count` > 0 elements: the maximum, then the sum of exp(x − max)
/// accumulated in double. Relative error of each exp below 1e-6 on the AVX-512 path.
float xl_log_sum_exp(const float *x, size_t count);

/// The stage-3 loss of one position over a vocabulary of V = `count` entries, given the log
/// normalizers of the student (`student_log_z`) and, when `teacher` is not NULL, the teacher
/// (`teacher_log_z`). With q = softmax(student) and p = softmax(teacher):
///
/// - returns KL(p ‖ q) = Σ_j p_j (log p_j − log q_j), accumulated in double; 0 without teacher;
/// - when `grad` is not NULL, overwrites grad[j] with q_scale · q_j − kl_scale · p_j
///   (q_scale · q_j alone without teacher).
double xl_distillation_row(
    const float *student, float student_log_z, const float *teacher, float teacher_log_z,
    size_t count, float q_scale, float kl_scale, float *grad);

/// Σ x[i]² over `count` elements, each square and the sums in double (the gradient norm for
/// clipping). The AVX-512 path sums in sixteen lanes, so its rounding order differs from the
/// portable loop's.
double xl_sum_of_squares(const float *x, size_t count);

/// x[i] *= factor for `count` elements.
void xl_scale(float *x, size_t count, float factor);

/// 1 when the AVX-512 paths of these kernels run on this processor, else 0.
int xl_training_uses_avx512(void);

/// With `portable_only` non-zero, these kernels run their portable C path even where AVX-512
/// is available, so that tests can check both paths. Process-wide; 0 restores the default.
void xl_training_set_portable_only(int portable_only);

#endif
