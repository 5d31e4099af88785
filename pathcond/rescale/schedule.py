"""PathCond during training: when to rescale, with the optimizer state carried along.

The paper rescales once, at initialisation. :class:`PathCondSchedule` also rescales every
``k`` optimizer steps or epochs, or whenever the AM/GM ratio of the path magnitudes
exceeds a threshold; the optimizer's state is transported each time (SPEC section 5), so
training continues from a rescaling-equivalent point with equivalent momentum/moments.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..graph import RescalingGraph, resolve_graph
from .pathcond import RescaleReport, build_problem, rescale


@dataclass(frozen=True)
class ScheduleEvent:
    """One rescaling done by a schedule: when, why, and its report."""

    step: int
    epoch: int
    reason: str
    report: RescaleReport


#: Arguments of :func:`pathcond.rescale` the schedule passes itself.
_OWN_OPTIONS = ("model", "input_shape", "graph", "optimizer")


def _check_rescale_options(options: dict[str, Any]) -> None:
    """Refuse, at construction rather than at the first rescaling (maybe deep into
    training), an option :func:`pathcond.rescale` does not take or that the schedule sets."""
    known = [n for n in inspect.signature(rescale).parameters if n not in _OWN_OPTIONS]
    for key in options:
        if key in _OWN_OPTIONS:
            raise ValueError(f"rescale_options: {key!r} is set by PathCondSchedule itself; "
                             "pass it to PathCondSchedule directly")
        if key not in known:
            raise ValueError(f"rescale_options: pathcond.rescale has no option {key!r} "
                             f"(options: {', '.join(known)})")


class PathCondSchedule:
    """Apply PathCond to ``model`` at chosen times of training.

    Args:
        model: the network being trained.
        input_shape: one sample's shape (or give ``graph=``).
        optimizer: its state is transported at every rescaling.
        at_start: rescale in :meth:`start` (the paper's setting).
        every_steps: rescale after every ``every_steps`` calls of :meth:`after_step`.
        every_epochs: rescale after every ``every_epochs`` calls of :meth:`after_epoch`.
        am_gm_threshold: rescale when the AM/GM ratio of the path magnitudes exceeds it
            (checked after every ``check_every`` steps: one magnitude pass per check).
        rescale_options: passed to :func:`pathcond.rescale` (``tol``, ``solver``, ...).
    """

    def __init__(self, model: nn.Module, input_shape: Sequence[int] | None = None, *,
                 graph: RescalingGraph | None = None,
                 optimizer: torch.optim.Optimizer | None = None, at_start: bool = True,
                 every_steps: int | None = None, every_epochs: int | None = None,
                 am_gm_threshold: float | None = None, check_every: int = 1,
                 rescale_options: dict[str, Any] | None = None):
        for name, value in (("every_steps", every_steps), ("every_epochs", every_epochs)):
            if value is not None and (int(value) != value or value < 1):
                raise ValueError(f"{name} must be a positive integer, got {value}")
        if am_gm_threshold is not None and not am_gm_threshold >= 1.0:
            raise ValueError(f"am_gm_threshold must be >= 1 (AM/GM is always >= 1), "
                             f"got {am_gm_threshold}")
        if int(check_every) != check_every or check_every < 1:
            raise ValueError(f"check_every must be a positive integer, got {check_every}")
        _check_rescale_options(rescale_options or {})
        self.model = model
        self.graph = resolve_graph(model, input_shape, graph)
        self.optimizer = optimizer
        self.at_start = at_start
        self.every_steps = every_steps
        self.every_epochs = every_epochs
        self.am_gm_threshold = am_gm_threshold
        self.check_every = int(check_every)
        self.rescale_options = dict(rescale_options or {})
        self.steps = 0
        self.epochs = 0
        self.events: list[ScheduleEvent] = []

    def _rescale(self, reason: str) -> RescaleReport:
        report = rescale(self.model, graph=self.graph, optimizer=self.optimizer,
                         **self.rescale_options)
        self.events.append(ScheduleEvent(self.steps, self.epochs, reason, report))
        return report

    def am_gm(self) -> float:
        """Current AM/GM ratio of the path magnitudes (one magnitude pass)."""
        problem = build_problem(self.model, self.graph)
        return problem.am_gm(torch.zeros(self.graph.num_groups, dtype=problem.dtype,
                                         device=problem.device))

    def start(self) -> RescaleReport | None:
        """Call once before training: rescales if ``at_start``."""
        return self._rescale("start") if self.at_start else None

    def after_step(self) -> RescaleReport | None:
        """Call after each optimizer step; rescales when a step rule is due."""
        self.steps += 1
        if self.every_steps is not None and self.steps % self.every_steps == 0:
            return self._rescale(f"every {self.every_steps} steps")
        if self.am_gm_threshold is not None and self.steps % self.check_every == 0:
            ratio = self.am_gm()
            if ratio > self.am_gm_threshold:
                return self._rescale(f"AM/GM {ratio:.4g} > {self.am_gm_threshold:g}")
        return None

    def after_epoch(self) -> RescaleReport | None:
        """Call after each epoch; rescales when the epoch rule is due."""
        self.epochs += 1
        if self.every_epochs is not None and self.epochs % self.every_epochs == 0:
            return self._rescale(f"every {self.every_epochs} epochs")
        return None

    def state_dict(self) -> dict[str, int]:
        """Counters, for checkpoints (the graph is rebuilt from the model)."""
        return {"steps": self.steps, "epochs": self.epochs}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Restore the counters saved by :meth:`state_dict`."""
        self.steps = int(state["steps"])
        self.epochs = int(state["epochs"])
