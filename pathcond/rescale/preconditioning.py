"""A rescaling seen as a diagonal preconditioner of SGD.

For ``theta' = D theta`` with ``D = exp(B u)`` the loss is invariant, ``L(D theta) = L(theta)``
for every ``theta``, so ``grad L(D theta) = D^-1 grad L(theta)``. One SGD step of learning rate
``lr`` on ``theta'`` is therefore, mapped back by ``D^-1``, one step of learning rate
``lr * D^-2`` on ``theta``; by induction a whole SGD run (momentum included, weight decay
excluded) started from the rescaled parameters is the run with per-entry learning rates
``lr * exp(-2 B u)`` started from the original ones.
"""

from __future__ import annotations

import torch
from torch import nn

from ..graph import RescalingGraph
from .apply import model_log_scales

__all__ = ["learning_rate_factors"]


def learning_rate_factors(model: nn.Module, graph: RescalingGraph, log_scales: torch.Tensor
                          ) -> dict[str, torch.Tensor]:
    """``exp(-2 B u)`` for every parameter the rescaling ``u`` touches, in the parameter's
    shape (float64): SGD on the rescaled model equals SGD on ``model`` with these per-entry
    learning-rate factors (module docstring; SPEC section 5 transports momentum by ``D^-1``).
    """
    params, scales = model_log_scales(model, graph, log_scales)
    return {name: torch.exp(-2.0 * log_scale).expand(params[name].shape).clone()
            for name, log_scale in scales.items()}
