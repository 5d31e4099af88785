"""Every method on structures the random architectures do not draw: grouped and depthwise
convolutions, bottleneck ResNets with downsampling, concatenation, BatchNorm everywhere, the
CIFAR ResNet's option-A shortcuts (strided slices zero-padded with new channels), 3-D
convolutions, transposed convolutions (grouped, with BatchNorm)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pathcond.models import cifar_resnet, tiny_resnet
from pathcond.optim import GSGD, ENorm, GSpace, PathSGD, WeightFixing

from .helpers import assert_enorm_descends, assert_same_function, rescaled, train


class GroupedNet(nn.Module):
    """Grouped (with BatchNorm) and depthwise convolutions, a concatenation, a max-pool."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(2, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 4, 3, padding=1, groups=2)
        self.c = nn.Conv2d(4, 4, 3, padding=1, groups=4, bias=False)
        self.d = nn.Conv2d(2, 2, 1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(6 * 2 * 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.a(x))
        h = F.relu(self.bn(self.b(h)))
        h = F.relu(self.c(h))
        h = torch.cat([h, F.relu(self.d(x))], dim=1)
        h = F.max_pool2d(h, 2)
        return self.fc(torch.flatten(h, 1))


class VolumeNet(nn.Module):
    """3-D convolutions (one grouped, with BatchNorm), a 3-D max-pool, a Linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv3d(1, 4, 2)
        self.b = nn.Conv3d(4, 4, 2, padding=1, groups=2, bias=False)
        self.bn = nn.BatchNorm3d(4)
        self.fc = nn.Linear(4 * 8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn(self.b(F.relu(self.a(x)))))
        return self.fc(torch.flatten(F.max_pool3d(h, 2), 1))


class Decoder(nn.Module):
    """A strided convolution with BatchNorm, a grouped transposed convolution with BatchNorm,
    a transposed convolution with a bias, a Linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Conv2d(2, 4, 3, stride=2, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.up = nn.ConvTranspose2d(4, 6, 2, stride=2, groups=2, bias=False)
        self.bn_up = nn.BatchNorm2d(6)
        self.out = nn.ConvTranspose2d(6, 2, 3, padding=1)
        self.fc = nn.Linear(2 * 4 * 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn(self.enc(x)))
        h = F.relu(self.bn_up(self.up(h)))
        return self.fc(torch.flatten(F.relu(self.out(h)), 1))


def models():
    torch.manual_seed(0)
    yield "grouped", GroupedNet().double(), (2, 4, 4)
    torch.manual_seed(1)
    yield "bottleneck", tiny_resnet(widths=(2, 4), blocks=(1, 1), bottleneck=True).double(), \
        (3, 8, 8)
    torch.manual_seed(2)
    yield "option_a", cifar_resnet(8, widths=(2, 3, 5)).double(), (3, 8, 8)
    torch.manual_seed(3)
    yield "volume", VolumeNet().double(), (1, 4, 4, 4)
    torch.manual_seed(4)
    yield "decoder", Decoder().double(), (2, 4, 4)


WHICH = ["grouped", "bottleneck", "option_a", "volume", "decoder"]
MAKERS = {
    "gsgd": lambda m, s: GSGD(m, s, lr=0.005, momentum=0.5),
    "gspace-adam": lambda m, s: GSpace(m, s, torch.optim.Adam, lr=1e-3),
    "pathsgd": lambda m, s: PathSGD(m, s, lr=0.01),
}


def _weightfix(m, s):
    wf = WeightFixing(m, s, strategy="largest")
    opt = torch.optim.SGD(m.parameters(), lr=0.002)
    wf.attach(opt)
    return opt


MAKERS["weightfix"] = _weightfix


@pytest.mark.parametrize("name", list(MAKERS))
@pytest.mark.parametrize("which", WHICH)
def test_invariant_training(which, name):
    _, model, shape = next((n, m, s) for n, m, s in models() if n == which)
    other = rescaled(model, shape, seed=3)
    train(model, MAKERS[name](model, shape), shape, steps=3)
    train(other, MAKERS[name](other, shape), shape, steps=3)
    assert_same_function(model, other, shape, rtol=1e-6)


@pytest.mark.parametrize("which", WHICH)
def test_enorm_descends_and_keeps_function(which):
    _, model, shape = next((n, m, s) for n, m, s in models() if n == which)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn((3, *shape), generator=gen, dtype=torch.float64)
    model.eval()
    y0 = model(x).detach()
    enorm = ENorm(model, shape, exclude_batchnorm=False)
    assert_enorm_descends(enorm, 5)
    torch.testing.assert_close(model(x).detach(), y0, rtol=1e-10, atol=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["enorm", *MAKERS])
def test_resnet18_step_keeps_invariance(name):
    """Full-size ResNet-18 (float64): set-up and two steps from theta and D theta agree."""
    from pathcond.models import resnet18

    shape = (3, 64, 64)
    torch.manual_seed(0)
    model = resnet18(num_classes=10).double()
    other = rescaled(model, shape, seed=1, std=0.3)
    for m in (model, other):
        if name == "enorm":
            opt = torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9)
            ENorm(m, shape, exclude_batchnorm=False, optimizer=opt)
        else:
            opt = MAKERS[name](m, shape)
        train(m, opt, shape, steps=2)
    if name != "enorm":  # ENorm + SGD is not rescaling-invariant (SGD is not)
        assert_same_function(model, other, shape, rtol=1e-6)
