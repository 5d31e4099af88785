"""Paper Fig 1 (section 2): one ReLU neuron with bias, ``f(x) = v relu(w x + b)``, trained by
full-batch gradient descent with a small learning rate from three initialisations, each as
drawn and after PathCond.

The path-lifting is ``phi = (w v, b v)``; on data where the neuron is active the square loss
depends on ``phi`` only, ``L(phi) = mean((phi_1 x + phi_2 - y)^2) / 2``, minimised at the
teacher ``phi*``. Gradient descent in parameter space moves ``phi`` along the path kernel
``K(theta) = dphi dphi^T``, which a rescaling changes; PathCond conditions it. The claims:
rescaled initialisations converge faster (left panel), and their lifted trajectories follow
the idealised gradient descent in lifted space more closely (middle panel).

Measured per run: the steps to bring the loss below ``tol`` times its initial value, and
the mean / max distance of the lifted trajectory to the ideal one (the path of gradient
descent on ``L(phi)`` from the same ``phi_0``; curves compared as sets, since the kernel also
changes the speed along them).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ._plot import legend as _legend
from ._plot import pyplot, save
from .registry import RunContext

__all__ = ["ToyNeuron", "draw_fig1", "run_fig1"]


class ToyNeuron(nn.Module):
    """``x -> v relu(w x + b)``: Linear(1, 1) with bias, ReLU, Linear(1, 1) without bias."""

    def __init__(self, w: float, b: float, v: float, dtype: torch.dtype = torch.float64
                 ) -> None:
        super().__init__()
        self.inp = nn.Linear(1, 1, dtype=dtype)
        self.relu = nn.ReLU()
        self.out = nn.Linear(1, 1, bias=False, dtype=dtype)
        with torch.no_grad():
            self.inp.weight.fill_(w)
            self.inp.bias.fill_(b)
            self.out.weight.fill_(v)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.out(self.relu(self.inp(x)))
        return out

    def theta(self) -> tuple[float, float, float]:
        """``(w, b, v)``."""
        return (float(self.inp.weight.detach()), float(self.inp.bias.detach()),
                float(self.out.weight.detach()))


def pathcond_init(w: float, b: float, v: float) -> tuple[tuple[float, float, float],
                                                            dict[str, Any]]:
    """PathCond applied to ``(w, b, v)`` by :func:`pathcond.rescale`."""
    from .. import rescale

    model = ToyNeuron(w, b, v)
    report = rescale(model, (1,))
    return model.theta(), {"u": float(report.log_scales[0]), "am_gm_before":
                           report.am_gm_before, "am_gm_after": report.am_gm_after,
                           "converged": report.converged}


def _gd(theta: tuple[float, float, float], x: np.ndarray, y: np.ndarray, lr: float,
        steps: int, record_every: int, stop: float = 0.0,
        record_dist: float = 0.005) -> dict[str, Any]:
    """Full-batch GD on ``(w, b, v)`` with the analytic gradient of the half mean square;
    stops early once the loss is below ``stop`` times the initial loss."""
    w, b, v = theta
    losses, phis, params = [], [], []
    loss0 = None
    last = (math.inf, math.inf)
    next_log = 1.0
    for t in range(steps + 1):
        pre = w * x + b
        act = pre > 0
        h = np.where(act, pre, 0.0)
        r = v * h - y
        loss = 0.5 * float(np.mean(r * r))
        loss0 = loss if loss0 is None else loss0
        done = t == steps or not math.isfinite(loss) or loss <= stop * loss0
        phi = (w * v, b * v)
        # Record regularly, at log-spaced steps (loss curves) and whenever phi moved by
        # more than record_dist (so that fast moves are sampled as finely as slow ones).
        moved = math.hypot(phi[0] - last[0], phi[1] - last[1]) > record_dist
        if t % record_every == 0 or done or moved or t >= next_log:
            losses.append((t, loss))
            phis.append(phi)
            params.append((w, b, v))
            last = phi
            while next_log <= t:
                next_log *= 1.05
        if done:
            break
        gv = float(np.mean(r * h))
        gpre = r * v * act
        gw = float(np.mean(gpre * x))
        gb = float(np.mean(gpre))
        w, b, v = w - lr * gw, b - lr * gb, v - lr * gv
    return {"losses": losses, "phi": phis, "theta": params}


def _ideal(phi0: Sequence[float], x: np.ndarray, y: np.ndarray, lr: float,
           steps: int, stop: float = 1e-12) -> list[tuple[float, float]]:
    """GD on ``L(phi)`` in lifted space (the ideal, rescaling-invariant trajectory), every
    10th point, until the loss is below ``stop`` times the initial loss."""
    p = np.array(phi0, dtype=float)
    out = [(float(p[0]), float(p[1]))]
    loss0 = None
    for t in range(steps):
        r = p[0] * x + p[1] - y
        loss = 0.5 * float(np.mean(r * r))
        loss0 = loss if loss0 is None else loss0
        if loss <= stop * loss0:
            break
        p = p - lr * np.array([np.mean(r * x), np.mean(r)])
        if t % 10 == 9 or math.hypot(p[0] - out[-1][0], p[1] - out[-1][1]) > 0.002:
            out.append((float(p[0]), float(p[1])))
    out.append((float(p[0]), float(p[1])))
    return out


def _curve_distance(points: Sequence[Any], curve: Sequence[Any]) -> tuple[float, float]:
    """Mean and max distance of ``points`` to the polyline ``curve``."""
    c = np.asarray(curve, dtype=float)
    if len(c) < 2:
        c = np.vstack([c, c])
    a, bvec = c[:-1], c[1:] - c[:-1]
    seg2 = np.maximum((bvec * bvec).sum(1), 1e-300)
    dists = []
    for p in np.asarray(points, dtype=float):
        s = np.clip(((p - a) * bvec).sum(1) / seg2, 0.0, 1.0)
        proj = a + s[:, None] * bvec
        dists.append(float(np.sqrt(((proj - p) ** 2).sum(1)).min()))
    return float(np.mean(dists)), float(np.max(dists))


def _steps_to(losses: Sequence[Any], threshold: float) -> int | None:
    for t, loss in losses:
        if loss <= threshold:
            return int(t)
    return None


def _one(theta: tuple[float, float, float], x: np.ndarray, y: np.ndarray, lr: float,
         steps: int, every: int, tol: float, stop: float,
         ideal: Sequence[Any]) -> dict[str, Any]:
    out = _gd(theta, x, y, lr, steps, every, stop)
    loss0 = out["losses"][0][1]
    mean_d, max_d = _curve_distance(out["phi"], ideal)
    out.update({"steps_to_tol": _steps_to(out["losses"], tol * loss0),
                "final_loss": out["losses"][-1][1], "initial_loss": loss0,
                "dist_to_ideal_mean": mean_d, "dist_to_ideal_max": max_d})
    return out


def random_inits(count: int, spread: float, seed: int) -> list[tuple[float, float, float]]:
    """``(w, b, v) = (e^s a_1, e^s a_2, e^-s a_3)``: ``s ~ U(-spread, spread)`` sets the
    imbalance (``s > 0``: large incoming, small outgoing weights), ``a_1, a_3 ~ U(0.2, 1.5)``,
    ``a_2 ~ U(0, 1)`` (so the neuron is active on inputs > 0)."""
    rng = np.random.default_rng([seed, 1])
    out = []
    for _ in range(count):
        s = rng.uniform(-spread, spread)
        a1, a2, a3 = rng.uniform(0.2, 1.5), rng.uniform(0.0, 1.0), rng.uniform(0.2, 1.5)
        out.append((math.exp(s) * a1, math.exp(s) * a2, math.exp(-s) * a3))
    return out


def run_fig1(ctx: RunContext) -> dict[str, Any]:
    """Three initialisations x {as drawn, PathCond}: GD trajectories and their metrics;
    then many random initialisations for the statistics."""
    p = ctx.params
    seed = int(p.get("seed", 0))
    rng = np.random.default_rng(seed)
    n = int(p.get("n", 32))
    x = rng.uniform(float(p.get("x_low", 0.5)), float(p.get("x_high", 2.0)), size=n)
    target = [float(t) for t in p.get("target", [1.0, 0.5])]
    y = target[0] * x + target[1]
    lr, steps = float(p["lr"]), int(p["steps"])
    every = max(1, steps // int(p.get("points", 400)))
    tol, stop = float(p.get("tol", 1e-4)), float(p.get("stop", 1e-12))
    common = {"lr": lr, "n": n, "target": target, "seed": seed, "tol": tol, "sampling": 2}
    runs: dict[str, Any] = {}
    for i, init in enumerate(p["inits"]):
        w, b, v = (float(t) for t in init)
        rescaled, info = pathcond_init(w, b, v)
        phi0 = (w * v, b * v)
        ideal = ctx.store.run(f"init{i}/ideal", {**common, "phi0": phi0, "steps": steps * 4},
                              functools.partial(_ideal, phi0, x, y, lr, steps * 4))
        for variant, theta in (("original", (w, b, v)), ("pathcond", rescaled)):
            key = f"init{i}/{variant}"
            spec = {**common, "theta": theta, "steps": steps, "every": every, "stop": stop}
            rec = ctx.store.run(key, spec, functools.partial(
                _one, theta, x, y, lr, steps, every, tol, stop, ideal))
            runs[key] = {k: rec[k] for k in ("steps_to_tol", "final_loss", "initial_loss",
                                             "dist_to_ideal_mean", "dist_to_ideal_max")}
            runs[key]["theta0"] = list(theta)
            if variant == "pathcond":
                runs[key]["pathcond"] = info
        ctx.log(f"init {i}: as drawn {runs[f'init{i}/original']['steps_to_tol']} steps, "
                f"PathCond {runs[f'init{i}/pathcond']['steps_to_tol']} steps to tol")
    rand = p.get("random") or {}
    count = int(rand.get("count", 0))
    rsteps = int(rand.get("max_steps", steps))
    stats: list[dict[str, Any]] = []
    for j, theta in enumerate(random_inits(count, float(rand.get("spread", 2.5)), seed)):
        s_imb = math.log(math.hypot(theta[0], theta[1]) / abs(theta[2])) / 2
        spec = {**common, "theta": theta, "max_steps": rsteps}

        def compute(theta: tuple[float, float, float] = theta) -> dict[str, Any]:
            rescaled, _ = pathcond_init(*theta)
            ideal = _ideal((theta[0] * theta[2], theta[1] * theta[2]), x, y, lr, rsteps * 4,
                           stop=tol / 10)
            out: dict[str, Any] = {}
            for variant, th in (("original", theta), ("pathcond", rescaled)):
                rec = _one(th, x, y, lr, rsteps, 20, tol, tol, ideal)
                out[variant] = {"steps": rec["steps_to_tol"], "dist": rec["dist_to_ideal_mean"]}
            return out

        rec = ctx.store.run(f"random/{j}", spec, compute)
        stats.append({"imbalance": s_imb, **rec})
        if j % 25 == 24:
            ctx.log(f"random inits: {j + 1}/{count}")
    return {"runs": runs, "random": _random_summary(stats, rsteps), "x": x.tolist(),
            "target": target}


def _random_summary(stats: list[dict[str, Any]], max_steps: int) -> dict[str, Any]:
    """Fractions of random inits where PathCond is faster / closer to the ideal trajectory,
    overall and split by the sign of the imbalance (runs not converged count as
    ``max_steps + 1``)."""
    def part(rows: list[dict[str, Any]]) -> dict[str, Any]:
        if not rows:
            return {"n": 0}
        def steps(r: dict[str, Any], v: str) -> int:
            s = r[v]["steps"]
            return max_steps + 1 if s is None else int(s)
        ratios = [steps(r, "original") / max(steps(r, "pathcond"), 1) for r in rows]
        return {"n": len(rows),
                "faster": sum(steps(r, "pathcond") < steps(r, "original") for r in rows)
                / len(rows),
                "closer": sum(r["pathcond"]["dist"] <= r["original"]["dist"] for r in rows)
                / len(rows),
                "median_speedup": float(np.median(ratios)),
                "not_converged_original": sum(r["original"]["steps"] is None for r in rows),
                "not_converged_pathcond": sum(r["pathcond"]["steps"] is None for r in rows)}

    return {"all": part(stats),
            "large_incoming": part([r for r in stats if r["imbalance"] > 0.5]),
            "large_outgoing": part([r for r in stats if r["imbalance"] < -0.5]),
            "near_balanced": part([r for r in stats if abs(r["imbalance"]) <= 0.5]),
            "points": [(r["imbalance"], r["original"]["steps"], r["pathcond"]["steps"])
                       for r in stats]}


def draw_fig1(ctx: RunContext, summary: dict[str, Any]) -> list[Path]:
    """Loss vs step, lifted trajectories vs the ideal one, parameter-space trajectories, and
    the speed-up over random initialisations against their imbalance."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(20, 4.4))
    colors = ["tab:blue", "tab:red", "tab:green", "tab:purple", "tab:orange"]
    target = summary["target"]
    for i in range(len(ctx.params["inits"])):
        c = colors[i % len(colors)]
        ideal = ctx.store.results(f"init{i}/ideal").get(f"init{i}/ideal")
        for variant, style in (("original", "--"), ("pathcond", "-")):
            rec = ctx.store.results(f"init{i}/{variant}").get(f"init{i}/{variant}")
            if rec is None:
                continue
            t, loss = zip(*rec["losses"], strict=True)
            label = f"init {i + 1} {'PathCond' if variant == 'pathcond' else 'as drawn'}"
            axes[0].loglog([s + 1 for s in t], np.maximum(loss, 1e-30), style, color=c,
                           label=label)
            phi = np.asarray(rec["phi"])
            axes[1].plot(phi[:, 0], phi[:, 1], style, color=c,
                         lw=2.2 if variant == "pathcond" else 1.2)
            th = np.asarray(rec["theta"])
            axes[2].plot(np.hypot(th[:, 0], th[:, 1]), np.abs(th[:, 2]), style, color=c)
        if ideal is not None:
            ph = np.asarray(ideal)
            axes[1].plot(ph[:, 0], ph[:, 1], ":", color="k", lw=1)
    axes[1].plot(*target, "k*", ms=12, label="teacher $\\varphi^*$")
    axes[1].plot([], [], ":", color="k", label="GD in lifted space (ideal)")
    axes[0].set(xlabel="GD step + 1", ylabel="training loss", ylim=(1e-14, None),
                title="loss (dashed: as drawn, solid: PathCond)")
    _legend(axes[0], 7)
    axes[1].set(xlabel="$\\varphi_1 = wv$", ylabel="$\\varphi_2 = bv$",
                title="trajectories in lifted space")
    _legend(axes[1], 7)
    axes[2].set(xlabel="$\\|(w, b)\\|$ (incoming)", ylabel="$|v|$ (outgoing)",
                title="trajectories in parameter space", xscale="log", yscale="log")
    rand = summary.get("random", {})
    pts = rand.get("points", [])
    if pts:
        cap = int(ctx.params.get("random", {}).get("max_steps", ctx.params["steps"])) + 1
        imb = [q[0] for q in pts]
        ratio = [(q[1] or cap) / max(q[2] or cap, 1) for q in pts]
        axes[3].scatter(imb, ratio, s=10, c=["tab:red" if r > 1 else "tab:blue"
                                            for r in ratio])
        axes[3].axhline(1.0, color="k", lw=0.8)
        axes[3].set(yscale="log", xlabel="imbalance $\\log(\\|(w,b)\\| / |v|) / 2$",
                    ylabel="steps as drawn / steps after PathCond",
                    title=f"{len(pts)} random inits (>1: PathCond faster)")
    else:
        axes[3].axis("off")
    fig.suptitle(f"Fig 1 toy: one ReLU neuron, GD lr {ctx.params['lr']} ({ctx.scale} scale)")
    return [save(fig, ctx.figure_path(), note=ctx.unfinished)]
