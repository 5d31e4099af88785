"""Paper Fig 2 (section 5.1) and Appendix K: MLP_BN depth sweep, epochs to 99% training
accuracy, baseline vs ENorm vs PathCond at initialisation.

Published protocol: CIFAR-10 (40k training images, flattened to 3072), MLP_BN
``3072 -> [500]*k -> 10`` with ``Linear(no bias) -> BatchNorm1d -> ReLU`` hidden layers,
``k = 3..8``, Kaiming uniform, SGD lr 1e-3, batch 128, 100 epochs, 3 seeds. CIFAR-10 is read
from ``data.root`` / ``$PATHCOND_CIFAR10_DIR`` when present; otherwise the configs use a
labelled substitute (Fashion-MNIST, 784 inputs, same hidden layers).

Methods (labels): ``baseline``; ``enorm`` the paper's ENorm setting (c = 1, p = 2, one cycle
per SGD step, BatchNorm parameters excluded: in a function-preserving implementation this
leaves nothing to balance in MLP_BN, see the results page); ``enorm_bn`` the same with the
BatchNorm affine parameters included (the units are then balanced through gamma and beta);
``pathcond`` PathCond at initialisation (on the eval-mode fold of BatchNorm, applied to
gamma and beta: docs/batchnorm.md).

Claims: PathCond reaches 99% training accuracy up to 1.5x faster (3 hidden layers: the
strongest gain; deeper: modest but consistent), ENorm brings no improvement; App K: gains at
small to moderate learning rates, vanishing at large ones.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, NamedTuple

from torch import nn

from ..errors import ConfigError
from ._lr import geometric_mean, pathcond_factors, seeded_model
from ._plot import COLORS, log_scale, mean_std, pyplot, save, seed_curves
from ._plot import legend as _legend
from ._train import (
    check_minimal_method,
    check_trainer_methods,
    data_config,
    get_data,
    minimal_unit,
    run_key,
    train_unit,
)
from .registry import RunContext

__all__ = ["draw_app_k", "draw_fig2", "draw_fig2_bn", "pathcond_lr_factor", "run_app_k",
           "run_fig2", "run_fig2_bn"]


class _Method(NamedTuple):
    label: str
    method: Any  # the trainer's method config
    lr_scale: str | None  # "pathcond": the lr times PathCond's factor (pathcond_lr_factor)


def _methods(p: dict[str, Any]) -> list[_Method]:
    """The configured methods; a plain string is its own label."""
    out = []
    for m in p["methods"]:
        if isinstance(m, str):
            out.append(_Method(m, m, None))
            continue
        m = dict(m)
        lr_scale = m.pop("lr_scale", None)
        if lr_scale not in (None, "pathcond"):
            raise ConfigError(f"method {m.get('label')!r}: lr_scale must be 'pathcond' or "
                              f"absent, got {lr_scale!r}")
        out.append(_Method(str(m.pop("label", m.get("name"))), m.get("method", m), lr_scale))
    return out


def pathcond_lr_factor(model: nn.Module, input_shape: tuple[int, ...]) -> float:
    """The learning-rate factor PathCond at initialisation amounts to on the BatchNorm'd
    weights: the geometric mean of ``exp(-2 B u*)`` over the entries of the weights of
    layers followed by a BatchNorm whose inputs are rescaled (``model`` is left unchanged).

    Behind a BatchNorm a weight is scale-invariant, so SGD on the rescaled net is SGD with
    these per-entry factors on the original (:mod:`pathcond.rescale.preconditioning`); one
    number summarises them (4 significant digits).
    """
    graph, factors = pathcond_factors(model, input_shape)
    names = [layer.weight_name for layer in graph.layers
             if layer.batchnorm is not None and bool((layer.col_groups >= 0).any())]
    return geometric_mean(factors[n] for n in names) if names else 1.0


def _lr_factor(p: dict[str, Any], depth: int, seed: int, n_in: int) -> float:
    """:func:`pathcond_lr_factor` of the MLP_BN the trainer builds for ``seed``."""
    model = seeded_model("mlp_bn", seed, depth=depth, width=int(p.get("width", 500)),
                         in_features=n_in)
    return pathcond_lr_factor(model, (n_in,))


def _config(p: dict[str, Any], depth: int, lr: float, method: Any, label: str, seed: int,
            n_in: int) -> dict[str, Any]:
    return {
        "name": f"mlpbn-d{depth}-lr{lr}-{label}-s{seed}", "seed": seed,
        "device": p.get("device", "cpu"), "data": data_config(p["data"]),
        "model": {"name": "mlp_bn", "args": {"depth": depth, "width": int(p.get("width", 500)),
                                             "in_features": n_in}},
        "optimizer": {"name": "sgd", "lr": lr},
        "training": {"epochs": int(p["epochs"]), "batch_size": int(p.get("batch_size", 128)),
                     "eval_batch_size": 2000, "evaluate_test": bool(p.get("evaluate_test", False)),
                     "am_gm": True, "target_accuracy": float(p.get("target", 0.99)),
                     "target_split": "train",
                     **({"threads": int(p["threads"])} if p.get("threads") else {})},
        "method": method,
        "output": {"progress": False, "plot": False, "keep_checkpoints": 1},
    }


def _data(ctx: RunContext) -> tuple[Any, int]:
    """The configured data (described in the log) and its number of input features."""
    data = get_data(ctx.params["data"])
    ctx.log(data.describe())
    return data, math.prod(int(s) for s in data.input_shape)


def _sweep(ctx: RunContext, depths: list[int], lrs: list[float]) -> dict[str, Any]:
    p = ctx.params
    methods = _methods(p)
    check_trainer_methods(ctx, [m.method for m in methods])
    data, n_in = _data(ctx)
    target = float(p.get("target", 0.99))
    seeds = [int(s) for s in p["seeds"]]
    stop = bool(p.get("stop_at_target", True))
    runs: dict[str, Any] = {}
    factors = {(d, s): _lr_factor(p, d, s, n_in) for d in depths for s in seeds}
    ctx.units_total = len(seeds) * len(lrs) * len(depths) * len(methods)
    for seed in seeds:  # seeds outermost: an interrupted sweep holds whole seeds
        for lr in lrs:
            for depth in depths:
                for label, method, lr_scale in methods:
                    key = run_key(f"depth={depth}", f"lr={lr}", label, f"seed={seed}")
                    unit_lr = lr * factors[depth, seed] if lr_scale == "pathcond" else lr
                    rec = train_unit(ctx, key,
                                     _config(p, depth, unit_lr, method, label, seed, n_in),
                                     data, stop_at=("train_acc", target) if stop else None,
                                     chunk=int(p.get("chunk", 5)))
                    if rec is not None:
                        runs[key] = rec
    table = []
    for lr in lrs:
        for depth in depths:
            params = n_in * int(p.get("width", 500)) + (depth - 1) * int(p.get("width", 500)) ** 2 \
                + int(p.get("width", 500)) * 10 + 10 + depth * 2 * int(p.get("width", 500))
            row: dict[str, Any] = {"lr": lr, "depth": depth, "parameters": params,
                                   "pathcond_lr_factor": mean_std(factors[depth, s]
                                                                  for s in seeds)}
            for label, *_ in methods:
                recs = [runs[k] for s in seeds
                        if (k := run_key(f"depth={depth}", f"lr={lr}", label, f"seed={s}"))
                        in runs]
                row[label] = {"epochs_to_target": mean_std(r.get("epochs_to_target")
                                                           for r in recs),
                              "reached": sum(r.get("epochs_to_target") is not None
                                             for r in recs),
                              "runs": len(recs),
                              "final_train_acc": mean_std(r["final_train_acc"] for r in recs),
                              "final_train_loss": mean_std(r["final_train_loss"]
                                                           for r in recs)}
            b = row.get("baseline", {}).get("epochs_to_target", {}).get("mean")
            for label, *_ in methods:
                e = row[label]["epochs_to_target"]["mean"]
                if b and e and label != "baseline":
                    row[label]["speedup_vs_baseline"] = b / e
            table.append(row)
    n_units = len(lrs) * len(depths) * len(methods) * len(seeds)
    return {"table": table, "data": data.describe(), "target": target,
            "complete": len(runs) == n_units}


def run_fig2(ctx: RunContext) -> dict[str, Any]:
    """Depth sweep at the published learning rate."""
    out = _sweep(ctx, [int(d) for d in ctx.params["depths"]], [float(ctx.params["lr"])])
    speed = [r["pathcond"].get("speedup_vs_baseline") for r in out["table"]
             if "pathcond" in r]
    speed = [s for s in speed if s is not None]
    out["pathcond_speedup_max"] = max(speed) if speed else None
    out["pathcond_speedup_by_depth"] = {str(r["depth"]): r.get("pathcond", {}).get(
        "speedup_vs_baseline") for r in out["table"]}
    out["pathcond_lr_factor_by_depth"] = {str(r["depth"]): r["pathcond_lr_factor"]["mean"]
                                          for r in out["table"]}
    return out


def run_app_k(ctx: RunContext) -> dict[str, Any]:
    """Appendix K: the Fig 2 protocol at several learning rates."""
    return _sweep(ctx, [int(d) for d in ctx.params["depths"]],
                  [float(x) for x in ctx.params["lrs"]])


def _curves(ax: Any, ctx: RunContext, depth: int, lr: float, key: str, ylabel: str) -> None:
    seed_curves(ax, ctx, [m.label for m in _methods(ctx.params)],
                (f"depth={depth}", f"lr={lr}"), key, ylabel, f"depth {depth}, lr {lr}")


def _speedups(ax: Any, summary: dict[str, Any], labels: list[str], epochs: int) -> None:
    """Baseline epochs over each method's, by depth (hollow: not reached by any seed, an
    upper bound), with PathCond's learning-rate factor on the BatchNorm'd weights."""
    from matplotlib.ticker import FormatStrFormatter

    rows = sorted(summary["table"], key=lambda r: r["depth"])
    for i, label in enumerate(labels):
        if label == "baseline":
            continue
        for reached in (True, False):
            pts = []
            for r in rows:
                base = r.get("baseline", {}).get("epochs_to_target", {}).get("mean")
                mine = r[label]["epochs_to_target"]["mean"]
                if base is None or not r[label]["runs"] or (mine is not None) != reached:
                    continue
                shift = 0.0 if reached else 0.08 * (i - len(labels) / 2)  # bounds coincide
                pts.append((r["depth"] + shift, base / (mine if reached else epochs)))
            if pts:
                ax.plot(*zip(*pts, strict=True), "o-" if reached else "v", color=COLORS.get(label),
                        mfc=None if reached else "none", label=label if reached else None)
    factors = [(r["depth"], r["pathcond_lr_factor"]["mean"]) for r in rows
               if r.get("pathcond_lr_factor", {}).get("mean") is not None]
    if factors:
        ax.plot(*zip(*factors, strict=True), "k--", lw=1, label="PathCond lr factor (BN'd W)")
    ax.axhline(1.0, color="gray", lw=0.6)
    ax.set(xlabel="hidden layers", ylabel="speed-up over the baseline", yscale="log",
           title="speed-up by depth (hollow: not reached, bound)")
    ax.yaxis.set_major_formatter(FormatStrFormatter("%.2g"))
    ax.yaxis.set_minor_formatter(FormatStrFormatter("%.2g"))
    _legend(ax, 7)


def draw_fig2(ctx: RunContext, summary: dict[str, Any]) -> list[Path]:
    """Parameters vs epochs to target; speed-ups and PathCond's lr factor by depth; training
    accuracy and loss for the shallowest net."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(20, 4.3))
    lr = float(ctx.params["lr"])
    for label, *_ in _methods(ctx.params):
        rows = [r for r in summary["table"] if r[label]["epochs_to_target"]["mean"] is not None]
        axes[0].errorbar([r[label]["epochs_to_target"]["mean"] for r in rows],
                         [r["parameters"] / 1e6 for r in rows],
                         xerr=[r[label]["epochs_to_target"]["std"] or 0 for r in rows],
                         marker="o", capsize=3, color=COLORS.get(label), label=label)
        for r in rows:
            axes[0].annotate(str(r["depth"]), (r[label]["epochs_to_target"]["mean"],
                                               r["parameters"] / 1e6), fontsize=7)
    axes[0].set(xlabel=f"epochs to {summary['target']:.0%} train accuracy",
                ylabel="parameters (M)", title="depth sweep (labels: hidden layers)")
    _legend(axes[0], 8)
    _speedups(axes[1], summary, [m.label for m in _methods(ctx.params)],
              int(ctx.params["epochs"]))
    dmin = min(int(d) for d in ctx.params["depths"])
    _curves(axes[2], ctx, dmin, lr, "train_acc", "training accuracy")
    _curves(axes[3], ctx, dmin, lr, "train_loss", "training loss")
    log_scale(axes[3])
    fig.suptitle(f"Fig 2: MLP_BN, SGD lr {lr} ({ctx.scale} scale; {summary.get('data', '')})",
                 fontsize=10)
    return [save(fig, ctx.figure_path(), note=ctx.unfinished)]


def draw_app_k(ctx: RunContext, summary: dict[str, Any]) -> list[Path]:
    """Epochs to target vs learning rate for each depth, and accuracy curves per lr."""
    plt = pyplot()
    lrs = [float(x) for x in ctx.params["lrs"]]
    depths = [int(d) for d in ctx.params["depths"]]
    fig, axes = plt.subplots(1, len(lrs) + 1, figsize=(4.4 * (len(lrs) + 1), 4.0))
    for label, *_ in _methods(ctx.params):
        for depth in depths:
            rows = [r for r in summary["table"] if r["depth"] == depth]
            xs = [r["lr"] for r in rows if r[label]["epochs_to_target"]["mean"] is not None]
            ys = [r[label]["epochs_to_target"]["mean"] for r in rows
                  if r[label]["epochs_to_target"]["mean"] is not None]
            axes[0].plot(xs, ys, "o-", color=COLORS.get(label),
                         label=f"{label}" if depth == depths[0] else None)
    axes[0].set(xscale="log", xlabel="learning rate",
                ylabel=f"epochs to {summary['target']:.0%} train acc",
                title="epochs to target (missing: not reached)")
    _legend(axes[0], 8)
    for ax, lr in zip(axes[1:], lrs, strict=False):
        _curves(ax, ctx, depths[0], lr, "train_acc", "training accuracy")
    fig.suptitle(f"App K: MLP_BN learning rates ({ctx.scale} scale; {summary.get('data', '')})",
                 fontsize=10)
    return [save(fig, ctx.figure_path(), note=ctx.unfinished)]


# ------------------------------------------------------- investigation: BatchNorm handling


def run_fig2_bn(ctx: RunContext) -> dict[str, Any]:
    """Fig 2 investigation: how PathCond treats BatchNorm changes the outcome.

    Variants on MLP_BN (minimal loop, the same seeds and data order for all): ``baseline``;
    ``pathcond`` (the library: criterion on the eval-mode fold with the running statistics
    at initialisation, mean 0 / variance 1, scales applied to gamma and beta);
    ``pathcond_10sweeps`` (the same, solved as the published code does: at most 10
    coordinate sweeps); ``pathcond_calibrated`` (running statistics first set from training
    batches, so the fold matches the data); ``pathcond_reference`` (BatchNorm ignored,
    scales applied to the raw weights: not function-preserving, an emulation of an
    implementation that does not model BatchNorm); ``pathcond_reference_10sweeps`` (the
    same, solved as the published code does: at most 10 coordinate sweeps); ``enorm_bn``.
    """
    from ..models import MLP, mlp_bn

    p = ctx.params
    depth, width, lr = int(p["depth"]), int(p.get("width", 500)), float(p["lr"])
    seeds = [int(s) for s in p["seeds"]]
    targets = [float(t) for t in p.get("targets", [0.9])]
    stop_at = p.get("stop_at")
    if stop_at is not None and (isinstance(stop_at, bool) or not isinstance(stop_at, int | float)
                                or not 0 < stop_at <= 1):
        raise ConfigError(f"stop_at must be a training accuracy in (0, 1] or null, got "
                          f"{stop_at!r}")
    if stop_at is not None and stop_at < max(targets):
        raise ConfigError(f"stop_at {stop_at:g} is below the target {max(targets):g}: runs "
                          "would stop before it is measured; raise stop_at or drop the target")
    variants = {str(k): dict(v) for k, v in p["variants"].items()}
    for label, method in variants.items():
        check_minimal_method({k: v for k, v in method.items() if k != "batchnorm"},
                             label=f"variant {label!r}")
    data, n_in = _data(ctx)
    runs: dict[str, Any] = {}
    ctx.units_total = len(variants) * len(seeds)
    for label, method in variants.items():
        batchnorm = bool(method.pop("batchnorm", True))
        for seed in seeds:
            def build(batchnorm: bool = batchnorm) -> Any:
                if batchnorm:
                    return mlp_bn(depth, width=width, in_features=n_in)
                return MLP([n_in, *([width] * depth), 10], bias=False, output_bias=True)
            key = run_key(label, f"seed={seed}")
            unit = {"data": p["data"], "depth": depth, "width": width}
            if not batchnorm:
                unit["batchnorm"] = False
            rec = minimal_unit(ctx, key, unit,
                               build_model=build, data=data, method=method,
                               optimizer={"name": "sgd", "lr": lr}, epochs=int(p["epochs"]),
                               batch_size=int(p.get("batch_size", 128)), seed=seed,
                               eval_splits=("val",),
                               stop_at=None if stop_at is None else ("train_acc",
                                                                     float(stop_at)))
            if rec is not None:
                runs[key] = rec
    table = {}
    for label in variants:
        recs = [runs[k] for s in seeds if (k := run_key(label, f"seed={s}")) in runs]
        row: dict[str, Any] = {"final_train_acc": mean_std(r["final_train_acc"] for r in recs),
                               "final_train_loss": mean_std(r["final_train_loss"] for r in recs),
                               "method_info": [r.get("method_info") for r in recs]}
        for t in targets:
            from ._train import first_epoch_at

            row[f"epochs_to_{t:g}"] = mean_std(first_epoch_at(r["history"], "train_acc", t)
                                               for r in recs)
        table[label] = row
    return {"table": table, "targets": targets, "data": data.describe(),
            "complete": len(runs) == len(variants) * len(seeds)}


def draw_fig2_bn(ctx: RunContext, summary: dict[str, Any]) -> list[Path]:
    """Training accuracy and loss of every variant."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.3))
    colors = {**COLORS, "pathcond_calibrated": "tab:orange", "pathcond_10sweeps": "salmon",
              "plain_baseline": "tab:cyan", "plain_pathcond": "tab:pink"}
    for label in ctx.params["variants"]:
        for s in ctx.params["seeds"]:
            k = run_key(label, f"seed={s}")
            rec = ctx.store.results(k).get(k)
            if rec is None:
                continue
            h = [r for r in rec["history"] if r.get("epoch", 0) >= 1]
            for ax, key in ((axes[0], "train_acc"), (axes[1], "train_loss")):
                ax.plot([r["epoch"] for r in h], [r[key] for r in h], color=colors.get(label),
                        alpha=0.8, label=label if s == ctx.params["seeds"][0] else None)
    axes[0].set(xlabel="epoch", ylabel="training accuracy", title="training accuracy")
    axes[1].set(xlabel="epoch", ylabel="training loss", yscale="log", title="training loss")
    _legend(axes[0], 8)
    _legend(axes[1], 8)
    fig.suptitle(f"Fig 2 investigation: BatchNorm handling, MLP_BN depth {ctx.params['depth']}, "
                 f"lr {ctx.params['lr']}, {ctx.params['epochs']} epochs ({ctx.scale} scale; "
                 f"{summary.get('data', '')})",
                 fontsize=10)
    return [save(fig, ctx.figure_path(), note=ctx.unfinished)]
