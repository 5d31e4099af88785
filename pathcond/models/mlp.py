"""Fully connected ReLU networks, including the paper's Fig 2 MLP_BN (SPEC section 6)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from pathcond.errors import ConfigError

_ACTIVATIONS = ("relu", "leaky_relu")


def _activation(name: str, negative_slope: float) -> nn.Module:
    if name == "relu":
        return nn.ReLU()
    if name == "leaky_relu":
        return nn.LeakyReLU(negative_slope)
    raise ConfigError(f"activation must be one of {', '.join(_ACTIVATIONS)}; got {name!r}")


def _integer_widths(widths: Sequence[int]) -> list[int]:
    """``widths`` as a list of ints; :class:`ConfigError` for anything but a sequence of
    integers (``int(3.5)`` would silently build a layer of 3 units)."""
    try:
        values = list(widths)
    except TypeError:
        values = None
    if values is None or isinstance(widths, str | bytes):
        raise ConfigError(f"MLP widths must be a list of integers, e.g. [784, 64, 10]; "
                          f"got {widths!r}")
    out = []
    for w in values:
        try:
            ok = not isinstance(w, bool) and int(w) == w
        except (TypeError, ValueError, OverflowError):
            ok = False
        if not ok:
            raise ConfigError(f"MLP widths must be integers; got {w!r} in {values!r}")
        out.append(int(w))
    return out


class MLP(nn.Module):
    """Layered fully connected network ``widths[0] -> ... -> widths[-1]`` (SPEC section 6).

    Each hidden layer is ``Linear -> [BatchNorm1d] -> ReLU`` (or LeakyReLU); the last layer is
    a plain ``Linear``. Layers live in ``self.layers`` (an ``nn.Sequential``) in forward order.

    Args:
        widths: layer widths, input first and output last (at least two entries).
        bias: whether the hidden Linear layers have a bias.
        output_bias: whether the last Linear has a bias (defaults to ``bias``).
        batchnorm: put a ``BatchNorm1d`` after every hidden Linear, before its activation.
        activation: ``"relu"`` or ``"leaky_relu"``.
        negative_slope: slope of the LeakyReLU for negative inputs.
        flatten_input: flatten every sample to a vector first (``torch.flatten(x, 1)``).
    """

    def __init__(
        self,
        widths: Sequence[int],
        *,
        bias: bool = True,
        output_bias: bool | None = None,
        batchnorm: bool = False,
        activation: str = "relu",
        negative_slope: float = 0.01,
        flatten_input: bool = True,
    ) -> None:
        super().__init__()
        widths = _integer_widths(widths)
        if len(widths) < 2:
            raise ConfigError(f"MLP widths need at least an input and an output; got {widths}")
        if any(w < 1 for w in widths):
            raise ConfigError(f"MLP widths must be positive integers; got {widths}")
        if activation not in _ACTIVATIONS:
            raise ConfigError(
                f"activation must be one of {', '.join(_ACTIVATIONS)}; got {activation!r}"
            )
        self.widths: tuple[int, ...] = tuple(widths)
        self.flatten_input = flatten_input
        last_bias = bias if output_bias is None else output_bias
        layers: list[nn.Module] = []
        for fan_in, fan_out in zip(widths[:-2], widths[1:-1], strict=True):
            layers.append(nn.Linear(fan_in, fan_out, bias=bias))
            if batchnorm:
                layers.append(nn.BatchNorm1d(fan_out))
            layers.append(_activation(activation, negative_slope))
        layers.append(nn.Linear(widths[-2], widths[-1], bias=last_bias))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.flatten_input:
            x = torch.flatten(x, 1)
        out: torch.Tensor = self.layers(x)
        return out


def mlp_bn(depth: int, *, width: int = 500, in_features: int = 3072, num_classes: int = 10) -> MLP:
    """The paper's Fig 2 MLP_BN: ``in_features -> [width]*depth -> num_classes`` (SPEC sec. 6).

    Every hidden layer is ``Linear(no bias) -> BatchNorm1d -> ReLU``; the output layer is a
    ``Linear`` with bias; the input is flattened. ``depth`` counts the hidden layers (3..8 in
    the paper). Weights keep PyTorch's default (Kaiming uniform) initialisation.
    """
    if depth < 1:
        raise ConfigError(f"mlp_bn depth (number of hidden layers) must be >= 1; got {depth}")
    widths = [in_features, *([width] * depth), num_classes]
    return MLP(widths, bias=False, output_bias=True, batchnorm=True, flatten_input=True)
