"""SPEC.md section 1, non-finite values: the reference's pieces, each on a hand-made example.

The rule: forward and backward are IEEE arithmetic on the spec's formulas (a padded zero of a
convolution is a value; a gradient has a term for every product of the forward and no
other), except that a piecewise derivative selects: ``where(cond, g * slope, 0)`` with an
exact 0 whatever ``g`` is, and ``cond`` an IEEE comparison (false at NaN).
"""

from __future__ import annotations

import numpy as np
import pytest

from reference_numpy import ops

nan, inf = float("nan"), float("inf")


pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # Inf * 0 = NaN is the rule here


def same(a, b):
    np.testing.assert_array_equal(np.asarray(a, float), np.asarray(b, float))  # NaN == NaN here


@pytest.mark.parametrize(
    "name, x, g, expected",
    [
        ("relu", [-1.0, nan, 2.0, 0.0], [inf, 1.0, nan, inf], [0.0, 0.0, nan, 0.0]),
        ("relu6", [-1.0, nan, 7.0, 3.0], [inf, 1.0, nan, -inf], [0.0, 0.0, 0.0, -inf]),
        ("hard_swish", [-4.0, nan, 4.0, 0.0], [nan, 1.0, inf, inf], [0.0, 0.0, inf, inf * 0.5]),
        ("silu", [1.0, nan], [inf, 1.0], [inf, nan]),
    ],
)
def test_an_activation_derivative_selects_when_piecewise_and_multiplies_when_smooth(name, x, g, expected):
    same(ops.ACT_VJPS[name](np.array(x), np.array(g)), expected)


def test_gate_derivatives():
    same(ops.GATE_VJPS["hard_sigmoid"](np.array([-4.0, nan, 0.0]), np.array([inf, 1.0, 6.0])), [0.0, 0.0, 1.0])
    # sigmoid multiplies by sigmoid(x) * sigmoid(-x): positive at 50 (where 1 - s already rounds to 0),
    # 0 once sigmoid(-x) underflows, and Inf * 0 is NaN
    same(ops.GATE_VJPS["sigmoid"](np.array([50.0, 800.0, nan]), np.array([inf, inf, 1.0])), [inf, nan, nan])


def test_max_pool_gradient_selects_ties_split_and_a_nan_max_gives_zeros():
    x = np.array([[1.0, 3.0, 3.0], [1.0, nan, 2.0], [inf, inf, 0.0]])
    y = ops.POOLS["max"][0](x, (1,))
    same(y[:, 0], [3.0, nan, inf])
    dx = ops.POOLS["max"][1](x, y, np.array([[inf], [1.0], [nan]]), (1,))
    same(dx, [[0.0, inf, inf], [0.0, 0.0, 0.0], [nan, nan, 0.0]])


def test_lse_of_infinite_windows_is_their_limit():
    x = np.array([[1.0, inf], [-inf, -inf], [nan, 0.0], [-inf, 0.0]])
    same(ops.POOLS["lse"][0](x, (1,))[:, 0], [inf, -inf, nan, 0.0])


def test_padded_zeros_are_values_in_the_forward_and_the_weight_gradient():
    z = np.ones((1, 5))
    same(ops.conv1d(z, np.array([nan, 1.0, 1.0]), "zeros"), [[nan] * 5])
    _, dw = ops.conv1d_backward(np.array([[inf, 0.0, 0.0, 0.0, 0.0]]), z, np.ones(3), "zeros")
    same(dw, [nan, inf, inf])  # the first tap met the padded zero left of channel 0
    # a NaN in the last channel does not leak into channel 0 through the (zero) padding
    same(ops.conv1d(np.array([[1.0, 1.0, nan]]), np.ones(3), "zeros"), [[2.0, nan, nan]])


def test_an_input_gradient_has_no_term_for_an_output_that_does_not_exist():
    z = np.ones((1, 5))
    dz, _ = ops.conv1d_backward(np.ones((1, 5)), z, np.array([nan, 1.0, 1.0]), "zeros")
    same(dz, [[nan, nan, nan, nan, 2.0]])  # channel 4 would need output 5
    rng = np.random.default_rng(0)
    d, dz2 = rng.normal(size=(2, 2, 6, 6)), rng.normal(size=(2, 1, 6, 6))
    w = rng.normal(size=(1, 2, 3, 3))
    w_nan = w.copy()
    w_nan[0, 1, 0, 0] = nan  # multiplies input (h - 1, w - 1) into output (h, w)
    dd, _ = ops.conv2d_backward(dz2, d, w_nan)
    w_zero = w.copy()
    w_zero[0, 1, 0, 0] = 0.0
    expected, _ = ops.conv2d_backward(dz2, d, w_zero)
    reached = np.zeros((6, 6), bool)
    reached[:5, :5] = True  # inputs whose lower-right neighbour is an output
    assert np.isnan(dd[:, 1][:, reached]).all()
    np.testing.assert_allclose(dd[:, 1][:, ~reached], expected[:, 1][:, ~reached], rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(dd[:, 0], expected[:, 0], rtol=1e-13, atol=1e-13)


def test_whole_modules_run_quietly_on_non_finite_inputs():
    """The public forward/backward take NaN/Inf as values (no RuntimeWarning, which the suite makes an error)."""
    import warnings

    import reference_numpy as ref

    cfg = ref.CBAMConfig(channels=8, rd_channels=2)  # spatial batch norm on
    x = np.random.default_rng(0).normal(size=(2, 8, 5, 5))
    x[0, 0, 0, 0] = inf
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y, cache, _ = ref.forward(cfg, ref.init_params(cfg), x, training=True)
        dx, _ = ref.backward(cfg, np.full_like(y, nan), cache)
    assert np.isnan(y).all()  # train-mode BN mixes the batch: one Inf reaches every sample
    assert np.isnan(dx).all()
