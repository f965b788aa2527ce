"""Flax implementations (linen and NNX) in their own layouts (NHWC, ``Dense`` kernels ``(in, out)``), for the verify tests."""

from __future__ import annotations

import jax.numpy as jnp
from flax import linen as nn
from flax import nnx


class LinenSE(nn.Module):
    """SE with submodules named ``squeeze`` and ``excite`` and a width of C / 4 (channels last)."""

    channels: int
    reduction: int = 4

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        s = x.mean(axis=(1, 2))
        s = nn.relu(nn.Dense(self.channels // self.reduction, name="squeeze")(s))
        s = nn.sigmoid(nn.Dense(self.channels, name="excite")(s))
        return x * s[:, None, None, :]


class NNXECA(nnx.Module):
    """ECA as an NNX module: an ``nnx.Conv`` over the pooled channels as a length-C sequence."""

    def __init__(self, channels: int, k_size: int = 3, *, rngs: nnx.Rngs):
        self.channels = channels
        self.conv = nnx.Conv(1, 1, kernel_size=(k_size,), padding="SAME", use_bias=False, rngs=rngs)

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        u = self.conv(x.mean(axis=(1, 2))[:, :, None])[:, :, 0]
        return x * nnx.sigmoid(u)[:, None, None, :]
