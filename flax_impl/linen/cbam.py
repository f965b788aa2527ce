"""CBAM (SPEC.md section 4) as a Linen module."""

from __future__ import annotations

from typing import ClassVar

import flax.linen as nn
import jax

from reference_numpy import CBAMConfig

from ._base import Attention


class CBAM(Attention):
    """Convolutional Block Attention Module: channel attention, then spatial attention.

    Knobs: those of ``reference_numpy.CBAMConfig`` (``rd_ratio``, ``pool_types``,
    ``spatial_pool_order``, ``spatial_norm``, ``bn_momentum``, ...); presets ``"official"``,
    ``"timm"``. Fields, shapes and constructors are those of :class:`~flax_impl.linen.Attention`,
    plus ``axis_name``.

    The spatial batch norm keeps its running statistics in the ``batch_stats`` collection.
    ``training=True`` normalises with the batch statistics and updates the running ones
    (PyTorch's momentum convention, unbiased running variance), which needs
    ``mutable=["batch_stats"]``; ``axis_name`` averages the batch statistics over a named axis
    (``jax.pmap``, ``shard_map``, ``jax.vmap(..., axis_name=...)``).

    Example:

    >>> import jax, jax.numpy as jnp
    >>> from flax_impl.linen import CBAM
    >>> cbam = CBAM.create(64, preset="timm")
    >>> x = jax.random.normal(jax.random.key(1), (2, 8, 8, 64))
    >>> variables = cbam.init(jax.random.key(0), x)
    >>> jax.tree_util.tree_map(jnp.shape, variables)  # doctest: +NORMALIZE_WHITESPACE
    {'batch_stats': {'spatial': {'bn': {'mean': (1,), 'var': (1,)}}},
     'params': {'channel': {'fc1': {'kernel': (64, 4)}, 'fc2': {'kernel': (4, 64)}},
                'spatial': {'bn': {'bias': (1,), 'scale': (1,)}, 'conv': {'kernel': (7, 7, 2, 1)}}}}
    >>> y, updates = cbam.apply(variables, x, training=True, mutable=["batch_stats"])
    >>> y.shape, jax.tree_util.tree_map(jnp.shape, updates)
    ((2, 8, 8, 64), {'batch_stats': {'spatial': {'bn': {'mean': (1,), 'var': (1,)}}}})
    """

    module: ClassVar[str] = "cbam"
    config: CBAMConfig
    axis_name: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array, training: bool = False) -> jax.Array:
        """``x`` scaled by the attention; ``training`` selects batch statistics and updates the running ones."""
        return self._attend(x, training, self.axis_name)
