"""Tiny cases whose expected values are worked out here in plain Python (``math``, lists), never by reference ops.

Inputs are (N, C, H, W) = (1, 2, 2, 2) unless stated; pixels are listed row-major.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import reference_numpy as ref
from reference_numpy import CBAMConfig, ECAConfig, SEConfig

EXACT = dict(rtol=1e-13, atol=1e-15)  # float64 reference vs. float64 hand computation


def sig(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def hard_sig(v: float) -> float:
    return min(max(v + 3.0, 0.0), 6.0) / 6.0


def relu(v: float) -> float:
    return max(v, 0.0)


def arr(channels: list[list[float]]) -> np.ndarray:
    """One sample: a list of channels, each a row-major list of 4 pixels -> (1, C, 2, 2)."""
    return np.array(channels, dtype=np.float64).reshape(1, len(channels), 2, 2)


def mean(v: list[float]) -> float:
    return sum(v) / len(v)


# ----------------------------------------------------------------------------- SE

X = [[1.0, 2.0, 3.0, 4.0], [-1.0, -2.0, -3.0, -6.0]]  # means 2.5 and -3


def test_se_identity_like_weights_forward_and_backward():
    cfg = SEConfig(channels=2, rd_channels=2)
    params = {
        "fc1.weight": np.eye(2),
        "fc1.bias": np.array([0.0, 0.5]),
        "fc2.weight": np.array([[1.0, 0.0], [0.0, 2.0]]),
        "fc2.bias": np.array([0.0, -1.0]),
    }
    # z = [2.5, -3]; h = [2.5, -2.5]; relu -> [2.5, 0]; u = [2.5, -1]
    h = [2.5, -2.5]
    u = [2.5, -1.0]
    s = [sig(u[0]), sig(u[1])]
    want_y = [[v * s[c] for v in X[c]] for c in range(2)]
    y, cache, state = ref.forward(cfg, params, arr(X))
    np.testing.assert_allclose(y, arr(want_y), **EXACT)
    assert state == {}

    dy = [[1.0, 0.0, -1.0, 2.0], [0.5, 0.5, 0.5, 0.5]]
    # du_c = sum(dy_c * x_c) * s_c (1 - s_c); dh = du @ fc2.weight * relu'(h); dz = dh @ fc1.weight
    du = [sum(a * b for a, b in zip(dy[c], X[c], strict=True)) * s[c] * (1 - s[c]) for c in range(2)]
    dh = [du[0] * 1.0 * (h[0] > 0), du[1] * 2.0 * (h[1] > 0)]
    dz = dh  # fc1.weight is the identity
    want_dx = [[dy[c][i] * s[c] + dz[c] / 4 for i in range(4)] for c in range(2)]
    dx, grads = ref.backward(cfg, arr(dy), cache)
    np.testing.assert_allclose(dx, arr(want_dx), **EXACT)
    z = [2.5, -3.0]
    a = [relu(v) for v in h]
    np.testing.assert_allclose(grads["fc2.bias"], du, **EXACT)
    np.testing.assert_allclose(grads["fc2.weight"], [[du[i] * a[j] for j in range(2)] for i in range(2)], **EXACT)
    np.testing.assert_allclose(grads["fc1.bias"], dh, **EXACT)
    np.testing.assert_allclose(grads["fc1.weight"], [[dh[i] * z[j] for j in range(2)] for i in range(2)], **EXACT)


def test_se_hard_sigmoid_gate_without_bias():
    cfg = SEConfig(channels=2, rd_channels=2, bias=False, act="relu6", gate="hard_sigmoid")
    params = {"fc1.weight": 4.0 * np.eye(2), "fc2.weight": np.array([[1.0, 0.0], [0.5, 0.0]])}
    # h = [10, -12] -> relu6 -> [6, 0]; u = [6, 3] -> hard_sigmoid -> [1, 1]
    y = ref.forward(cfg, params, arr(X))[0]
    np.testing.assert_allclose(y, arr(X), **EXACT)
    params["fc2.weight"] = np.array([[0.25, 0.0], [-0.1, 0.0]])  # u = [1.5, -0.6]
    y = ref.forward(cfg, params, arr(X))[0]
    s = [hard_sig(1.5), hard_sig(-0.6)]
    np.testing.assert_allclose(y, arr([[v * s[c] for v in X[c]] for c in range(2)]), **EXACT)


# ----------------------------------------------------------------------------- CBAM

XC = [[1.0, 2.0, 3.0, 4.0], [0.0, -1.0, 2.0, -3.0]]  # avg 2.5 / -0.5, max 4 / 2
CBAM_MLP = {
    "channel.fc1.weight": np.array([[0.5, -0.5]]),
    "channel.fc1.bias": np.array([0.1]),
    "channel.fc2.weight": np.array([[1.0], [-1.0]]),
    "channel.fc2.bias": np.array([0.0, 0.2]),
}


def _cbam_channel_gate() -> list[float]:
    # avg path: h = 0.5*2.5 + 0.5*0.5 + 0.1 = 1.6 -> u = [1.6, -1.4]
    # max path: h = 0.5*4 - 0.5*2 + 0.1 = 1.1 -> u = [1.1, -0.9]
    a = [1.6 + 1.1, -1.4 - 0.9]
    return [sig(a[0]), sig(a[1])]


def _cbam_hand(order: tuple[str, str], w: tuple[float, float], post=lambda z: z) -> list[list[float]]:
    g = _cbam_channel_gate()
    x1 = [[v * g[c] for v in XC[c]] for c in range(2)]
    out = [[0.0] * 4 for _ in range(2)]
    for i in range(4):
        pools = {"max": max(x1[0][i], x1[1][i]), "mean": (x1[0][i] + x1[1][i]) / 2}
        z = w[0] * pools[order[0]] + w[1] * pools[order[1]]
        s = sig(post(z))
        for c in range(2):
            out[c][i] = x1[c][i] * s
    return out


@pytest.mark.parametrize("order", [("max", "mean"), ("mean", "max")], ids=["max_mean", "mean_max"])
def test_cbam_1x1_spatial_kernel_without_norm(order):
    cfg = CBAMConfig(channels=2, rd_channels=1, spatial_kernel_size=1, spatial_norm=False, spatial_pool_order=order)
    params = {**CBAM_MLP, "spatial.conv.weight": np.array([0.7, -0.4]).reshape(1, 2, 1, 1)}
    y = ref.forward(cfg, params, arr(XC))[0]
    np.testing.assert_allclose(y, arr(_cbam_hand(order, (0.7, -0.4))), **EXACT)


def test_cbam_1x1_spatial_kernel_with_bias_and_eval_bn():
    cfg = CBAMConfig(channels=2, rd_channels=1, spatial_kernel_size=1, spatial_bias=True, bn_eps=1e-5)
    params = {
        **CBAM_MLP,
        "spatial.conv.weight": np.array([0.7, -0.4]).reshape(1, 2, 1, 1),
        "spatial.conv.bias": np.array([0.25]),
        "spatial.bn.weight": np.array([1.5]),
        "spatial.bn.bias": np.array([-0.2]),
        "spatial.bn.running_mean": np.array([0.3]),
        "spatial.bn.running_var": np.array([0.8]),
    }

    def bn(z: float) -> float:
        return (z + 0.25 - 0.3) / math.sqrt(0.8 + 1e-5) * 1.5 - 0.2

    y, _, state = ref.forward(cfg, params, arr(XC))
    np.testing.assert_allclose(y, arr(_cbam_hand(("max", "mean"), (0.7, -0.4), bn)), **EXACT)
    assert state == {}


def test_cbam_1x1_spatial_kernel_with_train_bn():
    cfg = CBAMConfig(channels=2, rd_channels=1, spatial_kernel_size=1, bn_eps=1e-3, bn_momentum=0.25)
    params = {
        **CBAM_MLP,
        "spatial.conv.weight": np.array([0.7, -0.4]).reshape(1, 2, 1, 1),
        "spatial.bn.weight": np.array([1.5]),
        "spatial.bn.bias": np.array([-0.2]),
        "spatial.bn.running_mean": np.array([0.3]),
        "spatial.bn.running_var": np.array([0.8]),
    }
    g = _cbam_channel_gate()
    x1 = [[v * g[c] for v in XC[c]] for c in range(2)]
    zs = [0.7 * max(x1[0][i], x1[1][i]) - 0.4 * (x1[0][i] + x1[1][i]) / 2 for i in range(4)]
    mu = mean(zs)
    var = mean([(z - mu) ** 2 for z in zs])  # biased, for normalising

    def bn(z: float) -> float:
        return (z - mu) / math.sqrt(var + 1e-3) * 1.5 - 0.2

    y, _, state = ref.forward(cfg, params, arr(XC), training=True)
    np.testing.assert_allclose(y, arr(_cbam_hand(("max", "mean"), (0.7, -0.4), bn)), **EXACT)
    np.testing.assert_allclose(state["spatial.bn.running_mean"], [0.75 * 0.3 + 0.25 * mu], **EXACT)
    np.testing.assert_allclose(state["spatial.bn.running_var"], [0.75 * 0.8 + 0.25 * var * 4 / 3], **EXACT)


def test_cbam_pool_types_share_one_mlp_and_sum():
    """pool_types=("avg", "max") is the sum of the two single-pool MLP outputs, each with its bias."""
    cfg = CBAMConfig(channels=2, rd_channels=1, spatial=False)
    y = ref.forward(cfg, CBAM_MLP, arr(XC))[0]
    g = _cbam_channel_gate()
    np.testing.assert_allclose(y, arr([[v * g[c] for v in XC[c]] for c in range(2)]), **EXACT)


# ----------------------------------------------------------------------------- ECA

XE = [[1.0, 3.0, 5.0, 7.0], [-2.0, 0.0, 2.0, -4.0], [0.5, 0.5, 0.5, 1.5]]  # means 4, -1, 0.75
W3 = (0.5, -1.0, 2.0)


@pytest.mark.parametrize(
    ("padding", "channels", "u_of_z"),
    [
        # C = 2, z = [4, -1]; zero padding: u0 = w1 z0 + w2 z1, u1 = w0 z0 + w1 z1
        pytest.param("zeros", 2, lambda z, w: [w[1] * z[0] + w[2] * z[1], w[0] * z[0] + w[1] * z[1]], id="zeros-C2"),
        # circular: z_pad = [z1, z0, z1, z0]
        pytest.param(
            "circular",
            2,
            lambda z, w: [w[0] * z[1] + w[1] * z[0] + w[2] * z[1], w[0] * z[0] + w[1] * z[1] + w[2] * z[0]],
            id="circular-C2",
        ),
        pytest.param(
            "zeros",
            3,
            lambda z, w: [
                w[1] * z[0] + w[2] * z[1],
                w[0] * z[0] + w[1] * z[1] + w[2] * z[2],
                w[0] * z[1] + w[1] * z[2],
            ],
            id="zeros-C3",
        ),
        # circular: z_pad = [z2, z0, z1, z2, z0]
        pytest.param(
            "circular",
            3,
            lambda z, w: [
                w[0] * z[2] + w[1] * z[0] + w[2] * z[1],
                w[0] * z[0] + w[1] * z[1] + w[2] * z[2],
                w[0] * z[1] + w[1] * z[2] + w[2] * z[0],
            ],
            id="circular-C3",
        ),
    ],
)
@pytest.mark.parametrize("bias", [None, 0.3], ids=["nobias", "bias"])
def test_eca_k3(padding, channels, u_of_z, bias):
    cfg = ECAConfig(channels=channels, kernel_size=3, padding=padding, bias=bias is not None)
    params = {"conv.weight": np.array(W3)}
    if bias is not None:
        params["conv.bias"] = np.array([bias])
    x = XE[:channels]
    z = [mean(c) for c in x]
    u = [v + (bias or 0.0) for v in u_of_z(z, W3)]
    y = ref.forward(cfg, params, arr(x))[0]
    np.testing.assert_allclose(y, arr([[v * sig(u[c]) for v in x[c]] for c in range(channels)]), **EXACT)


def test_eca_circular_kernel_wider_than_channels():
    """C=2, k=5: z_pad = [z0, z1, z0, z1, z0, z1] (pad 2 each side wraps around)."""
    cfg = ECAConfig(channels=2, kernel_size=5, padding="circular", gate="hard_sigmoid")
    w = [0.1, 0.2, 0.3, 0.4, 0.5]
    x = XE[:2]
    z = [mean(c) for c in x]
    zp = [z[0], z[1], z[0], z[1], z[0], z[1]]
    u = [sum(w[j] * zp[c + j] for j in range(5)) for c in range(2)]
    y = ref.forward(cfg, {"conv.weight": np.array(w)}, arr(x))[0]
    np.testing.assert_allclose(y, arr([[v * hard_sig(u[c]) for v in x[c]] for c in range(2)]), **EXACT)


# ----------------------------------------------------------------------------- pooling corner cases

ONE_BY_ONE_MLP = {
    "channel.fc1.weight": np.array([[1.0]]),
    "channel.fc1.bias": np.array([0.0]),
    "channel.fc2.weight": np.array([[1.0]]),
    "channel.fc2.bias": np.array([0.0]),
}


@pytest.mark.parametrize(
    ("pixels", "share"),
    [
        pytest.param([1.0, 3.0, 3.0, 2.0], [0.0, 0.5, 0.5, 0.0], id="two_way_tie"),
        pytest.param([3.0, 3.0, 3.0, 1.0], [1 / 3, 1 / 3, 1 / 3, 0.0], id="three_way_tie"),
        pytest.param([2.0, 2.0, 2.0, 2.0], [0.25, 0.25, 0.25, 0.25], id="constant"),
    ],
)
def test_max_pool_tie_splits_gradient_evenly(pixels, share):
    """CBAM channel gate with only a max pool, C=1 and an identity MLP: a = relu(max(x)) = max(x)."""
    cfg = CBAMConfig(channels=1, rd_channels=1, pool_types=("max",), spatial=False)
    y, cache, _ = ref.forward(cfg, ONE_BY_ONE_MLP, arr([pixels]))
    m = max(pixels)
    g = sig(m)
    np.testing.assert_allclose(y, arr([[v * g for v in pixels]]), **EXACT)
    dy = [0.5, 1.0, -1.0, 2.0]
    da = sum(a * b for a, b in zip(dy, pixels, strict=True)) * g * (1 - g)
    dx, _ = ref.backward(cfg, arr([dy]), cache)
    np.testing.assert_allclose(dx, arr([[dy[i] * g + da * share[i] for i in range(4)]]), **EXACT)


def test_channel_max_tie_splits_gradient_evenly():
    """CBAM spatial max over C with equal channels at pixel 0; zero MLP weights make the channel gate 1/2."""
    cfg = CBAMConfig(channels=2, rd_channels=1, spatial_kernel_size=1, spatial_norm=False)
    params = {
        "channel.fc1.weight": np.zeros((1, 2)),
        "channel.fc1.bias": np.array([0.3]),
        "channel.fc2.weight": np.zeros((2, 1)),
        "channel.fc2.bias": np.zeros(2),
        "spatial.conv.weight": np.array([0.7, -0.4]).reshape(1, 2, 1, 1),
    }
    x = [[1.5, 2.0, -1.0, 0.5], [1.5, -2.0, 3.0, 0.25]]
    dy = [[1.0, -0.5, 0.25, 2.0], [0.5, 1.5, -1.0, -0.75]]
    y, cache, _ = ref.forward(cfg, params, arr(x))
    dx, _ = ref.backward(cfg, arr(dy), cache)
    want_y = [[0.0] * 4 for _ in range(2)]
    want_dx = [[0.0] * 4 for _ in range(2)]
    for i in range(4):
        x1 = [0.5 * x[0][i], 0.5 * x[1][i]]
        m = max(x1)
        s = sig(0.7 * m - 0.4 * mean(x1))
        dz = (dy[0][i] * x1[0] + dy[1][i] * x1[1]) * s * (1 - s)
        hits = [c for c in range(2) if x1[c] == m]
        for c in range(2):
            want_y[c][i] = x1[c] * s
            dx1 = dy[c][i] * s + 0.7 * dz * (c in hits) / len(hits) - 0.4 * dz / 2
            want_dx[c][i] = 0.5 * dx1  # the channel gate is constant: its MLP weights are zero
    np.testing.assert_allclose(y, arr(want_y), **EXACT)
    np.testing.assert_allclose(dx, arr(want_dx), **EXACT)


def test_lp_pool_at_an_all_zero_window_has_zero_gradient():
    cfg = CBAMConfig(channels=2, rd_channels=1, pool_types=("lp",), spatial=False)
    params = {**CBAM_MLP}
    x = [[0.0, 0.0, 0.0, 0.0], [3.0, 0.0, -4.0, 0.0]]  # lp = [0, 5]
    y, cache, _ = ref.forward(cfg, params, arr(x))
    # h = 0.5*0 - 0.5*5 + 0.1 = -2.4 -> relu 0 -> u = [0, 0.2]
    g = [sig(0.0), sig(0.2)]
    np.testing.assert_allclose(y, arr([[v * g[c] for v in x[c]] for c in range(2)]), **EXACT)
    dy = [[1.0, 2.0, 3.0, 4.0], [1.0, 1.0, 1.0, 1.0]]
    dx, grads = ref.backward(cfg, arr(dy), cache)
    # relu'(-2.4) = 0 blocks the pool path, so dx = dy * g exactly; the zero window gives 0, never NaN
    np.testing.assert_allclose(dx, arr([[d * g[c] for d in dy[c]] for c in range(2)]), **EXACT)
    assert all(np.isfinite(v).all() for v in grads.values())


def test_lp_pool_at_an_all_zero_window_with_active_mlp():
    """Same zero window, but the MLP is active: channel 0's pool gradient must still be exactly 0."""
    cfg = CBAMConfig(channels=2, rd_channels=1, pool_types=("lp",), spatial=False)
    params = {**CBAM_MLP, "channel.fc1.weight": np.array([[0.5, 0.5]])}
    x = [[0.0, 0.0, 0.0, 0.0], [3.0, 0.0, -4.0, 0.0]]
    y, cache, _ = ref.forward(cfg, params, arr(x))
    h = 0.5 * 5 + 0.1
    a = [h, -h + 0.2]
    g = [sig(a[0]), sig(a[1])]
    np.testing.assert_allclose(y, arr([[v * g[c] for v in x[c]] for c in range(2)]), **EXACT)
    dy = [[1.0, 2.0, 3.0, 4.0], [1.0, -1.0, 0.5, 1.0]]
    dx, _ = ref.backward(cfg, arr(dy), cache)
    da = [sum(d * v for d, v in zip(dy[c], x[c], strict=True)) * g[c] * (1 - g[c]) for c in range(2)]
    dh = da[0] * 1.0 + da[1] * -1.0  # fc2.weight = [[1], [-1]], relu'(2.6) = 1
    dlp = [dh * 0.5, dh * 0.5]  # fc1.weight = [[0.5, 0.5]]
    want = [[dy[0][i] * g[0] + 0.0 for i in range(4)], [dy[1][i] * g[1] + dlp[1] * x[1][i] / 5 for i in range(4)]]
    np.testing.assert_allclose(dx, arr(want), **EXACT)


@pytest.mark.parametrize("pool", ["max", "avg", "lse", "lp"])
def test_nan_in_a_pooled_window_propagates(pool):
    """A NaN anywhere makes its channel's pooled value NaN (max included); the shared MLP spreads it to every channel."""
    cfg = CBAMConfig(channels=2, rd_channels=1, pool_types=(pool,), spatial=False)
    x = arr(XC)
    x[0, 0, 1, 0] = np.nan
    y = ref.forward(cfg, CBAM_MLP, x)[0]
    assert np.isnan(y).all()


@pytest.mark.parametrize("pool", ["max", "mean", "avg", "lse", "lp"])
def test_nan_in_a_window_makes_exactly_that_pooled_value_nan(pool):
    """At the pool level (over C, as CBAM's spatial descriptors, and over H, W): only windows holding the NaN."""
    from reference_numpy import ops

    x = arr(XC)
    x[0, 1, 0, 1] = np.nan
    forward = ops.POOLS[pool][0]
    over_c = forward(x, (1,))  # (1, 1, 2, 2): pixel 1 sees the NaN
    assert np.isnan(over_c).reshape(4).tolist() == [False, True, False, False]
    over_hw = forward(x, (2, 3))  # (1, 2, 1, 1): channel 1 sees the NaN
    assert np.isnan(over_hw).reshape(2).tolist() == [False, True]


def test_nan_in_se_and_eca_propagates():
    x = arr(X)
    x[0, 1, 1, 1] = np.nan
    se = SEConfig(channels=2, rd_channels=2)
    eca = ECAConfig(channels=2, kernel_size=1)
    assert np.isnan(ref.forward(se, ref.init_params(se), x)[0]).all()
    y = ref.forward(eca, {"conv.weight": np.array([1.0])}, x)[0]  # k=1: channels do not mix
    assert np.isnan(y[0, 1]).all()
    np.testing.assert_allclose(y[0, 0], np.array(X[0]).reshape(2, 2) * sig(2.5), **EXACT)
