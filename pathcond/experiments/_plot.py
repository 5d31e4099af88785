"""Matplotlib helpers for the experiment figures (Agg backend, PNG)."""

from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._files import save_figure
from ._train import run_key

__all__ = ["COLORS", "log_scale", "mean_std", "pyplot", "save", "seed_curves", "spearman"]

#: One colour per method, the same in every figure.
COLORS = {
    "baseline": "tab:blue", "sgd": "tab:blue", "pathcond": "tab:red", "enorm": "tab:green",
    "enorm_bn": "tab:olive", "enorm_epoch": "tab:cyan", "gsgd": "tab:purple",
    "weightfix": "gold", "weightfix_not1": "tab:brown", "adam": "tab:gray",
    "weightfix_adam": "tab:pink", "gadam": "black", "pathsgd": "tab:cyan",
    "gsgd_ones": "magenta", "sgd_ones": "navy", "adam_ones": "limegreen",
    "weightfix_ones": "darkorange",
    "weightfix_adam_ones": "hotpink",
    "gsgd_ones_all": "darkviolet", "sgd_ones_all": "teal", "gadam_ones": "dimgray",
    "pathcond_adam": "salmon", "sgd_lr_matched": "tab:orange",
    "sgd_lr_output": "darkgreen", "sgd_lr_tensors": "goldenrod",
    "pathcond_reference": "tab:purple", "pathcond_reference_10sweeps": "tab:brown",
}


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def log_scale(ax: Any) -> None:
    """A logarithmic y axis whose tick labels are plain numbers (``2.3``, not
    ``2.3 x 10^0``): loss curves often span less than a decade."""
    from matplotlib.ticker import LogFormatter

    class Plain(LogFormatter):  # LogFormatter's choice of ticks, written as 0.6, 2.3, 1e-04
        def __call__(self, x: float, pos: int | None = None) -> str:
            return f"{x:.4g}" if super().__call__(x, pos) else ""

    ax.set_yscale("log")
    # minor ticks labelled only when the axis spans about a decade or less
    ax.yaxis.set_major_formatter(Plain(labelOnlyBase=False))
    ax.yaxis.set_minor_formatter(Plain(labelOnlyBase=False, minor_thresholds=(1, 0.4)))


def save(fig: Any, path: Path, *, note: str = "") -> Path:
    """Save a figure as PNG (atomically) and close it; ``note`` (e.g. that the run is
    unfinished) is added under the title."""
    if note:
        title = fig.get_suptitle()
        fig.suptitle(f"{title}\n{note}" if title else note, fontsize=10)
    for ax in fig.axes:  # a panel of a run still in progress (--no-train) may have no data
        if not (np.isfinite(ax.dataLim.get_points()).all() or ax.images or ax.texts):
            ax.text(0.5, 0.5, "no finished runs yet", transform=ax.transAxes, ha="center",
                    va="center", color="0.4")
    if fig.get_layout_engine() is None:  # panels' labels and the suptitle never overlap
        with warnings.catch_warnings():  # a figure tight_layout cannot fit stays as drawn
            warnings.simplefilter("ignore", UserWarning)
            fig.tight_layout()
    try:
        return save_figure(fig, path, dpi=110, bbox_inches="tight")
    finally:
        pyplot().close(fig)


def mean_std(values: Iterable[float | None]) -> dict[str, Any]:
    """Mean, standard deviation (``None`` with one value), min, max and count of the finite
    values."""
    xs = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not xs:
        return {"mean": None, "std": None, "min": None, "max": None, "n": 0}
    return {"mean": statistics.fmean(xs), "std": statistics.stdev(xs) if len(xs) > 1 else None,
            "min": min(xs), "max": max(xs), "n": len(xs)}


def _ranks(xs: Sequence[float]) -> list[float]:
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    ranks = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2.0
        i = j + 1
    return ranks


def spearman(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Spearman rank correlation (``None`` for fewer than 3 pairs or constant input)."""
    if len(xs) != len(ys) or len(xs) < 3:
        return None
    rx, ry = _ranks(xs), _ranks(ys)
    mx, my = statistics.fmean(rx), statistics.fmean(ry)
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    sxx = sum((a - mx) ** 2 for a in rx)
    syy = sum((b - my) ** 2 for b in ry)
    if sxx == 0 or syy == 0:
        return None
    return sxy / math.sqrt(sxx * syy)


def fmt_ms(stat: dict[str, Any], digits: int = 3, scale: float = 1.0) -> str:
    """``mean ± std`` text of a :func:`mean_std` result."""
    if stat.get("mean") is None:
        return "-"
    text = f"{stat['mean'] * scale:.{digits}g}"
    if stat.get("std") is not None:
        text += f" ± {stat['std'] * scale:.2g}"
    return text


def legend(ax: Any, fontsize: int = 8) -> None:
    """``ax.legend`` only when some artist has a label (no warning on empty panels)."""
    handles, _ = ax.get_legend_handles_labels()
    if handles:
        ax.legend(fontsize=fontsize)


def seed_curves(ax: Any, ctx: Any, labels: Iterable[str], prefix: Sequence[str], key: str,
                ylabel: str, title: str) -> None:
    """``key`` against the epoch of every stored run ``run_key(*prefix, label, "seed=<s>")``,
    one line per method label and seed of ``ctx.params["seeds"]`` (epochs from 1, records
    without ``key`` left out; the first seed's line names the method in the legend)."""
    seeds = ctx.params["seeds"]
    for label in labels:
        for s in seeds:
            k = run_key(*prefix, label, f"seed={s}")
            rec = ctx.store.results(k).get(k)
            if rec is None:
                continue
            h = [r for r in rec["history"] if r.get("epoch", 0) >= 1 and r.get(key) is not None]
            ax.plot([r["epoch"] for r in h], [r[key] for r in h], color=COLORS.get(label),
                    alpha=0.8, label=label if s == seeds[0] else None)
    ax.set(xlabel="epoch", ylabel=ylabel, title=title)
    legend(ax, 8)
