"""PyTorch blocks written for the verify tests the way code in the wild builds them (issue #10's "Why").

Each is written here from the behaviour described in the issue, not copied from anywhere:

    SqueezeExcitationTV   torchvision-style SE: explicit squeeze width, ``fc1``/``fc2`` 1x1 convs, callables
                          for the activation and the gate passed as classes
    ActLayerSE            SE whose activation is a class argument (``act_layer=nn.SiLU``)
    UnfamiliarSE          SE whose channel argument is called ``c1`` (the weights say the count)
    UnfamiliarCBAM        CBAM with ``gate_channel``; UnfamiliarECA with ``in_filters``
    ZeroWidthSE           senet-style SE at a channel count where C // ratio is 0 (Linear(C, 0))
    ResidualCBAM          returns x + cbam(x)
    BlendPoolSE           squeezes 0.5 * avg + 0.5 * max
    UngatedSpatialCBAM    CBAM whose spatial map is used without its sigmoid
    BatchNormSE           SE with a BatchNorm1d between its two layers
    GroupedConvECA        ECA with Conv1d(C, C, k, groups=C) over the pooled descriptor
    SingleFCSE            "effective SE": one C -> C layer
    TinyNet               a small network holding SE blocks at ``layer3[2].se``

Misbehaving targets (the worker must turn each into a failed check): ExitSE, AbortSE, SleepSE,
TupleSE, ShapeSE, NaNSE.
"""

from __future__ import annotations

import os
import sys
import time

import torch
from torch import nn


class SqueezeExcitationTV(nn.Module):
    def __init__(self, input_channels: int, squeeze_channels: int, activation=nn.ReLU, scale_activation=nn.Sigmoid):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(input_channels, squeeze_channels, 1)
        self.fc2 = nn.Conv2d(squeeze_channels, input_channels, 1)
        self.activation = activation()
        self.scale_activation = scale_activation()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))


class ActLayerSE(nn.Module):
    def __init__(self, channels: int, rd_ratio: float = 0.25, act_layer=nn.ReLU):
        super().__init__()
        hidden = int(channels * rd_ratio)
        self.fc1 = nn.Linear(channels, hidden)
        self.act = act_layer()
        self.fc2 = nn.Linear(hidden, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.sigmoid(self.fc2(self.act(self.fc1(x.mean((2, 3))))))
        return x * s[:, :, None, None]


class UnfamiliarSE(nn.Module):
    def __init__(self, c1: int, r: int = 16):
        super().__init__()
        self.reduce = nn.Conv2d(c1, c1 // r, 1, bias=False)
        self.expand = nn.Conv2d(c1 // r, c1, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.expand(torch.relu(self.reduce(x.mean((2, 3), keepdim=True)))))


class _Channel(nn.Module):
    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Flatten(), nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.mlp(x.mean((2, 3), keepdim=True)) + self.mlp(x.amax((2, 3), keepdim=True))
        return x * torch.sigmoid(a)[:, :, None, None]


class _Spatial(nn.Module):
    def __init__(self, gate: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, 7, padding=3, bias=False)
        self.bn = nn.BatchNorm2d(1, momentum=0.01)
        self.gate = gate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = torch.cat([x.amax(1, keepdim=True), x.mean(1, keepdim=True)], 1)
        m = self.bn(self.conv(d))
        return x * (torch.sigmoid(m) if self.gate else m)


class UnfamiliarCBAM(nn.Module):
    """The official CBAM's computation, its channel count called ``gate_channel``."""

    def __init__(self, gate_channel: int, reduction_ratio: int = 16, spatial_gate: bool = True):
        super().__init__()
        self.channel = _Channel(gate_channel, gate_channel // reduction_ratio)
        self.spatial = _Spatial(spatial_gate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spatial(self.channel(x))


class ResidualCBAM(UnfamiliarCBAM):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + super().forward(x)


class UngatedSpatialCBAM(UnfamiliarCBAM):
    def __init__(self, gate_channel: int):
        super().__init__(gate_channel, spatial_gate=False)


class UnfamiliarECA(nn.Module):
    def __init__(self, in_filters: int, k: int = 3):
        super().__init__()
        self.conv = nn.Conv1d(1, 1, k, padding=k // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.conv(x.mean((2, 3))[:, None, :]))[:, 0, :, None, None]


class ZeroWidthSE(nn.Module):
    def __init__(self, channel: int, reduction: int = 16):
        super().__init__()
        self.fc = nn.Sequential(
            nn.Linear(channel, channel // reduction, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(channel // reduction, channel, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.fc(x.mean((2, 3))))[:, :, None, None]


class BlendPoolSE(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.fc1 = nn.Linear(channels, channels // 4)
        self.fc2 = nn.Linear(channels // 4, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = 0.5 * x.mean((2, 3)) + 0.5 * x.amax((2, 3))
        return x * torch.sigmoid(self.fc2(torch.relu(self.fc1(z))))[:, :, None, None]


class BatchNormSE(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.fc1 = nn.Linear(channels, channels // 4, bias=False)
        self.bn = nn.BatchNorm1d(channels // 4)
        self.fc2 = nn.Linear(channels // 4, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.sigmoid(self.fc2(torch.relu(self.bn(self.fc1(x.mean((2, 3)))))))
        return x * s[:, :, None, None]


class GroupedConvECA(nn.Module):
    def __init__(self, channels: int, k: int = 3):
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, k, padding=k // 2, groups=channels, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.conv(x.mean((2, 3))[:, :, None]))[:, :, :, None]


class SingleFCSE(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.fc = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.fc(x.mean((2, 3), keepdim=True)))


class _Block(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.se = SqueezeExcitationTV(channels, channels // 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.se(self.conv(x)))


class TinyNet(nn.Module):
    """Four stages of small residual blocks with SE, the SE of ``layer3[2]`` the one the tests verify."""

    def __init__(self, channels: int = 16):
        super().__init__()
        self.stem = nn.Conv2d(3, channels, 3, padding=1)
        self.layer3 = nn.Sequential(*(_Block(channels) for _ in range(3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer3(self.stem(x))


# ----------------------------------------------------------------------------- misbehaving targets


class _SE(nn.Module):
    def __init__(self, channels: int = 16):
        super().__init__()
        self.fc1 = nn.Linear(channels, channels // 4)
        self.fc2 = nn.Linear(channels // 4, channels)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.fc2(torch.relu(self.fc1(x.mean((2, 3))))))[:, :, None, None]


class ExitSE(_SE):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sys.exit(0)


class AbortSE(_SE):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        os.abort()


class HardExitSE(_SE):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        os._exit(0)


class SleepSE(_SE):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(3600)
        return x


class TupleSE(_SE):
    def forward(self, x: torch.Tensor):
        return x * self.gate(x), self.gate(x)


class ShapeSE(_SE):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gate(x)


class NaNSE(_SE):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x) * torch.nan
