"""CIFAR-10 from a directory of the standard python-pickle batches (``cifar-10-batches-py``).

Each of ``data_batch_1`` .. ``data_batch_5`` and ``test_batch`` is a pickled dict with
``b"data"`` (uint8, ``(10000, 3072)``, the red, green then blue 32x32 planes of each image) and
``b"labels"`` (10000 ints in 0..9). The 50k training images are split 40k/10k into train and
validation by a seeded permutation (as in the PathCond paper); ``test_batch`` is the test set.

The batches are unpickled with an allow-list (numpy arrays and dtypes only), so a file from an
untrusted source cannot run code; anything else is reported as a format error.
"""

from __future__ import annotations

import codecs
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from pathcond.data.errors import DatasetFormatError
from pathcond.data.splits import DataSplits, image_classification_splits
from pathcond.errors import DatasetNotFoundError

CIFAR10_DIR_NAME = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
#: Environment variable naming the ``cifar-10-batches-py`` directory (or its parent).
CIFAR10_ENV = "PATHCOND_CIFAR10_DIR"
#: The paper's split: 10k of the 50k training images for validation, 40k for training.
CIFAR10_VAL_FRACTION = 0.2
CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer",
               "dog", "frog", "horse", "ship", "truck")

_HINT = ("download cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html, "
         f"extract it and point root= (data.root, --data-root; or set {CIFAR10_ENV}) "
         "to its cifar-10-batches-py directory")

_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): np.ndarray.__reduce__(np.zeros(1))[0],
    ("numpy._core.multiarray", "_reconstruct"): np.ndarray.__reduce__(np.zeros(1))[0],
    ("numpy.core.multiarray", "scalar"): np.int64(0).__reduce__()[0],
    ("numpy._core.multiarray", "scalar"): np.int64(0).__reduce__()[0],
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,  # how protocol-2 pickles from Python 3 store bytes
}


class _BatchUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals a CIFAR batch needs."""

    def find_class(self, module: str, name: str) -> Any:
        """Return an allowed global, refuse every other one."""
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}") from None


def cifar10_dir(root: str | Path | None = None) -> Path:
    """The batches directory: ``root`` (or ``$PATHCOND_CIFAR10_DIR``), or its
    ``cifar-10-batches-py`` subdirectory when it has one.

    Raises:
        DatasetNotFoundError: neither ``root`` nor the environment variable is given.
    """
    if root is None:
        env = os.environ.get(CIFAR10_ENV, "").strip()
        if not env:
            raise DatasetNotFoundError(f"CIFAR-10 is not bundled: {_HINT}")
        root = env
    where = Path(root).expanduser()
    sub = where / CIFAR10_DIR_NAME
    return sub if sub.is_dir() else where


def read_cifar_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10 pickle batch.

    Returns:
        ``(images, labels)``: uint8 ``(n, 3, 32, 32)`` and int64 ``(n,)``.

    Raises:
        DatasetNotFoundError: the file does not exist.
        DatasetFormatError: the file is truncated, not a batch pickle, or has bad contents.
    """
    path = Path(path)
    try:
        with path.open("rb") as fh:
            batch = _BatchUnpickler(fh, encoding="bytes").load()
    except FileNotFoundError:
        raise DatasetNotFoundError(f"CIFAR-10 batch not found: {path}; {_HINT}") from None
    except Exception as exc:  # pickle reports damage as many exception types
        raise DatasetFormatError(f"{path}: not a readable CIFAR-10 batch pickle "
                                 f"({type(exc).__name__}: {exc})") from None
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise DatasetFormatError(f"{path}: expected a dict with b'data' and b'labels'")
    data, labels = batch[b"data"], batch[b"labels"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != 3072:
        desc = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DatasetFormatError(f"{path}: b'data' should be uint8 (n, 3072), found {desc}")
    try:
        label_arr = np.asarray(labels, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError):
        raise DatasetFormatError(f"{path}: b'labels' is not a list of integers") from None
    if label_arr.shape[0] != data.shape[0]:
        raise DatasetFormatError(f"{path}: {label_arr.shape[0]} labels for {data.shape[0]} images")
    if label_arr.size and (label_arr.min() < 0 or label_arr.max() > 9):
        raise DatasetFormatError(f"{path}: labels outside 0..9")
    return data.reshape(-1, 3, 32, 32), label_arr


def load_cifar10(
    root: str | Path | None = None, *, seed: int = 0, val_fraction: float = CIFAR10_VAL_FRACTION,
) -> DataSplits:
    """Load CIFAR-10: images float32 ``(N, 3, 32, 32)`` in [0, 1], labels int64.

    Args:
        root: the ``cifar-10-batches-py`` directory or its parent; defaults to
            ``$PATHCOND_CIFAR10_DIR``.
        seed: seed of the permutation that picks the validation images.
        val_fraction: share of the 50k training images held out for validation
            (default 0.2: the paper's 40k train / 10k validation).

    Raises:
        DatasetNotFoundError: no directory given, or it lacks some batch files (all named).
        DatasetFormatError: a batch is truncated or malformed.
    """
    directory = cifar10_dir(root)
    if not directory.is_dir():
        raise DatasetNotFoundError(f"CIFAR-10 directory not found: {directory}; {_HINT}")
    missing = [n for n in (*TRAIN_BATCHES, TEST_BATCH) if not (directory / n).is_file()]
    if missing:
        raise DatasetNotFoundError(
            f"CIFAR-10 files missing in {directory}: {', '.join(missing)}; {_HINT}")
    parts = [read_cifar_batch(directory / name) for name in TRAIN_BATCHES]
    train_images = np.concatenate([p[0] for p in parts])
    train_labels = np.concatenate([p[1] for p in parts])
    test_images, test_labels = read_cifar_batch(directory / TEST_BATCH)
    return image_classification_splits(
        "cifar10", train_images, train_labels, test_images, test_labels,
        num_classes=10, val_fraction=val_fraction, seed=seed,
    )
