"""torch_impl under SPEC.md section 1's non-finite rule: the composite path, and the pieces where PyTorch differs.

tests/test_nonfinite_ports.py runs the adapter's default path (the fast one, with hand-written
backwards). Here the same cases run on the composite path (``torch_impl.composite()``: the plain
ops that torch.func, fx, export, torch.compile, forward-mode AD and double backward use), and
each piece of ``torch_impl._ops`` whose PyTorch derivative differs from the rule (relu, relu6
and hardswish pass the gradient at a NaN input; ``amax`` multiplies by an indicator) is held to
the reference's on a hand-made example, on both paths and in both AD modes.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import torch.nn.functional as F  # noqa: E402

import torch_impl  # noqa: E402
from conformance.adapters import get_adapter  # noqa: E402
from conformance.cases import nonfinite_cases  # noqa: E402
from conformance.runner import check_against, reference_outputs  # noqa: E402
from reference_numpy import ops  # noqa: E402
from tests.test_nonfinite_ports import VARIANTS  # noqa: E402
from torch_impl import _ops  # noqa: E402
from torch_impl.cbam import _batch_norm  # noqa: E402

pytestmark = [pytest.mark.torch, pytest.mark.filterwarnings("ignore::RuntimeWarning")]

nan, inf = float("nan"), float("inf")
SPECIAL = [-7.0, -4.0, -3.0, -1.5, -1.0, 0.0, 1.0, 2.5, 3.0, 4.0, 6.0, 7.0, nan, inf, -inf]
"""Inputs on every branch and kink of the piecewise functions, and the non-finite ones."""


def same(got: torch.Tensor, expected) -> None:
    np.testing.assert_array_equal(got.detach().double().numpy(), np.asarray(expected, float))  # NaN == NaN here


def agree(got: torch.Tensor, expected) -> None:
    """NaN and +/-Inf where ``expected`` has them; finite values within a few ulps (formulas differ in rounding)."""
    np.testing.assert_allclose(got.detach().double().numpy(), np.asarray(expected, float), rtol=1e-14, atol=0)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: f"{v.module}-{v.name}")
def test_the_composite_path_follows_the_rule(dtype, variant):
    adapter = get_adapter("torch")
    cfg = variant.build(8)
    failures = []
    for training in (False, True) if cfg.has_batch_norm else (False,):
        for case in nonfinite_cases(cfg, dtype=dtype, training=training):
            want = reference_outputs(case)
            with torch_impl.composite():
                report = check_against(adapter, case, want)
            if not report.passed:
                failures.extend(report.failures())
    assert not failures, f"{len(failures)} case(s):\n" + "\n".join(failures[:40])


# ----------------------------------------------------------------------------- activations and gates


def _cotangents(n: int) -> torch.Tensor:
    return torch.tensor([[inf, nan, -inf, 2.0, 1.0][i % 5] for i in range(n)])


@pytest.mark.parametrize("name", ["relu", "relu6", "hard_swish", "silu", "gelu"])
def test_activation_derivatives_select_when_piecewise(name):
    x = torch.tensor(SPECIAL, dtype=torch.float64)
    g = _cotangents(len(SPECIAL)).double()
    want = ops.ACT_VJPS[name](x.numpy(), g.numpy())
    xr = x.clone().requires_grad_()
    (dx,) = torch.autograd.grad(_ops.ACTIVATIONS[name](xr), xr, g)
    agree(dx, want)
    _, jv = torch.func.jvp(_ops.ACTIVATIONS[name], (x,), (g,))  # elementwise: the JVP is the same selection
    agree(jv, want)


@pytest.mark.parametrize("kind", ["hard_sigmoid", "sigmoid"])
@pytest.mark.parametrize("plain", [False, True], ids=["fast", "composite"])
def test_gate_derivatives(kind, plain):
    # 50: sigmoid(x) rounds to 1; the fast path's sigmoid(x) * sigmoid(-x) is still positive there, the
    # composite path's torch.sigmoid derivative s * (1 - s) is 0 (SPEC.md 1: a precision window, not the rule)
    big = [50.0] if kind == "hard_sigmoid" or not plain else []
    x = torch.tensor([*SPECIAL, *big, -50.0, 800.0, -800.0], dtype=torch.float64)
    g = _cotangents(len(x)).double()
    xr = x.clone().requires_grad_()
    (dx,) = torch.autograd.grad(_ops.gate(xr, kind, plain=plain), xr, g)
    agree(dx, ops.GATE_VJPS[kind](x.numpy(), g.numpy()))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_activation_values_are_the_native_ones(dtype):
    x = torch.cat([torch.tensor(SPECIAL), torch.randn(10_000) * 4]).to(dtype)
    same(_ops.ACTIVATIONS["relu"](x), F.relu(x))
    same(_ops.ACTIVATIONS["relu6"](x), F.relu6(x))
    same(_ops.GATES["hard_sigmoid"](x), F.relu6(x + 3) / 6)
    hs = _ops.ACTIVATIONS["hard_swish"](x)
    same(hs[x <= 3], F.hardswish(x)[x <= 3])
    same(hs[x > 3], x[x > 3])  # PyTorch's x * 6 / 6 rounds; the rule's derivative there is exactly g


def test_hard_swish_second_derivative():
    x = torch.tensor([-2.5, -1.0, 0.5, 2.0, 4.0, -5.0], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(_ops.ACTIVATIONS["hard_swish"], (x,))
    (d1,) = torch.autograd.grad(_ops.ACTIVATIONS["hard_swish"](x).sum(), x, create_graph=True)
    (d2,) = torch.autograd.grad(d1.sum(), x)
    same(d2, [1 / 3, 1 / 3, 1 / 3, 1 / 3, 0.0, 0.0])


# ----------------------------------------------------------------------------- pools


def _pool_grad(x: torch.Tensor, dy: torch.Tensor, kind: str, dims: tuple[int, ...], plain: bool) -> torch.Tensor:
    xr = x.clone().requires_grad_()
    y, _ = _ops.pool(xr, (kind,), dims, plain=plain)
    (dx,) = torch.autograd.grad(y, xr, dy)
    return dx


@pytest.mark.parametrize("plain", [False, True], ids=["fast", "composite"])
@pytest.mark.parametrize("dims", [(1,), (2, 3)], ids=["over-C", "over-HW"])
def test_max_pool_gradient_selects(dims, plain):
    """Ties split, a +Inf max is split among its +Inf entries, a NaN max sends 0 everywhere, whatever dy holds."""
    rows = np.array([[1.0, 3.0, 3.0], [1.0, nan, 2.0], [inf, inf, 0.0], [-inf, -inf, -inf], [0.0, 5.0, 1.0]])
    for dy_rows in ([[inf], [1.0], [nan], [-inf], [2.0]], [[1.0], [inf], [2.0], [3.0], [-inf]], [[1.0]] * 5):
        dy_rows = np.array(dy_rows)
        want_y = ops.POOLS["max"][0](rows, (1,))
        want = ops.POOLS["max"][1](rows, want_y, dy_rows, (1,))
        shape = (5, 3, 1, 1) if dims == (1,) else (5, 1, 1, 3)
        x, dy = torch.from_numpy(rows).reshape(shape), torch.from_numpy(dy_rows).reshape(5, 1, 1, 1)
        y, _ = _ops.pool(x, ("max",), dims, plain=plain)
        same(y.flatten(), want_y[:, 0])
        same(_pool_grad(x, dy, "max", dims, plain).reshape(5, 3), want)


@pytest.mark.parametrize("plain", [False, True], ids=["fast", "composite"])
def test_lse_of_infinite_windows_is_their_limit(plain):
    rows = np.array([[1.0, inf], [-inf, -inf], [nan, 0.0], [-inf, 0.0], [3.0, 2.0]])
    x = torch.from_numpy(rows).reshape(5, 1, 1, 2)
    y, _ = _ops.pool(x, ("lse",), (2, 3), plain=plain)
    want_y = ops.POOLS["lse"][0](rows, (1,))
    same(y.flatten(), want_y[:, 0])
    dy = torch.tensor([2.0, 1.0, 1.0, inf, 1.0], dtype=torch.float64).reshape(5, 1, 1, 1)
    want = ops.POOLS["lse"][1](rows, want_y, dy.numpy().reshape(5, 1), (1,))
    agree(_pool_grad(x, dy, "lse", (2, 3), plain).reshape(5, 2), want)  # composite: g / sum * exp(x - m)


# ----------------------------------------------------------------------------- CBAM's spatial branch


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_a_non_finite_tap_meets_the_padded_zeros(dtype):
    """oneDNN's float32 convolution skips padded taps; the port pads explicitly, so NaN * 0 reaches every output."""
    cbam = torch_impl.CBAM(8, rd_channels=2, spatial_norm=False).to(dtype)
    with torch.no_grad():
        cbam.spatial.conv.weight[0, 0, 0, 0] = nan  # the corner tap: inside the image it meets only a few inputs
    y = cbam(torch.randn(2, 8, 5, 6, dtype=dtype))
    assert torch.isnan(y).all()


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_batch_norm_follows_the_formula_with_an_infinite_weight(training):
    """``(z - mean) * inv_std * weight + bias``: Inf * xhat is +/-Inf, never Inf - Inf (nn.BatchNorm2d folds the bias in)."""
    cbam = torch_impl.CBAM(8, rd_channels=2).double().train(training)
    with torch.no_grad():
        cbam.spatial.bn.weight.fill_(inf)
    z = torch.randn(2, 1, 5, 6, dtype=torch.float64)
    bn = cbam.spatial.bn
    got = _batch_norm(bn, z, batch_statistics=training, update=False)
    mean, var = (z.mean(), z.var(unbiased=False)) if training else (bn.running_mean, bn.running_var)
    xhat = (z - mean) / torch.sqrt(var + bn.eps)
    same(got, xhat * inf + bn.bias.detach())
    assert torch.isinf(got).all()


@pytest.mark.parametrize("path", ["fast", "composite"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("where", [(0, 0, 0, 0), (1, 0, 2, 5), (0, 0, 4, 3)], ids=["corner", "edge", "inside"])
def test_a_non_finite_cotangent_meets_the_padded_zeros_in_the_weight_gradient(where, dtype, path):
    """The weight gradient has the products dz * 0 of the padded taps: NaN where an Inf dz meets one."""
    conv = torch_impl.CBAM(8, rd_channels=2).to(dtype).spatial.conv  # 7x7 on 5x6: every output has padded taps
    d = torch.randn(2, 2, 5, 6, dtype=dtype, requires_grad=True)
    dz = torch.randn(2, 1, 5, 6, dtype=dtype)
    dz[where] = inf
    with torch_impl.composite(path == "composite"):
        dd, dw = torch.autograd.grad(conv(d), [d, conv.weight], dz)
    want_dd, want_dw = ops.conv2d_backward(
        dz.double().numpy(), d.detach().double().numpy(), conv.weight.detach().double().numpy()
    )
    for got, want in ((dw, want_dw), (dd, want_dd)):
        got = got.double().numpy()
        for f in (np.isnan, np.isposinf, np.isneginf):
            np.testing.assert_array_equal(f(got), f(want))
    assert np.isnan(want_dw).any()  # the case is not vacuous: the Inf met a padded zero
