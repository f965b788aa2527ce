"""CBAM (SPEC.md section 4): channel attention with one MLP shared by all pools, then spatial attention."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from . import ops
from ._io import check_cache, cotangent, prepare, to_layout
from .config import CBAMConfig, param_layout


class SpatialCache(NamedTuple):
    d: np.ndarray  # spatial descriptors (N, 2, H, W), in spatial_pool_order
    zs: np.ndarray  # spatial gate input (after conv, bias and BN)
    bn: tuple | None
    s: np.ndarray  # spatial gate (N, 1, H, W)


class CBAMCache(NamedTuple):
    cfg: CBAMConfig
    data_format: str
    dtype: Any
    x: np.ndarray  # NCHW float64
    params: dict[str, np.ndarray]
    pooled: tuple[np.ndarray, ...]  # channel descriptors, one per pool type, each (N, C, 1, 1)
    mlp: tuple
    a: np.ndarray  # channel gate input (N, C)
    g: np.ndarray  # channel gate (N, C, 1, 1)
    x1: np.ndarray  # x * g
    spatial: SpatialCache | None


def _spatial_forward(
    x1: np.ndarray, p: dict[str, np.ndarray], cfg: CBAMConfig, training: bool
) -> tuple[np.ndarray, SpatialCache, dict[str, np.ndarray]]:
    """y = x1 * gate(bn(conv(concat(cpool_q(x1))) + bias))."""
    d = np.concatenate([ops.POOLS[q][0](x1, (1,)) for q in cfg.spatial_pool_order], axis=1)
    zs = ops.conv2d(d, p["spatial.conv.weight"]) + p.get("spatial.conv.bias", 0.0)
    bn, state = None, {}
    if cfg.spatial_norm:
        w, b, mean, var = (p[f"spatial.bn.{n}"] for n in ("weight", "bias", "running_mean", "running_var"))
        zs, bn, stats = ops.bn_forward(zs, w, b, mean, var, cfg.bn_eps, cfg.bn_momentum, training)
        state = {f"spatial.bn.{k}": v for k, v in stats.items()}
    s = ops.GATES[cfg.gate][0](zs)
    return x1 * s, SpatialCache(d, zs, bn, s), state


def _spatial_backward(
    dy: np.ndarray, x1: np.ndarray, sc: SpatialCache, p: dict[str, np.ndarray], cfg: CBAMConfig
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Returns (dx1, grads of the spatial parameters)."""
    grads = {}
    dzs = ops.GATE_VJPS[cfg.gate](sc.zs, (dy * x1).sum(axis=1, keepdims=True))
    if sc.bn is not None:
        dzs, grads["spatial.bn.weight"], grads["spatial.bn.bias"] = ops.bn_backward(dzs, sc.bn)
    if cfg.spatial_bias:
        grads["spatial.conv.bias"] = np.array([dzs.sum()])
    dd, grads["spatial.conv.weight"] = ops.conv2d_backward(dzs, sc.d, p["spatial.conv.weight"])
    dx1 = dy * sc.s
    for i, q in enumerate(cfg.spatial_pool_order):
        dx1 = dx1 + ops.POOLS[q][1](x1, sc.d[:, i : i + 1], dd[:, i : i + 1], (1,))
    return dx1, grads


def cbam_forward(
    x: Any, params: Mapping[str, Any], cfg: CBAMConfig, *, training: bool = False, data_format: str = "channels_first"
) -> tuple[np.ndarray, CBAMCache, dict[str, np.ndarray]]:
    """Returns (y, cache, new_state); new_state has the spatial BN's running stats in train mode."""
    x64, p = prepare(cfg, params, x, training, data_format, CBAMConfig)
    pooled = tuple(ops.POOLS[t][0](x64, (2, 3)) for t in cfg.pool_types)
    fc1, fc2 = p["channel.fc1.weight"], p["channel.fc2.weight"]
    z = np.stack(pooled)[:, :, :, 0, 0]  # (P, N, C): ONE MLP shared by all pools
    a, mlp = ops.mlp_forward(z, fc1, p.get("channel.fc1.bias"), fc2, p.get("channel.fc2.bias"), cfg.act)
    g = ops.GATES[cfg.gate][0](a)[:, :, None, None]
    x1 = y = x64 * g
    spatial, new_state = None, dict[str, np.ndarray]()
    if cfg.spatial:
        y, spatial, new_state = _spatial_forward(x1, p, cfg, training)
    dtype = np.asarray(x).dtype
    cache = CBAMCache(cfg, data_format, dtype, x64, p, pooled, mlp, a, g, x1, spatial)
    return to_layout(y, data_format, dtype), cache, new_state


def cbam_backward(dy: Any, cache: CBAMCache) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Returns (dx, grads) with grads keyed like the trainable entries of param_layout(cfg)."""
    check_cache(cache, CBAMCache)
    c, p, x = cache.cfg, cache.params, cache.x
    dx1 = cotangent(dy, x.shape, cache.data_format)
    grads: dict[str, np.ndarray] = {}
    if cache.spatial is not None:
        dx1, grads = _spatial_backward(dx1, cache.x1, cache.spatial, p, c)
    da = ops.GATE_VJPS[c.gate](cache.a, (dx1 * x).sum(axis=(2, 3)))
    dz, mlp_grads = ops.mlp_backward(da, cache.mlp, p["channel.fc1.weight"], p["channel.fc2.weight"], c.act)
    grads.update({f"channel.{k}": v for k, v in mlp_grads.items()})
    dx = dx1 * cache.g
    for t, zt, dzt in zip(c.pool_types, cache.pooled, dz, strict=True):
        dx = dx + ops.POOLS[t][1](x, zt, dzt[:, :, None, None], (2, 3))
    layout = param_layout(c)
    return to_layout(dx, cache.data_format, cache.dtype), {k: grads[k] for k, s in layout.items() if s.trainable}
