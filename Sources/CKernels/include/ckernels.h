// Hot loops that Swift cannot yet emit with the processor's widest vector instructions: the
// matrix-vector products of decode, exp for softmax and SiLU, and the thread pool the products
// split over. Each entry point checks the processor at run time and falls back to portable C.
#ifndef XLLAMA_CKERNELS_H
#define XLLAMA_CKERNELS_H

#include <stddef.h>
#include <stdint.h>

/// The loop a matrix-vector product runs: the fastest the processor has, or the plain C loop
/// that the vector loops are tested against. For bfloat16 there is a third: the AVX-512 loop
/// that widens each element, which tests select on processors that also have the BF16
/// dot-product instruction.
enum { XL_MATVEC_BEST = 0, XL_MATVEC_PORTABLE = 1, XL_MATVEC_WIDENING = 2 };

/// y[r] (+)= Σ_j w[r, j] · x[j] for the `rows` rows of a (rows × columns) row-major float32
/// matrix, split by rows over the thread pool when the matrix is large enough to gain from it.
/// With `accumulate` non-zero the sums are added to y. `path` is one of the XL_MATVEC values.
void xl_matvec_f32(
    const float *w, size_t rows, size_t columns, const float *x, float *y, int accumulate, int path);

/// As `xl_matvec_f32` for a bfloat16 matrix: element bits b stand for the float32 with bits
/// b << 16. x and the sums stay float32, except that the dot-product loop carries x as two
/// bfloat16 halves, within 2⁻¹⁷·|x| of it (see matvec.c).
void xl_matvec_bf16(
    const uint16_t *w, size_t rows, size_t columns, const float *x, float *y, int accumulate, int path);

/// C = alpha · op(A) · op(B) + beta · C with op(A) (m × k), op(B) (k × n) and C (m × n), all
/// row-major with row strides lda, ldb, ldc as stored (before transposition), like
/// `cblas_sgemm`. A and B are rounded to bfloat16 (nearest even) and every sum is float32; see
/// gemm_bf16.c. Runs on the thread pool. With `portable` non-zero the plain C tile runs
/// instead of the AVX-512 BF16 one (for tests). Returns 0, or −1 when the packing buffers
/// cannot be allocated (C is then unchanged).
int xl_gemm_bf16(
    int transpose_a, int transpose_b, size_t m, size_t n, size_t k, float alpha, const float *a,
    size_t lda, const float *b, size_t ldb, float beta, float *c, size_t ldc, int portable);

/// 1 when the processor has AVX-512 BF16 (`vdpbf16ps`), which `xl_gemm_bf16` and
/// `xl_matvec_bf16` use.
int xl_uses_avx512_bf16(void);

/// Σ x[i], split over the thread pool like the products: the plainest stream of reads, whose
/// speed is the memory-bandwidth bound that `bench --kernels` reports for decode.
float xl_sum_f32(const float *x, size_t count);

/// x[i] = exp(x[i]) for `count` elements; relative error below 1e-6 against libm on the AVX-512
/// path (inputs below −87.3 give exp(−87.3) instead of a subnormal or zero).
void xl_exp_inplace(float *x, size_t count);

/// gate[i] = silu(gate[i]) · up[i] = gate[i] / (1 + exp(−gate[i])) · up[i].
void xl_silu_multiply(float *gate, const float *up, size_t count);

/// One recurrent mLSTM step of one head (see MLSTMCell.swift for the formulas): advances c
/// (key_dim × value_dim, row-major), n (key_dim) and m in place and writes h (value_dim). i and f
/// are the gate pre-activations, already soft-capped. With `portable` non-zero the plain C loop
/// runs instead of the AVX-512 one, for tests.
void xl_mlstm_step(
    const float *q, const float *k, const float *v, float i, float f, float *c, float *n, float *m,
    size_t key_dim, size_t value_dim, float eps, float *h, int portable);

/// The student's per-head LayerNorm (mean-centred, weight only) times the output gate, for one
/// token: out[c] = (h[c] − mean) / sqrt(var + eps) · weight[c] · σ(gate[c]), with mean and var
/// over each head's `head_dim` columns of h (heads × head_dim). `portable` as above.
void xl_head_norm_gate(
    const float *h, const float *gate, const float *weight, size_t heads, size_t head_dim, float eps,
    float *out, int portable);

/// 1 when the AVX-512 paths of these kernels run on this processor, else 0.
int xl_uses_avx512(void);

/// A task of the pool: called once for each chunk in 0..<chunks, on any thread, possibly
/// several chunks at once.
typedef void (*xl_pool_task)(void *context, int chunk);

/// Runs task(context, c) for every c in 0..<chunks on the caller and the pool's workers, and
/// returns when all have returned. With one chunk, more than 65,535 chunks, one thread, or
/// while another thread's task occupies the pool, the caller runs every chunk itself, in order.
void xl_pool_run(xl_pool_task task, void *context, int chunks);

/// Sets the threads a pool task uses, the caller included (at least 1); creates the workers
/// that are missing. Workers that join a task already running may follow either count, and
/// every chunk still runs exactly once (the claim of a chunk is one compare-and-swap).
void xl_pool_set_threads(int threads);

/// The threads a pool task uses, the caller included.
int xl_pool_threads(void);

/// Keeps freed memory in the process: with glibc, allocations up to 32 MiB come from the heap
/// and the heap is trimmed only beyond 2 GiB free. Returns 1 when the settings took effect, 0
/// without glibc.
int xl_keep_freed_memory(void);

/// Returns the allocator's free memory to the system (glibc's `malloc_trim(0)`); returns 1
/// when some was released, 0 otherwise or without glibc.
int xl_release_free_memory(void);

#endif
