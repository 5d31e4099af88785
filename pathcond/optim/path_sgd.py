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

from ..graph import RescalingGraph, resolve_graph
from ..lifting import LiftingParameters, Magnitudes, fold_layer, magnitudes_of
from ._checks import ModelParamGroups, check_model
from ._sgd import check_lr_momentum, closure_loss, heavy_ball


class PathSGD(ModelParamGroups):
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
        dtype: precision of the magnitude computation (default: the parameters' dtype;
            the magnitude network renormalises by powers of two, so float32 does not
            overflow).
        params: parameters or parameter groups of ``model`` to optimise (default: all).
            Parameters outside the rescaling graph (if any) get plain SGD steps.
        graph: a prebuilt rescaling graph of ``model``.
    """

    def __init__(self, model: nn.Module, input_shape: Sequence[int] | None = None, *,
                 lr: float, momentum: float = 0.0, eps: float = 0.0,
                 dtype: torch.dtype | None = None,
                 params: Iterable[Any] | None = None, graph: RescalingGraph | None = None):
        check_model(type(self).__name__, model)
        check_lr_momentum(lr, momentum)
        if not (eps >= 0 and math.isfinite(eps)):
            raise ValueError(f"eps must be finite and >= 0, got {eps}")
        if dtype is not None and not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating-point dtype, got {dtype}")
        graph = resolve_graph(model, input_shape, graph)
        self._own_param_ids = frozenset(id(p) for p in model.parameters())
        super().__init__(model.parameters() if params is None else params,
                         {"lr": lr, "momentum": momentum, "eps": eps})
        self.model = model
        self.graph = graph
        self.dtype = dtype
        named = dict(model.named_parameters())
        self._names = {id(p): n for n, p in named.items()}
        self._in_graph: set[str] = set()
        for layer in graph.layers:
            self._in_graph.add(layer.weight_name)
            if layer.bias_name is not None:
                self._in_graph.add(layer.bias_name)
            if layer.batchnorm is not None:
                self._in_graph.update({f"{layer.batchnorm}.weight", f"{layer.batchnorm}.bias"})

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group of the model's parameters (``torch.optim`` convention); every group
        shares one ``eps`` (the magnitudes are computed once for all)."""
        super().add_param_group(param_group)
        if len({float(g["eps"]) for g in self.param_groups}) > 1:
            self.param_groups.pop()
            raise ValueError("PathSGD needs the same eps in every parameter group")

    def _dtype(self) -> torch.dtype:
        if self.dtype is not None:
            return self.dtype
        first = next(iter(self.model.parameters()))
        return first.dtype if first.is_floating_point() else torch.float64

    @torch.no_grad()
    def _fold_factors(self, layer_index: int, dtype: torch.dtype) -> torch.Tensor:
        layer = self.graph.layers[layer_index]
        assert layer.batchnorm is not None
        bn = self.model.get_submodule(layer.batchnorm)
        assert isinstance(bn, nn.modules.batchnorm._BatchNorm)
        assert bn.running_var is not None
        sigma = torch.sqrt(bn.running_var.to(dtype) + bn.eps)
        gamma = bn.weight.detach().to(dtype) if bn.affine else torch.ones_like(sigma)
        return gamma / sigma

    def _relative(self) -> tuple[Magnitudes, torch.dtype]:
        """``m / N`` of the folded parameters and ``log N`` (one forward and backward pass
        of the magnitude network). Layers without BatchNorm use the parameters themselves
        (no copy when ``dtype`` is theirs); no finiteness check, a diverged model gives NaN
        magnitudes and no step."""
        dtype = self._dtype()
        weights: list[torch.Tensor] = []
        biases: list[torch.Tensor | None] = []
        for layer in self.graph.layers:
            if layer.batchnorm is not None:
                w, b = fold_layer(self.model, layer, dtype=dtype)
            else:
                module = self.model.get_submodule(layer.name)
                weight = getattr(module, "weight")  # noqa: B009
                assert isinstance(weight, torch.Tensor)
                w = layer.to_lifting(weight.detach().to(dtype))
                bias = getattr(module, "bias", None)
                b = None if bias is None else bias.detach().to(dtype)
            weights.append(w)
            biases.append(b)
        with torch.enable_grad():
            return magnitudes_of(self.graph, LiftingParameters(tuple(weights),
                                                               tuple(biases))), dtype

    def magnitudes(self) -> dict[str, torch.Tensor]:
        """Path magnitudes of the model's parameters (module docstring), keyed by name, in
        ``dtype`` (default: the parameters' dtype); ``inf`` where ``N`` overflows."""
        rel, dtype = self._relative()
        scale = math.exp(rel.log_norm_sq) if rel.log_norm_sq < 709.0 else math.inf
        out: dict[str, torch.Tensor] = {}
        for li, (layer, mw, mb) in enumerate(zip(self.graph.layers, rel.weights, rel.biases,
                                                 strict=True)):
            if layer.batchnorm is None:
                out[layer.weight_name] = layer.to_native(mw * scale)
                if layer.bias_name is not None and mb is not None:
                    out[layer.bias_name] = mb * scale
                continue
            assert mb is not None
            f2 = self._fold_factors(li, dtype).square()
            shape = (-1, *([1] * (mw.dim() - 1)))
            out[layer.weight_name] = layer.to_native(mw * scale * f2.reshape(shape))
            if layer.bias_name is not None:
                out[layer.bias_name] = mb * scale * f2
            for suffix in ("weight", "bias"):
                out[f"{layer.batchnorm}.{suffix}"] = mb * scale
        return out

    @torch.no_grad()
    def _inverses(self, eps: float) -> tuple[dict[str, torch.Tensor], float]:
        """``N / (m + eps)`` per parameter name (0 where ``m + eps = 0``), computed in place
        on the magnitude network's gradients, and ``1 / N``: the step is
        ``lr * g * inv / N``."""
        rel, dtype = self._relative()
        log_n = rel.log_norm_sq
        if not math.isfinite(log_n) or abs(log_n) > 700.0:
            return {}, 0.0
        inv_n = math.exp(-log_n)
        shift = eps * inv_n

        def inverse(m: torch.Tensor) -> torch.Tensor:
            if shift:
                m.add_(shift)
            return m.reciprocal_().nan_to_num_(nan=0.0, posinf=0.0, neginf=0.0)

        out: dict[str, torch.Tensor] = {}
        for li, (layer, mw, mb) in enumerate(zip(self.graph.layers, rel.weights, rel.biases,
                                                 strict=True)):
            if layer.batchnorm is None:
                out[layer.weight_name] = layer.to_native(inverse(mw))
                if layer.bias_name is not None and mb is not None:
                    out[layer.bias_name] = inverse(mb)
                continue
            assert mb is not None
            f2 = self._fold_factors(li, dtype).square()
            out[layer.weight_name] = layer.to_native(
                inverse(mw.mul_(f2.reshape(-1, *([1] * (mw.dim() - 1))))))
            if layer.bias_name is not None:
                out[layer.bias_name] = inverse(mb * f2)
            gamma = inverse(mb)
            for suffix in ("weight", "bias"):
                out[f"{layer.batchnorm}.{suffix}"] = gamma
        return out, inv_n

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One Path-SGD step; ``closure`` re-evaluates the loss (torch.optim convention)."""
        loss = closure_loss(closure)
        if not any(p.grad is not None for g in self.param_groups for p in g["params"]):
            return loss
        eps = {float(g["eps"]) for g in self.param_groups}
        if len(eps) > 1:
            raise ValueError("PathSGD needs the same eps in every parameter group")
        inverses, inv_n = self._inverses(eps.pop())
        for group in self.param_groups:
            lr, momentum = group["lr"], group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                d_p = p.grad
                if momentum:
                    d_p = heavy_ball(self.state[p], "momentum_buffer", d_p, momentum)
                name = self._names[id(p)]
                inv = inverses.get(name)
                if inv is None:
                    if name not in self._in_graph:
                        p.add_(d_p, alpha=-lr)
                    continue  # N out of float64's range: no step for the graph's parameters
                factor = lr * inv_n
                if inv.dtype != p.dtype:
                    finfo = torch.finfo(p.dtype)
                    if not finfo.tiny < factor < finfo.max:
                        inv = inv * factor
                        factor = 1.0
                    inv = inv.clamp(max=finfo.max).to(p.dtype)
                elif p.dtype != torch.float64:
                    finfo = torch.finfo(p.dtype)
                    if not finfo.tiny < factor < finfo.max:
                        inv = (inv.double() * factor).clamp(max=finfo.max).to(p.dtype)
                        factor = 1.0
                p.addcmul_(d_p, inv, value=-factor)
        return loss
