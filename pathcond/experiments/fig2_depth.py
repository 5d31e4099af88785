"""Fig 2's depth trend in one picture: the speed-up of every method over the baseline, by
depth, gathered from the published results of Fig 2 and of its BatchNorm investigation.

Speed-up = baseline's mean epochs to the target training accuracy / the method's (same
depth, data, width, learning rate and batch, checked on the units' specifications; the
baseline from the Fig 2 run, at one learning rate). A method that never reaches the
target gives only a bound: below ``baseline epochs / epochs run``. A depth where a
baseline seed misses the target is left out.
Sources (``results/``, each optional): ``fig2_full-<tag>.json`` (baseline, PathCond, ENorm,
the lr-factor control: units ``depth=D/lr=../LABEL/seed=S``), ``fig2_bn_full-<tag>30.json``
(3 hidden layers) and ``fig2_bn_full-emulation[10]-dD.json`` (the BatchNorm-ignoring
emulation, converged and with the published 10 sweeps: units ``LABEL/seed=S``).

``python -m pathcond.experiments.fig2_depth [--results results] [--out docs/figures/
fig2_depth_trend.png]`` draws it and prints the table.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import PathcondError
from ._io import read_units
from ._plot import COLORS, log_scale, pyplot, save
from ._train import first_epoch_at

__all__ = ["DepthPoint", "depth_trend", "draw_depth_trend", "main"]

#: (label in the results, name on the figure); the Fig 2 run's methods, then the emulations.
FIG2_METHODS = (("pathcond", "PathCond (function-preserving)"),
                ("sgd_lr_matched", "SGD at lr x PathCond's factor (control)"),
                ("enorm_bn", "ENorm, BatchNorm included, every step"),
                ("enorm_epoch", "ENorm, BatchNorm included, every epoch"))
EMULATIONS = (("pathcond_reference", "emulation ignoring BatchNorm, converged"),
              ("pathcond_reference_10sweeps", "emulation ignoring BatchNorm, 10 sweeps"))


@dataclass(frozen=True)
class DepthPoint:
    """One method at one depth: its epochs to the target per seed (``None``: not reached
    in ``epochs_run``), its speed-up over the baseline (``bound``: only an upper bound,
    some seed did not reach the target) and its final training accuracy (mean of the
    seeds; ``diverged`` below 0.5)."""

    method: str
    depth: int
    epochs: tuple[int | None, ...]
    epochs_run: int
    speedup: float
    bound: bool
    final_train_acc: float

    @property
    def diverged(self) -> bool:
        """The run ended far from the target (a 10-class net near chance)."""
        return self.final_train_acc < 0.5


_Run = tuple[int | None, int, float]  # epochs to the target, epochs run, final train acc


def _epochs(units: Mapping[str, Any], pattern: re.Pattern[str], target: float
            ) -> dict[int, list[_Run]]:
    """``{depth (0 if the key has none): [one _Run per seed]}`` of the matching units."""
    out: dict[int, list[_Run]] = {}
    for key in sorted(units):
        m = pattern.fullmatch(key)
        if m is None:
            continue
        history = units[key]["result"].get("history") or []
        if not history:
            continue
        last = max(history, key=lambda r: int(r.get("epoch", 0)))
        depth = int(m.groupdict().get("depth") or 0)
        out.setdefault(depth, []).append((first_epoch_at(history, "train_acc", target),
                                          int(last.get("epoch", 0)),
                                          float(last.get("train_acc") or 0.0)))
    return out


def _point(method: str, depth: int, runs: Sequence[_Run], baseline: float) -> DepthPoint:
    """A seed that did not reach the target counts with the epochs it ran: the mean is then
    a lower bound on the method's epochs, the speed-up an upper bound."""
    mean = statistics.fmean(e if e is not None else r for e, r, _ in runs)
    return DepthPoint(method, depth, tuple(e for e, _, _ in runs), max(r for _, r, _ in runs),
                      baseline / mean, any(e is None for e, _, _ in runs),
                      statistics.fmean(a for _, _, a in runs))


def _setting(spec: Mapping[str, Any]) -> tuple[Any, ...]:
    """(data, width, lr, batch) of a Fig 2 trainer unit or a fig2_bn minimal-loop unit."""
    if "config" in spec:
        c = spec["config"]
        return (c["data"].get("name"), c["model"]["args"].get("width"), c["optimizer"]["lr"],
                c["training"]["batch_size"])
    return (spec["data"].get("name"), spec.get("width"), spec["optimizer"]["lr"],
            spec["batch_size"])


def depth_trend(results: str | Path, *, tag: str = "mnist", lr: float = 0.001,
                target: float = 0.99) -> list[DepthPoint]:
    """Every method's speed-up over the baseline at every depth found in ``results``.

    Raises :class:`~pathcond.errors.PathcondError` when there is no Fig 2 run, or when an
    emulation file holds runs of another setting than the Fig 2 baseline's."""
    results = Path(results)
    fig2 = read_units(results / f"fig2_full-{tag}.json")
    if not fig2:
        raise PathcondError(f"{results / f'fig2_full-{tag}.json'}: no Fig 2 units; run "
                            f"`pathcond run fig2 --scale full --set data.name={tag} --tag "
                            f"{tag} --publish` first")

    def fig2_runs(label: str) -> dict[int, list[_Run]]:
        pat = re.compile(rf"depth=(?P<depth>\d+)/{re.escape(f'lr={lr:g}')}/"
                         rf"{re.escape(label)}/seed=\d+")
        return _epochs(fig2, pat, target)

    settings = {_setting(u["spec"]) for k, u in fig2.items()
                if re.fullmatch(rf"depth=\d+/{re.escape(f'lr={lr:g}')}/baseline/seed=\d+", k)}

    base = {d: statistics.fmean(e for e, _, _ in runs if e is not None)
            for d, runs in fig2_runs("baseline").items()
            if all(e is not None for e, _, _ in runs)}
    points = []
    for label, _ in FIG2_METHODS:
        for depth, runs in sorted(fig2_runs(label).items()):
            if depth in base:
                points.append(_point(label, depth, runs, base[depth]))
    for label, _ in EMULATIONS:
        pat = re.compile(rf"{re.escape(label)}/seed=\d+")
        for depth in sorted(base):
            suffix = "10" if label.endswith("10sweeps") else ""
            name = (f"fig2_bn_full-{tag}30.json" if depth == 3
                    else f"fig2_bn_full-emulation{suffix}-d{depth}.json")
            units = read_units(results / name) or {}
            for key, unit in units.items():
                spec = unit["spec"]
                if pat.fullmatch(key) and (_setting(spec) not in settings
                                           or spec.get("depth") != depth):
                    raise PathcondError(f"{results / name}: {key} was run with (data, width, "
                                        f"lr, batch) {_setting(spec)} at depth "
                                        f"{spec.get('depth')}, not the Fig 2 run's "
                                        f"{sorted(settings, key=str)} at depth {depth}")
            found = _epochs(units, pat, target).get(0)
            if found:
                points.append(_point(label, depth, found, base[depth]))
    return points


def draw_depth_trend(points: Sequence[DepthPoint], path: str | Path, *,
                     title: str = "") -> Path:
    """Speed-up against depth, one line per method; bounds as open downward triangles,
    diverged runs as crosses on the bottom edge."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(11.5, 5))
    floor = min([p.speedup for p in points if not p.diverged] + [1.0]) / 1.6
    ax.axhspan(1.0, 1.5, color="0.9", zorder=0, label="paper: up to 1.5x (CIFAR-10)")
    ax.axhline(1.0, color="0.4", lw=0.8)
    for label, name in FIG2_METHODS + EMULATIONS:
        every = sorted((p for p in points if p.method == label), key=lambda p: p.depth)
        mine = [p for p in every if not p.diverged]
        gone = [p.depth for p in every if p.diverged]
        if gone:
            ax.plot(gone, [floor] * len(gone), "x", color=COLORS.get(label), ms=9,
                    clip_on=False)
        if not mine:
            continue
        color = COLORS.get(label)
        style = "--" if label.startswith("pathcond_reference") else "-"
        ax.plot([p.depth for p in mine], [p.speedup for p in mine], style, color=color,
                alpha=0.8, label=name)
        exact = [p for p in mine if not p.bound]
        ax.plot([p.depth for p in exact], [p.speedup for p in exact], "o", color=color)
        bounds = [p for p in mine if p.bound]
        ax.plot([p.depth for p in bounds], [p.speedup for p in bounds], "v", color=color,
                mfc="white")
    log_scale(ax)
    ax.set_ylim(bottom=floor)
    ax.set(xlabel="hidden layers", ylabel="speed-up over the baseline (epochs to 99%)",
           title=title or "Fig 2 on MNIST: speed-up by depth (open triangle: an upper "
           "bound; x: diverged)")
    ax.set_xticks(sorted({p.depth for p in points}))
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    ax.grid(alpha=0.3, which="both")
    return save(fig, Path(path))


def _table(points: Sequence[DepthPoint]) -> str:
    depths = sorted({p.depth for p in points})
    lines = ["method | " + " | ".join(str(d) for d in depths)]
    for label, _ in FIG2_METHODS + EMULATIONS:
        cells = {p.depth: "diverged" if p.diverged else
                 f"{'<' if p.bound else ''}{p.speedup:.2f}x"
                 for p in points if p.method == label}
        if cells:
            lines.append(f"{label} | " + " | ".join(cells.get(d, "-") for d in depths))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Draw the depth trend from published results and print its table."""
    parser = argparse.ArgumentParser(prog="python -m pathcond.experiments.fig2_depth",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--results", default="results", help="the published results")
    parser.add_argument("--tag", default="mnist", help="the tag of the Fig 2 run")
    parser.add_argument("--out", default="docs/figures/fig2_depth_trend.png")
    args = parser.parse_args(argv)
    try:
        points = depth_trend(args.results, tag=args.tag)
    except PathcondError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(_table(points))
    print(f"figure: {draw_depth_trend(points, args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
