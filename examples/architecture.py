"""The ResNet every example builds, whatever the framework: timm's ``resnet{depth}`` with an attention module per block.

``resnet(depth, attn=None, num_classes=1000)`` in :mod:`examples.resnet_torch`,
:mod:`examples.resnet_flax` (Linen) and :mod:`examples.resnet_keras` is the architecture, and
has the tensor names, of timm's ``resnet{depth}`` built with ``block_args={"attn_layer": attn}``
(``attn="se"`` at depth 50 is timm's ``seresnet50``), and of torchvision's ``resnet{depth}``
when ``attn`` is None:

- stem: ``conv1`` 7x7 stride 2 padding 3, ``bn1``, ReLU, 3x3 max pool stride 2 padding 1;
- stages ``layer1`` .. ``layer4`` of widths 64, 128, 256, 512 (strides 1, 2, 2, 2), blocks
  numbered ``0``, ``1``, ...; a stage's first block has a shortcut ``downsample.0`` (1x1
  convolution with the block's stride) and ``downsample.1`` (batch norm) when the shape changes;
- BasicBlock (depths 18, 34; blocks 2-2-2-2, 3-4-6-3): ``conv1`` 3x3 with the block's stride,
  ``bn1``, ReLU, ``conv2`` 3x3, ``bn2``, attention ``se``, residual sum, ReLU;
- Bottleneck (depth 50; blocks 3-4-6-3): ``conv1`` 1x1, ``bn1``, ReLU, ``conv2`` 3x3 with the
  stride, ``bn2``, ReLU, ``conv3`` 1x1 to 4x the width, ``bn3``, attention ``se``, sum, ReLU;
- global average pool, ``fc``.

Convolutions have no bias; batch norms have eps 1e-5 and PyTorch momentum 0.1. The attention
module ``se`` is built on the block's output channels with timm's preset of its kind
(:data:`ATTENTION`). Flax and Keras pad explicitly, as PyTorch does (their ``"SAME"`` pads only
after the input at stride 2).
"""

from __future__ import annotations

from typing import NamedTuple

from reference_numpy import Config, make_config

DEPTHS: dict[int, tuple[str, tuple[int, ...]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
}
WIDTHS = (64, 128, 256, 512)
STEM_WIDTH = 64
EXPANSION = {"basic": 1, "bottleneck": 4}
BN_EPS = 1e-5
BN_MOMENTUM = 0.1
"""PyTorch's convention: Flax and Keras take ``1 - BN_MOMENTUM`` as their decay."""

ATTENTION: dict[str, tuple[str, str]] = {
    "se": ("se", "timm"),  # timm SEModule
    "eca": ("eca", "timm"),  # timm EcaModule
    "ceca": ("eca", "timm_ceca"),  # timm CecaModule: ECA with circular padding
    "cbam": ("cbam", "timm"),  # timm CbamModule
}
"""``attn`` -> (spec module, preset): timm's module of that name, as a spec config."""
ATTNS = (None, *ATTENTION)


def attention_config(attn: str | None, channels: int) -> Config | None:
    """The spec config of the attention module ``se`` of a block with ``channels`` output channels.

    >>> attention_config("se", 256).hidden, attention_config("ceca", 512).padding
    (16, 'circular')
    """
    if attn is None:
        return None
    if attn not in ATTENTION:
        raise ValueError(f"`attn` must be None or one of {', '.join(map(repr, ATTENTION))}. Received: attn={attn!r}")
    module, preset = ATTENTION[attn]
    return make_config(module, channels, preset=preset)


class Block(NamedTuple):
    """One residual block: its module path (``layer2.0``), kind, channel counts and stride."""

    stage: str
    index: int
    kind: str  # "basic" or "bottleneck"
    in_channels: int
    width: int
    out_channels: int
    stride: int

    @property
    def name(self) -> str:
        return str(self.index)

    @property
    def has_downsample(self) -> bool:
        return self.stride != 1 or self.in_channels != self.out_channels


def blocks(depth: int) -> tuple[Block, ...]:
    """Every block of ``resnet(depth)``, in order.

    >>> [b for b in blocks(50) if b.has_downsample][0]
    Block(stage='layer1', index=0, kind='bottleneck', in_channels=64, width=64, out_channels=256, stride=1)
    """
    if depth not in DEPTHS:
        raise ValueError(f"`depth` must be one of {', '.join(map(str, DEPTHS))}. Received: depth={depth!r}")
    kind, counts = DEPTHS[depth]
    out, channels = [], STEM_WIDTH
    for s, (width, count) in enumerate(zip(WIDTHS, counts, strict=True)):
        for i in range(count):
            stride = 2 if s > 0 and i == 0 else 1
            block = Block(f"layer{s + 1}", i, kind, channels, width, width * EXPANSION[kind], stride)
            out.append(block)
            channels = block.out_channels
    return tuple(out)


def features(depth: int) -> int:
    """Channels into ``fc``."""
    return blocks(depth)[-1].out_channels
