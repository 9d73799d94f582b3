#!/usr/bin/env bash
# Builds benchmarks/decode_products.c against the C kernels and runs it: one decoded token's
# matrix-vector products, float32 and bfloat16, against a plain read of memory. Arguments go
# to the program: threads (default 2) and windows per format (default 64). Run it on an idle
# machine.
set -euo pipefail
cd "$(dirname "$0")/.."
compiler="${CC:-$(command -v clang || command -v cc)}"
out=".build/decode-products"
kernels="Sources/CKernels"
"$compiler" -O3 -o "$out" benchmarks/decode_products.c "$kernels/matvec.c" "$kernels/thread_pool.c" \
  "$kernels/gemm_bf16.c" -I "$kernels/include" -lpthread -lm
"$out" "$@"
