"""PyTorch networks for the audit tests: blocks that conform and blocks that do not, written here.

resnet(depth, attn)      ResNet-18 (basic blocks) or ResNet-50 (bottlenecks) at the usual widths, with
                         torch_impl's SE / CBAM / ECA (or none) in every residual block
Recalibrate              an SE made of nn.Linear, with no class name that says so (found by shape)
PointwiseMLP             two 1x1 convolutions C -> h -> C on the whole map: SE's weights, not SE
ResidualSE               returns x + SE(x) (found by shape; off-spec)
RaisingSE, NaNSE, HangingSE, TupleSE, ShapeSE
                         misbehave when called (found by class name)
mixed_net, conforming_net, hanging_net, tuple_shape_net, plain_net, broken_build
                         factories for the tests and the command line
"""

from __future__ import annotations

import os
import time

import torch
import torch.nn.functional as F
from torch import nn

import torch_impl


class Recalibrate(nn.Module):
    """SE in plain nn.Linear: average, Linear, ReLU, Linear, sigmoid, scale."""

    def __init__(self, c: int, r: int = 4):
        super().__init__()
        self.squeeze = nn.Linear(c, c // r)
        self.expand = nn.Linear(c // r, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.sigmoid(self.expand(F.relu(self.squeeze(x.mean((2, 3))))))
        return x * s[:, :, None, None]


class PointwiseMLP(nn.Module):
    """1x1 conv C -> h -> C applied to every position (a pointwise MLP), residual: not an attention block."""

    def __init__(self, c: int, h: int = 8):
        super().__init__()
        self.a = nn.Conv2d(c, h, 1)
        self.b = nn.Conv2d(h, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.b(F.relu(self.a(x)))


class ResidualSE(Recalibrate):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + super().forward(x)


class RaisingSE(Recalibrate):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("this block always raises")


class NaNSE(Recalibrate):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * float("nan")


class HangingSE(Recalibrate):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(3600)
        return x


class AbortSE(Recalibrate):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        os.abort()


class TupleSE(Recalibrate):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        y = super().forward(x)
        return y, y


class ShapeSE(Recalibrate):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x)[:, :, :-1]


class SingleFCSE(nn.Module):
    """ "Effective SE": one C -> C layer (found by its class name only: one layer is not SE's shape)."""

    def __init__(self, c: int):
        super().__init__()
        self.fc = nn.Conv2d(c, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.fc(x.mean((2, 3), keepdim=True)))


class Stage(nn.Module):
    """conv3x3 (c_in -> c_out), BN, ReLU, then the attention block."""

    def __init__(self, c_in: int, c_out: int, attn: nn.Module):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(c_out)
        self.attn = attn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(F.relu(self.bn(self.conv(x))))


class Net(nn.Module):
    def __init__(self, stages: list[tuple[int, nn.Module]], classes: int = 10):
        super().__init__()
        torch.manual_seed(0)
        c_in, blocks = 3, []
        for c, attn in stages:
            blocks.append(Stage(c_in, c, attn))
            c_in = c
        self.features = nn.Sequential(*blocks)
        self.head = nn.Linear(c_in, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean((2, 3)))


def _seeded(fn):  # type: ignore[no-untyped-def]
    def build():  # type: ignore[no-untyped-def]
        torch.manual_seed(0)
        return fn()

    build.__name__ = fn.__name__
    return build


@_seeded
def mixed_net() -> Net:
    return Net(
        [
            (16, torch_impl.SqueezeExcite(16)),
            (16, Recalibrate(16)),
            (16, Recalibrate(16)),  # same class and configuration: identified once
            (16, PointwiseMLP(16)),  # not a block
            (32, torch_impl.CBAM(32, rd_ratio=1 / 8)),
            (32, ResidualSE(32)),
            (32, RaisingSE(32)),
            (32, NaNSE(32)),
            (32, torch_impl.ECA(32)),
        ]
    )


@_seeded
def wild_net() -> Net:
    """The blocks of issue #10's "Why" (tests/third_party_fixtures/torch_wild.py) inside one network."""
    from tests.third_party_fixtures import torch_wild as w

    return Net(
        [
            (16, w.SqueezeExcitationTV(16, 4)),
            (32, w.ActLayerSE(32, act_layer=nn.SiLU)),
            (32, w.UnfamiliarSE(32, r=4)),
            (32, w.UnfamiliarCBAM(32, reduction_ratio=4)),
            (32, w.ResidualCBAM(32, reduction_ratio=4)),
            (32, w.UngatedSpatialCBAM(32)),
            (32, w.UnfamiliarECA(32)),
            (8, w.ZeroWidthSE(8)),
            (16, w.BlendPoolSE(16)),
            (16, w.BatchNormSE(16)),
            (16, w.GroupedConvECA(16)),
            (16, nn.Sequential(Recalibrate(16))),  # a wrapper: the block is inside it
        ]
    )


@_seeded
def conforming_net() -> Net:
    return Net([(16, Recalibrate(16)), (16, Recalibrate(16)), (32, torch_impl.ECA(32))])


@_seeded
def hanging_net() -> Net:
    return Net([(16, Recalibrate(16)), (16, HangingSE(16)), (16, AbortSE(16)), (32, torch_impl.ECA(32))])


@_seeded
def tuple_shape_net() -> Net:
    return Net([(16, TupleSE(16)), (16, ShapeSE(16)), (16, Recalibrate(16)), (16, SingleFCSE(16))])


@_seeded
def plain_net() -> Net:
    return Net([(16, nn.Identity()), (16, PointwiseMLP(16))])


def broken_build() -> Net:
    raise RuntimeError("the network's constructor fails")


# ----------------------------------------------------------------------------- ResNet-sized networks


def _attn(kind: str | None, c: int) -> nn.Module:
    if kind is None:
        return nn.Identity()
    return {"se": torch_impl.SqueezeExcite, "cbam": torch_impl.CBAM, "eca": torch_impl.ECA}[kind](c)


class Basic(nn.Module):
    expansion = 1

    def __init__(self, c_in: int, c: int, stride: int, attn: str | None):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.attn = _attn(attn, c)
        self.down = (
            nn.Sequential(nn.Conv2d(c_in, c, 1, stride, bias=False), nn.BatchNorm2d(c))
            if stride != 1 or c_in != c
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.attn(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))
        return F.relu(y + self.down(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, c_in: int, c: int, stride: int, attn: str | None):
        super().__init__()
        out = c * 4
        self.conv1 = nn.Conv2d(c_in, c, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.conv3 = nn.Conv2d(c, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.attn = _attn(attn, out)
        self.down = (
            nn.Sequential(nn.Conv2d(c_in, out, 1, stride, bias=False), nn.BatchNorm2d(out))
            if stride != 1 or c_in != out
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.attn(self.bn3(self.conv3(y)))
        return F.relu(y + self.down(x))


class ResNet(nn.Module):
    def __init__(self, depth: int = 18, attn: str | None = "se", classes: int = 1000):
        super().__init__()
        block, counts = {18: (Basic, (2, 2, 2, 2)), 50: (Bottleneck, (3, 4, 6, 3))}[depth]
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU())
        c_in, layers = 64, []
        for i, (n, c) in enumerate(zip(counts, (64, 128, 256, 512), strict=True)):
            blocks = []
            for j in range(n):
                blocks.append(block(c_in, c, 2 if j == 0 and i > 0 else 1, attn))
                c_in = c * block.expansion
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.fc = nn.Linear(c_in, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(self.stem(x), 3, 2, 1)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(x.mean((2, 3)))


def resnet(depth: int = 18, attn: str | None = "se") -> ResNet:
    torch.manual_seed(0)
    return ResNet(depth, attn)


def resnet18_se() -> ResNet:
    return resnet(18, "se")


def resnet50_se() -> ResNet:
    return resnet(50, "se")
