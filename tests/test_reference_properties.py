"""Property tests of the reference over random valid configs (every knob) and small shapes, both layouts.

Properties: output shape and dtype equal the input's; the gates lie in [0, 1]; and the VJP
agrees with a central difference of a random directional derivative,
``<dy, J v> ~= <backward(dy), v>`` with ``v`` over x and every trainable parameter.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import reference_numpy as ref
from reference_numpy import CBAMConfig, ECAConfig, SEConfig
from reference_numpy.config import ACTIVATIONS, CHANNEL_POOLS, GATES, SPATIAL_POOLS
from tests._fd import perturbed_params

MAX_DIRECTIONAL_ERROR = 1e-5
EPS = 1e-6
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

dims = st.integers(1, 4)
data_formats = st.sampled_from(["channels_first", "channels_last"])


def _rd_knobs(channels: int) -> dict:
    return {
        "channels": st.just(channels),
        "rd_ratio": st.one_of(st.sampled_from([1 / 16, 0.25, 0.5, 1.0]), st.floats(0.01, 1.0)),
        "rd_channels": st.one_of(st.none(), st.integers(1, 6)),
        "rd_divisor": st.sampled_from([1, 2, 4, 8]),
        "rd_round": st.sampled_from(["floor", "nearest"]),
        "act": st.sampled_from(ACTIVATIONS),
        "gate": st.sampled_from(GATES),
    }


def se_configs(channels: int) -> st.SearchStrategy[SEConfig]:
    return st.builds(SEConfig, **_rd_knobs(channels), bias=st.booleans())


def cbam_configs(channels: int) -> st.SearchStrategy[CBAMConfig]:
    return st.builds(
        CBAMConfig,
        **_rd_knobs(channels),
        mlp_bias=st.booleans(),
        pool_types=st.lists(st.sampled_from(SPATIAL_POOLS), min_size=1, max_size=4, unique=True).map(tuple),
        spatial=st.booleans(),
        spatial_kernel_size=st.sampled_from([1, 3, 5, 7]),
        spatial_pool_order=st.permutations(CHANNEL_POOLS).map(tuple),
        spatial_bias=st.booleans(),
        spatial_norm=st.booleans(),
        bn_eps=st.sampled_from([1e-5, 1e-3, 0.1]),
        bn_momentum=st.floats(0.0, 1.0),
    )


def eca_configs(channels: int) -> st.SearchStrategy[ECAConfig]:
    return st.builds(
        ECAConfig,
        channels=st.just(channels),
        kernel_size=st.one_of(st.none(), st.sampled_from([1, 3, 5, 7, 9])),
        gamma=st.sampled_from([2, 1, 3, 0.5, -2]),
        beta=st.sampled_from([1, 0, 2, -1]),
        padding=st.sampled_from(["zeros", "circular"]),
        bias=st.booleans(),
        gate=st.sampled_from(GATES),
    )


CONFIGS = {"se": se_configs, "cbam": cbam_configs, "eca": eca_configs}
MODULES = [pytest.param(m, id=m) for m in CONFIGS]


@st.composite
def cases(draw, module: str):
    n, c, h, w = draw(dims), draw(st.integers(1, 12)), draw(dims), draw(dims)
    cfg = draw(CONFIGS[module](c))
    training = draw(st.booleans())
    data_format = draw(data_formats)
    seed = draw(st.integers(0, 2**32 - 1))
    return cfg, (n, c, h, w), training, data_format, seed


def _inputs(cfg, shape, data_format, seed, dtype=np.float64):
    rng = np.random.default_rng(seed)
    params = perturbed_params(cfg, rng)
    x = rng.normal(size=shape)
    dy = rng.normal(size=shape)
    if data_format == "channels_last":
        x, dy = x.transpose(0, 2, 3, 1).copy(), dy.transpose(0, 2, 3, 1).copy()
    return params, x.astype(dtype), dy, rng


def _bn_needs_more_values(cfg, shape, training) -> bool:
    n, _, h, w = shape
    return training and cfg.has_batch_norm and n * h * w == 1


def _gates(cfg, x, y, data_format):
    """y / x where x != 0, in NCHW; for CBAM that is the product of the channel and spatial gates."""
    if data_format == "channels_last":
        x, y = x.transpose(0, 3, 1, 2), y.transpose(0, 3, 1, 2)
    x, y = x.astype(np.float64), y.astype(np.float64)
    nz = x != 0
    return y[nz] / x[nz]


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@SETTINGS
@given(data=st.data())
def test_shape_dtype_and_gate_range(module, dtype, data):
    cfg, shape, training, data_format, seed = data.draw(cases(module))
    params, x, _, _ = _inputs(cfg, shape, data_format, seed, dtype)
    if _bn_needs_more_values(cfg, shape, training):
        with pytest.raises(ValueError, match=r"N \* H \* W > 1"):
            ref.forward(cfg, params, x, training=training, data_format=data_format)
        return
    y, _, state = ref.forward(cfg, params, x, training=training, data_format=data_format)
    assert y.shape == x.shape
    assert y.dtype == x.dtype
    assert np.isfinite(y).all()
    g = _gates(cfg, x, y, data_format)
    assert ((g >= 0) & (g <= 1)).all(), (g.min(), g.max())
    if training and cfg.has_batch_norm:
        assert sorted(state) == ["spatial.bn.running_mean", "spatial.bn.running_var"]
        assert state["spatial.bn.running_var"][0] > 0
    else:
        assert state == {}


@pytest.mark.parametrize("module", MODULES)
@SETTINGS
@given(data=st.data())
def test_vjp_matches_directional_finite_difference(module, data):
    cfg, shape, training, data_format, seed = data.draw(cases(module))
    params, x, dy, rng = _inputs(cfg, shape, data_format, seed)
    if _bn_needs_more_values(cfg, shape, training):
        with pytest.raises(ValueError, match=r"N \* H \* W > 1"):
            ref.forward(cfg, params, x, training=training, data_format=data_format)
        return
    y, cache, _ = ref.forward(cfg, params, x, training=training, data_format=data_format)
    dx, grads = ref.backward(cfg, dy, cache)
    assert dx.shape == x.shape and dx.dtype == x.dtype
    layout = ref.param_layout(cfg)
    assert sorted(grads) == sorted(k for k, s in layout.items() if s.trainable)
    for k, g in grads.items():
        assert g.shape == layout[k].shape, k
    v_x = rng.normal(size=x.shape)
    v_params = {k: rng.normal(size=layout[k].shape) for k in grads}

    def loss_at(h: float) -> np.ndarray:
        p = {k: params[k] + h * v_params[k] if k in v_params else params[k] for k in params}
        y_h = ref.forward(cfg, p, x + h * v_x, training=training, data_format=data_format)[0]
        return dy * (y_h - y)  # relative to y, which keeps cancellation small

    plus, minus = loss_at(EPS), loss_at(-EPS)
    fd = float(np.sum(plus - minus) / (2 * EPS))
    analytic = float(np.sum(dx * v_x) + sum(np.sum(grads[k] * v_params[k]) for k in grads))
    # the natural scale of <g, v> is |g| |v| (Cauchy-Schwarz); a wrong gradient misses by ~|g_err| |v| / sqrt(dim)
    g_norm = np.sqrt(np.sum(dx**2) + sum(np.sum(g**2) for g in grads.values()))
    v_norm = np.sqrt(np.sum(v_x**2) + sum(np.sum(v**2) for v in v_params.values()))
    scale = max(abs(fd), abs(analytic), float(g_norm * v_norm), 1e-300)
    # A step across a kink (relu at 0, hard_sigmoid at +-3, ...) or a max-pool switch makes the difference
    # meaningless. It shows as a one-sided slope mismatch (f(+e) - 2 f(0) + f(-e)) / e of the order of the
    # error it causes, while a smooth function gives e * f''. Such draws are rejected, whatever dx says.
    assume(abs(float(np.sum(plus + minus))) / EPS <= MAX_DIRECTIONAL_ERROR / 2 * scale)
    assert abs(fd - analytic) / scale <= MAX_DIRECTIONAL_ERROR, (fd, analytic, cfg)
