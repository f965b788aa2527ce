"""Keras 3 implementations in their own layout (NHWC; ``Dense`` ``(in, out)``, ``Conv1D`` ``(k, in, out)``)."""

from __future__ import annotations

import keras


class KerasECA(keras.layers.Layer):
    """ECA whose 1-D convolution runs over the pooled channels as a length-C sequence."""

    def __init__(self, channels: int, k_size: int = 3, **kwargs):
        super().__init__(**kwargs)
        self.channels = channels
        self.conv = keras.layers.Conv1D(1, k_size, padding="same", use_bias=False)

    def call(self, x):
        z = keras.ops.mean(x, axis=(1, 2))[:, :, None]  # (N, C, 1): C steps of one feature
        u = self.conv(z)[:, :, 0]
        return x * keras.ops.sigmoid(u)[:, None, None, :]


class KerasSE(keras.layers.Layer):
    """SE with ``Dense`` layers, a C / 4 bottleneck and Keras 3's hard sigmoid gate."""

    def __init__(self, channels: int, ratio: float = 0.25, **kwargs):
        super().__init__(**kwargs)
        self.channels = channels
        self.squeeze = keras.layers.Dense(int(channels * ratio), activation="relu")
        self.excite = keras.layers.Dense(channels, activation="hard_sigmoid")

    def call(self, x):
        s = self.excite(self.squeeze(keras.ops.mean(x, axis=(1, 2))))
        return x * s[:, None, None, :]
