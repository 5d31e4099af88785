"""Intermediate representation of a traced network: parameterised layers joined by
positively homogeneous operations (SPEC section 1)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch

OpKind = Literal[
    "input",
    "layer",
    "activation",
    "maxpool",
    "avgpool",
    "adaptive_avgpool",
    "reshape",
    "cat",
    "add",
    "scale",
    "mean",
    "select",
    "pad",
    "permute",
]


@dataclass(frozen=True)
class Op:
    """One node of the network DAG, in topological order.

    ``inputs`` index earlier ops; ``attrs`` holds the operation's static arguments;
    ``shape`` is the per-sample output shape (batch dimension excluded).
    """

    kind: OpKind
    inputs: tuple[int, ...]
    shape: tuple[int, ...]
    source: str
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Layer:
    """A parameterised linear map: ``nn.Linear`` or ``nn.ConvNd``, optionally followed by a
    BatchNorm folded into it in its eval-mode affine form (SPEC section 2).

    ``row_groups[k]`` is the rescaling group of output unit/channel ``k`` (``-1``: never
    rescaled). ``col_groups`` gives the group of each input unit/channel: shape ``(1, in)``
    for dense connectivity, ``(out, in_per_group)`` for grouped convolutions.
    """

    name: str
    kind: Literal["linear", "conv"]
    weight_name: str
    bias_name: str | None
    batchnorm: str | None
    weight_shape: tuple[int, ...]
    row_groups: torch.Tensor
    col_groups: torch.Tensor
    conv_dims: int = 0
    conv_args: dict[str, Any] = field(default_factory=dict)
    batchnorm_affine: bool = True

    @property
    def out_units(self) -> int:
        """Output units (Linear) or channels (Conv) of the layer."""
        return int(self.weight_shape[0])

    @property
    def kernel_numel(self) -> int:
        """Number of weight entries per (output, input) channel pair."""
        n = 1
        for s in self.weight_shape[2:]:
            n *= int(s)
        return n

    @property
    def has_lifting_bias(self) -> bool:
        """Whether the layer, in its folded form, has a bias (a BatchNorm always adds one)."""
        return self.bias_name is not None or self.batchnorm is not None

    @property
    def lifting_bias_name(self) -> str | None:
        """Name under which the folded bias is reported: the BatchNorm's bias if folded."""
        if self.batchnorm is not None:
            return f"{self.batchnorm}.bias"
        return self.bias_name
