"""The example ResNet in Keras 3 (channels last), with :mod:`tf_impl`'s SE, CBAM and ECA.

Attribute names mirror the PyTorch tree (``model.block2.bn1.moving_variance`` holds
``block2.bn1.running_var``), which is what :func:`examples.port_weights.load_keras` walks.
"""

from __future__ import annotations

from typing import Any

import keras

import tf_impl

from .architecture import BLOCKS, BN_EPS, BN_MOMENTUM, CLASSES, STEM_CHANNELS, Block


def _conv(filters: int, kernel_size: int, stride: int) -> keras.layers.Conv2D:
    """Unpadded: the caller pads k // 2 on every side, as PyTorch does ("same" with stride 2 pads only after)."""
    return keras.layers.Conv2D(filters, kernel_size, stride, padding="valid", use_bias=False)


def _bn() -> keras.layers.BatchNormalization:
    return keras.layers.BatchNormalization(momentum=1 - BN_MOMENTUM, epsilon=BN_EPS)


class ConvBN(keras.layers.Layer):
    def __init__(self, filters: int, kernel_size: int, stride: int = 1, **kwargs: Any):
        super().__init__(**kwargs)
        self.pad = keras.layers.ZeroPadding2D(kernel_size // 2)
        self.conv = _conv(filters, kernel_size, stride)
        self.bn = _bn()

    def call(self, x: Any, training: bool = False) -> Any:
        return self.bn(self.conv(self.pad(x)), training=training)


class ResidualBlock(keras.layers.Layer):
    def __init__(self, spec: Block, **kwargs: Any):
        super().__init__(**kwargs)
        self.pad = keras.layers.ZeroPadding2D(1)
        self.conv1, self.bn1 = _conv(spec.out_channels, 3, spec.stride), _bn()
        self.conv2, self.bn2 = _conv(spec.out_channels, 3, 1), _bn()
        self.attn = tf_impl.from_config(spec.attention)
        self.shortcut = ConvBN(spec.out_channels, 1, spec.stride) if spec.has_shortcut_conv else None

    def call(self, x: Any, training: bool = False) -> Any:
        y = keras.ops.relu(self.bn1(self.conv1(self.pad(x)), training=training))
        y = self.attn(self.bn2(self.conv2(self.pad(y)), training=training), training=training)
        return keras.ops.relu(y + (x if self.shortcut is None else self.shortcut(x, training=training)))


class ResNet(keras.Model):
    """NHWC input ``(N, 16, 16, 3)`` -> logits ``(N, 10)``."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.stem = ConvBN(STEM_CHANNELS, 3)
        for spec in BLOCKS:
            setattr(self, spec.name, ResidualBlock(spec))
        self.head = keras.layers.Dense(CLASSES)

    def call(self, x: Any, training: bool = False) -> Any:
        x = keras.ops.relu(self.stem(x, training=training))
        for spec in BLOCKS:
            x = getattr(self, spec.name)(x, training=training)
        return self.head(keras.ops.mean(x, axis=(1, 2)))
