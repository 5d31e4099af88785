"""Several methods on one configuration, seeds in a loop, and one summary table.

Layout of a comparison directory::

    DIR/config.yaml                 the base configuration (with its compare section)
    DIR/<method label>/seed_<s>/    one run directory per method and seed
    DIR/summary.csv, summary.json   one row per method: mean and spread over seeds
    DIR/plots/curves.png            every method, a band over seeds
"""

from __future__ import annotations

import json
import math
import re
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .._files import atomic_write_text
from ..errors import ConfigError
from .checkpoint import list_checkpoints
from .config import ExperimentConfig, method_label, validate_config
from .trainer import SUMMARY_FILE, RunResult, Trainer, load_data

__all__ = ["CompareResult", "compare", "summary_rows", "summary_table_lines"]

#: Columns of the summary: (key in a run's summary, header, kind).
SUMMARY_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("final.train_loss", "train loss", "num"),
    ("final.train_acc", "train acc", "pct"),
    ("final.val_acc", "val acc", "pct"),
    ("best_val_acc", "best val acc", "pct"),
    ("final.test_acc", "test acc", "pct"),
    ("epochs_to_target", "epochs to target", "epochs"),
    ("final.am_gm", "AM/GM", "num"),
    ("wall_time", "time (s)", "sec"),
    ("rescale_time_total", "rescale (s)", "sec"),
)


@dataclass
class CompareResult:
    """What :func:`compare` returns."""

    out_dir: Path
    runs: dict[str, list[dict[str, Any]]]  # method label -> run summaries (one per seed)
    rows: list[dict[str, Any]]
    plot: Path | None


def _dir_name(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", label).strip("_") or "method"


def _get(summary: dict[str, Any], dotted: str) -> Any:
    node: Any = summary
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def summary_rows(runs: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per method: for each column its mean, standard deviation (over seeds; ``None``
    with one seed), and the number of seeds with a value."""
    rows = []
    for label, summaries in runs.items():
        row: dict[str, Any] = {"method": label, "seeds": [s["seed"] for s in summaries],
                               "status": sorted({s["status"] for s in summaries})}
        for key, _, _ in SUMMARY_COLUMNS:
            values = [float(v) for v in (_get(s, key) for s in summaries)
                      if isinstance(v, int | float) and math.isfinite(v)]
            row[key] = {
                "mean": statistics.fmean(values) if values else None,
                "std": statistics.stdev(values) if len(values) > 1 else None,
                "n": len(values),
            }
        rows.append(row)
    return rows


def _cell(stat: dict[str, Any], kind: str, total: int) -> str:
    mean, std, n = stat["mean"], stat["std"], stat["n"]
    if mean is None:
        return "-" if kind != "epochs" else f"not reached (0/{total})"
    scale = 100.0 if kind == "pct" else 1.0
    fmt = {"pct": "{:.2f}", "num": "{:.4g}", "sec": "{:.1f}", "epochs": "{:.1f}"}[kind]
    spread = {"pct": "{:.2f}", "num": "{:.2g}", "sec": "{:.1f}", "epochs": "{:.1f}"}[kind]
    text = fmt.format(mean * scale)
    if std is not None:
        text += " ± " + spread.format(std * scale)
    if kind == "pct":
        text += "%"
    if kind == "epochs" and n < total:
        text += f" ({n}/{total})"
    return text


def summary_table_lines(rows: Sequence[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Headers and formatted cells (``mean ± std`` over seeds) of the summary table; columns
    without any value are dropped."""
    cols = [(k, h, kind) for k, h, kind in SUMMARY_COLUMNS
            if any(r[k]["n"] for r in rows) or kind == "epochs"
            and any(r[k]["n"] or r.get("target") for r in rows)]
    if not any(r.get("target") for r in rows):
        cols = [c for c in cols if c[2] != "epochs" or any(r[c[0]]["n"] for r in rows)]
    headers = ["method", "seeds", *[h for _, h, _ in cols]]
    body = []
    for r in rows:
        total = len(r["seeds"])
        status = "" if r["status"] == ["completed"] else f" ({'/'.join(r['status'])})"
        body.append([r["method"] + status, str(total),
                     *[_cell(r[k], kind, total) for k, _, kind in cols]])
    return headers, body


def _write_summary(out_dir: Path, rows: list[dict[str, Any]], target: float | None) -> None:
    for r in rows:
        r["target"] = target
    atomic_write_text(out_dir / "summary.json", json.dumps(rows, indent=2) + "\n")
    headers = ["method", "seeds"]
    for key, _, _ in SUMMARY_COLUMNS:
        headers += [f"{key}_mean", f"{key}_std", f"{key}_n"]
    lines = [",".join(headers)]
    for r in rows:
        cells = [r["method"], " ".join(map(str, r["seeds"]))]
        for key, _, _ in SUMMARY_COLUMNS:
            st = r[key]
            cells += ["" if st["mean"] is None else repr(st["mean"]),
                      "" if st["std"] is None else repr(st["std"]), str(st["n"])]
        lines.append(",".join(f'"{c}"' if "," in c else c for c in cells))
    atomic_write_text(out_dir / "summary.csv", "\n".join(lines) + "\n")


def _run_config(base: ExperimentConfig, method: Any, seed: int, run_dir: Path) -> ExperimentConfig:
    data = base.to_dict()
    data["method"] = method.model_dump(mode="json")
    data["seed"] = seed
    data["output"] = dict(data["output"], dir=str(run_dir), plot=False)
    return validate_config(data, "compare")


def compare(config: ExperimentConfig, *, out_dir: str | Path | None = None,
            methods: Sequence[Any] | None = None, seeds: Sequence[int] | None = None,
            resume: bool = False, overwrite: bool = False,
            log: Callable[[str], None] | None = None) -> CompareResult:
    """Train every method of ``methods`` (default ``config.compare.methods``) with every seed
    of ``seeds`` (default ``config.compare.seeds``) on ``config``.

    Everything is validated (methods available, data present, run directories free) before
    the first run starts. With ``resume``, finished runs are kept and interrupted ones
    continue from their checkpoints.
    """
    methods = list(methods) if methods is not None else list(config.compare.methods)
    seeds = list(seeds) if seeds is not None else list(config.compare.seeds)
    if not methods or not seeds:
        raise ConfigError("compare needs at least one method and one seed")
    data = config.to_dict()
    data["compare"] = {"methods": [m.model_dump(mode="json") for m in methods],
                       "seeds": seeds}
    config = validate_config(data, "compare")
    methods = list(config.compare.methods)
    out = Path(out_dir) if out_dir is not None else config.run_dir()
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{str(out)!r} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not (resume or overwrite):
        raise ConfigError(f"comparison directory {str(out)!r} is not empty: continue it with "
                          "--resume or start again with --overwrite")
    if overwrite and out.is_dir() and any(out.iterdir()) and not (out / "config.yaml").exists():
        raise ConfigError(f"{str(out)!r} holds no comparison; refusing to overwrite it")
    splits = load_data(config.data)
    plan: list[tuple[str, int, ExperimentConfig, Path]] = []
    for m in methods:
        label = method_label(m)
        for s in seeds:
            run_dir = out / _dir_name(label) / f"seed_{s}"
            plan.append((label, s, _run_config(config, m, s, run_dir), run_dir))
    # Validate each method once (availability, model support) before any training.
    checked: set[str] = set()
    for label, _, cfg, _ in plan:
        if label not in checked:
            Trainer(cfg, data=splits, log=lambda _m: None)
            checked.add(label)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))
    runs: dict[str, list[dict[str, Any]]] = {}
    for label, seed, cfg, run_dir in plan:
        summary = _finished(run_dir, cfg) if resume else None
        if summary is None:
            trainer = Trainer(cfg, data=splits, log=log)
            can_resume = resume and bool(list_checkpoints(run_dir))
            result: RunResult = trainer.run(resume=can_resume,
                                            overwrite=not can_resume)
            summary = result.summary
        elif log is not None:
            log(f"[{label} seed {seed}] already finished; kept")
        runs.setdefault(label, []).append(summary)
    rows = summary_rows(runs)
    _write_summary(out, rows, config.training.target_accuracy)
    plot = None
    if config.output.plot:
        from .plot import plot_runs

        plot = plot_runs([out], out / "plots", fmt=config.output.plot_format,
                         title=f"{config.name}: {config.data.name}, {config.model.name}")
    return CompareResult(out, runs, rows, plot)


def _finished(run_dir: Path, cfg: ExperimentConfig) -> dict[str, Any] | None:
    """The summary of a finished run in ``run_dir`` with the same epochs, else ``None``."""
    path = run_dir / SUMMARY_FILE
    if not path.is_file():
        return None
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(summary, dict) or summary.get("status") not in ("completed", "diverged"):
        return None
    if summary.get("epochs_planned") != cfg.training.epochs:
        return None
    return summary
