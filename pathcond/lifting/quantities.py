"""Path-lifting quantities of a model: path-norms, number of paths, path magnitudes
(SPEC section 3; paper Appendix I)."""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import NonFiniteParameterError
from ..graph import RescalingGraph, resolve_graph
from .network import log_total, total, total_differentiable
from .parameters import LiftingParameters, lifting_parameters


@dataclass(frozen=True)
class Magnitudes:
    """Path magnitudes ``m_i = sum_{p through i} prod_{j in p, j != i} theta_j^2`` per layer,
    stored as ``m * exp(-log_scale)``: ``log_scale = log N`` (``N = ||Phi||_2^2``) so values
    stay finite where ``m`` overflows float64, or 0 when ``N = 0`` (every path is zero, yet
    magnitudes need not be). Scale does not matter to PathCond, so solvers use them as is."""

    weights: tuple[torch.Tensor, ...]
    biases: tuple[torch.Tensor | None, ...]
    log_scale: float
    log_norm_sq: float

    def absolute(self) -> Magnitudes:
        """The magnitudes themselves (``inf`` with a warning where they overflow)."""
        factor = _exp_or_inf(self.log_scale, "path magnitudes")
        return Magnitudes(tuple(w * factor for w in self.weights),
                          tuple(None if b is None else b * factor for b in self.biases), 0.0,
                          self.log_norm_sq)


def _exp_or_inf(log_value: float, what: str) -> float:
    if log_value > math.log(torch.finfo(torch.float64).max):
        warnings.warn(f"{what} overflow float64 (log = {log_value:.6g}); returning inf. "
                      "Ask for log=True to get the exact logarithm.", RuntimeWarning,
                      stacklevel=3)
        return math.inf
    return math.exp(log_value)


def _device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def magnitudes_of(graph: RescalingGraph, params: LiftingParameters) -> Magnitudes:
    """Relative path magnitudes of lifting parameters: one forward and one backward pass of
    the magnitude network, ``m / N = d log N / d s`` at ``s = theta^2``."""
    squares_w = [w.detach().square().requires_grad_(True) for w in params.weights]
    squares_b = [None if b is None else b.detach().square().requires_grad_(True)
                 for b in params.biases]
    log_n = log_total(graph, squares_w, squares_b, power=2.0)
    leaves = squares_w + [b for b in squares_b if b is not None]
    if bool(torch.isfinite(log_n)):
        grads, log_scale = torch.autograd.grad(log_n, leaves), float(log_n.detach())
    else:  # N = 0: differentiate N itself; m = dN/ds is still well defined
        n = total_differentiable(graph, squares_w, squares_b, power=2.0)
        grads, log_scale = torch.autograd.grad(n, leaves, allow_unused=True), 0.0
        grads = tuple(torch.zeros_like(x) if g is None else g
                      for g, x in zip(grads, leaves, strict=True))
    # autograd may hand back broadcast views (a bias feeding the output sum directly): the
    # magnitudes returned own their memory, so callers may work on them in place
    owned = [g.detach().contiguous() for g in grads]
    gw = tuple(owned[: len(squares_w)])
    it = iter(owned[len(squares_w):])
    gb = tuple(None if b is None else next(it) for b in squares_b)
    return Magnitudes(gw, gb, log_scale, float(log_n.detach()))


def path_magnitudes(model: nn.Module, input_shape: Sequence[int] | None = None, *,
                    graph: RescalingGraph | None = None, dtype: torch.dtype = torch.float64
                    ) -> dict[str, torch.Tensor]:
    """Path magnitude of every lifting parameter, keyed by parameter name, shaped like it.

    With a folded BatchNorm, ``<layer>.weight`` holds the magnitudes of the folded weight
    ``(gamma / sigma) W`` and ``<batchnorm>.bias`` those of the folded bias (docs/batchnorm.md).
    Raises :class:`~pathcond.NonFiniteParameterError` when a magnitude exceeds ``dtype``.
    """
    g = resolve_graph(model, input_shape, graph)
    mags = magnitudes_of(g, lifting_parameters(model, g, dtype=dtype)).absolute()
    out: dict[str, torch.Tensor] = {}
    for layer, w, b in zip(g.layers, mags.weights, mags.biases, strict=True):
        out[layer.weight_name] = layer.to_native(w)
        if b is not None and layer.lifting_bias_name is not None:
            out[layer.lifting_bias_name] = b
    for name, m in out.items():
        if not bool(torch.isfinite(m).all()):
            raise NonFiniteParameterError(
                f"the path magnitudes of {name!r} exceed {dtype}'s range: the parameters span "
                "more than it can hold")
    return out


def path_norm(model: nn.Module, input_shape: Sequence[int] | None = None, *, p: float = 2,
              graph: RescalingGraph | None = None, dtype: torch.dtype = torch.float64,
              log: bool = False) -> float:
    """L``p`` path-norm ``(sum_paths |Phi_p(theta)|^p)^(1/p)`` (SPEC section 3), or its natural
    log with ``log=True``."""
    if isinstance(p, bool) or not isinstance(p, numbers.Real):
        raise TypeError(f"path_norm: p must be a number, got {p!r}")
    if not p > 0 or math.isinf(p):
        raise ValueError(f"path_norm needs a finite p > 0, got p={p}")
    g = resolve_graph(model, input_shape, graph)
    params = lifting_parameters(model, g, dtype=dtype)
    with torch.no_grad():
        powered_w = [_powered(w, p, dtype) for w in params.weights]
        powered_b = [None if b is None else _powered(b, p, dtype) for b in params.biases]
        log_n = float(log_total(g, powered_w, powered_b, power=p))
    if math.isnan(log_n):
        raise NonFiniteParameterError(f"the L{p:g} path-norm is not computable in {dtype}: "
                                      "the parameters span more than its range")
    return log_n / p if log else _exp_or_inf(log_n / p, "the path-norm")


def _powered(t: torch.Tensor, p: float, dtype: torch.dtype) -> torch.Tensor:
    """``|t|^p``, refused where it leaves ``dtype``'s range (an infinite or a vanished
    power would turn the path sums into NaN or drop paths)."""
    out = t.abs() ** p
    if not bool(torch.isfinite(out).all()) or bool(((out == 0) & (t != 0)).any()):
        raise NonFiniteParameterError(
            f"|theta|^{p:g} of some parameters leaves {dtype}'s range (parameters from "
            f"{float(t.abs()[t != 0].min()):.3g} to {float(t.abs().max()):.3g}): the L{p:g} "
            "path-norm cannot be computed in this dtype; try p=1 or a better-scaled network")
    return out


def num_paths(model: nn.Module, input_shape: Sequence[int] | None = None, *,
              graph: RescalingGraph | None = None, log: bool = False) -> float:
    """Number of paths from an input unit or a bias to an output unit (paper Table 1), or its
    natural log with ``log=True``; ``inf`` with a warning when it exceeds float64. Only
    the architecture counts: a model on the meta device (no values) is counted on the CPU."""
    g = resolve_graph(model, input_shape, graph)
    device = _device(model)
    if device.type == "meta":
        device = torch.device("cpu")
    ones_w = [torch.ones(layer.lifting_shape, dtype=torch.float64, device=device)
              for layer in g.layers]
    ones_b = [torch.ones(layer.out_units, dtype=torch.float64, device=device)
              if layer.has_lifting_bias else None for layer in g.layers]
    with torch.no_grad():
        if log:
            return float(log_total(g, ones_w, ones_b, power=0.0))
        count = total(g, ones_w, ones_b, power=0.0)
    if math.isinf(count):
        _exp_or_inf(math.inf, "the number of paths")
    return count
