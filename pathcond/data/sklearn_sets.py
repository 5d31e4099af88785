"""Small datasets from scikit-learn: two moons (2-D points) and digits (8x8 images)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from pathcond.data.splits import (
    GENERATE_STREAM,
    DataSplits,
    check_noise,
    make_rng,
    train_val_split,
)
from pathcond.errors import ConfigError, DatasetNotFoundError

DEFAULT_VAL_FRACTION = 0.2


def _sklearn_datasets() -> Any:
    """Import ``sklearn.datasets`` or say how to install scikit-learn."""
    try:
        import sklearn.datasets
    except ImportError:
        raise DatasetNotFoundError(
            "this dataset needs scikit-learn: pip install 'pathcond[experiments]'") from None
    return sklearn.datasets


def load_moons(
    n: int = 1000, noise: float = 0.1, *, seed: int = 0,
    val_fraction: float = DEFAULT_VAL_FRACTION,
) -> DataSplits:
    """Two interleaving half-circles (``sklearn.datasets.make_moons``), two classes.

    Args:
        n: total number of points (train + validation).
        noise: standard deviation of the Gaussian noise added to the points.
        seed: seeds both the points and the train/validation split.
        val_fraction: share of the points held out for validation.

    Returns:
        Inputs float32 ``(N, 2)``, labels int64 in {0, 1}, no test set.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ConfigError(f"moons: n must be an integer >= 2, got {n!r}")
    noise = check_noise("moons", noise)
    state = int(make_rng(seed, GENERATE_STREAM).integers(2**31 - 1))
    x, y = _sklearn_datasets().make_moons(n_samples=n, noise=float(noise), random_state=state)
    xt = torch.from_numpy(np.asarray(x, dtype=np.float32))
    yt = torch.from_numpy(np.asarray(y, dtype=np.int64))
    train_x, train_y, val_x, val_y = train_val_split(xt, yt, val_fraction, seed)
    return DataSplits(name="moons", train_x=train_x, train_y=train_y, val_x=val_x, val_y=val_y,
                      num_classes=2, input_shape=(2,))


def load_digits(*, seed: int = 0, val_fraction: float = DEFAULT_VAL_FRACTION) -> DataSplits:
    """The 1797 8x8 handwritten digits of ``sklearn.datasets.load_digits``, ten classes.

    Returns:
        Images float32 ``(N, 1, 8, 8)`` in [0, 1] (pixel values 0..16 divided by 16), labels
        int64, split into train and validation by ``seed``; no test set.
    """
    bunch = _sklearn_datasets().load_digits()
    images = np.asarray(bunch.images, dtype=np.float32)[:, None] / np.float32(16.0)
    x = torch.from_numpy(np.ascontiguousarray(images))
    y = torch.from_numpy(np.asarray(bunch.target, dtype=np.int64))
    train_x, train_y, val_x, val_y = train_val_split(x, y, val_fraction, seed)
    return DataSplits(name="digits", train_x=train_x, train_y=train_y, val_x=val_x, val_y=val_y,
                      num_classes=10, input_shape=(1, 8, 8))
