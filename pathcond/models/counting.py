"""Size statistics of a model: parameter count and hidden units (SPEC Table 1 convention)."""

from __future__ import annotations

import torch.fx
from torch import nn

#: Layers whose output units / channels count as neurons.
UNIT_LAYERS: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of scalar parameters of ``model`` (BatchNorm buffers excluded)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def unit_layers_in_forward_order(model: nn.Module) -> list[nn.Module]:
    """The Linear / Conv modules of ``model`` in the order its ``forward`` first calls them.

    The order comes from ``torch.fx.symbolic_trace``; if the model cannot be traced, the
    registration order of ``model.modules()`` is used instead.
    """
    try:
        graph_module = torch.fx.symbolic_trace(model)
    except Exception:  # untraceable model: fall back on the declaration order
        return [m for m in model.modules() if isinstance(m, UNIT_LAYERS)]
    seen: set[int] = set()
    ordered: list[nn.Module] = []
    for node in graph_module.graph.nodes:
        if node.op != "call_module":
            continue
        module = graph_module.get_submodule(str(node.target))
        if isinstance(module, UNIT_LAYERS) and id(module) not in seen:
            seen.add(id(module))
            ordered.append(module)
    return ordered


def _units(module: nn.Module) -> int:
    if isinstance(module, nn.Linear):
        return int(module.out_features)
    if isinstance(module, nn.Conv1d | nn.Conv2d | nn.Conv3d):
        return int(module.out_channels)
    raise TypeError(f"not a Linear or Conv layer: {type(module).__name__}")


def count_hidden_units(model: nn.Module) -> int:
    """Hidden units as in the paper's Table 1 (SPEC section 6).

    The output units (Linear) or output channels (Conv) of every Linear/Conv layer except the
    last one in forward order; e.g. AlexNet: 64+192+384+256+256+4096+4096 = 9,344.
    Downsample convolutions of ResNets count; BatchNorm layers do not.
    """
    layers = unit_layers_in_forward_order(model)
    return sum(_units(m) for m in layers[:-1])
