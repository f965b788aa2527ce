"""PyTorch implementations in the layouts of published SE / CBAM / ECA code, some correct, some broken.

Written from the facts in SPEC.md (sections 2-7): parameter names and shapes, rounding rules,
pool orders, BN momentum. None of this is anybody's code; none of it needs timm or torchvision.

Correct, in other layouts:
    TimmStyleSE          1x1 convolutions with bias, width rounded to the nearest multiple of 8
    OfficialStyleCBAM    ``ChannelGate.mlp.{1,3}`` Linear layers, BasicConv spatial gate, BN momentum 0.01
    TimmStyleCBAM        1x1 convolutions without bias, (mean, max) spatial order, BN momentum 0.1
    OfficialStyleECA     a Conv1d (1, 1, k) over the channel descriptor
    HardSigmoidSE        senet.pytorch layout (``fc.0``, ``fc.2``, no bias) with a hard-sigmoid gate

Broken:
    NoPadMaxOnlyCBAM     spatial conv without padding that sees only the channel-max map
    SEClaimingECA        an "ECA" that is really SE: two Linear layers
    SwappedOrderCBAM     says it is the official CBAM, concatenates (mean, max) instead of (max, mean)
    DetachedSE           forward right, gradient wrong: the gate is computed from a detached input
    LeakySE              an activation no spec knob gives (leaky ReLU): nothing matches, the closest is named
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _rounded(v: float, divisor: int) -> int:
    """Nearest multiple of ``divisor``, at least ``divisor`` (SPEC.md, "Hidden width", nearest)."""
    return max(divisor, int(v + divisor / 2) // divisor * divisor)


def _channel_max(x: torch.Tensor) -> torch.Tensor:
    return x.amax(dim=1, keepdim=True)


def _channel_mean(x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=1, keepdim=True)


# ----------------------------------------------------------------------------- SE


class TimmStyleSE(nn.Module):
    """SE whose MLP is two 1x1 convolutions with bias; width = nearest multiple of 8 of C / 16."""

    def __init__(self, channels: int, rd_ratio: float = 1 / 16, rd_divisor: int = 8):
        super().__init__()
        hidden = _rounded(channels * rd_ratio, rd_divisor)
        self.fc1 = nn.Conv2d(channels, hidden, kernel_size=1)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.fc2(self.act(self.fc1(x.mean((2, 3), keepdim=True))))
        return x * torch.sigmoid(s)


class HardSigmoidSE(nn.Module):
    """SE in the senet.pytorch layout (Linear without bias), gated by relu6(x + 3) / 6.

    ``native_gate=True`` uses ``nn.Hardsigmoid``, whose float64 backward multiplies by a
    float32 1/6 (PyTorch 2.x): right in float32, off by ~3e-8 relative in float64.
    """

    def __init__(self, channel: int, reduction: int = 16, native_gate: bool = False):
        super().__init__()
        self.fc = nn.Sequential(
            nn.Linear(channel, channel // reduction, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(channel // reduction, channel, bias=False),
        )
        self.native_gate = native_gate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.fc(x.mean((2, 3)))
        s = F.hardsigmoid(a) if self.native_gate else F.relu6(a + 3) / 6
        return x * s[:, :, None, None]


class SEClaimingECA(nn.Module):
    """Sold as ECA (same constructor), computes SE: two fully connected layers, no 1-D convolution."""

    def __init__(self, channel: int, k_size: int = 3):
        super().__init__()
        self.fc1 = nn.Linear(channel, max(1, channel // 16))
        self.fc2 = nn.Linear(max(1, channel // 16), channel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.fc2(torch.relu(self.fc1(x.mean((2, 3)))))
        return x * torch.sigmoid(s)[:, :, None, None]


class DetachedSE(nn.Module):
    """Right output, wrong input gradient: the squeeze path never sees the gradient."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.fc1 = nn.Linear(channels, channels // reduction)
        self.fc2 = nn.Linear(channels // reduction, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.fc2(torch.relu(self.fc1(x.detach().mean((2, 3)))))
        return x * torch.sigmoid(s)[:, :, None, None]


class LeakySE(nn.Module):
    """SE with a leaky ReLU between the two layers, which the spec has no knob for."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.fc1 = nn.Linear(channels, channels // reduction)
        self.fc2 = nn.Linear(channels // reduction, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.fc2(F.leaky_relu(self.fc1(x.mean((2, 3))), 0.2))
        return x * torch.sigmoid(s)[:, :, None, None]


# ----------------------------------------------------------------------------- CBAM, official layout


class _ChannelGate(nn.Module):
    def __init__(self, channels: int, reduction: int):
        super().__init__()
        hidden = channels // reduction
        self.mlp = nn.Sequential(nn.Flatten(), nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.mlp(F.adaptive_avg_pool2d(x, 1)) + self.mlp(F.adaptive_max_pool2d(x, 1))
        return x * torch.sigmoid(a)[:, :, None, None]


class _BasicConv(nn.Module):
    def __init__(self, in_maps: int, kernel_size: int, padding: int):
        super().__init__()
        self.conv = nn.Conv2d(in_maps, 1, kernel_size, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(1, eps=1e-5, momentum=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class _SpatialGate(nn.Module):
    def __init__(self, pools: tuple = (_channel_max, _channel_mean), kernel_size: int = 7, padding: int = 3):
        super().__init__()
        self.pools = pools
        self.spatial = _BasicConv(len(pools), kernel_size, padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = torch.cat([pool(x) for pool in self.pools], dim=1)
        return x * torch.sigmoid(self.spatial(d))


class OfficialStyleCBAM(nn.Module):
    """CBAM as the authors laid it out: ``ChannelGate.mlp.{1,3}``, ``SpatialGate.spatial.{conv,bn}``."""

    def __init__(self, gate_channels: int, reduction_ratio: int = 16):
        super().__init__()
        self.ChannelGate = _ChannelGate(gate_channels, reduction_ratio)
        self.SpatialGate = _SpatialGate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.SpatialGate(self.ChannelGate(x))


class SwappedOrderCBAM(OfficialStyleCBAM):
    """Claims the official CBAM (max map first), but concatenates the mean map first."""

    def __init__(self, gate_channels: int, reduction_ratio: int = 16):
        super().__init__(gate_channels, reduction_ratio)
        self.SpatialGate = _SpatialGate(pools=(_channel_mean, _channel_max))


class NoPadMaxOnlyCBAM(nn.Module):
    """Broken twice: the 7x7 spatial conv is unpadded (the map shrinks) and sees only the max map."""

    def __init__(self, gate_channels: int, reduction_ratio: int = 16):
        super().__init__()
        self.ChannelGate = _ChannelGate(gate_channels, reduction_ratio)
        self.SpatialGate = _SpatialGate(pools=(_channel_max,), padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.SpatialGate(self.ChannelGate(x))


# ----------------------------------------------------------------------------- CBAM, timm layout


class _ConvBn(nn.Module):
    def __init__(self, kernel_size: int):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(1)  # PyTorch's default momentum, 0.1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class _TimmChannel(nn.Module):
    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=False)
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        def mlp(z: torch.Tensor) -> torch.Tensor:
            return self.fc2(torch.relu(self.fc1(z)))

        a = mlp(x.mean((2, 3), keepdim=True)) + mlp(x.amax((2, 3), keepdim=True))
        return x * torch.sigmoid(a)


class _TimmSpatial(nn.Module):
    def __init__(self, kernel_size: int):
        super().__init__()
        self.conv = _ConvBn(kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = torch.cat([_channel_mean(x), _channel_max(x)], dim=1)
        return x * torch.sigmoid(self.conv(d))


class TimmStyleCBAM(nn.Module):
    """CBAM in timm's layout: ``channel.fc{1,2}`` 1x1 convs without bias, ``spatial.conv.{conv,bn}``."""

    def __init__(self, channels: int, rd_ratio: float = 1 / 16, spatial_kernel_size: int = 7):
        super().__init__()
        self.channel = _TimmChannel(channels, _rounded(channels * rd_ratio, 1))
        self.spatial = _TimmSpatial(spatial_kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spatial(self.channel(x))


# ----------------------------------------------------------------------------- ECA


class OfficialStyleECA(nn.Module):
    """ECA as the authors laid it out: ``conv`` is a Conv1d(1, 1, k) over the pooled channels."""

    def __init__(self, channel: int, k_size: int = 3):
        super().__init__()
        self.conv = nn.Conv1d(1, 1, kernel_size=k_size, padding=(k_size - 1) // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.conv(x.mean((2, 3))[:, None, :])[:, 0, :]
        return x * torch.sigmoid(u)[:, :, None, None]
