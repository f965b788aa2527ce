"""timm's ResNet (:mod:`examples.architecture`) in Flax Linen, channels last, with :mod:`flax_impl.linen`'s attention.

Submodules are nested and named as PyTorch's modules are (scope ``("layer1", "0", "conv1")``),
so :func:`flax_impl.linen.load_torch_state_dict` finds ``layer1.0.conv1.weight`` there. Padding
is explicit: Flax's ``"SAME"`` pads only after the input at stride 2, PyTorch pads both sides.

>>> import jax, jax.numpy as jnp
>>> variables = resnet(18, "se", num_classes=10).init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
>>> jax.tree_util.tree_map(jnp.shape, variables["params"]["layer1"]["0"]["se"])
{'fc1': {'bias': (8,), 'kernel': (64, 8)}, 'fc2': {'bias': (64,), 'kernel': (8, 64)}}
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

from flax_impl import linen as attention

from .architecture import BN_EPS, BN_MOMENTUM, STEM_WIDTH, Block, attention_config, blocks

__all__ = ["ResNet", "resnet"]


def _conv(features: int, kernel_size: int, stride: int, name: str) -> nn.Conv:
    pad = kernel_size // 2
    return nn.Conv(
        features, (kernel_size, kernel_size), stride, padding=((pad, pad), (pad, pad)), use_bias=False, name=name
    )


def _bn(training: bool, name: str) -> nn.BatchNorm:
    return nn.BatchNorm(use_running_average=not training, momentum=1 - BN_MOMENTUM, epsilon=BN_EPS, name=name)


class Downsample(nn.Module):
    """PyTorch's ``nn.Sequential(conv, bn)``: submodules ``0`` and ``1``."""

    features: int
    stride: int

    @nn.compact
    def __call__(self, x: jax.Array, training: bool) -> jax.Array:
        return _bn(training, "1")(_conv(self.features, 1, self.stride, "0")(x))


class ResidualBlock(nn.Module):
    block: Block
    attn: str | None

    @nn.compact
    def __call__(self, x: jax.Array, training: bool) -> jax.Array:
        b = self.block
        if b.kind == "basic":
            y = nn.relu(_bn(training, "bn1")(_conv(b.width, 3, b.stride, "conv1")(x)))
            y = _bn(training, "bn2")(_conv(b.out_channels, 3, 1, "conv2")(y))
        else:
            y = nn.relu(_bn(training, "bn1")(_conv(b.width, 1, 1, "conv1")(x)))
            y = nn.relu(_bn(training, "bn2")(_conv(b.width, 3, b.stride, "conv2")(y)))
            y = _bn(training, "bn3")(_conv(b.out_channels, 1, 1, "conv3")(y))
        cfg = attention_config(self.attn, b.out_channels)
        if cfg is not None:
            y = attention.from_config(cfg, name="se")(y, training=training)
        shortcut = Downsample(b.out_channels, b.stride, name="downsample")(x, training) if b.has_downsample else x
        return nn.relu(y + shortcut)


class Stage(nn.Module):
    blocks: tuple[Block, ...]
    attn: str | None

    @nn.compact
    def __call__(self, x: jax.Array, training: bool) -> jax.Array:
        for b in self.blocks:
            x = ResidualBlock(b, self.attn, name=b.name)(x, training)
        return x


class ResNet(nn.Module):
    """NHWC images ``(N, H, W, 3)`` -> logits ``(N, num_classes)``."""

    depth: int
    attn: str | None = None
    num_classes: int = 1000

    @nn.compact
    def __call__(self, x: jax.Array, training: bool = False) -> jax.Array:
        x = nn.relu(_bn(training, "bn1")(_conv(STEM_WIDTH, 7, 2, "conv1")(x)))
        x = nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
        every = blocks(self.depth)
        for stage in dict.fromkeys(b.stage for b in every):
            x = Stage(tuple(b for b in every if b.stage == stage), self.attn, name=stage)(x, training)
        return nn.Dense(self.num_classes, name="fc")(jnp.mean(x, axis=(1, 2)))


def resnet(depth: int, attn: str | None = None, num_classes: int = 1000) -> ResNet:
    """timm's ``resnet{depth}`` with ``block_args={"attn_layer": attn}``; ``resnet(...).init(key, x)`` gives the variables."""
    return ResNet(depth, attn, num_classes)
