"""VGG-16 with torchvision's exact layout and parameter names (SPEC section 6, Table 1)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from pathcond.models.init import init_kaiming_conv_bn

#: torchvision's configuration "D" (VGG-16): channel counts, "M" for a 2x2 max-pool.
VGG16_CFG: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M",
)  # fmt: skip


def make_vgg_features(
    cfg: Sequence[int | str], *, in_channels: int = 3, batch_norm: bool = False
) -> nn.Sequential:
    """torchvision's ``make_layers``: 3x3 convs (padding 1, bias) + ReLU, ``MaxPool2d(2, 2)``."""
    layers: list[nn.Module] = []
    channels = in_channels
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        out = int(v)
        layers.append(nn.Conv2d(channels, out, kernel_size=3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(out))
        layers.append(nn.ReLU())
        channels = out
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """torchvision's VGG: ``features``, ``avgpool`` = AdaptiveAvgPool2d((7, 7)), ``classifier``.

    The classifier is Linear(512*7*7, 4096), ReLU, Dropout, Linear(4096, 4096), ReLU, Dropout,
    Linear(4096, num_classes); initialisation as torchvision (Kaiming-normal fan-out convs,
    N(0, 0.01) linears, zero biases).
    """

    def __init__(self, features: nn.Sequential, num_classes: int = 1000, dropout: float = 0.5):
        super().__init__()
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(),
            nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes),
        )
        init_kaiming_conv_bn(self, linear_std=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        out: torch.Tensor = self.classifier(x)
        return out


def vgg16(
    num_classes: int = 1000,
    in_channels: int = 3,
    *,
    batch_norm: bool = False,
    dropout: float = 0.5,
) -> VGG:
    """torchvision's VGG-16 (138,357,544 parameters with 1000 classes; SPEC Table 1)."""
    features = make_vgg_features(VGG16_CFG, in_channels=in_channels, batch_norm=batch_norm)
    return VGG(features, num_classes=num_classes, dropout=dropout)
