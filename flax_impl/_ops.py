"""The math of SE, CBAM and ECA on JAX arrays, shared by the Linen and the NNX modules.

Pure functions of (config, weights, running statistics, input). Weights and statistics come
as flat mappings keyed by their path in the spec's Flax layout, without the collection:
``"channel.fc1.kernel"``, ``"spatial.bn.scale"`` (weights), ``"spatial.bn.mean"`` (statistics).
Both data formats are computed in place (reductions and the convolution take the layout's
axes), so channels_first input is never transposed.

Precision: the computation dtype is ``dtype`` (default: the input's). For float16 and
bfloat16 the attention branch (pools, MLP, convolutions, batch norm) accumulates in float32
from weights rounded to the computation dtype; the gates are rounded back before they scale
the input, and the output has the input's dtype.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.custom_derivatives import SymbolicZero

from reference_numpy import CBAMConfig, Config, ECAConfig, SEConfig, check_training

Array = jax.Array
Weights = Mapping[str, Array]

_HIGHEST = lax.Precision.HIGHEST  # no reduced-precision matmuls (TF32) on accelerators


@jax.custom_jvp
def sigmoid(x: Array) -> Array:
    """``jax.nn.sigmoid`` with the derivative ``sigmoid(x) * sigmoid(-x)``.

    JAX differentiates the logistic as ``s * (1 - s)``, which loses every digit once ``s``
    rounds to 1 (|x| > ~17 in float32); the saturated gates of large inputs need the exact form.
    """
    return jax.nn.sigmoid(x)


@sigmoid.defjvp
def _sigmoid_jvp(primals: tuple[Array], tangents: tuple[Array]) -> tuple[Array, Array]:
    (x,), (t,) = primals, tangents
    s = sigmoid(x)
    return s, t * (s * jax.nn.sigmoid(-x))


@jax.custom_jvp
def hard_swish(x: Array) -> Array:
    """``x * relu6(x + 3) / 6`` with SPEC.md section 1's derivative, which selects.

    The product rule on ``x * hard_sigmoid(x)`` adds ``x * 0`` and ``t * 0`` terms, NaN where
    ``t`` is infinite or ``x`` NaN; the derivative of a piecewise function is instead ``t`` above 3,
    ``t * (x / 3 + 1 / 2)`` on [-3, 3] and an exact 0 elsewhere (and at NaN).
    """
    return jax.nn.hard_swish(x)


@hard_swish.defjvp
def _hard_swish_jvp(primals: tuple[Array], tangents: tuple[Array]) -> tuple[Array, Array]:
    (x,), (t,) = primals, tangents
    inside = (x >= -3) & (x <= 3)
    # the slope is selected too, so that the transpose, where(inside, g, 0) * slope, never meets NaN
    slope = jnp.where(inside, x / 3 + 0.5, jnp.zeros_like(x))
    return hard_swish(x), jnp.where(x > 3, t, jnp.where(inside, t * slope, jnp.zeros_like(t)))


# jax.nn.relu and relu6 differentiate by selecting (0 at NaN and at the kinks), as SPEC.md section 1 asks
ACTS: dict[str, Callable[[Array], Array]] = {
    "relu": jax.nn.relu,  # gradient 0 at 0
    "relu6": jax.nn.relu6,
    "silu": lambda x: x * sigmoid(x),
    "gelu": functools.partial(jax.nn.gelu, approximate=False),
    "hard_swish": hard_swish,  # x * relu6(x + 3) / 6
}


GATES: dict[str, Callable[[Array], Array]] = {
    "sigmoid": sigmoid,
    "hard_sigmoid": jax.nn.hard_sigmoid,  # relu6(x + 3) / 6, gradient 0 at +-3
}


class Ctx(NamedTuple):
    """Where the axes are and which dtypes to compute and accumulate in."""

    channel: int  # axis of C
    space: tuple[int, int]  # axes of H, W
    conv: tuple[str, str, str]  # lax dimension numbers of the spatial convolution
    dtype: Any  # computation dtype
    acc: Any  # accumulation dtype: float32 for half types, else ``dtype``

    def weight(self, w: Array) -> Array:
        """A weight rounded to the computation dtype, held in the accumulation dtype."""
        return jnp.asarray(w).astype(self.dtype).astype(self.acc)

    def expand(self, s: Array) -> Array:
        """(N, C) -> broadcastable against the input, in the computation dtype."""
        return jnp.expand_dims(s.astype(self.dtype), self.space)


def make_ctx(data_format: str, dtype: Any) -> Ctx:
    dtype = jnp.dtype(dtype)
    acc = jnp.dtype(jnp.float32) if dtype.itemsize < 4 else dtype
    if data_format == "channels_first":
        return Ctx(1, (2, 3), ("NCHW", "HWIO", "NCHW"), dtype, acc)
    return Ctx(3, (1, 2), ("NHWC", "HWIO", "NHWC"), dtype, acc)


# ----------------------------------------------------------------------------- pools


def _lp(x: Array, axis: Any) -> Array:
    s = jnp.sum(x * x, axis=axis, keepdims=True)
    zero = s == 0  # sqrt has no gradient at 0: an all-zero window gives value (and gradient) 0; NaN stays NaN
    return jnp.where(zero, 0, jnp.sqrt(jnp.where(zero, 1, s)))


def _lse(x: Array, axis: Any) -> Array:
    """``m + log(sum(exp(x - m)))`` with ``m`` the window's max where finite, else 0 (SPEC.md section 2)."""
    m = lax.stop_gradient(jnp.max(x, axis=axis, keepdims=True))
    m = jnp.where(jnp.isfinite(m), m, 0)
    return m + jnp.log(jnp.sum(jnp.exp(x - m), axis=axis, keepdims=True))


def _max_jvp(x: Array, y: Array, t: Array, axis: Any, acc: Any, keepdims: bool) -> Array:
    """Tangent of a max pool: ``t`` averaged over the entries of ``x`` that equal their window's max ``y``.

    SPEC.md section 1: the derivative selects, ``where(x == y, t, 0)`` (an exact 0 off the maxima
    whatever ``t`` holds), and is shared evenly among tied maxima; a NaN max equals no entry, so
    its window's tangent is 0, and an infinite max is shared among its infinite entries. The
    tangent is linear in ``t`` with a mask computed from ``x`` and ``y`` only, so its transpose
    (reverse mode) is ``where(x == y, share, 0)``: one fused input-sized pass.
    """
    hit = x == y
    count = jnp.sum(hit, axis=axis, keepdims=True, dtype=acc)
    out = jnp.sum(jnp.where(hit, t, jnp.zeros_like(t)), axis=axis, keepdims=True, dtype=acc) / jnp.maximum(count, 1)
    return out if keepdims else jnp.squeeze(out, axis)


def _lp_jvp(x: Array, y: Array, t: Array, axis: Any, acc: Any, keepdims: bool) -> Array:
    value = y if keepdims else jnp.squeeze(y, axis)
    zero = value == 0  # an all-zero window: tangent 0 (SPEC.md section 2)
    return jnp.where(zero, 0, jnp.sum(x * t, axis=axis, keepdims=keepdims, dtype=acc) / jnp.where(zero, 1, value))


# tangents of the pools: (x, pooled value kept broadcastable in x's dtype, tangent of x, axis,
# accumulation dtype, keepdims) -> tangent of the pooled value in the accumulation dtype. Each is
# linear in the tangent, with the input-sized factors computed from x and y only, so that its
# transpose is the pool's gradient as one pass (max splits among tied maxima and selects, lp is 0
# at an all-zero window, lse is softmax-weighted: SPEC.md sections 1 and 2).
POOL_JVPS: dict[str, Callable[[Array, Array, Array, Any, Any, bool], Array]] = {
    "avg": lambda x, y, t, axis, acc, kd: jnp.mean(t, axis=axis, keepdims=kd, dtype=acc),
    "max": _max_jvp,
    "lse": lambda x, y, t, axis, acc, kd: jnp.sum(t * jnp.exp(x - y), axis=axis, keepdims=kd, dtype=acc),
    "lp": _lp_jvp,
}
POOL_JVPS["mean"] = POOL_JVPS["avg"]

_POOL_VALUES: dict[str, Callable[[Array, Any], Array]] = {
    "max": lambda x, axis: jnp.max(x, axis=axis, keepdims=True),
    "lse": _lse,
    "lp": _lp,
}


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 2, 3))
def pool(name: str, x: Array, axis: tuple[int, ...], acc: Any) -> Array:
    """The ``name`` pool (``"max"``, ``"lse"`` or ``"lp"``) of ``x`` over ``axis``, kept, in ``acc``.

    Its derivative is :data:`POOL_JVPS`' (SPEC.md sections 1 and 2) rather than JAX's, whose
    max multiplies by an indicator (an Inf or NaN tangent off the maximum leaks in).
    """
    return _POOL_VALUES[name](x.astype(acc), axis)


@pool.defjvp
def _pool_jvp(name: str, axis: tuple[int, ...], acc: Any, primals: Any, tangents: Any) -> Any:
    (x,), (t,) = primals, tangents
    y = pool(name, x, axis, acc)
    return y, POOL_JVPS[name](x, y.astype(x.dtype), t, axis, acc, True)


def _space_pool(name: str) -> Callable[[Array, Ctx], Array]:
    return lambda x, c: jnp.squeeze(pool(name, x, c.space, c.acc), c.space)


# pools over H, W: (x, ctx) -> (N, C) in the accumulation dtype
SPACE_POOLS: dict[str, Callable[[Array, Ctx], Array]] = {
    "avg": lambda x, c: jnp.mean(x, axis=c.space, dtype=c.acc),
    "max": _space_pool("max"),
    "lse": _space_pool("lse"),
    "lp": _space_pool("lp"),
}
# pools over C (CBAM's spatial descriptors): (x, ctx) -> one channel, kept, accumulation dtype
CHANNEL_POOLS: dict[str, Callable[[Array, Ctx], Array]] = {
    "mean": lambda x, c: jnp.mean(x, axis=c.channel, keepdims=True, dtype=c.acc),
    "max": lambda x, c: pool("max", x, (c.channel,), c.acc),
}

# ----------------------------------------------------------------------------- layers


def dense(v: Array, w: Weights, prefix: str, ctx: Ctx) -> Array:
    """``v @ kernel + bias`` (kernel ``(in, out)``; the bias is optional)."""
    out = jnp.matmul(v, ctx.weight(w[f"{prefix}.kernel"]), precision=_HIGHEST)
    bias = w.get(f"{prefix}.bias")
    return out if bias is None else out + ctx.weight(bias)


def mlp(z: Array, w: Weights, prefix: str, act: str, ctx: Ctx) -> Array:
    """``fc2(act(fc1(z)))`` on a stack of descriptors (P, N, C), summed over the stack."""
    return dense(ACTS[act](dense(z, w, f"{prefix}fc1", ctx)), w, f"{prefix}fc2", ctx).sum(axis=0)


def _windows_1d(z: Array, k: int, padding: str) -> Array:
    """(N, C) -> (N, C, k): the window of each output of a 'same' correlation, padded explicitly."""
    c = z.shape[1]
    z = jnp.pad(z, ((0, 0), (k // 2, k // 2)), mode="wrap" if padding == "circular" else "constant")
    return z[:, np.arange(c)[:, None] + np.arange(k)]


def _inside(length: int, k: int) -> np.ndarray:
    """(length, k): whether tap j of output i reads an entry inside the input, not a padded zero."""
    pos = np.arange(length)[:, None] + np.arange(k) - k // 2
    return (pos >= 0) & (pos < length)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def _correlate_1d(z: Array, w: Array, padding: str) -> Array:
    """``u[:, c] = sum_j w[j] * z_padded[:, c + j]``, each output gathering its window.

    SPEC.md section 1: a padded zero is a value (a NaN tap makes every output NaN) and a NaN
    channel does not reach across the zero padding. The tangent in ``z`` has a term only for
    the entries that exist (padded zeros have no tangent) and its transpose, the input's
    gradient, only for the outputs that exist.
    """
    return jnp.matmul(_windows_1d(z, w.shape[0], padding), w, precision=_HIGHEST)


@_correlate_1d.defjvp
def _correlate_1d_jvp(padding: str, primals: Any, tangents: Any) -> Any:
    (z, w), (tz, tw) = primals, tangents
    k = w.shape[0]
    inside = _inside(z.shape[1], k) if padding == "zeros" else np.ones((z.shape[1], k), bool)
    w_inside = jnp.where(inside, w, jnp.zeros_like(w))  # (C, k): no 0 * w term for a padded zero
    tu = jnp.einsum("nck,ck->nc", _windows_1d(tz, k, padding), w_inside, precision=_HIGHEST)
    return _correlate_1d(z, w, padding), tu + jnp.matmul(_windows_1d(z, k, padding), tw, precision=_HIGHEST)


def channel_conv(z: Array, kernel: Array, padding: str, ctx: Ctx) -> Array:
    """ECA's correlation over channels: (N, C) with a ``(k, 1, 1)`` kernel, 'same' size (:func:`_correlate_1d`)."""
    return _correlate_1d(z, ctx.weight(kernel)[:, 0, 0], padding)


def _pad_space(d: Array, pad: int, ctx: Ctx) -> Array:
    widths = [(0, 0)] * d.ndim
    for a in ctx.space:
        widths[a] = (pad, pad)
    return jnp.pad(d, widths)


def _windows_2d(d: Array, k: int, ctx: Ctx) -> Array:
    """A padded ``d`` -> each output's window: (N, I, H, k, W, k), or (N, H, k, W, k, I) channels_last."""
    hi, wi = (np.arange(d.shape[a] - k + 1)[:, None] + np.arange(k) for a in ctx.space)  # (H, k), (W, k)
    if ctx.channel == 1:
        return d[:, :, hi[:, :, None, None], wi[None, None]]
    return d[:, hi[:, :, None, None], wi[None, None], :]


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def _conv_by_windows(d: Array, kernel: Array, ctx: Ctx) -> Array:
    """The valid correlation of a padded ``d`` with an HWIO ``kernel``, each output gathering its window.

    The padded zeros are values here, but have no tangent: the tangent in ``d`` has no
    ``0 * kernel`` term, and its transpose (a scatter of ``dz * kernel`` over the windows) has a
    term only for the outputs that exist, where XLA's transpose of a convolution pads the
    cotangent and adds ``0 * kernel`` terms: NaN for a non-finite kernel (SPEC.md section 1).
    """
    spec = "nihawb,abio->nohw" if ctx.channel == 1 else "nhawbi,abio->nhwo"
    return jnp.einsum(spec, _windows_2d(d, kernel.shape[0], ctx), kernel, precision=_HIGHEST)


@_conv_by_windows.defjvp
def _conv_by_windows_jvp(ctx: Ctx, primals: Any, tangents: Any) -> Any:
    (d, kernel), (td, tk) = primals, tangents
    k = kernel.shape[0]
    h, w = (d.shape[a] - k + 1 for a in ctx.space)
    inside = _inside(h, k)[:, :, None, None, None, None] & _inside(w, k)[None, None, :, :, None, None]
    kernel_inside = jnp.where(
        inside, kernel[None, :, None], jnp.zeros_like(kernel)[None, :, None]
    )  # (H, k, W, k, I, O)
    spec = "nihawb,hawbio->nohw" if ctx.channel == 1 else "nhawbi,hawbio->nhwo"
    t = jnp.einsum(spec, _windows_2d(td, k, ctx), kernel_inside, precision=_HIGHEST)
    return _conv_by_windows(d, kernel, ctx), t + _conv_by_windows(d, tk, ctx)


@functools.cache
def _conv_branches(ctx: Ctx) -> tuple[Callable[[Array, Array], Array], Callable[[Array, Array], Array]]:
    """The two ways of :func:`spatial_conv`, one function object per layout (so eager ``lax.cond``
    calls find their compiled branches cached)."""

    def conv(d: Array, w: Array) -> Array:
        return lax.conv_general_dilated(d, w, (1, 1), "VALID", dimension_numbers=ctx.conv, precision=_HIGHEST)

    return conv, lambda d, w: _conv_by_windows(d, w, ctx)


@functools.partial(jax.jit, static_argnums=2)  # eager calls reuse the compiled conditional and its derivatives
def spatial_conv(d: Array, kernel: Array, ctx: Ctx) -> Array:
    """Stride-1 'same' cross-correlation with zero padding, HWIO kernel, in the input's layout.

    The zeros are padded explicitly: they are values, so a NaN or Inf weight makes every output
    NaN and an Inf cotangent meets them in the weight's gradient (SPEC.md section 1). XLA's
    convolution computes it while the kernel is finite; a non-finite kernel takes
    :func:`_conv_by_windows`, whose input gradient has no ``0 * kernel`` terms.
    """
    w = ctx.weight(kernel)
    d = _pad_space(d, kernel.shape[0] // 2, ctx)
    return lax.cond(jnp.isfinite(w).all(), *_conv_branches(ctx), d, w)


def training_mode(training: Any) -> Any:
    """``training`` as a Python bool (the static path), or the traced 0-d bool array it is under ``jax.jit``.

    Anything else (``"no"``, ``1``, a float array) is the spec's ``TypeError``.
    """
    check_training(training)
    return training if isinstance(training, jax.core.Tracer) else bool(training)


def negate(flag: Any) -> Any:
    """``not flag`` for a bool or a (traced) 0-d bool array, checked by :func:`training_mode`."""
    flag = training_mode(flag)
    return not flag if isinstance(flag, bool) else jnp.logical_not(flag)


@functools.cache
def _bn_branches(momentum: float, ctx: Ctx, axis_name: Any) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """Batch norm's statistics in train mode (batch) and eval mode (held), each ``(z, running) ->
    (mean, var, running statistics after the call)``; one pair of function objects per setting, so
    eager ``lax.cond`` calls find their compiled branches cached."""

    def batch(z: Array, running: dict[str, Array]) -> tuple[Array, Array, dict[str, Array]]:
        n = z.size
        mean = jnp.mean(z)
        if axis_name is not None:
            mean, n = lax.pmean(mean, axis_name), n * lax.axis_size(axis_name)
        var = jnp.mean(jnp.square(z - mean))
        if axis_name is not None:
            var = lax.pmean(var, axis_name)
        mean, var = jnp.reshape(mean, (1,)), jnp.reshape(var, (1,))  # the running statistics' shape
        updated = {
            "mean": (1 - momentum) * running["mean"].astype(ctx.acc) + momentum * mean,
            "var": (1 - momentum) * running["var"].astype(ctx.acc) + momentum * var * (n / (n - 1)),
        }
        return mean, var, {k: lax.stop_gradient(v).astype(running[k].dtype) for k, v in updated.items()}

    def held(z: Array, running: dict[str, Array]) -> tuple[Array, Array, dict[str, Array]]:
        return running["mean"].astype(ctx.acc), running["var"].astype(ctx.acc), running

    return batch, held


def batch_norm(
    z: Array,
    w: Weights,
    stats: Weights,
    prefix: str,
    cfg: CBAMConfig,
    ctx: Ctx,
    *,
    training: Any,
    axis_name: str | None,
) -> tuple[Array, dict[str, Array]]:
    """One-channel batch norm (SPEC.md section 2). Returns (output, updated running statistics).

    Train mode normalises with the batch mean and biased variance (two passes, so no
    cancellation), averaged over ``axis_name`` when given; the running variance is updated
    with the unbiased one, ``n`` counting every value on every device along ``axis_name``.
    ``training`` is a Python bool (eval mode returns no statistics) or a traced bool, which
    picks the mode with ``lax.cond`` and returns the statistics in both (unchanged in eval mode).
    """
    running = {k: stats[f"{prefix}.{k}"] for k in ("mean", "var")}
    batch, held = _bn_branches(cfg.bn_momentum, ctx, axis_name)
    if isinstance(training, bool):
        mean, var, new = (batch if training else held)(z, running)
        new = new if training else {}
    else:
        mean, var, new = lax.cond(training, batch, held, z, running)
    inv_std = lax.rsqrt(var + cfg.bn_eps)
    out = (z - mean) * (inv_std * ctx.weight(w[f"{prefix}.scale"])) + ctx.weight(w[f"{prefix}.bias"])
    return out, {f"{prefix}.{k}": v for k, v in new.items()}


# ----------------------------------------------------------------------------- modules
# (cfg, weights, stats, x in the computation dtype, ctx, training, axis_name) -> (y, new stats)


def se(cfg: SEConfig, w: Weights, stats: Weights, x: Array, ctx: Ctx, training: Any, axis_name: Any) -> Any:
    z = SPACE_POOLS["avg"](x, ctx)[None]  # (1, N, C)
    return x * ctx.expand(GATES[cfg.gate](mlp(z, w, "", cfg.act, ctx))), {}


def eca(cfg: ECAConfig, w: Weights, stats: Weights, x: Array, ctx: Ctx, training: Any, axis_name: Any) -> Any:
    u = channel_conv(SPACE_POOLS["avg"](x, ctx), w["conv.kernel"], cfg.padding, ctx)
    if "conv.bias" in w:
        u = u + ctx.weight(w["conv.bias"])
    return x * ctx.expand(GATES[cfg.gate](u)), {}


def _channel_gate(cfg: CBAMConfig, ctx: Ctx, w: Weights, pooled: Array) -> Array:
    """(P, N, C) descriptors -> the channel gate (N, C): one MLP shared by all pools."""
    return GATES[cfg.gate](mlp(pooled, w, "channel.", cfg.act, ctx))


def _spatial_gate(
    cfg: CBAMConfig, ctx: Ctx, training: Any, axis_name: Any, w: Weights, stats: Weights, d: Array
) -> tuple[Array, dict[str, Array]]:
    """Spatial descriptors (one channel per pool) -> (the spatial gate, updated BN statistics)."""
    s = spatial_conv(d, w["spatial.conv.kernel"], ctx)
    if "spatial.conv.bias" in w:
        s = s + ctx.weight(w["spatial.conv.bias"])
    new_stats: dict[str, Array] = {}
    if cfg.spatial_norm:
        s, new_stats = batch_norm(s, w, stats, "spatial.bn", cfg, ctx, training=training, axis_name=axis_name)
    return GATES[cfg.gate](s), new_stats


def _jvp(f: Callable[..., Any], primals: tuple[Any, ...], tangents: tuple[Any, ...] | None, **kw: Any) -> Any:
    """``jax.jvp(f, primals, tangents, **kw)``, or ``f``'s value with a ``None`` tangent when ``tangents`` is None."""
    if tangents is not None:
        return jax.jvp(f, primals, tangents, **kw)
    out = f(*primals)
    return (out[0], None, out[1]) if kw.get("has_aux") else (out, None)


def _scaled(v: Array, t: Array, ctx: Ctx) -> Array:
    """``v * t`` for an input-sized ``v`` and a broadcastable tangent ``t`` in the accumulation dtype.

    The product is formed in the accumulation dtype, so the reduction its transpose becomes
    (the gate's gradient) accumulates there too.
    """
    return (v.astype(ctx.acc) * t).astype(ctx.dtype)


def _cbam_pass(
    cfg: CBAMConfig,
    ctx: Ctx,
    training: Any,
    axis_name: Any,
    x: Array,
    w: Weights,
    stats: Weights,
    tangents: tuple[Array | None, Weights, Weights] | None = None,
) -> tuple[tuple[Array, dict[str, Array]], Array | None]:
    """((y, updated statistics), y's tangent). The tangent is computed when ``tangents`` is
    ``(tangent of x or None for zero, tangents of w, tangents of stats)``, else it is None.

    The tangent is linear in the given tangents and the input-sized passes are written out
    (:data:`POOL_JVPS`); the small gates take theirs from ``jax.jvp``. Reverse mode transposes
    it into one fused pass per input-sized gradient. Left to autodiff, XLA's CPU backend kept
    the max pools' tie masks and broadcast cotangents as input-sized temporaries.
    """
    tx, tw, tstats = (None, None, None) if tangents is None else tangents
    pooled = [SPACE_POOLS[t](x, ctx) for t in cfg.pool_types]  # P x (N, C)
    tpooled = None
    if tx is not None:
        pairs = zip(cfg.pool_types, pooled, strict=True)
        tpooled = jnp.stack([POOL_JVPS[t](x, ctx.expand(z), tx, ctx.space, ctx.acc, False) for t, z in pairs])
    elif tangents is not None:
        tpooled = jnp.zeros((len(pooled), *pooled[0].shape), ctx.acc)
    gate = lambda z, w: _channel_gate(cfg, ctx, w, z)  # noqa: E731
    g, tg = _jvp(gate, (jnp.stack(pooled), w), None if tangents is None else (tpooled, tw))
    gx = ctx.expand(g)
    x1 = x * gx
    tx1 = None
    if tangents is not None:
        tx1 = _scaled(x, jnp.expand_dims(tg, ctx.space), ctx)
        tx1 = tx1 if tx is None else tx * gx + tx1
    if not cfg.spatial:
        return (x1, {}), tx1
    parts = [CHANNEL_POOLS[q](x1, ctx) for q in cfg.spatial_pool_order]  # one channel each
    d = jnp.concatenate(parts, axis=ctx.channel)
    td = None
    if tx1 is not None:
        pairs = zip(cfg.spatial_pool_order, parts, strict=True)
        jvps = [POOL_JVPS[q](x1, v.astype(ctx.dtype), tx1, (ctx.channel,), ctx.acc, True) for q, v in pairs]
        td = jnp.concatenate(jvps, axis=ctx.channel)
    spatial = lambda d, w, stats: _spatial_gate(cfg, ctx, training, axis_name, w, stats, d)  # noqa: E731
    s, ts, new_stats = _jvp(spatial, (d, w, stats), None if tangents is None else (td, tw, tstats), has_aux=True)
    sx = s.astype(ctx.dtype)
    y = x1 * sx
    return (y, new_stats), None if tx1 is None else tx1 * sx + _scaled(x1, ts, ctx)


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 1, 2, 3))
def _cbam(
    cfg: CBAMConfig, ctx: Ctx, static: bool | None, axis_name: Any, flag: Any, x: Array, w: Weights, stats: Weights
) -> tuple[Array, dict[str, Array]]:
    """The mode is ``static`` (a Python bool), or the operand ``flag`` (a traced bool) when ``static`` is None."""
    return _cbam_pass(cfg, ctx, flag if static is None else static, axis_name, x, w, stats)[0]


def _instantiate(t: Any, primal: Array) -> Array:
    return jnp.zeros(primal.shape, primal.dtype) if isinstance(t, SymbolicZero) else t


@functools.partial(_cbam.defjvp, symbolic_zeros=True)
def _cbam_jvp(cfg: CBAMConfig, ctx: Ctx, static: bool | None, axis_name: Any, primals: Any, tangents: Any) -> Any:
    """CBAM's JVP (``jax.jvp``, ``jax.jacfwd``), which reverse mode (``jax.grad``) linearises and
    transposes, and which is itself differentiable (``jax.hessian``, any order of modes).

    Zero tangents arrive symbolic: a zero input tangent (e.g. gradients of the weights only)
    skips the input-sized terms; the small ones are made concrete. The updated running
    statistics have tangent zero (``stop_gradient``, as without the custom rule); the running
    statistics read in eval mode get their derivative like any input. The mode flag has none.
    """
    flag, x, w, stats = primals
    _, tx, tw, tstats = tangents
    tx = None if isinstance(tx, SymbolicZero) else tx
    tw = {k: _instantiate(t, w[k]) for k, t in tw.items()}
    tstats = {k: _instantiate(t, stats[k]) for k, t in tstats.items()}
    training = flag if static is None else static
    (y, new_stats), ty = _cbam_pass(cfg, ctx, training, axis_name, x, w, stats, (tx, tw, tstats))
    return (y, new_stats), (ty, {k: jnp.zeros_like(v) for k, v in new_stats.items()})


def cbam(cfg: CBAMConfig, w: Weights, stats: Weights, x: Array, ctx: Ctx, training: Any, axis_name: Any) -> Any:
    """Channel attention, then spatial attention; the input-sized passes have a hand-written JVP (:func:`_cbam_jvp`).

    A traced ``training`` is an operand of the custom JVP (a Python bool stays static).
    """
    static, flag = (training, ()) if isinstance(training, bool) else (None, training)
    return _cbam(cfg, ctx, static, axis_name, flag, x, dict(w), dict(stats))


_MODULES: dict[str, Callable[..., tuple[Array, dict[str, Array]]]] = {"se": se, "cbam": cbam, "eca": eca}


def apply(
    cfg: Config,
    weights: Weights,
    stats: Weights,
    x: Any,
    *,
    training: Any,
    data_format: str,
    dtype: Any = None,
    axis_name: str | None = None,
) -> tuple[Array, dict[str, Array]]:
    """Run the module ``cfg`` describes. Returns (y, updated running statistics or {}).

    The input is checked by the spec (rank, channels, dtype, batch norm's n > 1 in train mode).
    ``training`` is a bool, or a 0-d bool array (traced under ``jax.jit``: batch norm then
    returns its running statistics in either mode, unchanged in eval mode); anything else is a
    ``TypeError``.
    """
    x = jnp.asarray(x)
    training = training_mode(training)
    # a traced mode is checked as training (batch norm needs N * H * W > 1): it may train
    cfg.validate_input(x.shape, x.dtype, data_format=data_format, training=training is not False)
    ctx = make_ctx(data_format, x.dtype if dtype is None else dtype)
    y, new_stats = _MODULES[cfg.module](cfg, weights, stats, x.astype(ctx.dtype), ctx, training, axis_name)
    return y.astype(x.dtype), new_stats
