"""timm's ResNet (:mod:`examples.architecture`) in Keras 3, channels last, with :mod:`tf_impl`'s attention layers.

Layers are nested and named as PyTorch's modules are (a ``Conv2D`` named ``"conv1"`` in a
block named ``"0"`` in a ``Sequential`` named ``"layer1"``), so :func:`tf_impl.load_torch_state_dict`
finds ``layer1.0.conv1.weight`` there. Padding is explicit (``ZeroPadding2D`` and ``"valid"``
layers): Keras's ``"same"`` pads only after the input at stride 2, PyTorch pads both sides. The
stem's max pool pads with zeros where PyTorch pads with -inf, which is the same after a ReLU.

>>> model = resnet(18, "eca", num_classes=10)
>>> model(np.zeros((1, 32, 32, 3), "float32")).shape
TensorShape([1, 10])
>>> model.get_layer("layer2").get_layer("0").se.config.effective_kernel_size
3
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np  # noqa: F401  (the docstring example)

import tf_impl

from .architecture import BN_EPS, BN_MOMENTUM, STEM_WIDTH, Block, attention_config, blocks

__all__ = ["ResNet", "resnet"]


def _conv(filters: int, kernel_size: int, stride: int, name: str) -> keras.layers.Conv2D:
    return keras.layers.Conv2D(filters, kernel_size, stride, padding="valid", use_bias=False, name=name)


def _bn(name: str) -> keras.layers.BatchNormalization:
    return keras.layers.BatchNormalization(momentum=1 - BN_MOMENTUM, epsilon=BN_EPS, name=name)


class ResidualBlock(keras.layers.Layer):
    """BasicBlock or Bottleneck, named by its index in the stage."""

    def __init__(self, b: Block, attn: str | None, **kwargs: Any):
        super().__init__(name=b.name, **kwargs)
        self.kind = b.kind
        self.pad = keras.layers.ZeroPadding2D(1)
        if b.kind == "basic":
            self.conv1, self.bn1 = _conv(b.width, 3, b.stride, "conv1"), _bn("bn1")
            self.conv2, self.bn2 = _conv(b.out_channels, 3, 1, "conv2"), _bn("bn2")
        else:
            self.conv1, self.bn1 = _conv(b.width, 1, 1, "conv1"), _bn("bn1")
            self.conv2, self.bn2 = _conv(b.width, 3, b.stride, "conv2"), _bn("bn2")
            self.conv3, self.bn3 = _conv(b.out_channels, 1, 1, "conv3"), _bn("bn3")
        cfg = attention_config(attn, b.out_channels)
        self.se = None if cfg is None else tf_impl.from_config(cfg, name="se", data_format="channels_last")
        self.downsample = (
            keras.Sequential([_conv(b.out_channels, 1, b.stride, "0"), _bn("1")], name="downsample")
            if b.has_downsample
            else None
        )

    def call(self, x: Any, training: bool = False) -> Any:
        relu = keras.ops.relu
        if self.kind == "basic":
            y = relu(self.bn1(self.conv1(self.pad(x)), training=training))
            y = self.bn2(self.conv2(self.pad(y)), training=training)
        else:
            y = relu(self.bn1(self.conv1(x), training=training))
            y = relu(self.bn2(self.conv2(self.pad(y)), training=training))
            y = self.bn3(self.conv3(y), training=training)
        if self.se is not None:
            y = self.se(y, training=training)
        return relu(y + (x if self.downsample is None else self.downsample(x, training=training)))


class ResNet(keras.Model):
    """NHWC images ``(N, H, W, 3)`` -> logits ``(N, num_classes)``."""

    def __init__(self, depth: int, attn: str | None = None, num_classes: int = 1000, **kwargs: Any):
        super().__init__(**kwargs)
        self.stem_pad, self.pool_pad = keras.layers.ZeroPadding2D(3), keras.layers.ZeroPadding2D(1)
        self.conv1, self.bn1 = _conv(STEM_WIDTH, 7, 2, "conv1"), _bn("bn1")
        self.maxpool = keras.layers.MaxPooling2D(3, 2, padding="valid")
        self.stages = []
        for b in blocks(depth):
            if b.index == 0:
                self.stages.append(keras.Sequential([], name=b.stage))
            self.stages[-1].add(ResidualBlock(b, attn))
        self.fc = keras.layers.Dense(num_classes, name="fc")

    def call(self, x: Any, training: bool = False) -> Any:
        x = keras.ops.relu(self.bn1(self.conv1(self.stem_pad(x)), training=training))
        x = self.maxpool(self.pool_pad(x))
        for stage in self.stages:
            x = stage(x, training=training)
        return self.fc(keras.ops.mean(x, axis=(1, 2)))


def resnet(depth: int, attn: str | None = None, num_classes: int = 1000) -> ResNet:
    """timm's ``resnet{depth}`` with ``block_args={"attn_layer": attn}``, unbuilt (call it once, or ``build``)."""
    return ResNet(depth, attn, num_classes)
