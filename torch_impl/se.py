"""Squeeze-and-Excitation (SPEC.md section 3) in PyTorch."""

from __future__ import annotations

import torch

from reference_numpy import SEConfig

from ._base import AttentionModule
from ._ops import channel_attention, mlp, mlp_layers

__all__ = ["SqueezeExcite"]


class SqueezeExcite(AttentionModule):
    """Squeeze-and-Excitation: ``y = x * gate(fc2(act(fc1(avg(x)))))``.

    Args:
        channels: C, the number of input channels.
        rd_ratio, rd_channels, rd_divisor, rd_round: the bottleneck width (``config.hidden``).
        bias: whether ``fc1`` and ``fc2`` have biases.
        act: ``"relu"``, ``"relu6"``, ``"silu"``, ``"gelu"`` or ``"hard_swish"``.
        gate: ``"sigmoid"`` or ``"hard_sigmoid"``.
        preset: ``"official"``, ``"timm"`` or ``"torchvision"`` (SPEC.md section 6); knobs
            given explicitly override it.
        device, dtype: where and in which float dtype the parameters live.

    Input shape: ``(N, C, H, W)``, contiguous or ``torch.channels_last``.
    Output shape: the input's shape, dtype and memory format.

    Example:

    >>> import torch
    >>> from torch_impl import SqueezeExcite
    >>> se = SqueezeExcite(64, preset="timm")
    >>> se.config.hidden, {k: tuple(v.shape) for k, v in se.state_dict().items()}
    (8, {'fc1.weight': (8, 64), 'fc1.bias': (8,), 'fc2.weight': (64, 8), 'fc2.bias': (64,)})
    >>> se(torch.randn(2, 64, 7, 5)).shape
    torch.Size([2, 64, 7, 5])
    """

    module = "se"
    _config: SEConfig

    def _build(self, cfg: SEConfig, *, device: torch.device | str | None, dtype: torch.dtype | None) -> None:
        self.fc1, self.fc2 = mlp_layers(cfg.channels, cfg.hidden, bias=cfg.bias, device=device, dtype=dtype)

    def _attend(self, x: torch.Tensor, *, plain: bool) -> torch.Tensor:
        return channel_attention(x, ("avg",), self._excite, self._config.gate, plain=plain)

    def _excite(self, z: torch.Tensor) -> torch.Tensor:
        return mlp(z, self.fc1, self.fc2, self._config.act)
