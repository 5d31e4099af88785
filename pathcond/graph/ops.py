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
    "adaptive_maxpool",
    "reshape",
    "cat",
    "add",
    "scale",
    "mean",
    "select",
    "pad",
    "permute",
    "gather",
    "interpolate",
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
    """A parameterised linear map: ``nn.Linear``, ``nn.ConvNd`` or ``nn.ConvTransposeNd``,
    optionally followed by a BatchNorm folded into it in its eval-mode affine form (SPEC
    section 2).

    ``row_groups[k]`` is the rescaling group of output unit/channel ``k`` (``-1``: never
    rescaled). ``col_groups`` gives the group of each input unit/channel: shape ``(1, in)``
    for dense connectivity, ``(out, in_per_group)`` for grouped convolutions.
    ``weight_shape`` is the parameter's own shape; the path-lifting works on the weight in
    the *lifting layout* ``(out, in_per_group, *kernel)`` (:meth:`to_lifting`), which is the
    parameter itself except for a transposed convolution, whose parameter is
    ``(in, out_per_group, *kernel)``.
    """

    name: str
    kind: Literal["linear", "conv", "conv_transpose"]
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
        if self.kind == "conv_transpose":
            return int(self.weight_shape[1]) * self.groups
        return int(self.weight_shape[0])

    @property
    def groups(self) -> int:
        """Number of channel groups of a convolution (1 for a Linear layer)."""
        return int(self.conv_args.get("groups", 1))

    @property
    def lifting_shape(self) -> tuple[int, ...]:
        """The weight's shape in the lifting layout ``(out, in_per_group, *kernel)``."""
        if self.kind != "conv_transpose":
            return tuple(self.weight_shape)
        in_c, out_per_group, *kernel = self.weight_shape
        return (self.out_units, int(in_c) // self.groups, *kernel)

    def to_lifting(self, weight: torch.Tensor) -> torch.Tensor:
        """A tensor laid out like the parameter, in the lifting layout ``(out,
        in_per_group, *kernel)``: output channel ``g * out_per_group + j`` of group ``g``
        reads ``weight[g * in_per_group + i, j]`` (a transposed convolution's weight); the
        tensor itself for other layers. Trailing dimensions may be broadcast (size 1)."""
        return _swap_within_groups(weight, self.groups) if self.kind == "conv_transpose" \
            else weight

    def to_native(self, weight: torch.Tensor) -> torch.Tensor:
        """The inverse of :meth:`to_lifting`: a lifting-layout tensor laid out like the
        parameter (the same exchange of the first two dimensions within each group)."""
        return _swap_within_groups(weight, self.groups) if self.kind == "conv_transpose" \
            else weight

    def native_broadcast(self, tensor: torch.Tensor) -> torch.Tensor:
        """A lifting-layout tensor broadcastable to the weight (its kernel dimensions of size
        1), laid out like the parameter: itself, except for a transposed convolution, whose
        first two dimensions are spelled out and then exchanged (:meth:`to_native`)."""
        if self.kind != "conv_transpose":
            return tensor
        out, width = self.lifting_shape[:2]
        return self.to_native(tensor.expand(out, width, *tensor.shape[2:]))

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


def _swap_within_groups(weight: torch.Tensor, groups: int) -> torch.Tensor:
    """``(g * a, b, *rest) -> (g * b, a, *rest)``: the first two dimensions exchanged within
    each of the ``groups`` blocks of the first."""
    rows, cols, *rest = weight.shape
    blocks = weight.reshape(groups, rows // groups, cols, *rest).transpose(1, 2)
    return blocks.reshape(groups * cols, rows // groups, *rest)
