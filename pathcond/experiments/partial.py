"""Finished units of unfinished runs, kept in the repository between machines.

``runs/`` is not in the repository, so before a machine goes away the finished units of
every experiment run there that its published ``results/NAME_SCALE[-TAG].json`` lacks are
copied to ``results/partial/NAME_SCALE[-TAG].units.json``, where :func:`run_experiment
<pathcond.experiments.run_experiment>` on the next machine reuses them
(``scripts/keep_partial.sh``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import PathcondError
from ._io import UNITS_FILE, atomic_write_json, pack_tables, read_units
from .registry import experiment_config, partial_path, published_path

__all__ = ["KeptUnits", "keep_partial"]

_RUN_DIR = re.compile(r"(.+)-(smoke|cpu|full)(?:-(.+))?")


@dataclass(frozen=True)
class KeptUnits:
    """What :func:`keep_partial` did for one run directory."""

    run_dir: Path
    target: Path
    units: int  # units written to ``target`` (0: nothing left to keep)
    removed: bool  # ``target`` deleted: the published results hold every unit


def _shared_with(name: str, scale: str) -> list[str]:
    try:
        return [str(o) for o in experiment_config(name).params(scale).get("share_units_with")
                or []]
    except PathcondError:
        return []


def keep_partial(runs_root: str | Path = "runs/experiments",
                 results_dir: str | Path = "results") -> list[KeptUnits]:
    """Copy to ``results_dir/partial/`` the finished units of each run directory under
    ``runs_root`` (``NAME-SCALE[-TAG]``) that are not already in its published results, in
    those of a tagged variant of it at the same scale (run into the same directory with
    ``--out``), nor in those of an experiment it shares units with (App M: Fig 5's); delete
    a partial file that the published results have made redundant."""
    results = Path(results_dir)
    done: list[KeptUnits] = []
    for units_file in sorted(Path(runs_root).glob(f"*/{UNITS_FILE}")):
        match = _RUN_DIR.fullmatch(units_file.parent.name)
        if not match:
            continue
        name, scale, tag = match.groups()
        label = scale if tag is None else f"{scale}-{tag}"
        units = read_units(units_file) or {}
        kept = dict(read_units(published_path(results, name, label)) or {})
        # a tagged variant run into this directory (`--out`) published its own units
        for variant in sorted(results.glob(f"{name}_{scale}-*.json")):
            kept.update({k: v for k, v in (read_units(variant) or {}).items()
                         if k not in kept})
        for other in _shared_with(name, scale):
            kept.update(read_units(published_path(results, other, label)) or {})
            kept.update(read_units(partial_path(results, other, label)) or {})
        missing = {key: entry for key, entry in units.items() if kept.get(key) != entry}
        target = partial_path(results, name, label)
        removed = False
        if missing:
            atomic_write_json(target, {"units": pack_tables(missing)}, indent=None)
        elif target.is_file():
            target.unlink()
            removed = True
        done.append(KeptUnits(units_file.parent, target, len(missing), removed))
    return done
