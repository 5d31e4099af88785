"""pathcond: train ReLU networks with their rescaling symmetries in mind.

Path-lifting quantities (path-norms, number of paths, path magnitudes), the PathCond
rescaling and the methods it is compared with, on any network the tracer supports.
"""

from .errors import (
    CheckpointError,
    ConfigError,
    DatasetNotFoundError,
    NonFiniteParameterError,
    PathcondError,
    UnsupportedModelError,
    UnsupportedOptimizerError,
)
from .graph import RescalingGraph, SupportReport, check_support, rescaling_graph
from .lifting import lifting_parameters, num_paths, path_magnitudes, path_norm
from .rescale import (
    CriterionValue,
    DeadGroup,
    PathCondSchedule,
    RescaleReport,
    apply_rescaling,
    criterion,
    learning_rate_factors,
    parameter_log_scales,
    pathcond_lr_scales,
    rescale,
)

__version__ = "0.1.0"

__all__ = [
    "CheckpointError", "ConfigError", "CriterionValue", "DeadGroup", "PathCondSchedule",
    "RescaleReport",
    "criterion", "rescale", "DatasetNotFoundError", "NonFiniteParameterError",
    "PathcondError", "RescalingGraph", "SupportReport", "UnsupportedModelError",
    "UnsupportedOptimizerError",
    "apply_rescaling", "check_support", "learning_rate_factors", "lifting_parameters",
    "num_paths",
    "parameter_log_scales", "path_magnitudes", "pathcond_lr_scales", "path_norm", "rescaling_graph",
]
