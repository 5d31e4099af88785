"""Fashion-MNIST from a directory of the four standard idx(.gz) files.

By default the files are looked up in ``$PATHCOND_FASHION_MNIST_DIR`` or, if unset, where
Debian's package ``dataset-fashion-mnist`` installs them (``/usr/share/datasets/fashion-mnist``).
"""

from __future__ import annotations

import os
from pathlib import Path

from pathcond.data.idx_dir import read_idx_directory
from pathcond.data.splits import DataSplits, image_classification_splits

#: Where ``apt-get install dataset-fashion-mnist`` puts the idx .gz files.
DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
#: Environment variable naming a directory of the four Fashion-MNIST idx files.
FASHION_MNIST_ENV = "PATHCOND_FASHION_MNIST_DIR"
#: Default share of the 60k training images held out for validation (10k).
FASHION_MNIST_VAL_FRACTION = 1 / 6
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")

_HINT = (f"install it with `apt-get install dataset-fashion-mnist`, or point root= "
         f"(data.root, --data-root; or set {FASHION_MNIST_ENV}) to a directory of the 4 idx files")


def fashion_mnist_dir(root: str | Path | None = None) -> Path:
    """The directory to read: ``root``, else ``$PATHCOND_FASHION_MNIST_DIR``, else Debian's."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get(FASHION_MNIST_ENV, "").strip()
    return Path(env).expanduser() if env else DEBIAN_FASHION_MNIST_DIR


def load_fashion_mnist(
    root: str | Path | None = None, *, seed: int = 0,
    val_fraction: float = FASHION_MNIST_VAL_FRACTION,
) -> DataSplits:
    """Load Fashion-MNIST: images float32 ``(N, 1, 28, 28)`` in [0, 1], labels int64.

    Args:
        root: directory of ``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``,
            ``t10k-images-idx3-ubyte[.gz]`` and ``t10k-labels-idx1-ubyte[.gz]``; defaults to
            :func:`fashion_mnist_dir`.
        seed: seed of the train/validation split.
        val_fraction: share of the training images held out for validation.

    Raises:
        DatasetNotFoundError: the directory or a file is missing (the message says how to
            install the data); :class:`~pathcond.data.errors.DatasetFormatError` if corrupt.
    """
    arrays = read_idx_directory(fashion_mnist_dir(root), dataset="Fashion-MNIST", hint=_HINT)
    return image_classification_splits(
        "fashion_mnist", arrays["train_images"], arrays["train_labels"],
        arrays["test_images"], arrays["test_labels"],
        num_classes=10, val_fraction=val_fraction, seed=seed,
    )
