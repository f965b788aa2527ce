"""``forward`` / ``backward`` dispatching on the config type."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from .cbam import CBAMCache, cbam_backward, cbam_forward
from .config import CBAMConfig, Config, ECAConfig, SEConfig, check_config
from .eca import ECACache, eca_backward, eca_forward
from .se import SECache, se_backward, se_forward

Cache = SECache | CBAMCache | ECACache


def _quiet_if_nonfinite(*values: Any) -> Any:
    """NumPy's floating-point warnings off when an input holds NaN or Inf (SPEC.md section 1: they
    are values, and Inf * 0 = NaN is the rule, not an accident); on for finite inputs."""
    for v in values:
        for a in v.values() if isinstance(v, Mapping) else (v,):
            try:
                a = np.asarray(a)
            except (ValueError, TypeError):  # not an array (ragged, ...): the validation says so, naming it
                continue
            if a.dtype.kind in "fc" and not np.isfinite(a).all():
                return np.errstate(invalid="ignore", over="ignore", divide="ignore")
    return contextlib.nullcontext()


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
    run = _FORWARD[type(check_config(cfg))]
    with _quiet_if_nonfinite(x, params):
        return run(x, params, cfg, training=training, data_format=data_format)  # type: ignore[operator]


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
    run = _BACKWARD[type(check_config(cfg))]
    with _quiet_if_nonfinite(dy, cache.x, cache.params):
        return run(dy, cache)  # type: ignore[operator]
