"""Efficient Channel Attention (SPEC.md section 5) in PyTorch."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from reference_numpy import ECAConfig

from ._base import AttentionModule
from ._ops import channel_attention

__all__ = ["ECA"]


class ECA(AttentionModule):
    """Efficient Channel Attention: ``y = x * gate(conv1d(avg(x)))``, the convolution running over channels.

    Args:
        channels: C, the number of input channels.
        kernel_size: odd size of the 1-D kernel; ``None`` takes the paper's adaptive size
            from ``gamma`` and ``beta`` (``config.effective_kernel_size``).
        gamma, beta: the adaptive size's constants.
        padding: ``"zeros"`` (ECA) or ``"circular"`` (timm's CECA), ``(k - 1) / 2`` each side.
        bias: whether the convolution has a bias.
        gate: ``"sigmoid"`` or ``"hard_sigmoid"``.
        preset: ``"paper"``, ``"timm"`` or ``"timm_ceca"`` (SPEC.md section 6); knobs given
            explicitly override it.
        device, dtype: where and in which float dtype the parameters live.

    Input shape: ``(N, C, H, W)``, contiguous or ``torch.channels_last``.
    Output shape: the input's shape, dtype and memory format.

    The kernel is an ``nn.Conv1d(1, 1, k)`` at ``conv`` (PyTorch's layout of the canonical
    ``conv.weight (k,)``, as in the published checkpoints). Its weight is applied as the
    k-tap correlation it defines, over the padded channel axis (``unfold`` and a product with
    the k taps): the same sums as the Conv1d, which oneDNN runs about ten times slower forward
    and backward on a one-channel signal of length C. Padding is explicit (copies of the
    channel axis), so circular padding wider than C wraps around as often as needed.

    Example:

    >>> import torch
    >>> from torch_impl import ECA
    >>> eca = ECA(256)
    >>> eca.config.effective_kernel_size, tuple(eca.conv.weight.shape)
    (5, (1, 1, 5))
    >>> x = torch.randn(2, 256, 7, 5).to(memory_format=torch.channels_last)
    >>> eca(x).is_contiguous(memory_format=torch.channels_last)
    True
    """

    module = "eca"
    _config: ECAConfig

    def _build(self, cfg: ECAConfig, *, device: torch.device | str | None, dtype: torch.dtype | None) -> None:
        self.conv = nn.Conv1d(1, 1, cfg.effective_kernel_size, bias=cfg.bias, device=device, dtype=dtype)

    def _attend(self, x: torch.Tensor, *, plain: bool) -> torch.Tensor:
        conv = self._plain_conv_over_channels if plain else self._conv_over_channels
        return channel_attention(x, ("avg",), conv, self._config.gate, plain=plain)

    def _padded(self, z: torch.Tensor) -> torch.Tensor:
        """``(N, 1, C)`` -> ``(N, 1, C + k - 1)``, padded as the config says."""
        cfg = self._config
        k, c = cfg.effective_kernel_size, cfg.channels  # static sizes: tracers see no shape arithmetic
        p = k // 2
        if cfg.padding == "zeros":
            return F.pad(z, (p, p))
        copies = -(-p // c)  # circular: enough copies on each side for any p, then the window around the middle one
        return z.repeat(1, 1, 2 * copies + 1)[..., copies * c - p : (copies + 1) * c + p]

    def _conv_over_channels(self, z: torch.Tensor) -> torch.Tensor:
        """``(N, 1, C)`` -> ``(N, C)``."""
        k = self._config.effective_kernel_size
        u = self._padded(z)[:, 0].unfold(-1, k, 1) @ self.conv.weight.view(k)
        return u if self.conv.bias is None else u + self.conv.bias

    def _plain_conv_over_channels(self, z: torch.Tensor) -> torch.Tensor:
        """The same sums as shifted slices (every exporter handles slices; the TorchScript one not ``unfold``)."""
        cfg = self._config
        k, c = cfg.effective_kernel_size, cfg.channels
        zp, w = self._padded(z)[:, 0], self.conv.weight.view(k)
        u = zp[:, 0:c] * w[0]
        for j in range(1, k):
            u = u + zp[:, j : j + c] * w[j]
        return u if self.conv.bias is None else u + self.conv.bias
