"""Tracing networks into their rescaling graph (SPEC sections 1-2)."""

from .builder import rescaling_graph, resolve_graph
from .ops import Layer, Op
from .rescaling_graph import RescalingGraph
from .support import SupportReport, check_support

__all__ = ["Layer", "Op", "RescalingGraph", "SupportReport", "check_support", "rescaling_graph",
           "resolve_graph"]
