"""The shared pieces of SPEC.md section 2 in ``keras.ops``, so that they run on every Keras backend.

Reductions take an accumulation dtype (float32 for half inputs, SPEC.md section 1); the
gradients are the backends' own, which follow the spec's rules (max splits ties evenly,
relu and the hard gates have zero slope at their kinks).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

from reference_numpy.ops import pad_index

HALF_DTYPES = ("float16", "bfloat16")

# TensorFlow's XLA lowering of reduce_max drops NaN (eager TF, JAX and PyTorch keep it).
_MAX_DROPS_NAN = keras.backend.backend() == "tensorflow"


def accumulation_dtype(compute_dtype: str) -> str:
    """The dtype reductions and the small gate paths run in: float32 for half types, else the compute dtype."""
    return "float32" if compute_dtype in HALF_DTYPES else compute_dtype


# ----------------------------------------------------------------------------- activations and gates


def _hard_sigmoid(x: Any) -> Any:
    return ops.relu6(x + 3.0) / 6.0


def _gelu(x: Any) -> Any:
    # The erf form written out: TensorFlow's own exact gelu is off by ~1e-7 relative in float64.
    return 0.5 * x * (1.0 + ops.erf(x * (1.0 / math.sqrt(2.0))))


ACTS: dict[str, Callable[[Any], Any]] = {
    "relu": ops.relu,
    "relu6": ops.relu6,
    "silu": ops.silu,
    "gelu": _gelu,
    "hard_swish": lambda x: x * _hard_sigmoid(x),
}
GATES: dict[str, Callable[[Any], Any]] = {"sigmoid": ops.sigmoid, "hard_sigmoid": _hard_sigmoid}

# ----------------------------------------------------------------------------- pools
# pool(x, axes, acc) -> the pooled axes removed, in dtype ``acc``.


def _mean(x: Any, axes: Sequence[int], acc: str) -> Any:
    return ops.mean(ops.cast(x, acc), axis=axes)


def _max(x: Any, axes: Sequence[int], acc: str) -> Any:
    m = ops.cast(ops.max(x, axis=axes), acc)
    if _MAX_DROPS_NAN:
        m = ops.where(ops.any(ops.isnan(x), axis=axes), ops.cast(np.nan, acc), m)
    return m


def _lse(x: Any, axes: Sequence[int], acc: str) -> Any:
    x = ops.cast(x, acc)
    m = ops.stop_gradient(ops.max(x, axis=axes, keepdims=True))  # a shift: the gradient is the softmax either way
    return ops.squeeze(m, axis=axes) + ops.log(ops.sum(ops.exp(x - m), axis=axes))


def _lp(x: Any, axes: Sequence[int], acc: str) -> Any:
    s = ops.sum(ops.square(ops.cast(x, acc)), axis=axes)
    nonzero = s > 0  # an all-zero window has value and gradient 0, not NaN
    return ops.where(nonzero, ops.sqrt(ops.where(nonzero, s, 1.0)), 0.0)


POOLS: dict[str, Callable[[Any, Sequence[int], str], Any]] = {
    "avg": _mean,
    "mean": _mean,
    "max": _max,
    "lse": _lse,
    "lp": _lp,
}

# ----------------------------------------------------------------------------- layers' math


def dense(z: Any, kernel: Any, bias: Any | None) -> Any:
    """``z @ kernel (+ bias)`` with a Keras-layout kernel ``(in, out)``."""
    out = ops.matmul(z, kernel)
    return out if bias is None else out + bias


def mlp(z: Any, p: dict[str, Any], prefix: str, act: str) -> Any:
    """``fc2(act(fc1(z)))`` with the weights ``{prefix}fc{1,2}.{kernel,bias}`` of ``p``."""
    h = ACTS[act](dense(z, p[f"{prefix}fc1.kernel"], p.get(f"{prefix}fc1.bias")))
    return dense(h, p[f"{prefix}fc2.kernel"], p.get(f"{prefix}fc2.bias"))


def channel_conv1d(z: Any, kernel: Any, padding: str) -> Any:
    """ECA's correlation over the channels of ``z`` (N, C) with a Keras Conv1D kernel ``(k, 1, 1)``."""
    channels, k = z.shape[-1], kernel.shape[0]
    idx, valid = pad_index(channels, k // 2, padding)  # the spec's padding, zeros or circular
    padded = ops.take(z, idx, axis=1) * ops.cast(valid, z.dtype)
    return ops.conv(padded[:, :, None], kernel, padding="valid", data_format="channels_last")[:, :, 0]


def batch_norm(
    z: Any, p: dict[str, Any], prefix: str, *, eps: float, momentum: float, training: bool
) -> tuple[Any, dict[str, Any]]:
    """BN of SPEC.md section 2 over all of ``z`` (one channel). Returns (out, new moving stats or {}).

    Train mode normalises with the batch mean and biased variance; the moving statistics
    follow PyTorch's convention, the variance fed to them being the unbiased one.
    """
    new: dict[str, Any] = {}
    if training:
        mean = ops.mean(z)
        var = ops.mean(ops.square(z - mean))
        n = ops.cast(ops.size(z), z.dtype)
        new = {
            f"{prefix}moving_mean": (1 - momentum) * p[f"{prefix}moving_mean"] + momentum * mean,
            f"{prefix}moving_variance": (1 - momentum) * p[f"{prefix}moving_variance"] + momentum * var * n / (n - 1),
        }
    else:
        mean, var = p[f"{prefix}moving_mean"], p[f"{prefix}moving_variance"]
    out = (z - mean) * ops.rsqrt(var + eps) * p[f"{prefix}gamma"] + p[f"{prefix}beta"]
    return out, new
