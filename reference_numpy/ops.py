"""The shared pieces of SPEC.md section 2, each as a forward and its hand-written backward.

Everything is float64, vectorised NumPy. A backward takes the forward's inputs (or its
outputs, where that is cheaper) and the cotangent, and returns the input's cotangent.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

Array = np.ndarray

# ----------------------------------------------------------------------------- activations
# Each entry: (f, df) with df the derivative with respect to the pre-activation. A backward
# does not multiply by df: it calls ACT_VJPS / GATE_VJPS, which apply SPEC.md section 1's
# non-finite rule (a piecewise derivative selects; a smooth one multiplies).

_erf = np.frompyfunc(math.erf, 1, 1)  # exact erf, elementwise in C (NumPy has no erf ufunc)


def _sigmoid(x: Array) -> Array:
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _relu6(x: Array) -> Array:
    return np.clip(x, 0.0, 6.0)


def _phi(x: Array) -> Array:
    return 0.5 * (1.0 + np.asarray(_erf(x / math.sqrt(2.0)), dtype=np.float64))


ACTS: dict[str, tuple[Callable[[Array], Array], Callable[[Array], Array]]] = {
    "relu": (lambda x: np.maximum(x, 0.0), lambda x: (x > 0).astype(np.float64)),
    "relu6": (_relu6, lambda x: ((x > 0) & (x < 6)).astype(np.float64)),
    "silu": (lambda x: x * _sigmoid(x), lambda x: _sigmoid(x) * (1.0 + x * (1.0 - _sigmoid(x)))),
    "gelu": (
        lambda x: x * _phi(x),
        lambda x: _phi(x) + x * np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi),
    ),
    "hard_swish": (
        lambda x: x * _relu6(x + 3.0) / 6.0,
        lambda x: np.where(x < -3.0, 0.0, np.where(x > 3.0, 1.0, x / 3.0 + 0.5)),
    ),
}

GATES: dict[str, tuple[Callable[[Array], Array], Callable[[Array], Array]]] = {
    # sigmoid(x) * sigmoid(-x), not s * (1 - s): 1 - s rounds to 0 once s rounds to 1 (x > ~37)
    "sigmoid": (_sigmoid, lambda x: _sigmoid(x) * _sigmoid(-x)),
    "hard_sigmoid": (
        lambda x: _relu6(x + 3.0) / 6.0,
        lambda x: ((x > -3.0) & (x < 3.0)) / 6.0,
    ),
}


def _select(cond: Array, value: Array) -> Array:
    """``where(cond, value, 0)``: the unselected 0 is exact whatever ``value`` holds (Inf, NaN).

    ``cond`` is made of IEEE comparisons, so it is false where the input is NaN.
    """
    with np.errstate(invalid="ignore", over="ignore"):
        return np.where(cond, value, 0.0)


def _smooth(df: Callable[[Array], Array]) -> Callable[[Array, Array], Array]:
    def vjp(x: Array, g: Array) -> Array:
        return g * df(x)  # IEEE: Inf * 0 is NaN

    return vjp


def _hard_swish_vjp(x: Array, g: Array) -> Array:
    with np.errstate(invalid="ignore", over="ignore"):
        return np.where(x > 3.0, g, _select((x >= -3.0) & (x <= 3.0), g * (x / 3.0 + 0.5)))


# vjp(x, g) = g * f'(x) under SPEC.md section 1: a piecewise function's derivative is a selection.
ACT_VJPS: dict[str, Callable[[Array, Array], Array]] = {
    "relu": lambda x, g: _select(x > 0, g),
    "relu6": lambda x, g: _select((x > 0) & (x < 6), g),
    "silu": _smooth(ACTS["silu"][1]),
    "gelu": _smooth(ACTS["gelu"][1]),
    "hard_swish": _hard_swish_vjp,
}
GATE_VJPS: dict[str, Callable[[Array, Array], Array]] = {
    "sigmoid": _smooth(GATES["sigmoid"][1]),
    "hard_sigmoid": lambda x, g: _select((x > -3.0) & (x < 3.0), g / 6.0),
}

# ----------------------------------------------------------------------------- pools
# pool(x, axes) keeps the pooled axes (size 1); pool_grad(x, y, dy, axes) -> dx.


def _avg(x: Array, axes: tuple[int, ...]) -> Array:
    return x.mean(axis=axes, keepdims=True)


def _avg_grad(x: Array, y: Array, dy: Array, axes: tuple[int, ...]) -> Array:
    return np.broadcast_to(dy / math.prod(x.shape[a] for a in axes), x.shape)


def _max(x: Array, axes: tuple[int, ...]) -> Array:
    return x.max(axis=axes, keepdims=True)  # NumPy's max propagates NaN


def _max_grad(x: Array, y: Array, dy: Array, axes: tuple[int, ...]) -> Array:
    hit = x == y  # ties share the gradient evenly; a NaN max is equal to nothing
    with np.errstate(invalid="ignore", divide="ignore"):
        return _select(hit, dy / hit.sum(axis=axes, keepdims=True))


def _lse(x: Array, axes: tuple[int, ...]) -> Array:
    m = x.max(axis=axes, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)  # shift by a finite max only: +/-Inf windows give +/-Inf
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        return m + np.log(np.exp(x - m).sum(axis=axes, keepdims=True))


def _lse_grad(x: Array, y: Array, dy: Array, axes: tuple[int, ...]) -> Array:
    with np.errstate(invalid="ignore", over="ignore"):
        return dy * np.exp(x - y)  # softmax weights


def _lp(x: Array, axes: tuple[int, ...]) -> Array:
    return np.sqrt((x * x).sum(axis=axes, keepdims=True))


def _lp_grad(x: Array, y: Array, dy: Array, axes: tuple[int, ...]) -> Array:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(y == 0, 0.0, dy * x / y)  # all-zero window: gradient 0


POOLS: dict[str, tuple[Callable[..., Array], Callable[..., Array]]] = {
    "avg": (_avg, _avg_grad),
    "mean": (_avg, _avg_grad),
    "max": (_max, _max_grad),
    "lse": (_lse, _lse_grad),
    "lp": (_lp, _lp_grad),
}

# ----------------------------------------------------------------------------- MLP


def mlp_forward(z: Array, w1: Array, b1: Array | None, w2: Array, b2: Array | None, act: str) -> tuple[Array, tuple]:
    """``fc2(act(fc1(z)))`` on a stack of descriptors ``z`` of shape (P, N, C), summed over P."""
    h = z @ w1.T + (0.0 if b1 is None else b1)
    a = ACTS[act][0](h)
    u = a @ w2.T + (0.0 if b2 is None else b2)
    return u.sum(axis=0), (z, h, a)


def mlp_backward(du: Array, cache: tuple, w1: Array, w2: Array, act: str) -> tuple[Array, dict[str, Array]]:
    """Backward of :func:`mlp_forward`: ``du`` (N, C) -> dz (P, N, C) and grads fc{1,2}.{weight,bias}."""
    z, h, a = cache
    dh = ACT_VJPS[act](h, du @ w2)  # (P, N, hidden)
    grads = {
        "fc1.weight": np.einsum("pnh,pnc->hc", dh, z),
        "fc1.bias": dh.sum(axis=(0, 1)),
        "fc2.weight": np.einsum("nc,pnh->ch", du, a),  # one term per pool (SPEC 1: Inf * 0 stays NaN)
        "fc2.bias": du.sum(axis=0) * z.shape[0],
    }
    return dh @ w1, grads


# ----------------------------------------------------------------------------- convolutions


def conv2d(d: Array, w: Array) -> Array:
    """Stride-1 'same' cross-correlation with zero padding (k-1)/2: (N, I, H, W) x (O, I, k, k)."""
    p = w.shape[-1] // 2
    win = sliding_window_view(np.pad(d, ((0, 0), (0, 0), (p, p), (p, p))), w.shape[-2:], axis=(2, 3))
    return np.einsum("nihwab,oiab->nohw", win, w, optimize=True)


def conv2d_backward(dz: Array, d: Array, w: Array) -> tuple[Array, Array]:
    """Returns (dd, dw): dd is the 'same' correlation of dz with the flipped, transposed kernel.

    dw has a term for every product of the forward, padded zeros included (an Inf in dz meets a
    padded zero: NaN); dd has none for outputs that do not exist (SPEC.md section 1). Padding dz
    with zeros adds such terms, ``0 * w``: they are exact zeros while w is finite, and are
    masked out when it is not.
    """
    k = w.shape[-1]
    p = k // 2
    win = sliding_window_view(np.pad(d, ((0, 0), (0, 0), (p, p), (p, p))), w.shape[-2:], axis=(2, 3))
    dw = np.einsum("nohw,nihwab->oiab", dz, win, optimize=True)
    flipped = w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)  # (I, O, k, k)
    if np.isfinite(w).all():
        return conv2d(dz, flipped), dw
    h, wd = dz.shape[-2:]
    dz_win = sliding_window_view(np.pad(dz, ((0, 0), (0, 0), (p, p), (p, p))), (k, k), axis=(2, 3))
    exists = sliding_window_view(np.pad(np.ones((h, wd), bool), p), (k, k))  # (H, W, k, k)
    with np.errstate(invalid="ignore", over="ignore"):
        terms = dz_win[:, None] * flipped[None, :, :, None, None]  # (N, I, O, H, W, k, k)
        return np.where(exists, terms, 0.0).sum(axis=(2, 5, 6)), dw


def pad_index(length: int, pad: int, mode: str) -> tuple[Array, Array]:
    """Gather index and validity mask that pad a length-``length`` axis by ``pad`` each side."""
    pos = np.arange(length + 2 * pad) - pad
    valid = (pos >= 0) & (pos < length) if mode == "zeros" else np.ones(pos.shape, bool)
    return pos % length, valid


def conv1d(z: Array, w: Array, mode: str) -> Array:
    """ECA's 1-D correlation over channels of z (N, C): u[c] = sum_j w[j] z_pad[c + j]."""
    idx, valid = pad_index(z.shape[1], w.shape[0] // 2, mode)
    return sliding_window_view(np.where(valid, z[:, idx], 0.0), w.shape[0], axis=1) @ w


def conv1d_backward(du: Array, z: Array, w: Array, mode: str) -> tuple[Array, Array]:
    """Returns (dz, dw) for :func:`conv1d`; padded positions fold back onto the channels they copy.

    As in :func:`conv2d_backward`, dz has no term for outputs that do not exist.
    """
    k = w.shape[0]
    idx, valid = pad_index(z.shape[1], k // 2, mode)
    dw = np.einsum("nck,nc->k", sliding_window_view(np.where(valid, z[:, idx], 0.0), k, axis=1), du)
    if np.isfinite(w).all():
        dz_pad = sliding_window_view(np.pad(du, ((0, 0), (k - 1, k - 1))), k, axis=1) @ w[::-1]
    else:
        exists = sliding_window_view(np.pad(np.ones(du.shape[1], bool), k - 1), k)  # (C + k - 1, k)
        with np.errstate(invalid="ignore", over="ignore"):
            terms = sliding_window_view(np.pad(du, ((0, 0), (k - 1, k - 1))), k, axis=1) * w[::-1]
            dz_pad = np.where(exists, terms, 0.0).sum(axis=-1)
    dz = np.zeros_like(z)
    np.add.at(dz.T, idx[valid], dz_pad[:, valid].T)  # dz.T is a view: folds the padding back
    return dz, dw


# ----------------------------------------------------------------------------- batch norm


def bn_forward(
    z: Array, weight: Array, bias: Array, mean: Array, var: Array, eps: float, momentum: float, training: bool
) -> tuple[Array, tuple, dict[str, Array]]:
    """One-channel BN over (N, 1, H, W). Returns (out, cache, new running stats or {})."""
    new_state: dict[str, Array] = {}
    if training:
        n = z.size
        mu, v = z.mean(), z.var()
        new_state = {
            "running_mean": (1 - momentum) * mean + momentum * mu,
            "running_var": (1 - momentum) * var + momentum * v * n / (n - 1),
        }
    else:
        mu, v = mean, var
    inv_std = 1.0 / np.sqrt(v + eps)
    xhat = (z - mu) * inv_std
    return xhat * weight + bias, (xhat, inv_std, weight, training), new_state


def bn_backward(dout: Array, cache: tuple) -> tuple[Array, Array, Array]:
    """Returns (dz, dweight, dbias); in train mode the gradient flows through the batch statistics."""
    xhat, inv_std, weight, training = cache
    dw, db = np.array([(dout * xhat).sum()]), np.array([dout.sum()])
    dxhat = dout * weight
    if training:
        dxhat = dxhat - dxhat.mean() - xhat * (dxhat * xhat).mean()
    return dxhat * inv_std, dw, db
