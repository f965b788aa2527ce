"""Running error analysis (SPEC.md section 9.3): a rounding-error bound beside every reference tensor.

For every output, input gradient, parameter gradient and BN running statistic the reference
computes, :func:`error_bounds` returns an array ``M`` of the same shape such that ANY
evaluation of the spec in a floating-point format with unit roundoff ``u`` (any summation
order: recursive, pairwise, blocked, with or without FMA; any of the usual formulas for the
library functions) computes each element with an absolute error at most ``u * M``, to first
order in ``u``. Inputs and weights are exact (the reference runs on already rounded values).

``M`` is propagated alongside the values, forward and then backward, with these rules
(``|.|`` elementwise, all arrays float64):

- a product ``c = a * b``: ``M_c = |a| M_b + M_a |b| + |c|`` (one rounding);
- a sum or dot product of ``n`` terms ``t_i`` (a bias counts as a term):
  ``M = sum M(t_i) + n * sum |t_i|``; ``n - 1`` bounds the additions any binary tree
  (any order) makes, and one more covers the rounding of each product;
- a library function ``f(a)``: ``M = |f'(a)| M_a + C_LIB * F(a)``, with ``F`` the size of
  the terms the usual formulas for ``f`` round (see :data:`FUNCTIONS`);
- a derivative ``f'(a)`` used by the backward: ``M = L2 * M_a + C_LIB * Fd(a)``, ``L2`` a
  global bound on ``|f''|`` (activations are kept off their kinks by the case generator).

>>> import numpy as np
>>> from reference_numpy import ECAConfig, init_params, forward
>>> cfg = ECAConfig(channels=8)
>>> x = np.random.default_rng(0).normal(size=(2, 8, 3, 5))
>>> y, cache, _ = forward(cfg, init_params(cfg), x)
>>> b = error_bounds(cfg, cache, np.ones_like(x))
>>> b.y.shape == y.shape, bool((b.y > np.abs(y)).all()), sorted(b.grads)
(True, True, ['conv.weight'])
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from . import ops
from .config import CBAMConfig, Config, ECAConfig, SEConfig, check_config

__all__ = ["C_LIB", "FUNCTIONS", "Bounds", "error_bounds"]

Array = np.ndarray

C_LIB = 8.0
"""Rounding error of one library function evaluation (exp, log, erf, sqrt, reciprocal square root,
including the few roundings of the formula around it), in units of u times :data:`FUNCTIONS`' F.
Correctly rounded functions err by 0.5; glibc, SLEEF, Eigen/XLA and MKL's vector functions by at
most 4 ulp in the formats compared; 8 leaves a factor 2 for the surrounding roundings."""


class Function(NamedTuple):
    """Error model of an activation or gate ``f``: F (its evaluation's term size), Fd (that of f'), L2 >= |f''|."""

    F: Callable[[Array], Array]
    Fd: Callable[[Array], Array]
    L2: float


def _zero(x: Array) -> Array:
    return np.zeros_like(x)


def _phi(x: Array) -> Array:  # standard normal density
    return np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


FUNCTIONS: dict[str, Function] = {
    # piecewise linear, exact (max/clip) apart from the additions and the 1/6 of the hard ones
    "relu": Function(_zero, _zero, 0.0),
    "relu6": Function(_zero, _zero, 0.0),
    "hard_swish": Function(lambda x: np.abs(x) * (np.abs(x) + 3.0) / 6.0, lambda x: np.abs(x) / 3.0 + 0.5, 1.0 / 3.0),
    "hard_sigmoid": Function(lambda x: (np.abs(x) + 3.0) / 6.0, lambda x: np.full_like(x, 1.0 / 6.0), 0.0),
    # sigmoid: absolute error (covers 0.5 * tanh(x / 2) + 0.5, which is not relatively accurate)
    "sigmoid": Function(np.ones_like, np.ones_like, 0.09623),  # max |s''| = 1 / (6 sqrt 3)
    "silu": Function(np.abs, lambda x: 1.0 + np.abs(x), 0.5),  # max |silu''| = 1/2, at 0
    # gelu = x * (1 + erf(x / sqrt 2)) / 2: 1 + erf cancels for x << 0, so the error is absolute in x
    "gelu": Function(np.abs, lambda x: 1.0 + np.abs(x) * _phi(x) * (1.0 + x * x), 0.7979),  # 2 phi(0)
}


class Bounds(NamedTuple):
    """``M`` (units of u) for each reference tensor, in the caller's layout; ``dx``/``grads`` only with ``dy``."""

    y: Array
    dx: Array | None
    grads: dict[str, Array]
    state: dict[str, Array]


# ----------------------------------------------------------------------------- building blocks


def _sum(*terms: tuple[Array, Array]) -> Array:
    """M of an elementwise sum of k (value, M) terms: k - 1 additions in any order."""
    k = len(terms)
    return sum(m for _, m in terms) + (k - 1) * sum(np.abs(t) for t, _ in terms)  # type: ignore[return-value]


def _mul(a: Array, ma: Array | float, b: Array, mb: Array | float) -> Array:
    """M of a * b."""
    return np.abs(a) * mb + ma * np.abs(b) + np.abs(a * b)


def _fn(name: str, x: Array, mx: Array) -> Array:
    """M of act/gate ``name`` at x."""
    f = FUNCTIONS[name]
    df = (ops.ACTS.get(name) or ops.GATES[name])[1]
    return np.abs(df(x)) * mx + C_LIB * f.F(x)


def _dfn(name: str, x: Array, mx: Array) -> Array:
    """M of the derivative of act/gate ``name`` at x."""
    f = FUNCTIONS[name]
    return f.L2 * mx + C_LIB * f.Fd(x)


def _pool(kind: str, x: Array, mx: Array | float, y: Array, axes: tuple[int, ...]) -> Array:
    """M of pool ``kind`` of x over ``axes`` (y its value, axes kept)."""
    n = math.prod(x.shape[a] for a in axes)
    mx = np.broadcast_to(mx, x.shape)
    if kind in ("avg", "mean"):  # n - 1 additions, and the division (or a rounded 1/n and a product)
        return mx.mean(axis=axes, keepdims=True) + (n + 1) * np.abs(x).mean(axis=axes, keepdims=True)
    if kind == "max":  # max is 1-Lipschitz in the sup norm, ties or not
        return mx.max(axis=axes, keepdims=True)
    if kind == "lse":
        m = x.max(axis=axes, keepdims=True)
        p = np.exp(x - y)
        prop = (p * (mx + np.abs(x - m))).sum(axis=axes, keepdims=True)
        return prop + (n + 2 * C_LIB) + C_LIB * (np.abs(y) + np.abs(m))
    if kind == "lp":  # sqrt(S), S = sum x^2: M_S / (2 y) + C_LIB y
        with np.errstate(invalid="ignore", divide="ignore"):
            prop = np.where(y == 0, 0.0, (np.abs(x) * mx).sum(axis=axes, keepdims=True) / y)
        return prop + (n / 2 + C_LIB) * y
    raise ValueError(f"Unknown pool {kind!r}")  # pragma: no cover


def _pool_grad(
    kind: str, x: Array, mx: Array | float, y: Array, my: Array, dy: Array, mdy: Array, axes: tuple[int, ...]
) -> tuple[Array, Array]:
    """(value, M) of pool ``kind``'s input gradient for cotangent dy (y, dy with ``axes`` kept)."""
    n = math.prod(x.shape[a] for a in axes)
    g = ops.POOLS[kind][1](x, y, dy, axes)
    if kind in ("avg", "mean"):
        return g, np.broadcast_to((mdy + 2 * np.abs(dy)) / n, x.shape)
    if kind == "max":
        return g, (x == y) * mdy
    if kind == "lse":
        m = x.max(axis=axes, keepdims=True)
        p = np.exp(x - y)
        mp = p * (my + np.abs(x - y) + np.abs(x - m) + n + 2 * C_LIB + mx)
        return g, np.abs(dy) * mp + mdy * p + np.abs(g)
    if kind == "lp":
        with np.errstate(invalid="ignore", divide="ignore"):
            inv = np.where(y == 0, 0.0, 1.0 / y)
        return g, np.abs(x) * (mdy * inv + np.abs(dy) * my * inv * inv) + mx * np.abs(dy) * inv + 3 * np.abs(g)
    raise ValueError(f"Unknown pool {kind!r}")  # pragma: no cover


def _mlp_forward(z: Array, mz: Array, p: dict[str, Array], prefix: str, act: str) -> tuple[Array, Array, Array]:
    """M of h = z w1^T + b1, a = act(h) and u = sum_p (a w2^T + b2), for z (P, N, C)."""
    w1, w2 = np.abs(p[prefix + "fc1.weight"]), np.abs(p[prefix + "fc2.weight"])
    b1, b2 = (np.abs(p.get(prefix + k, 0.0)) for k in ("fc1.bias", "fc2.bias"))
    n_pool, _, c = z.shape
    hidden = w1.shape[0]
    w = p[prefix + "fc1.weight"]
    h = z @ w.T + p.get(prefix + "fc1.bias", 0.0)
    mh = mz @ w1.T + (c + 1) * (np.abs(z) @ w1.T + b1)
    a = ops.ACTS[act][0](h)
    ma = _fn(act, h, mh)
    mu = (ma @ w2.T).sum(axis=0) + n_pool * (hidden + 1) * (np.abs(a) @ w2.T + b2).sum(axis=0)
    return mh, ma, mu


def _mlp_backward(
    du: Array,
    mdu: Array,
    cache: tuple,
    mz: Array,
    mh: Array,
    ma: Array,
    p: dict[str, Array],
    prefix: str,
    act: str,
) -> tuple[Array, Array, dict[str, Array]]:
    """(dz, M of dz, M of the fc grads) for the MLP backward (ops.mlp_backward)."""
    z, h, a = cache
    w1, w2 = p[prefix + "fc1.weight"], p[prefix + "fc2.weight"]
    n_pool, n, c = z.shape
    hidden = w1.shape[0]
    q = du @ w2
    mq = mdu @ np.abs(w2) + c * (np.abs(du) @ np.abs(w2))
    d = ops.ACTS[act][1](h)
    dh = q * d
    mdh = _mul(q, mq, d, _dfn(act, h, mh))
    pn = n_pool * n
    adh, az, adu, aa = np.abs(dh), np.abs(z), np.abs(du), np.abs(a)
    grads = {
        "fc1.weight": np.einsum("pnh,pnc->hc", mdh, az)
        + np.einsum("pnh,pnc->hc", adh, mz)
        + pn * np.einsum("pnh,pnc->hc", adh, az),
        "fc1.bias": mdh.sum(axis=(0, 1)) + pn * adh.sum(axis=(0, 1)),
        "fc2.weight": np.einsum("nc,pnh->ch", mdu, aa)
        + np.einsum("nc,pnh->ch", adu, ma)
        + pn * np.einsum("nc,pnh->ch", adu, aa),
        "fc2.bias": n_pool * (mdu.sum(axis=0) + (n + 1) * adu.sum(axis=0)),
    }
    dz = dh @ w1
    mdz = mdh @ np.abs(w1) + hidden * (adh @ np.abs(w1))
    return dz, mdz, {prefix + k: v for k, v in grads.items() if prefix + k in p}


def _gate_input_grad(
    dy: Array, x: Array, mx: Array | float, mdy: Array | float, u: Array, mu: Array, gate: str, axes: tuple[int, ...]
) -> tuple[Array, Array]:
    """(du, M of du) for du = sum_axes(dy * x) * gate'(u)."""
    n = math.prod(x.shape[a] for a in axes)
    keep = u.ndim == x.ndim
    t = (dy * x).sum(axis=axes, keepdims=keep)
    mt = (np.abs(dy) * mx + mdy * np.abs(x)).sum(axis=axes, keepdims=keep) + n * np.abs(dy * x).sum(
        axis=axes, keepdims=keep
    )
    gd = ops.GATES[gate][1](u)
    du = t * gd
    return du, _mul(t, mt, gd, _dfn(gate, u, mu))


# ----------------------------------------------------------------------------- batch norm


class _BN(NamedTuple):
    zs: Array
    mzs: Array
    mu: Array | float
    mmu: Array | float
    inv: Array | float
    minv: Array | float
    xhat: Array
    mxhat: Array
    weight: Array
    training: bool


def _bn_forward(zs: Array, mzs: Array, p: dict[str, Array], cfg: CBAMConfig, training: bool) -> tuple[Array, _BN, dict]:
    """M of the BN output (and of the running statistics in train mode)."""
    w, b, rm, rv = (p[f"spatial.bn.{k}"] for k in ("weight", "bias", "running_mean", "running_var"))
    state = {}
    n = zs.size
    if training:
        mu, v = zs.mean(), zs.var()
        mmu = float(mzs.mean() + (n + 1) * np.abs(zs).mean())
        # two-pass, Welford or E[z^2] - mu^2: all within (3n + 8) mean(z^2); the propagated part is exact
        mv = float(2 * (np.abs(zs - mu) * mzs).mean() + (3 * n + 8) * (zs * zs).mean())
        mom, unb = cfg.bn_momentum, n / (n - 1)
        new_m, new_v = (1 - mom) * rm + mom * mu, (1 - mom) * rv + mom * v * unb
        state = {
            "spatial.bn.running_mean": mom * mmu + 3 * (np.abs((1 - mom) * rm) + abs(mom * mu)) + np.abs(new_m),
            "spatial.bn.running_var": mom * unb * mv
            + 4 * (np.abs((1 - mom) * rv) + abs(mom * v * unb))
            + np.abs(new_v),
        }
    else:
        mu, v, mmu, mv = rm, rv, 0.0, 0.0
    inv = 1.0 / np.sqrt(v + cfg.bn_eps)
    minv = 0.5 * inv**3 * mv + C_LIB * inv
    diff = zs - mu
    xhat = diff * inv
    mxhat = inv * (mzs + mmu) + np.abs(diff) * minv + 2 * inv * (np.abs(zs) + np.abs(mu))
    out = xhat * w + b
    mout = np.abs(w) * mxhat + 3 * (np.abs(w) * inv * (np.abs(zs) + np.abs(mu)) + np.abs(b)) + np.abs(out)
    return mout, _BN(zs, mzs, mu, mmu, inv, minv, xhat, mxhat, w, training), state


def _bn_backward(dout: Array, mdout: Array, bn: _BN) -> tuple[Array, Array, dict[str, Array]]:
    """(dz, M of dz, M of the BN weight and bias grads); ops.bn_backward's value, any usual formula's error."""
    n = dout.size
    xhat, mxhat, w, inv, minv = bn.xhat, bn.mxhat, bn.weight, bn.inv, bn.minv
    ad, ax = np.abs(dout), np.abs(xhat)
    grads = {
        "spatial.bn.weight": np.array([(mdout * ax + ad * mxhat).sum() + n * (ad * ax).sum()]),
        "spatial.bn.bias": np.array([mdout.sum() + n * ad.sum()]),
    }
    dxhat = dout * w
    mdxhat = np.abs(w) * mdout + np.abs(dxhat)
    if bn.training:
        m1, m2 = dxhat.mean(), (dxhat * xhat).mean()
        mm1 = mdxhat.mean() + (n + 1) * np.abs(dxhat).mean()
        mm2 = (mdxhat * ax + np.abs(dxhat) * mxhat).mean() + (n + 2) * np.abs(dxhat * xhat).mean()
        bracket = dxhat - m1 - xhat * m2
        mbr = mdxhat + mm1 + mxhat * abs(m2) + ax * mm2 + 3 * (np.abs(dxhat) + abs(m1) + ax * abs(m2))
        dz = bracket * inv
        return dz, inv * mbr + np.abs(bracket) * minv + np.abs(dz), grads
    dz = dxhat * inv
    return dz, inv * mdxhat + np.abs(dxhat) * minv + np.abs(dz), grads


# ----------------------------------------------------------------------------- modules


def _se_or_eca(cfg: SEConfig | ECAConfig, cache: Any, dy: Array | None) -> tuple[Array, Array | None, dict]:
    x, p = cache.x, cache.params
    hw = x.shape[2] * x.shape[3]
    mz = (hw + 1) * np.abs(x).mean(axis=(2, 3))  # (N, C): x is exact
    if isinstance(cfg, SEConfig):
        mh, ma, mu = _mlp_forward(cache.mlp[0], mz[None], p, "", cfg.act)
        u = cache.u
    else:
        w, k = p["conv.weight"], p["conv.weight"].shape[0]
        z, u = cache.z, cache.u
        mu = ops.conv1d(mz, np.abs(w), cfg.padding) + (k + 1) * (
            ops.conv1d(np.abs(z), np.abs(w), cfg.padding) + np.abs(p.get("conv.bias", 0.0))
        )
    s = cache.s
    ms = _fn(cfg.gate, u, mu)
    my = np.abs(x) * ms[:, :, None, None] + np.abs(x * s[:, :, None, None])
    if dy is None:
        return my, None, {}
    du, mdu = _gate_input_grad(dy, x, 0.0, 0.0, u, mu, cfg.gate, (2, 3))
    if isinstance(cfg, SEConfig):
        dz, mdz, grads = _mlp_backward(du, mdu, cache.mlp, mz[None], mh, ma, p, "", cfg.act)
        dz, mdz = dz[0], mdz[0]
    else:
        n, c = du.shape
        a_du, a_z, a_w = np.abs(du), np.abs(cache.z), np.abs(w)
        dz = ops.conv1d_backward(du, cache.z, w, cfg.padding)[0]
        prop_z, prop_w = ops.conv1d_backward(mdu, a_z, a_w, cfg.padding)
        abs_z, abs_w = ops.conv1d_backward(a_du, a_z, a_w, cfg.padding)
        count = ops.conv1d_backward(np.ones_like(du), np.ones_like(du), np.ones_like(w), cfg.padding)[0]
        grads = {"conv.weight": prop_w + ops.conv1d_backward(a_du, mz, a_w, cfg.padding)[1] + n * c * abs_w}
        if cfg.bias:
            grads["conv.bias"] = np.array([mdu.sum() + n * c * a_du.sum()])
        mdz = prop_z + count * abs_z
    g1, m1 = dy * s[:, :, None, None], np.abs(dy) * ms[:, :, None, None] + np.abs(dy * s[:, :, None, None])
    dzb = dz[:, :, None, None]
    g2, m2 = (
        np.broadcast_to(dzb / hw, x.shape),
        np.broadcast_to((mdz[:, :, None, None] + 2 * np.abs(dzb)) / hw, x.shape),
    )
    return my, _sum((g1, m1), (g2, m2)), grads


def _cbam(cfg: CBAMConfig, cache: Any, dy: Array | None) -> tuple[Array, Array | None, dict, dict]:
    x, p = cache.x, cache.params
    mzs_pool = [_pool(t, x, 0.0, z, (2, 3)) for t, z in zip(cfg.pool_types, cache.pooled, strict=True)]
    mz = np.stack(mzs_pool)[:, :, :, 0, 0]
    mh, ma, mu = _mlp_forward(cache.mlp[0], mz, p, "channel.", cfg.act)
    mg = _fn(cfg.gate, cache.a, mu)[:, :, None, None]
    x1, g = cache.x1, cache.g
    mx1 = np.abs(x) * mg + np.abs(x1)
    my, state = mx1, dict[str, Array]()
    sc = cache.spatial
    if sc is not None:
        w = p["spatial.conv.weight"]
        k = w.shape[-1]
        md = np.concatenate(
            [_pool(q, x1, mx1, sc.d[:, i : i + 1], (1,)) for i, q in enumerate(cfg.spatial_pool_order)], axis=1
        )
        conv = ops.conv2d(sc.d, w) + p.get("spatial.conv.bias", 0.0)
        mconv = ops.conv2d(md, np.abs(w)) + (2 * k * k + 1) * (
            ops.conv2d(np.abs(sc.d), np.abs(w)) + np.abs(p.get("spatial.conv.bias", 0.0))
        )
        bn = None
        mzs = mconv
        if cfg.spatial_norm:
            mzs, bn, state = _bn_forward(conv, mconv, p, cfg, sc.bn[3])
        ms = _fn(cfg.gate, sc.zs, mzs)
        my = _mul(x1, mx1, sc.s, ms)
    if dy is None:
        return my, None, {}, state
    grads: dict[str, Array] = {}
    dx1, mdx1 = dy, np.zeros_like(dy)
    if sc is not None:
        dzs, mdzs = _gate_input_grad(dy, x1, mx1, 0.0, sc.zs, mzs, cfg.gate, (1,))
        if bn is not None:
            dzs, mdzs, grads = _bn_backward(dzs, mdzs, bn)
        nhw = dzs.size
        if cfg.spatial_bias:
            grads["spatial.conv.bias"] = np.array([mdzs.sum() + nhw * np.abs(dzs).sum()])
        dd = ops.conv2d_backward(dzs, sc.d, w)[0]
        prop_d, prop_w = ops.conv2d_backward(mdzs, np.abs(sc.d), np.abs(w))
        abs_d, abs_w = ops.conv2d_backward(np.abs(dzs), np.abs(sc.d), np.abs(w))
        grads["spatial.conv.weight"] = prop_w + ops.conv2d_backward(np.abs(dzs), md, np.abs(w))[1] + nhw * abs_w
        mdd = prop_d + k * k * abs_d
        terms = [(dy * sc.s, np.abs(dy) * ms + np.abs(dy * sc.s))]
        for i, q in enumerate(cfg.spatial_pool_order):
            sl = slice(i, i + 1)
            terms.append(_pool_grad(q, x1, mx1, sc.d[:, sl], md[:, sl], dd[:, sl], mdd[:, sl], (1,)))
        dx1 = sum(t for t, _ in terms)
        mdx1 = _sum(*terms)
    da, mda = _gate_input_grad(dx1, x, 0.0, mdx1, cache.a, mu, cfg.gate, (2, 3))
    dz, mdz, mlp_grads = _mlp_backward(da, mda, cache.mlp, mz, mh, ma, p, "channel.", cfg.act)
    grads.update(mlp_grads)
    terms = [(dx1 * g, _mul(dx1, mdx1, g, mg))]
    for t, zt, mzt, dzt, mdzt in zip(cfg.pool_types, cache.pooled, mzs_pool, dz, mdz, strict=True):
        terms.append(_pool_grad(t, x, 0.0, zt, mzt, dzt[:, :, None, None], mdzt[:, :, None, None], (2, 3)))
    return my, _sum(*terms), grads, state


def _layout(a: Array, data_format: str) -> Array:
    return np.ascontiguousarray(a if data_format == "channels_first" else a.transpose(0, 2, 3, 1))


def error_bounds(cfg: Config, cache: Any, dy: Any = None) -> Bounds:
    """``M`` (units of u) for every tensor of ``forward`` (and, given ``dy``, of ``backward``) of ``cfg``.

    ``cache`` is the cache :func:`reference_numpy.forward` returned; ``dy`` is in the caller's
    layout, as for :func:`reference_numpy.backward`. The bound on the absolute rounding error of
    an element computed in a format with unit roundoff ``u`` is ``u * M`` (SPEC.md 9.3).
    """
    from ._io import cotangent
    from .cbam import CBAMCache
    from .eca import ECACache
    from .se import SECache

    check_config(cfg)
    if not isinstance(cache, (SECache, CBAMCache, ECACache)):
        raise TypeError(
            f"`cache` must be the cache a forward pass returned. Received: cache of type {type(cache).__name__}"
        )
    if cache.cfg != cfg:
        raise ValueError(f"`cache` was made by a forward pass of {cache.cfg}, not of {cfg}")
    fmt = cache.data_format
    dy64 = None if dy is None else cotangent(dy, cache.x.shape, fmt)
    state: dict[str, Array] = {}
    if isinstance(cfg, CBAMConfig):
        my, mdx, grads, state = _cbam(cfg, cache, dy64)
    else:
        my, mdx, grads = _se_or_eca(cfg, cache, dy64)
    grads = {k: grads[k] for k in cache.params if k in grads}
    return Bounds(_layout(my, fmt), None if mdx is None else _layout(mdx, fmt), grads, state)
