"""Efficient Channel Attention (SPEC.md section 5) as an NNX module."""

from __future__ import annotations

from typing import ClassVar

from ._base import Attention


class ECA(Attention):
    """Efficient Channel Attention: ``y = x * gate(conv1d over C of (mean over H, W of x))``.

    ``ECA(channels, *, preset=None, data_format="channels_last", dtype=None,
    param_dtype=jnp.float32, rngs, **knobs)``; knobs ``kernel_size`` (``None``: the paper's
    adaptive size), ``gamma``, ``beta``, ``padding``, ``bias``, ``gate``; presets ``"paper"``,
    ``"timm"``, ``"timm_ceca"`` (arguments and shapes: :class:`~flax_impl.nnx.Attention`).

    Example (timm's CECA: circular padding, kernel size at least 3):

    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from flax_impl.nnx import ECA
    >>> eca = ECA(16, preset="timm_ceca", rngs=nnx.Rngs(0))
    >>> eca.config.padding, eca.conv.kernel.shape
    ('circular', (3, 1, 1))
    >>> eca(jnp.ones((2, 7, 7, 16), jnp.bfloat16)).dtype
    dtype(bfloat16)
    """

    module: ClassVar[str] = "eca"
