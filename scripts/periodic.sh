#!/usr/bin/env bash
# Issue 8 study: PathCond at init vs every epoch vs every 20 steps vs baseline, with SGD +
# momentum and with Adam, on four settings. Resumable: rerun to continue.
# Usage: bash scripts/periodic.sh [OUT_DIR]   (default results/periodic)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-results/periodic}
for cfg in configs/periodic/*.yaml; do
  name=$(basename "$cfg" .yaml)
  .venv/bin/pathcond compare "$cfg" --out "$out/runs/$name-sgd" --resume --no-progress
  .venv/bin/pathcond compare "$cfg" --optimizer adam --lr 0.001 --momentum 0 \
    --out "$out/runs/$name-adam" --resume --no-progress
done
