#!/usr/bin/env bash
# Before a machine goes away: copy the finished units of every unfinished experiment run
# (runs/experiments/NAME-SCALE[-TAG]/units.json without a published results/NAME_SCALE[-TAG].json
# that holds them all) to results/partial/NAME_SCALE[-TAG].units.json, where `pathcond run`
# picks them up on the next machine. Commit results/partial/ afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python - <<'PY'
import json
import re
from pathlib import Path

from pathcond.experiments._io import atomic_write_json

for units_file in sorted(Path("runs/experiments").glob("*/units.json")):
    match = re.fullmatch(r"(.+)-(smoke|cpu|full)(?:-(.+))?", units_file.parent.name)
    if not match:
        continue
    name, scale, tag = match.groups()
    label = scale if tag is None else f"{scale}-{tag}"
    units = json.loads(units_file.read_text(encoding="utf-8")).get("units", {})
    published = Path("results") / f"{name}_{label}.json"
    if published.is_file():
        kept = json.loads(published.read_text(encoding="utf-8")).get("units", {})
        if all(key in kept for key in units):
            continue
    if units:
        target = Path("results") / "partial" / f"{name}_{label}.units.json"
        atomic_write_json(target, {"units": units}, indent=None)
        print(f"{target}: {len(units)} finished units of {units_file.parent}")
PY
