"""The rescaling structure of a model's *parameters*, shared by the optimizers of this package.

Every model parameter the rescaling touches is a :class:`Slot` with two index tensors,
broadcastable to the parameter (SPEC section 2; the same convention as
:func:`pathcond.parameter_log_scales`):

* ``dst``: the group ``h`` for which ``B[i, h] = +1`` (the unit the entry is an *incoming*
  parameter of), ``-1`` where there is none;
* ``src``: the group ``h`` for which ``B[i, h] = -1`` (the unit the entry is an *outgoing*
  weight of), ``-1`` where there is none.

So under ``theta' = exp(B u) theta`` an entry is multiplied by ``exp(u[dst] - u[src])``
(``u[-1] = 0``). A plain layer's weight has ``dst = row``, ``src = col``, its bias
``dst = row``; a layer followed by a BatchNorm has ``src = col`` only on its weight (its rows
are scale-invariant), nothing on its own bias, and the BatchNorm's weight and bias carry
``dst = row``.

Everything here is set-up work, done once per optimizer; the per-step code only uses the
index tensors.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from ..errors import UnsupportedModelError
from ..graph import RescalingGraph

Role = Literal["weight", "bias", "bn_weight", "bn_bias"]


@dataclass(frozen=True, eq=False)
class Slot:
    """One model parameter of the rescaling graph and its ``B`` structure."""

    name: str
    param: nn.Parameter
    layer: int  # index into graph.layers
    role: Role
    depth: int  # number of layers on the longest input path to this layer (1 = first)
    dst: torch.Tensor | None  # int64, broadcastable to param, -1 = none
    src: torch.Tensor | None

    @property
    def batchnorm(self) -> bool:
        """Whether this is a BatchNorm affine parameter."""
        return self.role in ("bn_weight", "bn_bias")

    @property
    def variant(self) -> bool:
        """Whether some rescaling changes this parameter."""
        return self.dst is not None or self.src is not None


def constant_dims(index: torch.Tensor) -> tuple[int, ...]:
    """The dimensions along which a group index broadcastable to a parameter is constant
    (its size-1 ones): summing over them gives one value per entry of ``index``."""
    return tuple(d for d in range(index.dim()) if index.shape[d] == 1)


def layer_depths(graph: RescalingGraph) -> list[int]:
    """Per layer, the largest number of layers on a path from the input to it (inclusive)."""
    depth: list[int] = []
    for op in graph.ops:
        d = max((depth[i] for i in op.inputs), default=0)
        depth.append(d + (1 if op.kind == "layer" else 0))
    out = [0] * len(graph.layers)
    for op_index, layer_index in graph.layer_of_op.items():
        out[layer_index] = depth[op_index]
    return out


class Structure:
    """The slots of a model for one rescaling graph, plus group-level facts.

    ``first_layer[h]``: smallest layer index among the units of group ``h``;
    ``distance[h]``: fewest outgoing-weight steps from ``h`` to a unit that is never rescaled
    (following entries whose ``dst`` group is strictly closer), the order in which the
    set-to-one reparametrisation of the thesis (section 6.3.1) proceeds.
    """

    def __init__(self, model: nn.Module, graph: RescalingGraph):
        self.graph = graph
        self.num_groups = graph.num_groups
        params = dict(model.named_parameters())
        first = next(iter(params.values()), None)
        self.device = first.device if first is not None else torch.device("cpu")
        depths = layer_depths(graph)
        slots: list[Slot] = []
        for li, layer in enumerate(graph.layers):
            rows = layer.row_groups.to(self.device)
            cols = layer.col_groups.to(self.device)
            trailing = (1,) * (len(layer.weight_shape) - 2)
            rows_w = layer.native_broadcast(rows.reshape(-1, 1, *trailing))
            cols_w = layer.native_broadcast(cols.reshape(*cols.shape, *trailing))
            d = depths[li]

            def add(name: str, role: Role, dst: torch.Tensor | None, src: torch.Tensor | None,
                    li: int = li, d: int = d) -> None:
                if name not in params:
                    raise ValueError(f"model has no parameter {name!r}: was the graph built "
                                     "from another model?")
                slots.append(Slot(name, params[name], li, role, d, dst, src))

            if layer.batchnorm is None:
                add(layer.weight_name, "weight", rows_w, cols_w)
                if layer.bias_name is not None:
                    add(layer.bias_name, "bias", rows, None)
            else:
                add(layer.weight_name, "weight", None, cols_w)
                if layer.bias_name is not None:
                    add(layer.bias_name, "bias", None, None)
                for suffix, role in (("weight", "bn_weight"), ("bias", "bn_bias")):
                    name = f"{layer.batchnorm}.{suffix}"
                    if name in params:
                        add(name, role, rows, None)  # type: ignore[arg-type]
        self.slots: tuple[Slot, ...] = tuple(slots)
        self.slot_of: dict[str, int] = {s.name: i for i, s in enumerate(self.slots)}
        known = {id(s.param) for s in self.slots}
        self.others: tuple[nn.Parameter, ...] = tuple(
            p for p in params.values() if id(p) not in known)
        h = self.num_groups
        self.first_layer = torch.full((h,), len(graph.layers), dtype=torch.int64)
        for g, members in enumerate(graph.group_members):
            self.first_layer[g] = min(li for li, _ in members)
        self.first_layer = self.first_layer.to(self.device)
        self.distance = self._distances()

    # ------------------------------------------------------------------ helpers
    def ext(self, index: torch.Tensor) -> torch.Tensor:
        """Map group index ``-1`` to ``H`` (for ``index_add_`` into ``H + 1`` slots)."""
        return torch.where(index < 0, self.num_groups, index)

    def transposed(self, slot: Slot) -> bool:
        """Whether ``slot`` belongs to a transposed convolution: its ``dst`` and ``src`` are
        then given entry by entry, in the parameter's ``(in, out_per_group, *kernel)``
        layout, and the (row, column) helpers below read the layer's lifting layout."""
        return self.graph.layers[slot.layer].kind == "conv_transpose"

    def weight_slots(self) -> Iterator[tuple[int, Slot]]:
        """Slots with outgoing entries (``src`` set): the weights."""
        for i, s in enumerate(self.slots):
            if s.src is not None:
                yield i, s

    def pair_dst(self, slot: Slot) -> torch.Tensor:
        """``(out, 1)`` dst group of each row of a weight slot (``-1`` where none), rows
        and columns those of the lifting layout ``(out, in_per_group, *kernel)``."""
        layer = self.graph.layers[slot.layer]
        out = layer.out_units
        if slot.dst is None:
            return torch.full((out, 1), -1, dtype=torch.int64, device=self.device)
        if self.transposed(slot):
            return layer.row_groups.to(self.device).reshape(out, 1)
        return slot.dst.reshape(out, 1)

    def pair_src(self, slot: Slot) -> torch.Tensor:
        """``(1, in)`` or ``(out, in_per_group)`` src group of each (row, column) pair."""
        assert slot.src is not None
        if self.transposed(slot):
            return self.graph.layers[slot.layer].col_groups.to(self.device)
        return slot.src.reshape(slot.src.shape[0], slot.src.shape[1])

    def global_columns(self, slot: Slot) -> torch.Tensor:
        """Input-channel index of each column of ``pair_src`` (grouped convs included)."""
        src = self.pair_src(slot)
        out, width = self.graph.layers[slot.layer].out_units, int(src.shape[1])
        cols = torch.arange(width, device=self.device).unsqueeze(0)
        if src.shape[0] == 1:
            return cols
        groups = int(self.graph.layers[slot.layer].conv_args.get("groups", 1))
        per_out = out // groups
        k = torch.arange(out, device=self.device).unsqueeze(1)
        return (k // per_out) * width + cols

    def edges(self) -> torch.Tensor:
        """``(E, 2)`` distinct (src, dst) group pairs joined by some weight entry, src >= 0."""
        pairs: list[torch.Tensor] = []
        for _, slot in self.weight_slots():
            src = self.pair_src(slot)
            dst = self.pair_dst(slot)
            if src.shape[0] == 1:
                s = torch.unique(src)
                d = torch.unique(dst)
                s, d = torch.meshgrid(s, d, indexing="ij")
            else:
                s, d = torch.broadcast_tensors(src, dst)
            pairs.append(torch.stack([s.reshape(-1), d.reshape(-1)], 1))
        if not pairs:
            return torch.zeros((0, 2), dtype=torch.int64, device=self.device)
        both = torch.cat(pairs)
        both = both[(both[:, 0] >= 0) & (both[:, 0] != both[:, 1])]
        base = self.num_groups + 1  # 1-D keys: unique(dim=0) is slow
        keys = torch.unique(both[:, 0] * base + (both[:, 1] + 1))
        return torch.stack([keys // base, keys % base - 1], 1)

    def _distances(self) -> torch.Tensor:
        h = self.num_groups
        inf = torch.iinfo(torch.int64).max // 4
        dist = torch.full((h + 1,), inf, dtype=torch.int64, device=self.device)
        dist[h] = 0
        e = self.edges()
        if h == 0:
            return dist[:h]
        src, dst = e[:, 0], self.ext(e[:, 1])
        for _ in range(h + 1):
            cand = dist[dst] + 1
            new = dist.scatter_reduce(0, src, cand, reduce="amin", include_self=True)
            if torch.equal(new, dist):
                break
            dist = new
        dist = dist[:h]
        unreachable = torch.nonzero(dist >= inf).flatten().tolist()
        if unreachable:
            raise UnsupportedModelError(
                f"rescaling group {self.graph.group_name(unreachable[0])} has no outgoing "
                "weight leading towards the output without coming back to it, so no weight "
                "can be fixed for it (no skeleton exists for this structure)")
        return dist

    def scales_of(self, u: torch.Tensor) -> list[torch.Tensor | None]:
        """``B u`` per slot, broadcastable to the parameter (``None`` where invariant)."""
        ext = torch.cat([u, u.new_zeros(1)])
        out: list[torch.Tensor | None] = []
        for s in self.slots:
            value: torch.Tensor | None = None
            if s.dst is not None:
                value = ext[s.dst]
            if s.src is not None:
                value = -ext[s.src] if value is None else value - ext[s.src]
            out.append(value)
        return out


def kernel_center_order(shape: tuple[int, ...]) -> torch.Tensor:
    """Flat kernel positions sorted by Manhattan distance to the kernel's centre (then by
    position): the structural preference for the entry of a (row, column) pair."""
    kernel = shape[2:]
    if not kernel:
        return torch.zeros(1, dtype=torch.int64)
    grids = torch.meshgrid(*[torch.arange(k) for k in kernel], indexing="ij")
    dist = sum((g - (k - 1) // 2).abs() for g, k in zip(grids, kernel, strict=True))
    assert isinstance(dist, torch.Tensor)
    flat = dist.reshape(-1)
    n = flat.numel()
    key = flat * n + torch.arange(n)
    return torch.argsort(key)
