"""Training curves of one or more runs: loss and accuracy against epochs and wall time, one
line per method (mean over seeds) with a band (min to max over seeds)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._files import save_figure
from ..errors import ConfigError
from .config import method_label
from .metrics import METRICS_JSONL, read_metrics

__all__ = ["RunCurves", "collect_runs", "plot_runs"]

FORMATS = ("png", "svg")


@dataclass
class RunCurves:
    """The metrics of the runs of one method (one entry per seed)."""

    label: str
    seeds: list[int] = field(default_factory=list)
    rows: list[list[dict[str, Any]]] = field(default_factory=list)


def find_run_dirs(paths: Sequence[str | Path]) -> list[Path]:
    """Run directories under ``paths`` (each a run directory or a folder holding some)."""
    found: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise ConfigError(f"{str(p)!r} does not exist")
        if not p.is_dir():
            raise ConfigError(f"{str(p)!r} is not a directory")
        if (p / METRICS_JSONL).is_file():
            found.append(p)
            continue
        sub = sorted(m.parent for m in p.rglob(METRICS_JSONL))
        if not sub:
            raise ConfigError(f"{str(p)!r} holds no run (no {METRICS_JSONL} inside)")
        found.extend(sub)
    unique: list[Path] = []
    for d in found:
        if d.resolve() not in {u.resolve() for u in unique}:
            unique.append(d)
    return unique


def collect_runs(paths: Sequence[str | Path]) -> list[RunCurves]:
    """Group the runs found under ``paths`` by experiment and method (seeds together)."""
    from .trainer import read_run_config

    groups: dict[tuple[str, str], RunCurves] = {}
    names: set[str] = set()
    entries = []
    for d in find_run_dirs(paths):
        cfg = read_run_config(d)
        entries.append((cfg.name, method_label(cfg.method), cfg.seed, read_metrics(d)))
        names.add(cfg.name)
    for name, label, seed, rows in entries:
        shown = label if len(names) == 1 else f"{name}: {label}"
        group = groups.setdefault((name, label), RunCurves(shown))
        group.seeds.append(seed)
        group.rows.append(rows)
    return list(groups.values())


def _stack(rows: list[list[dict[str, Any]]], key: str) -> Any:
    import numpy as np

    length = max((len(r) for r in rows), default=0)
    out = np.full((len(rows), length), np.nan)
    for i, run in enumerate(rows):
        for j, row in enumerate(run):
            v = row.get(key)
            if isinstance(v, int | float) and math.isfinite(v):
                out[i, j] = float(v)
    return out


def _has(groups: Sequence[RunCurves], key: str) -> bool:
    return any(row.get(key) is not None for g in groups for run in g.rows for row in run)


def plot_runs(paths: Sequence[str | Path], out: str | Path, *, fmt: str = "png",
              title: str | None = None) -> Path:
    """Plot the runs under ``paths`` into ``out`` (a ``.png``/``.svg`` file, or a directory
    that receives ``curves.<fmt>``); the file is written atomically. Returns its path."""
    if fmt not in FORMATS:
        raise ConfigError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    out = Path(out)
    if out.suffix.lower() in tuple(f".{f}" for f in FORMATS):
        target, fmt = out, out.suffix.lower()[1:]
    elif out.suffix:
        raise ConfigError(f"plot file {str(out)!r} must end in .png or .svg")
    else:
        target = out / f"curves.{fmt}"
    if target.parent.exists() and not target.parent.is_dir():
        raise ConfigError(f"{str(target.parent)!r} is not a directory")
    groups = collect_runs(paths)
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
        import numpy as np
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        raise ConfigError("plots need matplotlib: pip install 'pathcond[experiments]'") from None

    with_acc = _has(groups, "train_acc") or _has(groups, "val_acc")
    heldout = "val" if _has(groups, "val_loss") else ("test" if _has(groups, "test_loss")
                                                      else None)
    metrics = [("loss", "loss")] + ([("acc", "accuracy")] if with_acc else [])
    fig, axes = plt.subplots(2, len(metrics), figsize=(6.0 * len(metrics), 8.0), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key().get("color", ["C0", "C1", "C2"])
    for gi, group in enumerate(groups):
        color = colors[gi % len(colors)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            epochs = np.nanmax(_stack(group.rows, "epoch"), axis=0)
            wall = np.nanmean(_stack(group.rows, "wall_time"), axis=0)
        splits = [("train", "-")] + ([(heldout, "--")] if heldout else [])
        for col, (metric, ylabel) in enumerate(metrics):
            for split, style in splits:
                values = _stack(group.rows, f"{split}_{metric}")
                if values.size == 0 or np.all(np.isnan(values)):
                    continue
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    mean = np.nanmean(values, axis=0)
                    low, high = np.nanmin(values, axis=0), np.nanmax(values, axis=0)
                if metric == "acc":
                    mean, low, high = 100 * mean, 100 * low, 100 * high
                seeds = f" ({len(group.rows)} seeds)" if len(group.rows) > 1 else ""
                label = f"{group.label} {split}{seeds}"
                for row, x in ((0, epochs), (1, wall)):
                    ax = axes[row][col]
                    ax.plot(x, mean, style, color=color, label=label, marker="." if len(x) < 30
                            else None)
                    if len(group.rows) > 1:
                        ax.fill_between(x, low, high, color=color, alpha=0.2, linewidth=0)
            for row, xlabel in ((0, "epoch"), (1, "wall time (s)")):
                ax = axes[row][col]
                ax.set_xlabel(xlabel)
                ax.set_ylabel(ylabel + (" (%)" if metric == "acc" else ""))
                if metric == "loss":
                    ax.set_yscale("log")
                if row == 0:
                    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
                ax.grid(True, alpha=0.3)
    axes[0][0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    try:
        return save_figure(fig, target, format=fmt, dpi=110)
    finally:
        plt.close(fig)
