"""Central finite differences against ``reference_numpy.backward`` for every knob value (SPEC.md sections 2-5).

Each case checks dx and the gradient of every trainable parameter of ``sum(dy * y)`` in
float64, with parameters moved away from their init (BN running_var in 0.5..2, biases
non-zero). Inputs are standard normal: no max-pool ties, and (for these seeds) no
pre-activation within a step of a kink (relu/relu6 at 0 and 6, hard_sigmoid/hard_swish at
+-3), where a finite difference is meaningless.
"""

from __future__ import annotations

import numpy as np
import pytest

import reference_numpy as ref
from reference_numpy import CBAMConfig, ECAConfig, SEConfig
from reference_numpy.config import ACTIVATIONS, SPATIAL_POOLS
from tests._fd import fd_error, numeric_grads, perturbed_params

SHAPE = (2, 6, 4, 3)  # N, C, H, W (channels_first); pairwise distinct, non-square
MAX_FD_ERROR = 1e-6
NCHW, NHWC = "channels_first", "channels_last"


def _case(cfg, training=False, data_format=NCHW, shape=SHAPE, id=None):
    mode = "train" if training else "eval"
    fmt = "nchw" if data_format == NCHW else "nhwc"
    return pytest.param(cfg, training, data_format, shape, id=f"{id}-{mode}-{fmt}")


C = SHAPE[1]
SE_CASES = [
    *(
        _case(SEConfig(C, act=a, rd_ratio=0.5), id=f"act_{a}", data_format=(NCHW, NHWC)[i % 2])
        for i, a in enumerate(ACTIVATIONS)
    ),
    _case(SEConfig(C, gate="hard_sigmoid", bias=False, rd_channels=4), True, NHWC, id="hard_sigmoid-nobias-rd4"),
    _case(SEConfig(C, gate="sigmoid", bias=False), id="sigmoid-nobias-default_hidden1"),
    _case(SEConfig(C, rd_round="nearest", rd_divisor=8, act="silu"), True, id="nearest-div8-hidden8"),
    _case(SEConfig(C, rd_round="floor", rd_divisor=2, rd_ratio=0.75), False, NHWC, id="floor-div2"),
    _case(SEConfig(C, rd_channels=7, act="hard_swish", gate="hard_sigmoid"), id="rd_channels7-hard"),
]

CBAM_CASES = [
    _case(CBAMConfig(C, rd_ratio=0.5), True, id="official"),
    _case(CBAMConfig(C, rd_ratio=0.5), False, NHWC, id="official"),
    _case(CBAMConfig.preset("timm", channels=C, rd_ratio=0.5), True, NHWC, id="timm"),
    *(
        _case(
            CBAMConfig(C, pool_types=(p,), rd_ratio=0.5, spatial_kernel_size=3),
            i % 2 == 0,
            (NCHW, NHWC)[i % 2],
            id=f"pool_{p}",
        )
        for i, p in enumerate(SPATIAL_POOLS)
    ),
    _case(
        CBAMConfig(C, pool_types=("lp", "lse", "max", "avg"), rd_channels=2, act="gelu"), True, id="pools_all_reversed"
    ),
    _case(
        CBAMConfig(C, pool_types=("max", "avg"), spatial_pool_order=("mean", "max"), act="silu"), id="max_avg-mean_max"
    ),
    _case(
        CBAMConfig(C, pool_types=("lp", "avg"), spatial=False, mlp_bias=False), True, NHWC, id="no_spatial-nomlpbias"
    ),
    _case(CBAMConfig(C, spatial=False, gate="hard_sigmoid", act="hard_swish", rd_ratio=0.5), id="no_spatial-hard"),
    _case(CBAMConfig(C, spatial_kernel_size=1, spatial_bias=True, spatial_norm=False), id="k1-bias-nonorm"),
    _case(CBAMConfig(C, spatial_kernel_size=1, spatial_bias=True), True, NHWC, id="k1-bias-bn"),
    _case(CBAMConfig(C, spatial_kernel_size=3, spatial_bias=True), id="k3-bias-bn"),
    _case(CBAMConfig(C, spatial_kernel_size=3, spatial_norm=False, mlp_bias=False, act="relu6"), True, id="k3-nonorm"),
    _case(
        CBAMConfig(C, spatial_kernel_size=7, spatial_pool_order=("mean", "max"), gate="hard_sigmoid", bn_momentum=0.3),
        True,
        NHWC,
        id="k7-mean_max-hard_sigmoid",
    ),
    _case(CBAMConfig(C, spatial_kernel_size=5, bn_eps=1e-2, rd_round="nearest", rd_divisor=4), id="k5-eps-nearest"),
]

ECA_CASES = [
    *(
        _case(ECAConfig(C, kernel_size=k, padding=pad, bias=k == 3), (k == 5), (NCHW, NHWC)[k // 3], id=f"k{k}-{pad}")
        for k in (1, 3, 5)
        for pad in ("zeros", "circular")
    ),
    _case(ECAConfig(C, gamma=1), id="adaptive_k3"),  # (log2(6) + 1) / 1 -> 3
    _case(
        ECAConfig(C, kernel_size=None, padding="circular", gate="hard_sigmoid", bias=True, gamma=1),
        True,
        NHWC,
        id="adaptive-circular-hard",
    ),
    _case(ECAConfig(2, kernel_size=5, padding="circular", bias=True), shape=(3, 2, 4, 5), id="circular-C2-k5"),
    _case(
        ECAConfig(2, kernel_size=7, padding="circular", gate="hard_sigmoid"),
        True,
        NHWC,
        shape=(3, 2, 4, 5),
        id="circular-C2-k7",
    ),
    _case(ECAConfig(2, kernel_size=5, padding="zeros"), shape=(3, 2, 4, 5), id="zeros-C2-k5"),
    _case(ECAConfig(C, kernel_size=7, gate="hard_sigmoid", padding="zeros"), True, id="k7-hard_sigmoid"),
]


def _inputs(cfg, shape, data_format, seed):
    rng = np.random.default_rng(seed)
    params = perturbed_params(cfg, rng)
    x = rng.normal(size=shape)
    dy = rng.normal(size=shape)
    if data_format == NHWC:
        x, dy = x.transpose(0, 2, 3, 1).copy(), dy.transpose(0, 2, 3, 1).copy()
    return params, x, dy


def _check_fd(cfg, training, data_format, shape, seed):
    params, x, dy = _inputs(cfg, shape, data_format, seed)
    _, cache, _ = ref.forward(cfg, params, x, training=training, data_format=data_format)
    dx, grads = ref.backward(cfg, dy, cache)
    trainable = [k for k, s in ref.param_layout(cfg).items() if s.trainable]
    assert list(grads) == trainable
    ndx, ngrads = numeric_grads(cfg, params, x, dy, training=training, data_format=data_format)
    errors = fd_error({"dx": dx, **grads}, {"dx": ndx, **ngrads})
    worst = max(errors, key=errors.get)
    assert errors[worst] <= MAX_FD_ERROR, f"{worst}: FD error {errors[worst]:.3g} (all: {errors})"
    return errors


@pytest.mark.parametrize(("cfg", "training", "data_format", "shape"), SE_CASES)
def test_se_backward_matches_finite_differences(cfg, training, data_format, shape):
    _check_fd(cfg, training, data_format, shape, seed=1)


@pytest.mark.parametrize(("cfg", "training", "data_format", "shape"), CBAM_CASES)
def test_cbam_backward_matches_finite_differences(cfg, training, data_format, shape):
    _check_fd(cfg, training, data_format, shape, seed=2)


@pytest.mark.parametrize(("cfg", "training", "data_format", "shape"), ECA_CASES)
def test_eca_backward_matches_finite_differences(cfg, training, data_format, shape):
    _check_fd(cfg, training, data_format, shape, seed=3)


def test_grid_covers_every_knob_value():
    """Every value of every knob appears in at least one FD case (the grid is the spec's coverage)."""
    se = [p.values[0] for p in SE_CASES]
    cbam = [p.values[0] for p in CBAM_CASES]
    eca = [p.values[0] for p in ECA_CASES]
    everything = SE_CASES + CBAM_CASES + ECA_CASES
    assert {p.values[1] for p in everything} == {True, False}
    assert {p.values[2] for p in everything} == {NCHW, NHWC}
    for module in (se, cbam):
        assert {c.act for c in module} == set(ACTIVATIONS)
        assert {c.gate for c in module} == {"sigmoid", "hard_sigmoid"}
        assert {c.rd_round for c in module} == {"floor", "nearest"}
        assert {c.rd_divisor for c in module} > {1}
        assert {c.rd_channels is None for c in module} == {True, False}
    assert {c.bias for c in se} == {True, False}
    assert {p for c in cbam for p in c.pool_types} == set(SPATIAL_POOLS)
    assert len({c.pool_types for c in cbam}) >= 5
    assert {c.spatial_pool_order for c in cbam} == {("max", "mean"), ("mean", "max")}
    for knob in ("spatial", "spatial_bias", "spatial_norm", "mlp_bias"):
        assert {getattr(c, knob) for c in cbam} == {True, False}, knob
    assert {c.spatial_kernel_size for c in cbam if c.spatial} >= {1, 3, 7}
    assert {(p.values[1], p.values[0].has_batch_norm) for p in CBAM_CASES} == {
        (True, True),
        (True, False),
        (False, True),
        (False, False),
    }
    assert {c.kernel_size for c in eca} >= {1, 3, 5, None}
    assert {c.padding for c in eca} == {"zeros", "circular"}
    assert any(c.padding == "circular" and c.channels < c.effective_kernel_size for c in eca)
    assert {c.bias for c in eca} == {True, False}
    assert {c.gate for c in eca} == {"sigmoid", "hard_sigmoid"}


# ----------------------------------------------------------------------------- BN running statistics


def _naive_conv2d(d: np.ndarray, w: np.ndarray) -> np.ndarray:
    """'same' cross-correlation with zero padding, written as loops over the kernel taps."""
    k = w.shape[-1]
    p = k // 2
    n, _, h, wd = d.shape
    pad = np.zeros((n, d.shape[1], h + 2 * p, wd + 2 * p))
    pad[:, :, p : p + h, p : p + wd] = d
    out = np.zeros((n, 1, h, wd))
    for i in range(d.shape[1]):
        for a in range(k):
            for b in range(k):
                out[:, 0] += w[0, i, a, b] * pad[:, i, a : a + h, b : b + wd]
    return out


@pytest.mark.parametrize("momentum", [0.0, 0.01, 0.1, 1.0])
@pytest.mark.parametrize("data_format", [pytest.param(NCHW, id="nchw"), pytest.param(NHWC, id="nhwc")])
@pytest.mark.parametrize("spatial_bias", [False, True], ids=["nobias", "bias"])
def test_train_mode_running_stats_follow_pytorch_update(momentum, data_format, spatial_bias):
    cfg = CBAMConfig(C, rd_ratio=0.5, spatial_kernel_size=3, bn_momentum=momentum, spatial_bias=spatial_bias)
    params, x, _ = _inputs(cfg, SHAPE, data_format, seed=4)
    _, _, state = ref.forward(cfg, params, x, training=True, data_format=data_format)
    assert sorted(state) == ["spatial.bn.running_mean", "spatial.bn.running_var"]

    # the BN input, computed independently: x1 from a channel-only module, then pools over C and a conv
    channel_only = cfg.replace(spatial=False)
    channel_params = {k: v for k, v in params.items() if k.startswith("channel.")}
    x1 = ref.forward(channel_only, channel_params, x, data_format=data_format)[0]
    if data_format == NHWC:
        x1 = x1.transpose(0, 3, 1, 2)
    pools = {"max": x1.max(axis=1, keepdims=True), "mean": x1.mean(axis=1, keepdims=True)}
    d = np.concatenate([pools[q] for q in cfg.spatial_pool_order], axis=1)
    z = _naive_conv2d(d, params["spatial.conv.weight"]) + params.get("spatial.conv.bias", 0.0)
    batch_mean, unbiased_var = z.mean(), z.var(ddof=1)
    want_mean = (1 - momentum) * params["spatial.bn.running_mean"] + momentum * batch_mean
    want_var = (1 - momentum) * params["spatial.bn.running_var"] + momentum * unbiased_var
    np.testing.assert_allclose(state["spatial.bn.running_mean"], want_mean, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(state["spatial.bn.running_var"], want_var, rtol=1e-12, atol=1e-14)
    assert state["spatial.bn.running_mean"].shape == (1,) and state["spatial.bn.running_var"].shape == (1,)


@pytest.mark.parametrize(
    "cfg",
    [
        pytest.param(SEConfig(C, rd_ratio=0.5), id="se"),
        pytest.param(CBAMConfig(C, rd_ratio=0.5), id="cbam"),
        pytest.param(CBAMConfig(C, spatial_norm=False), id="cbam-nonorm"),
        pytest.param(ECAConfig(C), id="eca"),
    ],
)
@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_new_state_is_empty_without_train_mode_bn(cfg, training):
    params, x, _ = _inputs(cfg, SHAPE, NCHW, seed=5)
    _, _, state = ref.forward(cfg, params, x, training=training)
    if training and cfg.has_batch_norm:
        assert sorted(state) == ["spatial.bn.running_mean", "spatial.bn.running_var"]
    else:
        assert state == {}


def test_eval_mode_uses_running_stats_and_leaves_them_alone():
    cfg = CBAMConfig(C, rd_ratio=0.5)
    params, x, _ = _inputs(cfg, SHAPE, NCHW, seed=6)
    before = {k: v.copy() for k, v in params.items()}
    y1 = ref.forward(cfg, params, x)[0]
    shifted = {**params, "spatial.bn.running_mean": params["spatial.bn.running_mean"] + 1.0}
    y2 = ref.forward(cfg, shifted, x)[0]
    assert not np.allclose(y1, y2)  # eval mode reads the running mean
    yt1 = ref.forward(cfg, params, x, training=True)[0]
    yt2 = ref.forward(cfg, shifted, x, training=True)[0]
    np.testing.assert_array_equal(yt1, yt2)  # train mode does not
    for k in before:
        np.testing.assert_array_equal(params[k], before[k])
