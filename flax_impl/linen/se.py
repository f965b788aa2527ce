"""Squeeze-and-Excitation (SPEC.md section 3) as a Linen module."""

from __future__ import annotations

from typing import ClassVar

from reference_numpy import SEConfig

from ._base import Attention


class SqueezeExcite(Attention):
    """Squeeze-and-Excitation: ``y = x * gate(fc2(act(fc1(mean over H, W of x))))``.

    Knobs: ``rd_ratio``, ``rd_channels``, ``rd_divisor``, ``rd_round``, ``bias``, ``act``,
    ``gate``; presets ``"official"``, ``"timm"``, ``"torchvision"``. Fields, shapes and
    constructors are those of :class:`~flax_impl.linen.Attention`.

    Example (timm's rounding squeezes 64 channels to 8):

    >>> import jax, jax.numpy as jnp
    >>> from flax_impl.linen import SqueezeExcite
    >>> se = SqueezeExcite.create(64, preset="timm")
    >>> variables = se.init(jax.random.key(0), jnp.ones((2, 8, 8, 64)))
    >>> jax.tree_util.tree_map(jnp.shape, variables)
    {'params': {'fc1': {'bias': (8,), 'kernel': (64, 8)}, 'fc2': {'bias': (64,), 'kernel': (8, 64)}}}
    """

    module: ClassVar[str] = "se"
    config: SEConfig
