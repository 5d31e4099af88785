"""A rescaling seen as a diagonal preconditioner of SGD.

For ``theta' = D theta`` with ``D = exp(B u)`` the loss is invariant, ``L(D theta) = L(theta)``
for every ``theta``, so ``grad L(D theta) = D^-1 grad L(theta)``. One SGD step of learning rate
``lr`` on ``theta'`` is therefore, mapped back by ``D^-1``, one step of learning rate
``lr * D^-2`` on ``theta``; by induction a whole SGD run (momentum included, weight decay
excluded) started from the rescaled parameters is the run with per-entry learning rates
``lr * exp(-2 B u)`` started from the original ones.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Sequence

import torch
from torch import nn

from ..graph import RescalingGraph, resolve_graph
from .apply import model_log_scales
from .pathcond import rescale

__all__ = ["geometric_mean", "learning_rate_factors", "pathcond_learning_rate_factors",
           "pathcond_lr_scales"]


def learning_rate_factors(model: nn.Module, graph: RescalingGraph, log_scales: torch.Tensor
                          ) -> dict[str, torch.Tensor]:
    """``exp(-2 B u)`` for every parameter the rescaling ``u`` touches, in the parameter's
    shape (float64): SGD on the rescaled model equals SGD on ``model`` with these per-entry
    learning-rate factors (module docstring; SPEC section 5 transports momentum by ``D^-1``).
    """
    params, scales = model_log_scales(model, graph, log_scales)
    return {name: torch.exp(-2.0 * log_scale).expand(params[name].shape).clone()
            for name, log_scale in scales.items()}


def pathcond_learning_rate_factors(model: nn.Module, input_shape: Sequence[int] | None = None,
                                   *, graph: RescalingGraph | None = None
                                   ) -> dict[str, torch.Tensor]:
    """:func:`learning_rate_factors` of PathCond's ``u*`` at ``model``'s current parameters:
    the per-entry learning rates at which plain SGD on ``model`` is SGD on PathCond's
    rescaling of it (``model`` itself is left unchanged; the solve runs on a copy)."""
    graph = resolve_graph(model, input_shape, graph)
    report = rescale(copy.deepcopy(model), graph=graph)
    return learning_rate_factors(model, graph, report.log_scales)


def geometric_mean(tensors: Iterable[torch.Tensor], *, digits: int | None = 4) -> float:
    """``exp(mean(log f))`` over all entries of ``tensors``, rounded to ``digits``
    significant digits (``None``: not rounded), so that a recorded learning rate does not
    depend on the last bits of a solve."""
    logs = torch.cat([t.double().log().reshape(-1) for t in tensors])
    value = math.exp(float(logs.mean()))
    return value if digits is None else float(f"{value:.{digits}g}")


def pathcond_lr_scales(model: nn.Module, input_shape: Sequence[int] | None = None, *,
                       graph: RescalingGraph | None = None) -> dict[str, float]:
    """PathCond at ``model``'s current parameters as one learning-rate factor per parameter
    tensor it rescales: the :func:`geometric_mean` (4 digits) of that tensor's
    :func:`pathcond_learning_rate_factors`. This is what ``optimizer.lr_scales: pathcond``
    resolves to; it equals PathCond exactly where a tensor's entries share one factor."""
    factors = pathcond_learning_rate_factors(model, input_shape, graph=graph)
    return {name: geometric_mean([f]) for name, f in sorted(factors.items())}
