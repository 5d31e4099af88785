"""PathCond at initialisation seen as learning rates (:mod:`pathcond.rescale.preconditioning`):
the per-parameter factors the controls of Fig 2 and Fig 5 train plain SGD with."""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Sequence

import torch
from torch import nn

from ..graph import RescalingGraph, rescaling_graph
from ..rescale import learning_rate_factors, rescale

__all__ = ["geometric_mean", "pathcond_factors", "seeded_model"]


def pathcond_factors(model: nn.Module, input_shape: Sequence[int]
                     ) -> tuple[RescalingGraph, dict[str, torch.Tensor]]:
    """The graph and ``exp(-2 B u*)`` of PathCond's ``u*`` for each parameter it touches
    (``model`` is left unchanged)."""
    graph = rescaling_graph(model, tuple(input_shape))
    report = rescale(copy.deepcopy(model), graph=graph)
    return graph, learning_rate_factors(model, graph, report.log_scales)


def geometric_mean(tensors: Iterable[torch.Tensor]) -> float:
    """The geometric mean of all entries, rounded to 4 significant digits (so that a unit's
    recorded learning rate does not depend on the last bits of the solve)."""
    logs = torch.cat([t.log().reshape(-1) for t in tensors])
    return float(f"{math.exp(float(logs.mean())):.4g}")


def seeded_model(name: str, seed: int, **args: object) -> nn.Module:
    """The zoo model the trainer builds for ``seed`` (it seeds torch right before), without
    touching the global random state."""
    from ..models import get_model

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return get_model(name, **args)
