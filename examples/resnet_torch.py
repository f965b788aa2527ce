"""The example ResNet in PyTorch, with :mod:`torch_impl`'s SE, CBAM and ECA inside its blocks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import torch_impl

from .architecture import BLOCKS, BN_EPS, BN_MOMENTUM, CLASSES, IN_CHANNELS, STEM_CHANNELS, Block


class ConvBN(nn.Module):
    """Convolution without bias (padding k // 2), then batch norm."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=BN_EPS, momentum=BN_MOMENTUM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class ResidualBlock(nn.Module):
    def __init__(self, spec: Block):
        super().__init__()
        self.conv1 = nn.Conv2d(spec.in_channels, spec.out_channels, 3, spec.stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(spec.out_channels, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.conv2 = nn.Conv2d(spec.out_channels, spec.out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(spec.out_channels, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.attn = torch_impl.from_config(spec.attention)
        self.shortcut = ConvBN(spec.in_channels, spec.out_channels, 1, spec.stride) if spec.has_shortcut_conv else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.attn(self.bn2(self.conv2(y)))
        return F.relu(y + (x if self.shortcut is None else self.shortcut(x)))


class ResNet(nn.Module):
    """NCHW input ``(N, 3, 16, 16)`` -> logits ``(N, 10)``."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = ConvBN(IN_CHANNELS, STEM_CHANNELS, 3)
        for spec in BLOCKS:
            self.add_module(spec.name, ResidualBlock(spec))
        self.head = nn.Linear(BLOCKS[-1].out_channels, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem(x))
        for spec in BLOCKS:
            x = getattr(self, spec.name)(x)
        return self.head(x.mean(dim=(2, 3)))
