"""Path-SGD (Neyshabur, Salakhutdinov, Srebro, NeurIPS 2015; SPEC sections 3 and 5) on the
rescaling graph.

Path-SGD preconditions each gradient coordinate by the path magnitude of its parameter:

    theta_i <- theta_i - lr * g_i / m_i,    m_i = sum_{paths p through i} prod_{j in p, j != i}
                                                   theta_j^2                               (1)

(``m = d||Phi||_2^2 / d(theta^2)``, SPEC section 3), recomputed at every step by one forward
and one backward pass of the magnitude network (:func:`pathcond.lifting.magnitudes_of`).
Under a rescaling ``theta' = D theta`` the gradient becomes ``g / D`` and the magnitudes
``m / D^2``, so the step becomes ``D`` times the step: Path-SGD started from ``theta`` and
from ``D theta`` computes the same functions at every step (exactly, up to rounding).

**BatchNorm.** Magnitudes are computed on the eval-mode fold ``W' = f W``,
``b' = beta + f (b - mu)`` with ``f = gamma / sigma`` (docs/batchnorm.md). They are mapped
back to the model's parameters so that (1) stays rescaling-equivariant:

* the pre-BatchNorm weight ``W[k, j]``: ``m'[k, j] * f_k^2`` (the magnitude of ``W`` as a
  factor of the folded paths), and its bias likewise ``m'_b[k] * f_k^2``;
* BatchNorm's ``gamma_k`` and ``beta_k``: ``m'_b[k]``, the downstream factor of unit ``k``
  (``gamma`` multiplies the normalised activation, of unit second moment in training, so it
  sits where a bias from a unit input would).

Under ``u``, ``m'[k, j] -> m' exp(-2 (u_k - u_j))`` and ``f_k^2 -> f_k^2 exp(2 u_k)``: the
weight's magnitude scales by ``exp(2 u_j)``, the inverse square of the weight's own factor
``exp(-u_j)``; ``gamma``, ``beta`` scale by ``exp(u_k)`` and their magnitude by
``exp(-2 u_k)``; the pre-BatchNorm bias is invariant and so is its magnitude.

**Zero magnitudes.** ``m_i = 0`` means every path through ``i`` has another zero factor, so
``g_i = 0`` too: such coordinates are not moved (``eps > 0`` adds ``eps`` to every ``m``
instead, which breaks the exact equivariance). If ``||Phi||_2^2`` overflows float64, no
parameter of the graph moves at that step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import nn

from ..graph import RescalingGraph, rescaling_graph
from ..lifting import lifting_parameters, magnitudes_of


class PathSGD(torch.optim.Optimizer):
    """Path-SGD: ``theta <- theta - lr * g / m`` with the path magnitudes ``m`` of the
    current parameters (module docstring, eq. (1)).

    Args:
        model: the network (any model :func:`pathcond.rescaling_graph` supports).
        input_shape: one sample's shape (or give ``graph=``).
        lr: learning rate.
        momentum: heavy-ball momentum on the gradient (``buf = momentum * buf + g``, then
            ``theta -= lr * buf / m``); the buffer transforms like a gradient, as
            :func:`pathcond.rescale.transport_optimizer_state` expects. 0 is the paper's
            algorithm.
        eps: added to every magnitude (0: coordinates with ``m = 0`` are not moved).
        dtype: precision of the magnitude computation.
        params: parameters or parameter groups of ``model`` to optimise (default: all).
            Parameters outside the rescaling graph (if any) get plain SGD steps.
        graph: a prebuilt rescaling graph of ``model``.
    """

    def __init__(self, model: nn.Module, input_shape: Sequence[int] | None = None, *,
                 lr: float, momentum: float = 0.0, eps: float = 0.0,
                 dtype: torch.dtype = torch.float64,
                 params: Iterable[Any] | None = None, graph: RescalingGraph | None = None):
        if not lr > 0:
            raise ValueError(f"lr must be positive, got {lr}")
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if not (eps >= 0 and math.isfinite(eps)):
            raise ValueError(f"eps must be finite and >= 0, got {eps}")
        if graph is None:
            if input_shape is None:
                raise TypeError("give input_shape (one sample's shape) or graph=")
            graph = rescaling_graph(model, input_shape)
        super().__init__(model.parameters() if params is None else params,
                         {"lr": lr, "momentum": momentum, "eps": eps})
        self.model = model
        self.graph = graph
        self.dtype = dtype
        named = dict(model.named_parameters())
        self._names = {id(p): n for n, p in named.items()}
        for group in self.param_groups:
            for p in group["params"]:
                if id(p) not in self._names:
                    raise ValueError("PathSGD got a parameter that is not one of the model's")

    @torch.no_grad()
    def _fold_factors(self, layer_index: int) -> torch.Tensor:
        layer = self.graph.layers[layer_index]
        assert layer.batchnorm is not None
        bn = self.model.get_submodule(layer.batchnorm)
        assert isinstance(bn, nn.modules.batchnorm._BatchNorm)
        assert bn.running_var is not None
        sigma = torch.sqrt(bn.running_var.to(self.dtype) + bn.eps)
        gamma = bn.weight.detach().to(self.dtype) if bn.affine else torch.ones_like(sigma)
        return gamma / sigma

    def magnitudes(self) -> dict[str, torch.Tensor]:
        """Path magnitudes of the model's parameters (module docstring), keyed by name, in
        ``dtype``; one forward and backward pass of the magnitude network."""
        graph = self.graph
        with torch.enable_grad():
            rel = magnitudes_of(graph, lifting_parameters(self.model, graph, dtype=self.dtype))
        # absolute magnitudes m = (m / N) * N; inf (no step) where N overflows
        scale = math.exp(rel.log_norm_sq) if rel.log_norm_sq < 709.0 else math.inf
        out: dict[str, torch.Tensor] = {}
        for li, (layer, mw, mb) in enumerate(zip(graph.layers, rel.weights, rel.biases,
                                                 strict=True)):
            if layer.batchnorm is None:
                out[layer.weight_name] = mw * scale
                if layer.bias_name is not None and mb is not None:
                    out[layer.bias_name] = mb * scale
                continue
            assert mb is not None
            f2 = self._fold_factors(li).square()
            shape = (-1, *([1] * (mw.dim() - 1)))
            out[layer.weight_name] = mw * scale * f2.reshape(shape)
            if layer.bias_name is not None:
                out[layer.bias_name] = mb * scale * f2
            for suffix in ("weight", "bias"):
                out[f"{layer.batchnorm}.{suffix}"] = mb * scale
        return out

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One Path-SGD step; ``closure`` re-evaluates the loss (torch.optim convention)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if not any(p.grad is not None for g in self.param_groups for p in g["params"]):
            return loss
        mags = self.magnitudes()
        for group in self.param_groups:
            lr, momentum, eps = group["lr"], group["momentum"], group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                d_p = p.grad
                if momentum:
                    state = self.state[p]
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        buf = state["momentum_buffer"] = d_p.detach().clone()
                    else:
                        buf.mul_(momentum).add_(d_p)
                    d_p = buf
                m = mags.get(self._names[id(p)])
                if m is None:
                    p.add_(d_p, alpha=-lr)
                    continue
                m = m + eps if eps else m
                inv = torch.where(m > 0, 1.0 / m, 0.0)
                if p.dtype != inv.dtype:
                    finfo = torch.finfo(p.dtype)
                    inv = inv.clamp(max=finfo.max).to(p.dtype)
                p.addcmul_(d_p, inv, value=-lr)
        return loss
