"""SE (SPEC.md section 3): z = avg(x); s = gate(fc2(act(fc1(z)))); y = x * s."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from . import ops
from ._io import check_cache, cotangent, prepare, to_layout
from .config import SEConfig


class SECache(NamedTuple):
    cfg: SEConfig
    data_format: str
    dtype: Any
    x: np.ndarray  # NCHW float64
    params: dict[str, np.ndarray]
    mlp: tuple
    u: np.ndarray  # gate input (N, C)
    s: np.ndarray  # gate output (N, C)


def se_forward(
    x: Any, params: Mapping[str, Any], cfg: SEConfig, *, training: bool = False, data_format: str = "channels_first"
) -> tuple[np.ndarray, SECache, dict[str, np.ndarray]]:
    """Returns (y, cache, new_state); SE has no state, so new_state is always empty."""
    x64, p = prepare(cfg, params, x, training, data_format, SEConfig)
    z = ops.POOLS["avg"][0](x64, (2, 3))[None, :, :, 0, 0]  # (1, N, C)
    u, mlp = ops.mlp_forward(z, p["fc1.weight"], p.get("fc1.bias"), p["fc2.weight"], p.get("fc2.bias"), cfg.act)
    s = ops.GATES[cfg.gate][0](u)
    y = x64 * s[:, :, None, None]
    return (
        to_layout(y, data_format, np.asarray(x).dtype),
        SECache(cfg, data_format, np.asarray(x).dtype, x64, p, mlp, u, s),
        {},
    )


def se_backward(dy: Any, cache: SECache) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Returns (dx, grads) with grads keyed like the trainable entries of param_layout(cfg)."""
    check_cache(cache, SECache)
    cfg, x, p = cache.cfg, cache.x, cache.params
    dy = cotangent(dy, x.shape, cache.data_format)
    du = ops.GATE_VJPS[cfg.gate](cache.u, (dy * x).sum(axis=(2, 3)))
    dz, grads = ops.mlp_backward(du, cache.mlp, p["fc1.weight"], p["fc2.weight"], cfg.act)
    dx = dy * cache.s[:, :, None, None] + ops.POOLS["avg"][1](x, None, dz[0][:, :, None, None], (2, 3))
    return to_layout(dx, cache.data_format, cache.dtype), {k: grads[k] for k in p}
