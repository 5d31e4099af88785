"""A small convolutional autoencoder: strided convolutions down, transposed convolutions up."""

from __future__ import annotations

import torch
from torch import nn

from pathcond.errors import ConfigError


class ConvAutoencoder(nn.Module):
    """``(C, S, S) -> (2w, S/4, S/4) -> (C, S, S)``, trained with MSE on the image itself
    (``data.task: image_autoencoding``).

    ``encoder`` = Conv2d(C, w, 3, stride 2, padding 1), [BatchNorm2d], ReLU, Conv2d(w, 2w, 3,
    stride 2, padding 1), [BatchNorm2d], ReLU; ``decoder`` = ConvTranspose2d(2w, w, 4, stride
    2, padding 1), [BatchNorm2d], ReLU, ConvTranspose2d(w, C, 4, stride 2, padding 1), no
    activation after it. PyTorch's default initialisation. ``image_size`` (a multiple of 4)
    only sets the input shape the zoo reports; the network is fully convolutional.
    """

    def __init__(self, *, in_channels: int = 1, width: int = 16, batchnorm: bool = True,
                 image_size: int = 28) -> None:
        super().__init__()
        if image_size < 4 or image_size % 4:
            raise ConfigError(f"conv_autoencoder: image_size must be a positive multiple of 4 "
                              f"(two stride-2 stages), got {image_size}")

        def stage(layer: nn.Module, channels: int) -> list[nn.Module]:
            norm: list[nn.Module] = [nn.BatchNorm2d(channels)] if batchnorm else []
            return [layer, *norm, nn.ReLU()]

        w = width
        self.encoder = nn.Sequential(
            *stage(nn.Conv2d(in_channels, w, 3, stride=2, padding=1, bias=not batchnorm), w),
            *stage(nn.Conv2d(w, 2 * w, 3, stride=2, padding=1, bias=not batchnorm), 2 * w),
        )
        self.decoder = nn.Sequential(
            *stage(nn.ConvTranspose2d(2 * w, w, 4, stride=2, padding=1, bias=not batchnorm), w),
            nn.ConvTranspose2d(w, in_channels, 4, stride=2, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.decoder(self.encoder(x))
        return out
