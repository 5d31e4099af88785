"""Applying rescalings to parameters, BatchNorm affine parameters and optimizer state."""

from .apply import apply_rescaling, parameter_log_scales, transport_optimizer_state

__all__ = ["apply_rescaling", "parameter_log_scales", "transport_optimizer_state"]
