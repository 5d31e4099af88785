"""A directory holding the four standard MNIST-style idx files (train/t10k images/labels)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pathcond.data.errors import DatasetFormatError
from pathcond.data.idx import read_idx
from pathcond.errors import DatasetNotFoundError

#: Role -> standard file name (each may also be present with a ``.gz`` suffix).
IDX_FILE_NAMES: dict[str, str] = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def find_idx_files(directory: Path) -> tuple[dict[str, Path], list[str]]:
    """Map each role to its file in ``directory`` (plain name preferred over ``.gz``).

    Returns:
        The files found and the list of standard names that are missing.
    """
    found: dict[str, Path] = {}
    missing: list[str] = []
    for role, stem in IDX_FILE_NAMES.items():
        for candidate in (directory / stem, directory / f"{stem}.gz"):
            if candidate.is_file():
                found[role] = candidate
                break
        else:
            missing.append(f"{stem}[.gz]")
    return found, missing


def read_idx_directory(
    directory: Path, *, dataset: str, hint: str, image_shape: tuple[int, int] = (28, 28),
    num_classes: int = 10,
) -> dict[str, np.ndarray]:
    """Read and check the four idx files of an MNIST-style dataset.

    Args:
        directory: where the files are.
        dataset: the dataset's display name, used in messages.
        hint: how to install the data, appended to the "not found" message.
        image_shape: the expected ``(H, W)`` of every image.
        num_classes: labels must lie in ``[0, num_classes)``.

    Returns:
        ``{"train_images", "test_images"}`` as uint8 ``(N, 1, H, W)`` and
        ``{"train_labels", "test_labels"}`` as uint8 ``(N,)``.

    Raises:
        DatasetNotFoundError: the directory or one of the files is missing.
        DatasetFormatError: a file is corrupt or the files do not fit together.
    """
    if not directory.is_dir():
        raise DatasetNotFoundError(f"{dataset} directory not found: {directory}; {hint}")
    files, missing = find_idx_files(directory)
    if missing:
        raise DatasetNotFoundError(
            f"{dataset} files missing in {directory}: {', '.join(missing)}; {hint}")
    out: dict[str, np.ndarray] = {}
    for part in ("train", "test"):
        img_path, lab_path = files[f"{part}_images"], files[f"{part}_labels"]
        images = read_idx(img_path, ndim=3)
        labels = read_idx(lab_path, ndim=1)
        if images.dtype != np.uint8 or tuple(images.shape[1:]) != image_shape:
            raise DatasetFormatError(f"{img_path}: expected uint8 images of shape (N, "
                                     f"{image_shape[0]}, {image_shape[1]}), found {images.dtype} "
                                     f"{images.shape}")
        if labels.dtype != np.uint8:
            raise DatasetFormatError(f"{lab_path}: expected uint8 labels, found {labels.dtype}")
        if labels.shape[0] != images.shape[0]:
            raise DatasetFormatError(f"{lab_path}: {labels.shape[0]} labels for "
                                     f"{images.shape[0]} images in {img_path.name}")
        if labels.size and int(labels.max()) >= num_classes:
            raise DatasetFormatError(f"{lab_path}: label {int(labels.max())} outside "
                                     f"0..{num_classes - 1}")
        out[f"{part}_images"] = images[:, None]
        out[f"{part}_labels"] = labels
    return out
