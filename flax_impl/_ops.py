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
import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_derivatives import SymbolicZero

from reference_numpy import CBAMConfig, Config, ECAConfig, SEConfig

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


ACTS: dict[str, Callable[[Array], Array]] = {
    "relu": jax.nn.relu,  # gradient 0 at 0
    "relu6": jax.nn.relu6,
    "silu": lambda x: x * sigmoid(x),
    "gelu": functools.partial(jax.nn.gelu, approximate=False),
    "hard_swish": jax.nn.hard_swish,  # x * relu6(x + 3) / 6
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
    s = jnp.sum(x * x, axis=axis)
    nonzero = s > 0  # sqrt has no gradient at 0: an all-zero window gives value and gradient 0
    return jnp.where(nonzero, jnp.sqrt(jnp.where(nonzero, s, 1)), 0)


# pools over H, W: (x, ctx) -> (N, C) in the accumulation dtype
SPACE_POOLS: dict[str, Callable[[Array, Ctx], Array]] = {
    "avg": lambda x, c: jnp.mean(x, axis=c.space, dtype=c.acc),
    "max": lambda x, c: jnp.max(x, axis=c.space).astype(c.acc),
    "lse": lambda x, c: jax.nn.logsumexp(x.astype(c.acc), axis=c.space),
    "lp": lambda x, c: _lp(x.astype(c.acc), c.space),
}
# pools over C (CBAM's spatial descriptors): (x, ctx) -> one channel, kept, accumulation dtype
CHANNEL_POOLS: dict[str, Callable[[Array, Ctx], Array]] = {
    "mean": lambda x, c: jnp.mean(x, axis=c.channel, keepdims=True, dtype=c.acc),
    "max": lambda x, c: jnp.max(x, axis=c.channel, keepdims=True).astype(c.acc),
}


def _max_jvp(x: Array, y: Array, t: Array, axis: Any, acc: Any, keepdims: bool) -> Array:
    """Tangent of a max pool: ``t`` averaged over the entries of ``x`` that equal their window's max ``y``.

    The ties are marked arithmetically, ``sign(x - y) + 1`` (1 at a tie, 0 below), and the
    ``+ 1`` is applied to the small count rather than to an input-sized term: XLA's CPU backend
    materialises a boolean mask, or a scalar broadcast to the input's size, as a tensor of its
    own instead of fusing it into the pass. The tangent is written as two sums so that its
    transpose (reverse mode) is ``share - share * below``, one fused input-sized pass.
    ``min(x, y)`` stands for ``x`` (equal, as ``x <= y``) so that XLA cannot contract a product
    that computes ``x`` with the subtraction into one exact multiply-add, which would no longer
    vanish at the ties; the count and the weights are written unlike each other so that XLA
    does not merge them into one input-sized tensor. The division by the count happens at the
    kept shape: at the reduced shape XLA fuses it, and with it the (late) cotangent, into the
    count's reduction, which then keeps its two input-sized operands alive through the whole
    backward pass. NaN where ``y`` is NaN (so is the pooled value) and at an infinite maximum.
    """
    n = math.prod(x.shape[a] for a in axis)
    count = jnp.sum(jnp.sign(jnp.minimum(x, y) - y), axis=axis, keepdims=True, dtype=acc) + n
    below = jnp.sign(y - jnp.minimum(y, x))  # 1 below the max, 0 at it
    total = jnp.sum(t, axis=axis, keepdims=True, dtype=acc)
    out = (total - jnp.sum(t * below, axis=axis, keepdims=True, dtype=acc)) / count
    return out if keepdims else jnp.squeeze(out, axis)


def _lp_jvp(x: Array, y: Array, t: Array, axis: Any, acc: Any, keepdims: bool) -> Array:
    value = y if keepdims else jnp.squeeze(y, axis)
    zero = value == 0  # an all-zero window: tangent 0 (SPEC.md section 2)
    return jnp.where(zero, 0, jnp.sum(x * t, axis=axis, keepdims=keepdims, dtype=acc) / jnp.where(zero, 1, value))


# tangents of the pools: (x, pooled value kept broadcastable in x's dtype, tangent of x, axis,
# accumulation dtype, keepdims) -> tangent of the pooled value in the accumulation dtype. Each is
# linear in the tangent, with the input-sized factors computed from x and y only, so that its
# transpose is the pool's gradient as one pass (max splits among tied maxima, lp is 0 at an
# all-zero window: SPEC.md section 2).
POOL_JVPS: dict[str, Callable[[Array, Array, Array, Any, Any, bool], Array]] = {
    "avg": lambda x, y, t, axis, acc, kd: jnp.mean(t, axis=axis, keepdims=kd, dtype=acc),
    "max": _max_jvp,
    "lse": lambda x, y, t, axis, acc, kd: jnp.sum(t * jnp.exp(x - y), axis=axis, keepdims=kd, dtype=acc),
    "lp": _lp_jvp,
}
POOL_JVPS["mean"] = POOL_JVPS["avg"]

# ----------------------------------------------------------------------------- layers


def dense(v: Array, w: Weights, prefix: str, ctx: Ctx) -> Array:
    """``v @ kernel + bias`` (kernel ``(in, out)``; the bias is optional)."""
    out = jnp.matmul(v, ctx.weight(w[f"{prefix}.kernel"]), precision=_HIGHEST)
    bias = w.get(f"{prefix}.bias")
    return out if bias is None else out + ctx.weight(bias)


def mlp(z: Array, w: Weights, prefix: str, act: str, ctx: Ctx) -> Array:
    """``fc2(act(fc1(z)))`` on a stack of descriptors (P, N, C), summed over the stack."""
    return dense(ACTS[act](dense(z, w, f"{prefix}fc1", ctx)), w, f"{prefix}fc2", ctx).sum(axis=0)


def channel_conv(z: Array, kernel: Array, padding: str, ctx: Ctx) -> Array:
    """ECA's correlation over channels: (N, C) with a ``(k, 1, 1)`` kernel, 'same' size."""
    pad = kernel.shape[0] // 2
    z = z[:, :, None]  # channels as the length of a one-feature signal
    if padding == "circular":
        z, pads = jnp.pad(z, ((0, 0), (pad, pad), (0, 0)), mode="wrap"), [(0, 0)]
    else:
        pads = [(pad, pad)]
    out = lax.conv_general_dilated(
        z, ctx.weight(kernel), (1,), pads, dimension_numbers=("NWC", "WIO", "NWC"), precision=_HIGHEST
    )
    return out[:, :, 0]


def spatial_conv(d: Array, kernel: Array, ctx: Ctx) -> Array:
    """Stride-1 'same' cross-correlation with zero padding, HWIO kernel, in the input's layout."""
    pad = kernel.shape[0] // 2
    return lax.conv_general_dilated(
        d, ctx.weight(kernel), (1, 1), [(pad, pad), (pad, pad)], dimension_numbers=ctx.conv, precision=_HIGHEST
    )


def batch_norm(
    z: Array,
    w: Weights,
    stats: Weights,
    prefix: str,
    cfg: CBAMConfig,
    ctx: Ctx,
    *,
    training: bool,
    axis_name: str | None,
) -> tuple[Array, dict[str, Array]]:
    """One-channel batch norm (SPEC.md section 2). Returns (output, updated running statistics).

    Train mode normalises with the batch mean and biased variance (two passes, so no
    cancellation), averaged over ``axis_name`` when given; the running variance is updated
    with the unbiased one, ``n`` counting every value on every device along ``axis_name``.
    """
    running_mean, running_var = stats[f"{prefix}.mean"], stats[f"{prefix}.var"]
    new_stats: dict[str, Array] = {}
    if training:
        n = z.size
        mean = jnp.mean(z)
        if axis_name is not None:
            mean, n = lax.pmean(mean, axis_name), n * lax.axis_size(axis_name)
        var = jnp.mean(jnp.square(z - mean))
        if axis_name is not None:
            var = lax.pmean(var, axis_name)
        m = cfg.bn_momentum
        updated = {
            "mean": (1 - m) * running_mean.astype(ctx.acc) + m * mean,
            "var": (1 - m) * running_var.astype(ctx.acc) + m * var * (n / (n - 1)),
        }
        new_stats = {
            f"{prefix}.{k}": lax.stop_gradient(v).astype(stats[f"{prefix}.{k}"].dtype) for k, v in updated.items()
        }
    else:
        mean, var = running_mean.astype(ctx.acc), running_var.astype(ctx.acc)
    inv_std = lax.rsqrt(var + cfg.bn_eps)
    return (z - mean) * (inv_std * ctx.weight(w[f"{prefix}.scale"])) + ctx.weight(w[f"{prefix}.bias"]), new_stats


# ----------------------------------------------------------------------------- modules
# (cfg, weights, stats, x in the computation dtype, ctx, training, axis_name) -> (y, new stats)


def se(cfg: SEConfig, w: Weights, stats: Weights, x: Array, ctx: Ctx, training: bool, axis_name: Any) -> Any:
    z = SPACE_POOLS["avg"](x, ctx)[None]  # (1, N, C)
    return x * ctx.expand(GATES[cfg.gate](mlp(z, w, "", cfg.act, ctx))), {}


def eca(cfg: ECAConfig, w: Weights, stats: Weights, x: Array, ctx: Ctx, training: bool, axis_name: Any) -> Any:
    u = channel_conv(SPACE_POOLS["avg"](x, ctx), w["conv.kernel"], cfg.padding, ctx)
    if "conv.bias" in w:
        u = u + ctx.weight(w["conv.bias"])
    return x * ctx.expand(GATES[cfg.gate](u)), {}


def _channel_gate(cfg: CBAMConfig, ctx: Ctx, w: Weights, pooled: Array) -> Array:
    """(P, N, C) descriptors -> the channel gate (N, C): one MLP shared by all pools."""
    return GATES[cfg.gate](mlp(pooled, w, "channel.", cfg.act, ctx))


def _spatial_gate(
    cfg: CBAMConfig, ctx: Ctx, training: bool, axis_name: Any, w: Weights, stats: Weights, d: Array
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
    training: bool,
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
    cfg: CBAMConfig, ctx: Ctx, training: bool, axis_name: Any, x: Array, w: Weights, stats: Weights
) -> tuple[Array, dict[str, Array]]:
    return _cbam_pass(cfg, ctx, training, axis_name, x, w, stats)[0]


def _instantiate(t: Any, primal: Array) -> Array:
    return jnp.zeros(primal.shape, primal.dtype) if isinstance(t, SymbolicZero) else t


@functools.partial(_cbam.defjvp, symbolic_zeros=True)
def _cbam_jvp(cfg: CBAMConfig, ctx: Ctx, training: bool, axis_name: Any, primals: Any, tangents: Any) -> Any:
    """CBAM's JVP (``jax.jvp``, ``jax.jacfwd``), which reverse mode (``jax.grad``) linearises and
    transposes, and which is itself differentiable (``jax.hessian``, any order of modes).

    Zero tangents arrive symbolic: a zero input tangent (e.g. gradients of the weights only)
    skips the input-sized terms; the small ones are made concrete. The updated running
    statistics have tangent zero (``stop_gradient``, as without the custom rule); the running
    statistics read in eval mode get their derivative like any input.
    """
    x, w, stats = primals
    tx, tw, tstats = tangents
    tx = None if isinstance(tx, SymbolicZero) else tx
    tw = {k: _instantiate(t, w[k]) for k, t in tw.items()}
    tstats = {k: _instantiate(t, stats[k]) for k, t in tstats.items()}
    (y, new_stats), ty = _cbam_pass(cfg, ctx, training, axis_name, x, w, stats, (tx, tw, tstats))
    return (y, new_stats), (ty, {k: jnp.zeros_like(v) for k, v in new_stats.items()})


def cbam(cfg: CBAMConfig, w: Weights, stats: Weights, x: Array, ctx: Ctx, training: bool, axis_name: Any) -> Any:
    """Channel attention, then spatial attention; the input-sized passes have a hand-written JVP (:func:`_cbam_jvp`)."""
    return _cbam(cfg, ctx, training, axis_name, x, dict(w), dict(stats))


_MODULES: dict[str, Callable[..., tuple[Array, dict[str, Array]]]] = {"se": se, "cbam": cbam, "eca": eca}


def apply(
    cfg: Config,
    weights: Weights,
    stats: Weights,
    x: Any,
    *,
    training: bool,
    data_format: str,
    dtype: Any = None,
    axis_name: str | None = None,
) -> tuple[Array, dict[str, Array]]:
    """Run the module ``cfg`` describes. Returns (y, updated running statistics or {}).

    The input is checked by the spec (rank, channels, dtype, batch norm's n > 1 in train mode).
    """
    x = jnp.asarray(x)
    cfg.validate_input(x.shape, x.dtype, data_format=data_format, training=training)
    ctx = make_ctx(data_format, x.dtype if dtype is None else dtype)
    y, new_stats = _MODULES[cfg.module](cfg, weights, stats, x.astype(ctx.dtype), ctx, training, axis_name)
    return y.astype(x.dtype), new_stats
