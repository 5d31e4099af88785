"""Applying rescalings (to parameters, BatchNorm affine parameters and optimizer state) and
the PathCond rescaling itself."""

from .apply import (
    apply_rescaling,
    check_optimizer_state,
    parameter_log_scales,
    transport_optimizer_state,
)
from .pathcond import CriterionValue, DeadGroup, RescaleReport, build_problem, criterion, rescale
from .preconditioning import (
    geometric_mean,
    learning_rate_factors,
    pathcond_learning_rate_factors,
    pathcond_lr_scales,
)
from .schedule import PathCondSchedule, ScheduleEvent

__all__ = ["CriterionValue", "DeadGroup", "PathCondSchedule", "RescaleReport", "ScheduleEvent",
           "apply_rescaling", "build_problem", "check_optimizer_state", "criterion",
           "geometric_mean", "learning_rate_factors", "parameter_log_scales",
           "pathcond_learning_rate_factors", "pathcond_lr_scales", "rescale",
           "transport_optimizer_state"]
