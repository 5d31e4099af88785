"""The one-neuron toy network of the paper's Fig 1: ``x -> v * relu(w * x)``."""

from __future__ import annotations

import torch
from torch import nn


class OneNeuron(nn.Module):
    """Linear(1, 1, bias=False) -> ReLU -> Linear(1, 1, bias=False) (paper Fig 1, SPEC sec. 6).

    The two scalar weights are ``self.w.weight`` and ``self.v.weight``; pass ``w`` / ``v`` to
    set them, otherwise PyTorch's default initialisation (uniform on [-1, 1]) is used.
    """

    def __init__(self, w: float | None = None, v: float | None = None) -> None:
        super().__init__()
        self.w = nn.Linear(1, 1, bias=False)
        self.relu = nn.ReLU()
        self.v = nn.Linear(1, 1, bias=False)
        with torch.no_grad():
            if w is not None:
                self.w.weight.fill_(w)
            if v is not None:
                self.v.weight.fill_(v)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.v(self.relu(self.w(x)))
        return out
