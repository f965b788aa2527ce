"""CBAM (SPEC.md section 4) in PyTorch."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from reference_numpy import CBAMConfig

from ._base import AttentionModule
from ._ops import ChannelMLP, channel_attention, channel_gate, gate, scale, scale_and_pool

__all__ = ["CBAM", "SpatialGate"]


class _CanonicalBatchNorm2d(nn.BatchNorm2d):
    """A one-channel ``nn.BatchNorm2d`` whose state dict holds exactly the canonical tensors.

    ``num_batches_tracked`` is still kept (``SyncBatchNorm.convert_sync_batchnorm`` copies it)
    but not saved: with a momentum always given it never changes a result, and SPEC.md
    section 7 drops it. Running statistics update as PyTorch's BN does, which is SPEC.md's rule.
    """

    def __init__(self, *, eps: float, momentum: float, device: Any = None, dtype: Any = None) -> None:
        super().__init__(1, eps=eps, momentum=momentum, device=device, dtype=dtype)
        self.register_buffer("num_batches_tracked", self.num_batches_tracked, persistent=False)

    def _check_input_dim(self, input: torch.Tensor) -> None:
        # torch.fx traces into this subclass (it is not torch.nn's own, so not a leaf): its rank check
        # would branch on a proxy; CBAM passes it (N, 1, H, W) anyway
        if not isinstance(input, torch.fx.Proxy):
            super()._check_input_dim(input)

    def _load_from_state_dict(self, state_dict: Any, prefix: str, local_metadata: dict, *args: Any) -> None:
        # without version metadata (a plain dict), the base class would add num_batches_tracked to state_dict
        super()._load_from_state_dict(state_dict, prefix, {**local_metadata, "version": self._version}, *args)


class SpatialGate(nn.Module):
    """CBAM's spatial branch before the gate: ``bn(conv(d))`` for descriptors ``d`` of shape ``(N, 2, H, W)``."""

    def __init__(self, cfg: CBAMConfig, *, device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        k = cfg.spatial_kernel_size
        self.conv = nn.Conv2d(2, 1, k, padding=k // 2, bias=cfg.spatial_bias, device=device, dtype=dtype)
        self.bn = (
            _CanonicalBatchNorm2d(eps=cfg.bn_eps, momentum=cfg.bn_momentum, device=device, dtype=dtype)
            if cfg.spatial_norm
            else None
        )

    def forward(self, d: torch.Tensor) -> torch.Tensor:
        z = self.conv(d)
        if self.bn is None:
            return z
        if self.training and torch._C._are_functorch_transforms_active():
            # torch.func cannot update buffers the transformed function does not take as inputs:
            # batch statistics as always, running statistics left as they are (torch.func's own advice)
            return F.batch_norm(z, None, None, self.bn.weight, self.bn.bias, True, 0.0, self.bn.eps)
        if self.training and type(self.bn) is _CanonicalBatchNorm2d and torch.compiler.is_exporting():
            return _batch_norm_by_hand(self.bn, z)
        return self.bn(z)


def _batch_norm_by_hand(bn: nn.BatchNorm2d, z: torch.Tensor) -> torch.Tensor:
    """Train-mode ``bn(z)`` for one channel in reductions and products (SPEC.md section 4's formula).

    For ``torch.export``: the dynamo ONNX exporter turns the exported train-mode batch norm into
    one that normalises with the running statistics (PyTorch 2.13); these ops export as they are.
    The running statistics update as ``bn`` would update them.
    """
    dims = (0, 2, 3)
    mean = z.mean(dims, keepdim=True)
    var = (z - mean).square().mean(dims, keepdim=True)
    with torch.no_grad():
        count = z.shape[0] * z.shape[2] * z.shape[3]
        bn.running_mean.lerp_(mean.detach().view(1), bn.momentum)
        bn.running_var.lerp_(var.detach().view(1) * (count / (count - 1)), bn.momentum)
        bn.num_batches_tracked.add_(1)
    return (z - mean) * torch.rsqrt(var + bn.eps) * bn.weight.view(1, 1, 1, 1) + bn.bias.view(1, 1, 1, 1)


class CBAM(AttentionModule):
    """Convolutional Block Attention Module: channel attention, then spatial attention.

    Args:
        channels: C, the number of input channels.
        rd_ratio, rd_channels, rd_divisor, rd_round: the channel MLP's bottleneck width
            (``config.hidden``).
        mlp_bias: whether the channel MLP has biases.
        act: the MLP's activation; gate: ``"sigmoid"`` or ``"hard_sigmoid"`` (both gates).
        pool_types: the pools over H, W that share the MLP (any of avg, max, lse, lp).
        spatial: ``False`` gives channel attention only.
        spatial_kernel_size: odd size of the spatial convolution.
        spatial_pool_order: order of the two pools over C fed to the convolution.
        spatial_bias, spatial_norm: bias of the spatial convolution; batch norm after it.
        bn_eps, bn_momentum: that batch norm's constants, momentum in PyTorch's convention.
        preset: ``"official"`` or ``"timm"`` (SPEC.md section 6); knobs given explicitly override it.
        device, dtype: where and in which float dtype the parameters live.

    Input shape: ``(N, C, H, W)``, contiguous or ``torch.channels_last``.
    Output shape: the input's shape, dtype and memory format.

    The spatial batch norm is a real ``nn.BatchNorm2d`` at ``spatial.bn``, so
    ``nn.SyncBatchNorm.convert_sync_batchnorm`` converts it.

    Example:

    >>> import torch
    >>> from torch_impl import CBAM
    >>> cbam = CBAM(64)
    >>> for name, t in cbam.state_dict().items():
    ...     print(name, tuple(t.shape))
    channel.fc1.weight (4, 64)
    channel.fc1.bias (4,)
    channel.fc2.weight (64, 4)
    channel.fc2.bias (64,)
    spatial.conv.weight (1, 2, 7, 7)
    spatial.bn.weight (1,)
    spatial.bn.bias (1,)
    spatial.bn.running_mean (1,)
    spatial.bn.running_var (1,)
    >>> cbam(torch.randn(2, 64, 7, 5)).shape
    torch.Size([2, 64, 7, 5])
    """

    module = "cbam"
    _config: CBAMConfig

    def _build(self, cfg: CBAMConfig, *, device: torch.device | str | None, dtype: torch.dtype | None) -> None:
        self.channel = ChannelMLP(cfg.channels, cfg.hidden, bias=cfg.mlp_bias, act=cfg.act, device=device, dtype=dtype)
        self.spatial = SpatialGate(cfg, device=device, dtype=dtype) if cfg.spatial else None

    def _attend(self, x: torch.Tensor, *, plain: bool) -> torch.Tensor:
        cfg = self._config
        if self.spatial is None:
            return channel_attention(x, cfg.pool_types, self.channel, cfg.gate, plain=plain)
        g, x = channel_gate(x, cfg.pool_types, self.channel, cfg.gate, plain=plain)
        d, x1 = scale_and_pool(x, g, cfg.spatial_pool_order, plain=plain)
        return scale(x1, gate(self.spatial(d), cfg.gate, plain=plain), temporary=True, plain=plain)
