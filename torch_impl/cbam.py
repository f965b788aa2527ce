"""CBAM (SPEC.md section 4) in PyTorch."""

from __future__ import annotations

from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from reference_numpy import CBAMConfig

from ._base import AttentionModule
from ._ops import ChannelMLP, channel_attention, channel_gate, composable, gate, scale, scale_and_pool

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


class _PaddedTaps(torch.autograd.Function):
    """``z`` passed through; its backward adds to ``w``'s gradient the products of ``dz`` with the padded zeros.

    A native "same" convolution in float32 on CPU (oneDNN) skips the padded taps; those products,
    ``dz * 0``, are 0 unless ``dz`` is Inf or NaN, where SPEC.md section 1 makes them NaN. So the
    gradient added here is NaN at a tap that met a non-finite ``dz`` at a padded zero, else 0: a
    few ops on small tensors, no data-dependent branch (vmap and CUDA graphs take it as it is).
    """

    @staticmethod
    def forward(ctx, z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.w_shape, ctx.w_dtype = w.shape, w.dtype
        return z.view_as(z)

    @staticmethod
    def backward(ctx, dz: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:  # type: ignore[override]
        if not ctx.needs_input_grad[1]:
            return dz, None
        k = ctx.w_shape[-1]
        bad = ~dz.isfinite()  # (N, 1, H, W)

        def outside(n: int) -> torch.Tensor:  # (n, k): tap j of output i reads a padded position
            pos = torch.arange(n, device=dz.device)[:, None] + torch.arange(k, device=dz.device) - k // 2
            return (pos < 0) | (pos >= n)

        rows = (outside(dz.shape[-2]) & bad.any(dim=(0, 1, 3))[:, None]).any(0)  # (k,): tap rows that met one
        cols = (outside(dz.shape[-1]) & bad.any(dim=(0, 1, 2))[:, None]).any(0)
        hit = rows[:, None] | cols[None, :]
        dw = torch.where(hit, float("nan"), 0.0).to(ctx.w_dtype)
        return dz, dw.expand(ctx.w_shape).contiguous()


class _SameConv2d(nn.Conv2d):
    """``nn.Conv2d`` with "same" zero padding whose padded zeros are values (SPEC.md section 1).

    oneDNN's float32 convolution skips padded taps, so a NaN or Inf tap would not reach every
    output, nor an Inf cotangent meet a padded zero in the weight gradient. Where the weight is
    finite on CPU, the native padded convolution runs (the taps it skips are exact zeros) with
    :class:`_PaddedTaps` restoring the weight gradient's terms; otherwise, on other devices and
    on the composite path, the input is padded explicitly (``F.pad``), which oneDNN runs slower.
    """

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        p = self.kernel_size[0] // 2
        if composable(input) or input.device.type != "cpu" or not bool(weight.isfinite().all()):
            return F.conv2d(F.pad(input, (p, p, p, p)), weight, bias)
        return _PaddedTaps.apply(F.conv2d(input, weight, bias, padding=p), weight)


class SpatialGate(nn.Module):
    """CBAM's spatial branch before the gate: ``bn(conv(d))`` for descriptors ``d`` of shape ``(N, 2, H, W)``.

    The convolution's padded zeros are values (SPEC.md section 1, :class:`_SameConv2d`): a NaN or
    Inf tap times a padded zero is NaN, as in the reference.
    The batch norm is computed from SPEC.md's formula (:func:`_batch_norm`), not by
    ``nn.BatchNorm2d.forward``, whose folded ``weight * inv_std`` and ``bias - mean * weight *
    inv_std`` turn an infinite weight into NaN where the formula gives Inf; a ``SyncBatchNorm``
    (after ``convert_sync_batchnorm``) or any other module put at ``bn`` runs as itself.
    """

    def __init__(self, cfg: CBAMConfig, *, device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        k = cfg.spatial_kernel_size
        self.conv = _SameConv2d(2, 1, k, padding=k // 2, bias=cfg.spatial_bias, device=device, dtype=dtype)
        self.bn = (
            _CanonicalBatchNorm2d(eps=cfg.bn_eps, momentum=cfg.bn_momentum, device=device, dtype=dtype)
            if cfg.spatial_norm
            else None
        )

    def forward(self, d: torch.Tensor) -> torch.Tensor:
        z = self.conv(d)
        if self.bn is None:
            return z
        if type(self.bn) is not _CanonicalBatchNorm2d:
            return self.bn(z)
        # torch.func cannot update buffers the transformed function does not take as inputs:
        # batch statistics as always, running statistics left as they are (torch.func's own advice)
        update = self.bn.training and not torch._C._are_functorch_transforms_active()
        return _batch_norm(self.bn, z, batch_statistics=self.bn.training, update=update)


def _batch_norm(bn: nn.BatchNorm2d, z: torch.Tensor, *, batch_statistics: bool, update: bool) -> torch.Tensor:
    """``bn(z)`` for one channel as SPEC.md section 2 writes it: ``(z - mean) / sqrt(var + eps) * weight + bias``.

    In that order of operations, so non-finite values land where the reference puts them;
    autograd differentiates it (the gradient flows through the batch statistics). With
    ``update``, the running statistics update as ``nn.BatchNorm2d`` updates them, written
    ``(1 - momentum) * running + momentum * batch`` (an infinite running value stays infinite).
    It computes in the dtype ``nn.BatchNorm2d`` accumulates in (:func:`_bn_dtype`); every tool
    traces and exports these ops as they are (the dynamo ONNX exporter would turn an exported
    train-mode batch norm into one that uses the running statistics, PyTorch 2.13).
    """
    acc = _bn_dtype(z)
    zf = z if acc is None else z.to(acc)
    # a _CanonicalBatchNorm2d always tracks running statistics with a momentum (the casts tell mypy so)
    running_mean, running_var = cast(torch.Tensor, bn.running_mean), cast(torch.Tensor, bn.running_var)

    def t(p: torch.Tensor) -> torch.Tensor:
        return (p if acc is None else p.to(acc)).view(1, 1, 1, 1)

    if batch_statistics:
        dims = (0, 2, 3)
        mean = zf.mean(dims, keepdim=True)
        var = (zf - mean).square().mean(dims, keepdim=True)
        if update:
            m = cast(float, bn.momentum)
            # torch.var with correction=1, not var * n / (n - 1): jit.trace would bake n in as a constant
            unbiased = zf.detach().var(dims, correction=1).view(1).to(running_var.dtype)
            running_mean.mul_(1 - m).add_(mean.detach().view(1).to(running_mean.dtype) * m)
            running_var.mul_(1 - m).add_(unbiased * m)
            cast(torch.Tensor, bn.num_batches_tracked).add_(1)
    else:
        mean, var = t(running_mean), t(running_var)
    out = (zf - mean) * torch.rsqrt(var + bn.eps) * t(bn.weight) + t(bn.bias)
    return out if acc is None else out.to(z.dtype)


def _bn_dtype(z: torch.Tensor) -> torch.dtype | None:
    """The dtype ``nn.BatchNorm2d`` accumulates ``z`` in, where that is not ``z``'s own (ATen's ``acc_type``).

    float32 for half types (SPEC.md section 1), float64 for float32 on CPU: the statistics and the
    parameters' gradients are sums over N x H x W, which PyTorch's own batch norm accumulates in
    double there (a float32 sum of a cancelling gradient loses digits the previous port kept).
    ``None`` for an fx proxy, whose dtype is unknown at trace time.
    """
    if isinstance(z, torch.fx.Proxy):
        return None
    if z.dtype in (torch.float16, torch.bfloat16):
        return torch.float32
    if z.dtype == torch.float32 and z.device.type == "cpu":
        return torch.float64
    return None


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
