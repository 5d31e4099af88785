"""load_dataset, DataSplits, the seeded split/limit helpers and the generated datasets."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from pathcond.data import (
    DataSplits,
    available_datasets,
    load_dataset,
    subsample_train,
    synthetic_classification,
    to_autoencoding,
)
from pathcond.data.synthetic import fake_mnist_arrays, write_idx_directory
from pathcond.errors import ConfigError

NAMES = ["mnist", "fashion_mnist", "cifar10", "moons", "digits", "synthetic"]


def test_available_datasets() -> None:
    assert available_datasets() == NAMES


def test_unknown_name_lists_names() -> None:
    with pytest.raises(ConfigError) as info:
        load_dataset("imagenet")
    assert str(info.value) == f"unknown dataset 'imagenet'; available: {', '.join(NAMES)}"


def test_aliases() -> None:
    assert load_dataset("Synthetic").name == "synthetic"


def test_fashion_alias_with_root(tmp_path: Path) -> None:
    write_idx_directory(tmp_path, fake_mnist_arrays(12, 4))
    ds = load_dataset("Fashion-MNIST", root=tmp_path, val_fraction=0.25, limit=5)
    assert (ds.name, ds.num_train, ds.num_val, ds.num_test) == ("fashion_mnist", 5, 3, 4)


def test_unknown_option() -> None:
    msg = "dataset 'moons' has no option 'depth'; options: n, noise"
    with pytest.raises(ConfigError, match=msg):
        load_dataset("moons", depth=3)
    with pytest.raises(ConfigError, match="dataset 'digits' has no option 'n'; options: none"):
        load_dataset("digits", n=3)


def test_root_refused_for_generated_data(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'moons' is generated, not read from files; drop root="):
        load_dataset("moons", root=tmp_path)


@pytest.mark.parametrize("bad", [-0.1, 1.0, 2])
def test_bad_val_fraction(bad: float) -> None:
    with pytest.raises(ConfigError, match=r"val_fraction must be in \[0, 1\)"):
        load_dataset("moons", val_fraction=bad)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_bad_limit(bad: object) -> None:
    with pytest.raises(ConfigError, match="limit must be a positive integer or None"):
        load_dataset("moons", limit=bad)  # type: ignore[arg-type]


def test_bad_seed() -> None:
    with pytest.raises(ConfigError, match="seed must be a non-negative integer"):
        load_dataset("moons", seed=-1)


def test_limit_is_deterministic_subset() -> None:
    full = load_dataset("moons", n=200, seed=4)
    a = load_dataset("moons", n=200, seed=4, limit=50)
    b = load_dataset("moons", n=200, seed=4, limit=50)
    assert a.num_train == 50 and torch.equal(a.train_x, b.train_x)
    assert torch.equal(a.val_x, full.val_x)  # validation untouched
    rows = {tuple(r) for r in full.train_x.tolist()}
    assert all(tuple(r) in rows for r in a.train_x.tolist())
    assert load_dataset("moons", n=200, seed=4, limit=10_000).num_train == full.num_train


def test_moons() -> None:
    ds = load_dataset("moons", n=300, noise=0.2, seed=1)
    assert (ds.num_train, ds.num_val, ds.num_test) == (240, 60, 0) and ds.test_x is None
    assert ds.input_shape == (2,) and ds.train_x.dtype == torch.float32
    assert ds.num_classes == 2 and set(ds.train_y.tolist()) == {0, 1}
    again = load_dataset("moons", n=300, noise=0.2, seed=1)
    other = load_dataset("moons", n=300, noise=0.2, seed=2)
    assert torch.equal(ds.train_x, again.train_x) and not torch.equal(ds.train_x, other.train_x)
    with pytest.raises(ConfigError, match="moons: noise must be >= 0"):
        load_dataset("moons", noise=-1.0)


def test_digits() -> None:
    ds = load_dataset("digits", val_fraction=0.25)
    assert ds.num_train + ds.num_val == 1797 and ds.num_val == 449
    assert ds.input_shape == (1, 8, 8) and ds.train_x.shape[1:] == (1, 8, 8)
    assert float(ds.train_x.min()) == 0.0 and float(ds.train_x.max()) == 1.0
    assert ds.num_classes == 10 and ds.train_y.dtype == torch.int64


def test_synthetic() -> None:
    ds = synthetic_classification(100, (3, 4, 4), 5, seed=7)
    assert ds.input_shape == (3, 4, 4) and (ds.num_train, ds.num_val) == (80, 20)
    counts = torch.cat([ds.train_y, ds.val_y]).bincount().tolist()
    assert counts == [20] * 5
    same = load_dataset("synthetic", n=100, input_shape=(3, 4, 4), num_classes=5, seed=7)
    assert torch.equal(ds.train_x, same.train_x) and torch.equal(ds.val_y, same.val_y)
    with pytest.raises(ConfigError, match="num_classes must be an integer >= 2"):
        synthetic_classification(10, (2,), 1)


def test_datasplits_is_frozen_and_checked() -> None:
    ds = synthetic_classification(20, (4,), 2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ds.name = "x"  # type: ignore[misc]
    with pytest.raises(ValueError, match="input_shape"):
        dataclasses.replace(ds, input_shape=(5,))
    with pytest.raises(ValueError, match="train has 16 inputs, 15 targets"):
        dataclasses.replace(ds, train_y=ds.train_y[:-1])
    with pytest.raises(ValueError, match="test_x and test_y must both be set"):
        dataclasses.replace(ds, test_x=ds.val_x)


def test_describe_is_one_line() -> None:
    ds = synthetic_classification(20, (1, 2, 2), 2, val_fraction=0.25)
    assert ds.describe() == ("synthetic: train 15, val 5, no test; input (1, 2, 2) float32; "
                             "2 classes")


def test_to_autoencoding() -> None:
    ds = to_autoencoding(synthetic_classification(20, (1, 2, 3), 2))
    assert ds.num_classes is None and ds.input_shape == (6,)
    assert ds.train_y is ds.train_x and ds.val_x.shape == (4, 6)
    assert "regression" in ds.describe()
    empty = to_autoencoding(synthetic_classification(20, (1, 2, 3), 2, val_fraction=0.0))
    assert empty.val_x.shape == (0, 6) and empty.input_shape == (6,)


def test_subsample_keeps_order() -> None:
    ds = DataSplits(name="t", train_x=torch.arange(10.0)[:, None], train_y=torch.arange(10),
                    val_x=torch.zeros(0, 1), val_y=torch.zeros(0, dtype=torch.int64),
                    input_shape=(1,))
    sub = subsample_train(ds, 4, seed=0)
    assert sub.train_y.tolist() == sorted(sub.train_y.tolist()) and sub.num_train == 4
    assert torch.equal(sub.train_x[:, 0].long(), sub.train_y)


def test_uint8_split_matches_tensor_split() -> None:
    """Image loaders split before converting; the split must be the one train_val_split makes."""
    import numpy as np

    from pathcond.data.splits import image_classification_splits, train_val_split

    images = np.random.default_rng(0).integers(0, 256, (30, 1, 2, 2), dtype=np.uint8)
    labels = np.arange(30) % 3
    ds = image_classification_splits("t", images, labels, None, None, num_classes=3,
                                     val_fraction=0.3, seed=9)
    x = torch.from_numpy(images).float() / 255
    tx, ty, vx, vy = train_val_split(x, torch.from_numpy(labels), 0.3, seed=9)
    assert torch.equal(ds.train_x, tx) and torch.equal(ds.val_x, vx)
    assert torch.equal(ds.train_y, ty) and torch.equal(ds.val_y, vy) and ds.test_x is None


@pytest.mark.parametrize(("name", "options", "match"), [
    ("synthetic", {"noise": "a"}, "synthetic: noise must be >= 0 and finite"),
    ("synthetic", {"noise": float("nan")}, "synthetic: noise must be >= 0 and finite"),
    ("synthetic", {"noise": -1.0}, "synthetic: noise must be >= 0 and finite"),
    ("moons", {"noise": "a"}, "moons: noise must be >= 0 and finite"),
    ("moons", {"noise": float("inf")}, "moons: noise must be >= 0 and finite"),
    ("synthetic", {"input_shape": 4}, "input_shape must be a list of positive integers"),
    ("synthetic", {"input_shape": "ab"}, "input_shape must be a list of positive integers"),
    ("synthetic", {"input_shape": [2.5]}, "input_shape must be a list of positive integers"),
    ("synthetic", {"val_fraction": "x"}, "val_fraction must be a number in"),
])
def test_bad_option_values_are_config_errors(name: str, options: dict[str, object],
                                             match: str) -> None:
    """load_dataset documents ConfigError for an invalid value: these raised ValueError or
    TypeError (a traceback on the command line), or were accepted (NaN noise made NaN
    inputs; input_shape [2.5] became (2,))."""
    with pytest.raises(ConfigError, match=match):
        load_dataset(name, **options)  # type: ignore[arg-type]


def test_generated_data_accepts_integral_sizes_and_zero_noise() -> None:
    import numpy as np

    ds = load_dataset("synthetic", n=20, input_shape=np.array([2, 3]), num_classes=2, noise=0)
    assert ds.input_shape == (2, 3) and bool(torch.isfinite(ds.train_x).all())
