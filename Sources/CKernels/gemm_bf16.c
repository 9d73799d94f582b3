// Matrix products with bfloat16 operands and float32 accumulation, for training and the
// teacher's forward pass in distillation: C = alpha · op(A) · op(B) + beta · C.
//
// The processor's AVX-512 BF16 instruction `vdpbf16ps` multiplies 32 pairs of bfloat16
// numbers and adds each pair's two products into one of 16 float32 lanes, twice the
// multiply-adds per instruction of a float32 FMA. The operands are rounded to bfloat16
// (nearest even) while they are packed. The product of two bfloat16 numbers is exact in
// float32, and every sum is float32 (the instruction flushes subnormals to zero). So the
// result is the float32 product of the rounded operands up to summation order. It differs
// from the float32 product of the original operands by their rounding (relative 2⁻⁹ each).
//
// Layout. K is taken in pairs (k = 2p, 2p + 1; an odd K gets a zero partner). A is packed in
// blocks of 8 rows, [block][p][row] with one 32-bit word per (row, pair); B in blocks of 32
// columns, [block][p][column]. The micro-kernel keeps an 8 × 32 tile of C in 16 registers and,
// for each pair p, broadcasts each row's word of A against the two vectors of B's 32 words.
// Tiles are shared among the thread pool's threads by blocks of columns (or rows, when there
// are few columns).

#include "ckernels.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

enum { tile_rows = 8, tile_columns = 32 };

// float32 bits → bfloat16 bits, rounding to nearest even; a NaN stays a (quiet) NaN.
// Branch-free, so that the packing loops below vectorize.
static inline uint32_t bf16_bits(uint32_t u) {
  const uint32_t rounded = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
  const uint32_t quiet = (u >> 16) | 0x40u;
  return (u & 0x7FFFFFFFu) > 0x7F800000u ? quiet : rounded;
}

// words[j] = bf16(even[j]) | bf16(odd[j]) << 16 for j < count; odd NULL stands for zeros.
static inline void interleave(const float *even, const float *odd, size_t count, uint32_t *words) {
  const uint32_t *e = (const uint32_t *)even, *o = (const uint32_t *)odd;
  if (o) {
    for (size_t j = 0; j < count; j++) words[j] = bf16_bits(e[j]) | (bf16_bits(o[j]) << 16);
  } else {
    for (size_t j = 0; j < count; j++) words[j] = bf16_bits(e[j]);
  }
}

typedef struct {
  size_t m, n, k, pairs, row_blocks, column_blocks;
  const float *a, *b;
  size_t lda, ldb;
  int transpose_a, transpose_b;
  uint32_t *packed_a, *packed_b;
  float *c;
  size_t ldc;
  float alpha, beta;
  // Chunks of work: `split_rows` chooses whether a chunk is a range of row blocks (all
  // columns) or of column blocks (all rows); `per_chunk` blocks each.
  int split_rows;
  size_t per_chunk;
  int portable;
} gemm_task;

// Packs `count` lines (rows of op(A) or columns of op(B)) starting at `first` into `out`, a
// block of `pairs` × `width` words. out[p · width + i] is line first + i's pair p, and lines
// past `count` stay zero. With `along_k` a line is contiguous in memory (element k of line i
// at x[(first + i) · ld + k]); otherwise the lines are (element k of line i at
// x[k · ld + first + i]). The AVX-512 and portable copies below share this body and differ
// only in the instructions the compiler may use.
static inline void pack_lines_body(
    const float *x, size_t ld, int along_k, size_t first, size_t count, size_t k, size_t pairs,
    size_t width, uint32_t *out) {
  if (count < width) memset(out, 0, pairs * width * sizeof(uint32_t));
  if (along_k) {
    const size_t full = k / 2;
    for (size_t i = 0; i < count; i++) {
      const uint32_t *u = (const uint32_t *)(x + (first + i) * ld);
      // Strided stores: the loop is left scalar, which measured faster than its vector form.
#pragma clang loop vectorize(disable)
      for (size_t p = 0; p < full; p++) out[p * width + i] = bf16_bits(u[2 * p]) | (bf16_bits(u[2 * p + 1]) << 16);
      if (full < pairs) out[full * width + i] = bf16_bits(u[2 * full]);
    }
  } else {
    for (size_t p = 0; p < pairs; p++) {
      const float *even = x + 2 * p * ld + first;
      interleave(even, 2 * p + 1 < k ? even + ld : NULL, count, out + p * width);
    }
  }
}

#if defined(__x86_64__)
// Packs the contiguous case on AVX-512 BF16. One `vcvtne2ps2bf16` turns 32 floats of a line
// into 16 pair words (nearest even, subnormal inputs become zero), and a scatter writes them
// to their 16 places, `width` words apart.
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))
static void pack_along_k_avx512(
    const float *x, size_t ld, size_t first, size_t count, size_t k, size_t pairs, size_t width, uint32_t *out) {
  if (count < width) memset(out, 0, pairs * width * sizeof(uint32_t));
  const __m512i places = _mm512_mullo_epi32(
      _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0), _mm512_set1_epi32((int)width));
  const size_t vector_pairs = 16 * (k / 32);
  const size_t full = k / 2;
  for (size_t i = 0; i < count; i++) {
    const float *source = x + (first + i) * ld;
    for (size_t p0 = 0; p0 < vector_pairs; p0 += 16) {
      const __m512 low = _mm512_loadu_ps(source + 2 * p0), high = _mm512_loadu_ps(source + 2 * p0 + 16);
      const __m512i words = (__m512i)_mm512_cvtne2ps_pbh(high, low);
      _mm512_i32scatter_epi32(out + p0 * width + i, places, words, 4);
    }
    const uint32_t *u = (const uint32_t *)source;
    for (size_t p = vector_pairs; p < full; p++) out[p * width + i] = bf16_bits(u[2 * p]) | (bf16_bits(u[2 * p + 1]) << 16);
    if (full < pairs) out[full * width + i] = bf16_bits(u[2 * full]);
  }
}

__attribute__((target("avx512f,avx512bw,avx512vl")))
static void pack_lines_avx512(
    const float *x, size_t ld, int along_k, size_t first, size_t count, size_t k, size_t pairs,
    size_t width, uint32_t *out) {
  pack_lines_body(x, ld, along_k, first, count, k, pairs, width, out);
}
#endif

static void pack_lines(
    const float *x, size_t ld, int along_k, size_t first, size_t count, size_t k, size_t pairs,
    size_t width, uint32_t *out) {
#if defined(__x86_64__)
  if (along_k && xl_uses_avx512_bf16()) {
    pack_along_k_avx512(x, ld, first, count, k, pairs, width, out);
    return;
  }
  if (xl_uses_avx512()) {
    pack_lines_avx512(x, ld, along_k, first, count, k, pairs, width, out);
    return;
  }
#endif
  pack_lines_body(x, ld, along_k, first, count, k, pairs, width, out);
}

// Row block `block` of op(A) (m × k): 8 rows, contiguous along k unless A is transposed.
static void pack_a_block(const gemm_task *t, size_t block) {
  const size_t first = block * tile_rows;
  const size_t count = t->m - first < tile_rows ? t->m - first : tile_rows;
  pack_lines(
      t->a, t->lda, !t->transpose_a, first, count, t->k, t->pairs, tile_rows,
      t->packed_a + block * t->pairs * tile_rows);
}

// Column block `block` of op(B) (k × n): 32 columns, contiguous along k when B is transposed.
static void pack_b_block(const gemm_task *t, size_t block) {
  const size_t first = block * tile_columns;
  const size_t count = t->n - first < tile_columns ? t->n - first : tile_columns;
  pack_lines(
      t->b, t->ldb, t->transpose_b, first, count, t->k, t->pairs, tile_columns,
      t->packed_b + block * t->pairs * tile_columns);
}

// Writes a finished tile: C = alpha · tile + beta · C for the rows and columns inside the
// matrix.
static void store_tile(const gemm_task *t, const float *tile, size_t row0, size_t column0) {
  const size_t rows = t->m - row0 < tile_rows ? t->m - row0 : tile_rows;
  const size_t columns = t->n - column0 < tile_columns ? t->n - column0 : tile_columns;
  for (size_t r = 0; r < rows; r++) {
    float *c = t->c + (row0 + r) * t->ldc + column0;
    const float *source = tile + r * tile_columns;
    if (t->beta == 0) {
      for (size_t j = 0; j < columns; j++) c[j] = t->alpha * source[j];
    } else {
      for (size_t j = 0; j < columns; j++) c[j] = t->alpha * source[j] + t->beta * c[j];
    }
  }
}

// The reference tile: the same bfloat16 pairs summed in plain C. Its sums are rounded in
// another order than the vector kernel's, so the two agree to float32 rounding, not bit for bit.
static void tile_portable(size_t pairs, const uint32_t *a, const uint32_t *b, float *tile) {
  for (size_t i = 0; i < tile_rows * tile_columns; i++) tile[i] = 0;
  for (size_t p = 0; p < pairs; p++) {
    for (size_t r = 0; r < tile_rows; r++) {
      const uint32_t word = a[p * tile_rows + r];
      union { uint32_t u; float f; } a0 = { .u = word << 16 }, a1 = { .u = word & 0xFFFF0000u };
      for (size_t j = 0; j < tile_columns; j++) {
        const uint32_t other = b[p * tile_columns + j];
        union { uint32_t u; float f; } b0 = { .u = other << 16 }, b1 = { .u = other & 0xFFFF0000u };
        tile[r * tile_columns + j] += a0.f * b0.f + a1.f * b1.f;
      }
    }
  }
}

#if defined(__x86_64__)
// `store_tile` with masked vector loads and stores.
__attribute__((target("avx512f")))
static void store_tile_avx512(const gemm_task *t, const float *tile, size_t row0, size_t column0) {
  const size_t rows = t->m - row0 < tile_rows ? t->m - row0 : tile_rows;
  const size_t columns = t->n - column0 < tile_columns ? t->n - column0 : tile_columns;
  // Lanes of the tile's two 16-column halves that lie inside C.
  const size_t low = columns < 16 ? columns : 16;
  const size_t high = columns - low;
  const __mmask16 mask0 = (__mmask16)((1u << low) - 1u);
  const __mmask16 mask1 = (__mmask16)((1u << high) - 1u);
  const __m512 alpha = _mm512_set1_ps(t->alpha), beta = _mm512_set1_ps(t->beta);
  for (size_t r = 0; r < rows; r++) {
    float *c = t->c + (row0 + r) * t->ldc + column0;
    __m512 v0 = _mm512_mul_ps(alpha, _mm512_loadu_ps(tile + r * tile_columns));
    __m512 v1 = _mm512_mul_ps(alpha, _mm512_loadu_ps(tile + r * tile_columns + 16));
    if (t->beta != 0) {
      v0 = _mm512_fmadd_ps(beta, _mm512_maskz_loadu_ps(mask0, c), v0);
      v1 = _mm512_fmadd_ps(beta, _mm512_maskz_loadu_ps(mask1, c + 16), v1);
    }
    _mm512_mask_storeu_ps(c, mask0, v0);
    _mm512_mask_storeu_ps(c + 16, mask1, v1);
  }
}

__attribute__((target("avx512f,avx512bf16")))
static void tile_avx512(size_t pairs, const uint32_t *a, const uint32_t *b, float *tile) {
  __m512 c00 = _mm512_setzero_ps(), c01 = _mm512_setzero_ps(), c10 = _mm512_setzero_ps(), c11 = _mm512_setzero_ps();
  __m512 c20 = _mm512_setzero_ps(), c21 = _mm512_setzero_ps(), c30 = _mm512_setzero_ps(), c31 = _mm512_setzero_ps();
  __m512 c40 = _mm512_setzero_ps(), c41 = _mm512_setzero_ps(), c50 = _mm512_setzero_ps(), c51 = _mm512_setzero_ps();
  __m512 c60 = _mm512_setzero_ps(), c61 = _mm512_setzero_ps(), c70 = _mm512_setzero_ps(), c71 = _mm512_setzero_ps();
  for (size_t p = 0; p < pairs; p++) {
    const __m512bh b0 = (__m512bh)_mm512_loadu_si512(b + p * tile_columns);
    const __m512bh b1 = (__m512bh)_mm512_loadu_si512(b + p * tile_columns + 16);
    const uint32_t *words = a + p * tile_rows;
#define ROW(r, x0, x1)                                                     \
    do {                                                                   \
      const __m512bh av = (__m512bh)_mm512_set1_epi32((int)words[r]);      \
      x0 = _mm512_dpbf16_ps(x0, av, b0);                                   \
      x1 = _mm512_dpbf16_ps(x1, av, b1);                                   \
    } while (0)
    ROW(0, c00, c01); ROW(1, c10, c11); ROW(2, c20, c21); ROW(3, c30, c31);
    ROW(4, c40, c41); ROW(5, c50, c51); ROW(6, c60, c61); ROW(7, c70, c71);
#undef ROW
  }
  _mm512_storeu_ps(tile + 0 * 32, c00); _mm512_storeu_ps(tile + 0 * 32 + 16, c01);
  _mm512_storeu_ps(tile + 1 * 32, c10); _mm512_storeu_ps(tile + 1 * 32 + 16, c11);
  _mm512_storeu_ps(tile + 2 * 32, c20); _mm512_storeu_ps(tile + 2 * 32 + 16, c21);
  _mm512_storeu_ps(tile + 3 * 32, c30); _mm512_storeu_ps(tile + 3 * 32 + 16, c31);
  _mm512_storeu_ps(tile + 4 * 32, c40); _mm512_storeu_ps(tile + 4 * 32 + 16, c41);
  _mm512_storeu_ps(tile + 5 * 32, c50); _mm512_storeu_ps(tile + 5 * 32 + 16, c51);
  _mm512_storeu_ps(tile + 6 * 32, c60); _mm512_storeu_ps(tile + 6 * 32 + 16, c61);
  _mm512_storeu_ps(tile + 7 * 32, c70); _mm512_storeu_ps(tile + 7 * 32 + 16, c71);
}
#endif

int xl_uses_avx512_bf16(void) {
#if defined(__x86_64__)
  static _Atomic int supported = -1;
  int value = atomic_load_explicit(&supported, memory_order_relaxed);
  if (value < 0) {
    __builtin_cpu_init();
    value = __builtin_cpu_supports("avx512bf16") ? 1 : 0;
    atomic_store_explicit(&supported, value, memory_order_relaxed);
  }
  return value;
#else
  return 0;
#endif
}

static void pack_a_chunk(void *context, int chunk) {
  const gemm_task *t = context;
  for (size_t block = (size_t)chunk * t->per_chunk; block < (size_t)(chunk + 1) * t->per_chunk && block < t->row_blocks; block++)
    pack_a_block(t, block);
}

static void pack_b_chunk(void *context, int chunk) {
  const gemm_task *t = context;
  for (size_t block = (size_t)chunk * t->per_chunk; block < (size_t)(chunk + 1) * t->per_chunk && block < t->column_blocks; block++)
    pack_b_block(t, block);
}

static void tiles_chunk(void *context, int chunk) {
  const gemm_task *t = context;
  size_t row_begin = 0, row_end = t->row_blocks, column_begin = 0, column_end = t->column_blocks;
  if (t->split_rows) {
    row_begin = (size_t)chunk * t->per_chunk;
    row_end = row_begin + t->per_chunk < t->row_blocks ? row_begin + t->per_chunk : t->row_blocks;
  } else {
    column_begin = (size_t)chunk * t->per_chunk;
    column_end = column_begin + t->per_chunk < t->column_blocks ? column_begin + t->per_chunk : t->column_blocks;
  }
  float tile[tile_rows * tile_columns] __attribute__((aligned(64)));
  // Column blocks outside, so that one block of B (pairs × 128 bytes) stays in cache while
  // the row blocks of A stream past it.
  for (size_t cb = column_begin; cb < column_end; cb++) {
    const uint32_t *b = t->packed_b + cb * t->pairs * tile_columns;
    for (size_t rb = row_begin; rb < row_end; rb++) {
      const uint32_t *a = t->packed_a + rb * t->pairs * tile_rows;
#if defined(__x86_64__)
      if (!t->portable && xl_uses_avx512_bf16()) {
        tile_avx512(t->pairs, a, b, tile);
        store_tile_avx512(t, tile, rb * tile_rows, cb * tile_columns);
        continue;
      }
#endif
      tile_portable(t->pairs, a, b, tile);
      store_tile(t, tile, rb * tile_rows, cb * tile_columns);
    }
  }
}

// Runs `body` over `blocks` blocks in about four chunks per thread.
static void run_blocks(xl_pool_task body, gemm_task *t, size_t blocks) {
  size_t chunks = 4 * (size_t)xl_pool_threads();
  if (chunks > blocks) chunks = blocks;
  if (chunks < 1) chunks = 1;
  t->per_chunk = (blocks + chunks - 1) / chunks;
  xl_pool_run(body, t, (int)((blocks + t->per_chunk - 1) / t->per_chunk));
}

// Packing buffers up to `kept_bytes` are kept per thread between products, because the
// products of one training step repeat the same few shapes. Larger ones live for one product.
// A thread's kept buffer is freed when the thread exits, by the destructor of `kept_key`.
enum { kept_bytes = 128 << 20 };
static _Thread_local uint32_t *kept_buffer;
static _Thread_local size_t kept_words;
static pthread_key_t kept_key;
static pthread_once_t kept_key_once = PTHREAD_ONCE_INIT;

static void make_kept_key(void) { pthread_key_create(&kept_key, free); }

static uint32_t *packing_buffer(size_t words) {
  if (words * sizeof(uint32_t) > kept_bytes) return malloc(words * sizeof(uint32_t));
  if (words > kept_words) {
    pthread_once(&kept_key_once, make_kept_key);
    free(kept_buffer);
    kept_buffer = malloc(words * sizeof(uint32_t));
    kept_words = kept_buffer ? words : 0;
    pthread_setspecific(kept_key, kept_buffer);
  }
  return kept_buffer;
}

static void release_packing_buffer(uint32_t *buffer) {
  if (buffer != kept_buffer) free(buffer);
}

int xl_gemm_bf16(
    int transpose_a, int transpose_b, size_t m, size_t n, size_t k, float alpha, const float *a,
    size_t lda, const float *b, size_t ldb, float beta, float *c, size_t ldc, int portable) {
  if (m == 0 || n == 0) return 0;
  gemm_task t = {
    .m = m, .n = n, .k = k, .pairs = (k + 1) / 2,
    .row_blocks = (m + tile_rows - 1) / tile_rows, .column_blocks = (n + tile_columns - 1) / tile_columns,
    .a = a, .b = b, .lda = lda, .ldb = ldb, .transpose_a = transpose_a, .transpose_b = transpose_b,
    .c = c, .ldc = ldc, .alpha = alpha, .beta = beta, .portable = portable,
  };
  const size_t words_a = t.row_blocks * tile_rows * t.pairs, words_b = t.column_blocks * tile_columns * t.pairs;
  // One buffer for both, A first.
  uint32_t *buffer = packing_buffer(words_a + words_b + 1);
  if (buffer == NULL) return -1;
  t.packed_a = buffer;
  t.packed_b = buffer + words_a;
  run_blocks(pack_a_chunk, &t, t.row_blocks);
  run_blocks(pack_b_chunk, &t, t.column_blocks);
  t.split_rows = t.column_blocks < 4 * (size_t)xl_pool_threads() && t.row_blocks > t.column_blocks;
  run_blocks(tiles_chunk, &t, t.split_rows ? t.row_blocks : t.column_blocks);
  release_packing_buffer(buffer);
  return 0;
}
