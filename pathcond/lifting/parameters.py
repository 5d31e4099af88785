"""The parameters the path-lifting sees: weights and biases with BatchNorm folded in."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import NonFiniteParameterError, UnsupportedModelError
from ..graph import Layer, RescalingGraph


@dataclass(frozen=True)
class LiftingParameters:
    """Per layer of the graph: the folded weight, in the lifting layout ``(out, in_per_group,
    *kernel)`` (:meth:`pathcond.graph.Layer.to_lifting`), and bias (``None`` when there is
    no bias)."""

    weights: tuple[torch.Tensor, ...]
    biases: tuple[torch.Tensor | None, ...]

    def numel(self) -> int:
        """G: the number of lifting parameters (weight and bias entries)."""
        return sum(w.numel() for w in self.weights) + sum(
            b.numel() for b in self.biases if b is not None)


def _checked(name: str, tensor: torch.Tensor) -> torch.Tensor:
    if tensor.is_meta:
        raise UnsupportedModelError(
            f"'{name}' is on the meta device (a shape without values): path-norms, magnitudes "
            "and PathCond need values; materialise the model first (model.to_empty(device="
            "'cpu') and initialise it); num_paths and check_support work on meta models")
    # a finite sum has only finite terms (inf and NaN propagate); the sum may overflow, then
    # the entries are checked one by one
    if (not math.isfinite(float(tensor.sum(dtype=torch.float64)))
            and not bool(torch.isfinite(tensor).all())):
        raise NonFiniteParameterError(
            f"'{name}' holds NaN or infinite values; pathcond cannot compute path quantities "
            "of a diverged model (reload a checkpoint or re-initialise)")
    return tensor


def _tensor(module: nn.Module, name: str) -> torch.Tensor:
    value = getattr(module, name)
    assert isinstance(value, torch.Tensor)
    return value.detach()


def fold_layer(model: nn.Module, layer: Layer, *, dtype: torch.dtype
               ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The layer in eval-mode affine form (SPEC section 2), its weight in the lifting layout:
    with a BatchNorm, ``W' = (gamma / sigma) W`` and ``b' = beta + gamma (b - mu) / sigma``."""
    try:
        module = model.get_submodule(layer.name)
    except AttributeError:
        raise ValueError(f"model has no module '{layer.name}': was the graph built from "
                         "another model?") from None
    raw = _tensor(module, "weight")
    if tuple(raw.shape) != tuple(layer.weight_shape):
        raise ValueError(f"'{layer.weight_name}' has shape {tuple(raw.shape)}, the graph's "
                         f"layer {tuple(layer.weight_shape)}: was the graph built from another "
                         "model?")
    weight = layer.to_lifting(_checked(layer.weight_name, raw).to(dtype))
    bias = getattr(module, "bias", None)
    bias = None if bias is None else _checked(str(layer.bias_name), bias.detach()).to(dtype)
    if layer.batchnorm is None:
        return weight, bias
    bn = model.get_submodule(layer.batchnorm)
    assert isinstance(bn, nn.modules.batchnorm._BatchNorm)
    assert bn.running_mean is not None and bn.running_var is not None
    mean = _checked(f"{layer.batchnorm}.running_mean", bn.running_mean).to(dtype)
    var = _checked(f"{layer.batchnorm}.running_var", bn.running_var).to(dtype)
    if not bool((var + bn.eps > 0).all()):
        raise NonFiniteParameterError(
            f"'{layer.batchnorm}.running_var' + eps is not positive for "
            f"{int((var + bn.eps <= 0).sum())} channel(s): the eval-mode BatchNorm divides "
            "by its square root (reset the running statistics or give eps > 0)")
    sigma = torch.sqrt(var + bn.eps)
    if bn.affine:
        gamma = _checked(f"{layer.batchnorm}.weight", bn.weight.detach()).to(dtype)
        beta = _checked(f"{layer.batchnorm}.bias", bn.bias.detach()).to(dtype)
    else:
        gamma, beta = torch.ones_like(mean), torch.zeros_like(mean)
    factor = gamma / sigma
    folded_w = weight * factor.reshape(-1, *([1] * (weight.dim() - 1)))
    shift = mean if bias is None else mean - bias
    return folded_w, beta - factor * shift


def lifting_parameters(model: nn.Module, graph: RescalingGraph, *,
                       dtype: torch.dtype = torch.float64) -> LiftingParameters:
    """Folded weights and biases of every layer of ``graph``, copied to ``dtype``; the model
    is not modified. Raises :class:`NonFiniteParameterError` on NaN/Inf."""
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating-point torch.dtype (torch.float64 is the "
                        f"default and recommended), got {dtype!r}")
    folded = [fold_layer(model, layer, dtype=dtype) for layer in graph.layers]
    return LiftingParameters(tuple(w for w, _ in folded), tuple(b for _, b in folded))
