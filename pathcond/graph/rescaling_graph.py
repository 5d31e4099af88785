"""The rescaling graph: the traced network, its rescaling groups and the sparse matrix B."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .ops import Layer, Op


@dataclass(frozen=True)
class RescalingGraph:
    """A network's rescaling structure (SPEC sections 1-2).

    ``layers`` hold, for every parameterised layer, the group index of each output unit
    (``row_groups``, entry ``+1`` of B for the unit's incoming weights and bias) and of each
    input unit (``col_groups``, entry ``-1`` of B for the outgoing weights): B is stored as
    these index tensors, never densely. ``ops`` is the DAG used to evaluate the
    path-lifting quantities.
    """

    ops: tuple[Op, ...]
    layers: tuple[Layer, ...]
    layer_of_op: dict[int, int]
    output_ops: tuple[int, ...]
    input_shape: tuple[int, ...]
    num_groups: int
    group_members: tuple[tuple[tuple[int, int], ...], ...]

    @property
    def num_hidden_units(self) -> int:
        """Hidden units or channels that can be rescaled (members of a rescaling group): not
        those behind a BatchNorm without affine parameters, which nothing can rescale."""
        return sum(len(m) for m in self.group_members)

    @property
    def num_lifting_parameters(self) -> int:
        """G: entries of the (BatchNorm-folded) weights and biases of all layers."""
        total = 0
        for layer in self.layers:
            n = 1
            for s in layer.weight_shape:
                n *= int(s)
            total += n + (layer.out_units if layer.has_lifting_bias else 0)
        return total

    def group_name(self, group: int) -> str:
        """A readable name such as ``layer1.0.conv2[5]`` (ties joined by ``=``)."""
        return "=".join(f"{self.layers[li].name}[{unit}]" for li, unit in self.group_members[group])

    def group_sizes(self) -> torch.Tensor:
        """Number of tied units in each group."""
        return torch.tensor([len(m) for m in self.group_members], dtype=torch.int64)

    def summary(self) -> str:
        """One line: layers, lifting parameters, hidden units and rescaling groups."""
        return (
            f"{len(self.layers)} layers, {self.num_lifting_parameters:,} lifting parameters, "
            f"{self.num_hidden_units:,} hidden units in {self.num_groups:,} rescaling groups"
        )
