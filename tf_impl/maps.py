"""Attention maps in ``keras.ops``: the gates a layer multiplies its input by, without the output.

``layer.attention_maps(x, training=None)`` returns ``{"channel": (N, C)}``, plus
``"spatial": (N, 1, H, W)`` for a CBAM with its spatial branch, whatever the data format: the
channel gate ``g`` and the spatial gate ``s`` of SPEC.md sections 3 to 5 (``y = x * g`` for SE
and ECA, ``y = (x * g) * s`` for CBAM), as every port returns them. ``training`` is read as
by ``call`` (batch statistics in CBAM's batch norm only when true and the layer is
trainable); no moving statistic is updated. The maps are composed from the pieces of
:mod:`tf_impl._ops` (pools, MLP, convolutions, batch norm, gates).

>>> import numpy as np
>>> import tf_impl
>>> layer = tf_impl.CBAM(32, data_format="channels_first")
>>> maps = layer.attention_maps(np.ones((2, 32, 7, 5), "float32"))
>>> {k: tuple(v.shape) for k, v in maps.items()}
{'channel': (2, 32), 'spatial': (2, 1, 7, 5)}
"""

from __future__ import annotations

from typing import Any

from keras import ops

from ._ops import GATES, batch_norm, channel_conv1d, conv2d_same, mlp

__all__ = ["attention_maps"]


def attention_maps(layer: Any, x: Any, p: dict[str, Any], training: bool) -> dict[str, Any]:
    """The maps of ``layer`` on ``x``, with ``p`` its weights by Keras key in the accumulation dtype."""
    c, out = layer.config, layer.compute_dtype
    gate = GATES[c.gate]
    if c.module == "se":
        return {"channel": ops.cast(gate(mlp(layer.pool("avg", x), p, "", c.act)), out)}
    if c.module == "eca":
        u = channel_conv1d(layer.pool("avg", x), p["conv.kernel"], c.padding)
        if c.bias:
            u = u + p["conv.bias"]
        return {"channel": ops.cast(gate(u), out)}
    pooled = ops.stack([layer.pool(t, x) for t in c.pool_types])
    g = gate(ops.sum(mlp(pooled, p, "channel.", c.act), axis=0))
    maps = {"channel": ops.cast(g, out)}
    if not c.spatial:
        return maps
    x1 = layer.gate(x, g)
    d = ops.stack([layer.pool(q, x1, over="channels") for q in c.spatial_pool_order], axis=-1)  # (N, H, W, 2)
    z = conv2d_same(d, p["spatial.conv.kernel"])
    if c.spatial_bias:
        z = z + p["spatial.conv.bias"]
    if c.spatial_norm:
        z, _ = batch_norm(z, p, "spatial.bn.", eps=c.bn_eps, momentum=c.bn_momentum, training=training)
    maps["spatial"] = ops.cast(gate(z[..., 0]), out)[:, None]
    return maps
