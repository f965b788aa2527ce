"""The example ResNet in Flax linen (channels last), with :mod:`flax_impl.linen`'s SE, CBAM and ECA.

Submodule names mirror the PyTorch tree, so a canonical name such as ``block2.bn1.running_var``
is the variable ``batch_stats/block2/bn1/var``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

from flax_impl import linen as attention

from .architecture import BLOCKS, BN_EPS, BN_MOMENTUM, CLASSES, STEM_CHANNELS, Block


def _conv(features: int, kernel_size: int, stride: int, name: str) -> nn.Conv:
    pad = kernel_size // 2  # explicit, as PyTorch pads: "SAME" with stride 2 would pad only after
    return nn.Conv(
        features, (kernel_size, kernel_size), stride, padding=((pad, pad), (pad, pad)), use_bias=False, name=name
    )


def _bn(training: bool, name: str) -> nn.BatchNorm:
    return nn.BatchNorm(use_running_average=not training, momentum=1 - BN_MOMENTUM, epsilon=BN_EPS, name=name)


class ConvBN(nn.Module):
    features: int
    kernel_size: int
    stride: int = 1

    @nn.compact
    def __call__(self, x: jax.Array, training: bool = False) -> jax.Array:
        return _bn(training, "bn")(_conv(self.features, self.kernel_size, self.stride, "conv")(x))


class ResidualBlock(nn.Module):
    spec: Block

    @nn.compact
    def __call__(self, x: jax.Array, training: bool = False) -> jax.Array:
        s = self.spec
        y = nn.relu(_bn(training, "bn1")(_conv(s.out_channels, 3, s.stride, "conv1")(x)))
        y = _bn(training, "bn2")(_conv(s.out_channels, 3, 1, "conv2")(y))
        y = attention.from_config(s.attention, name="attn")(y, training=training)
        shortcut = ConvBN(s.out_channels, 1, s.stride, name="shortcut")(x, training) if s.has_shortcut_conv else x
        return nn.relu(y + shortcut)


class ResNet(nn.Module):
    """NHWC input ``(N, 16, 16, 3)`` -> logits ``(N, 10)``."""

    @nn.compact
    def __call__(self, x: jax.Array, training: bool = False) -> jax.Array:
        x = nn.relu(ConvBN(STEM_CHANNELS, 3, name="stem")(x, training))
        for spec in BLOCKS:
            x = ResidualBlock(spec, name=spec.name)(x, training)
        return nn.Dense(CLASSES, name="head")(jnp.mean(x, axis=(1, 2)))
