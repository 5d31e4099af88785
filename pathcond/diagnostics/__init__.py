"""Summaries of a model's rescaling structure and path-lifting quantities."""

from .stats import LayerMagnitudes, ModelStats, model_stats

__all__ = ["LayerMagnitudes", "ModelStats", "model_stats"]
