"""A model on the meta device has shapes and no values: the number of paths (architecture
only) is counted, anything that needs values is refused in one line."""

from __future__ import annotations

import pytest
import torch

import pathcond
from pathcond import UnsupportedModelError
from pathcond.models import MLP, tiny_resnet


@pytest.mark.parametrize(("build", "shape"), [
    (lambda: MLP([6, 8, 5, 3]), (6,)),
    (lambda: tiny_resnet(), (3, 16, 16)),
])
def test_num_paths_of_a_meta_model_is_the_real_models(build, shape) -> None:
    real = build()
    with torch.device("meta"):
        meta = build()
    assert next(meta.parameters()).is_meta
    assert pathcond.num_paths(meta, shape) == pathcond.num_paths(real, shape)
    assert pathcond.num_paths(meta, shape, log=True) == pathcond.num_paths(real, shape, log=True)
    assert pathcond.check_support(meta, shape).supported


@pytest.mark.parametrize("call", [
    lambda m: pathcond.path_norm(m, (6,)),
    lambda m: pathcond.path_magnitudes(m, (6,)),
    lambda m: pathcond.rescale(m, (6,)),
])
def test_values_of_a_meta_model_are_refused_by_name(call) -> None:
    with torch.device("meta"):
        model = MLP([6, 8, 5, 3])
    with pytest.raises(UnsupportedModelError, match=r"'layers\.0\.weight' is on the meta device"):
        call(model)
