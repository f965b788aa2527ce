"""Squeeze-and-Excitation as a Keras 3 layer (SPEC.md section 3)."""

from __future__ import annotations

from typing import Any

import keras

from reference_numpy import SEConfig

from ._base import AttentionLayer
from ._ops import GATES, mlp


@keras.saving.register_keras_serializable(package="attnspec")
class SqueezeExcite(AttentionLayer[SEConfig]):
    """Squeeze-and-Excitation (Hu et al., CVPR 2018): ``y = x * gate(fc2(act(fc1(avg(x)))))``.

    The knobs' defaults are the authors' release.

    {Args, Input shape, Output shape}

    Example:

    >>> import numpy as np
    >>> layer = SqueezeExcite(64, preset="timm")  # timm rounds the squeeze width to a multiple of 8
    >>> tuple(layer(np.ones((2, 8, 8, 64), dtype="float32")).shape)
    (2, 8, 8, 64)
    >>> {key: tuple(w.shape) for key, w in layer.keras_weights.items()}
    {'fc1.kernel': (64, 8), 'fc1.bias': (8,), 'fc2.kernel': (8, 64), 'fc2.bias': (64,)}
    >>> SqueezeExcite.from_config(layer.get_config()).config == layer.config  # get_config holds every knob
    True
    """

    module = "se"

    def _attend(self, x: Any, p: dict[str, Any], training: bool) -> tuple[Any, dict[str, Any]]:
        s = GATES[self.config.gate](mlp(self.pool("avg", x), p, "", self.config.act))
        return self.gate(x, s), {}
