"""Efficient Channel Attention as a Keras 3 layer (SPEC.md section 5)."""

from __future__ import annotations

from typing import Any

import keras

from reference_numpy import ECAConfig

from ._base import AttentionLayer
from ._ops import GATES, channel_conv1d


@keras.saving.register_keras_serializable(package="attnspec")
class ECA(AttentionLayer[ECAConfig]):
    """Efficient Channel Attention (Wang et al., CVPR 2020): a k-tap 1-D convolution over ``avg(x)``'s channels.

    Args:
        channels: Number of input channels ``C``.
        preset: ``"paper"``, ``"timm"`` or ``"timm_ceca"`` (SPEC.md section 6); the knobs
            given explicitly override it.
        data_format: ``"channels_last"`` (N, H, W, C) or ``"channels_first"`` (N, C, H, W).
            Defaults to ``keras.config.image_data_format()``.
        kernel_size, gamma, beta, padding, bias, gate: keyword-only, the fields of
            ``reference_numpy.ECAConfig`` with its defaults (``kernel_size=None``: adaptive).
        **kwargs: ``keras.layers.Layer`` arguments (``name``, ``dtype``, ``trainable``).

    Input shape:
        4D tensor ``(batch, height, width, channels)`` with ``data_format="channels_last"``,
        ``(batch, channels, height, width)`` with ``data_format="channels_first"``.

    Output shape:
        The input's shape; the dtype is the layer's compute dtype.

    Example:

    >>> import numpy as np
    >>> layer = ECA(256, data_format="channels_first")
    >>> y = layer(np.ones((2, 256, 7, 5), dtype="float32"))
    >>> tuple(y.shape), layer.config.effective_kernel_size
    ((2, 256, 7, 5), 5)
    >>> {key: tuple(w.shape) for key, w in layer.keras_weights.items()}
    {'conv.kernel': (5, 1, 1)}
    """

    module = "eca"

    def attend(self, x: Any, p: dict[str, Any], training: bool) -> tuple[Any, dict[str, Any]]:
        u = channel_conv1d(self.pool("avg", x), p["conv.kernel"], self.config.padding)
        if self.config.bias:
            u = u + p["conv.bias"]
        return self.gate(x, GATES[self.config.gate](u)), {}
