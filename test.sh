#!/usr/bin/env bash
# Runs the whole test suite (what .ci/run calls after ./setup.sh).
set -euo pipefail
cd "$(dirname "$0")"
exec python3 -m pytest -q -ra "$@"
