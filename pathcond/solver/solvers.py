"""Exact minimisation of the PathCond criterion (SPEC section 4).

* ``block``: groups sharing no parameter are updated together. Given the new total ``S'``,
  each ``w_h = exp(2 delta_h)`` solves ``G Bo_h w^2 + a_h S' w - G A_h = 0`` and ``S'`` solves
  the monotone one-dimensional equation ``S' = C + sum_h (A_h / w_h + Bo_h w_h)``: one sweep
  is a few vectorised passes over the magnitudes, on any device.
* ``coordinate``: the exact coordinate step of Lemma 4.1, one group at a time with ``S`` kept
  incrementally, ``(G + a) Bo w^2 + a C w - (G - a) A = 0``; the CPU reference.

Both stop when the last sweep's decrease of ``F`` is at most ``tol`` times the decrease so far
(or when no log-scale moved by more than ``step_tol``), and report whether that happened.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .coloring import group_blocks
from .problem import Evaluation, RescalingProblem


@dataclass(frozen=True)
class SolveResult:
    """Log-scales ``u`` and how the solver got there."""

    log_scales: torch.Tensor
    history: tuple[float, ...]  # F / G after each sweep, history[0] at u = 0
    sweeps: int
    converged: bool
    max_step: float  # largest |delta u_h| of the last sweep
    seconds: float


def _positive_root(quad: torch.Tensor, lin: torch.Tensor, const: torch.Tensor) -> torch.Tensor:
    """Positive root of ``quad w^2 + lin w - const = 0`` (``quad, const > 0``), in the form
    that avoids cancellation for either sign of ``lin``."""
    disc = torch.sqrt(lin * lin + 4.0 * quad * const)
    return torch.where(lin >= 0, 2.0 * const / (lin + disc), (disc - lin) / (2.0 * quad))


def _scalar_root(quad: float, lin: float, const: float) -> float:
    disc = math.sqrt(lin * lin + 4.0 * quad * const)
    return 2.0 * const / (lin + disc) if lin >= 0 else (disc - lin) / (2.0 * quad)


def _block_step(incoming: torch.Tensor, outgoing: torch.Tensor, imbalance: torch.Tensor,
                rest: float, total: float, g: float) -> tuple[torch.Tensor, float]:
    """Exact minimiser of F over the groups of one block: returns ``w = exp(2 delta)`` and the
    new total ``S'``. ``h(S) = C + sum(A/w + Bo w) - S`` is strictly decreasing
    (``h' = sum a^2 S / (G disc) - 1 < 0``), so a safeguarded Newton iteration finds its root."""

    def w_of(s: float) -> torch.Tensor:
        return _positive_root(g * outgoing, imbalance * s, g * incoming)

    def residual(s: float) -> tuple[float, float, torch.Tensor]:
        w = w_of(s)
        value = rest + float((incoming / w + outgoing * w).sum()) - s
        disc = torch.sqrt((imbalance * s) ** 2 + 4.0 * g * g * incoming * outgoing)
        slope = float((imbalance * imbalance * s / (g * disc)).sum()) - 1.0
        return value, slope, w

    lo, hi = 0.0, math.inf
    s = total
    for _ in range(200):
        value, slope, w = residual(s)
        if value > 0:
            lo = s
        else:
            hi = s
        if abs(value) <= 1e-15 * s or (math.isfinite(hi) and hi - lo <= 1e-15 * hi):
            return w, s
        step = s - value / slope
        if not lo < step < hi:
            step = 0.5 * (lo + hi) if math.isfinite(hi) else 2.0 * s
        s = step
    return w_of(s), s


def _end_sweep(history: list[float], value: float, sweep: int, max_step: float,
               tol: float | None, step_tol: float | None,
               callback: Callable[[int, float], None] | None) -> bool:
    """Record the criterion ``F / G`` after a sweep; True when converged: the sweep's
    decrease is at most ``tol`` times the decrease so far, or no step exceeded ``step_tol``."""
    history.append(value)
    if callback is not None:
        callback(sweep, value)
    by_value = tol is not None and history[-2] - history[-1] <= tol * (history[0] - history[-1])
    return by_value or (step_tol is not None and max_step <= step_tol)


def solve_block(problem: RescalingProblem, *, tol: float | None, step_tol: float | None,
                max_sweeps: int, callback: Callable[[int, float], None] | None = None
                ) -> SolveResult:
    """Block-coordinate minimisation of ``F`` (SPEC section 4, block step)."""
    start = time.perf_counter()
    g = float(problem.num_parameters)
    alive = ~problem.dead
    blocks = [b.to(problem.device) for b in group_blocks(problem.graph)]
    blocks = [b[alive[b]] for b in blocks]
    blocks = [b for b in blocks if b.numel() > 0]
    u = torch.zeros(problem.num_groups, dtype=problem.dtype, device=problem.device)
    value, _ = problem.criterion(u)
    history = [float(value) / g]
    converged, max_step, sweeps = False, 0.0, 0
    for sweeps in range(1, max_sweeps + 1):
        max_step = 0.0
        total = 0.0
        for block in blocks:
            sums = problem.group_sums(u)
            a_in, a_out = sums.incoming[block], sums.outgoing[block]
            total = float(sums.total)
            rest = total - float((a_in + a_out).sum())
            w, total = _block_step(a_in, a_out, problem.imbalance[block], rest, total, g)
            delta = 0.5 * torch.log(w)
            u[block] += delta
            max_step = max(max_step, float(delta.abs().max()))
        if not blocks:
            total = float(problem.group_sums(u).total)
        after = math.log(total) + 2.0 * float((problem.imbalance * u).sum()) / g \
            if total > 0 else math.nan
        if not (math.isfinite(after) and math.isfinite(max_step)):
            break  # left float64's range: the caller sees non-finite log-scales
        if _end_sweep(history, after, sweeps, max_step, tol, step_tol, callback):
            converged = True
            break
    return SolveResult(u, tuple(history), sweeps, converged, max_step,
                       time.perf_counter() - start)


def _conjugate_gradient(apply: Callable[[torch.Tensor], torch.Tensor], rhs: torch.Tensor,
                        precondition: Callable[[torch.Tensor], torch.Tensor], rtol: float,
                        max_iter: int) -> torch.Tensor:
    """Preconditioned conjugate gradient for ``apply(x) = rhs`` (symmetric PSD ``apply``,
    symmetric positive definite ``precondition``, applied as ``z = P^-1 r``)."""
    x = torch.zeros_like(rhs)
    r = rhs.clone()
    z = precondition(r)
    p = z.clone()
    rz = float(r @ z)
    target = rtol * float(rhs.norm())
    for _ in range(max_iter):
        if float(r.norm()) <= target:
            break
        ap = apply(p)
        curvature = float(p @ ap)
        if curvature <= 0:
            break
        alpha = rz / curvature
        x += alpha * p
        r -= alpha * ap
        z = precondition(r)
        rz_new = float(r @ z)
        p = z + (rz_new / rz) * p
        rz = rz_new
    return x


def _two_level(diagonal: torch.Tensor, coarse: torch.Tensor, aggregates: torch.Tensor,
               alive: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """Additive two-level preconditioner ``P^-1 = D^-1 + R^T (R H R^T)^-1 R``: Jacobi for
    the fine groups plus an exact solve on the aggregates (one per producing layer), which
    removes the slow layer-wide modes of deep networks. Jacobi alone where the coarse matrix
    is not numerically positive definite."""
    k = coarse.shape[0]
    if k == 0:
        return lambda r: r / diagonal
    jitter = 1e-12 * float(coarse.diagonal().abs().max())
    factor, info = torch.linalg.cholesky_ex(
        coarse + jitter * torch.eye(k, dtype=coarse.dtype, device=coarse.device))
    if int(info) != 0 or not bool(torch.isfinite(factor).all()):
        return lambda r: r / diagonal
    index = aggregates[:-1]

    def apply(r: torch.Tensor) -> torch.Tensor:
        restricted = torch.zeros(k + 1, dtype=r.dtype, device=r.device)
        restricted.index_add_(0, index, r)
        solved = torch.cholesky_solve(restricted[:k].unsqueeze(1), factor).squeeze(1)
        return r / diagonal + torch.cat([solved, solved.new_zeros(1)])[index] * alive

    return apply


def _armijo(problem: RescalingProblem, u: torch.Tensor, direction: torch.Tensor, slope: float,
            value: float) -> tuple[float, torch.Tensor, Evaluation] | None:
    """Backtracking along a descent ``direction``: the first step (1, 1/2, ...) with a
    sufficient decrease of ``F``, and the evaluation there; None if the direction is not
    finite, not a descent direction, or gives no decrease down to a step of 1e-12."""
    if not (math.isfinite(slope) and slope < 0 and bool(torch.isfinite(direction).all())):
        return None
    step = 1.0
    while step >= 1e-12:
        trial = problem.evaluate(u + step * direction)
        if math.isfinite(trial.value) and trial.value <= value + 1e-4 * step * slope:
            return step, direction, trial
        step *= 0.5
    return None


#: Largest change of a log-scale in one Newton iteration (a factor e^20 on a magnitude): on
#: badly scaled networks the Hessian's diagonal spans hundreds of orders of magnitude, and an
#: uncapped step overflows every trial point of the line search.
MAX_NEWTON_STEP = 10.0


def _capped(direction: torch.Tensor) -> torch.Tensor:
    """``direction`` shortened so that no entry exceeds :data:`MAX_NEWTON_STEP`."""
    largest = float(direction.abs().max()) if direction.numel() else 0.0
    if math.isfinite(largest) and largest > MAX_NEWTON_STEP:
        return direction * (MAX_NEWTON_STEP / largest)
    return direction


def solve_newton(problem: RescalingProblem, *, tol: float | None, step_tol: float | None,
                 max_sweeps: int, callback: Callable[[int, float], None] | None = None
                 ) -> SolveResult:
    """Inexact Newton on the convex criterion: conjugate gradient on exact Hessian-vector
    products (two passes over the magnitudes each), preconditioned by Jacobi plus an exact
    solve on the per-layer aggregates, Armijo backtracking."""
    start = time.perf_counter()
    g = float(problem.num_parameters)
    alive = (~problem.dead).to(problem.dtype)
    u = torch.zeros(problem.num_groups, dtype=problem.dtype, device=problem.device)
    evaluation = problem.evaluate(u)
    history = [evaluation.value / g]
    converged, max_step, sweeps = False, 0.0, 0
    first_norm = None
    for sweeps in range(1, max_sweeps + 1):
        c = problem.curvature(u, evaluation)
        grad = c.gradient * alive
        norm = float(grad.norm())
        first_norm = first_norm or norm
        if norm == 0.0:
            history.append(history[-1])
            converged = True
            break
        forcing = max(min(0.1, math.sqrt(norm / first_norm)), 1e-10)
        floor = 1e-12 * float(c.diagonal.abs().max())
        diag = torch.where(alive > 0, c.diagonal.clamp_min(max(floor, 1e-300)),
                           torch.ones_like(alive))
        hessian = c.hessian_vector

        def masked(v: torch.Tensor, hessian: Callable[[torch.Tensor], torch.Tensor] = hessian
                   ) -> torch.Tensor:
            return hessian(v * alive) * alive

        value = float(c.value)
        precondition = _two_level(diag, c.coarse, problem.aggregates, alive)
        newton_direction = _conjugate_gradient(masked, -grad, precondition, forcing, 500)
        found = None
        for direction in (newton_direction, -grad / diag):  # Newton, else scaled gradient
            direction = _capped(direction)
            found = _armijo(problem, u, direction, float(grad @ direction), value)
            if found is not None:
                break
        if found is None:  # no decrease representable in floating point from here
            history.append(value / g)
            # after progress this is the floating-point minimum; at the start, only if flat
            converged = norm <= 1e-6 * first_norm or len(history) > 2
            break
        step, direction, evaluation = found
        u = evaluation.u
        max_step = step * float(direction.abs().max())
        if _end_sweep(history, evaluation.value / g, sweeps, max_step, tol, step_tol, callback):
            converged = True
            break
    return SolveResult(u, tuple(history), sweeps, converged, max_step,
                       time.perf_counter() - start)


class _CoordinateData:
    """Per-group views of the reduced problem in NumPy for O(degree) exact steps."""

    def __init__(self, problem: RescalingProblem):
        h = problem.num_groups
        self.layers = []
        self.incoming: list[list[tuple[int, np.ndarray]]] = [[] for _ in range(h)]
        self.outgoing: list[list[tuple[int, np.ndarray]]] = [[] for _ in range(h)]
        for li, blk in enumerate(problem.layers):
            mags = blk.magnitudes.detach().cpu().numpy()
            bias = None if blk.bias is None else blk.bias.detach().cpu().numpy()
            rows = blk.rows.cpu().numpy()
            cols = blk.cols.cpu().numpy()
            self.layers.append((mags, bias, rows, cols, blk.dense))
            for grp, idx in _grouped(rows, h):
                self.incoming[grp].append((li, idx))
            if blk.dense:
                for grp, idx in _grouped(cols[0], h):
                    self.outgoing[grp].append((li, idx))
            else:
                flat = cols.reshape(-1)
                for grp, idx in _grouped(flat, h):
                    self.outgoing[grp].append((li, idx))

    def sums(self, grp: int, ext: np.ndarray) -> tuple[float, float]:
        incoming = 0.0
        for li, idx in self.incoming[grp]:
            mags, bias, rows, cols, dense = self.layers[li]
            col_w = np.exp(2.0 * ext[cols[0]]) if dense else np.exp(2.0 * ext[cols[idx]])
            part = (mags[idx] @ col_w).sum() if dense else (mags[idx] * col_w).sum()
            if bias is not None:
                part += bias[idx].sum()
            incoming += part * math.exp(-2.0 * ext[grp])
        outgoing = 0.0
        for li, idx in self.outgoing[grp]:
            mags, _, rows, cols, dense = self.layers[li]
            if dense:
                outgoing += float(np.exp(-2.0 * ext[rows]) @ mags[:, idx].sum(axis=1))
            else:
                k, j = np.divmod(idx, cols.shape[1])
                outgoing += float((mags[k, j] * np.exp(-2.0 * ext[rows[k]])).sum())
        return incoming, outgoing * math.exp(2.0 * ext[grp])


def _grouped(labels: np.ndarray, h: int) -> list[tuple[int, np.ndarray]]:
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    bounds = np.flatnonzero(np.diff(sorted_labels)) + 1
    out = []
    for chunk in np.split(order, bounds):
        grp = int(labels[chunk[0]])
        if grp < h:
            out.append((grp, chunk))
    return out


def solve_coordinate(problem: RescalingProblem, *, tol: float | None, step_tol: float | None,
                     max_sweeps: int, callback: Callable[[int, float], None] | None = None
                     ) -> SolveResult:
    """Exact coordinate steps (paper Lemma 4.1), one group at a time, on the CPU."""
    start = time.perf_counter()
    data = _CoordinateData(problem)
    g = float(problem.num_parameters)
    h = problem.num_groups
    imbalance = problem.imbalance.detach().cpu().numpy()
    loops = problem.self_loops.detach().cpu().numpy()
    dead = problem.dead.cpu().numpy()
    ext = np.zeros(h + 1)
    value, _ = problem.criterion(torch.zeros(h, dtype=problem.dtype, device=problem.device))
    history = [float(value) / g]
    converged, max_step, sweeps = False, 0.0, 0
    for sweeps in range(1, max_sweeps + 1):
        total = float(problem.group_sums(torch.as_tensor(ext[:h], device=problem.device,
                                                         dtype=problem.dtype)).total)
        max_step = 0.0
        for grp in range(h):
            if dead[grp]:
                continue
            incoming, outgoing = data.sums(grp, ext)
            incoming, outgoing = incoming - loops[grp], outgoing - loops[grp]
            a = imbalance[grp]
            rest = total - incoming - outgoing
            w = _scalar_root((g + a) * outgoing, a * rest, (g - a) * incoming)
            delta = 0.5 * math.log(w)
            ext[grp] += delta
            total = rest + incoming / w + outgoing * w
            max_step = max(max_step, abs(delta))
        after = math.log(total) + 2.0 * float(imbalance @ ext[:h]) / g
        if _end_sweep(history, after, sweeps, max_step, tol, step_tol, callback):
            converged = True
            break
    u = torch.as_tensor(ext[:h], dtype=problem.dtype, device=problem.device)
    return SolveResult(u, tuple(history), sweeps, converged, max_step,
                       time.perf_counter() - start)
