"""Conversion of raw numpy arrays read from disk into the tensors pathcond works with."""

from __future__ import annotations

import numpy as np
import torch


def images_to_float(images: np.ndarray) -> torch.Tensor:
    """Convert ``uint8`` images to a float32 tensor in ``[0, 1]``.

    Args:
        images: array of dtype ``uint8``, any shape (usually ``(N, C, H, W)``).

    Returns:
        A new contiguous float32 tensor with values ``images / 255``.
    """
    if images.dtype != np.uint8:
        raise TypeError(f"expected uint8 images, got {images.dtype}")
    out = torch.from_numpy(np.ascontiguousarray(images)).to(torch.float32)
    return out.div_(255.0)


def labels_to_int64(labels: np.ndarray) -> torch.Tensor:
    """Convert an integer label array of any width to a 1-D int64 tensor (a copy)."""
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"expected integer labels, got {labels.dtype}")
    return torch.from_numpy(np.asarray(labels, dtype=np.int64).reshape(-1).copy())
