"""Path-lifting quantities: path-norms, number of paths, path magnitudes (SPEC section 3)."""

from .parameters import LiftingParameters, fold_layer, lifting_parameters
from .quantities import Magnitudes, magnitudes_of, num_paths, path_magnitudes, path_norm

__all__ = ["LiftingParameters", "Magnitudes", "fold_layer", "lifting_parameters",
           "magnitudes_of", "num_paths", "path_magnitudes", "path_norm"]
