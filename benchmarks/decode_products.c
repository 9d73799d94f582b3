// Times the matrix-vector products of one decoded token of a SmolLM2-135M-shaped student
// (30 layers of 1554×576, 576×576, 3072×576 and 576×1536, then the 49152×576 lm_head) with
// the kernels of Sources/CKernels, in float32 and bfloat16, against a plain read of memory.
//
// The two formats run in alternating windows of tokens, and a plain read of the float32
// lm_head follows every window, so that all three see the same state of a host whose memory
// speed drifts. It prints each format's tokens per second, the rate at which it streamed its
// weights, and that rate's share of the read. scripts/bench-products.sh builds and runs it.
//
// To compare a change to a kernel, compile the old matvec.c beside the new one with its
// functions renamed (-Dxl_matvec_f32=old_matvec_f32 and so on) and alternate them the same way.

#include "ckernels.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { layers = 30, per_layer = 4, matrices = layers * per_layer + 1 };

static const size_t shapes[per_layer + 1][2] = {{1554, 576}, {576, 576}, {3072, 576}, {576, 1536}, {49152, 576}};

static double seconds(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

// Returns pseudo-random floats in [−1, 1), so that no two pages contain the same bytes.
static float next_value(uint64_t *state) {
  *state = *state * 6364136223846793005ull + 1442695040888963407ull;
  return (float)((double)(*state >> 40) / (double)(1ull << 23) - 1.0);
}

static size_t rows_of(int m) { return shapes[m == matrices - 1 ? per_layer : m % per_layer][0]; }
static size_t columns_of(int m) { return shapes[m == matrices - 1 ? per_layer : m % per_layer][1]; }

int main(int argc, char **argv) {
  const int threads = argc > 1 ? atoi(argv[1]) : 2;
  const int windows = argc > 2 ? atoi(argv[2]) : 64;
  const int window_tokens = 8;
  xl_pool_set_threads(threads);

  float *f32[matrices];
  uint16_t *bf16[matrices];
  size_t f32_bytes = 0, bf16_bytes = 0;
  uint64_t state = 1;
  for (int m = 0; m < matrices; m++) {
    const size_t count = rows_of(m) * columns_of(m);
    f32[m] = aligned_alloc(64, (count * sizeof(float) + 63) / 64 * 64);
    bf16[m] = aligned_alloc(64, (count * sizeof(uint16_t) + 63) / 64 * 64);
    if (f32[m] == NULL || bf16[m] == NULL) {
      fprintf(stderr, "failed to allocate matrix %d (%zu × %zu); free some memory and retry\n", m, rows_of(m),
              columns_of(m));
      return 1;
    }
    for (size_t i = 0; i < count; i++) {
      f32[m][i] = next_value(&state);
      uint32_t bits;
      memcpy(&bits, &f32[m][i], sizeof bits);
      bf16[m][i] = (uint16_t)(bits >> 16);
    }
    f32_bytes += count * sizeof(float);
    bf16_bytes += count * sizeof(uint16_t);
  }
  float *x = aligned_alloc(64, 4096 * sizeof(float));
  float *y = aligned_alloc(64, 49152 * sizeof(float));
  for (int i = 0; i < 4096; i++) x[i] = next_value(&state);

  const size_t read_count = rows_of(matrices - 1) * columns_of(matrices - 1);
  double decode_time[2] = {0, 0}, read_time[2] = {0, 0};
  int tokens[2] = {0, 0}, reads[2] = {0, 0};
  float sink = 0;
  for (int window = 0; window < 2 * windows; window++) {
    const int format = window % 2;  // 0: float32, 1: bfloat16
    double start = seconds();
    for (int token = 0; token < window_tokens; token++) {
      for (int m = 0; m < matrices; m++) {
        if (format == 0) {
          xl_matvec_f32(f32[m], rows_of(m), columns_of(m), x, y, 0, XL_MATVEC_BEST);
        } else {
          xl_matvec_bf16(bf16[m], rows_of(m), columns_of(m), x, y, 0, XL_MATVEC_BEST);
        }
      }
      sink += y[0];
    }
    decode_time[format] += seconds() - start;
    tokens[format] += window_tokens;
    start = seconds();
    sink += xl_sum_f32(f32[matrices - 1], read_count);
    read_time[format] += seconds() - start;
    reads[format] += 1;
  }

  printf("%d threads, %d windows of %d tokens per format (checksum %g)\n", threads, windows, window_tokens, sink);
  const char *names[2] = {"float32", "bfloat16"};
  const size_t bytes[2] = {f32_bytes, bf16_bytes};
  for (int format = 0; format < 2; format++) {
    const double per_second = tokens[format] / decode_time[format];
    const double streamed = per_second * (double)bytes[format] / 1e9;
    const double read = (double)reads[format] * (double)read_count * sizeof(float) / read_time[format] / 1e9;
    printf("%-8s  %6.1f tok/s  weights %5.1f GB/s  %3.0f%% of a %5.1f GB/s plain read\n", names[format],
           per_second, streamed, 100 * streamed / read, read);
  }
  return 0;
}
