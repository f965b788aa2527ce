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

    ``kernel_size=None`` (the default) takes the paper's adaptive size, ``config.effective_kernel_size``.

    {Args, Input shape, Output shape}

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

    def _attend(self, x: Any, p: dict[str, Any], training: bool) -> tuple[Any, dict[str, Any]]:
        u = channel_conv1d(self.pool("avg", x), p["conv.kernel"], self.config.padding)
        if self.config.bias:
            u = u + p["conv.bias"]
        return self.gate(x, GATES[self.config.gate](u)), {}
