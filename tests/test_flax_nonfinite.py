"""SPEC.md section 1's non-finite rule in the Flax port's pieces (``flax_impl._ops``), on hand-made examples.

Each piece is held to the reference's piece (``reference_numpy.ops``) in reverse mode
(``jax.vjp``) and, where the derivative selects, in forward mode (``jax.jvp``): the unselected
value is an exact 0 whatever the tangent or cotangent holds, and NaN/Inf positions agree
exactly. Whole modules are compared in ``tests/test_nonfinite_ports.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = [pytest.mark.flax, pytest.mark.filterwarnings("ignore::RuntimeWarning")]
jax = pytest.importorskip("jax")

import jax.numpy as jnp  # noqa: E402

from flax_impl import _ops  # noqa: E402
from reference_numpy import ops  # noqa: E402

nan, inf = float("nan"), float("inf")


def same(a, b):
    np.testing.assert_array_equal(np.asarray(a, float), np.asarray(b, float))  # NaN == NaN here


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


def close(a, b):
    """float64 rounding apart, with NaN and +/-Inf in the same places (assert_allclose checks them)."""
    np.testing.assert_allclose(np.asarray(a, float), np.asarray(b, float), rtol=1e-13, atol=1e-13)


def _vjp(f, x, g):
    return jax.vjp(f, jnp.asarray(x))[1](jnp.asarray(g))[0]


@pytest.mark.parametrize(
    "name, x, g",
    [
        ("relu", [-1.0, nan, 2.0, 0.0], [inf, 1.0, nan, inf]),
        ("relu6", [-1.0, nan, 7.0, 3.0], [inf, 1.0, nan, -inf]),
        ("hard_swish", [-4.0, nan, 4.0, 0.0, 3.0, -3.0], [nan, 1.0, inf, inf, -inf, inf]),
        ("silu", [1.0, nan], [inf, 1.0]),
    ],
)
def test_activation_derivatives_select_in_both_modes(name, x, g):
    want = ops.ACT_VJPS[name](np.array(x), np.array(g))
    same(_vjp(_ops.ACTS[name], x, g), want)
    # elementwise: the JVP along g is the VJP of g
    same(jax.jvp(_ops.ACTS[name], (jnp.asarray(x),), (jnp.asarray(g),))[1], want)


def test_hard_sigmoid_derivative_selects_in_both_modes():
    x, g = np.array([-4.0, nan, 0.0, 3.0]), np.array([inf, 1.0, 6.0, inf])
    want = ops.GATE_VJPS["hard_sigmoid"](x, g)
    same(_vjp(_ops.GATES["hard_sigmoid"], x, g), want)
    same(jax.jvp(_ops.GATES["hard_sigmoid"], (jnp.asarray(x),), (jnp.asarray(g),))[1], want)


def _max(x):
    return _ops.pool("max", x, (1,), jnp.float64)


def test_max_pool_selects_splits_ties_and_sends_zeros_from_a_nan_max():
    x = np.array([[1.0, 3.0, 3.0], [1.0, nan, 2.0], [inf, inf, 0.0]])
    y = _max(jnp.asarray(x))
    same(y[:, 0], [3.0, nan, inf])
    g = np.array([[inf], [1.0], [nan]])
    same(_vjp(_max, x, g), ops.POOLS["max"][1](x, np.asarray(y), g, (1,)))
    # forward mode: an infinite tangent off the maximum does not leak in; a NaN max has tangent 0
    t = np.array([[inf, 1.0, 2.0], [1.0, 1.0, 1.0], [1.0, 3.0, nan]])
    same(jax.jvp(_max, (jnp.asarray(x),), (jnp.asarray(t),))[1][:, 0], [1.5, 0.0, 2.0])


def test_space_and_channel_max_pools_take_the_rule_in_both_layouts():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 4, 5))
    x[0, 1, 2, 3] = nan
    x[1, 0, 0, 0] = inf
    for fmt, perm in (("channels_first", (0, 1, 2, 3)), ("channels_last", (0, 2, 3, 1))):
        ctx = _ops.make_ctx(fmt, jnp.float64)
        xs = jnp.asarray(x.transpose(perm))
        g = rng.normal(size=(2, 3))
        g[0, 0] = inf
        dx = _vjp(lambda v, ctx=ctx: _ops.SPACE_POOLS["max"](v, ctx), xs, g)
        y = ops.POOLS["max"][0](x, (2, 3))
        same(np.asarray(dx).transpose(np.argsort(perm)), ops.POOLS["max"][1](x, y, g[:, :, None, None], (2, 3)))
        gc = rng.normal(size=(2, 1, 4, 5))
        gc[1, 0, 0, 0] = -inf
        dxc = _vjp(lambda v, ctx=ctx: _ops.CHANNEL_POOLS["max"](v, ctx), xs, gc.transpose(perm))
        yc = ops.POOLS["max"][0](x, (1,))
        same(np.asarray(dxc).transpose(np.argsort(perm)), ops.POOLS["max"][1](x, yc, gc, (1,)))


def test_lse_shifts_by_a_finite_max_only_and_lp_keeps_nan():
    x = jnp.asarray([[1.0, inf], [-inf, -inf], [nan, 0.0], [-inf, 0.0]])
    same(_ops.pool("lse", x, (1,), jnp.float64)[:, 0], [inf, -inf, nan, 0.0])
    z = jnp.asarray([[0.0, 0.0], [nan, 1.0], [3.0, 4.0]])
    same(_ops.pool("lp", z, (1,), jnp.float64)[:, 0], [0.0, nan, 5.0])
    same(_vjp(lambda v: _ops.pool("lp", v, (1,), jnp.float64), z, [[1.0], [1.0], [5.0]]), [[0, 0], [nan, nan], [3, 4]])


def _eca(z, w, padding="zeros"):
    ctx = _ops.make_ctx("channels_first", jnp.float64)
    return _ops.channel_conv(z, jnp.asarray(w).reshape(-1, 1, 1), padding, ctx)


def test_eca_padded_zeros_are_values_and_nan_does_not_cross_them():
    z = jnp.ones((1, 5))
    same(_eca(z, [nan, 1.0, 1.0]), [[nan] * 5])
    same(_eca(jnp.asarray([[1.0, 1.0, nan]]), jnp.ones(3)), [[2.0, nan, nan]])
    same(_eca(jnp.asarray([[1.0, 1.0, nan]]), jnp.ones(3), "circular"), [[nan] * 3])
    _, vjp = jax.vjp(lambda w: _eca(z, w), jnp.ones(3))
    same(vjp(jnp.asarray([[inf, 0.0, 0.0, 0.0, 0.0]]))[0], [nan, inf, inf])  # the first tap met a padded zero


@pytest.mark.parametrize("padding", ["zeros", "circular"])
def test_eca_input_gradient_has_no_term_for_an_output_that_does_not_exist(padding):
    rng = np.random.default_rng(1)
    z, du = rng.normal(size=(2, 6)), rng.normal(size=(2, 6))
    for w in ([nan, 1.0, 2.0], [0.5, -inf, 2.0], [1.0, 2.0, inf], [0.3, 1.0, -2.0, 0.5, nan]):
        w = np.array(w)
        dz = _vjp(lambda v: _eca(v, w, padding), z, du)  # noqa: B023
        same(dz, ops.conv1d_backward(du, z, w, padding)[0])
    same(_vjp(lambda v: _eca(v, [nan, 1.0, 1.0]), np.ones((1, 5)), np.ones((1, 5))), [[nan] * 4 + [2.0]])


@pytest.mark.parametrize("data_format", ["channels_first", "channels_last"])
def test_spatial_conv_input_gradient_has_no_term_for_an_output_that_does_not_exist(data_format):
    rng = np.random.default_rng(0)
    d, dz = rng.normal(size=(2, 2, 6, 7)), rng.normal(size=(2, 1, 6, 7))
    ctx = _ops.make_ctx(data_format, jnp.float64)
    to, back = ((0, 1, 2, 3), (0, 1, 2, 3)) if data_format == "channels_first" else ((0, 2, 3, 1), (0, 3, 1, 2))
    for tap, value in (((0, 1, 0, 0), nan), ((0, 0, 2, 1), inf), ((0, 1, 1, 1), -inf), (None, None)):
        w = rng.normal(size=(1, 2, 3, 3))
        if tap is not None:
            w[tap] = value
        kernel = jnp.asarray(w.transpose(2, 3, 1, 0))  # OIHW -> HWIO

        def f(v, k, ctx=ctx):
            return _ops.spatial_conv(v, k, ctx)

        y, vjp = jax.vjp(f, jnp.asarray(d.transpose(to)), kernel)
        close(np.asarray(y).transpose(back), ops.conv2d(d, w))
        dd, dk = vjp(jnp.asarray(dz.transpose(to)))
        want_dd, want_dw = ops.conv2d_backward(dz, d, w)
        close(np.asarray(dd).transpose(back), want_dd)
        close(np.asarray(dk).transpose(3, 2, 0, 1), want_dw)
        # the same under jit and vmap
        dd_jit = jax.jit(lambda v, k, g: jax.vjp(f, v, k)[1](g)[0])(
            jnp.asarray(d.transpose(to)), kernel, dz.transpose(to)
        )
        close(dd_jit, dd)
        stacked = jax.vmap(f, in_axes=(None, 0))(jnp.asarray(d.transpose(to)), jnp.stack([kernel, kernel]))
        close(stacked[1], y)


def test_spatial_conv_inf_cotangent_meets_padded_zeros_in_the_weight_gradient():
    ctx = _ops.make_ctx("channels_first", jnp.float64)
    d, w = jnp.ones((1, 1, 4, 4)), jnp.ones((3, 3, 1, 1))
    g = jnp.zeros((1, 1, 4, 4)).at[0, 0, 0, 0].set(inf)
    dw = jax.vjp(lambda k: _ops.spatial_conv(d, k, ctx), w)[1](g)[0]
    same(dw[:, :, 0, 0], [[nan, nan, nan], [nan, inf, inf], [nan, inf, inf]])


def test_eca_tangent_has_no_term_for_a_padded_zero():
    """Forward mode: a padded zero has no tangent, so a NaN tap reaches only the outputs it reads an entry for."""
    z, t = jnp.ones((1, 5)), jnp.ones((1, 5))
    w = jnp.asarray([nan, 1.0, 1.0])  # tap 0 reads channel c - 1: a padded zero for output 0
    same(jax.jvp(lambda v: _eca(v, w), (z,), (t,))[1], [[2.0, nan, nan, nan, nan]])
    same(jax.jvp(lambda v: _eca(v, w, "circular"), (z,), (t,))[1], [[nan] * 5])  # wrapped: a real channel


@pytest.mark.parametrize("data_format", ["channels_first", "channels_last"])
def test_spatial_conv_tangent_has_no_term_for_a_padded_zero(data_format):
    rng = np.random.default_rng(2)
    d, td = rng.normal(size=(2, 2, 6, 7)), rng.normal(size=(2, 2, 6, 7))
    w = rng.normal(size=(1, 2, 3, 3))
    w_zero = w.copy()
    w_zero[0, 1, 0, 0] = 0.0
    w[0, 1, 0, 0] = nan  # output (h, w) reads input (h - 1, w - 1) of channel 1
    ctx = _ops.make_ctx(data_format, jnp.float64)
    to, back = ((0, 1, 2, 3), (0, 1, 2, 3)) if data_format == "channels_first" else ((0, 2, 3, 1), (0, 3, 1, 2))
    kernel = jnp.asarray(w.transpose(2, 3, 1, 0))
    y, t = jax.jvp(lambda v: _ops.spatial_conv(v, kernel, ctx), (jnp.asarray(d.transpose(to)),), (td.transpose(to),))
    assert np.isnan(np.asarray(y)).all()  # the primal: padded zeros are values, 0 * NaN is NaN
    t = np.asarray(t).transpose(back)[:, 0]
    reads = np.zeros((6, 7), bool)
    reads[1:, 1:] = True  # outputs whose upper-left neighbour exists
    assert np.isnan(t[:, reads]).all()
    close(t[:, ~reads], ops.conv2d(td, w_zero)[:, 0][:, ~reads])
