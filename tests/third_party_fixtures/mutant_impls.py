"""Plain PyTorch SE / CBAM / ECA written from SPEC.md alone, and single-bug variants of them (mutants).

They play "somebody else's code" for ``tests/test_mutation_battery.py``: nothing here imports
``torch_impl`` or ``reference_numpy``; the tensor names are this file's own (``squeeze``,
``excite``, ``spatial_conv``, ``spatial_bn``, ...), so ``conformance.verify`` binds them by
their shapes. Each class takes:

``bug``
    None for the clean implementation, or one name of its ``BUGS``: one small, plausible
    mistake (a wrong constant, a flipped kernel, a missing ``n / (n - 1)``, ...).
``compute_dtype``
    None: compute in the dtype of the input (what verify hands it: float64, then float32).
    ``"float32"``: compute in float32 whatever the input and weights are. Given float64 input
    it then returns float32, and ``verify`` checks it (identification included) in float32
    only: this is how the battery measures what verify catches in float32.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["PlainCBAM", "PlainECA", "PlainSE"]


class _Plain(nn.Module):
    BUGS: tuple[str, ...] = ()

    def __init__(self, bug: str | None, compute_dtype: str | None):
        super().__init__()
        if bug is not None and bug not in self.BUGS:
            raise ValueError(f"`bug` must be None or one of {', '.join(self.BUGS)}. Received: bug={bug!r}")
        if compute_dtype not in (None, "float32", "float64"):
            raise ValueError(f"`compute_dtype` must be None, 'float32' or 'float64'. Received: {compute_dtype!r}")
        self.bug, self.compute_dtype = bug, compute_dtype

    def _dtype(self, x: torch.Tensor) -> torch.dtype:
        return x.dtype if self.compute_dtype is None else getattr(torch, self.compute_dtype)

    def _gate(self, u: torch.Tensor, kind: str = "sigmoid") -> torch.Tensor:
        """SPEC.md section 2, gates: sigmoid, or hard_sigmoid = relu6(u + 3) / 6."""
        if kind == "hard_sigmoid":
            if self.bug == "hard_sigmoid_clip":
                s = torch.clamp(0.2 * u + 0.5, 0, 1)
            else:
                s = (u + 3) / 6 if self.bug == "hard_sigmoid_unclamped" else F.relu6(u + 3) / 6
        elif self.bug == "gate_in_float32":
            s = torch.sigmoid(u.float()).to(u.dtype)
        else:
            s = torch.sigmoid(u)
        return s * (1 + 1e-6) if self.bug == "gate_times_1_plus_1e-6" else s


def _floor_width(channels: int, reduction: int) -> int:
    """SPEC.md section 2, hidden width, with rd_ratio = 1 / reduction, divisor 1, floor."""
    return max(1, int(channels * (1 / reduction)))


# ----------------------------------------------------------------------------- SE


class PlainSE(_Plain):
    """SE (SPEC.md section 3): ``squeeze`` (C -> hidden) and ``excite`` (hidden -> C) Linear layers."""

    BUGS = (
        "gate_times_1_plus_1e-6",  # a stray scale on the gate
        "gate_in_float32",  # the gate computed in float32 on the float64 path
        "hidden_off_by_one",  # C // 16 + 1 hidden units
        "avg_pool_hw_minus_1",  # the squeeze divides by H*W - 1
        "hard_sigmoid_clip",  # tf.keras 2.x's clip(0.2x + 0.5, 0, 1) for hard_sigmoid
        "hard_sigmoid_unclamped",  # (u + 3) / 6 without the relu6 that clamps it to [0, 1]
        "relu6_for_relu",  # ReLU6 (a MobileNet habit) between the two layers
    )

    def __init__(
        self,
        channels: int,
        reduction: int = 16,
        gate: str = "sigmoid",
        bug: str | None = None,
        compute_dtype: str | None = None,
    ):
        super().__init__(bug, compute_dtype)
        hidden = _floor_width(channels, reduction) + (bug == "hidden_off_by_one")
        self.squeeze = nn.Linear(channels, hidden)
        self.excite = nn.Linear(hidden, channels)
        self.gate = gate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dt = self._dtype(x)
        x = x.to(dt)
        if self.bug == "avg_pool_hw_minus_1":
            z = x.sum((2, 3)) / (x.shape[2] * x.shape[3] - 1)
        else:
            z = x.mean((2, 3))
        h = F.linear(z, self.squeeze.weight.to(dt), self.squeeze.bias.to(dt))
        h = F.relu6(h) if self.bug == "relu6_for_relu" else torch.relu(h)
        u = F.linear(h, self.excite.weight.to(dt), self.excite.bias.to(dt))
        return x * self._gate(u, self.gate)[:, :, None, None]


# ----------------------------------------------------------------------------- CBAM


class _SpatialBatchNorm(nn.Module):
    """One-map batch norm (SPEC.md section 2): PyTorch's momentum convention, unbiased running variance."""

    def __init__(self, eps: float, momentum: float, bug: str | None):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1))
        self.bias = nn.Parameter(torch.zeros(1))
        self.register_buffer("running_mean", torch.zeros(1))
        self.register_buffer("running_var", torch.ones(1))
        self.eps, self.momentum, self.bug = eps, momentum, bug

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        dt = z.dtype
        if self.training:
            n = z.numel()
            if n == 1:
                raise ValueError("batch norm in train mode needs more than one value")
            mean = z.mean()
            var = z.var(unbiased=self.bug == "unbiased_batch_var")
            zhat = (z - mean) / torch.sqrt(var + self.eps)
            if self.bug != "no_running_update":
                with torch.no_grad():
                    fed = var if self.bug == "biased_running_var" else var * (n / (n - 1))
                    m = self.momentum
                    keep, take = (m, 1 - m) if self.bug == "flax_momentum" else (1 - m, m)
                    rm, rv = self.running_mean, self.running_var
                    rm.copy_((keep * rm.to(dt) + take * mean).to(rm.dtype))
                    rv.copy_((keep * rv.to(dt) + take * fed).to(rv.dtype))
        else:
            zhat = (z - self.running_mean.to(dt)) / torch.sqrt(self.running_var.to(dt) + self.eps)
        return zhat * self.weight.to(dt) + self.bias.to(dt)


class PlainCBAM(_Plain):
    """CBAM (SPEC.md section 4) with the official defaults: (avg, max) pools into ``mlp_in`` /
    ``mlp_out`` (with bias), (max, mean) spatial maps, a 7x7 ``spatial_conv`` without bias,
    ``spatial_bn`` with eps 1e-5 and momentum 0.01."""

    BUGS = (
        "bn_eps_1e-3",  # the BN's eps is 1e-3 (Keras's default) instead of 1e-5
        "unbiased_batch_var",  # train mode normalises by the unbiased batch variance (torch.var's default)
        "biased_running_var",  # the running variance is fed the biased batch variance
        "flax_momentum",  # running = momentum * running + (1 - momentum) * batch
        "no_running_update",  # train mode normalises with batch statistics but never updates the running ones
        "flipped_spatial_kernel",  # a true convolution instead of a cross-correlation
        "channel_sum_descriptor",  # the spatial descriptor sums over channels instead of averaging
        "mlp_outputs_averaged",  # (mlp(avg) + mlp(max)) / 2 instead of the sum
        "spatial_pool_order_swapped",  # concatenates (mean, max) while claiming the official (max, mean)
        "max_tie_to_one",  # max pools send a tie's gradient to one of the maxima
    )

    def __init__(
        self,
        channels: int,
        reduction: int = 16,
        kernel_size: int = 7,
        bug: str | None = None,
        compute_dtype: str | None = None,
    ):
        super().__init__(bug, compute_dtype)
        hidden = _floor_width(channels, reduction)
        self.mlp_in = nn.Linear(channels, hidden)
        self.mlp_out = nn.Linear(hidden, channels)
        self.spatial_conv = nn.Conv2d(2, 1, kernel_size, bias=False)  # only its weight is used
        self.spatial_bn = _SpatialBatchNorm(1e-3 if bug == "bn_eps_1e-3" else 1e-5, 0.01, bug)
        self.kernel_size = kernel_size

    def _max(self, x: torch.Tensor, dim: int | tuple[int, int]) -> torch.Tensor:
        if self.bug != "max_tie_to_one":
            return x.amax(dim, keepdim=True)  # a tie's gradient is split evenly
        if isinstance(dim, tuple):  # over H, W: one flattened axis
            return x.flatten(2).max(-1, keepdim=True).values[..., None]
        return x.max(dim, keepdim=True).values  # the whole gradient to one index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dt = self._dtype(x)
        x = x.to(dt)

        def mlp(z: torch.Tensor) -> torch.Tensor:
            h = torch.relu(F.linear(z, self.mlp_in.weight.to(dt), self.mlp_in.bias.to(dt)))
            return F.linear(h, self.mlp_out.weight.to(dt), self.mlp_out.bias.to(dt))

        a = mlp(x.mean((2, 3))) + mlp(self._max(x, (2, 3))[:, :, 0, 0])
        if self.bug == "mlp_outputs_averaged":
            a = a / 2
        x1 = x * self._gate(a)[:, :, None, None]
        cmax = self._max(x1, 1)
        cmean = x1.sum(1, keepdim=True) if self.bug == "channel_sum_descriptor" else x1.mean(1, keepdim=True)
        maps = (cmean, cmax) if self.bug == "spatial_pool_order_swapped" else (cmax, cmean)
        w = self.spatial_conv.weight.to(dt)
        if self.bug == "flipped_spatial_kernel":
            w = w.flip(2, 3)
        z = F.conv2d(torch.cat(maps, dim=1), w, padding=(self.kernel_size - 1) // 2)
        return x1 * self._gate(self.spatial_bn(z))


# ----------------------------------------------------------------------------- ECA


class PlainECA(_Plain):
    """ECA (SPEC.md section 5): a k-tap ``conv`` over the channel descriptor, k adaptive (gamma=2, beta=1)."""

    BUGS = (
        "gamma_beta_swapped",  # k from (log2(C) + gamma) / beta
        "asymmetric_padding",  # pads k - 1 zeros before the channels and none after
        "flipped_kernel",  # a true convolution instead of a cross-correlation
        "detached_gate",  # the gate is computed from x.detach(): right output, wrong input gradient
    )

    def __init__(
        self, channels: int, gamma: int = 2, beta: int = 1, bug: str | None = None, compute_dtype: str | None = None
    ):
        super().__init__(bug, compute_dtype)
        num, den = (gamma, beta) if bug == "gamma_beta_swapped" else (beta, gamma)
        t = int(abs((math.log2(channels) + num) / den))
        self.k = t if t % 2 else t + 1
        self.conv = nn.Conv1d(1, 1, self.k, bias=False)  # only its weight is used

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dt = self._dtype(x)
        x = x.to(dt)
        z = (x.detach() if self.bug == "detached_gate" else x).mean((2, 3))[:, None, :]  # (N, 1, C)
        p = (self.k - 1) // 2
        z = F.pad(z, (self.k - 1, 0) if self.bug == "asymmetric_padding" else (p, p))
        w = self.conv.weight.to(dt)
        if self.bug == "flipped_kernel":
            w = w.flip(2)
        u = F.conv1d(z, w)[:, 0, :]
        return x * self._gate(u)[:, :, None, None]
