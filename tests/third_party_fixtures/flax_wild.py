"""Flax blocks written for the verify tests the way Flax code in the wild builds them (issue #10).

Float32SE     a linen SE with a ``dtype`` field defaulting to float32 (most Flax modules): it
              computes in float32 whatever the weights and input are
LazySE        a linen SE whose channel count comes from its first call (``x.shape[-1]``)
NNXNet        a small NNX network holding an SE at ``blocks[1].se``
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
from flax import linen as nn
from flax import nnx


class Float32SE(nn.Module):
    reduction: int = 4
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        c = x.shape[-1]
        s = jnp.mean(x, axis=(1, 2)).astype(self.dtype)
        s = nn.relu(nn.Dense(c // self.reduction, dtype=self.dtype, name="reduce")(s))
        s = nn.sigmoid(nn.Dense(c, dtype=self.dtype, name="expand")(s))
        return x.astype(self.dtype) * s[:, None, None, :]


class LazySE(nn.Module):
    """The same computation in float64 when given float64: the dtype follows the input."""

    reduction: int = 4

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        c = x.shape[-1]
        s = nn.relu(nn.Dense(c // self.reduction, name="reduce")(jnp.mean(x, axis=(1, 2))))
        return x * nn.sigmoid(nn.Dense(c, name="expand")(s))[:, None, None, :]


class _NNXSE(nnx.Module):
    def __init__(self, channels: int, *, rngs: nnx.Rngs):
        self.fc1 = nnx.Linear(channels, channels // 4, rngs=rngs)
        self.fc2 = nnx.Linear(channels // 4, channels, rngs=rngs)

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        s = nnx.sigmoid(self.fc2(nnx.relu(self.fc1(x.mean(axis=(1, 2))))))
        return x * s[:, None, None, :]


class _NNXBlock(nnx.Module):
    def __init__(self, channels: int, *, rngs: nnx.Rngs):
        self.conv = nnx.Conv(channels, channels, (3, 3), rngs=rngs)
        self.se = _NNXSE(channels, rngs=rngs)

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        return nnx.relu(x + self.se(self.conv(x)))


class NNXNet(nnx.Module):
    def __init__(self, channels: int = 16, *, rngs: nnx.Rngs):
        self.blocks = nnx.List([_NNXBlock(channels, rngs=rngs) for _ in range(2)])

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        for b in self.blocks:
            x = b(x)
        return x
