"""Flax linen networks for the audit tests, written here: blocks made inside ``@compact`` calls.

DenseReweight  an SE of two nn.Dense with no class name that says so (found by shape)
RaisingSE      raises when called (found by class name)
LinenNet       conv, DenseReweight, DenseReweight, flax_impl.linen.ECA, RaisingSE
linen_net()    (LinenNet(), its variables): what a linen factory returns for audit
"""

from __future__ import annotations

import jax
import numpy as np
from flax import linen as nn

import flax_impl.linen


class DenseReweight(nn.Module):
    channels: int

    @nn.compact
    def __call__(self, x):
        s = nn.Dense(self.channels // 4, name="fc1")(x.mean(axis=(1, 2)))
        s = nn.Dense(self.channels, name="fc2")(nn.relu(s))
        return x * nn.sigmoid(s)[:, None, None, :]


class RaisingSE(DenseReweight):
    @nn.compact
    def __call__(self, x):
        raise RuntimeError("this block always raises")


class LinenNet(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.Conv(16, (3, 3), name="conv")(x)
        x = DenseReweight(16, name="first")(x)
        x = DenseReweight(16, name="second")(x)
        x = flax_impl.linen.ECA.create(16, name="eca")(x)
        return RaisingSE(16, name="raising")(x)


class _Init(LinenNet):
    """The same network without its raising block, to initialise the variables (init would raise)."""

    @nn.compact
    def __call__(self, x):
        x = nn.Conv(16, (3, 3), name="conv")(x)
        x = DenseReweight(16, name="first")(x)
        x = DenseReweight(16, name="second")(x)
        x = flax_impl.linen.ECA.create(16, name="eca")(x)
        return DenseReweight(16, name="raising")(x)


def linen_net():
    variables = _Init().init(jax.random.PRNGKey(0), np.zeros((1, 8, 8, 3), np.float32))
    return LinenNet(), variables
