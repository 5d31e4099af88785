"""What the SGD-like optimizers of :mod:`pathcond.optim` (:class:`~pathcond.optim.GSGD`,
:class:`~pathcond.optim.PathSGD`) share with ``torch.optim.SGD``: the checks of ``lr`` and
``momentum``, the closure convention of ``step`` and the heavy-ball buffer."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch


def check_lr_momentum(lr: float, momentum: float) -> None:
    """Refuse an ``lr`` that is not positive and finite, and a ``momentum`` outside
    ``[0, 1)``."""
    if not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be positive and finite, got {lr}")
    if not 0 <= momentum < 1:
        raise ValueError(f"momentum must be in [0, 1), got {momentum}")


def closure_loss(closure: Callable[[], float] | None) -> float | None:
    """The loss ``closure`` returns, evaluated with gradients enabled (``step`` runs under
    ``torch.no_grad``); ``None`` without a closure (torch.optim convention)."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


def heavy_ball(state: dict[str, Any], key: str, grad: torch.Tensor, momentum: float
               ) -> torch.Tensor:
    """``buf = momentum * buf + grad`` kept in ``state[key]`` (a copy of ``grad`` at the
    first step, as ``torch.optim.SGD``); returns the buffer."""
    buf = state.get(key)
    if buf is None:
        buf = state[key] = grad.detach().clone()
    else:
        buf.mul_(momentum).add_(grad)
    return buf
