#!/usr/bin/env bash
# Before a machine goes away: copy the finished units of every unfinished experiment run
# (those of runs/experiments/NAME-SCALE[-TAG]/units.json that the published
# results/NAME_SCALE[-TAG].json lacks) to results/partial/NAME_SCALE[-TAG].units.json, where
# `pathcond run` picks them up on the next machine. Commit results/partial/ afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python - <<'PY'
import re
from pathlib import Path

from pathcond.errors import PathcondError
from pathcond.experiments import experiment_config
from pathcond.experiments._io import atomic_write_json, pack_tables, read_units

for units_file in sorted(Path("runs/experiments").glob("*/units.json")):
    match = re.fullmatch(r"(.+)-(smoke|cpu|full)(?:-(.+))?", units_file.parent.name)
    if not match:
        continue
    name, scale, tag = match.groups()
    label = scale if tag is None else f"{scale}-{tag}"
    units = read_units(units_file) or {}
    try:  # units shared with another experiment (App M: Fig 5's) are kept in its files
        others = list(experiment_config(name).params(scale).get("share_units_with") or [])
    except PathcondError:
        others = []
    kept = read_units(Path("results") / f"{name}_{label}.json") or {}
    for other in others:
        kept.update(read_units(Path("results") / f"{other}_{label}.json") or {})
        kept.update(read_units(Path("results") / "partial" / f"{other}_{label}.units.json")
                    or {})
    missing = {key: entry for key, entry in units.items() if kept.get(key) != entry}
    target = Path("results") / "partial" / f"{name}_{label}.units.json"
    if missing:
        atomic_write_json(target, {"units": pack_tables(missing)}, indent=None)
        print(f"{target}: {len(missing)} finished units of {units_file.parent} "
              f"not in results/{name}_{label}.json")
    elif target.is_file():
        target.unlink()
        print(f"{target}: removed (results/{name}_{label}.json holds every unit)")
PY
