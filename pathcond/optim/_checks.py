"""Argument checks the optimizers and rescalers of :mod:`pathcond.optim` share, so that a
misuse fails at construction, in one line, before the model is touched."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

__all__ = ["ModelParamGroups", "check_attached_optimizer", "check_model",
           "check_trainable"]


def check_model(owner: str, model: Any) -> None:
    """Refuse a first argument that is not the model (e.g. ``model.parameters()``, the
    ``torch.optim`` habit): the methods need the network's structure."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"{owner} takes the model first (an nn.Module, whose structure it "
                        f"needs), got {type(model).__name__}: e.g. {owner}(model, input_shape, "
                        "...); pass parameter groups with params=")


def check_attached_optimizer(owner: str, model: nn.Module, optimizer: Any) -> None:
    """Refuse an ``optimizer`` that is not a ``torch.optim.Optimizer`` instance, or that
    holds none of ``model``'s parameters (its steps would not train this model); one of
    this package built on a model (``optimizer.model``, e.g. :class:`GSpace`, whose groups
    hold basis-path values) must be built on ``model``."""
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"{owner}: optimizer must be a torch.optim.Optimizer instance, got "
                        f"{type(optimizer).__name__}")
    built_on = getattr(optimizer, "model", None)
    if isinstance(built_on, nn.Module):
        if built_on is not model:
            raise ValueError(f"{owner}: the optimizer was built on another model")
        return
    own = {id(p) for p in model.parameters()}
    if not any(id(p) in own for g in optimizer.param_groups for p in g["params"]):
        raise ValueError(f"{owner}: the optimizer holds none of the model's parameters "
                         "(was it built on another model?)")


def check_trainable(owner: str, named: Iterable[tuple[str, torch.Tensor]]) -> None:
    """Refuse a frozen parameter (``requires_grad=False``) among ``named``: a G-space step
    moves every weight of the rescaling graph (a weight is a basis-path value divided by
    skeleton weights), so it cannot keep one constant."""
    for name, p in named:
        if not p.requires_grad:
            raise ValueError(f"{owner}: parameter {name!r} is frozen (requires_grad=False); a "
                             "G-space step moves every weight of the rescaling graph, so "
                             "freezing part of it is not supported: unfreeze it, or train "
                             "with another method")


class ModelParamGroups(torch.optim.Optimizer):
    """A ``torch.optim.Optimizer`` of one model's parameters: a parameter group holding a
    tensor that is not one of them is refused when it is added (at construction or by
    :meth:`add_param_group`). Subclasses set ``_own_param_ids`` (the ids of the model's
    parameters) before ``__init__``."""

    _own_param_ids: frozenset[int]

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        params = param_group["params"]
        if isinstance(params, set):  # torch.optim refuses unordered collections
            super().add_param_group(param_group)
        params = [params] if isinstance(params, torch.Tensor) else list(params)
        own = getattr(self, "_own_param_ids", None)
        if own is not None and any(id(p) not in own for p in params):
            raise ValueError(f"{type(self).__name__} got a parameter that is not one of the "
                             "model's")
        super().add_param_group({**param_group, "params": params})
