#!/usr/bin/env bash
# The main job on a fresh machine, end to end: installs what is missing, fetches the default
# teacher (SmolLM2-135M-Instruct), builds xllama in release mode, linearizes the teacher into an
# xLlama student, distills it briefly with the three MOHAWK stages on the public-domain books in
# data/corpus, measures both models' perplexity on a held-out book and their decode speed at a
# long context, and lets both answer the same prompt. Everything goes to ${XLLAMA_WORK:-runs/demo}.
#
# XLLAMA_DEMO_TOKENS sets the distillation budget (default 16384 tokens, about 8 minutes on
# 2 cores); the whole script takes about 15 minutes on a 2-core machine.
set -euo pipefail
cd "$(dirname "$0")/.."

started=$(date +%s)
step() { printf '\n== [%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

step "1/8 set-up: Debian packages and the default model"
teacher="$(scripts/fetch-model.sh | tail -n 1)"
echo "teacher: $teacher" >&2

step "2/8 build xllama (release; a first build takes a few minutes)"
swift build -c release --product xllama 2>&1 | grep -E "error|Compiling|complete" | tail -n 2 >&2 || true
xllama=".build/release/xllama"
work="${XLLAMA_WORK:-runs/demo}"
tokens="${XLLAMA_DEMO_TOKENS:-16384}"
prompt="${XLLAMA_PROMPT:-Tell me a short story about a lighthouse keeper.}"
mkdir -p "$work"

step "3/8 tokenize the training books into shards"
"$xllama" data prepare --model "$teacher" --input data/corpus --out "$work/shards" --split-paragraphs \
  --validation 0.02 --force

step "4/8 linearize: attention → mLSTM, every shared weight copied"
"$xllama" linearize --teacher "$teacher" --out "$work/student-initial" --force

step "5/8 distill with MOHAWK stages 1, 2, 3 ($tokens tokens)"
rm -rf "$work/distill"
"$xllama" distill --teacher "$teacher" --student "$work/student-initial" --data "$work/shards" \
  --out "$work/distill" --tokens "$tokens" --split 0.125,0.25,0.625 --checkpoint-every 1000 --validate-every 1000
student="$work/student"
rm -rf "$student"
cp -r "$work/distill/checkpoints/stage3-final/student" "$student"

step "6/8 perplexity of both on a held-out book (data/heldout)"
"$xllama" eval --model "$student" --teacher "$teacher" --text-file data/heldout/chesterton-ball-opening.txt \
  --max-context 1024 --output "$work/eval.json" | tee "$work/eval.md"

step "7/8 decode speed at context depths 0 and 4096"
"$xllama" bench --model "$teacher" --prompt-tokens 128 --gen-tokens 32 --depths 0,4096 --repeats 1 --json \
  2>/dev/null | tee "$work/bench-teacher.jsonl"
"$xllama" bench --model "$student" --prompt-tokens 128 --gen-tokens 32 --depths 0,4096 --repeats 1 --json \
  2>/dev/null | tee "$work/bench-student.jsonl"

step "8/8 both models answer: $prompt"
echo "-- teacher:" >&2
"$xllama" generate --model "$teacher" --prompt "$prompt" --chat --max-tokens 60
echo "-- student:" >&2
"$xllama" generate --model "$student" --prompt "$prompt" --chat --max-tokens 60 --repetition-penalty 1.2

row() { grep -E "^\| text \| token_perplexity" "$work/eval.md" | head -n 1; }
speed() { grep "depth $2\"" "$1" | sed -E 's/.*"tok_s":([0-9.]+).*/\1/'; }
elapsed=$(( $(date +%s) - started ))

cat <<SUMMARY

== summary ($((elapsed / 60)) min $((elapsed % 60)) s)
student (xLlama, distilled on $tokens tokens): $student
loss curves: $work/distill/loss.svg    metrics: $work/distill/metrics.jsonl
held-out perplexity (task | metric | teacher | student | recovery):
  $(row)
decode tok/s at depth 0 / 4096: teacher $(speed "$work/bench-teacher.jsonl" 0) / $(speed "$work/bench-teacher.jsonl" 4096), student $(speed "$work/bench-student.jsonl" 0) / $(speed "$work/bench-student.jsonl" 4096)

A budget this small only starts the alignment; the student's text stays weak until it is
distilled on millions of tokens. Next:
  $xllama distill --teacher $teacher --student $work/student-initial --data $work/shards --out runs/long --tokens 2000000
  $xllama eval --model $student --teacher $teacher --tasks hellaswag,piqa,arc_easy --limit 100 --data-dir DIR
  $xllama chat --model $student
  $xllama bench --model $student --depths 0,4096,16384
SUMMARY
