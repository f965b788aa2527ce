"""Keras networks for the audit tests, written here: a functional model mixing conforming and broken blocks.

ChannelReweight  an SE of two Dense layers with no class name that says so (found by shape)
RaisingSE        raises when called; NaNSE returns NaN (found by class name)
mixed_model      conv, tf_impl.SqueezeExcite, conv, ChannelReweight, ChannelReweight, tf_impl.ECA, RaisingSE, NaNSE, head
functional_model conv, ChannelReweight, tf_impl.ECA, with a declared input (12, 12, 3)
"""

from __future__ import annotations

import time

import keras

import tf_impl


class ChannelReweight(keras.layers.Layer):
    """Average, Dense(C // 4, relu), Dense(C, sigmoid), scale: channels_last."""

    def __init__(self, channels: int, **kwargs):
        super().__init__(**kwargs)
        self.reduce = keras.layers.Dense(channels // 4, activation="relu")
        self.expand = keras.layers.Dense(channels, activation="sigmoid")
        self.reduce.build((None, channels))
        self.expand.build((None, channels // 4))

    def call(self, x):
        return x * self.expand(self.reduce(keras.ops.mean(x, axis=(1, 2))))[:, None, None, :]


class RaisingSE(ChannelReweight):
    def call(self, x):
        raise RuntimeError("this block always raises")


class HangingSE(ChannelReweight):
    def call(self, x):
        time.sleep(3600)
        return x


class NaNSE(ChannelReweight):
    def call(self, x):
        return super().call(x) * float("nan")


class MixedModel(keras.Model):
    """Subclassed (the raising block would stop a functional model from being built): its convolutions and
    head are built on the first call."""

    def __init__(self) -> None:
        super().__init__(name="mixed")
        self.conv1 = keras.layers.Conv2D(16, 3, padding="same", name="conv1")
        self.se1 = tf_impl.SqueezeExcite(16, name="se1")
        self.conv2 = keras.layers.Conv2D(16, 3, padding="same", name="conv2")
        self.reweight_a = ChannelReweight(16, name="reweight_a")
        self.reweight_b = ChannelReweight(16, name="reweight_b")
        self.eca = tf_impl.ECA(16, name="eca")
        self.raising = RaisingSE(16, name="raising")
        self.nan = NaNSE(16, name="nan")
        self.head = keras.layers.Dense(10, name="head")

    def call(self, x):
        x = self.se1(self.conv1(x))
        x = self.reweight_b(self.reweight_a(self.conv2(x)))
        x = self.nan(self.raising(self.eca(x)))
        return self.head(keras.ops.mean(x, axis=(1, 2)))


def mixed_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    return MixedModel()


def functional_model() -> keras.Model:
    """Conforming blocks only, with a declared input shape (the audit's default sample takes it)."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((12, 12, 3))
    x = keras.layers.Conv2D(16, 3, padding="same")(inputs)
    x = ChannelReweight(16, name="reweight")(x)
    x = tf_impl.ECA(16, name="eca")(x)
    return keras.Model(inputs, x)


class HangingModel(keras.Model):
    """A conforming block, one that hangs when called, and ECA (subclassed: building a functional model would
    call the hanging block)."""

    def __init__(self) -> None:
        super().__init__(name="hanging_model")
        self.conv = keras.layers.Conv2D(16, 3, padding="same", name="conv")
        self.reweight = ChannelReweight(16, name="reweight")
        self.hanging = HangingSE(16, name="hanging")
        self.eca = tf_impl.ECA(16, name="eca")

    def call(self, x):
        return self.eca(self.hanging(self.reweight(self.conv(x))))


def hanging_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    return HangingModel()
