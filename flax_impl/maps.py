"""Attention maps in JAX, shared by the Linen and the NNX modules: the gates, without the output.

``attention_maps`` on a module (Linen: ``model.apply(variables, x, method="attention_maps")``;
NNX: ``module.attention_maps(x)``) returns ``{"channel": (N, C)}``, plus
``"spatial": (N, 1, H, W)`` for a CBAM with its spatial branch, whatever the data format: the
channel gate ``g`` and the spatial gate ``s`` of SPEC.md sections 3 to 5 (``y = x * g`` for SE
and ECA, ``y = (x * g) * s`` for CBAM), as every port returns them. Batch norm follows the
mode given (batch statistics in training mode, running ones otherwise) and no running
statistic is updated. The maps are composed from the small pieces of :mod:`flax_impl._ops`
(pools, MLP, convolutions, batch norm, gates), outside CBAM's custom-VJP forward, so they are
differentiable in both modes.

>>> import jax, jax.numpy as jnp
>>> from flax import nnx
>>> from flax_impl import linen, nnx as fnnx
>>> x = jax.random.normal(jax.random.key(1), (2, 7, 5, 32))
>>> eca = linen.ECA.create(32)
>>> variables = eca.init(jax.random.key(0), x)
>>> eca.apply(variables, x, method="attention_maps")["channel"].shape
(2, 32)
>>> cbam = fnnx.CBAM(32, data_format="channels_last", rngs=nnx.Rngs(0))
>>> {k: v.shape for k, v in cbam.attention_maps(x, use_running_average=True).items()}
{'channel': (2, 32), 'spatial': (2, 1, 7, 5)}
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from . import _ops

__all__ = ["attention_maps"]


def attention_maps(
    module: Any, weights: _ops.Weights, stats: _ops.Weights, x: Any, *, training: Any, axis_name: str | None = None
) -> dict[str, jax.Array]:
    """The maps of a Linen or NNX ``module`` (its ``config``, ``data_format`` and ``dtype``) on ``x``.

    ``weights`` and ``stats`` are keyed as in :func:`flax_impl._ops.apply`.
    """
    cfg, data_format, dtype = module.config, module.data_format, module.dtype
    x = jnp.asarray(x)
    training = _ops.training_mode(training)  # a bool, or a traced 0-d bool array
    cfg.validate_input(x.shape, x.dtype, data_format=data_format, training=training is not False)
    ctx = _ops.make_ctx(data_format, x.dtype if dtype is None else dtype)
    x = x.astype(ctx.dtype)
    gate = _ops.GATES[cfg.gate]
    if cfg.module == "se":
        g = gate(_ops.mlp(_ops.SPACE_POOLS["avg"](x, ctx)[None], weights, "", cfg.act, ctx))
        return {"channel": g.astype(ctx.dtype)}
    if cfg.module == "eca":
        u = _ops.channel_conv(_ops.SPACE_POOLS["avg"](x, ctx), weights["conv.kernel"], cfg.padding, ctx)
        if "conv.bias" in weights:
            u = u + ctx.weight(weights["conv.bias"])
        return {"channel": gate(u).astype(ctx.dtype)}
    pooled = jnp.stack([_ops.SPACE_POOLS[t](x, ctx) for t in cfg.pool_types])  # (P, N, C)
    g = gate(_ops.mlp(pooled, weights, "channel.", cfg.act, ctx)).astype(ctx.dtype)
    maps = {"channel": g}
    if not cfg.spatial:
        return maps
    x1 = x * ctx.expand(g)
    d = jnp.concatenate([_ops.CHANNEL_POOLS[q](x1, ctx) for q in cfg.spatial_pool_order], axis=ctx.channel)
    z = _ops.spatial_conv(d, weights["spatial.conv.kernel"], ctx)
    if "spatial.conv.bias" in weights:
        z = z + ctx.weight(weights["spatial.conv.bias"])
    if cfg.spatial_norm:
        z, _ = _ops.batch_norm(z, weights, stats, "spatial.bn", cfg, ctx, training=training, axis_name=axis_name)
    s = gate(z).astype(ctx.dtype)
    maps["spatial"] = s if ctx.channel == 1 else jnp.moveaxis(s, 3, 1)  # (N, 1, H, W) in either format
    return maps
