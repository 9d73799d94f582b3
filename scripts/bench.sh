#!/usr/bin/env bash
# Measures xllama on this machine, and the PyTorch reference beside it when REFERENCE_PYTHON
# names a Python with torch, transformers, mlstm_kernels and xlstm. Run it on an idle machine:
# a build or test run beside it skews the figures several-fold. Writes runs/bench/*.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
model="$(scripts/fetch-model.sh | tail -n 1)"
swift build -c release --product xllama 2>&1 | grep -E "error|complete" >&2 || true
xllama=".build/release/xllama"
out="runs/bench"
mkdir -p "$out"
shared="${XLLAMA_SHARED:-../shared}"

if [ -n "${REFERENCE_PYTHON:-}" ]; then
  echo "== PyTorch reference (2 threads)" >&2
  "$REFERENCE_PYTHON" "$shared/reference/bench_reference.py" 2 | tee "$out/reference.txt"
fi

echo "== kernels and sgemm" >&2
"$xllama" bench --kernels --threads 1 2> "$out/kernels-1thread.txt"
"$xllama" bench --kernels --threads 2 2> "$out/kernels-2threads.txt"
cat "$out/kernels-2threads.txt" >&2

echo "== teacher (SmolLM2-135M-Instruct, Q4_1 file, float32 in memory)" >&2
"$xllama" bench --model "$model" --prompt-tokens 512 --gen-tokens 128 --depths 0,4096 2>&1 | tee "$out/teacher.txt"

for dtype in f32 bf16; do
  student="runs/bench/student-$dtype"
  [ -d "$student" ] || "$xllama" linearize --teacher "$model" --out "$student" --dtype "$dtype" 2>/dev/null
  echo "== student ($dtype weights); one process per depth, so each peak memory is its own" >&2
  "$xllama" bench --model "$student" --prompt-tokens 512 --gen-tokens 128 --depths 0 2>&1 | tee "$out/student-$dtype-depth0.txt"
  "$xllama" bench --model "$student" --prompt-tokens 512 --gen-tokens 128 --depths 4096 2>&1 | tee "$out/student-$dtype-depth4096.txt"
done

echo "== BF16 against float32 weights in one process, decode windows alternating" >&2
"$xllama" bench --model runs/bench/student-f32 --against runs/bench/student-bf16 --prompt-tokens 512 \
  --gen-tokens 128 --depths 0,4096 2>&1 | tee "$out/student-bf16-against-f32.txt"

if [ -n "${BENCH_TRAINING:-}" ]; then
  echo "== MOHAWK training steps (random SmolLM2-135M-shaped teacher and student, 1x512 tokens)" >&2
  XLLAMA_BENCH=1 swift test -c release -Xswiftc -enable-testing --filter MOHAWKBenchmark 2>&1 \
    | grep -v "^\[" | tee "$out/training.txt"
fi
