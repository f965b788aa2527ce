"""The derived error bound (SPEC.md 9.3): its shape and sanity, its use by compare, soundness on the
cases the old relative rule failed, and sensitivity (1e-7 relative caught in float64, 1e-3 in float32)."""

from __future__ import annotations

import numpy as np
import pytest

import reference_numpy as ref
from conformance import compare, get_adapter, make_case, reference_outputs
from conformance.grid import CHANNELS, variants
from conformance.runner import NON_VACUITY_STEP, check_non_vacuity, smallest_caught
from conformance.tolerances import BOUND_FACTOR, UNIT_ROUNDOFF, allowed_error
from reference_numpy import CBAMConfig, ECAConfig, SEConfig

from .conftest import adapter_or_skip

CONFIGS = [
    pytest.param(SEConfig(12, rd_channels=3, act="gelu"), id="se-gelu"),
    pytest.param(CBAMConfig(12, rd_channels=3, pool_types=("avg", "max", "lse", "lp")), id="cbam-all-pools"),
    pytest.param(CBAMConfig(12, rd_channels=3, spatial_pool_order=("mean", "max"), spatial_bias=True), id="cbam-bias"),
    pytest.param(CBAMConfig(12, rd_channels=3, spatial_norm=False, spatial_bias=True), id="cbam-nonorm"),
    pytest.param(CBAMConfig(12, rd_channels=3, spatial=False, act="silu"), id="cbam-nospatial"),
    pytest.param(ECAConfig(12, kernel_size=5, padding="circular", bias=True), id="eca-circular"),
    pytest.param(ECAConfig(12, kernel_size=3), id="eca-zeros"),
]


@pytest.mark.parametrize("cfg", CONFIGS)
@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("data_format", ["channels_first", "channels_last"])
def test_bounds_cover_every_tensor_and_exceed_its_last_rounding(cfg, training, data_format):
    """One M per reference tensor, same shape, finite, and >= |r| (every result is at least rounded once)."""
    want = reference_outputs(make_case(cfg, seed=3, training=training, data_format=data_format))
    b = want.bound
    pairs = [(want.y, b.y), (want.dx, b.dx)]
    assert sorted(b.grads) == sorted(want.grads) and sorted(b.state) == sorted(want.state)
    pairs += [(want.grads[k], b.grads[k]) for k in want.grads] + [(want.state[k], b.state[k]) for k in want.state]
    for r, m in pairs:
        assert m.shape == r.shape
        assert np.isfinite(m).all()
        assert (m >= np.abs(r) * (1 - 1e-12)).all()


def test_bounds_are_layout_independent():
    cfg = CBAMConfig(12, rd_channels=3)
    first = reference_outputs(make_case(cfg, seed=4, training=True))
    last = reference_outputs(make_case(cfg, seed=4, training=True, data_format="channels_last"))
    np.testing.assert_allclose(last.bound.y, first.bound.y.transpose(0, 2, 3, 1), rtol=1e-12)
    for k in first.bound.grads:
        np.testing.assert_allclose(last.bound.grads[k], first.bound.grads[k], rtol=1e-12)


def test_cancelled_sum_gets_a_bound_on_the_size_of_its_terms():
    """A conv bias feeding train-mode BN has gradient ~0 (a cancelled sum): M is the size of its terms."""
    case = make_case(CBAMConfig(12, rd_channels=3, spatial_bias=True), seed=5, training=True)
    want = reference_outputs(case)
    assert abs(want.grads["spatial.conv.bias"][0]) < 1e-12
    assert want.bound.grads["spatial.conv.bias"][0] > 1.0


def test_error_bounds_refuses_a_foreign_cache_and_a_bad_cotangent():
    cfg = ECAConfig(8)
    case = make_case(cfg)
    _, cache, _ = ref.forward(cfg, case.params, case.x)
    with pytest.raises(ValueError, match="forward pass of"):
        ref.error_bounds(ECAConfig(8, kernel_size=5), cache)
    with pytest.raises(ValueError, match="`dy` must have"):
        ref.error_bounds(cfg, cache, np.ones((1, 2)))


def test_compare_uses_the_bound_for_derived_dtypes_only():
    r, m = np.array([1.0]), np.array([100.0])
    allowed = BOUND_FACTOR * (UNIT_ROUNDOFF["float32"] + UNIT_ROUNDOFF["float64"]) * 100.0
    assert compare("t", r + 0.9 * allowed, r, "float32", bound=m).ok
    assert not compare("t", r + 1.1 * allowed, r, "float32", bound=m).ok
    assert compare("t", r + 1.1 * allowed, r, "float32", bound=m).rule == "derived"
    # half types keep the relative rule whatever bound is given
    half = compare("t", r + 1e-3, r, "bfloat16", bound=m)
    assert half.ok and half.rule == "relative"
    np.testing.assert_array_equal(allowed_error("float16", r, m), allowed_error("float16", r))


@pytest.mark.parametrize("bad", [-1.0, np.nan])
def test_compare_refuses_a_negative_or_nan_bound(bad):
    with pytest.raises(ValueError, match="must be >= 0"):
        compare("grad[x]", [1.0, 2.0], [1.0, 2.0], "float64", bound=[1.0, bad])


def test_compare_refuses_a_bound_of_the_wrong_shape():
    with pytest.raises(ValueError, match="must broadcast to shape"):
        compare("y", [1.0, 2.0], [1.0, 2.0], "float64", bound=[1.0, 2.0, 3.0])


@pytest.mark.parametrize("module", ["se", "cbam", "eca"])
def test_float64_catches_a_1e7_relative_weight_perturbation(module):
    """SPEC.md 9.4 acceptance: the non-vacuity check catches 1e-7 relative in float64."""
    variant = variants((module,))[0]
    case = make_case(variant.build(CHANNELS), seed=0, training=True)
    numpy = get_adapter("numpy")
    assert NON_VACUITY_STEP["float64"] == 1e-7
    assert check_non_vacuity(numpy, case) == []
    assert smallest_caught(numpy, case) <= 1e-7


@pytest.mark.torch
@pytest.mark.parametrize("module", ["se", "cbam", "eca"])
def test_float32_catches_a_1e3_relative_weight_perturbation(module):
    """SPEC.md 9.4 acceptance: 1e-3 relative caught in float32 (PyTorch computes the float32 answers)."""
    torch_adapter = adapter_or_skip("torch")
    variant = variants((module,))[0]
    case = make_case(variant.build(CHANNELS), seed=0, dtype="float32", training=True)
    assert NON_VACUITY_STEP["float32"] == 1e-3
    assert check_non_vacuity(torch_adapter, case) == []
    assert smallest_caught(torch_adapter, case) <= 1e-3


@pytest.mark.torch
@pytest.mark.parametrize("seed", [0, 1, 4])  # 4: the bfloat16 running mean that once false-alarmed
def test_full_grid_passes_a_correct_port(seed):
    """A CI-sized `--full` run: the CBAM knob grid and edge cases (where the old relative rule raised
    false alarms in float32: cancelled sums, one-element tensors at C=1) pass with PyTorch."""
    adapter_or_skip("torch")
    from conformance.report import run_matrix

    m = run_matrix(["numpy", "torch"], modules=("cbam",), full=True, seed=seed, progress=False, nonfinite=False)
    assert m.passed, "\n".join(m.failures[:20])
    worst32 = max(r.cells["torch"].per_dtype["float32"] for r in m.rows)
    assert 0 < worst32 <= 1
    assert m.smallest_caught("torch")["float32"] <= 1e-3
    assert m.smallest_caught("numpy")["float64"] <= 1e-7


def test_a_half_type_running_mean_is_judged_on_the_scale_of_what_it_averages():
    """SPEC.md 9.3: a cancelled bfloat16 running mean (seed 4 of cbam/timm) is not a false alarm,
    while a running mean off by 3% of the values' scale (a wrong momentum's size) still fails."""
    from conformance.adapters.base import Outputs
    from conformance.runner import compare_outputs

    cfg = next(v for v in variants(("cbam",), full=True) if v.name == "timm").build(CHANNELS)
    case = make_case(cfg, seed=4, dtype="bfloat16", training=True, name="timm")
    want = reference_outputs(case, with_grads=False)
    rm, rv = want.state["spatial.bn.running_mean"], want.state["spatial.bn.running_var"]
    assert abs(rm).max() < 0.02 < 1.0 < rv.max()  # the mean cancels; the values it averages are O(1)
    scale = float(np.sqrt(rv.max() + rm.max() ** 2))
    for shift, ok in ((6.65e-4, True), (0.03 * scale, False)):  # the error seen from PyTorch; a real bug
        got = Outputs(want.y, state={**want.state, "spatial.bn.running_mean": rm + shift})
        (cmp,) = [c for c in compare_outputs(got, want, "bfloat16", 4) if c.name.endswith("running_mean]")]
        assert cmp.ok is ok, cmp
    # the old scale, max|r| of the mean alone, called PyTorch's 6.65e-4 a failure
    assert 6.65e-4 > allowed_error("bfloat16", rm).max()
