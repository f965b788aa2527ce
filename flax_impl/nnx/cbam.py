"""CBAM (SPEC.md section 4) as an NNX module."""

from __future__ import annotations

from typing import Any, ClassVar

import jax
from flax import nnx

from reference_numpy import check_training

from ._base import Attention


class CBAM(Attention):
    """Convolutional Block Attention Module: channel attention, then spatial attention.

    ``CBAM(channels, *, preset=None, data_format="channels_last", dtype=None,
    param_dtype=jnp.float32, use_running_average=False, axis_name=None, rngs, **knobs)``;
    knobs of ``reference_numpy.CBAMConfig`` (``rd_ratio``, ``pool_types``,
    ``spatial_pool_order``, ``spatial_norm``, ``bn_momentum``, ...); presets ``"official"``,
    ``"timm"`` (the other arguments and the shapes: :class:`~flax_impl.nnx.Attention`).

    The spatial batch norm's running statistics are ``nnx.BatchStat`` variables. Like NNX's
    own ``BatchNorm``, the module starts in training mode (``use_running_average=False``:
    normalise with the batch statistics and update the running ones, PyTorch's momentum
    convention); ``module.eval()`` / ``module.train()`` switch, and a call may override.
    ``axis_name`` averages the batch statistics over a named axis (``pmap``, ``shard_map``,
    ``vmap(..., axis_name=...)``).

    Example:

    >>> import jax, jax.numpy as jnp
    >>> from flax import nnx
    >>> from flax_impl.nnx import CBAM
    >>> cbam = CBAM(64, preset="timm", rngs=nnx.Rngs(0))
    >>> _, params, stats = nnx.split(cbam, nnx.Param, nnx.BatchStat)
    >>> jax.tree_util.tree_map(jnp.shape, nnx.to_pure_dict(params))  # doctest: +NORMALIZE_WHITESPACE
    {'channel': {'fc1': {'kernel': (64, 4)}, 'fc2': {'kernel': (4, 64)}},
     'spatial': {'bn': {'bias': (1,), 'scale': (1,)}, 'conv': {'kernel': (7, 7, 2, 1)}}}
    >>> jax.tree_util.tree_map(jnp.shape, nnx.to_pure_dict(stats))
    {'spatial': {'bn': {'mean': (1,), 'var': (1,)}}}
    >>> y = cbam(jax.random.normal(jax.random.key(1), (2, 8, 8, 64)))  # updates the statistics
    >>> cbam.eval()
    >>> cbam.use_running_average
    True
    """

    module: ClassVar[str] = "cbam"

    def __init__(
        self,
        channels: int,
        *,
        use_running_average: bool = False,
        axis_name: str | None = None,
        rngs: nnx.Rngs,
        **kwargs: Any,
    ) -> None:
        super().__init__(channels, rngs=rngs, **kwargs)
        check_training(use_running_average, "use_running_average")
        self.use_running_average, self.axis_name = use_running_average, axis_name

    def __call__(self, x: jax.Array, use_running_average: bool | None = None) -> jax.Array:
        """``x`` scaled by the attention; ``use_running_average`` overrides the module's mode."""
        running = self.use_running_average if use_running_average is None else use_running_average
        check_training(running, "use_running_average")  # "no" is truthy: it must not silently mean True
        return self._attend(x, not running, self.axis_name)

    def attention_maps(self, x: jax.Array, use_running_average: bool | None = None) -> dict[str, jax.Array]:
        """The gates: ``{"channel": (N, C), "spatial": (N, 1, H, W)}``, in the module's mode unless overridden.

        Batch statistics unless ``use_running_average``; nothing is updated (see :mod:`flax_impl.maps`).
        """
        running = self.use_running_average if use_running_average is None else use_running_average
        check_training(running, "use_running_average")
        return self._maps(x, not running, self.axis_name)
