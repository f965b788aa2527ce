"""Deterministic conformance cases (SPEC.md section 9): seeded, distinct dims, tie-free, with edge cases."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import numpy as np

from reference_numpy import (
    CBAMConfig,
    Config,
    ECAConfig,
    SEConfig,
    check_config,
    check_data_format,
    forward,
    init_params,
    ops,
    param_layout,
)

__all__ = ["Case", "edge_cases", "make_case", "move_from_init", "round_to_dtype", "saturating_case"]


def round_to_dtype(a: np.ndarray, dtype: str) -> np.ndarray:
    """Round float64 values to ``dtype`` (round-to-nearest-even) and return them as float64.

    bfloat16 is done on the float32 bit pattern, so no ML framework is needed; float64 values are
    rounded to float32 first, as PyTorch, JAX and TensorFlow cast them (a double rounding).

    >>> round_to_dtype(np.array([1.0 + 2**-9, 1.0 + 3 * 2**-9]), "bfloat16").tolist()
    [1.0, 1.0078125]
    """
    if a is None or isinstance(a, (str, bytes)) or np.asarray(a).dtype.kind not in "biuf":
        raise TypeError(f"`a` must be an array of real numbers. Received: a of type {type(a).__name__}")
    a = np.asarray(a, dtype=np.float64)
    if dtype == "float64":
        return a.copy()
    if dtype in ("float32", "float16"):
        return a.astype(dtype).astype(np.float64)
    if dtype == "bfloat16":
        bits = a.astype(np.float32).view(np.uint32)
        rounded = (bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) & np.uint32(0xFFFF0000)
        out = rounded.view(np.float32).astype(np.float64)
        return np.where(np.isnan(a), np.nan, out)
    raise ValueError(f"Unknown dtype {dtype!r}. Expected float64, float32, bfloat16 or float16")


@dataclasses.dataclass(frozen=True)
class Case:
    """One conformance case. Arrays are float64 holding values exactly representable in ``dtype``.

    ``x`` and ``dy`` are in ``data_format``'s layout; ``params`` are canonical.
    """

    name: str
    cfg: Config
    x: np.ndarray
    params: dict[str, np.ndarray]
    dy: np.ndarray
    training: bool
    data_format: str
    dtype: str
    seed: int

    @property
    def id(self) -> str:
        mode = "train" if self.training else "eval"
        fmt = "nchw" if self.data_format == "channels_first" else "nhwc"
        return f"{self.cfg.module}-{self.name}-{self.dtype}-{mode}-{fmt}"


def _tied(x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """Mask of the entries of x (N, C, H, W) that equal another entry of their max-pool window.

    ``axes`` are the window's axes: (2, 3) for pools over space, (1,) for pools over channels.
    """
    moved = np.moveaxis(x, axes, tuple(range(-len(axes), 0)))
    flat = moved.reshape(*moved.shape[: moved.ndim - len(axes)], -1)
    order = np.argsort(flat, axis=-1)
    srt = np.take_along_axis(flat, order, axis=-1)
    dup = np.zeros(flat.shape, bool)
    eq = srt[..., 1:] == srt[..., :-1]
    dup[..., 1:] |= eq
    dup[..., :-1] |= eq
    tied = np.empty_like(dup)
    np.put_along_axis(tied, order, dup, axis=-1)
    return np.moveaxis(tied.reshape(moved.shape), tuple(range(-len(axes), 0)), axes)


def _draw_tie_free(rng: np.random.Generator, shape: tuple[int, ...], dtype: str, magnitude: float) -> np.ndarray:
    """Normal draws rounded to ``dtype``; entries tied within a pool window (over H, W or over C) are redrawn.

    Ties only matter to max pools, but a tie-free input costs nothing and keeps every case
    usable for every pool type.
    """
    x = round_to_dtype(rng.normal(size=shape) * magnitude, dtype)
    for _ in range(200):
        tied = np.zeros(shape, bool)
        for axes in ((2, 3), (1,)):
            tied |= _tied(x, axes)
        if not tied.any():
            return x
        x[tied] = round_to_dtype(rng.normal(size=int(tied.sum())) * magnitude, dtype)
    raise ValueError(f"Could not draw a tie-free input of shape {shape} in {dtype}")  # pragma: no cover


def move_from_init(cfg: Config, params: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Move freshly initialised params away from the init, in place, so that biases, BN and stats all matter.

    Weights are scaled by a factor in [1, 3], biases and BN weight/bias/mean shifted by up to
    0.5, running variances drawn in [0.5, 2]. Returns ``params``.
    """
    for k, spec in param_layout(cfg).items():
        if spec.kind == "bn_var":
            params[k] = rng.uniform(0.5, 2.0, size=spec.shape)
        elif spec.kind in ("bn_weight", "bn_mean", "bn_bias", "bias"):
            params[k] = params[k] + rng.uniform(-0.5, 0.5, size=spec.shape)
        else:
            params[k] = params[k] * rng.uniform(1.0, 3.0)
    return params


def _split_hidden_units(cfg: Config, x: np.ndarray, params: dict[str, np.ndarray], dtype: str) -> None:
    """Make every fc1 unit active for some samples and (with a bias to move) inactive for others.

    A unit on a flat part of the activation for the whole batch (e.g. relu, negative
    everywhere) makes every gradient through it zero, so comparing them could not fail; a
    unit active everywhere cannot tell relu from leaky relu. So each unit's bias is moved to
    split its pre-activations near their median (midway across the widest gap there, never on
    the kink); a unit still dead everywhere (no bias to move, or all its values equal) has its
    weights' sign flipped instead.
    """
    if isinstance(cfg, ECAConfig):
        return
    prefix = "channel." if isinstance(cfg, CBAMConfig) else ""
    pools = cfg.pool_types if isinstance(cfg, CBAMConfig) else ("avg",)
    z = np.stack([ops.POOLS[p][0](x, (2, 3))[:, :, 0, 0] for p in pools])  # (P, N, C)
    w, b = params[f"{prefix}fc1.weight"], params.get(f"{prefix}fc1.bias")
    h = (z @ w.T).reshape(-1, w.shape[0])  # (P * N, hidden), without the bias
    if b is not None and h.shape[0] >= 2:
        # split at the widest gap among the middle half of the sorted pre-activations, so that no
        # sample lands on (or within rounding of) the kink, even where pools give equal values
        srt = np.sort(h, axis=0)
        gaps = np.diff(srt, axis=0)
        m = gaps.shape[0]
        middle = np.zeros(m, bool)
        middle[m // 4 : m - m // 4] = True
        k = np.argmax(np.where(middle[:, None], gaps, -1.0), axis=0)
        cols = np.arange(h.shape[1])
        split = gaps[k, cols] > 1e-3 * (np.abs(srt).max(axis=0) + 1e-300)
        b[split] = round_to_dtype(-(srt[k, cols] + srt[k + 1, cols]) / 2, dtype)[split]
    dead = ~(ops.ACTS[cfg.act][1](h + (0.0 if b is None else b)) != 0).any(axis=0)
    w[dead] = -w[dead]
    if b is not None:
        b[dead] = -b[dead]


_READS_X = ("fc1.weight", "channel.fc1.weight", "spatial.conv.weight", "conv.weight")
"""The weights applied to descriptors of x (pooled x, or pooled x1, which has x's scale)."""


def _check_case_args(cfg: Any, seed: Any, dtype: Any, training: Any, data_format: Any) -> None:
    """The arguments every case maker shares, each refused by name (the sweep of issue #14)."""
    check_config(cfg)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"`seed` must be an int >= 0. Received: seed={seed!r}")
    if dtype not in ("float64", "float32", "bfloat16", "float16"):
        raise ValueError(f"Unknown dtype {dtype!r}. Expected float64, float32, bfloat16 or float16")
    if not isinstance(training, bool):
        raise TypeError(f"`training` must be a bool. Received: training={training!r} of type {type(training).__name__}")
    check_data_format(data_format)


def _default_shape(cfg: Config) -> tuple[int, int, int, int]:
    """Pairwise distinct N, C, H, W (and != hidden where possible), non-square H x W."""
    taken = {cfg.channels, getattr(cfg, "hidden", -1)}
    free = [v for v in (2, 3, 5, 6, 7, 4) if v not in taken]
    n, h, w = free[0], free[2], free[1]
    return n, cfg.channels, h, w


def make_case(
    cfg: Config,
    *,
    seed: int = 0,
    dtype: str = "float64",
    training: bool = False,
    data_format: str = "channels_first",
    shape: tuple[int, int, int, int] | None = None,
    magnitude: float = 1.0,
    name: str = "default",
) -> Case:
    """A case for ``cfg``: inputs, perturbed canonical weights, non-trivial BN state, cotangent.

    ``shape`` is (N, C, H, W) whatever the data format. ``magnitude`` scales x, and the weights
    that read x's descriptors by its inverse: the data path sees large (or small) values while
    the gates' inputs stay O(1). (Saturating the gates instead would make the case
    ill-conditioned: a float32 rounding of a gate input u of size 100 is an error of 1e-5 in u,
    hence a relative error of 1e-5 in every gradient through sigmoid'(u).) Values are rounded to ``dtype``;
    entries tied within a max-pool window are redrawn (deterministically), and every hidden
    unit of an MLP is active for part of the batch (see :func:`_split_hidden_units`).
    """
    _check_case_args(cfg, seed, dtype, training, data_format)
    if shape is not None:
        ok = isinstance(shape, (tuple, list)) and len(shape) == 4
        ok = ok and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in shape)
        if not ok or shape[1] != cfg.channels:
            raise ValueError(
                f"`shape` must be (N, C, H, W), four ints >= 1 with C == cfg.channels ({cfg.channels}). "
                f"Received: shape={shape!r}"
            )
    if isinstance(magnitude, bool) or not isinstance(magnitude, (int, float)) or not 0 < magnitude < float("inf"):
        raise ValueError(f"`magnitude` must be a finite number > 0. Received: magnitude={magnitude!r}")
    if not isinstance(name, str):
        raise TypeError(f"`name` must be a str. Received: name={name!r} of type {type(name).__name__}")
    rng = np.random.default_rng(seed)
    n, c, h, w = shape or _default_shape(cfg)
    x = _draw_tie_free(rng, (n, c, h, w), dtype, magnitude)
    params = move_from_init(cfg, init_params(cfg, seed=seed), rng)
    for k in params:
        if k in _READS_X:
            params[k] = params[k] / magnitude
        params[k] = round_to_dtype(params[k], dtype)
    _split_hidden_units(cfg, x, params, dtype)
    dy = round_to_dtype(rng.normal(size=(n, c, h, w)), dtype)
    if data_format == "channels_last":
        x, dy = x.transpose(0, 2, 3, 1).copy(), dy.transpose(0, 2, 3, 1).copy()
    return Case(name, cfg, x, params, dy, training, data_format, dtype, seed)


def edge_cases(
    cfg: Config, *, seed: int = 0, dtype: str = "float64", training: bool = False, data_format: str = "channels_first"
) -> Iterator[Case]:
    """The edge cases of SPEC.md section 9 that apply to ``cfg`` (besides the default case).

    N=1, H=W=1 (eval only where BN would see one value), C=1 and "C smaller than the ratio"
    (configs with a different channel count), very large and very small magnitudes.
    """
    _check_case_args(cfg, seed, dtype, training, data_format)
    kw = dict(seed=seed, dtype=dtype, training=training, data_format=data_format)
    n, c, h, w = _default_shape(cfg)
    yield make_case(cfg, shape=(1, c, h, w), name="n1", **kw)  # type: ignore[arg-type]
    if not (training and cfg.has_batch_norm):
        yield make_case(cfg, shape=(n, c, 1, 1), name="hw1", **kw)  # type: ignore[arg-type]
    big, small = {"float16": (50.0, 1e-2)}.get(dtype, (1e3, 1e-3))
    yield make_case(cfg, magnitude=big, name="large", **kw)  # type: ignore[arg-type]
    yield make_case(cfg, magnitude=small, name="small", **kw)  # type: ignore[arg-type]
    for channels, name in ((1, "c1"), (5, "c_below_ratio")):
        other = cfg.replace(channels=channels)
        if isinstance(other, (SEConfig, CBAMConfig)) and other.rd_channels is not None:
            other = other.replace(rd_channels=min(other.rd_channels, channels))
        yield make_case(other, name=name, **kw)  # type: ignore[arg-type]


_ACT_KINKS = np.array([-3.0, 0.0, 3.0, 6.0])  # every kink of every act knob (relu, relu6, hard_swish)
_GATE_KINKS = np.array([-3.0, 3.0])  # hard_sigmoid's


def _scale_off_kinks(v: np.ndarray, kinks: np.ndarray, top: tuple[float, float], beyond: float) -> float | None:
    """A factor ``a`` putting ``max|a v|`` in ``top`` with some of ``a v`` beyond ``beyond`` (in absolute
    value) and some inside it, as far from every kink as the range allows; None when no factor does."""
    m = float(np.max(np.abs(v)))
    best, far = None, -1.0
    for t in np.linspace(*top, 61):
        av = (t / m) * v.ravel()
        if not ((np.abs(av) > beyond).any() and (np.abs(av) < beyond).any()):
            continue
        d = float(np.min(np.abs(av[:, None] - kinks[None, :])))
        if d > far:
            best, far = t / m, d
    return best


def saturating_case(
    cfg: Config, *, seed: int = 0, dtype: str = "float64", data_format: str = "channels_first"
) -> Case | None:
    """An eval case that drives every clamp of the spec past its corner (``verify`` uses it).

    The default cases keep gate inputs O(1) and hidden pre-activations small (SPEC.md section 9.2),
    so a ReLU6 passes for a ReLU and an unclamped hard sigmoid for a clamped one. Here fc1 (weight
    and bias) is scaled so that the hidden pre-activations reach 8 to 16, some beyond ReLU6's 6,
    and, for a hard-sigmoid gate, the gate's last linear map (fc2, ECA's conv, CBAM's spatial conv
    or its BN's affine part) so that gate inputs reach 4.5 to 9, some beyond +-3. Each factor is
    chosen to keep every value as far as it can from every kink (0, +-3, 6); a sigmoid gate keeps
    its inputs' scale (saturating it would measure conditioning, not the target), and a hard
    sigmoid's derivative is piecewise constant, so the case is as well-conditioned as the default
    ones and serves float32 too: x and dy are drawn in ``dtype`` and the scaled weights rounded to it
    (``dtype`` float64 or float32; half types are compared forward only). None in the rare draw where the
    clamped channel gates would tie CBAM's channel max pool (its gradient would not have one winner).
    """
    if isinstance(cfg, ECAConfig):
        n = 8
        _, c, h, w = _default_shape(cfg)
    else:
        _, c, h, w = _default_shape(cfg)
        n = next(v for v in (8, 9, 10, 11) if v not in (c, getattr(cfg, "hidden", 0)))
    case = make_case(cfg, seed=seed, dtype=dtype, shape=(n, c, h, w), name="saturating")  # x tie-free in dtype
    x, p = case.x, {k: v.copy() for k, v in case.params.items()}

    def run() -> Any:  # the reference's cache: its intermediate values
        return forward(cfg, p, x)[1]

    default = run()  # the case as drawn, whose sigmoid gates keep their input scale

    prefix = "channel." if isinstance(cfg, CBAMConfig) else ""
    if not isinstance(cfg, ECAConfig):
        u0 = default.mlp[1]  # hidden pre-activations (P, N, hidden)
        a = _scale_off_kinks(u0, _ACT_KINKS, (8.0, 16.0), 6.0)
        if a is not None:
            p[f"{prefix}fc1.weight"] = p[f"{prefix}fc1.weight"] * a
            if f"{prefix}fc1.bias" in p:
                p[f"{prefix}fc1.bias"] = p[f"{prefix}fc1.bias"] * a
        gate_in = "a" if isinstance(cfg, CBAMConfig) else "u"
        before = float(np.max(np.abs(getattr(default, gate_in))))
        after = getattr(run(), gate_in)
        names = [f"{prefix}fc2.weight", f"{prefix}fc2.bias"]
        b = (
            _scale_off_kinks(after, _GATE_KINKS, (4.5, 9.0), 3.0)
            if cfg.gate == "hard_sigmoid"
            else before / float(np.max(np.abs(after)))
        )
    else:
        names, b = ["conv.weight", "conv.bias"], None
        if cfg.gate == "hard_sigmoid":
            b = _scale_off_kinks(run().u, _GATE_KINKS, (4.5, 9.0), 3.0)
    for k in names:
        if b is not None and k in p:
            p[k] = p[k] * b
    if isinstance(cfg, CBAMConfig) and cfg.spatial:
        sc = run().spatial
        before = float(np.max(np.abs(default.spatial.zs)))
        names = (
            ["spatial.bn.weight", "spatial.bn.bias"]
            if cfg.spatial_norm
            else ["spatial.conv.weight", "spatial.conv.bias"]
        )
        # the gate input is linear in these two (BN's affine part, else the conv and its bias)
        if cfg.gate == "hard_sigmoid":
            s = _scale_off_kinks(sc.zs, _GATE_KINKS, (4.5, 9.0), 3.0)
        else:
            s = before / float(np.max(np.abs(sc.zs)))
        for k in names:
            if s is not None and k in p:
                p[k] = p[k] * s
    p = {k: round_to_dtype(v, dtype) for k, v in p.items()}
    cache = run()
    if isinstance(cfg, CBAMConfig) and cfg.spatial and "max" in cfg.spatial_pool_order:
        x1 = cache.x1
        if ((x1 == x1.max(axis=1, keepdims=True)).sum(axis=1) > 1).any():
            return None
    if data_format == "channels_last":
        return dataclasses.replace(
            case,
            params=p,
            x=x.transpose(0, 2, 3, 1).copy(),
            dy=case.dy.transpose(0, 2, 3, 1).copy(),
            data_format=data_format,
        )
    return dataclasses.replace(case, params=p)


NONFINITE_VALUES: dict[str, float] = {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf")}


def nonfinite_cases(
    cfg: Config, *, seed: int = 0, dtype: str = "float64", training: bool = False, data_format: str = "channels_first"
) -> Iterator[Case]:
    """SPEC.md section 1's non-finite rule, exercised: the default case with one entry made NaN, +Inf or -Inf.

    The entry is the first of ``x`` (a corner: it meets the convolutions' padding), the first of
    each canonical parameter (for a kernel, its first tap: it multiplies padded zeros), or the
    first of ``dy``. Case names are ``nonfinite-<place>-<value>``, place ``x``, ``dy`` or a
    canonical parameter name.

    >>> from reference_numpy import SEConfig
    >>> [c.name for c in nonfinite_cases(SEConfig(channels=8))][:4]
    ['nonfinite-x-nan', 'nonfinite-x-inf', 'nonfinite-x--inf', 'nonfinite-fc1.weight-nan']
    """
    base = make_case(cfg, seed=seed, dtype=dtype, training=training, data_format=data_format)
    for place in ("x", *base.params, "dy"):
        for label, value in NONFINITE_VALUES.items():
            x, dy, params = base.x, base.dy, dict(base.params)
            if place == "x":
                x = x.copy()
                x.flat[0] = value
            elif place == "dy":
                dy = dy.copy()
                dy.flat[0] = value
            else:
                params[place] = params[place].copy()
                params[place].flat[0] = value
            yield dataclasses.replace(base, name=f"nonfinite-{place}-{label}", x=x, dy=dy, params=params)
