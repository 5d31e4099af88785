"""The :class:`DataSplits` container and the seeded operations on it.

Every random choice here draws from :func:`make_rng`, a numpy ``Generator`` built from the
user's seed and a fixed stream number, so a split, a subsample and a synthetic draw made with
the same seed never share random numbers, and results do not depend on torch's global RNG.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch

from pathcond.errors import ConfigError

#: Stream numbers passed to :func:`make_rng`, one per kind of random choice.
SPLIT_STREAM = 0
LIMIT_STREAM = 1
GENERATE_STREAM = 2


def make_rng(seed: int, stream: int) -> np.random.Generator:
    """Return a numpy generator for ``(seed, stream)``; the same pair gives the same numbers."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    return np.random.default_rng([int(seed), int(stream)])


@dataclass(frozen=True, eq=False, kw_only=True)
class DataSplits:
    """A dataset held in memory as tensors, split into train, validation and (optional) test.

    Images are float32 in ``[0, 1]`` with shape ``(N, C, H, W)``; class labels are int64 of
    shape ``(N,)``. For regression or autoencoding, ``num_classes`` is ``None`` and the
    targets are float tensors.

    Attributes:
        name: the dataset's registry name (e.g. ``"mnist"``).
        train_x, train_y: training inputs and targets.
        val_x, val_y: validation inputs and targets (may hold zero samples).
        test_x, test_y: test inputs and targets, both ``None`` when there is no test set.
        num_classes: number of classes, ``None`` for regression / autoencoding.
        input_shape: the shape of one input sample, ``train_x.shape[1:]``.
    """

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor | None = None
    test_y: torch.Tensor | None = None
    num_classes: int | None = None
    input_shape: tuple[int, ...]

    def __post_init__(self) -> None:
        """Check that the pieces fit together (lengths, sample shapes, test x/y pairing)."""
        shape = tuple(int(s) for s in self.train_x.shape[1:])
        if tuple(self.input_shape) != shape:
            raise ValueError(f"{self.name}: input_shape {self.input_shape} != sample shape {shape}")
        object.__setattr__(self, "input_shape", shape)
        if (self.test_x is None) != (self.test_y is None):
            raise ValueError(f"{self.name}: test_x and test_y must both be set or both be None")
        parts = [("train", self.train_x, self.train_y), ("val", self.val_x, self.val_y)]
        if self.test_x is not None and self.test_y is not None:
            parts.append(("test", self.test_x, self.test_y))
        for part, x, y in parts:
            if x.shape[0] != y.shape[0]:
                raise ValueError(
                    f"{self.name}: {part} has {x.shape[0]} inputs, {y.shape[0]} targets")
            if tuple(x.shape[1:]) != shape:
                raise ValueError(f"{self.name}: {part} samples have shape {tuple(x.shape[1:])}, "
                                 f"train samples {shape}")

    @property
    def num_train(self) -> int:
        """Number of training samples."""
        return int(self.train_x.shape[0])

    @property
    def num_val(self) -> int:
        """Number of validation samples."""
        return int(self.val_x.shape[0])

    @property
    def num_test(self) -> int:
        """Number of test samples (0 when there is no test set)."""
        return 0 if self.test_x is None else int(self.test_x.shape[0])

    def describe(self) -> str:
        """One line summarising the splits, e.g. ``mnist: train 50000, val 10000, ...``."""
        task = "regression" if self.num_classes is None else f"{self.num_classes} classes"
        test = "no test" if self.test_x is None else f"test {self.num_test}"
        return (f"{self.name}: train {self.num_train}, val {self.num_val}, {test}; "
                f"input {self.input_shape} {str(self.train_x.dtype).removeprefix('torch.')}; "
                f"{task}")


def check_val_fraction(val_fraction: float) -> float:
    """Return ``val_fraction`` as a float after checking it lies in ``[0, 1)``."""
    try:
        value = float(val_fraction)
    except (TypeError, ValueError):
        raise ConfigError(f"val_fraction must be a number in [0, 1), got {val_fraction!r}"
                          ) from None
    if isinstance(val_fraction, bool) or not 0.0 <= value < 1.0:
        raise ConfigError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    return value


def check_noise(owner: str, noise: object) -> float:
    """``noise`` (a standard deviation) as a float, or :class:`ConfigError` unless it is a
    finite number >= 0."""
    try:
        value = float(noise)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        value = math.nan
    if isinstance(noise, bool) or not (value >= 0.0 and math.isfinite(value)):
        raise ConfigError(f"{owner}: noise must be >= 0 and finite, got {noise!r}")
    return value


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split ``range(n)`` into sorted train and validation index arrays.

    The validation set holds ``round(n * val_fraction)`` indices drawn by a seeded permutation;
    both index arrays are sorted so that each subset keeps the original sample order.
    """
    n_val = int(round(n * check_val_fraction(val_fraction)))
    perm = make_rng(seed, SPLIT_STREAM).permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def train_val_split(
    x: torch.Tensor, y: torch.Tensor, val_fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split ``(x, y)`` into ``(train_x, train_y, val_x, val_y)`` with :func:`split_indices`."""
    train_idx, val_idx = split_indices(int(x.shape[0]), val_fraction, seed)
    tr, va = torch.from_numpy(train_idx), torch.from_numpy(val_idx)
    return x[tr], y[tr], x[va], y[va]


def subsample_train(splits: DataSplits, limit: int | None, seed: int) -> DataSplits:
    """Keep ``limit`` training samples chosen by a seeded draw (validation and test untouched).

    ``None`` or a limit at least the training size returns ``splits`` unchanged. The kept
    samples stay in their original order.
    """
    if limit is None:
        return splits
    if isinstance(limit, bool) or not isinstance(limit, int | np.integer) or limit <= 0:
        raise ConfigError(f"limit must be a positive integer or None, got {limit!r}")
    if limit >= splits.num_train:
        return splits
    keep = np.sort(make_rng(seed, LIMIT_STREAM).choice(splits.num_train, int(limit), replace=False))
    idx = torch.from_numpy(keep)
    return dataclasses.replace(splits, train_x=splits.train_x[idx], train_y=splits.train_y[idx])


def to_autoencoding(splits: DataSplits, *, flatten: bool = True) -> DataSplits:
    """Turn a dataset into an autoencoding task: targets are the inputs, ``num_classes=None``.

    Args:
        splits: the source dataset.
        flatten: if true, inputs and targets are flattened to ``(N, prod(input_shape))``
            (as for the paper's 784-...-784 MNIST autoencoder).
    """

    def prep(x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) if flatten else x  # also for an empty split

    train_x, val_x = prep(splits.train_x), prep(splits.val_x)
    test_x = None if splits.test_x is None else prep(splits.test_x)
    return DataSplits(
        name=f"{splits.name}-autoencoding",
        train_x=train_x, train_y=train_x,
        val_x=val_x, val_y=val_x,
        test_x=test_x, test_y=test_x,
        num_classes=None,
        input_shape=tuple(int(s) for s in train_x.shape[1:]),
    )


def image_classification_splits(
    name: str,
    train_images: np.ndarray,
    train_labels: np.ndarray,
    test_images: np.ndarray | None,
    test_labels: np.ndarray | None,
    *,
    num_classes: int,
    val_fraction: float,
    seed: int,
) -> DataSplits:
    """Build :class:`DataSplits` from ``uint8`` images ``(N, C, H, W)`` and integer labels.

    The training images are split into train and validation with :func:`split_indices`
    (the same split :func:`train_val_split` makes); the test set (if given) is kept whole.
    Splitting happens on the ``uint8`` arrays, before the (4x larger) float conversion.
    """
    # Local import keeps this module free of a cycle should convert ever need splits.
    from pathcond.data.convert import images_to_float, labels_to_int64

    tr, va = split_indices(int(train_images.shape[0]), val_fraction, seed)
    train_x, val_x = images_to_float(train_images[tr]), images_to_float(train_images[va])
    train_y, val_y = labels_to_int64(train_labels[tr]), labels_to_int64(train_labels[va])
    test_x = None if test_images is None else images_to_float(test_images)
    test_y = None if test_labels is None else labels_to_int64(test_labels)
    return DataSplits(
        name=name, train_x=train_x, train_y=train_y, val_x=val_x, val_y=val_y,
        test_x=test_x, test_y=test_y, num_classes=num_classes,
        input_shape=tuple(int(s) for s in train_x.shape[1:]),
    )
