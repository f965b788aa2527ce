"""Squeeze-and-Excitation (SPEC.md section 3) as an NNX module."""

from __future__ import annotations

from typing import ClassVar

from ._base import Attention


class SqueezeExcite(Attention):
    """Squeeze-and-Excitation: ``y = x * gate(fc2(act(fc1(mean over H, W of x))))``.

    ``SqueezeExcite(channels, *, preset=None, data_format="channels_last", dtype=None,
    param_dtype=jnp.float32, rngs, **knobs)``; knobs ``rd_ratio``, ``rd_channels``,
    ``rd_divisor``, ``rd_round``, ``bias``, ``act``, ``gate``; presets ``"official"``,
    ``"timm"``, ``"torchvision"`` (arguments and shapes: :class:`~flax_impl.nnx.Attention`).

    Example (a bias-free SE with an explicit squeeze width):

    >>> import jax, jax.numpy as jnp
    >>> from flax import nnx
    >>> from flax_impl.nnx import SqueezeExcite
    >>> se = SqueezeExcite(64, rd_channels=16, bias=False, rngs=nnx.Rngs(0))
    >>> jax.tree_util.tree_map(jnp.shape, nnx.to_pure_dict(nnx.state(se)))
    {'fc1': {'kernel': (64, 16)}, 'fc2': {'kernel': (16, 64)}}
    >>> se(jnp.ones((2, 8, 8, 64))).shape
    (2, 8, 8, 64)
    """

    module: ClassVar[str] = "se"
