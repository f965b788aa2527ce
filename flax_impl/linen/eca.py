"""Efficient Channel Attention (SPEC.md section 5) as a Linen module."""

from __future__ import annotations

from typing import ClassVar

from reference_numpy import ECAConfig

from ._base import Attention


class ECA(Attention):
    """Efficient Channel Attention: ``y = x * gate(conv1d over C of (mean over H, W of x))``.

    Knobs: ``kernel_size`` (``None``: the paper's adaptive size), ``gamma``, ``beta``,
    ``padding``, ``bias``, ``gate``; presets ``"paper"``, ``"timm"``, ``"timm_ceca"``. Fields,
    shapes and constructors are those of :class:`~flax_impl.linen.Attention`.

    Example (the kernel, ``(k, 1, 1)`` as Flax's ``Conv1D`` holds it, has the adaptive size
    for 256 channels):

    >>> import jax, jax.numpy as jnp
    >>> from flax_impl.linen import ECA
    >>> eca = ECA.create(256, bias=True, data_format="channels_first")
    >>> variables = eca.init(jax.random.key(0), jnp.ones((2, 256, 7, 7)))
    >>> jax.tree_util.tree_map(jnp.shape, variables), eca.config.effective_kernel_size
    ({'params': {'conv': {'bias': (1,), 'kernel': (5, 1, 1)}}}, 5)
    """

    module: ClassVar[str] = "eca"
    config: ECAConfig
