"""The MNIST autoencoder of the paper's Fig 5: 784 -> 784/k -> 784/k^2 -> 784/k -> 784."""

from __future__ import annotations

import torch
from torch import nn

from pathcond.errors import ConfigError

MNIST_PIXELS = 784


def autoencoder_widths(k: int, in_features: int = MNIST_PIXELS) -> tuple[int, ...]:
    """Layer widths ``(n, n//k, n//k^2, n//k, n)`` of the Fig 5 autoencoder (SPEC section 6)."""
    if k < 1:
        raise ConfigError(f"autoencoder compression factor k must be >= 1; got {k}")
    h1, h2 = in_features // k, in_features // (k * k)
    if h2 < 1:
        raise ConfigError(
            f"autoencoder compression factor k={k} leaves no code units for {in_features} inputs"
        )
    return (in_features, h1, h2, h1, in_features)


class MnistAutoencoder(nn.Module):
    """Fully connected ReLU autoencoder of paper Fig 5 (SPEC section 6), trained with MSE.

    ``encoder`` = Linear(784, 784//k), ReLU, Linear(784//k, 784//k^2), ReLU; ``decoder`` =
    Linear(784//k^2, 784//k), ReLU, Linear(784//k, 784) with no activation after the last
    layer. The input is flattened, so the target is ``torch.flatten(x, 1)``. PyTorch's
    default (Kaiming uniform) initialisation.
    """

    def __init__(self, k: int, *, bias: bool = True, in_features: int = MNIST_PIXELS) -> None:
        super().__init__()
        self.k = k
        self.widths = autoencoder_widths(k, in_features)
        n0, n1, n2, n3, n4 = self.widths
        self.encoder = nn.Sequential(
            nn.Linear(n0, n1, bias=bias),
            nn.ReLU(),
            nn.Linear(n1, n2, bias=bias),
            nn.ReLU(),
        )
        self.decoder = nn.Sequential(
            nn.Linear(n2, n3, bias=bias),
            nn.ReLU(),
            nn.Linear(n3, n4, bias=bias),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(x, 1)
        out: torch.Tensor = self.decoder(self.encoder(x))
        return out
