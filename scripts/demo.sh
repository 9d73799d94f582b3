#!/usr/bin/env bash
# The main job on a fresh machine: installs what is missing, fetches the default teacher
# (SmolLM2-135M-Instruct), builds xllama in release mode, lets the teacher answer a prompt,
# linearizes it into an xLlama student and lets the student write from the same prompt.
# Output goes to ${XLLAMA_WORK:-./runs/demo}.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*" >&2; }

step "1/4 set-up: Debian packages and the default model"
model="$(scripts/fetch-model.sh | tail -n 1)"
echo "teacher: $model" >&2

step "2/4 build (release)"
swift build -c release --product xllama 2>&1 | grep -E "error|warning: unre|Compiling|Build complete" | tail -n 3 >&2
xllama=".build/release/xllama"
work="${XLLAMA_WORK:-runs/demo}"
mkdir -p "$work"
prompt="${XLLAMA_PROMPT:-What is the capital of France?}"

step "3/4 the teacher answers: $prompt"
"$xllama" generate --model "$model" --prompt "$prompt" --chat --max-tokens 64

step "4/4 linearize the teacher into an xLlama student and let it write"
"$xllama" linearize --teacher "$model" --out "$work/student" --force
"$xllama" generate --model "$work/student" --prompt "$prompt" --chat --max-tokens 32

cat >&2 <<MSG

The student in $work/student has the teacher's weights and new mLSTM gates; until it is
distilled it writes fluent-looking noise. Next:
  $xllama bench --model $work/student --depths 0,4096
  $xllama inspect --model $work/student --tensors
MSG
