"""Per-layer distribution of log path magnitudes before and after a rescaling (a figure)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .._files import save_figure
from ..graph import RescalingGraph
from ..lifting import lifting_parameters, magnitudes_of

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
_MAX_SAMPLES = 200_000


@dataclass(frozen=True)
class LayerDistribution:
    """Quantiles (``QUANTILES``) of ``log10 m`` over one layer's weights, before and after;
    magnitudes relative to the squared L2 path-norm (unchanged by rescaling)."""

    layer: str
    before: tuple[float, ...]
    after: tuple[float, ...]


def _quantiles(values: torch.Tensor) -> tuple[float, ...]:
    flat = values.reshape(-1)
    flat = flat[flat > 0]
    if flat.numel() == 0:
        return tuple(math.nan for _ in QUANTILES)
    if flat.numel() > _MAX_SAMPLES:  # a deterministic, evenly spread subsample
        flat = flat.sort().values[torch.linspace(0, flat.numel() - 1, _MAX_SAMPLES).long()]
    q = torch.quantile(torch.log10(flat), torch.tensor(QUANTILES, dtype=flat.dtype))
    return tuple(float(v) for v in q)


def magnitude_distributions(model: nn.Module, graph: RescalingGraph,
                            log_scales: torch.Tensor) -> tuple[LayerDistribution, ...]:
    """Distributions of the path magnitudes of ``model`` and of its rescaling by
    ``log_scales``, from one magnitude pass: ``m' = m exp(-2 B u)`` (SPEC section 3)."""
    mags = magnitudes_of(graph, lifting_parameters(model, graph))
    u = log_scales.to(torch.float64)
    ext = torch.cat([u, u.new_zeros(1)])
    h = graph.num_groups
    out = []
    for layer, m in zip(graph.layers, mags.weights, strict=True):
        rows = ext[torch.where(layer.row_groups < 0, h, layer.row_groups)]
        cols = ext[torch.where(layer.col_groups < 0, h, layer.col_groups)]
        shift = rows.unsqueeze(1) - cols  # (out, in): B u of the folded weight
        shift = shift.reshape(*shift.shape, *([1] * (m.dim() - 2)))
        after = m * torch.exp(-2.0 * shift.to(m.device))
        out.append(LayerDistribution(layer.name, _quantiles(m), _quantiles(after)))
    return tuple(out)


def plot_magnitude_distributions(rows: tuple[LayerDistribution, ...], path: str | Path, *,
                                 title: str = "") -> Path:
    """Draw one box per layer (5-95% whiskers, quartile box, median) before and after, and
    write it atomically (PNG, SVG or PDF by the suffix)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.28 * len(rows) + 2.0), 4.2))
    for offset, key, colour in ((-0.18, "before", "tab:gray"), (0.18, "after", "tab:blue")):
        for i, row in enumerate(rows):
            q05, q25, q50, q75, q95 = getattr(row, key)
            x = i + offset
            ax.plot([x, x], [q05, q95], color=colour, lw=1)
            ax.add_patch(plt.Rectangle((x - 0.14, q25), 0.28, q75 - q25, color=colour,
                                       alpha=0.6, label=key if i == 0 else None))
            ax.plot([x - 0.14, x + 0.14], [q50, q50], color="black", lw=1)
    ax.set_xticks(range(len(rows)), [r.layer for r in rows], rotation=90, fontsize=7)
    ax.set_xlim(-0.7, len(rows) - 0.3)
    ax.set_ylabel("log10 path magnitude / ||Phi||^2")
    ax.set_title(title or "path magnitudes per layer before and after PathCond")
    ax.legend(loc="best")
    fig.tight_layout()
    try:
        return save_figure(fig, path)
    finally:
        plt.close(fig)
