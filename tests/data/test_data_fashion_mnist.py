"""Fashion-MNIST from a directory of idx files (generated here; the real one if installed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pathcond.data.errors import DatasetFormatError
from pathcond.data.fashion_mnist import (
    DEBIAN_FASHION_MNIST_DIR,
    FASHION_MNIST_ENV,
    fashion_mnist_dir,
    load_fashion_mnist,
)
from pathcond.data.idx import write_idx
from pathcond.data.synthetic import fake_mnist_arrays, write_idx_directory
from pathcond.errors import DatasetNotFoundError


@pytest.mark.parametrize("gz", [True, False])
def test_reads_generated_files(tmp_path: Path, gz: bool) -> None:
    arrays = fake_mnist_arrays(n_train=60, n_test=20, seed=3)
    write_idx_directory(tmp_path, arrays, gz=gz)
    ds = load_fashion_mnist(tmp_path, seed=0, val_fraction=1 / 6)
    assert ds.name == "fashion_mnist" and ds.num_classes == 10
    assert (ds.num_train, ds.num_val, ds.num_test) == (50, 10, 20)
    assert ds.input_shape == (1, 28, 28) and ds.train_x.dtype == torch.float32
    assert ds.train_y.dtype == torch.int64
    assert ds.test_x is not None and ds.test_y is not None
    expected = torch.from_numpy(arrays["test_images"][:, None].astype(np.float32) / 255)
    torch.testing.assert_close(ds.test_x, expected)
    assert ds.test_y.tolist() == arrays["test_labels"].tolist()
    # train and validation together are exactly the training file, each in original order
    all_x = torch.cat([ds.train_x, ds.val_x])
    assert sorted(map(bytes, (all_x * 255).round().to(torch.uint8).flatten(1).numpy())) == \
        sorted(map(bytes, arrays["train_images"].reshape(60, -1)))


def test_directory_resolution(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(FASHION_MNIST_ENV, raising=False)
    assert fashion_mnist_dir() == DEBIAN_FASHION_MNIST_DIR == \
        Path("/usr/share/datasets/fashion-mnist")
    monkeypatch.setenv(FASHION_MNIST_ENV, str(tmp_path))
    assert fashion_mnist_dir() == tmp_path
    assert fashion_mnist_dir(tmp_path / "x") == tmp_path / "x"


def test_env_variable_is_used(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write_idx_directory(tmp_path, fake_mnist_arrays(n_train=12, n_test=4))
    monkeypatch.setenv(FASHION_MNIST_ENV, str(tmp_path))
    assert load_fashion_mnist(val_fraction=0.25).num_train == 9


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        load_fashion_mnist(tmp_path / "absent")
    msg = str(info.value)
    assert "\n" not in msg
    assert "Fashion-MNIST directory not found" in msg and "absent" in msg
    assert "apt-get install dataset-fashion-mnist" in msg and "root=" in msg


def test_missing_file_is_named(tmp_path: Path) -> None:
    arrays = fake_mnist_arrays(n_train=10, n_test=10)
    del arrays["test_labels"]
    write_idx_directory(tmp_path, arrays)
    with pytest.raises(DatasetNotFoundError,
                       match=r"Fashion-MNIST files missing in .*: t10k-labels-idx1-ubyte\[\.gz\]; "
                             r"install it with `apt-get install dataset-fashion-mnist`"):
        load_fashion_mnist(tmp_path)


def test_truncated_file_is_named(tmp_path: Path) -> None:
    files = write_idx_directory(tmp_path, fake_mnist_arrays(n_train=10, n_test=10))
    path = files["train_images"]
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DatasetFormatError, match=r"train-images-idx3-ubyte\.gz: corrupt or trunc"):
        load_fashion_mnist(tmp_path)


def test_label_count_mismatch(tmp_path: Path) -> None:
    files = write_idx_directory(tmp_path, fake_mnist_arrays(n_train=10, n_test=10))
    write_idx(files["train_labels"], np.zeros(9, np.uint8))
    with pytest.raises(DatasetFormatError, match="9 labels for 10 images"):
        load_fashion_mnist(tmp_path)


def test_wrong_image_size(tmp_path: Path) -> None:
    write_idx_directory(tmp_path, fake_mnist_arrays(n_train=10, n_test=10, image_shape=(8, 8)))
    with pytest.raises(DatasetFormatError, match=r"expected uint8 images of shape \(N, 28, 28\)"):
        load_fashion_mnist(tmp_path)


def test_label_out_of_range(tmp_path: Path) -> None:
    files = write_idx_directory(tmp_path, fake_mnist_arrays(n_train=10, n_test=10))
    write_idx(files["test_labels"], np.full(10, 10, np.uint8))
    with pytest.raises(DatasetFormatError, match="label 10 outside 0..9"):
        load_fashion_mnist(tmp_path)


@pytest.mark.skipif(not (DEBIAN_FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").is_file(),
                    reason="Debian package dataset-fashion-mnist not installed")
def test_real_debian_install() -> None:
    ds = load_fashion_mnist(DEBIAN_FASHION_MNIST_DIR, val_fraction=0.0)
    assert (ds.num_train, ds.num_val, ds.num_test) == (60000, 0, 10000)
    assert ds.train_x.shape == (60000, 1, 28, 28)
    assert ds.train_y.bincount().tolist() == [6000] * 10
