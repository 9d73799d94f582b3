// Matrix products with bfloat16 operands and float32 accumulation, for training and the
// teacher's forward pass in distillation: C = alpha · op(A) · op(B) + beta · C.
//
// The processor's AVX-512 BF16 instruction `vdpbf16ps` multiplies 32 pairs of bfloat16
// numbers and adds each pair's two products into one of 16 float32 lanes, twice the
// multiply-adds per instruction of a float32 FMA. The operands are rounded to bfloat16
// (nearest even) while they are packed; the products are exact in float32 and every sum is
// float32, so the result differs from a float32 product by the rounding of the operands
// (relative 2⁻⁹ each), not by accumulated error.
//
// Layout. K is taken in pairs (k = 2p, 2p + 1; an odd K gets a zero partner). A is packed in
// blocks of 8 rows, [block][p][row] with one 32-bit word per (row, pair); B in blocks of 32
// columns, [block][p][column]. The micro-kernel keeps an 8 × 32 tile of C in 16 registers and,
// for each pair p, broadcasts each row's word of A against the two vectors of B's 32 words.
// Tiles are shared among the thread pool's threads by blocks of columns (or rows, when there
// are few columns).

#include "ckernels.h"

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

enum { tile_rows = 8, tile_columns = 32 };

static inline uint32_t bf16_round(float value) {
  union { float f; uint32_t u; } bits = { .f = value };
  if ((bits.u & 0x7FFFFFFFu) > 0x7F800000u) return (bits.u >> 16) | 0x40u;  // NaN stays NaN
  return (bits.u + 0x7FFFu + ((bits.u >> 16) & 1u)) >> 16;
}

static inline uint32_t pair(float even, float odd) { return bf16_round(even) | (bf16_round(odd) << 16); }

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

// Packs row block `block` of op(A): 8 rows × `pairs` words, rows past M as zeros. The loops
// run along whichever index is contiguous in memory.
static void pack_a_block(const gemm_task *t, size_t block) {
  uint32_t *out = t->packed_a + block * t->pairs * tile_rows;
  const size_t row0 = block * tile_rows;
  const size_t rows = t->m - row0 < tile_rows ? t->m - row0 : tile_rows;
  if (rows < tile_rows) memset(out, 0, t->pairs * tile_rows * sizeof(uint32_t));
  if (t->transpose_a) {
    // op(A)[row][k] = A[k · lda + row]: rows are contiguous.
    for (size_t p = 0; p < t->pairs; p++) {
      const float *even = t->a + 2 * p * t->lda + row0;
      const float *odd = 2 * p + 1 < t->k ? even + t->lda : NULL;
      for (size_t r = 0; r < rows; r++) out[p * tile_rows + r] = pair(even[r], odd ? odd[r] : 0.0f);
    }
  } else {
    for (size_t r = 0; r < rows; r++) {
      const float *row = t->a + (row0 + r) * t->lda;
      for (size_t p = 0; p < t->pairs; p++) {
        out[p * tile_rows + r] = pair(row[2 * p], 2 * p + 1 < t->k ? row[2 * p + 1] : 0.0f);
      }
    }
  }
}

// Packs column block `block` of op(B): `pairs` × 32 words, columns past N as zeros. op(B) is
// (K × N); element (k, n) is B[k · ldb + n], or B[n · ldb + k] when transposed.
static void pack_b_block(const gemm_task *t, size_t block) {
  uint32_t *out = t->packed_b + block * t->pairs * tile_columns;
  const size_t column0 = block * tile_columns;
  const size_t columns = t->n - column0 < tile_columns ? t->n - column0 : tile_columns;
  if (columns < tile_columns) memset(out, 0, t->pairs * tile_columns * sizeof(uint32_t));
  if (t->transpose_b) {
    for (size_t j = 0; j < columns; j++) {
      const float *column = t->b + (column0 + j) * t->ldb;
      for (size_t p = 0; p < t->pairs; p++) {
        out[p * tile_columns + j] = pair(column[2 * p], 2 * p + 1 < t->k ? column[2 * p + 1] : 0.0f);
      }
    }
  } else {
    for (size_t p = 0; p < t->pairs; p++) {
      const float *even = t->b + 2 * p * t->ldb + column0;
      const float *odd = 2 * p + 1 < t->k ? even + t->ldb : NULL;
      for (size_t j = 0; j < columns; j++) out[p * tile_columns + j] = pair(even[j], odd ? odd[j] : 0.0f);
    }
  }
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

// The reference tile: the same bfloat16 pairs summed in plain C, in the order the vector
// kernel sums them.
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
  static int supported = -1;
  if (supported < 0) {
    __builtin_cpu_init();
    supported = __builtin_cpu_supports("avx512bf16") ? 1 : 0;
  }
  return supported;
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
      } else {
        tile_portable(t->pairs, a, b, tile);
      }
#else
      tile_portable(t->pairs, a, b, tile);
#endif
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

// Packing buffers, kept per thread between products up to `kept_bytes` (the products of one
// training step repeat the same few shapes); larger ones are allocated for the one product.
enum { kept_bytes = 32 << 20 };
static _Thread_local uint32_t *kept_buffer;
static _Thread_local size_t kept_words;

static uint32_t *packing_buffer(size_t words) {
  if (words * sizeof(uint32_t) > kept_bytes) return malloc(words * sizeof(uint32_t));
  if (words > kept_words) {
    free(kept_buffer);
    kept_buffer = malloc(words * sizeof(uint32_t));
    kept_words = kept_buffer ? words : 0;
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
