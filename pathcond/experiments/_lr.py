"""PathCond at initialisation seen as learning rates (:mod:`pathcond.rescale.preconditioning`):
the per-parameter factors the controls of Fig 2 and Fig 5 train plain SGD with."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..graph import RescalingGraph, rescaling_graph
from ..rescale import geometric_mean, pathcond_learning_rate_factors

__all__ = ["geometric_mean", "pathcond_factors", "seeded_model"]


def pathcond_factors(model: nn.Module, input_shape: Sequence[int]
                     ) -> tuple[RescalingGraph, dict[str, torch.Tensor]]:
    """The graph and ``exp(-2 B u*)`` of PathCond's ``u*`` for each parameter it touches
    (``model`` is left unchanged)."""
    graph = rescaling_graph(model, tuple(input_shape))
    return graph, pathcond_learning_rate_factors(model, graph=graph)


def seeded_model(name: str, seed: int, **args: object) -> nn.Module:
    """The zoo model the trainer builds for ``seed`` (it seeds torch right before), without
    touching the global random state."""
    from ..models import get_model

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return get_model(name, **args)
