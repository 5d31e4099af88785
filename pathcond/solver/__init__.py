"""The PathCond criterion and its exact solvers (SPEC section 4)."""

from .coloring import group_blocks
from .problem import GroupSums, RescalingProblem
from .solvers import SolveResult, solve_block, solve_coordinate, solve_newton

__all__ = ["GroupSums", "RescalingProblem", "SolveResult", "group_blocks", "solve_block",
           "solve_coordinate", "solve_newton"]
