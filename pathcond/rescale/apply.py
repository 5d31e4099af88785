"""Apply a rescaling ``theta' = exp(B u) * theta`` to a model and its optimizer state
(SPEC sections 2 and 5)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from ..errors import NonFiniteParameterError, UnsupportedOptimizerError
from ..graph import RescalingGraph

# How each optimizer state entry transforms under theta' = D theta (SPEC section 5):
# gradients and first moments by D^-1, second moments by D^-2, quantities in parameter
# units (averages of the iterates, step sizes) by D.
_STATE_POWERS: dict[str, float] = {
    "momentum_buffer": -1.0,  # SGD, RMSprop
    "exp_avg": -1.0,  # Adam, AdamW, NAdam, RAdam, Adamax
    "exp_avg_sq": -2.0,
    "max_exp_avg_sq": -2.0,  # amsgrad
    "exp_inf": -1.0,  # Adamax: a running max of |gradient|
    "square_avg": -2.0,  # RMSprop, Adadelta
    "grad_avg": -1.0,  # centered RMSprop
    "acc_delta": 2.0,  # Adadelta
    "sum": -2.0,  # Adagrad
    "prev": -1.0,  # Rprop: the previous gradient
    "step_size": 1.0,  # Rprop: per-element step sizes
    "ax": 1.0,  # ASGD: the averaged iterate
}


def flat_log_scales(graph: RescalingGraph, log_scales: torch.Tensor) -> torch.Tensor:
    """``log_scales`` as a vector of one entry per rescaling group of ``graph``, or
    ``ValueError`` naming both sizes."""
    u = log_scales.reshape(-1)
    if u.numel() != graph.num_groups:
        raise ValueError(f"log_scales has {u.numel()} entries; the graph has "
                         f"{graph.num_groups} rescaling groups")
    return u


def parameter_log_scales(graph: RescalingGraph, log_scales: torch.Tensor
                         ) -> dict[str, torch.Tensor]:
    """``(B u)`` for every model parameter the rescaling touches, as tensors broadcastable to
    the parameter's shape.

    Plain layer: weight ``u[row] - u[col]``, bias ``u[row]``. Layer followed by a BatchNorm:
    the BatchNorm's weight and bias take ``u[row]``, the layer's weight only ``-u[col]`` (its
    rows are scale-invariant under the BatchNorm), its bias nothing (docs/batchnorm.md).
    """
    u = flat_log_scales(graph, log_scales)
    extended = torch.cat([u, u.new_zeros(1)])  # index -1 (never rescaled) reads the 0
    out: dict[str, torch.Tensor] = {}
    for layer in graph.layers:
        rows = extended[layer.row_groups.to(u.device)]
        cols = extended[layer.col_groups.to(u.device)]
        trailing = (1,) * (len(layer.weight_shape) - 2)
        cols = cols.reshape(*cols.shape, *trailing)
        if layer.batchnorm is None:
            out[layer.weight_name] = layer.native_broadcast(rows.reshape(-1, 1, *trailing) - cols)
            if layer.bias_name is not None:
                out[layer.bias_name] = rows
        else:
            out[layer.weight_name] = layer.native_broadcast(-cols)
            if layer.batchnorm_affine:  # without affine parameters the units are never rescaled
                out[f"{layer.batchnorm}.weight"] = rows
                out[f"{layer.batchnorm}.bias"] = rows
    return out


def model_log_scales(model: nn.Module, graph: RescalingGraph, log_scales: torch.Tensor
                     ) -> tuple[dict[str, nn.Parameter], dict[str, torch.Tensor]]:
    """``model``'s named parameters and :func:`parameter_log_scales` in float64, checked to
    belong together (``ValueError`` when the graph was built from another model)."""
    params = dict(model.named_parameters())
    scales = parameter_log_scales(graph, log_scales.detach().to(torch.float64))
    missing = [name for name in scales if name not in params]
    if missing:
        raise ValueError(f"model has no parameter {missing[0]!r}: was the graph built from "
                         "another model?")
    return params, scales


def _check_log_scales(log_scales: torch.Tensor) -> None:
    if not bool(torch.isfinite(log_scales).all()):
        raise NonFiniteParameterError("log_scales holds NaN or infinite values")


@torch.no_grad()
def apply_rescaling(model: nn.Module, graph: RescalingGraph, log_scales: torch.Tensor, *,
                    optimizer: torch.optim.Optimizer | None = None) -> None:
    """Multiply the model's parameters in place by ``exp(B u)`` (``u = log_scales``, one
    entry per rescaling group); the function is unchanged in train and eval mode.

    With ``optimizer``, its per-parameter state is transported too: momentum buffers and
    first moments by ``exp(-B u)``, second moments by ``exp(-2 B u)`` (SPEC section 5).

    New values are computed in float64 and rounded once to the parameter's dtype, so the
    function is preserved up to that rounding (relative 2**-24 in float32, 2**-11 in
    float16, 2**-8 in bfloat16). A value the dtype cannot hold (overflow to infinity, or a
    nonzero entry rounded to zero) raises :class:`~pathcond.errors.NonFiniteParameterError`
    with the model untouched.
    """
    _check_log_scales(log_scales)
    params, scales = model_log_scales(model, graph, log_scales)
    if optimizer is not None:  # before anything changes
        check_optimizer_state(optimizer, (params[n] for n in scales))
    # Every new value is computed in float64 and checked to fit the parameter's dtype before
    # any is written: a rescaling the dtype cannot hold fails with the model untouched.
    new: dict[str, torch.Tensor] = {}
    for name, log_scale in scales.items():
        p = params[name]
        value = (p.detach().to(torch.float64)
                 * torch.exp(log_scale.to(p.device))).to(p.dtype)
        if not bool(torch.isfinite(value).all()):
            big = float((p.detach().to(torch.float64).abs()
                         * torch.exp(log_scale.to(p.device))).max())
            raise NonFiniteParameterError(
                f"rescaling parameter {name!r} would give values up to {big:.3g}, beyond "
                f"{p.dtype}'s range: the model was left unchanged; rescale a float64 model "
                "(model.double()), or start from a better-scaled initialisation")
        lost = int(((value == 0) & (p.detach() != 0)).sum())
        if lost:
            raise NonFiniteParameterError(
                f"rescaling parameter {name!r} would round {lost} nonzero entries to zero, "
                f"below {p.dtype}'s smallest value: the model was left unchanged; rescale "
                "a float32 or float64 model")
        new[name] = value
    for name, value in new.items():
        params[name].copy_(value)
    if optimizer is not None:
        transport_optimizer_state(optimizer, ((params[n], s) for n, s in scales.items()))


def _state_tensors(optimizer: torch.optim.Optimizer, p: torch.Tensor
                   ) -> list[tuple[str, torch.Tensor]]:
    """The per-element state tensors of ``p`` (scalars such as ``step`` left out)."""
    state = optimizer.state.get(p) or {}
    return [(k, v) for k, v in state.items() if isinstance(v, torch.Tensor) and v.dim() > 0]


def check_optimizer_state(optimizer: torch.optim.Optimizer,
                          parameters: Iterable[torch.Tensor]) -> None:
    """Raise :class:`~pathcond.errors.UnsupportedOptimizerError` if the optimizer keeps
    per-element state of one of ``parameters`` that :func:`transport_optimizer_state`
    cannot transport (call it before changing the parameters)."""
    if getattr(optimizer, "rescaling_invariant_state", False):
        return
    touched = {id(p): p for p in parameters}
    for p in touched.values():
        for key, _ in _state_tensors(optimizer, p):
            if key not in _STATE_POWERS:
                raise UnsupportedOptimizerError(
                    f"{type(optimizer).__name__} keeps state '{key}' that pathcond does not "
                    "know how to rescale: rescale before creating the optimizer, or create "
                    "a new one after rescaling (supported state: "
                    f"{', '.join(sorted(_STATE_POWERS))})")
    held = [p for g in optimizer.param_groups for p in g["params"]]
    if not any(id(p) in touched for p in held):
        return
    for p in held:  # state spanning several parameters (L-BFGS keeps its flat history under
        if id(p) in touched:  # its first parameter, whichever that is) covers rescaled ones
            continue
        for key, value in _state_tensors(optimizer, p):
            if value.shape != p.shape:
                raise UnsupportedOptimizerError(
                    f"{type(optimizer).__name__} keeps state '{key}' of shape "
                    f"{tuple(value.shape)} (not per entry of its parameter) over parameters "
                    "the rescaling changes: pathcond cannot transport it; rescale before "
                    "creating the optimizer, or create a new one after rescaling")


def transport_optimizer_state(optimizer: torch.optim.Optimizer,
                              parameter_scales: Iterable[tuple[nn.Parameter, torch.Tensor]]
                              ) -> None:
    """Rescale the optimizer state of each parameter whose values were multiplied by
    ``exp(log_scale)``; unknown per-parameter tensors raise (before any state changes)
    rather than go stale.
    Optimizers whose state lives in a rescaling-invariant space (G-space methods declare
    ``rescaling_invariant_state = True``) are left alone."""
    if getattr(optimizer, "rescaling_invariant_state", False):
        return
    pairs = list(parameter_scales)
    check_optimizer_state(optimizer, (p for p, _ in pairs))  # all or nothing
    for p, log_scale in pairs:
        for key, value in _state_tensors(optimizer, p):
            factor = torch.exp(_STATE_POWERS[key] * log_scale.to(value.device))
            value.copy_((value.to(torch.float64) * factor).to(value.dtype))
