"""CBAM (SPEC.md section 4): channel attention with one MLP shared by all pools, then spatial attention."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from . import ops
from ._io import cotangent, prepare, to_layout
from .config import CBAMConfig, param_layout


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
    d: np.ndarray | None  # spatial descriptors (N, 2, H, W)
    zs: np.ndarray | None  # spatial gate input (after conv, bias and BN)
    bn: tuple | None
    s: np.ndarray | None  # spatial gate (N, 1, H, W)


def cbam_forward(
    x: Any, params: Mapping[str, Any], cfg: CBAMConfig, *, training: bool = False, data_format: str = "channels_first"
) -> tuple[np.ndarray, CBAMCache, dict[str, np.ndarray]]:
    """Returns (y, cache, new_state); new_state has the spatial BN's running stats in train mode."""
    x64, p = prepare(cfg, params, x, training, data_format)
    pooled = tuple(ops.POOLS[t][0](x64, (2, 3)) for t in cfg.pool_types)
    z = np.stack(pooled)[:, :, :, 0, 0]  # (P, N, C)
    a, mlp = ops.mlp_forward(
        z,
        p["channel.fc1.weight"],
        p.get("channel.fc1.bias"),
        p["channel.fc2.weight"],
        p.get("channel.fc2.bias"),
        cfg.act,
    )
    g = ops.GATES[cfg.gate][0](a)[:, :, None, None]
    x1 = x64 * g
    d = zs = bn = s = None
    new_state: dict[str, np.ndarray] = {}
    y = x1
    if cfg.spatial:
        d = np.concatenate([ops.POOLS[q][0](x1, (1,)) for q in cfg.spatial_pool_order], axis=1)
        zs = ops.conv2d(d, p["spatial.conv.weight"]) + p.get("spatial.conv.bias", 0.0)
        if cfg.spatial_norm:
            zs, bn, stats = ops.bn_forward(
                zs,
                *(p[f"spatial.bn.{n}"] for n in ("weight", "bias", "running_mean", "running_var")),
                cfg.bn_eps,
                cfg.bn_momentum,
                training,
            )
            new_state = {f"spatial.bn.{k}": v for k, v in stats.items()}
        s = ops.GATES[cfg.gate][0](zs)
        y = x1 * s
    dtype = np.asarray(x).dtype
    cache = CBAMCache(cfg, data_format, dtype, x64, p, pooled, mlp, a, g, x1, d, zs, bn, s)
    return to_layout(y, data_format, dtype), cache, new_state


def cbam_backward(dy: Any, cache: CBAMCache) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Returns (dx, grads) with grads keyed like the trainable entries of param_layout(cfg)."""
    c, p, x = cache.cfg, cache.params, cache.x
    dy = cotangent(dy, x.shape, cache.data_format)
    grads: dict[str, np.ndarray] = {}
    dx1 = dy
    if c.spatial:
        dx1 = dy * cache.s
        dzs = (dy * cache.x1).sum(axis=1, keepdims=True) * ops.GATES[c.gate][1](cache.zs)
        if c.spatial_norm:
            dzs, grads["spatial.bn.weight"], grads["spatial.bn.bias"] = ops.bn_backward(dzs, cache.bn)
        if c.spatial_bias:
            grads["spatial.conv.bias"] = np.array([dzs.sum()])
        dd, grads["spatial.conv.weight"] = ops.conv2d_backward(dzs, cache.d, p["spatial.conv.weight"])
        for i, q in enumerate(c.spatial_pool_order):
            pool_grad = ops.POOLS[q][1]
            dx1 = dx1 + pool_grad(cache.x1, cache.d[:, i : i + 1], dd[:, i : i + 1], (1,))
    da = (dx1 * x).sum(axis=(2, 3)) * ops.GATES[c.gate][1](cache.a)
    dz, mlp_grads = ops.mlp_backward(da, cache.mlp, p["channel.fc1.weight"], p["channel.fc2.weight"], c.act)
    dx = dx1 * cache.g
    for t, zt, dzt in zip(c.pool_types, cache.pooled, dz, strict=True):
        dx = dx + ops.POOLS[t][1](x, zt, dzt[:, :, None, None], (2, 3))
    grads.update({f"channel.{k}": v for k, v in mlp_grads.items()})
    layout = param_layout(c)
    return to_layout(dx, cache.data_format, cache.dtype), {k: grads[k] for k, s in layout.items() if s.trainable}
