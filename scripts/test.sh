#!/usr/bin/env bash
# Runs the test suite, optimized: the numeric tests load a real model and are 10–100× slower
# in a debug build. Fixture tests read XLLAMA_FIXTURES (default ../shared/reference/fixtures)
# and the default model from XLLAMA_MODEL (default: the one fetch-model.sh caches); tests whose
# files are absent are skipped and say so.
set -euo pipefail
cd "$(dirname "$0")/.."
model="$(scripts/fetch-model.sh | tail -n 1)"
export XLLAMA_MODEL="${XLLAMA_MODEL:-$model}"
exec swift test -c release -Xswiftc -enable-testing "$@"
