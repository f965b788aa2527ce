"""The small ResNet every example builds, whatever the framework: sizes and the three attention configs.

    stem: 3x3 conv (3 -> 16), BN, ReLU
    block1: residual block 16 -> 16, stride 1, SE inside
    block2: residual block 16 -> 32, stride 2, CBAM inside (1x1 conv + BN shortcut)
    block3: residual block 32 -> 32, stride 1, ECA inside
    global average pool, Linear 32 -> 10

A residual block is conv3x3-BN-ReLU-conv3x3-BN, then the attention module, then the shortcut
is added and a ReLU applied (the SE-ResNet placement). Canonical weight names follow the
PyTorch module tree: ``stem.conv.weight``, ``block2.bn1.running_var``,
``block2.attn.spatial.conv.weight`` (the attention's own canonical names under ``attn.``),
``block2.shortcut.conv.weight``, ``head.weight``.
"""

from __future__ import annotations

from typing import NamedTuple

from reference_numpy import CBAMConfig, Config, ECAConfig, SEConfig

IN_CHANNELS = 3
IMAGE_SIZE = 16
STEM_CHANNELS = 16
CLASSES = 10
BN_EPS = 1e-5
BN_MOMENTUM = 0.1
"""PyTorch's convention (SPEC.md section 2): Flax and Keras take ``1 - BN_MOMENTUM`` as their decay."""


class Block(NamedTuple):
    name: str
    in_channels: int
    out_channels: int
    stride: int
    attention: Config

    @property
    def has_shortcut_conv(self) -> bool:
        return self.stride != 1 or self.in_channels != self.out_channels


BLOCKS = (
    Block("block1", 16, 16, 1, SEConfig(channels=16, rd_ratio=0.25)),
    Block("block2", 16, 32, 2, CBAMConfig(channels=32, rd_ratio=1 / 8)),
    Block("block3", 32, 32, 1, ECAConfig(channels=32)),
)
