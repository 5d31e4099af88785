"""Modules that break the rescaling symmetry; the tracer keeps them whole so errors name them."""

from __future__ import annotations

from torch import nn

NOT_HOMOGENEOUS_MODULES: tuple[type[nn.Module], ...] = (
    nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Softmax, nn.LogSoftmax, nn.Softplus, nn.ELU,
    nn.SELU, nn.CELU, nn.Mish, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.ReLU6,
    nn.LayerNorm, nn.GroupNorm, nn.InstanceNorm1d, nn.InstanceNorm2d, nn.MultiheadAttention,
    nn.Tanhshrink, nn.Softsign, nn.LocalResponseNorm, nn.Embedding,
    # in training, alpha dropout sets dropped units to a negative constant and applies an
    # affine correction: not positively homogeneous (in eval mode it is the identity)
    nn.AlphaDropout, nn.FeatureAlphaDropout,
)
