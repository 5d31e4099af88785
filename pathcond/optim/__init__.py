"""The rescaling-aware methods PathCond is compared with (SPEC section 5), on the rescaling
graph of any supported network: ENorm, Path-SGD, G-SGD / G-space, weight fixing.

See docs/methods.md for the equations and where they differ from the public code.
"""

from ._skeleton import INITS, STRATEGIES, Init, SkeletonInit, Strategy, init_skeleton
from .enorm import ENorm, ENormReport
from .gspace import GSGD, GSpace
from .path_sgd import PathSGD
from .weight_fixing import WeightFixing, WeightFixingReport

__all__ = ["ENorm", "ENormReport", "GSGD", "GSpace", "INITS", "Init", "PathSGD", "STRATEGIES",
           "SkeletonInit", "Strategy", "WeightFixing", "WeightFixingReport", "init_skeleton"]
