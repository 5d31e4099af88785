"""CIFAR-10 from generated pickle batches: the 40k/10k-style split, safety, clear errors."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from pathcond.data.cifar10 import (
    CIFAR10_DIR_NAME,
    CIFAR10_ENV,
    load_cifar10,
    read_cifar_batch,
)
from pathcond.data.errors import DatasetFormatError
from pathcond.data.splits import split_indices
from pathcond.data.synthetic import write_cifar10_batches
from pathcond.errors import DatasetNotFoundError

N = 20  # images per generated batch: 100 training images, 20 test images


def _rows(x: torch.Tensor) -> list[bytes]:
    """The images of a [0, 1] float tensor as sorted uint8 byte strings (a multiset)."""
    return sorted(map(bytes, (x * 255).round().to(torch.uint8).flatten(1).numpy()))


@pytest.fixture()
def batches(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    return tmp_path, write_cifar10_batches(tmp_path, n_per_batch=N, seed=5)


def test_reads_generated_batches(batches: tuple[Path, dict[str, np.ndarray]]) -> None:
    root, arrays = batches
    ds = load_cifar10(root)
    assert ds.name == "cifar10" and ds.num_classes == 10 and ds.input_shape == (3, 32, 32)
    assert (ds.num_train, ds.num_val, ds.num_test) == (80, 20, 20)  # 0.8 / 0.2 like 40k / 10k
    assert ds.train_x.dtype == torch.float32 and ds.train_y.dtype == torch.int64
    assert ds.test_x is not None and ds.test_y is not None
    torch.testing.assert_close(ds.test_x, torch.from_numpy(arrays["test_images"] / 255).float())
    assert ds.test_y.tolist() == arrays["test_labels"].tolist()
    # train + val is exactly the five data batches
    assert _rows(torch.cat([ds.train_x, ds.val_x])) == \
        sorted(map(bytes, arrays["train_images"].reshape(5 * N, -1)))


def test_channel_layout(tmp_path: Path) -> None:
    """Row ``r`` of b'data' is R plane, G plane, B plane, each 32x32 row-major."""
    arrays = write_cifar10_batches(tmp_path, n_per_batch=2)
    data, _ = read_cifar_batch(tmp_path / "data_batch_1")
    raw = pickle.loads((tmp_path / "data_batch_1").read_bytes(), encoding="bytes")[b"data"]
    assert data[1, 2, 3, 4] == raw[1, 2 * 1024 + 3 * 32 + 4]
    np.testing.assert_array_equal(arrays["train_images"][:2], data)


@pytest.mark.parametrize("val_fraction", [0.0, 0.1, 0.2, 0.5])
def test_split_fraction(batches: tuple[Path, dict[str, np.ndarray]], val_fraction: float) -> None:
    ds = load_cifar10(batches[0], val_fraction=val_fraction)
    n_val = round(5 * N * val_fraction)
    assert (ds.num_train, ds.num_val) == (5 * N - n_val, n_val)


def test_paper_split_sizes() -> None:
    train, val = split_indices(50000, 0.2, seed=0)
    assert (len(train), len(val)) == (40000, 10000)
    assert np.array_equal(np.sort(np.concatenate([train, val])), np.arange(50000))


def test_split_determinism(batches: tuple[Path, dict[str, np.ndarray]]) -> None:
    root, _ = batches
    a, b, c = load_cifar10(root, seed=1), load_cifar10(root, seed=1), load_cifar10(root, seed=2)
    assert torch.equal(a.val_x, b.val_x) and torch.equal(a.train_y, b.train_y)
    assert not torch.equal(a.val_x, c.val_x)


def test_parent_directory_and_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write_cifar10_batches(tmp_path / CIFAR10_DIR_NAME, n_per_batch=2)
    assert load_cifar10(tmp_path).num_train == 8
    monkeypatch.setenv(CIFAR10_ENV, str(tmp_path))
    assert load_cifar10().num_val == 2


def test_legacy_numpy_pickles(tmp_path: Path) -> None:
    """Files written with numpy < 2 name ``numpy.core.multiarray``; they load too."""
    write_cifar10_batches(tmp_path, n_per_batch=3, legacy_numpy_path=True)
    assert b"numpy.core.multiarray" in (tmp_path / "test_batch").read_bytes()
    assert load_cifar10(tmp_path).num_test == 3


def test_no_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CIFAR10_ENV, raising=False)
    with pytest.raises(DatasetNotFoundError) as info:
        load_cifar10()
    msg = str(info.value)
    assert "\n" not in msg and "CIFAR-10 is not bundled" in msg
    assert "root=" in msg and CIFAR10_ENV in msg


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="CIFAR-10 directory not found: .*nowhere"):
        load_cifar10(tmp_path / "nowhere")


def test_missing_batches_are_listed(batches: tuple[Path, dict[str, np.ndarray]]) -> None:
    root, _ = batches
    os.remove(root / "data_batch_3")
    os.remove(root / "test_batch")
    with pytest.raises(DatasetNotFoundError,
                       match=r"CIFAR-10 files missing in .*: data_batch_3, test_batch; download"):
        load_cifar10(root)


def test_truncated_batch(batches: tuple[Path, dict[str, np.ndarray]]) -> None:
    root, _ = batches
    path = root / "data_batch_2"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(DatasetFormatError,
                       match=r"data_batch_2: not a readable CIFAR-10 batch pickle"):
        load_cifar10(root)


def test_refuses_arbitrary_globals(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, ("echo pwned",))

    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": Evil()}, protocol=2))
    with pytest.raises(DatasetFormatError, match=r"refusing to load global (posix|os|nt)\.system"):
        read_cifar_batch(path)


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        ([1, 2], "expected a dict with b'data' and b'labels'"),
        ({b"data": np.zeros((2, 3072), np.uint8)}, "expected a dict"),
        ({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]},
         r"b'data' should be uint8 \(n, 3072\), found uint8 \(2, 100\)"),
        ({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}, "found float32"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "1 labels for 2 images"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, "labels outside 0..9"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [b"a", b"b"]}, "not a list of int"),
    ],
)
def test_malformed_batch(tmp_path: Path, batch: object, message: str) -> None:
    path = tmp_path / "b"
    path.write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(DatasetFormatError, match=message):
        read_cifar_batch(path)
