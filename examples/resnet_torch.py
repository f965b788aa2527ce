"""timm's ResNet in PyTorch (:mod:`examples.architecture`), with stand-ins for timm's attention modules.

timm is not a dependency, so ``se`` is built here in timm's own layout, which is what a real
timm checkpoint holds and what :func:`tf_impl.load_torch_state_dict` and the Flax porters read:
SEModule (``fc1``/``fc2`` 1x1 convolutions with bias), EcaModule and CecaModule (``conv``, a
``Conv1d(1, 1, k)`` without bias; CECA pads circularly), CbamModule (``channel.fc1``/``fc2`` 1x1
convolutions without bias, ``spatial.conv.conv`` 7x7 and ``spatial.conv.bn``). Sizes come from
the spec config of timm's preset (:func:`examples.architecture.attention_config`).

>>> model = resnet(50, "se")
>>> sd = model.state_dict()
>>> len(sd), tuple(sd["layer1.0.se.fc1.weight"].shape), tuple(sd["layer4.2.se.fc2.weight"].shape)
(384, (16, 256, 1, 1), (2048, 128, 1, 1))
>>> sorted(k for k in resnet(18, "cbam").state_dict() if k.startswith("layer1.0.se."))[:3]
['layer1.0.se.channel.fc1.weight', 'layer1.0.se.channel.fc2.weight', 'layer1.0.se.spatial.conv.bn.bias']
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from reference_numpy import CBAMConfig, Config, ECAConfig, SEConfig

from .architecture import BN_EPS, BN_MOMENTUM, STEM_WIDTH, Block, attention_config, blocks, features

__all__ = ["ResNet", "resnet"]


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class SEModule(nn.Module):
    def __init__(self, cfg: SEConfig):
        super().__init__()
        self.fc1 = nn.Conv2d(cfg.channels, cfg.hidden, 1, bias=cfg.bias)
        self.fc2 = nn.Conv2d(cfg.hidden, cfg.channels, 1, bias=cfg.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean((2, 3), keepdim=True)))))


class EcaModule(nn.Module):
    def __init__(self, cfg: ECAConfig):
        super().__init__()
        self.pad, self.circular = cfg.effective_kernel_size // 2, cfg.padding == "circular"
        self.conv = nn.Conv1d(1, 1, cfg.effective_kernel_size, padding=0 if self.circular else self.pad, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.mean((2, 3)).unsqueeze(1)  # (N, 1, C)
        if self.circular:
            y = F.pad(y, (self.pad, self.pad), mode="circular")
        return x * torch.sigmoid(self.conv(y)).view(x.shape[0], -1, 1, 1)


class ChannelAttn(nn.Module):
    def __init__(self, cfg: CBAMConfig):
        super().__init__()
        self.fc1 = nn.Conv2d(cfg.channels, cfg.hidden, 1, bias=cfg.mlp_bias)
        self.fc2 = nn.Conv2d(cfg.hidden, cfg.channels, 1, bias=cfg.mlp_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mlp = lambda z: self.fc2(F.relu(self.fc1(z)))  # noqa: E731
        return x * torch.sigmoid(mlp(x.mean((2, 3), keepdim=True)) + mlp(x.amax((2, 3), keepdim=True)))


class ConvNorm(nn.Module):
    def __init__(self, cfg: CBAMConfig):
        super().__init__()
        k = cfg.spatial_kernel_size
        self.conv = nn.Conv2d(2, 1, k, padding=k // 2, bias=False)
        self.bn = nn.BatchNorm2d(1, eps=cfg.bn_eps, momentum=cfg.bn_momentum)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class SpatialAttn(nn.Module):
    def __init__(self, cfg: CBAMConfig):
        super().__init__()
        self.order = cfg.spatial_pool_order
        self.conv = ConvNorm(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pools = {"mean": x.mean(1, keepdim=True), "max": x.amax(1, keepdim=True)}
        return x * torch.sigmoid(self.conv(torch.cat([pools[p] for p in self.order], dim=1)))


class CbamModule(nn.Module):
    def __init__(self, cfg: CBAMConfig):
        super().__init__()
        self.channel, self.spatial = ChannelAttn(cfg), SpatialAttn(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spatial(self.channel(x))


def attention(cfg: Config | None) -> nn.Module | None:
    """timm's module for a config of timm's preset (act ReLU, gate sigmoid), or None."""
    if cfg is None:
        return None
    if (getattr(cfg, "act", "relu"), cfg.gate) != ("relu", "sigmoid"):
        raise ValueError(f"The timm stand-ins compute ReLU and sigmoid only. Received: {cfg}")
    return {"se": SEModule, "eca": EcaModule, "cbam": CbamModule}[cfg.module](cfg)


class BasicBlock(nn.Module):
    def __init__(self, b: Block, attn: str | None):
        super().__init__()
        self.conv1 = nn.Conv2d(b.in_channels, b.width, 3, b.stride, 1, bias=False)
        self.bn1 = _bn(b.width)
        self.conv2 = nn.Conv2d(b.width, b.out_channels, 3, 1, 1, bias=False)
        self.bn2 = _bn(b.out_channels)
        self.se = attention(attention_config(attn, b.out_channels))
        self.downsample = _downsample(b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return _join(self, x, y)


class Bottleneck(nn.Module):
    def __init__(self, b: Block, attn: str | None):
        super().__init__()
        self.conv1 = nn.Conv2d(b.in_channels, b.width, 1, bias=False)
        self.bn1 = _bn(b.width)
        self.conv2 = nn.Conv2d(b.width, b.width, 3, b.stride, 1, bias=False)
        self.bn2 = _bn(b.width)
        self.conv3 = nn.Conv2d(b.width, b.out_channels, 1, bias=False)
        self.bn3 = _bn(b.out_channels)
        self.se = attention(attention_config(attn, b.out_channels))
        self.downsample = _downsample(b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn3(self.conv3(F.relu(self.bn2(self.conv2(y)))))
        return _join(self, x, y)


def _downsample(b: Block) -> nn.Sequential | None:
    if not b.has_downsample:
        return None
    return nn.Sequential(nn.Conv2d(b.in_channels, b.out_channels, 1, b.stride, bias=False), _bn(b.out_channels))


def _join(block: BasicBlock | Bottleneck, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Attention on the residual branch, then the sum with the shortcut and a ReLU."""
    if block.se is not None:
        y = block.se(y)
    return F.relu(y + (x if block.downsample is None else block.downsample(x)))


class ResNet(nn.Module):
    """NCHW images ``(N, 3, H, W)`` -> logits ``(N, num_classes)``."""

    def __init__(self, depth: int, attn: str | None = None, num_classes: int = 1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, STEM_WIDTH, 7, 2, 3, bias=False)
        self.bn1 = _bn(STEM_WIDTH)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        for b in blocks(depth):
            if b.index == 0:
                self.add_module(b.stage, nn.Sequential())
            cls = BasicBlock if b.kind == "basic" else Bottleneck
            getattr(self, b.stage).add_module(b.name, cls(b, attn))
        self.fc = nn.Linear(features(depth), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(x.mean((2, 3)))


def resnet(depth: int, attn: str | None = None, num_classes: int = 1000) -> ResNet:
    """timm's ``resnet{depth}`` with ``block_args={"attn_layer": attn}`` (torchvision's ``resnet{depth}`` for None)."""
    return ResNet(depth, attn, num_classes)
