"""Flax NNX networks for the audit tests, written here: conforming and broken blocks in one network.

ChannelReweight  an SE of two nnx.Linear with no class name that says so (found by shape)
RaisingSE        raises when called; NaNSE returns NaN (found by class name)
MixedNet         conv, flax_impl.nnx.SqueezeExcite, ChannelReweight, ChannelReweight, flax_impl.nnx.ECA, RaisingSE, NaNSE
SmallNet         conv, ChannelReweight, ChannelReweight, RaisingSE, flax_impl.nnx.ECA
"""

from __future__ import annotations

import time

import jax.numpy as jnp
from flax import nnx

import flax_impl.nnx


class ChannelReweight(nnx.Module):
    def __init__(self, channels: int, *, rngs: nnx.Rngs):
        self.down = nnx.Linear(channels, channels // 4, rngs=rngs)
        self.up = nnx.Linear(channels // 4, channels, rngs=rngs)

    def __call__(self, x):
        return x * nnx.sigmoid(self.up(nnx.relu(self.down(x.mean(axis=(1, 2))))))[:, None, None, :]


class RaisingSE(ChannelReweight):
    def __call__(self, x):
        raise RuntimeError("this block always raises")


class NaNSE(ChannelReweight):
    def __call__(self, x):
        return super().__call__(x) * jnp.nan


class MixedNet(nnx.Module):
    def __init__(self, *, rngs: nnx.Rngs):
        self.conv = nnx.Conv(3, 16, (3, 3), rngs=rngs)
        self.se = flax_impl.nnx.SqueezeExcite(16, rngs=rngs)
        self.blocks = nnx.List([ChannelReweight(16, rngs=rngs), ChannelReweight(16, rngs=rngs)])
        self.eca = flax_impl.nnx.ECA(16, rngs=rngs)
        self.raising = RaisingSE(16, rngs=rngs)
        self.nan = NaNSE(16, rngs=rngs)

    def __call__(self, x):
        x = self.se(self.conv(x))
        for block in self.blocks:
            x = block(x)
        return self.nan(self.raising(self.eca(x))).mean(axis=(1, 2))


def mixed_net() -> MixedNet:
    return MixedNet(rngs=nnx.Rngs(0))


class SmallNet(nnx.Module):
    """conv, ChannelReweight, ChannelReweight, RaisingSE, flax_impl.nnx.ECA: what the tests audit (JAX compiles every block)."""

    def __init__(self, *, rngs: nnx.Rngs):
        self.conv = nnx.Conv(3, 16, (3, 3), rngs=rngs)
        self.first = ChannelReweight(16, rngs=rngs)
        self.second = ChannelReweight(16, rngs=rngs)
        self.raising = RaisingSE(16, rngs=rngs)
        self.eca = flax_impl.nnx.ECA(16, rngs=rngs)

    def __call__(self, x):
        return self.eca(self.raising(self.second(self.first(self.conv(x)))))


def small_net() -> SmallNet:
    return SmallNet(rngs=nnx.Rngs(0))


class HangingSE(ChannelReweight):
    def __call__(self, x):
        time.sleep(3600)
        return x


class HangingNet(nnx.Module):
    """conv, ChannelReweight, HangingSE: in a process that has started JAX the audit cannot fork, and times
    the hanging block with an alarm."""

    def __init__(self, *, rngs: nnx.Rngs):
        self.conv = nnx.Conv(3, 16, (3, 3), rngs=rngs)
        self.first = ChannelReweight(16, rngs=rngs)
        self.hanging = HangingSE(16, rngs=rngs)

    def __call__(self, x):
        return self.hanging(self.first(self.conv(x)))


def hanging_net() -> HangingNet:
    return HangingNet(rngs=nnx.Rngs(0))
