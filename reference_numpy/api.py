"""``forward`` / ``backward`` dispatching on the config type."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .cbam import CBAMCache, cbam_backward, cbam_forward
from .config import CBAMConfig, Config, ECAConfig, SEConfig, check_config
from .eca import ECACache, eca_backward, eca_forward
from .se import SECache, se_backward, se_forward

Cache = SECache | CBAMCache | ECACache

_FORWARD = {SEConfig: se_forward, CBAMConfig: cbam_forward, ECAConfig: eca_forward}
_BACKWARD = {SEConfig: se_backward, CBAMConfig: cbam_backward, ECAConfig: eca_backward}


def forward(
    cfg: Config,
    params: Mapping[str, Any],
    x: Any,
    training: bool = False,
    data_format: str = "channels_first",
) -> tuple[np.ndarray, Cache, dict[str, np.ndarray]]:
    """Run the module ``cfg`` describes. Returns ``(y, cache, new_state)``.

    ``y`` has x's shape and dtype (computed in float64); ``new_state`` holds the updated BN
    running statistics in train mode and is empty otherwise.

    >>> from reference_numpy import SEConfig, init_params
    >>> cfg = SEConfig(channels=16, rd_channels=4)
    >>> x = np.random.default_rng(0).normal(size=(2, 16, 5, 3))
    >>> y, cache, state = forward(cfg, init_params(cfg), x)
    >>> y.shape, state
    ((2, 16, 5, 3), {})
    """
    return _FORWARD[type(check_config(cfg))](x, params, cfg, training=training, data_format=data_format)  # type: ignore[operator]


def backward(cfg: Config, dy: Any, cache: Cache) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Vector-Jacobian product of :func:`forward`: returns ``(dx, grads)``.

    ``grads`` has one float64 entry per trainable canonical name.
    """
    if not isinstance(cache, (SECache, CBAMCache, ECACache)):
        raise TypeError(
            f"`cache` must be the cache a forward pass returned. Received: cache of type {type(cache).__name__}"
        )
    if cache.cfg != cfg:
        raise ValueError(f"`cache` was made by a forward pass of {cache.cfg}, not of {cfg}")
    return _BACKWARD[type(check_config(cfg))](dy, cache)  # type: ignore[operator]
