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

Non-finite values (SPEC.md section 1, and 9.3's "non-finite cases"): ``M`` is 0 wherever the value
is NaN or +/-Inf (those entries are compared exactly, and any evaluation that meets the rule holds
the same non-finite value there), and finite everywhere else. A rounded operation with a non-finite
operand has a non-finite result, so a finite entry is reached by non-finite values only through the
exact points of the rule, whose results every evaluation computes exactly and whose ``M`` is 0: a
selection's unselected 0, an activation or gate at +/-Inf (its limit: ``relu(-Inf) = 0``,
``sigmoid(+Inf) = 1``), ``exp(-Inf) = 0`` in ``lse``, ``x / Inf = 0`` in ``lp``, ``1 / sqrt(Inf) = 0`` in
batch norm, and a max whose window holds -Inf. Every rule below therefore treats the values it is
given as exact where they are not finite, and :func:`error_bounds` raises if a finite entry is
left without a finite bound.

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

__all__ = ["C_LIB", "FUNCTIONS", "Bounds", "NoBoundError", "error_bounds"]

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


class NoBoundError(ValueError):
    """A finite reference entry that :func:`error_bounds` could not bound (a non-finite value reached it
    through an operation SPEC.md 9.3 does not cover): the comparison must fail rather than guess."""


# ----------------------------------------------------------------------------- building blocks


def _clean(m: Array | float, v: Array) -> Array:
    """``m`` where the value ``v`` is finite, 0 where it is NaN or +/-Inf (compared exactly, held
    exactly by every evaluation that meets SPEC.md section 1); broadcast to ``v``'s shape."""
    return np.where(np.isfinite(v), m, 0.0)


def _sum(*terms: tuple[Array, Array]) -> Array:
    """M of an elementwise sum of k (value, M) terms: k - 1 additions in any order."""
    k = len(terms)
    m = sum(m for _, m in terms) + (k - 1) * sum(np.abs(t) for t, _ in terms)
    return _clean(m, sum(t for t, _ in terms))  # type: ignore[arg-type]


def _mul(a: Array, ma: Array | float, b: Array, mb: Array | float) -> Array:
    """M of a * b (a product with a non-finite factor is never finite: NaN or +/-Inf)."""
    c = a * b
    return _clean(np.abs(a) * mb + ma * np.abs(b) + np.abs(c), c)


def _fn(name: str, x: Array, mx: Array) -> Array:
    """M of act/gate ``name`` at x; 0 at +/-Inf and NaN (the limit, e.g. sigmoid(+Inf) = 1, is exact)."""
    f = FUNCTIONS[name]
    df = (ops.ACTS.get(name) or ops.GATES[name])[1]
    return _clean(np.abs(df(x)) * mx + C_LIB * f.F(x), x)


def _dfn(name: str, x: Array, mx: Array) -> Array:
    """M of the derivative of act/gate ``name`` at x; 0 where x is not finite (as for :func:`_fn`)."""
    f = FUNCTIONS[name]
    return _clean(f.L2 * mx + C_LIB * f.Fd(x), x)


def _vjp(fns: dict, name: str, x: Array, mx: Array, g: Array, mg: Array) -> tuple[Array, Array]:
    """(value, M) of ``g * f'(x)`` as the reference computes it (``ops.ACT_VJPS``/``GATE_VJPS``): a piecewise
    derivative's unselected 0 is exact whatever ``g`` holds, so its M is 0 (``_mul``'s NaN there is cleaned)."""
    v = fns[name](x, g)
    d = (ops.ACTS.get(name) or ops.GATES[name])[1](x)
    return v, _clean(_mul(g, mg, d, _dfn(name, x, mx)), v)


def _pool(kind: str, x: Array, mx: Array | float, y: Array, axes: tuple[int, ...]) -> Array:
    """M of pool ``kind`` of x over ``axes`` (y its value, axes kept)."""
    n = math.prod(x.shape[a] for a in axes)
    mx = _clean(np.broadcast_to(mx, x.shape), x)  # a -Inf entry of a max window is exact
    if kind in ("avg", "mean"):  # n - 1 additions, and the division (or a rounded 1/n and a product)
        m = mx.mean(axis=axes, keepdims=True) + (n + 1) * np.abs(x).mean(axis=axes, keepdims=True)
    elif kind == "max":  # max is 1-Lipschitz in the sup norm, ties or not
        m = mx.max(axis=axes, keepdims=True)
    elif kind == "lse":  # exp(-Inf - y) = 0 exactly: a -Inf entry adds an exact 0 to a finite window's sum
        mmax = x.max(axis=axes, keepdims=True)
        p = np.exp(x - y)
        prop = _clean(p * (mx + np.abs(x - mmax)), x).sum(axis=axes, keepdims=True)
        m = prop + (n + 2 * C_LIB) + C_LIB * (np.abs(y) + np.abs(mmax))
    elif kind == "lp":  # sqrt(S), S = sum x^2: M_S / (2 y) + C_LIB y
        prop = np.where(y == 0, 0.0, (np.abs(x) * mx).sum(axis=axes, keepdims=True) / y)
        m = prop + (n / 2 + C_LIB) * y
    else:
        raise ValueError(f"Unknown pool {kind!r}")  # pragma: no cover
    return _clean(m, y)


def _pool_grad(
    kind: str, x: Array, mx: Array | float, y: Array, my: Array, dy: Array, mdy: Array, axes: tuple[int, ...]
) -> tuple[Array, Array]:
    """(value, M) of pool ``kind``'s input gradient for cotangent dy (y, dy with ``axes`` kept)."""
    n = math.prod(x.shape[a] for a in axes)
    g = ops.POOLS[kind][1](x, y, dy, axes)
    mx = _clean(np.broadcast_to(mx, x.shape), x)
    if kind in ("avg", "mean"):
        m = np.broadcast_to((mdy + 2 * np.abs(dy)) / n, x.shape)
    elif kind == "max":  # a selection: 0 off the maxima; a tie (+Inf twice) divides by the count
        hit = x == y
        count = hit.sum(axis=axes, keepdims=True)
        m = np.where(hit, mdy / np.maximum(count, 1), 0.0) + (count > 1) * np.abs(g)
    elif kind == "lse":  # p = exp(x - y) is an exact 0 at x = -Inf, or at a finite x in a +Inf window
        mmax = x.max(axis=axes, keepdims=True)
        p = np.exp(x - y)
        mp = _clean(p * (my + np.abs(x - y) + np.abs(x - mmax) + n + 2 * C_LIB + mx), x - y)
        m = np.abs(dy) * mp + mdy * p + np.abs(g)
    elif kind == "lp":  # x / y is an exact 0 at a finite x in a +Inf window
        inv = np.where(y == 0, 0.0, 1.0 / y)
        m = np.abs(x) * (mdy * inv + np.abs(dy) * my * inv * inv) + mx * np.abs(dy) * inv + 3 * np.abs(g)
    else:
        raise ValueError(f"Unknown pool {kind!r}")  # pragma: no cover
    return g, _clean(m, g)


def _mlp_forward(z: Array, mz: Array, p: dict[str, Array], prefix: str, act: str) -> tuple[Array, Array, Array]:
    """M of h = z w1^T + b1, a = act(h) and u = sum_p (a w2^T + b2), for z (P, N, C)."""
    w1, w2 = np.abs(p[prefix + "fc1.weight"]), np.abs(p[prefix + "fc2.weight"])
    b1, b2 = (np.abs(p.get(prefix + k, 0.0)) for k in ("fc1.bias", "fc2.bias"))
    n_pool, _, c = z.shape
    hidden = w1.shape[0]
    w = p[prefix + "fc1.weight"]
    h = z @ w.T + p.get(prefix + "fc1.bias", 0.0)
    mh = _clean(mz @ w1.T + (c + 1) * (np.abs(z) @ w1.T + b1), h)
    a = ops.ACTS[act][0](h)
    ma = _clean(_fn(act, h, mh), a)
    u = (a @ p[prefix + "fc2.weight"].T + p.get(prefix + "fc2.bias", 0.0)).sum(axis=0)
    mu = (ma @ w2.T).sum(axis=0) + n_pool * (hidden + 1) * (np.abs(a) @ w2.T + b2).sum(axis=0)
    return mh, ma, _clean(mu, u)


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
    mq = _clean(mdu @ np.abs(w2) + c * (np.abs(du) @ np.abs(w2)), q)
    dh, mdh = _vjp(ops.ACT_VJPS, act, h, mh, q, mq)
    dz, values = ops.mlp_backward(du, cache, w1, w2, act)
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
    mdz = _clean(mdh @ np.abs(w1) + hidden * (adh @ np.abs(w1)), dz)
    return dz, mdz, {prefix + k: _clean(v, values[k]) for k, v in grads.items() if prefix + k in p}


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
    return _vjp(ops.GATE_VJPS, gate, u, mu, t, _clean(mt, t))


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
        mmu = float(_clean(mzs.mean() + (n + 1) * np.abs(zs).mean(), mu))
        # two-pass, Welford or E[z^2] - mu^2: all within (3n + 8) mean(z^2); the propagated part is exact
        mv = float(_clean(2 * (np.abs(zs - mu) * mzs).mean() + (3 * n + 8) * (zs * zs).mean(), v))
        mom, unb = cfg.bn_momentum, n / (n - 1)
        new_m, new_v = (1 - mom) * rm + mom * mu, (1 - mom) * rv + mom * v * unb
        state = {
            "spatial.bn.running_mean": _clean(
                mom * mmu + 3 * (np.abs((1 - mom) * rm) + abs(mom * mu)) + np.abs(new_m), new_m
            ),
            "spatial.bn.running_var": _clean(
                mom * unb * mv + 4 * (np.abs((1 - mom) * rv) + abs(mom * v * unb)) + np.abs(new_v), new_v
            ),
        }
    else:
        mu, v, mmu, mv = rm, rv, 0.0, 0.0
    inv = 1.0 / np.sqrt(v + cfg.bn_eps)  # 1 / sqrt(+Inf) = 0 exactly (an infinite running variance)
    minv = _clean(0.5 * inv**3 * mv + C_LIB * inv, inv)
    diff = zs - mu
    xhat = diff * inv
    mxhat = _clean(inv * (mzs + mmu) + np.abs(diff) * minv + 2 * inv * (np.abs(zs) + np.abs(mu)), xhat)
    out = xhat * w + b
    mout = np.abs(w) * mxhat + 3 * (np.abs(w) * inv * (np.abs(zs) + np.abs(mu)) + np.abs(b)) + np.abs(out)
    return _clean(mout, out), _BN(zs, mzs, mu, mmu, inv, minv, xhat, mxhat, w, training), state


def _bn_backward(dout: Array, mdout: Array, bn: _BN) -> tuple[Array, Array, dict[str, Array]]:
    """(dz, M of dz, M of the BN weight and bias grads); ops.bn_backward's value, any usual formula's error."""
    n = dout.size
    xhat, mxhat, w, inv, minv = bn.xhat, bn.mxhat, bn.weight, bn.inv, bn.minv
    ad, ax = np.abs(dout), np.abs(xhat)
    grads = {
        "spatial.bn.weight": _clean(
            np.array([(mdout * ax + ad * mxhat).sum() + n * (ad * ax).sum()]), np.array([(dout * xhat).sum()])
        ),
        "spatial.bn.bias": _clean(np.array([mdout.sum() + n * ad.sum()]), np.array([dout.sum()])),
    }
    dxhat = dout * w
    mdxhat = _clean(np.abs(w) * mdout + np.abs(dxhat), dxhat)
    if bn.training:
        m1, m2 = dxhat.mean(), (dxhat * xhat).mean()
        mm1 = _clean(mdxhat.mean() + (n + 1) * np.abs(dxhat).mean(), m1)
        mm2 = _clean((mdxhat * ax + np.abs(dxhat) * mxhat).mean() + (n + 2) * np.abs(dxhat * xhat).mean(), m2)
        bracket = dxhat - m1 - xhat * m2
        mbr = mdxhat + mm1 + mxhat * abs(m2) + ax * mm2 + 3 * (np.abs(dxhat) + abs(m1) + ax * abs(m2))
        dz = bracket * inv
        return dz, _clean(inv * _clean(mbr, bracket) + np.abs(bracket) * minv + np.abs(dz), dz), grads
    dz = dxhat * inv  # an exact 0 where the running variance is +Inf
    return dz, _clean(inv * mdxhat + np.abs(dxhat) * minv + np.abs(dz), dz), grads


# ----------------------------------------------------------------------------- modules


def _se_or_eca(cfg: SEConfig | ECAConfig, cache: Any, dy: Array | None) -> tuple[Array, Array | None, dict]:
    x, p = cache.x, cache.params
    hw = x.shape[2] * x.shape[3]
    z = cache.mlp[0][0] if isinstance(cfg, SEConfig) else cache.z
    mz = _clean((hw + 1) * np.abs(x).mean(axis=(2, 3)), z)  # (N, C): x is exact
    if isinstance(cfg, SEConfig):
        mh, ma, mu = _mlp_forward(cache.mlp[0], mz[None], p, "", cfg.act)
        u = cache.u
    else:
        w, k = p["conv.weight"], p["conv.weight"].shape[0]
        u = cache.u
        mu = ops.conv1d(mz, np.abs(w), cfg.padding) + (k + 1) * (
            ops.conv1d(np.abs(z), np.abs(w), cfg.padding) + np.abs(p.get("conv.bias", 0.0))
        )
        mu = _clean(mu, u)
    s = cache.s
    ms = _fn(cfg.gate, u, mu)
    my = _mul(x, 0.0, s[:, :, None, None], ms[:, :, None, None])
    if dy is None:
        return my, None, {}
    du, mdu = _gate_input_grad(dy, x, 0.0, 0.0, u, mu, cfg.gate, (2, 3))
    if isinstance(cfg, SEConfig):
        dz, mdz, grads = _mlp_backward(du, mdu, cache.mlp, mz[None], mh, ma, p, "", cfg.act)
        dz, mdz = dz[0], mdz[0]
    else:
        n, c = du.shape
        a_du, a_z, a_w = np.abs(du), np.abs(cache.z), np.abs(w)
        dz, dw = ops.conv1d_backward(du, cache.z, w, cfg.padding)
        prop_z, prop_w = ops.conv1d_backward(mdu, a_z, a_w, cfg.padding)
        abs_z, abs_w = ops.conv1d_backward(a_du, a_z, a_w, cfg.padding)
        count = ops.conv1d_backward(np.ones_like(du), np.ones_like(du), np.ones_like(w), cfg.padding)[0]
        mdw = prop_w + ops.conv1d_backward(a_du, mz, a_w, cfg.padding)[1] + n * c * abs_w
        grads = {"conv.weight": _clean(mdw, dw)}
        if cfg.bias:
            grads["conv.bias"] = _clean(np.array([mdu.sum() + n * c * a_du.sum()]), np.array([du.sum()]))
        mdz = _clean(prop_z + count * abs_z, dz)
    g1, m1 = dy * s[:, :, None, None], _mul(dy, 0.0, s[:, :, None, None], ms[:, :, None, None])
    dzb = dz[:, :, None, None]
    g2 = np.broadcast_to(dzb / hw, x.shape)
    m2 = _clean(np.broadcast_to((mdz[:, :, None, None] + 2 * np.abs(dzb)) / hw, x.shape), g2)
    return my, _sum((g1, m1), (g2, m2)), grads


def _cbam(cfg: CBAMConfig, cache: Any, dy: Array | None) -> tuple[Array, Array | None, dict, dict]:
    x, p = cache.x, cache.params
    mzs_pool = [_pool(t, x, 0.0, z, (2, 3)) for t, z in zip(cfg.pool_types, cache.pooled, strict=True)]
    mz = np.stack(mzs_pool)[:, :, :, 0, 0]
    mh, ma, mu = _mlp_forward(cache.mlp[0], mz, p, "channel.", cfg.act)
    mg = _fn(cfg.gate, cache.a, mu)[:, :, None, None]
    x1, g = cache.x1, cache.g
    mx1 = _mul(x, 0.0, g, mg)
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
        mconv = _clean(mconv, conv)
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
            grads["spatial.conv.bias"] = _clean(np.array([mdzs.sum() + nhw * np.abs(dzs).sum()]), np.array([dzs.sum()]))
        dd, dw = ops.conv2d_backward(dzs, sc.d, w)
        prop_d, prop_w = ops.conv2d_backward(mdzs, np.abs(sc.d), np.abs(w))
        abs_d, abs_w = ops.conv2d_backward(np.abs(dzs), np.abs(sc.d), np.abs(w))
        mdw = prop_w + ops.conv2d_backward(np.abs(dzs), md, np.abs(w))[1] + nhw * abs_w
        grads["spatial.conv.weight"] = _clean(mdw, dw)
        mdd = _clean(prop_d + k * k * abs_d, dd)
        terms = [(dy * sc.s, _mul(dy, 0.0, sc.s, ms))]
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
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):  # Inf * 0 = NaN is the rule here
        if isinstance(cfg, CBAMConfig):
            my, mdx, grads, state = _cbam(cfg, cache, dy64)
        else:
            my, mdx, grads = _se_or_eca(cfg, cache, dy64)
    grads = {k: grads[k] for k in cache.params if k in grads}
    bounds = Bounds(_layout(my, fmt), None if mdx is None else _layout(mdx, fmt), grads, state)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        return _bounded(cfg, cache, dy, bounds)


def _bounded(cfg: Config, cache: Any, dy: Any, b: Bounds) -> Bounds:
    """``b`` with M = 0 at every non-finite entry of the reference; :class:`NoBoundError` if a finite
    entry has no finite M (SPEC.md 9.3, non-finite cases).

    Only non-finite inputs make either happen; then the reference's outputs are recomputed from ``cache``.
    """
    inputs = [cache.x, *cache.params.values()] + ([] if dy is None else [np.asarray(dy, dtype=np.float64)])
    if all(np.isfinite(a).all() for a in inputs):
        return b
    from .api import backward  # this module is imported by the package before api

    values: dict[str, tuple[Array, Array]] = {"y": (_layout(_output(cfg, cache), cache.data_format), b.y)}
    if b.dx is not None:
        dx, grads = backward(cfg, dy, cache)
        values["dx"] = (dx, b.dx)
        values |= {f"grad[{k}]": (grads[k], m) for k, m in b.grads.items()}
    if b.state:
        stats = _bn_stats(cfg, cache)
        values |= {f"state[{k}]": (stats[k], m) for k, m in b.state.items()}
    bad = [name for name, (v, m) in values.items() if not np.isfinite(m[np.isfinite(v)]).all()]
    if bad:
        raise NoBoundError(
            f"No error bound for the finite entries of {', '.join(bad)}: a non-finite value reaches them "
            "through an operation SPEC.md 9.3 does not cover"
        )
    clean = {name: _clean(m, v) for name, (v, m) in values.items()}
    return Bounds(
        clean["y"],
        clean.get("dx"),
        {k: clean[f"grad[{k}]"] for k in b.grads},
        {k: clean[f"state[{k}]"] for k in b.state},
    )


def _bn_stats(cfg: Config, cache: Any) -> dict[str, Array]:
    """The updated running statistics of a train-mode forward, from its cache."""
    from .api import forward

    return forward(cfg, cache.params, cache.x, training=True)[2]


def _output(cfg: Config, cache: Any) -> Array:
    """The forward's output (NCHW) from its cache."""
    if isinstance(cfg, CBAMConfig):
        return cache.x1 if cache.spatial is None else cache.x1 * cache.spatial.s
    return cache.x * cache.s[:, :, None, None]
