"""ECA (SPEC.md section 5): z = avg(x); u = conv1d over channels; y = x * gate(u)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from . import ops
from ._io import check_cache, cotangent, prepare, to_layout
from .config import ECAConfig


class ECACache(NamedTuple):
    cfg: ECAConfig
    data_format: str
    dtype: Any
    x: np.ndarray  # NCHW float64
    params: dict[str, np.ndarray]
    z: np.ndarray  # channel descriptor (N, C)
    u: np.ndarray  # gate input (N, C)
    s: np.ndarray  # gate (N, C)


def eca_forward(
    x: Any, params: Mapping[str, Any], cfg: ECAConfig, *, training: bool = False, data_format: str = "channels_first"
) -> tuple[np.ndarray, ECACache, dict[str, np.ndarray]]:
    """Returns (y, cache, new_state); ECA has no state, so new_state is always empty."""
    x64, p = prepare(cfg, params, x, training, data_format, ECAConfig)
    z = x64.mean(axis=(2, 3))
    u = ops.conv1d(z, p["conv.weight"], cfg.padding) + p.get("conv.bias", 0.0)
    s = ops.GATES[cfg.gate][0](u)
    dtype = np.asarray(x).dtype
    y = x64 * s[:, :, None, None]
    return to_layout(y, data_format, dtype), ECACache(cfg, data_format, dtype, x64, p, z, u, s), {}


def eca_backward(dy: Any, cache: ECACache) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Returns (dx, grads) with grads keyed like param_layout(cfg)."""
    check_cache(cache, ECACache)
    cfg, x = cache.cfg, cache.x
    dy = cotangent(dy, x.shape, cache.data_format)
    du = ops.GATE_VJPS[cfg.gate](cache.u, (dy * x).sum(axis=(2, 3)))
    dz, dw = ops.conv1d_backward(du, cache.z, cache.params["conv.weight"], cfg.padding)
    grads = {"conv.weight": dw}
    if cfg.bias:
        grads["conv.bias"] = np.array([du.sum()])
    dx = dy * cache.s[:, :, None, None] + ops.POOLS["avg"][1](x, None, dz[:, :, None, None], (2, 3))
    return to_layout(dx, cache.data_format, cache.dtype), grads
