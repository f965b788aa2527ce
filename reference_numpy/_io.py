"""Input checking and layout handling shared by the three reference modules."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .config import Config, check_config
from .params import canonical_arrays, real_arrays


def prepare(
    cfg: Config, params: Mapping[str, Any], x: Any, training: bool, data_format: str, kind: type | None = None
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Validate everything (``cfg`` must be a ``kind`` when given), then return x as float64 NCHW and the params
    as float64 arrays."""
    check_config(cfg)
    if kind is not None and not isinstance(cfg, kind):
        raise TypeError(f"`cfg` must be a {kind.__name__} here. Received: a {type(cfg).__name__}")
    x = np.asarray(x)
    cfg.validate_input(x.shape, x.dtype, data_format=data_format, training=training)
    p = {k: v.astype(np.float64, copy=False) for k, v in canonical_arrays(cfg, params).items()}
    x64 = x.astype(np.float64)
    return (x64 if data_format == "channels_first" else x64.transpose(0, 3, 1, 2)), p


def to_layout(a: np.ndarray, data_format: str, dtype: Any) -> np.ndarray:
    """NCHW float64 result -> the caller's layout and dtype."""
    return (a if data_format == "channels_first" else a.transpose(0, 2, 3, 1)).astype(dtype, copy=False)


def cotangent(dy: Any, shape: tuple[int, ...], data_format: str) -> np.ndarray:
    """Check dy against the output's shape (in the caller's layout); return it as float64 NCHW."""
    dy = real_arrays({"dy": dy}, what="`dy`")["dy"].astype(np.float64, copy=False)
    expected = shape if data_format == "channels_first" else (shape[0], shape[2], shape[3], shape[1])
    if dy.shape != expected:
        raise ValueError(f"`dy` must have the output's shape {expected}. Received: dy of shape {dy.shape}")
    return dy if data_format == "channels_first" else dy.transpose(0, 3, 1, 2)


def check_cache(cache: Any, kind: type) -> None:
    """``cache`` must be what a forward pass of ``kind``'s module returned."""
    if not isinstance(cache, kind):
        raise TypeError(
            f"`cache` must be the {kind.__name__} a forward pass of this module returned. "
            f"Received: cache of type {type(cache).__name__}"
        )
