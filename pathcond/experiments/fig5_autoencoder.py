"""Paper Fig 5 (section 5.3) and Appendix M: the MNIST autoencoder
``784 -> 784/k -> 784/k^2 -> 784/k -> 784`` for compression ``k`` in {1, 2, 4, 7}, MSE, SGD
with batch 128, learning rates {1e-3, 1e-2, 0.1}, 3 runs; baseline against PathCond at
initialisation. Measured: the final training loss (mean over the last epoch's minibatches,
the trainer's ``train_loss``) against ``k``, and ``||u||_inf`` of the PathCond rescaling.

Claims: PathCond reaches a smaller final training loss in all cases, and the effect is
larger for larger ``k`` (more unbalanced widths); App M: the rescaling size grows with ``k``
at every learning rate.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ..errors import ConfigError
from ..rescale import pathcond_lr_scales
from ._lr import seeded_model
from ._plot import COLORS, fmt_ms, mean_std, pyplot, save, spearman
from ._plot import legend as _legend
from ._train import (
    check_trainer_methods,
    data_config,
    get_data,
    pathcond_report,
    run_key,
    train_unit,
)
from .registry import RunContext

__all__ = ["draw_app_m", "draw_fig5", "run_app_m", "run_fig5"]


class _Method(NamedTuple):
    label: str
    method: Any  # the trainer's method config
    lr_from_pathcond: Any  # None, "all" or parameter names: SGD at PathCond's factors


def _methods(p: dict[str, Any]) -> list[_Method]:
    """The configured methods: a trainer method (its name is its label), or ``{label,
    method, lr_from_pathcond}``, a control: the method with the learning rate of the named
    parameters (``all``: of every parameter) multiplied by the geometric mean of PathCond's
    factors on it (:mod:`pathcond.rescale.preconditioning`), without rescaling."""
    out = []
    for m in p["methods"]:
        if isinstance(m, str):
            out.append(_Method(m, m, None))
        elif "label" in m:
            which = m.get("lr_from_pathcond")
            if not (which is None or which == "all" or (
                    isinstance(which, list) and all(isinstance(n, str) for n in which))):
                raise ConfigError(f"method {m['label']!r}: lr_from_pathcond must be 'all' or a "
                                  f"list of parameter names, got {which!r}")
            out.append(_Method(str(m["label"]), m.get("method", "baseline"), which))
        else:
            out.append(_Method(str(m["name"]), m, None))
    return out


@functools.cache
def _factor_means(k: int, seed: int) -> dict[str, float]:
    """PathCond's geometric-mean learning-rate factor on each parameter it rescales, for the
    autoencoder the trainer builds for ``seed`` (one solve per ``(k, seed)``)."""
    return pathcond_lr_scales(seeded_model("mnist_autoencoder", seed, k=k), (784,))


def _lr_scales(k: int, seed: int, which: Any) -> dict[str, float]:
    """``optimizer.lr_scales`` of a control: :func:`_factor_means` of the named parameters
    (``all``: of every parameter PathCond rescales)."""
    means = _factor_means(k, seed)
    names = list(means) if which == "all" else list(which)
    missing = [n for n in names if n not in means]
    if missing:
        raise ConfigError(f"lr_from_pathcond: PathCond does not rescale {missing[0]!r}; its "
                          f"parameters: {', '.join(means)}")
    return {n: means[n] for n in names}


def _trainer_config(p: dict[str, Any], k: int, lr: float, method: _Method, seed: int
                    ) -> dict[str, Any]:
    optimizer: dict[str, Any] = {"name": "sgd", "lr": lr}
    if method.lr_from_pathcond is not None:
        optimizer["lr_scales"] = _lr_scales(k, seed, method.lr_from_pathcond)
    return {
        "name": f"ae-k{k}-lr{lr}-{method.label}-s{seed}", "seed": seed,
        "device": p.get("device", "cpu"),
        "data": data_config(p["data"]),
        "model": {"name": "mnist_autoencoder", "args": {"k": k}},
        "optimizer": optimizer,
        "training": {"epochs": int(p["epochs"]), "batch_size": int(p.get("batch_size", 128)),
                     "eval_batch_size": 2000, "evaluate_test": False, "am_gm": True,
                     **({"threads": int(p["threads"])} if p.get("threads") else {})},
        "method": method.method,
        "output": {"progress": False, "plot": False, "keep_checkpoints": 1},
    }


def run_fig5(ctx: RunContext) -> dict[str, Any]:
    """Train every k x lr x method x seed; PathCond's ||u||_inf for every k x seed."""
    p = ctx.params
    methods, seeds = _methods(p), [int(s) for s in p["seeds"]]
    check_trainer_methods(ctx, [m.method for m in methods])
    data = get_data({**p["data"], "task": "autoencoding"})
    ctx.log(data.describe())
    ks, lrs = [int(k) for k in p["ks"]], [float(x) for x in p["lrs"]]
    rescale: dict[str, Any] = {}
    for k in ks:
        for seed in seeds:
            def compute(k: int = k, seed: int = seed) -> dict[str, Any]:
                return pathcond_report(seeded_model("mnist_autoencoder", seed, k=k), (784,))
            rescale[f"k={k}/seed={seed}"] = ctx.store.run(
                run_key("rescale", f"k={k}", f"seed={seed}"), {"k": k, "seed": seed}, compute)
    runs: dict[str, dict[str, Any]] = {}
    # Seeds outermost, cheap (large k) first: an interrupted run already has a full picture.
    # The smallest k (the widest, costliest net: 784-wide at k = 1, ten times k = 7, and the
    # regular one PathCond barely rescales) comes after every other k at every seed.
    order = [float(x) for x in p.get("lr_order", lrs)]
    by_cost = sorted(ks, reverse=True)
    blocks = [by_cost[:-1], by_cost[-1:]] if len(by_cost) > 1 else [by_cost]
    ctx.units_total = len(ks) * len(lrs) * len(methods) * len(seeds)
    for block in blocks:
        for seed in seeds:
            for lr in sorted(lrs, key=lambda x: order.index(x) if x in order else len(order)):
                for k in block:
                    for method in methods:
                        key = run_key(f"k={k}", f"lr={lr}", method.label, f"seed={seed}")
                        rec = train_unit(ctx, key, _trainer_config(p, k, lr, method, seed),
                                         data)
                        if rec is not None:
                            runs[key] = rec
    table: list[dict[str, Any]] = []
    for lr in lrs:
        for k in ks:
            row: dict[str, Any] = {"lr": lr, "k": k}
            finals: dict[str, list[float]] = {}
            for mname, *_ in methods:
                vals = [runs[key]["final_train_loss"] for s in seeds
                        if (key := run_key(f"k={k}", f"lr={lr}", mname, f"seed={s}")) in runs]
                finals[mname] = [v for v in vals if v is not None]
                row[mname] = mean_std(finals[mname])
            b, c = finals.get("baseline", []), finals.get("pathcond", [])
            if b and c:
                row["ratio_baseline_over_pathcond"] = float(np.mean(b) / np.mean(c))
                row["pathcond_better"] = float(np.mean(c)) < float(np.mean(b))
            row["u_inf"] = mean_std(rescale[f"k={k}/seed={s}"].get("u_inf") for s in seeds)
            table.append(row)
    trend = {}
    for lr in lrs:
        rows = [r for r in table if r["lr"] == lr and "ratio_baseline_over_pathcond" in r]
        trend[str(lr)] = spearman([r["k"] for r in rows],
                                  [r["ratio_baseline_over_pathcond"] for r in rows])
    better = [r["pathcond_better"] for r in table if "pathcond_better" in r]
    return {"table": table, "rescale": rescale,
            "pathcond_better_all": all(better) if better else None,
            "pathcond_better_count": f"{sum(better)}/{len(better)}",
            "gain_vs_k_spearman": trend, "data": data.describe(),
            "complete": len(runs) == len(lrs) * len(ks) * len(methods) * len(seeds)}


def run_app_m(ctx: RunContext) -> dict[str, Any]:
    """Appendix M: the Fig 5 protocol at its three learning rates (shares Fig 5's units)."""
    return run_fig5(ctx)


def _final_vs_k(ax: Any, summary: dict[str, Any], lr: float, methods: list[_Method]) -> None:
    rows = [r for r in summary["table"] if r["lr"] == lr]
    for mname, *_ in methods:
        xs = [r["k"] for r in rows if r[mname]["mean"] is not None]
        ys = [r[mname]["mean"] for r in rows if r[mname]["mean"] is not None]
        es = [r[mname]["std"] or 0.0 for r in rows if r[mname]["mean"] is not None]
        ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=mname,
                    color=COLORS.get(mname))
    ax.set(xlabel="compression factor k", ylabel="final training loss (MSE)",
           title=f"lr = {lr}", xticks=[r["k"] for r in rows])
    _legend(ax, 8)


def _loss_vs_k_figure(ctx: RunContext, summary: dict[str, Any]) -> tuple[Any, Any]:
    """A figure of the final training loss against k, one panel per learning rate, and one
    more panel: the figure and that last panel."""
    plt = pyplot()
    lrs = [float(x) for x in ctx.params["lrs"]]
    fig, axes = plt.subplots(1, len(lrs) + 1, figsize=(4.6 * (len(lrs) + 1), 4.2))
    for ax, lr in zip(axes, lrs, strict=False):
        _final_vs_k(ax, summary, lr, _methods(ctx.params))
    return fig, axes[-1]


def draw_fig5(ctx: RunContext, summary: dict[str, Any]) -> list[Path]:
    """Final training loss vs k, one panel per learning rate; training curves at k = max."""
    fig, ax = _loss_vs_k_figure(ctx, summary)
    lrs = [float(x) for x in ctx.params["lrs"]]
    kmax = max(int(k) for k in ctx.params["ks"])
    lr_mid = lrs[len(lrs) // 2]
    for mname, *_ in _methods(ctx.params):
        for s in ctx.params["seeds"]:
            rec = ctx.store.results(run_key(f"k={kmax}", f"lr={lr_mid}", mname,
                                            f"seed={s}")).get(
                run_key(f"k={kmax}", f"lr={lr_mid}", mname, f"seed={s}"))
            if rec is None:
                continue
            h = [r for r in rec["history"] if r.get("epoch", 0) >= 1]
            ax.plot([r["epoch"] for r in h], [r["train_loss"] for r in h],
                    color=COLORS.get(mname), alpha=0.7,
                    label=mname if s == ctx.params["seeds"][0] else None)
    ax.set(xlabel="epoch", ylabel="training loss", yscale="log",
           title=f"curves, k = {kmax}, lr = {lr_mid}")
    _legend(ax, 8)
    fig.suptitle(f"Fig 5: MNIST autoencoder, baseline vs PathCond at init ({ctx.scale} scale: "
                 f"{ctx.params['epochs']} epochs, {summary.get('data', '')})", fontsize=10)
    return [save(fig, ctx.figure_path(), note=ctx.unfinished)]


def draw_app_m(ctx: RunContext, summary: dict[str, Any]) -> list[Path]:
    """App M: final loss vs k at each lr, and the rescaling size ||u||_inf vs k."""
    fig, ax = _loss_vs_k_figure(ctx, summary)
    ks = [int(k) for k in ctx.params["ks"]]
    us = [mean_std(summary["rescale"][f"k={k}/seed={s}"].get("u_inf")
                   for s in ctx.params["seeds"]) for k in ks]
    ax.errorbar(ks, [u["mean"] for u in us], yerr=[u["std"] or 0 for u in us],
                marker="o", color=COLORS["pathcond"], capsize=3)
    ax.set(xlabel="compression factor k", ylabel="$\\|u\\|_\\infty$ at init",
           title="PathCond rescaling size", xticks=ks)
    fig.suptitle(f"App M: learning rates and rescaling size ({ctx.scale} scale, "
                 f"{ctx.params['epochs']} epochs); u_inf {[fmt_ms(u) for u in us]}",
                 fontsize=10)
    return [save(fig, ctx.figure_path(), note=ctx.unfinished)]
