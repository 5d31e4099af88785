"""The thesis "Scale invariant parameter spaces for ReLU networks" (its chapter 4 and figures
1.5, 1.6, 4.1-4.10) and the G-SGD paper's MNIST claim (Meng et al., ICLR 2019).

* ``thesis_mnist`` / ``thesis_cifar``: bias-free MLPs (MNIST 784-64x4-10, CIFAR-10
  3072-64x5-10), batch 64, learning rates 1e-1 .. 1e-5, 10 runs; SGD and Adam in the
  parameter space, in G-space (G-SGD, G-Adam) and with weight fixing (fixed entries set to
  one, or kept as drawn: "not 1"). The thesis reports validation losses and picks, per
  method, the learning rate with the best validation loss at any epoch (figs 4.1-4.6, 4.10).
  PathCond at initialisation is added for reference.
* ``thesis_fixed_value``: fig 4.7, the median validation loss over a grid of learning rate
  x fixed-weight value ``b`` (fixed entries overwritten with ``b`` as in the thesis, or,
  with ``mode: rescale``, moved to +-b by a function-preserving rescaling).
* ``thesis_surfaces``: figs 1.5, 1.6, 4.8-4.9, the loss surfaces of the two-weight examples
  with ``L(y) = sin(y)``, and the gradient scaling of eq. (1.20) checked with autograd.
* ``gsgd_mnist``: G-SGD against SGD on MNIST 784-64x4-10 without bias, lr 0.1, batch 64;
  the paper reports 97.64% against 97.37% test accuracy.

Training runs use :mod:`pathcond.train` (methods ``baseline``, ``gsgd``, ``weightfix``,
``pathcond``, with ``init: ones`` for the published initialisations; Adam as the base
optimizer); runs that overwrite only part of the skeleton before another optimizer
(:func:`pathcond.optim.init_skeleton`), G-Adam and fixed values other than one use the
internal minimal loop (:func:`pathcond.experiments._train.minimal_unit`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError
from ..models import MLP
from ._plot import COLORS, mean_std, pyplot, save
from ._plot import legend as _legend
from ._train import data_config, get_data, minimal_unit, run_key, train_unit
from .registry import RunContext

__all__ = ["METHOD_SPECS", "draw_gsgd_mnist", "draw_thesis_cifar", "draw_thesis_fixed_value",
           "draw_thesis_mnist", "draw_thesis_surfaces", "run_gsgd_mnist", "run_thesis_cifar",
           "run_thesis_fixed_value", "run_thesis_mnist", "run_thesis_surfaces"]

#: label -> (base optimizer, trainer method or None for the minimal loop, minimal method).
#: The thesis (and the G-SGD paper) *overwrite* the fixed / skeleton weights with 1, which
#: changes the function (``*_ones``: the optimizers' ``init="ones"``, or
#: :func:`pathcond.optim.init_skeleton` before another optimizer); the library's default
#: ``init="rescale"`` instead reaches +-1 by a function-preserving rescaling, the thesis'
#: reparametrisation of section 3.0.4 / 4.2.2.
METHOD_SPECS: dict[str, tuple[str, Any, Any]] = {
    "sgd": ("sgd", "baseline", None),
    "adam": ("adam", "baseline", None),
    # the thesis' defaults: fixed / skeleton weights of layers 2..L overwritten with 1
    "weightfix_ones": ("sgd", {"name": "weightfix", "init": "ones"}, None),
    "weightfix_adam_ones": ("adam", {"name": "weightfix", "init": "ones"}, None),
    "gsgd_ones": ("sgd", None, {"name": "gspace", "skeleton": {"value": 1.0}, "init": "keep"}),
    "gadam_ones": ("adam", None, {"name": "gspace", "skeleton": {"value": 1.0},
                                  "init": "keep"}),
    # controls: the same starting point as Fixed SGD / Fixed Adam, nothing frozen (separates
    # the value 1 from the removal of the symmetry)
    "sgd_ones": ("sgd", None, {"name": "baseline", "skeleton": {"value": 1.0}}),
    "adam_ones": ("adam", None, {"name": "baseline", "skeleton": {"value": 1.0}}),
    # every skeleton weight 1, the first layer's diagonal (G-space roots) included: the
    # G-SGD paper's initialisation, GSGD(init="ones")
    "gsgd_ones_all": ("sgd", {"name": "gsgd", "init": "ones"}, None),
    "sgd_ones_all": ("sgd", None, {"name": "baseline",
                                   "skeleton": {"value": 1.0, "roots": True}}),
    # fixed weights kept as drawn ("not 1")
    "weightfix_not1": ("sgd", {"name": "weightfix", "init": "keep"}, None),
    # the library's function-preserving set-to-one (thesis 4.2.2 reparametrisation)
    "gsgd": ("sgd", "gsgd", None),
    "weightfix": ("sgd", {"name": "weightfix", "init": "rescale"}, None),
    "weightfix_adam": ("adam", {"name": "weightfix", "init": "rescale"}, None),
    "gadam": ("adam", None, {"name": "gspace", "init": "rescale"}),
    # PathCond at initialisation, for reference
    "pathcond": ("sgd", "pathcond", None),
    "pathcond_adam": ("adam", "pathcond", None),
}
LABELS = {"sgd": "SGD", "adam": "Adam", "weightfix_ones": "Fixed SGD",
          "weightfix_adam_ones": "Fixed Adam", "gsgd_ones": "G-SGD", "gadam_ones": "G-Adam",
          "sgd_ones": "SGD, skeleton := 1", "adam_ones": "Adam, skeleton := 1",
          "weightfix_not1": "Fixed SGD (not 1)",
          "gsgd_ones_all": "G-SGD, skeleton and roots := 1",
          "sgd_ones_all": "SGD, skeleton and roots := 1",
          "gsgd": "G-SGD (rescaled to 1)", "weightfix": "Fixed SGD (rescaled to 1)",
          "weightfix_adam": "Fixed Adam (rescaled to 1)", "gadam": "G-Adam (rescaled to 1)",
          "pathcond": "PathCond + SGD", "pathcond_adam": "PathCond + Adam"}


def _widths(p: dict[str, Any], n_in: int) -> list[int]:
    return [n_in, *([int(p.get("width", 64))] * int(p["hidden_layers"])), 10]


def _train_one(ctx: RunContext, data: Any, label: str, lr: float, seed: int,
               widths: list[int], epochs: int) -> dict[str, Any] | None:
    p = ctx.params
    base, method, minimal = METHOD_SPECS[label]
    key = run_key(label, f"lr={lr}", f"seed={seed}")
    if method is not None:
        cfg = {"name": f"thesis-{label}-lr{lr}-s{seed}", "seed": seed,
               "device": p.get("device", "cpu"), "data": data_config(p["data"]),
               "model": {"name": "mlp", "args": {"widths": widths, "bias": False}},
               "optimizer": {"name": base, "lr": lr},
               "training": {"epochs": epochs, "batch_size": int(p.get("batch_size", 64)),
                            "eval_batch_size": 5000, "am_gm": False,
                            "evaluate_test": bool(p.get("evaluate_test", True)),
                            **({"threads": int(p["threads"])} if p.get("threads") else {})},
               "method": method,
               "output": {"progress": False, "plot": False, "keep_checkpoints": 1}}
        return train_unit(ctx, key, cfg, data)

    def build() -> torch.nn.Module:
        return MLP(widths, bias=False)

    return minimal_unit(ctx, key, {"data": p["data"], "widths": widths}, build_model=build,
                        data=data, method=minimal, optimizer={"name": base, "lr": lr},
                        epochs=epochs, batch_size=int(p.get("batch_size", 64)), seed=seed,
                        eval_splits=("val", "test") if p.get("evaluate_test", True)
                        else ("val",))


def _labels(ctx: RunContext) -> list[str]:
    """The run's ``methods``, each checked to be one of :data:`METHOD_SPECS`."""
    labels = [str(m) for m in ctx.params["methods"]]
    unknown = [m for m in labels if m not in METHOD_SPECS]
    if unknown:
        raise ConfigError(f"{ctx.name}: unknown method {unknown[0]!r}; methods: "
                          f"{', '.join(METHOD_SPECS)}")
    return labels


def _grid(ctx: RunContext) -> dict[str, Any]:
    """Every method x lr x seed; per method, the lr with the best mean validation loss."""
    p = ctx.params
    methods = _labels(ctx)
    data = get_data(p["data"])
    ctx.log(data.describe())
    n_in = int(np.prod(data.input_shape))
    widths = _widths(p, n_in)
    lrs = [float(x) for x in p["lrs"]]
    seeds = [int(s) for s in p["seeds"]]
    runs: dict[str, Any] = {}
    ctx.units_total = len(seeds) * len(lrs) * len(methods)
    # Seeds outermost: an interrupted run (the full grid spans sessions on a CPU) already
    # holds every method x lr at the seeds it finished.
    for seed in seeds:
        for lr in lrs:
            for label in methods:
                rec = _train_one(ctx, data, label, lr, seed, widths, int(p["epochs"]))
                if rec is not None:
                    runs[run_key(label, f"lr={lr}", f"seed={seed}")] = rec
    # An unfinished grid is summarised over the seeds it finished in every cell (so that
    # every method x lr averages the same runs); if no seed is whole, over the seeds that
    # finished the most cells (the one in progress), not a mix of seed counts per cell.
    cells = {s: sum(run_key(m, f"lr={lr}", f"seed={s}") in runs for m in methods for lr in lrs)
             for s in seeds}
    whole = [s for s in seeds if cells[s] == len(methods) * len(lrs)]
    most = max(cells.values(), default=0)
    used = whole or [s for s in seeds if cells[s] == most]
    table: dict[str, Any] = {}
    for label in methods:
        per_lr = {}
        for lr in lrs:
            recs = [runs[k] for s in used if (k := run_key(label, f"lr={lr}", f"seed={s}"))
                    in runs]
            curves = [[r.get("val_loss") for r in rec["history"] if r.get("epoch", 0) >= 1]
                      for rec in recs]
            mean_curve = _mean_curve(curves)
            finite = [v for v in mean_curve if v is not None]
            per_lr[str(lr)] = {
                "best_val_loss": min(finite) if finite else None,
                "best_val_loss_seeds": mean_std(r.get("min_val_loss") for r in recs),
                "final_test_acc": mean_std(r.get("final_test_acc") for r in recs),
                "best_test_acc": mean_std(r.get("best_test_acc") for r in recs),
                "diverged": sum(r["status"] == "diverged" for r in recs), "runs": len(recs)}
        ok = {lr: v for lr, v in per_lr.items() if v["best_val_loss"] is not None}
        best = min(ok, key=lambda lr: ok[lr]["best_val_loss"]) if ok else None
        table[label] = {"per_lr": per_lr, "best_lr": best,
                        "best_val_loss": ok[best]["best_val_loss"] if best else None}
    n_units = len(lrs) * len(methods) * len(seeds)
    return {"table": table, "widths": widths, "data": data.describe(), "seeds_used": used,
            "complete": len(runs) == n_units,
            "signal_at_init": _signal_at_init(data, widths, seeds[:5])}


def _signal_at_init(data: Any, widths: list[int], seeds: list[int],
                    n: int = 1000) -> dict[str, Any]:
    """Per layer, the RMS of the pre-activations and the norm of the loss gradient at the
    starting point, from PyTorch's init and with the fixed weights := 1 (what Fixed SGD,
    Fixed Adam and their ``*_ones`` controls start from), averaged over ``seeds`` on the
    first ``n`` training images: why the value 1 matters (thesis section 4.2.1)."""
    from ..optim import init_skeleton

    x, y = data.train_x[:n], data.train_y[:n]
    out: dict[str, Any] = {"images": int(len(x)), "seeds": seeds}
    for name, ones in (("pytorch_init", False), ("fixed_weights_ones", True)):
        rms, grads = [], []
        for seed in seeds:
            torch.manual_seed(seed)
            model = MLP(widths, bias=False)
            if ones:
                init_skeleton(model, tuple(data.input_shape), value=1.0, roots=False)
            linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
            seen: list[float] = []

            def record(_m: Any, _i: Any, out: torch.Tensor, seen: list[float] = seen) -> None:
                seen.append(float(out.detach().pow(2).mean().sqrt()))

            hooks = [m.register_forward_hook(record) for m in linears]
            torch.nn.functional.cross_entropy(model(x), y).backward()
            for h in hooks:
                h.remove()
            rms.append(seen)
            grads.append([float(g.norm()) if (g := m.weight.grad) is not None else 0.0
                          for m in linears])
        out[name] = {"preactivation_rms": np.mean(rms, axis=0).round(6).tolist(),
                     "grad_norm": np.mean(grads, axis=0).round(6).tolist()}
    return out


def _mean_curve(curves: list[list[Any]]) -> list[float | None]:
    if not curves:
        return []
    n = max(len(c) for c in curves)
    out: list[float | None] = []
    for i in range(n):
        vals = [c[i] for c in curves if i < len(c)]
        if any(v is None or not math.isfinite(v) for v in vals) or len(vals) < len(curves):
            out.append(None)
        else:
            out.append(float(np.mean(vals)))
    return out


def run_thesis_mnist(ctx: RunContext) -> dict[str, Any]:
    """Thesis chapter 4 on MNIST 784-64x4-10 without biases."""
    return _grid(ctx)


def run_thesis_cifar(ctx: RunContext) -> dict[str, Any]:
    """Thesis chapter 4 on CIFAR-10 3072-64x5-10 (or the configured substitute)."""
    return _grid(ctx)


def _curves_at(ax: Any, ctx: RunContext, seeds: list[int], label: str, lr: float,
               key: str = "val_loss", style: str = "-") -> None:
    curves = []
    for s in seeds:
        k = run_key(label, f"lr={lr}", f"seed={s}")
        rec = ctx.store.results(k).get(k)
        if rec is not None:
            curves.append([r.get(key) for r in rec["history"] if r.get("epoch", 0) >= 1])
    mc = _mean_curve(curves)
    if mc:
        ax.plot(range(1, len(mc) + 1), [np.nan if v is None else v for v in mc], style,
                color=COLORS.get(label), label=f"{LABELS.get(label, label)} (lr {lr:g})")


def _draw_grid(ctx: RunContext, summary: dict[str, Any], title: str) -> list[Path]:
    plt = pyplot()
    table = summary["table"]
    methods = [m for m in ctx.params["methods"] if m in table]
    lrs = [float(x) for x in ctx.params["lrs"]]
    seeds = [int(s) for s in summary.get("seeds_used", ctx.params["seeds"])]
    fig, axes = plt.subplots(2, 3, figsize=(16, 9))
    panels = [
        ("fig 4.1/4.4: best validation loss vs lr", methods),
        ("fig 4.2/4.5: validation loss at each method's best lr", methods),
        ("fig 4.6: fixed weights := 1 or not; := 1 without fixing",
         ["sgd", "weightfix_ones", "weightfix_not1", "sgd_ones", "weightfix",
          "adam", "weightfix_adam_ones", "adam_ones"]),
        ("fig 4.10: SGD vs G-SGD vs Fixed SGD (best lr)", ["sgd", "gsgd_ones", "weightfix_ones"]),
    ]
    ax = axes[0][0]
    for label in methods:
        ys = [table[label]["per_lr"][str(lr)]["best_val_loss"] for lr in lrs]
        ax.plot(lrs, [np.nan if y is None else y for y in ys], "o-", color=COLORS.get(label),
                label=LABELS.get(label, label))
    ax.set(xscale="log", yscale="log", xlabel="learning rate", ylabel="best validation loss",
           title=panels[0][0])
    _legend(ax, 7)
    for ax, (ttl, labels) in ((axes[0][1], panels[1]), (axes[0][2], panels[2]),
                              (axes[1][0], panels[3])):
        for label in labels:
            best = table.get(label, {}).get("best_lr")
            if best is not None:
                _curves_at(ax, ctx, seeds, label, float(best))
        ax.set(xlabel="epoch", ylabel="validation loss", yscale="log", title=ttl)
        _legend(ax, 7)
    small = [lr for lr in lrs if lr <= 1e-3]
    large = [lr for lr in lrs if lr >= 1e-2]
    for ax, group, ttl in ((axes[1][1], large[-1:] if large else [], "large lr"),
                           (axes[1][2], small[:1] if small else [], "small lr")):
        for lr in group:
            for label in methods:
                _curves_at(ax, ctx, seeds, label, lr)
        ax.set(xlabel="epoch", ylabel="validation loss", yscale="log",
               title=f"fig 4.3: {ttl} {group}")
        _legend(ax, 7)
    partial = "" if summary.get("complete", True) else \
        f"; seeds {seeds} of {len(ctx.params['seeds'])}"
    fig.suptitle(f"{title} ({ctx.scale} scale; {summary.get('data', '')}; "
                 f"widths {summary.get('widths')}{partial})", fontsize=10)
    return [save(fig, ctx.figure_path(), note=ctx.unfinished)]


def draw_thesis_mnist(ctx: RunContext, summary: dict[str, Any]) -> list[Path]:
    """Figures 4.1-4.6 and 4.10 of the thesis as six panels."""
    return _draw_grid(ctx, summary, "Thesis ch. 4, MNIST 784-64x4-10 (no bias)")


def draw_thesis_cifar(ctx: RunContext, summary: dict[str, Any]) -> list[Path]:
    """Figures 4.1, 4.2, 4.4, 4.5 (CIFAR panels) of the thesis."""
    return _draw_grid(ctx, summary, "Thesis ch. 4, CIFAR-10 net 3072-64x5-10 (no bias)")


# ------------------------------------------------------------------------ fig 4.7 grid


def run_thesis_fixed_value(ctx: RunContext) -> dict[str, Any]:
    """Fig 4.7: median validation loss after ``epochs`` over lr x fixed value ``b``."""
    p = ctx.params
    data = get_data(p["data"])
    ctx.log(data.describe())
    widths = _widths(p, int(np.prod(data.input_shape)))
    lrs, values = [float(x) for x in p["lrs"]], [float(b) for b in p["values"]]
    seeds = [int(s) for s in p["seeds"]]
    mode = str(p.get("mode", "overwrite"))

    def method_for(b: float) -> dict[str, Any]:
        if mode == "overwrite":  # the thesis: fixed weights set to b (function changes)
            return {"name": "weightfix", "init": "keep", "skeleton": {"value": b}}
        return {"name": "weightfix", "value": b}  # moved to +-b by a rescaling

    grid: list[list[float | None]] = []
    counts: list[list[int]] = []
    diverged = 0
    ctx.units_total = len(values) * len(lrs) * len(seeds)
    for b in values:
        row: list[float | None] = []
        counts.append([])
        for lr in lrs:
            finals = []
            for seed in seeds:
                def build() -> torch.nn.Module:
                    return MLP(widths, bias=False)
                rec = minimal_unit(ctx, run_key(f"b={b}", f"lr={lr}", f"seed={seed}"),
                                   {"data": p["data"], "widths": widths}, build_model=build,
                                   data=data, method=method_for(b),
                                   optimizer={"name": "sgd", "lr": lr},
                                   epochs=int(p["epochs"]),
                                   batch_size=int(p.get("batch_size", 64)), seed=seed,
                                   eval_splits=("val",))
                if rec is None:
                    continue
                last = rec["history"][-1]
                v = last.get("val_loss") if rec["status"] != "diverged" else None
                diverged += rec["status"] == "diverged"
                finals.append(math.inf if v is None else float(v))
            row.append(float(np.median(finals)) if finals else None)
            counts[-1].append(len(finals))
        grid.append(row)
    return {"values": values, "lrs": lrs, "median_val_loss": [[None if v is None or
                                                              not math.isfinite(v) else v
                                                              for v in r] for r in grid],
            "runs_per_cell": counts, "diverged_runs": diverged, "widths": widths,
            "data": data.describe()}


def draw_thesis_fixed_value(ctx: RunContext, summary: dict[str, Any]) -> list[Path]:
    """Heat map of the median validation loss, each cell labelled with it; diverged cells
    white ("-" where no run has finished yet), losses above ``10`` (far above chance) in
    one colour, so that an exploded run does not flatten the scale of the others."""
    plt = pyplot()
    z = np.array([[np.nan if v is None else v for v in r] for r in summary["median_val_loss"]],
                 dtype=float)
    cap = 10.0
    cmap = plt.get_cmap("viridis").with_extremes(over="darkred", bad="white")
    fig, ax = plt.subplots(figsize=(6.5, 5))
    finite = z[np.isfinite(z)]
    low = float(np.log10(finite.min())) if finite.size else 0.0
    vmin, vmax = min(low, math.log10(cap) - 1), math.log10(cap)
    im = ax.imshow(np.log10(z), origin="lower", aspect="auto", cmap=cmap, vmin=vmin,
                   vmax=vmax)
    counts = summary.get("runs_per_cell")
    for (i, j), v in np.ndenumerate(z):
        if np.isfinite(v):
            text = f"{v:.2g}" if v > cap else f"{v:.3f}"
            light = v <= cap and np.log10(v) > (vmin + vmax) / 2  # light colours: black text
        else:
            text = "-" if counts is not None and not counts[i][j] else "diverged"
            light = True
        ax.text(j, i, text, ha="center", va="center", fontsize=8,
                color="black" if light else "white")
    ax.set_xticks(range(len(summary["lrs"])), [f"{x:g}" for x in summary["lrs"]])
    ax.set_yticks(range(len(summary["values"])), [f"{x:g}" for x in summary["values"]])
    ax.set(xlabel="learning rate", ylabel="value b of the fixed weights",
           title=f"fig 4.7: median val loss after {ctx.params['epochs']} epochs "
                 f"({ctx.scale} scale)")
    fig.colorbar(im, ax=ax, extend="max",
                 label=f"log10 validation loss (white: diverged; dark red: above {cap:g})")
    return [save(fig, ctx.figure_path(), note=ctx.unfinished)]


# --------------------------------------------------------------------- loss surfaces


def run_thesis_surfaces(ctx: RunContext) -> dict[str, Any]:
    """The analytic examples; checks eq. (1.20) (gradient scaling under a rescaling)."""
    p = ctx.params
    x = float(p.get("x", 1.0))
    alphas = [float(a) for a in p.get("alphas", [0.5, 2.0, 10.0])]
    errs = []
    for a in alphas:
        w = torch.tensor([0.7, 1.3], dtype=torch.float64, requires_grad=True)
        loss = torch.sin(w[1] * torch.relu(w[0] * x))
        (g,) = torch.autograd.grad(loss, w)
        w2 = torch.tensor([0.7 * a, 1.3 / a], dtype=torch.float64, requires_grad=True)
        loss2 = torch.sin(w2[1] * torch.relu(w2[0] * x))
        (g2,) = torch.autograd.grad(loss2, w2)
        expected = torch.stack([g[0] / a, g[1] * a])
        errs.append(float(((g2 - expected).abs() / expected.abs()).max()))
        errs.append(abs(loss2.item() - loss.item()))
    return {"gradient_scaling_max_rel_error": max(errs), "alphas": alphas,
            "fixed_w1": [float(v) for v in p.get("fixed_w1", [1.0, 6.0, 10.0])]}


def draw_thesis_surfaces(ctx: RunContext, summary: dict[str, Any]) -> list[Path]:
    """Fig 1.5 (a: sin(relu(w)), b: sin(w2 relu(w1))), fig 1.6 (invariant lines and scaled
    gradients), fig 4.9 (sin(relu(w1 + w2)) and sin(w3 relu(w1 + w2)) at fixed w1)."""
    plt = pyplot()
    r = float(ctx.params.get("range", 6.0))
    n = int(ctx.params.get("grid", 200))
    g = np.linspace(-r, r, n)
    w1, w2 = np.meshgrid(g, g)
    fig, axes = plt.subplots(2, 4, figsize=(19, 8.5))
    axes[0][0].plot(g, np.sin(np.maximum(g, 0)))
    axes[0][0].set(xlabel="$w_1$", ylabel="loss", title="fig 1.5a: $\\sin(\\sigma(w_1))$")
    im = axes[0][1].contourf(w1, w2, np.sin(w2 * np.maximum(w1, 0)), 30, cmap="coolwarm")
    axes[0][1].set(xlabel="$w_1$", ylabel="$w_2$", title="fig 1.5b: $\\sin(w_2\\sigma(w_1))$")
    fig.colorbar(im, ax=axes[0][1])
    ax = axes[0][2]
    gp = np.linspace(0.2, r, n)
    a1, a2 = np.meshgrid(gp, gp)
    ax.contour(a1, a2, a1 * a2, levels=[0.5, 1, 2, 4, 8], colors="gray")
    pts = np.array([[0.5, 2.0], [1.0, 1.0], [2.0, 0.5], [4.0, 0.25], [0.25, 4.0]])
    for w_a, w_b in pts:
        c = np.cos(w_a * w_b)
        ax.arrow(w_a, w_b, -0.3 * c * w_b, -0.3 * c * w_a, head_width=0.08, color="tab:red")
    ax.set(xlabel="$w_1$", ylabel="$w_2$", xlim=(0, 5), ylim=(0, 5),
           title="fig 1.6: invariant lines $w_1 w_2$ = c, gradients")
    im = axes[0][3].contourf(w1, w2, np.sin(np.maximum(w1 + w2, 0)), 30, cmap="coolwarm")
    axes[0][3].set(xlabel="$w_1$", ylabel="$w_2$", title="fig 4.9a: $\\sin(\\sigma(w_1+w_2))$")
    for ax, fixed in zip(axes[1][:3], summary["fixed_w1"], strict=False):
        im = ax.contourf(w1, w2, np.sin(w2 * np.maximum(fixed + w1, 0)), 30, cmap="coolwarm")
        ax.set(xlabel="$w_2$", ylabel="$w_3$",
               title=f"fig 4.9: $\\sin(w_3\\sigma({fixed:g} + w_2))$, $w_1$ fixed")
    axes[1][3].axis("off")
    axes[1][3].text(0.0, 0.5, "eq. (1.20), autograd:\nmax relative error of the gradient\n"
                    f"scaling = {summary['gradient_scaling_max_rel_error']:.2e}", fontsize=11)
    fig.suptitle("Thesis figs 1.5, 1.6, 4.9: loss surfaces with L(y) = sin(y), x = 1")
    return [save(fig, ctx.figure_path(), note=ctx.unfinished)]


# ------------------------------------------------------------------------------ G-SGD


def run_gsgd_mnist(ctx: RunContext) -> dict[str, Any]:
    """G-SGD vs SGD on MNIST 784-64x4-10 without bias, lr 0.1, batch 64: test accuracy."""
    p = ctx.params
    labels = _labels(ctx)
    data = get_data(p["data"])
    ctx.log(data.describe())
    widths = _widths(p, int(np.prod(data.input_shape)))
    lr = float(p["lr"])
    seeds = [int(s) for s in p["seeds"]]
    out: dict[str, Any] = {"lr": lr, "widths": widths, "data": data.describe()}
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label in labels}
    ctx.units_total = len(seeds) * len(labels)
    for seed in seeds:  # seeds outermost: a partial run already compares every method
        for label in labels:
            rec = _train_one(ctx, data, label, lr, seed, widths, int(p["epochs"]))
            if rec is not None:
                runs[label].append(rec)
    for label, recs in runs.items():
        out[label] = {"final_test_acc": mean_std(r.get("final_test_acc") for r in recs),
                      "best_test_acc": mean_std(r.get("best_test_acc") for r in recs),
                      "final_train_loss": mean_std(r.get("final_train_loss") for r in recs),
                      "runs": len(recs)}
    out["complete"] = sum(len(r) for r in runs.values()) == len(seeds) * len(labels)
    return out


def draw_gsgd_mnist(ctx: RunContext, summary: dict[str, Any]) -> list[Path]:
    """Test accuracy against epochs, mean over seeds, with the published numbers."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    lr = float(ctx.params["lr"])
    seeds = [int(x) for x in ctx.params["seeds"]]
    for label in ctx.params["methods"]:
        _curves_at(axes[0], ctx, seeds, str(label), lr, key="test_acc")
        _curves_at(axes[1], ctx, seeds, str(label), lr, key="train_loss")
    axes[0].axhline(0.9764, ls=":", color=COLORS["gsgd"], label="G-SGD paper 97.64%")
    axes[0].axhline(0.9737, ls=":", color=COLORS["sgd"], label="SGD in the paper 97.37%")
    axes[0].set(xlabel="epoch", ylabel="test accuracy", ylim=(0.95, 0.99),
                title="test accuracy (mean over seeds)")
    _legend(axes[0], 7)
    axes[1].set(xlabel="epoch", ylabel="training loss", yscale="log", title="training loss")
    _legend(axes[1], 7)
    fig.suptitle(f"G-SGD claim: MNIST 784-64x4-10 no bias, lr {lr}, batch 64 "
                 f"({ctx.scale} scale)", fontsize=10)
    return [save(fig, ctx.figure_path(), note=ctx.unfinished)]
