"""The shared pieces of SPEC.md section 2 in ``keras.ops``, so that they run on every Keras backend.

Reductions take an accumulation dtype (float32 for half inputs, SPEC.md section 1). Outputs and
gradients follow SPEC.md section 1's non-finite rule on every backend: products follow IEEE,
and the derivative of a piecewise function (relu, relu6, the hard gates, max pools) *selects*,
``where(cond, g * slope, 0)``, whatever ``g`` holds. The backends' own derivatives of these
multiply by a 0/1 mask or an indicator instead (``Inf * 0`` is NaN), so they have custom
gradients here that mirror ``reference_numpy.ops.ACT_VJPS``, ``GATE_VJPS`` and ``_max_grad``.
Convolutions pad their input explicitly (a padded zero is a value: TensorFlow's ``"SAME"``
skips padded taps), and a kernel holding NaN or Inf takes a gather path whose input gradient
has no terms for outputs that do not exist (XLA's transpose of a convolution adds ``0 * w``).

On TensorFlow, XLA's CPU code for a reduction over H, W whose input is a fused elementwise
product (``sum(dy * x)``, the gradient of every gate) runs 5-7x slower than an elementwise
pass, while a matrix product with a ones vector reads the same product at memory speed. So
there, sums over space or channels are matrix products, and the gates and sums have custom
gradients that keep it that way. Other backends use the plain reductions.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import keras
import numpy as np
from keras import ops

from reference_numpy.ops import pad_index

HALF_DTYPES = ("float16", "bfloat16")

_TF = keras.backend.backend() == "tensorflow"
# keras.ops.matmul on the PyTorch backend resolves the result dtype of two float64 tensors to
# float32 (it hands torch dtypes to keras's type promotion), and PyTorch's float64 CPU
# convolution cannot compute its weight gradient from the permuted kernel keras.ops.conv passes
# ("slow_conv2d: grad_weight must be contiguous"): there, the dense layers are an einsum and the
# spatial convolution calls PyTorch with a contiguous kernel. (Its keras.ops.mean computes float64
# in float32 too: means here are sums divided by a count, on every backend.)
_TORCH = keras.backend.backend() == "torch"
# TensorFlow's XLA lowering of reduce_max drops NaN (eager TF, JAX and PyTorch keep it), and
# reductions of fused products are slow on its CPU backend (see the module docstring).
_MAX_DROPS_NAN = _MATMUL_SUMS = _TF


def accumulation_dtype(compute_dtype: str) -> str:
    """The dtype reductions and the small gate paths run in: float32 for half types, else the compute dtype."""
    return "float32" if compute_dtype in HALF_DTYPES else compute_dtype


class Layout(NamedTuple):
    """Where the channels of a 4-D tensor are; ``over`` is ``"space"`` (H, W) or ``"channels"`` (C)."""

    channels_last: bool

    def axes(self, over: str) -> tuple[int, ...]:
        if over == "space":
            return (1, 2) if self.channels_last else (2, 3)
        return (3,) if self.channels_last else (1,)

    def expand(self, r: Any, over: str) -> Any:
        """A reduction's result ((N, C) over space, (N, H, W) over channels) with its axes back as size 1."""
        for axis in self.axes(over):
            r = ops.expand_dims(r, axis)
        return r

    def size(self, t: Any, over: str) -> Any:
        """How many values each window of ``over`` holds."""
        return math.prod(ops.shape(t)[a] for a in self.axes(over))

    def matmul_sum(self, t: Any, over: str) -> Any:
        """``sum(t, over)`` as a product with a ones vector (t already in the accumulation dtype)."""
        shape = ops.shape(t)
        if self.channels_last:
            n, h, w, c = shape
            if over == "space":
                # ones of shape (N, 1, HW), not a broadcast (1, HW): XLA turns a broadcasting dot into a slow loop
                return ops.matmul(ops.ones((n, 1, h * w), t.dtype), ops.reshape(t, (n, h * w, c)))[:, 0, :]
            return ops.reshape(ops.matmul(ops.reshape(t, (-1, c)), ops.ones((c, 1), t.dtype)), (n, h, w))
        n, c, h, w = shape
        if over == "space":
            return ops.reshape(ops.matmul(ops.reshape(t, (-1, h * w)), ops.ones((h * w, 1), t.dtype)), (n, c))
        return ops.reshape(ops.matmul(ops.ones((1, c), t.dtype), ops.reshape(t, (n, c, h * w))), (n, h, w))


def _upstream(args: tuple[Any, ...], upstream: Any) -> Any:
    # keras.ops.custom_gradient passes the cotangent positionally on TF/JAX, by keyword on PyTorch.
    return args[0] if upstream is None else upstream


def _select(cond: Any, value: Any) -> Any:
    """``where(cond, value, 0)``: the unselected 0 is exact whatever ``value`` holds (SPEC.md section 1)."""
    return ops.where(cond, value, ops.zeros_like(value))


def _sum(t: Any, over: str, layout: Layout) -> Any:
    """``sum(t)`` over space or channels, for use inside a gradient (a matrix product where that is faster)."""
    return layout.matmul_sum(t, over) if _MATMUL_SUMS else ops.sum(t, axis=layout.axes(over))


def reduce_sum(t: Any, over: str, layout: Layout) -> Any:
    """``sum(t)`` over space -> (N, C) or over channels -> (N, H, W), in t's dtype."""
    if not _MATMUL_SUMS:
        return ops.sum(t, axis=layout.axes(over))

    @ops.custom_gradient
    def f(t: Any) -> tuple[Any, Callable[..., Any]]:
        def grad(*args: Any, upstream: Any = None) -> Any:
            return ops.broadcast_to(layout.expand(_upstream(args, upstream), over), ops.shape(t))

        return layout.matmul_sum(t, over), grad

    return f(t)


def reduce_max(t: Any, over: str, layout: Layout) -> Any:
    """``max(t)`` over space or channels, in t's dtype; its gradient selects (SPEC.md section 1).

    The gradient is ``where(t == max, g / count, 0)``: ties share it evenly, and a window whose
    max is NaN sends 0 to every entry. NaN is restored where the backend's max drops it (XLA):
    a finite max where the spec's is NaN would turn a relu unit or a hard gate's slope back on.
    """

    @ops.custom_gradient
    def f(t: Any) -> tuple[Any, Callable[..., Any]]:
        acc = accumulation_dtype(keras.backend.standardize_dtype(t.dtype))
        m = ops.max(t, axis=layout.axes(over))
        if _MAX_DROPS_NAN:  # NaNs counted by _sum: XLA's any() over x is as slow as 1.5 passes
            m = ops.where(_sum(ops.cast(ops.isnan(t), acc), over, layout) > 0, ops.cast(np.nan, m.dtype), m)

        def grad(*args: Any, upstream: Any = None) -> Any:
            hit = ops.equal(t, layout.expand(m, over))
            share = ops.cast(_upstream(args, upstream), acc) / _sum(ops.cast(hit, acc), over, layout)
            return ops.cast(_select(hit, ops.broadcast_to(layout.expand(share, over), ops.shape(t))), t.dtype)

        return m, grad

    return f(t)


def gate(x: Any, g: Any, over: str, layout: Layout) -> Any:
    """``x * g`` with ``g`` one value per window of ``over`` ((N, C) per channel, (N, H, W) per position).

    The product is in x's dtype; g's gradient (a sum over the windows) is in g's dtype.
    """
    if not _MATMUL_SUMS:
        return x * ops.cast(layout.expand(g, over), x.dtype)

    @ops.custom_gradient
    def f(x: Any, g: Any) -> tuple[Any, Callable[..., Any]]:
        gb = ops.cast(layout.expand(g, over), x.dtype)

        def grad(*args: Any, upstream: Any = None) -> tuple[Any, Any]:
            dy = _upstream(args, upstream)
            return dy * gb, layout.matmul_sum(ops.cast(dy, g.dtype) * ops.cast(x, g.dtype), over)

        return x * gb, grad

    return f(x, g)


# ----------------------------------------------------------------------------- activations and gates


def _piecewise(value: Callable[[Any], Any], vjp: Callable[[Any, Any], Any]) -> Callable[[Any], Any]:
    """``value`` with the gradient ``vjp(x, g)``, a selection (``reference_numpy.ops.ACT_VJPS``)."""

    @ops.custom_gradient
    def f(x: Any) -> tuple[Any, Callable[..., Any]]:
        def grad(*args: Any, upstream: Any = None) -> Any:
            return vjp(x, _upstream(args, upstream))

        return value(x), grad

    return f


def _relu(x: Any) -> Any:
    # A select, not ops.relu: XLA's CPU code drops NaN in a max or clamp fused into a dot.
    return ops.where(x <= 0.0, ops.zeros_like(x), x)  # NaN stays NaN


def _relu6(x: Any) -> Any:
    return ops.where(x >= 6.0, ops.full_like(x, 6.0), _relu(x))


def _hard_sigmoid(x: Any) -> Any:
    return _relu6(x + 3.0) / 6.0


def _gelu(x: Any) -> Any:
    # The erf form written out: TensorFlow's own exact gelu is off by ~1e-7 relative in float64.
    return 0.5 * x * (1.0 + ops.erf(x * (1.0 / math.sqrt(2.0))))


def _hard_swish_vjp(x: Any, g: Any) -> Any:
    return ops.where(x > 3.0, g, _select((x >= -3.0) & (x <= 3.0), g * (x / 3.0 + 0.5)))


ACTS: dict[str, Callable[[Any], Any]] = {
    "relu": _piecewise(_relu, lambda x, g: _select(x > 0.0, g)),
    "relu6": _piecewise(_relu6, lambda x, g: _select((x > 0.0) & (x < 6.0), g)),
    "silu": ops.silu,
    "gelu": _gelu,
    "hard_swish": _piecewise(lambda x: x * _hard_sigmoid(x), _hard_swish_vjp),
}
GATES: dict[str, Callable[[Any], Any]] = {
    "sigmoid": ops.sigmoid,
    "hard_sigmoid": _piecewise(_hard_sigmoid, lambda x, g: _select((x > -3.0) & (x < 3.0), g / 6.0)),
}

# ----------------------------------------------------------------------------- pools
# pool(x, over, layout, acc) -> the pooled axes removed, in dtype ``acc``.


def _mean(x: Any, over: str, layout: Layout, acc: str) -> Any:
    return reduce_sum(ops.cast(x, acc), over, layout) / ops.cast(layout.size(x, over), acc)


def _max(x: Any, over: str, layout: Layout, acc: str) -> Any:
    return ops.cast(reduce_max(x, over, layout), acc)


def _lse(x: Any, over: str, layout: Layout, acc: str) -> Any:
    """``m + log(sum(exp(x - m)))`` shifted by a finite max only; gradient ``g * exp(x - y)`` (SPEC.md 1)."""

    @ops.custom_gradient
    def f(x: Any) -> tuple[Any, Callable[..., Any]]:
        m = ops.max(x, axis=layout.axes(over))
        m = ops.where(ops.isfinite(m), m, ops.zeros_like(m))  # a +Inf window pools to +Inf, an all -Inf one to -Inf
        y = m + ops.log(_sum(ops.exp(x - layout.expand(m, over)), over, layout))

        def grad(*args: Any, upstream: Any = None) -> Any:
            return layout.expand(_upstream(args, upstream), over) * ops.exp(x - layout.expand(y, over))

        return y, grad

    return f(ops.cast(x, acc))


def _lp(x: Any, over: str, layout: Layout, acc: str) -> Any:
    """``sqrt(sum(x**2))``; gradient ``where(y == 0, 0, g * x / y)``: an all-zero window's is 0 (SPEC.md 1)."""

    @ops.custom_gradient
    def f(x: Any) -> tuple[Any, Callable[..., Any]]:
        y = ops.sqrt(_sum(ops.square(x), over, layout))

        def grad(*args: Any, upstream: Any = None) -> Any:
            y_ = layout.expand(y, over)
            dx = layout.expand(_upstream(args, upstream), over) * x / y_
            return ops.where(y_ == 0, ops.zeros_like(dx), dx)

        return y, grad

    return f(ops.cast(x, acc))


POOLS: dict[str, Callable[[Any, str, Layout, str, bool], Any]] = {
    "avg": _mean,
    "mean": _mean,
    "max": _max,
    "lse": _lse,
    "lp": _lp,
}

# ----------------------------------------------------------------------------- layers' math


def dense(z: Any, kernel: Any, bias: Any | None) -> Any:
    """``z @ kernel (+ bias)`` with a Keras-layout kernel ``(in, out)``, in z's dtype on every backend."""
    out = ops.einsum("...i,io->...o", z, kernel) if _TORCH else ops.matmul(z, kernel)
    return out if bias is None else out + bias


def _conv2d_valid(z: Any, kernel: Any) -> Any:
    """The "valid" 2-D correlation of a channels-last ``z`` with a Keras kernel (kh, kw, I, O)."""
    if not _TORCH:
        return ops.conv(z, kernel, padding="valid", data_format="channels_last")
    import torch

    w = torch.permute(kernel, (3, 2, 0, 1)).contiguous()  # (O, I, kh, kw), contiguous: see _TORCH above
    return torch.permute(torch.nn.functional.conv2d(torch.permute(z, (0, 3, 1, 2)), w), (0, 2, 3, 1))


def _conv2d_gather(z: Any, kernel: Any) -> Any:
    """The "valid" correlation as a gather of every window and a matrix product.

    Its input gradient scatters the products of existing outputs only, so a NaN or Inf tap
    reaches only the inputs it multiplied (SPEC.md section 1); the convolutions' own transposes
    pad the cotangent with zeros, and ``0 * Inf`` is NaN.
    """
    kh, kw, i, o = kernel.shape
    n, hp, wp, _ = ops.shape(z)
    h, w = hp - kh + 1, wp - kw + 1
    rows = ops.arange(h)[:, None, None, None] + ops.arange(kh)[None, None, :, None]  # (H, 1, kh, 1)
    cols = ops.arange(w)[None, :, None, None] + ops.arange(kw)[None, None, None, :]  # (1, W, 1, kw)
    windows = ops.take(ops.reshape(z, (n, hp * wp, i)), ops.reshape(rows * wp + cols, (-1,)), axis=1)
    return dense(ops.reshape(windows, (n, h, w, kh * kw * i)), ops.reshape(kernel, (kh * kw * i, o)), None)


def conv2d_same(z: Any, kernel: Any) -> Any:
    """The "same" 2-D correlation of a channels-last ``z`` (N, H, W, I) with a Keras kernel (kh, kw, I, O).

    The zero padding is explicit, so a padded zero is a value (``Inf * 0`` is NaN, SPEC.md
    section 1); a kernel holding NaN or Inf takes the gather path (:func:`_conv2d_gather`).
    """
    kh, kw = kernel.shape[:2]
    padded = ops.pad(z, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
    return ops.cond(
        ops.all(ops.isfinite(kernel)),
        lambda: _conv2d_valid(padded, kernel),
        lambda: _conv2d_gather(padded, kernel),
    )


def mlp(z: Any, p: dict[str, Any], prefix: str, act: str) -> Any:
    """``fc2(act(fc1(z)))`` with the weights ``{prefix}fc{1,2}.{kernel,bias}`` of ``p``."""
    h = ACTS[act](dense(z, p[f"{prefix}fc1.kernel"], p.get(f"{prefix}fc1.bias")))
    return dense(h, p[f"{prefix}fc2.kernel"], p.get(f"{prefix}fc2.bias"))


def channel_conv1d(z: Any, kernel: Any, padding: str) -> Any:
    """ECA's correlation over the channels of ``z`` (N, C) with a Keras Conv1D kernel ``(k, 1, 1)``.

    Each output gathers its k taps (a padded tap is a true zero, never a channel times 0), so
    the input gradient holds the products of existing outputs only (SPEC.md section 1).
    """
    channels, k = z.shape[-1], kernel.shape[0]
    idx, valid = pad_index(channels, k // 2, padding)  # the spec's padding, zeros or circular
    taps = np.arange(channels)[:, None] + np.arange(k)  # (C, k) positions in the padded axis
    windows = ops.take(z, idx[taps], axis=1)  # (N, C, k)
    if not valid.all():
        windows = _select(valid[taps], windows)
    return dense(windows, ops.reshape(kernel, (k, 1)), None)[..., 0]


def batch_norm(
    z: Any, p: dict[str, Any], prefix: str, *, eps: float, momentum: float, training: bool
) -> tuple[Any, dict[str, Any]]:
    """BN of SPEC.md section 2 over all of ``z`` (one channel). Returns (out, new moving stats or {}).

    Train mode normalises with the batch mean and biased variance; the moving statistics
    follow PyTorch's convention, the variance fed to them being the unbiased one.
    """
    new: dict[str, Any] = {}
    if training:
        n = ops.cast(ops.size(z), z.dtype)
        mean = ops.sum(z) / n  # not ops.mean: on the PyTorch backend it computes float64 in float32
        var = ops.sum(ops.square(z - mean)) / n
        new = {
            f"{prefix}moving_mean": (1 - momentum) * p[f"{prefix}moving_mean"] + momentum * mean,
            f"{prefix}moving_variance": (1 - momentum) * p[f"{prefix}moving_variance"] + momentum * var * n / (n - 1),
        }
    else:
        mean, var = p[f"{prefix}moving_mean"], p[f"{prefix}moving_variance"]
    out = (z - mean) * ops.rsqrt(var + eps) * p[f"{prefix}gamma"] + p[f"{prefix}beta"]
    return out, new
