"""Check whether a model is supported, collecting every reason instead of raising."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import nn

from .builder import _build


@dataclass(frozen=True)
class SupportReport:
    """Outcome of :func:`check_support`."""

    supported: bool
    reasons: tuple[str, ...]
    num_groups: int | None
    num_hidden_units: int | None
    num_layers: int | None

    def __str__(self) -> str:
        if self.supported:
            return (f"supported: {self.num_layers} layers, {self.num_hidden_units} rescalable "
                    f"hidden units in {self.num_groups} rescaling groups")
        return "not supported:\n" + "\n".join(f"  - {r}" for r in self.reasons)


def check_support(model: nn.Module, input_shape: Sequence[int]) -> SupportReport:
    """Report whether ``model`` can be traced into a rescaling graph, with every reason found."""
    builder, problems = _build(model, input_shape)
    if problems or builder is None:
        return SupportReport(False, tuple(problems), None, None, None)
    graph = builder.finish()
    return SupportReport(True, (), graph.num_groups, graph.num_hidden_units, len(graph.layers))
