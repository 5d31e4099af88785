#!/usr/bin/env bash
# Before a machine goes away: copy the finished units of every unfinished experiment run
# (those of runs/experiments/NAME-SCALE[-TAG]/units.json that the published
# results/NAME_SCALE[-TAG].json lacks) to results/partial/NAME_SCALE[-TAG].units.json, where
# `pathcond run` picks them up on the next machine. Commit results/partial/ afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python - <<'PY'
from pathcond.experiments.partial import keep_partial

for kept in keep_partial():
    if kept.units:
        print(f"{kept.target}: {kept.units} finished units of {kept.run_dir}")
    elif kept.removed:
        print(f"{kept.target}: removed (the published results hold every unit)")
PY
