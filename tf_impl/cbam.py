"""CBAM as a Keras 3 layer (SPEC.md section 4)."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from reference_numpy import CBAMConfig

from ._base import AttentionLayer
from ._ops import GATES, batch_norm, conv2d_same, mlp


@keras.saving.register_keras_serializable(package="attnspec")
class CBAM(AttentionLayer[CBAMConfig]):
    """Convolutional Block Attention Module (Woo et al., ECCV 2018): channel, then spatial attention.

    The spatial gate's batch norm is the spec's (PyTorch's momentum convention): with
    ``training=True`` it normalises with batch statistics and updates ``moving_mean`` and
    ``moving_variance``; as with Keras's ``BatchNormalization``, a layer with
    ``trainable=False`` runs it in inference mode.

    {Args, Input shape, Output shape}

    Example:

    >>> import numpy as np
    >>> layer = CBAM(32, spatial_kernel_size=3, name="cbam")
    >>> y = layer(np.ones((2, 6, 5, 32), dtype="float32"), training=True)
    >>> tuple(y.shape)
    (2, 6, 5, 32)
    >>> for w in layer.weights:
    ...     print(w.path, tuple(w.shape), "trainable" if w.trainable else "state")
    cbam/channel/fc1/kernel (32, 2) trainable
    cbam/channel/fc1/bias (2,) trainable
    cbam/channel/fc2/kernel (2, 32) trainable
    cbam/channel/fc2/bias (32,) trainable
    cbam/spatial/conv/kernel (3, 3, 2, 1) trainable
    cbam/spatial/bn/gamma (1,) trainable
    cbam/spatial/bn/beta (1,) trainable
    cbam/spatial/bn/moving_mean (1,) state
    cbam/spatial/bn/moving_variance (1,) state
    """

    module = "cbam"

    def _attend(self, x: Any, p: dict[str, Any], training: bool) -> tuple[Any, dict[str, Any]]:
        c = self.config
        pooled = [self.pool(t, x) for t in c.pool_types]
        x1 = self.gate(x, GATES[c.gate](ops.sum(mlp(ops.stack(pooled), p, "channel.", c.act), axis=0)))
        if not c.spatial:
            return x1, {}
        d = [self.pool(q, x1, over="channels") for q in c.spatial_pool_order]
        z = conv2d_same(ops.stack(d, axis=-1), p["spatial.conv.kernel"])
        if c.spatial_bias:
            z = z + p["spatial.conv.bias"]
        new_state: dict[str, Any] = {}
        if c.spatial_norm:
            z, new_state = batch_norm(z, p, "spatial.bn.", eps=c.bn_eps, momentum=c.bn_momentum, training=training)
        return self.gate(x1, GATES[c.gate](z[..., 0]), over="channels"), new_state
