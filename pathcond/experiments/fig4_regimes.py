"""Paper Fig 4 (section 5.3, Appendix J.6): favourable regimes of PathCond at initialisation.

Networks of fixed depth (8 hidden layers) and mean width 32: the 256 hidden neurons are
spread over the layers by proportions drawn from a symmetric Dirichlet of concentration
``alpha`` (each layer gets one neuron, the rest by the largest-remainder method), from
near-uniform (large ``alpha``) to very irregular (small ``alpha``). Weights and biases are
drawn ``N(0, kappa / fan_in)``, with a small and a large ``kappa`` (and Kaiming's 2 for
reference). For each network: the width ratio ``max / min`` of the hidden widths and
``||u||_inf``, the largest log-rescaling PathCond applies (:func:`pathcond.rescale`,
solved to convergence).

Claims: ``||u||_inf`` grows with the width ratio (strong correlation), and small-variance
initialisations need larger rescalings than large-variance ones.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..models import MLP
from ._plot import legend as _legend
from ._plot import mean_std, pyplot, save, spearman
from ._train import pathcond_report
from .registry import RunContext

__all__ = ["dirichlet_widths", "draw_fig4", "run_fig4"]


def dirichlet_widths(depth: int, mean_width: int, alpha: float,
                     rng: np.random.Generator) -> list[int]:
    """Hidden widths summing to ``depth * mean_width``, each at least 1, proportional to a
    symmetric Dirichlet(``alpha``) draw (largest-remainder rounding)."""
    total = depth * mean_width
    p = rng.dirichlet([alpha] * depth)
    free = total - depth
    raw = p * free
    base = np.floor(raw).astype(int)
    rest = free - int(base.sum())
    order = np.argsort(-(raw - base), kind="stable")
    base[order[:rest]] += 1
    return [int(w) + 1 for w in base]


def _network(widths: list[int], kappa: float, seed: int) -> MLP:
    torch.manual_seed(seed)
    model = MLP(widths, bias=True, output_bias=False)
    with torch.no_grad():
        for layer in model.layers:
            if isinstance(layer, torch.nn.Linear):
                std = math.sqrt(kappa / layer.in_features)
                layer.weight.normal_(0.0, std)
                if layer.bias is not None:
                    layer.bias.normal_(0.0, std)
    return model


def _report(widths: list[int], kappa: float, seed: int, solver: str) -> dict[str, Any]:
    return pathcond_report(_network(widths, kappa, seed), (widths[0],), solver=solver)


def run_fig4(ctx: RunContext) -> dict[str, Any]:
    """Every repeat x concentration x variance: sample widths, initialise, run PathCond."""
    p = ctx.params
    depth, mean_w = int(p["depth"]), int(p["mean_width"])
    n_in, n_out = int(p.get("in_features", mean_w)), int(p.get("out_features", mean_w))
    conc = np.logspace(math.log10(float(p["alpha_min"])), math.log10(float(p["alpha_max"])),
                       int(p["concentrations"])).tolist()
    variances: dict[str, float] = {str(k): float(v) for k, v in p["variances"].items()}
    seed = int(p.get("seed", 0))
    solver = str(p.get("solver", "block"))
    rows: list[dict[str, Any]] = []
    total = int(p["repeats"]) * len(conc)
    done = 0
    for r in range(int(p["repeats"])):
        for ci, alpha in enumerate(conc):
            rng = np.random.default_rng([seed, r, ci])
            hidden = dirichlet_widths(depth, mean_w, alpha, rng)
            widths = [n_in, *hidden, n_out]
            for vname, kappa in variances.items():
                key = f"r{r}/c{ci}/{vname}"
                net_seed = seed * 1_000_003 + r * 1_009 + ci
                spec = {"widths": widths, "kappa": kappa, "seed": net_seed, "alpha": alpha,
                        "solver": solver}
                rec = ctx.store.run(key, spec, functools.partial(
                    _report, widths, kappa, net_seed, solver))
                rows.append({"repeat": r, "alpha": alpha, "variance": vname, "kappa": kappa,
                             "ratio": max(hidden) / min(hidden), "u_inf": rec.get("u_inf"),
                             "am_gm_before": rec.get("am_gm_before"),
                             "converged": rec.get("converged")})
            done += 1
            if done % 20 == 0 or done == total:
                ctx.log(f"{done}/{total} architectures")
    per_var: dict[str, Any] = {}
    for vname in variances:
        sub = [x for x in rows if x["variance"] == vname and x["u_inf"] is not None]
        per_var[vname] = {
            "kappa": variances[vname], "n": len(sub),
            "spearman_ratio_u": spearman([math.log(x["ratio"]) for x in sub],
                                         [x["u_inf"] for x in sub]),
            "u_inf": mean_std(x["u_inf"] for x in sub),
            "u_inf_median": float(np.median([x["u_inf"] for x in sub])) if sub else None,
            "u_inf_regular": mean_std(x["u_inf"] for x in sub if x["ratio"] <= 1.5),
            "u_inf_irregular": mean_std(x["u_inf"] for x in sub if x["ratio"] >= 10),
            "not_converged": sum(1 for x in sub if not x["converged"]),
        }
    names = list(variances)
    paired = None
    if len(names) >= 2:
        lo = min(names, key=lambda n: variances[n])
        hi = max(names, key=lambda n: variances[n])
        by = {(x["repeat"], x["alpha"], x["variance"]): x["u_inf"] for x in rows}
        pairs = [(by[(x["repeat"], x["alpha"], lo)], by[(x["repeat"], x["alpha"], hi)])
                 for x in rows if x["variance"] == lo
                 and by.get((x["repeat"], x["alpha"], hi)) is not None and x["u_inf"] is not None]
        paired = {"small": lo, "large": hi, "n": len(pairs),
                  "small_larger_fraction": sum(a > b for a, b in pairs) / len(pairs)
                  if pairs else None}
    return {"per_variance": per_var, "paired": paired, "concentrations": conc,
            "points": [[x["variance"], x["alpha"], x["ratio"], x["u_inf"]] for x in rows]}


def draw_fig4(ctx: RunContext, summary: dict[str, Any]) -> list[Path]:
    """Width ratio vs ``||u||_inf`` (one colour per variance), and ``||u||_inf`` vs alpha."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    colors = ["tab:red", "tab:gray", "tab:blue", "tab:green", "tab:purple"]
    variances = ctx.params["variances"]
    pts = summary["points"]
    for i, (vname, kappa) in enumerate(variances.items()):
        sub = [q for q in pts if q[0] == vname and q[3] is not None]
        if not sub:
            continue
        rho = summary["per_variance"][vname]["spearman_ratio_u"]
        label = f"{vname} ($\\kappa$={kappa}), Spearman {rho:.2f}" if rho is not None else \
            f"{vname} ($\\kappa$={kappa})"
        axes[0].scatter([q[2] for q in sub], [q[3] for q in sub], s=8, alpha=0.6,
                        color=colors[i % len(colors)], label=label)
        alphas = sorted({q[1] for q in sub})
        med = [float(np.median([q[3] for q in sub if q[1] == a])) for a in alphas]
        q1 = [float(np.percentile([q[3] for q in sub if q[1] == a], 25)) for a in alphas]
        q3 = [float(np.percentile([q[3] for q in sub if q[1] == a], 75)) for a in alphas]
        axes[1].plot(alphas, med, "-o", ms=3, color=colors[i % len(colors)], label=vname)
        axes[1].fill_between(alphas, q1, q3, color=colors[i % len(colors)], alpha=0.2)
    axes[0].set(xscale="log", xlabel="width ratio max/min of hidden layers",
                ylabel="$\\|u\\|_\\infty$ (PathCond log-rescaling)",
                title="rescaling size vs width irregularity")
    _legend(axes[0], 8)
    axes[1].set(xscale="log", xlabel="Dirichlet concentration $\\alpha$",
                ylabel="$\\|u\\|_\\infty$ (median, quartiles)",
                title="rescaling size vs concentration")
    _legend(axes[1], 8)
    p = ctx.params
    fig.suptitle(f"Fig 4: depth {p['depth']}, mean width {p['mean_width']}, "
                 f"{p['repeats']} repeats x {p['concentrations']} concentrations "
                 f"({ctx.scale} scale)")
    return [save(fig, ctx.figure_path(), note=ctx.unfinished)]
