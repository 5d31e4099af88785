"""Offline datasets, loaded into memory as tensors.

Use :func:`load_dataset` (names in :func:`available_datasets`); it returns a
:class:`DataSplits` with train / validation / optional test tensors. Images are float32 in
``[0, 1]`` shaped ``(N, C, H, W)``, class labels int64. Everything is deterministic given the
seed. The per-dataset loaders and the writers of synthetic on-disk data live in the
submodules (``mnist``, ``fashion_mnist``, ``cifar10``, ``sklearn_sets``, ``synthetic``,
``idx``).
"""

from __future__ import annotations

from pathcond.data.cifar10 import load_cifar10
from pathcond.data.errors import DatasetFormatError
from pathcond.data.fashion_mnist import load_fashion_mnist
from pathcond.data.mnist import load_mnist
from pathcond.data.registry import available_datasets, load_dataset
from pathcond.data.sklearn_sets import load_digits, load_moons
from pathcond.data.splits import DataSplits, subsample_train, to_autoencoding
from pathcond.data.synthetic import synthetic_classification

__all__ = [
    "DataSplits",
    "DatasetFormatError",
    "available_datasets",
    "load_cifar10",
    "load_dataset",
    "load_digits",
    "load_fashion_mnist",
    "load_mnist",
    "load_moons",
    "subsample_train",
    "synthetic_classification",
    "to_autoencoding",
]
