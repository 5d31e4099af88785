"""Dataset names -> loaders, and :func:`load_dataset`, the one entry point for experiments."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pathcond.data.cifar10 import load_cifar10
from pathcond.data.fashion_mnist import load_fashion_mnist
from pathcond.data.mnist import load_mnist
from pathcond.data.sklearn_sets import load_digits, load_moons
from pathcond.data.splits import DataSplits, check_val_fraction, subsample_train
from pathcond.data.synthetic import synthetic_classification
from pathcond.errors import ConfigError

#: Name -> loader. Each loader takes ``seed`` and ``val_fraction`` keywords; those reading
#: files also take ``root``.
_LOADERS: dict[str, Callable[..., DataSplits]] = {
    "mnist": load_mnist,
    "fashion_mnist": load_fashion_mnist,
    "cifar10": load_cifar10,
    "moons": load_moons,
    "digits": load_digits,
    "synthetic": synthetic_classification,
}
_ALIASES = {"fashionmnist": "fashion_mnist", "fmnist": "fashion_mnist", "cifar_10": "cifar10"}
_COMMON = ("root", "seed", "val_fraction")


def available_datasets() -> list[str]:
    """The names :func:`load_dataset` accepts (aliases aside), in a fixed order."""
    return list(_LOADERS)


def canonical_name(name: str) -> str:
    """Normalise a dataset name (case, ``-`` vs ``_``, aliases) or raise :class:`ConfigError`."""
    key = str(name).strip().lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in _LOADERS:
        raise ConfigError(f"unknown dataset {name!r}; available: {', '.join(_LOADERS)}")
    return key


def dataset_options(name: str) -> list[str]:
    """The dataset-specific keyword options :func:`load_dataset` forwards for ``name``."""
    params = inspect.signature(_LOADERS[canonical_name(name)]).parameters
    return [p for p in params if p not in _COMMON]


def load_dataset(
    name: str, *, root: str | Path | None = None, seed: int = 0,
    val_fraction: float | None = None, limit: int | None = None, **options: Any,
) -> DataSplits:
    """Load a dataset into memory as :class:`DataSplits`.

    Args:
        name: one of :func:`available_datasets` (``"mnist"``, ``"fashion_mnist"``,
            ``"cifar10"``, ``"moons"``, ``"digits"``, ``"synthetic"``).
        root: where the files are, for the datasets read from disk (``None``: the default
            location of each, see its loader); refused for generated datasets.
        seed: seeds the train/validation split, the ``limit`` subsample and generated data.
        val_fraction: share of the training data held out for validation; ``None`` uses the
            dataset's default (MNIST / Fashion-MNIST 1/6 = 10k, CIFAR-10 0.2 = the paper's
            40k/10k, the others 0.2).
        limit: keep only this many training samples (seeded draw, for quick demos);
            validation and test sets are kept whole.
        **options: dataset-specific keywords, e.g. ``n`` and ``noise`` for ``"moons"``,
            ``n``, ``input_shape``, ``num_classes`` for ``"synthetic"``.

    Raises:
        ConfigError: unknown name or option, or an invalid value.
        DatasetNotFoundError: the data is not installed / not where ``root`` points.
    """
    key = canonical_name(name)
    loader = _LOADERS[key]
    params = inspect.signature(loader).parameters
    unknown = [opt for opt in options if opt in _COMMON or opt not in params]
    if unknown:
        allowed = ", ".join(dataset_options(key)) or "none"
        raise ConfigError(f"dataset {key!r} has no option {unknown[0]!r}; options: {allowed}")
    kwargs: dict[str, Any] = dict(options, seed=seed)
    if val_fraction is not None:
        kwargs["val_fraction"] = check_val_fraction(val_fraction)
    if "root" in params:
        kwargs["root"] = root
    elif root is not None:
        raise ConfigError(f"dataset {key!r} is generated, not read from files; drop root=")
    splits = loader(**kwargs)
    return subsample_train(splits, limit, seed)
