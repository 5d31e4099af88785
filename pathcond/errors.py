"""Exceptions raised by pathcond.

Every error a user can cause derives from :class:`PathcondError`, so command-line front ends
can print its one-line message instead of a traceback.
"""

from __future__ import annotations


class PathcondError(Exception):
    """Base class of every error pathcond raises on purpose."""


class UnsupportedModelError(PathcondError):
    """The model holds a module or operation that breaks the rescaling symmetry (or cannot
    be followed: a torch.compile or data-parallel wrapper, parameters without values).

    The message names the module's path in the model and the operation.
    """


class NonFiniteParameterError(PathcondError):
    """A parameter (or a BatchNorm statistic) is NaN or infinite, or a rescaling would make
    one so (or round a nonzero entry to zero) in its dtype."""


class DatasetNotFoundError(PathcondError):
    """A dataset is not installed or not where the user pointed; the message says how to fix it."""


class ConfigError(PathcondError):
    """A configuration file or command-line option is invalid; the message names the key."""


class CheckpointError(PathcondError):
    """A checkpoint is missing, truncated or corrupted."""


class UnsupportedOptimizerError(PathcondError, ValueError):
    """An optimizer keeps per-parameter state that pathcond cannot transport through a
    rescaling (e.g. L-BFGS's flat history); the message names the state entry."""
