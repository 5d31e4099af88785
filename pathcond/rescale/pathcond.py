"""The PathCond rescaling of a model (paper section 4, SPEC section 4): solve and apply."""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from ..errors import NonFiniteParameterError
from ..graph import RescalingGraph, resolve_graph
from ..lifting import LiftingParameters, Magnitudes, lifting_parameters, magnitudes_of
from ..solver import RescalingProblem, SolveResult, solve_block, solve_coordinate, solve_newton
from .apply import apply_rescaling, flat_log_scales

SolverName = Literal["newton", "block", "coordinate"]
_SOLVERS = {"newton": solve_newton, "block": solve_block, "coordinate": solve_coordinate}


@dataclass(frozen=True)
class DeadGroup:
    """A rescaling group left at log-scale 0 because its exact step is unbounded."""

    index: int
    name: str
    reason: str


@dataclass(frozen=True)
class RescaleReport:
    """What :func:`rescale` did.

    ``criterion_*`` is ``F / G`` of paper eq. 9 up to a constant (``log(AM/GM)`` of the path
    magnitudes when all are positive); ``am_gm_*`` the arithmetic over geometric mean of the
    positive path magnitudes before and after; ``history`` the criterion after each sweep.
    """

    criterion_before: float
    criterion_after: float
    am_gm_before: float
    am_gm_after: float
    sweeps: int
    converged: bool
    max_step: float
    seconds: float
    solve_seconds: float
    solver: str
    log_scales: torch.Tensor
    dead_groups: tuple[DeadGroup, ...]
    history: tuple[float, ...]
    num_groups: int
    num_parameters: int

    def __str__(self) -> str:
        status = "converged" if self.converged else "NOT converged"
        lines = [
            f"PathCond ({self.solver} solver): {status} after {self.sweeps} sweeps in "
            f"{self.seconds:.3f} s (solve {self.solve_seconds:.3f} s)",
            f"  AM/GM of path magnitudes: {self.am_gm_before:.6g} -> {self.am_gm_after:.6g}",
            f"  criterion F/G: {self.criterion_before:.10g} -> {self.criterion_after:.10g}",
            f"  {self.num_groups} groups, G = {self.num_parameters:,} parameters; "
            f"log-scales in [{float(self.log_scales.min()) if self.num_groups else 0:.4g}, "
            f"{float(self.log_scales.max()) if self.num_groups else 0:.4g}]",
        ]
        if self.dead_groups:
            lines.append(f"  {len(self.dead_groups)} dead group(s) left unscaled, e.g. "
                         f"{self.dead_groups[0].name}: {self.dead_groups[0].reason}")
        return "\n".join(lines)


@dataclass(frozen=True)
class CriterionValue:
    """``F(u)`` (paper eq. 9), its gradient in ``u`` and the AM/GM ratio at ``u``."""

    value: float
    gradient: torch.Tensor
    normalised: float
    am_gm: float


def build_problem(model: nn.Module, graph: RescalingGraph, *,
                  dtype: torch.dtype = torch.float64) -> RescalingProblem:
    """Path magnitudes of ``model`` (one forward/backward pass) reduced for the solvers.

    A non-zero parameter without path magnitude is checked (by one more pass, on the
    parameters' support): structurally dead (no path of non-zero parameters through it) is a
    dead unit; a magnitude that underflowed ``dtype`` raises
    :class:`~pathcond.NonFiniteParameterError` instead of passing for one."""
    params = lifting_parameters(model, graph, dtype=dtype)
    mags = magnitudes_of(graph, params)
    if _suspicious(graph, params, mags):
        # a non-zero parameter on a path of the graph without magnitude: other parameters
        # are zero (a dead unit), or it underflowed: one pass on the parameters' support
        support = LiftingParameters(
            tuple((w != 0).to(w.dtype) for w in params.weights),
            tuple(None if b is None else (b != 0).to(b.dtype) for b in params.biases))
        smags = magnitudes_of(graph, support)
        lost = sum(int(((m == 0) & (sm > 0)).sum())
                   for m, sm in zip(_entries(mags), _entries(smags), strict=True))
        if lost:
            raise NonFiniteParameterError(
                f"the path magnitudes of {lost} parameter(s) underflow {dtype} although paths "
                "of non-zero parameters run through them: the parameters span more than "
                f"{dtype}'s range; start from a better-scaled initialisation")
    problem = RescalingProblem.build(graph, mags)
    return problem


def _entries(m: Magnitudes | LiftingParameters) -> list[torch.Tensor]:
    """Weights, then the biases that exist, of every layer."""
    return [*m.weights, *(b for b in m.biases if b is not None)]


def _path_support(graph: RescalingGraph, like: torch.Tensor) -> list[torch.Tensor]:
    """Per lifting entry (as :func:`_entries`), whether any path of the graph runs through it
    whatever the values (not, e.g., a kernel position that only ever meets padding): one
    pass on all-ones parameters, kept on the graph (it depends on the structure only)."""
    cached = graph.__dict__.get("_path_support")
    if cached is None:
        ones = LiftingParameters(
            tuple(torch.ones(layer.lifting_shape, dtype=like.dtype, device=like.device)
                  for layer in graph.layers),
            tuple(torch.ones(layer.out_units, dtype=like.dtype, device=like.device)
                  if layer.has_lifting_bias else None for layer in graph.layers))
        cached = [m > 0 for m in _entries(magnitudes_of(graph, ones))]
        object.__setattr__(graph, "_path_support", cached)  # a cache of a frozen graph
    return [c.to(like.device) for c in cached]


def _suspicious(graph: RescalingGraph, params: LiftingParameters, mags: Magnitudes) -> bool:
    """Whether some non-zero parameter that a path of the graph runs through has no path
    magnitude (dead through zero parameters elsewhere, or underflowed)."""
    entries, found = _entries(params), _entries(mags)
    if not any(bool(((p != 0) & (m == 0)).any()) for p, m in zip(entries, found, strict=True)):
        return False
    support = _path_support(graph, entries[0])
    return any(bool(((p != 0) & (m == 0) & s).any())
               for p, m, s in zip(entries, found, support, strict=True))


def criterion(model: nn.Module, input_shape: Sequence[int] | None = None, *,
              log_scales: torch.Tensor | None = None, graph: RescalingGraph | None = None,
              dtype: torch.dtype = torch.float64) -> CriterionValue:
    """The PathCond criterion ``F(u) = G log sum_i q_i + 2 sum_i (B u)_i`` at ``u``
    (``log_scales``, default 0) and its gradient, for diagnostics and tests."""
    g = resolve_graph(model, input_shape, graph)
    given = None if log_scales is None else flat_log_scales(g, log_scales)
    problem = build_problem(model, g, dtype=dtype)
    u = torch.zeros(g.num_groups, dtype=dtype, device=problem.device) if given is None \
        else given.to(dtype=dtype, device=problem.device)
    value, grad = problem.criterion(u)
    return CriterionValue(float(value), grad, problem.normalised(value), problem.am_gm(u))


def _overflow_message(solver: str, exc: BaseException | None) -> str:
    cause = f" ({exc})" if exc is not None else ""
    other = "; the default solver='newton' bounds its steps and" if solver != "newton" else \
        "; it"
    return (f"the {solver} solver left float64's range on this network{cause}: its path "
            f"magnitudes span too many orders of magnitude for this solver{other} may "
            "succeed; otherwise start from a better-scaled initialisation. The model was "
            "left unchanged")


def rescale(model: nn.Module, input_shape: Sequence[int] | None = None, *,
            graph: RescalingGraph | None = None, tol: float | None = 1e-10,
            step_tol: float | None = None, max_sweeps: int = 1000,
            solver: SolverName = "newton", dtype: torch.dtype = torch.float64,
            optimizer: torch.optim.Optimizer | None = None, progress: bool = False
            ) -> RescaleReport:
    """Rescale ``model`` in place by PathCond: ``theta <- exp(B u*) theta`` with ``u*`` the
    minimiser of the criterion (paper eq. 9), solved to convergence in float64.

    Solvers (SPEC section 4): ``"newton"`` (default; inexact Newton with exact
    Hessian-vector products, a few iterations), ``"block"`` (exact block steps, vectorised)
    and ``"coordinate"`` (exact coordinate steps of Lemma 4.1, CPU reference); all reach the
    same minimiser. A sweep is one iteration of the chosen solver.

    Stops when a sweep decreases the criterion by at most ``tol`` times the decrease so far,
    or moves no log-scale by more than ``step_tol``; ``max_sweeps`` bounds the work and the
    report says whether convergence was reached. The function computed by the model is
    unchanged in train and eval mode; its mode and device are kept. With ``optimizer``, the
    optimizer state is transported (SPEC section 5) so training can continue.
    """
    if solver not in _SOLVERS:
        raise ValueError(f"solver must be one of {sorted(_SOLVERS)}, got {solver!r}")
    if isinstance(max_sweeps, bool) or not isinstance(max_sweeps, numbers.Integral):
        raise TypeError(f"max_sweeps must be an integer, got {max_sweeps!r}")
    if max_sweeps < 1:
        raise ValueError(f"max_sweeps must be at least 1, got {max_sweeps}")
    for name, value in (("tol", tol), ("step_tol", step_tol)):
        if value is not None and not (value >= 0 and math.isfinite(value)):
            raise ValueError(f"{name} must be None or a finite number >= 0, got {value}")
    start = time.perf_counter()
    g = resolve_graph(model, input_shape, graph)
    problem = build_problem(model, g, dtype=dtype)
    callback = None
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=max_sweeps, desc="PathCond", unit="sweep", leave=False)

        def callback(sweep: int, value: float) -> None:
            assert bar is not None
            bar.update(1)
            bar.set_postfix(criterion=f"{value:.10g}")

    run = _SOLVERS[solver]
    try:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            result: SolveResult = run(problem, tol=tol, step_tol=step_tol,
                                      max_sweeps=max_sweeps, callback=callback)
    except (OverflowError, ValueError, ZeroDivisionError) as exc:
        raise NonFiniteParameterError(_overflow_message(solver, exc)) from exc
    finally:
        if bar is not None:
            bar.close()
    if not bool(torch.isfinite(result.log_scales).all()):
        raise NonFiniteParameterError(_overflow_message(solver, None))
    apply_rescaling(model, g, result.log_scales, optimizer=optimizer)
    zero = torch.zeros(g.num_groups, dtype=dtype, device=problem.device)
    am_gm_before = problem.am_gm(zero, value=result.history[0] * problem.num_parameters)
    dead = tuple(DeadGroup(i, g.group_name(i), problem.dead_reasons[i])
                 for i in torch.nonzero(problem.dead.cpu()).flatten().tolist())
    const = problem.normalised(0.0)
    return RescaleReport(
        criterion_before=result.history[0] + const, criterion_after=result.history[-1] + const,
        am_gm_before=am_gm_before, am_gm_after=problem.am_gm(result.log_scales),
        sweeps=result.sweeps, converged=result.converged, max_step=result.max_step,
        seconds=time.perf_counter() - start, solve_seconds=result.seconds, solver=solver,
        log_scales=result.log_scales.detach().cpu(), dead_groups=dead,
        history=tuple(h + const for h in result.history), num_groups=g.num_groups,
        num_parameters=problem.num_parameters)
