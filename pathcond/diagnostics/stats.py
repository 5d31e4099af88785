"""``pathcond stats``: parameters, hidden units, rescaling groups, paths and path magnitudes."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..graph import RescalingGraph, resolve_graph
from ..lifting import lifting_parameters, magnitudes_of, num_paths, path_norm


@dataclass(frozen=True)
class LayerMagnitudes:
    """Distribution of ``log10`` path magnitudes over one layer's weights (relative to the
    squared L2 path-norm, so comparable across layers)."""

    layer: str
    numel: int
    log10_min: float
    log10_median: float
    log10_max: float


@dataclass(frozen=True)
class ModelStats:
    """Counts and path-lifting summary of one model (paper Table 1 and SPEC section 3)."""

    num_parameters: int
    num_lifting_parameters: int
    num_hidden_units: int
    num_groups: int
    log10_num_paths: float
    l1_path_norm: float
    l2_path_norm: float
    am_gm: float
    layers: tuple[LayerMagnitudes, ...]

    def lines(self) -> list[str]:
        """The report as the lines ``pathcond stats`` prints."""
        paths = (f"{10 ** self.log10_num_paths:,.0f}" if self.log10_num_paths < 15
                 else f"10^{self.log10_num_paths:.4f}")
        out = [
            f"parameters            {self.num_parameters:,}",
            f"lifting parameters G  {self.num_lifting_parameters:,} (BatchNorm folded)",
            f"hidden units          {self.num_hidden_units:,}",
            f"rescaling groups      {self.num_groups:,}",
            f"paths                 {paths}",
            f"L1 / L2 path-norm     {self.l1_path_norm:.6g} / {self.l2_path_norm:.6g}",
            f"AM/GM of magnitudes   {self.am_gm:.6g}",
            "log10 path magnitudes per layer (relative to ||Phi||^2): min / median / max",
        ]
        for lm in self.layers:
            out.append(f"  {lm.layer:<28} {lm.log10_min:8.3f} {lm.log10_median:8.3f} "
                       f"{lm.log10_max:8.3f}   ({lm.numel:,} weights)")
        return out


def model_stats(model: nn.Module, input_shape: Sequence[int] | None = None, *,
                graph: RescalingGraph | None = None) -> ModelStats:
    """Count parameters, hidden units, groups and paths; summarise the path magnitudes."""
    graph = resolve_graph(model, input_shape, graph)
    mags = magnitudes_of(graph, lifting_parameters(model, graph))
    layers = []
    log_sum, total, count = 0.0, 0.0, 0
    for layer, w, b in zip(graph.layers, mags.weights, mags.biases, strict=True):
        pos = w[w > 0]
        if pos.numel():
            logs = torch.log10(pos)
            layers.append(LayerMagnitudes(layer.name, w.numel(), float(logs.min()),
                                          float(logs.median()), float(logs.max())))
        for t in (w, b):
            if t is not None:
                p = t[t > 0]
                log_sum += float(torch.log(p).sum())
                total += float(p.sum())
                count += p.numel()
    am_gm = (total / count) / math.exp(log_sum / count) if count else math.nan
    return ModelStats(
        num_parameters=sum(p.numel() for p in model.parameters()),
        num_lifting_parameters=graph.num_lifting_parameters,
        num_hidden_units=graph.num_hidden_units, num_groups=graph.num_groups,
        log10_num_paths=num_paths(model, graph=graph, log=True) / math.log(10),
        l1_path_norm=path_norm(model, graph=graph, p=1),
        l2_path_norm=path_norm(model, graph=graph, p=2), am_gm=am_gm, layers=tuple(layers))
