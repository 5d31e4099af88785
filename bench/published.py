"""A re-implementation of the PUBLISHED PathCond algorithm, for benchmarks only.

Written from the paper (Algorithm 2/3, Lemma 4.1, Appendix H) and SPEC section 4, not from
the published code. It is deliberately the published *algorithm*, with its choices:

* the sparse matrix B is stored element by element: for every rescaled unit (here: every
  rescaling group of :mod:`pathcond`, so tied residual channels form one unit and both
  solvers minimise the same criterion) one index tensor of the parameter entries it
  receives (``B = +1``: incoming weights and bias) and one of the entries it sends
  (``B = -1``: outgoing weights); an entry that is both (a self-loop) has ``B = 0`` and is
  in neither;
* a dual vector ``v = B u`` of size G, updated after every unit's step
  (``v[in] += delta``, ``v[out] -= delta``); ``q = m exp(-2 v)`` is recomputed on the
  unit's entries, so ``A`` and ``Bo`` cost O(degree);
* the global sum ``S = sum q`` kept incrementally: ``C = S - A - Bo`` and after the step
  ``S = C + A / w + Bo w``;
* the exact coordinate step of Lemma 4.1: ``w = exp(2 delta)`` the positive root of
  ``(G + a) Bo w^2 + a C w - (G - a) A = 0`` with ``a = n_in - n_out``;
* a Python loop over the units, a FIXED number of sweeps (10) and an early stop when the
  largest ``|delta u|`` of a sweep is below an ABSOLUTE tolerance (1e-2);
* float32 arithmetic (PyTorch's default dtype, that of the models the published code
  rescales) unless told otherwise; a non-finite step (dead unit: ``A`` or ``Bo`` is 0,
  or float32 underflow) is silently replaced by 0, as the published code patches Inf/NaN.

The root is computed in the cancellation-free form (SPEC section 4), choosing the form by
the sign of ``a C``; this only helps the published algorithm's accuracy, not its speed.
The loop uses torch ops on the magnitudes' device and synchronises once per sweep (for
the early stop), so it runs unchanged on a GPU.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from _common import sync  # bench/ is on the path of the scripts that import this module

from pathcond.graph import RescalingGraph
from pathcond.lifting import Magnitudes


@dataclass(frozen=True)
class ElementB:
    """B stored element by element: per unit, the flat indices of its incoming and
    outgoing parameter entries, and ``a = n_in - n_out`` (paper Appendix H)."""

    incoming: tuple[torch.Tensor, ...]
    outgoing: tuple[torch.Tensor, ...]
    imbalance: tuple[float, ...]
    num_parameters: int  # G
    nonzeros: int
    seconds: float  # time to build it

    @property
    def num_units(self) -> int:
        return len(self.incoming)


@dataclass
class PublishedResult:
    """What the published algorithm did. ``sweep_seconds`` holds the measured sweeps; when
    a time budget cut the run short, ``estimated_seconds`` extrapolates to ``sweeps``."""

    log_scales: torch.Tensor  # u, in the working dtype, on the working device
    sweeps_done: int
    stopped_early: bool  # the 1e-2 absolute tolerance was met
    budget_hit: bool  # the time budget stopped it before the fixed sweep count
    sweep_seconds: list[float] = field(default_factory=list)
    sweep_cpu_seconds: list[float] = field(default_factory=list)  # process CPU time
    max_changes: list[float] = field(default_factory=list)
    patched_steps: int = 0  # non-finite steps replaced by 0 (summed over sweeps)
    estimated_seconds: float = math.nan  # the full fixed-sweep run (= measured if no budget)
    estimated_cpu_seconds: float = math.nan
    planned_sweeps: int = 10

    @property
    def measured_seconds(self) -> float:
        return float(sum(self.sweep_seconds))


def flat_magnitudes(mags: Magnitudes, *, dtype: torch.dtype = torch.float32,
                    device: torch.device | str | None = None) -> torch.Tensor:
    """The magnitude vector m (one entry per lifting parameter) in the flat order used by
    :func:`element_b`: per layer, the weight entries (row major) then the bias."""
    parts: list[torch.Tensor] = []
    for w, b in zip(mags.weights, mags.biases, strict=True):
        parts.append(w.reshape(-1))
        if b is not None:
            parts.append(b.reshape(-1))
    flat = torch.cat(parts)
    return flat.to(dtype=dtype, device=device if device is not None else flat.device)


def _split_by_group(groups: torch.Tensor, index: torch.Tensor, num_groups: int
                    ) -> tuple[torch.Tensor, ...]:
    order = torch.argsort(groups, stable=True)
    counts = torch.bincount(groups, minlength=num_groups).tolist()
    return tuple(torch.split(index[order], counts))


def element_b(graph: RescalingGraph, *, device: torch.device | str = "cpu") -> ElementB:
    """Build B as element-level index tensors (paper Appendix H), on ``device``."""
    start = time.perf_counter()
    in_groups: list[torch.Tensor] = []
    in_index: list[torch.Tensor] = []
    out_groups: list[torch.Tensor] = []
    out_index: list[torch.Tensor] = []
    offset = 0
    for layer in graph.layers:
        out_units = layer.out_units
        kernel = layer.kernel_numel
        rows = layer.row_groups.to(torch.int64)
        cols = layer.col_groups.to(torch.int64).expand(out_units, -1)  # (out, in_per_group)
        per_row = cols.shape[1] * kernel
        numel = out_units * per_row
        flat = torch.arange(offset, offset + numel, dtype=torch.int64).reshape(
            out_units, cols.shape[1], kernel)
        row_full = rows.reshape(-1, 1).expand(out_units, cols.shape[1])
        self_loop = row_full == cols
        keep_in = (row_full >= 0) & ~self_loop  # (out, in_per_group)
        keep_out = (cols >= 0) & ~self_loop
        in_groups.append(row_full[keep_in].repeat_interleave(kernel))
        in_index.append(flat[keep_in].reshape(-1))
        out_groups.append(cols[keep_out].repeat_interleave(kernel))
        out_index.append(flat[keep_out].reshape(-1))
        offset += numel
        if layer.has_lifting_bias:
            bias_index = torch.arange(offset, offset + out_units, dtype=torch.int64)
            alive = rows >= 0
            in_groups.append(rows[alive])
            in_index.append(bias_index[alive])
            offset += out_units
    h = graph.num_groups
    if offset != graph.num_lifting_parameters:
        raise AssertionError("flat layout does not match the graph's lifting parameters")
    g_in, i_in = torch.cat(in_groups), torch.cat(in_index)
    g_out, i_out = torch.cat(out_groups), torch.cat(out_index)
    incoming = _split_by_group(g_in, i_in, h)
    outgoing = _split_by_group(g_out, i_out, h)
    imbalance = tuple(float(len(i) - len(o)) for i, o in zip(incoming, outgoing, strict=True))
    dev = torch.device(device)
    if dev.type != "cpu":
        incoming = tuple(t.to(dev) for t in incoming)
        outgoing = tuple(t.to(dev) for t in outgoing)
    nonzeros = int(i_in.numel() + i_out.numel())
    return ElementB(incoming, outgoing, imbalance, offset, nonzeros,
                    time.perf_counter() - start)


def published_pathcond(m: torch.Tensor, b: ElementB, *, sweeps: int = 10, tol: float = 1e-2,
                       time_budget: float | None = None,
                       callback: Callable[[int, torch.Tensor], None] | None = None,
                       progress: Callable[[int, float], None] | None = None
                       ) -> PublishedResult:
    """The published PathCond loop (paper Algorithm 2/3) on magnitudes ``m`` (flat, in the
    working dtype and device; see :func:`flat_magnitudes`).

    Runs ``sweeps`` sweeps over the units, stopping early when the largest ``|delta u|`` of
    a sweep is below ``tol``. With ``time_budget`` (seconds), no new sweep starts once the
    measured sweeps exceed it; the result then says so and ``estimated_seconds``
    extrapolates the mean sweep time to the planned sweeps (at least one sweep always
    runs). ``callback(sweep, u)`` runs after each sweep outside the timed region.
    """
    device, dtype = m.device, m.dtype
    g = float(b.num_parameters)
    h = b.num_units
    v = torch.zeros_like(m)  # dual variable B u
    u = torch.zeros(h, dtype=dtype, device=device)
    change = torch.zeros(h, dtype=dtype, device=device)
    patched = torch.zeros((), dtype=torch.int64, device=device)
    sync(device)
    start, cpu_start = time.perf_counter(), time.process_time()
    total = m.sum()  # S at u = 0
    result = PublishedResult(u, 0, False, False, planned_sweeps=sweeps)
    for sweep in range(1, sweeps + 1):
        for unit in range(h):
            idx_in, idx_out = b.incoming[unit], b.outgoing[unit]
            a = b.imbalance[unit]
            q_in = m[idx_in] * torch.exp(-2.0 * v[idx_in])
            q_out = m[idx_out] * torch.exp(-2.0 * v[idx_out])
            big_a, big_bo = q_in.sum(), q_out.sum()
            rest = total - big_a - big_bo
            lin = a * rest
            disc = torch.sqrt(lin * lin + 4.0 * (g * g - a * a) * big_a * big_bo)
            w = torch.where(lin >= 0, 2.0 * (g - a) * big_a / (lin + disc),
                            (disc - lin) / (2.0 * (g + a) * big_bo))
            delta = 0.5 * torch.log(w)
            finite = torch.isfinite(delta)
            patched += (~finite).to(torch.int64)
            delta = torch.where(finite, delta, torch.zeros_like(delta))
            v.index_add_(0, idx_in, delta.expand(idx_in.numel()))
            v.index_add_(0, idx_out, (-delta).expand(idx_out.numel()))
            factor = torch.exp(2.0 * delta)
            total = rest + big_a / factor + big_bo * factor
            u[unit] += delta
            change[unit] = delta
        max_change = float(change.abs().max()) if h else 0.0  # synchronises
        now = time.perf_counter()
        result.sweep_seconds.append(now - start)
        result.sweep_cpu_seconds.append(time.process_time() - cpu_start)
        result.max_changes.append(max_change)
        result.sweeps_done = sweep
        if progress is not None:
            progress(sweep, now - start)
        if callback is not None:
            callback(sweep, u)
        if max_change < tol:
            result.stopped_early = True
            break
        if time_budget is not None and sweep < sweeps and \
                result.measured_seconds >= time_budget:
            result.budget_hit = True
            break
        sync(device)
        start, cpu_start = time.perf_counter(), time.process_time()
    result.patched_steps = int(patched)
    scale = sweeps / result.sweeps_done if result.budget_hit else 1.0
    result.estimated_seconds = result.measured_seconds * scale
    result.estimated_cpu_seconds = float(sum(result.sweep_cpu_seconds)) * scale
    return result
