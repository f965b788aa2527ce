"""The conformance core (SPEC.md section 9): compare, tolerances, rounding, cases, the runner and non-vacuity.

The NumPy reference, run through its own adapter, must pass every case; and the same
comparisons must FAIL for a perturbed weight, a swapped spatial_pool_order, and adapters
with typical porting bugs.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

import reference_numpy as ref
from conformance import (
    DTYPES,
    TOLERANCES,
    Adapter,
    Outputs,
    check_case,
    check_non_vacuity,
    compare,
    edge_cases,
    get_adapter,
    make_case,
    reference_outputs,
    round_to_dtype,
    tolerance,
)
from conformance.adapters.numpy_ref import NumpyAdapter
from reference_numpy import CBAMConfig, ECAConfig, SEConfig

FLOAT_DTYPES = [pytest.param(d, id=d) for d in ("float64", "float32", "bfloat16", "float16")]

# ----------------------------------------------------------------------------- tolerance table


def test_tolerance_table_is_spec_section_9():
    spec = {  # SPEC.md section 9, copied by hand: dtype -> (rtol, atol times max |reference|)
        "float64": (1e-10, 1e-12),
        "float32": (1e-5, 1e-6),
        "bfloat16": (2e-2, 1e-2),
        "float16": (2e-3, 1e-3),
    }
    assert {k: (v.rtol, v.atol) for k, v in TOLERANCES.items()} == spec
    assert set(DTYPES) == set(spec)
    for dtype, (rtol, atol) in spec.items():
        assert tolerance(dtype) == (rtol, atol)
        assert tolerance(dtype).rtol == rtol and tolerance(dtype).atol == atol


@pytest.mark.parametrize("dtype", ["float8", "int32", "", "Float32"])
def test_unknown_dtype_has_no_tolerance(dtype):
    with pytest.raises(
        ValueError,
        match=rf"No tolerance for dtype {dtype!r}\. Expected one of 'float64', 'float32', 'bfloat16', 'float16'",
    ):
        tolerance(dtype)


# ----------------------------------------------------------------------------- compare


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("fraction", [0.0, 0.5, 0.99, 1.01, 2.0, 50.0])
def test_compare_error_ratio_and_verdict(dtype, fraction):
    """One element off by ``fraction`` times its allowance ``atol * max|r| + rtol * |r|``."""
    tol = tolerance(dtype)
    expected = np.array([[1.0, -4.0, 2.0], [0.5, 3.0, -0.25]])
    allowed = tol.atol * 4.0 + tol.rtol * 3.0  # at index (1, 1)
    actual = expected.copy()
    actual[1, 1] += fraction * allowed
    c = compare("grad[fc1.weight]", actual, expected, dtype, seed=17)
    assert c.ok is (fraction <= 1.0)
    assert c.error_ratio == pytest.approx(fraction, rel=1e-5, abs=1e-12)  # the offset itself is rounded
    assert c.scale == 4.0
    assert c.seed == 17 and c.name == "grad[fc1.weight]" and c.dtype == dtype
    if fraction > 0:
        assert c.worst_index == (1, 1)
        assert c.actual == actual[1, 1] and c.expected == 3.0


def test_compare_relative_term_scales_with_each_element():
    """A small element may be off by less than a large one: the allowance is per element, plus a tensor-wide floor."""
    tol = tolerance("float32")
    expected = np.array([1000.0, 1.0])
    floor = tol.atol * 1000.0
    ok = compare("y", expected + np.array([tol.rtol * 1000.0 + floor, 0.9 * floor]), expected, "float32")
    assert ok.ok
    bad = compare("y", expected + np.array([0.0, 1.1 * (floor + tol.rtol * 1.0)]), expected, "float32")
    assert not bad.ok and bad.worst_index == (1,)


def test_compare_scale_argument_replaces_the_tensor_maximum():
    tol = tolerance("float64")
    expected = np.array([1e-20, -2e-20])  # zero at float64 precision
    actual = np.array([3e-13, 0.0])
    assert not compare("grad[b]", actual, expected, "float64").ok
    c = compare("grad[b]", actual, expected, "float64", scale=1.0)
    assert c.ok and c.scale == 1.0
    assert c.error_ratio == pytest.approx((3e-13 - 1e-20) / (tol.atol * 1.0 + tol.rtol * 1e-20))


def test_compare_message_names_everything():
    tol = tolerance("float32")
    expected = np.array([1.0, 2.0, -8.0])
    actual = expected.copy()
    actual[2] = -8.0 + 10 * (tol.atol * 8.0 + tol.rtol * 8.0)
    c = compare("grad[spatial.conv.weight]", actual, expected, "float32", seed=1234)
    msg = c.message
    assert msg == str(c)
    assert msg.startswith("grad[spatial.conv.weight] (float32, seed 1234): MISMATCH")
    assert "worst at index (2,)" in msg
    assert f"got {float(actual[2])!r}" in msg and "expected -8.0" in msg
    assert "error 10x the tolerance" in msg
    ok = compare("y", expected, expected, "float32", seed=5)
    assert ok.message.startswith("y (float32, seed 5): ok, worst at index (0,)")
    assert "seed" not in compare("y", expected, expected, "float32").message


@pytest.mark.parametrize(
    ("actual", "expected", "ok", "worst"),
    [
        pytest.param([1.0, np.nan], [1.0, np.nan], True, None, id="nan_matches_nan"),
        pytest.param([1.0, np.nan], [1.0, 2.0], False, (1,), id="nan_vs_number"),
        pytest.param([1.0, 2.0], [1.0, np.nan], False, (1,), id="number_vs_nan"),
        pytest.param([np.inf, -np.inf], [np.inf, -np.inf], True, None, id="inf_matches_inf"),
        pytest.param([1.0, np.inf], [1.0, -np.inf], False, (1,), id="inf_vs_minus_inf"),
        pytest.param([1.0, np.inf], [1.0, 2.0], False, (1,), id="inf_vs_number"),
        pytest.param([1.0, 2.0], [1.0, np.inf], False, (1,), id="number_vs_inf"),
        pytest.param([np.nan, np.nan], [np.nan, np.nan], True, None, id="all_nan"),
        pytest.param([np.nan, 3.0], [np.inf, 3.0], False, (0,), id="nan_vs_inf"),
    ],
)
def test_compare_non_finite(actual, expected, ok, worst):
    c = compare("y", actual, expected, "float64", seed=0)
    assert c.ok is ok
    if not ok:
        assert c.error_ratio == math.inf
        assert c.worst_index == worst
        assert "MISMATCH" in c.message and f"index {worst}" in c.message
    else:
        assert c.error_ratio == 0.0


def test_compare_nan_among_finite_values_uses_finite_scale():
    c = compare("y", [np.nan, 1.0, 100.0], [np.nan, 1.0, 100.0 * (1 + 1e-12)], "float64")
    assert c.ok and c.scale == pytest.approx(100.0)


@pytest.mark.parametrize(
    ("actual", "expected", "note"),
    [
        pytest.param(np.zeros(2), np.zeros(3), "shape (2,), expected (3,)", id="length"),
        pytest.param(np.zeros((3, 1)), np.zeros(3), "shape (3, 1), expected (3,)", id="no_broadcast"),
        pytest.param(np.zeros((2, 3)), np.zeros((3, 2)), "shape (2, 3), expected (3, 2)", id="transposed"),
        pytest.param(np.zeros(()), np.zeros(1), "shape (), expected (1,)", id="scalar"),
    ],
)
def test_compare_shape_mismatch_fails_with_a_note(actual, expected, note):
    c = compare("dx", actual, expected, "float32", seed=3)
    assert not c.ok
    assert c.error_ratio == math.inf and c.worst_index is None and c.actual is None
    assert c.note == note
    assert c.message == f"dx (float32, seed 3): {note}"


def test_compare_unreadable_actual_fails():
    c = compare("y", ["a", object()], [1.0, 2.0], "float64")
    assert not c.ok and c.note.startswith("could not be read as an array")


def test_compare_empty_tensors_pass():
    c = compare("y", np.zeros((0, 3)), np.zeros((0, 3)), "float16")
    assert c.ok and c.error_ratio == 0.0


def test_compare_unknown_dtype_raises():
    with pytest.raises(ValueError, match="No tolerance for dtype 'float128'"):
        compare("y", [1.0], [1.0], "float128")


# ----------------------------------------------------------------------------- round_to_dtype


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_round_to_numpy_dtypes(dtype):
    rng = np.random.default_rng(0)
    a = np.concatenate(
        [rng.normal(size=1000) * 10.0 ** rng.integers(-8, 8, size=1000), [0.0, -0.0, np.inf, -np.inf, 1e300]]
    )
    with np.errstate(over="ignore"):  # 1e300 rounds to inf
        want = a.astype(dtype).astype(np.float64)
        got = round_to_dtype(a, dtype)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(round_to_dtype(got, dtype), got)  # idempotent


def test_round_to_float64_is_a_copy():
    a = np.array([1.0 + 2**-52, np.nan])
    got = round_to_dtype(a, "float64")
    np.testing.assert_array_equal(got, a)
    got[0] = 0.0
    assert a[0] == 1.0 + 2**-52


def _bfloat16_inputs(rng: np.random.Generator) -> np.ndarray:
    """Random float32 values of every magnitude, exact ties (low 16 bits 0x8000), near-ties, specials."""
    bits = rng.integers(0, 2**32, size=4000, dtype=np.uint64).astype(np.uint32)
    ties = (bits & np.uint32(0xFFFF0000)) | np.uint32(0x8000)
    below = ties - np.uint32(1)
    above = ties + np.uint32(1)
    pattern = np.concatenate([bits, ties, below, above]).view(np.float32)
    special = np.array(
        [
            1.0 + 2**-8,  # tie between 1 and 1 + 2**-7: to even (1.0)
            1.0 + 3 * 2**-8,  # tie: to even (1 + 2**-6)
            -(1.0 + 2**-8),
            2**-133,  # float32 subnormal
            np.finfo(np.float32).max,  # rounds to inf
            np.finfo(np.float32).tiny,
            0.0,
            -0.0,
            np.inf,
            -np.inf,
            np.nan,
        ],
        dtype=np.float32,
    )
    normal = (rng.normal(size=2000) * 10.0 ** rng.integers(-30, 30, size=2000)).astype(np.float32)
    with np.errstate(invalid="ignore"):  # signalling-NaN bit patterns
        return np.concatenate([pattern, special, normal]).astype(np.float64)


def test_round_to_bfloat16_matches_ml_dtypes():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    a = _bfloat16_inputs(np.random.default_rng(1))
    with np.errstate(over="ignore", invalid="ignore"):
        want = a.astype(np.float32).astype(ml_dtypes.bfloat16).astype(np.float64)
        got = round_to_dtype(a, "bfloat16")
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, want)  # NaN positions must agree too
    np.testing.assert_array_equal(round_to_dtype(got, "bfloat16"), got)


def test_round_to_bfloat16_from_float64_goes_through_float32_like_the_frameworks():
    """float64 inputs are rounded to float32 first, as PyTorch, JAX and TensorFlow cast them.

    ml_dtypes 0.7 rounds float64 to bfloat16 in one step, so it is only a witness after an
    explicit float32 cast; 1 + 2**-8 + 2**-30 is the value on which the two rules differ.
    """
    ml_dtypes = pytest.importorskip("ml_dtypes")
    rng = np.random.default_rng(2)
    a = np.concatenate([rng.normal(size=5000) * 10.0 ** rng.integers(-20, 20, size=5000), [1.0 + 2**-8 + 2**-30]])
    want = a.astype(np.float32).astype(ml_dtypes.bfloat16).astype(np.float64)
    np.testing.assert_array_equal(round_to_dtype(a, "bfloat16"), want)
    assert round_to_dtype(np.array([1.0 + 2**-8 + 2**-30]), "bfloat16").tolist() == [1.0]


def test_round_to_bfloat16_from_float64_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    a = np.concatenate([rng.normal(size=5000) * 10.0 ** rng.integers(-20, 20, size=5000), [1.0 + 2**-8 + 2**-30]])
    want = torch.from_numpy(a).to(torch.bfloat16).double().numpy()
    np.testing.assert_array_equal(round_to_dtype(a, "bfloat16"), want)


def test_round_to_bfloat16_ties_to_even_by_hand():
    a = np.array([1.0 + 2**-8, 1.0 + 3 * 2**-8, 1.0 + 2**-8 + 2**-20, 2.0 - 2**-8, -(1.0 + 2**-8)])
    np.testing.assert_array_equal(round_to_dtype(a, "bfloat16"), [1.0, 1.0 + 2**-6, 1.0 + 2**-7, 2.0, -1.0])


def test_round_to_unknown_dtype():
    with pytest.raises(ValueError, match=r"Unknown dtype 'int8'\. Expected float64, float32, bfloat16 or float16"):
        round_to_dtype(np.zeros(2), "int8")


# ----------------------------------------------------------------------------- cases

MODULE_CONFIGS = [
    pytest.param(SEConfig(16), id="se"),
    pytest.param(SEConfig.preset("timm", channels=12), id="se-timm"),
    pytest.param(CBAMConfig(16), id="cbam"),
    pytest.param(
        CBAMConfig.preset("timm", channels=8, spatial_bias=True, pool_types=("avg", "max", "lse", "lp")),
        id="cbam-timm-all",
    ),
    pytest.param(CBAMConfig(8, spatial=False), id="cbam-nospatial"),
    pytest.param(ECAConfig(16), id="eca"),
    pytest.param(ECAConfig.preset("timm_ceca", channels=12, bias=True), id="eca-ceca"),
]
SMALL_CONFIGS = [  # C <= 8: make_case can draw these tie-free in every dtype
    pytest.param(SEConfig(8, rd_ratio=0.5), id="se"),
    pytest.param(
        CBAMConfig.preset("timm", channels=8, spatial_bias=True, pool_types=("avg", "max", "lse", "lp")),
        id="cbam-timm-all",
    ),
    pytest.param(ECAConfig.preset("timm_ceca", channels=6, bias=True), id="eca-ceca"),
]
MODES = [pytest.param(False, id="eval"), pytest.param(True, id="train")]
FORMATS = [pytest.param("channels_first", id="nchw"), pytest.param("channels_last", id="nhwc")]


def _nchw(case, a):
    return a if case.data_format == "channels_first" else a.transpose(0, 3, 1, 2)


def _assert_tie_free(x: np.ndarray) -> None:
    n, c, h, w = x.shape
    over_hw = np.sort(x.reshape(n, c, h * w), axis=-1)
    assert (np.diff(over_hw, axis=-1) != 0).all()
    assert (np.diff(np.sort(x, axis=1), axis=1) != 0).all()


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("data_format", FORMATS)
def test_make_case_is_deterministic(dtype, data_format):
    cfg = CBAMConfig(8)
    a = make_case(cfg, seed=7, dtype=dtype, training=True, data_format=data_format)
    b = make_case(cfg, seed=7, dtype=dtype, training=True, data_format=data_format)
    for name in ("x", "dy"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.params.keys() == b.params.keys()
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
    c = make_case(cfg, seed=8, dtype=dtype, training=True, data_format=data_format)
    assert not np.array_equal(a.x, c.x) and not np.array_equal(a.dy, c.dy)
    assert not np.array_equal(a.params["spatial.conv.weight"], c.params["spatial.conv.weight"])


@pytest.mark.parametrize("cfg", SMALL_CONFIGS)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_make_case_shapes_values_and_params(cfg, dtype):
    case = make_case(cfg, seed=3, dtype=dtype, data_format="channels_last", training=True)
    x = _nchw(case, case.x)
    n, c, h, w = x.shape
    assert c == cfg.channels
    assert len({n, c, h, w}) == 4, (n, c, h, w)  # pairwise distinct, hence non-square
    assert h != w
    if hasattr(cfg, "hidden"):
        assert cfg.hidden not in (n, h, w)
        if cfg.hidden != c:  # C == hidden only when the config forces it
            assert c != cfg.hidden
    assert case.dy.shape == case.x.shape
    assert case.x.dtype == np.float64 and case.dy.dtype == np.float64
    _assert_tie_free(x)
    # every value is exactly representable in the case's dtype
    for a in (case.x, case.dy, *case.params.values()):
        np.testing.assert_array_equal(round_to_dtype(a, dtype), a)
    layout = ref.param_layout(cfg)
    assert list(case.params) == list(layout)
    init = ref.init_params(cfg, seed=3)
    for k, spec in layout.items():
        assert case.params[k].shape == spec.shape
        assert not np.array_equal(case.params[k], init[k]), k  # moved away from the init
        if spec.kind == "bn_var":
            assert ((case.params[k] >= 0.49) & (case.params[k] <= 2.01)).all()
    assert case.id == f"{cfg.module}-default-{dtype}-train-nhwc"


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize(
    "cfg",
    [
        pytest.param(SEConfig(24), id="se-24"),  # no max pool at all: ties are harmless here
        pytest.param(ECAConfig(24), id="eca-24"),
        pytest.param(CBAMConfig(16), id="cbam-16"),
        pytest.param(CBAMConfig(24), id="cbam-24"),  # conformance.grid.CHANNELS
        pytest.param(CBAMConfig.preset("timm", channels=24), id="cbam-timm-24"),  # shape (3, 24, 6, 5)
    ],
)
def test_make_case_draws_half_precision_cases_at_the_grid_size(cfg, dtype):
    """BUG (conformance/cases.py make_case): redrawing the WHOLE tensor until no window has a tie almost
    never succeeds in bfloat16 for C >= 16 (8 bits of mantissa; ~60 windows), so every bfloat16 case of
    the port grid (C=24) raises "Could not draw a tie-free input", as does float16 for (3, 24, 6, 5)."""
    case = make_case(cfg, seed=11, dtype=dtype)
    _assert_tie_free(case.x)
    np.testing.assert_array_equal(round_to_dtype(case.x, dtype), case.x)


@pytest.mark.parametrize(
    "cfg",
    [
        pytest.param(SEConfig(24), id="se-official"),
        pytest.param(SEConfig(16, act="relu6"), id="se-relu6"),
        pytest.param(CBAMConfig(24), id="cbam-official"),
        pytest.param(CBAMConfig(16, pool_types=("max",)), id="cbam-max"),
    ],
)
def test_make_case_keeps_every_hidden_unit_alive(numpy_adapter, cfg):
    """BUG (conformance/cases.py make_case): with hidden = 1 and a relu, a fresh case often has the unit
    dead for every sample and pool, so y does not depend on fc1 and grad[fc1.*] is identically zero: the
    fc1 comparisons cannot fail (check_non_vacuity reports "perturbed fc1.weight"). Seed 11 is the seed
    of the port grid's presets; about a third of all seeds are affected."""
    vacuous = {seed: check_non_vacuity(numpy_adapter, make_case(cfg, seed=seed)) for seed in range(16)}
    assert {seed: u for seed, u in vacuous.items() if u} == {}


def test_make_case_shape_argument_is_nchw_whatever_the_format():
    case = make_case(ECAConfig(5), shape=(2, 5, 4, 3), data_format="channels_last")
    assert case.x.shape == (2, 4, 3, 5)


@pytest.mark.parametrize("cfg", MODULE_CONFIGS)
@pytest.mark.parametrize("training", MODES)
def test_edge_cases(cfg, training):
    cases = {c.name: c for c in edge_cases(cfg, seed=4, training=training, data_format="channels_last")}
    want = {"n1", "large", "small", "c1", "c_below_ratio"}
    if not (training and cfg.has_batch_norm):
        want.add("hw1")
    assert set(cases) == want
    for case in cases.values():
        assert case.training is training and case.data_format == "channels_last" and case.seed == 4
    default = make_case(cfg, seed=4, training=training)
    assert _nchw(cases["n1"], cases["n1"].x).shape[0] == 1
    if "hw1" in cases:
        assert _nchw(cases["hw1"], cases["hw1"].x).shape[2:] == (1, 1)
    assert cases["c1"].cfg.channels == 1 and _nchw(cases["c1"], cases["c1"].x).shape[1] == 1
    assert cases["c_below_ratio"].cfg.channels < 16  # fewer channels than 1 / rd_ratio
    if hasattr(cfg, "hidden"):
        assert cases["c_below_ratio"].cfg.hidden >= 1
    top = float(np.abs(default.x).max())
    assert float(np.abs(cases["large"].x).max()) >= 100 * top
    assert float(np.abs(cases["small"].x).max()) <= top / 100
    for case in cases.values():
        if case.cfg.module == "cbam" or "max" in getattr(case.cfg, "pool_types", ()):
            _assert_tie_free(_nchw(case, case.x))


def test_edge_cases_in_half_precision_stay_finite():
    for case in edge_cases(CBAMConfig(16), dtype="float16"):
        assert np.isfinite(case.x).all()
        np.testing.assert_array_equal(round_to_dtype(case.x, "float16"), case.x)


def test_edge_cases_shrink_rd_channels_with_the_channel_count():
    cases = {c.name: c for c in edge_cases(SEConfig.preset("torchvision", channels=16, rd_channels=8))}
    assert cases["c1"].cfg.rd_channels == 1
    assert cases["c_below_ratio"].cfg.rd_channels == 5


# ----------------------------------------------------------------------------- the runner with the numpy adapter


@pytest.fixture(scope="module")
def numpy_adapter() -> Adapter:
    return get_adapter("numpy")


@pytest.mark.parametrize("cfg", MODULE_CONFIGS)
@pytest.mark.parametrize("training", MODES)
@pytest.mark.parametrize("data_format", FORMATS)
def test_numpy_adapter_passes_every_case(numpy_adapter, cfg, training, data_format):
    for case in [
        make_case(cfg, seed=5, training=training, data_format=data_format),
        *edge_cases(cfg, seed=5, training=training, data_format=data_format),
    ]:
        report = check_case(numpy_adapter, case)
        assert report.passed, "\n".join(report.failures())
        assert report.worst == 0.0  # the reference against itself is bit-exact
        names = [c.name for c in report.comparisons]
        trainable = [k for k, s in ref.param_layout(case.cfg).items() if s.trainable]
        want = ["y", "dx", *(f"grad[{k}]" for k in trainable)]
        if training and case.cfg.has_batch_norm:
            want += ["state[spatial.bn.running_mean]", "state[spatial.bn.running_var]"]
        assert names == want


@pytest.mark.parametrize("cfg", MODULE_CONFIGS)
@pytest.mark.parametrize("training", MODES)
@pytest.mark.parametrize("data_format", FORMATS)
def test_non_vacuity_with_the_numpy_adapter(numpy_adapter, cfg, training, data_format):
    case = make_case(cfg, seed=0, training=training, data_format=data_format)
    assert check_non_vacuity(numpy_adapter, case) == []


@pytest.mark.parametrize("training", MODES)
@pytest.mark.parametrize("data_format", FORMATS)
@pytest.mark.parametrize("order", [("max", "mean"), ("mean", "max")], ids=["max_mean", "mean_max"])
def test_swapped_spatial_pool_order_fails_the_comparison(training, data_format, order):
    cfg = CBAMConfig(16, spatial_pool_order=order)
    case = make_case(cfg, seed=9, training=training, data_format=data_format)
    swapped = dataclasses.replace(case, cfg=cfg.replace(spatial_pool_order=order[::-1]))
    got, want = reference_outputs(swapped), reference_outputs(case)
    y = compare("y", got.y, want.y, "float64", seed=case.seed)
    assert not y.ok and y.error_ratio > 1e3
    assert not compare(
        "grad[spatial.conv.weight]", got.grads["spatial.conv.weight"], want.grads["spatial.conv.weight"], "float64"
    ).ok
    # and even at the loosest tolerance of the table
    loosest = max(DTYPES, key=lambda d: tolerance(d).rtol)
    assert not compare("y", got.y, want.y, loosest).ok


class _PerturbedWeight(NumpyAdapter):
    """The reference with one canonical tensor scaled by ``1 + amount`` and shifted by ``amount`` on load."""

    def __init__(self, param: str, amount: float):
        self.param, self.amount = param, amount

    def load(self, module, cfg, params, dtype):
        p = {**params, self.param: params[self.param] * (1 + self.amount) + self.amount}
        return super().load(module, cfg, p, dtype)


def _trainable(cfg) -> list:
    return [k for k, s in ref.param_layout(cfg).items() if s.trainable]


@pytest.mark.parametrize("cfg", SMALL_CONFIGS)
@pytest.mark.parametrize(
    ("dtype", "amount"),
    [
        # check_non_vacuity's own perturbation (1e-2) at the full-precision tolerances
        pytest.param("float64", 1e-2, id="float64"),
        pytest.param("float32", 1e-2, id="float32"),
        # the half-precision tolerances (2e-2 / 2e-3 relative) need a coarser perturbation
        pytest.param("float16", 0.1, id="float16"),
        pytest.param("bfloat16", 0.5, id="bfloat16"),
    ],
)
@pytest.mark.parametrize("training", MODES)
def test_perturbed_weight_fails_the_comparison(cfg, dtype, amount, training):
    """Every trainable tensor, perturbed alone, makes check_case fail (output, or gradients where compared)."""
    case = make_case(cfg, seed=10, dtype=dtype, training=training)
    with_grads = dtype in ("float64", "float32")
    assert check_case(get_adapter("numpy"), case, with_grads=with_grads).passed
    for name in _trainable(cfg):
        report = check_case(_PerturbedWeight(name, amount), case, with_grads=with_grads)
        assert not report.passed, name


# ----------------------------------------------------------------------------- the runner against broken adapters


class _Broken(Adapter):
    """The numpy reference with one deliberate porting bug; ``bug`` names it."""

    name = "broken"
    dtypes = ("float64",)
    grad_dtypes = ("float64",)

    def __init__(self, bug: str):
        self.bug = bug

    def build(self, cfg, dtype):
        return {"cfg": cfg}

    def load(self, module, cfg, params, dtype):
        return {**module, "params": dict(params)}

    def evaluate(self, module, x, dy, *, training, data_format, dtype):
        cfg, params = module["cfg"], module["params"]
        if self.bug == "swapped_order":
            cfg = cfg.replace(spatial_pool_order=cfg.spatial_pool_order[::-1])
        if self.bug == "transposed_fc1":
            w = params["channel.fc1.weight"]
            params = {**params, "channel.fc1.weight": w.T.reshape(w.shape)}
        if self.bug == "raises":
            raise RuntimeError("kernel exploded")
        y, cache, state = ref.forward(cfg, params, x, training=training, data_format=data_format)
        if self.bug == "biased_running_var" and state:  # feeds the biased batch variance to the update
            n, m = x.size // cfg.channels, cfg.bn_momentum
            prior = params["spatial.bn.running_var"]
            unbiased = (state["spatial.bn.running_var"] - (1 - m) * prior) / m
            state = {**state, "spatial.bn.running_var": (1 - m) * prior + m * unbiased * (n - 1) / n}
        if dy is None:
            return Outputs(y, state=state)
        dx, grads = ref.backward(module["cfg"] if self.bug != "swapped_order" else cfg, dy, cache)
        if self.bug == "missing_grad":
            grads.pop("channel.fc2.bias")
        if self.bug == "extra_grad":
            grads["spatial.bn.running_mean"] = np.zeros(1)
        if self.bug == "zeroed_bn_bias_grad":
            grads["spatial.conv.bias"] = np.zeros(1)  # correct: it is zero at float64 precision
        if self.bug == "no_state":
            state = {}
        return Outputs(y, dx, grads, state)


BUG_CASE = CBAMConfig(16, rd_channels=4, spatial_bias=True)


@pytest.mark.parametrize(
    ("bug", "failing"),
    [
        pytest.param("swapped_order", "y", id="swapped_order"),
        pytest.param("transposed_fc1", "y", id="transposed_fc1"),
        pytest.param("biased_running_var", "state[spatial.bn.running_var]", id="biased_running_var"),
        pytest.param("missing_grad", "grad[channel.fc2.bias]", id="missing_grad"),
        pytest.param("extra_grad", "grad[spatial.bn.running_mean]", id="extra_grad"),
        pytest.param("no_state", "state[spatial.bn.running_mean]", id="no_state"),
    ],
)
def test_runner_catches_porting_bugs(bug, failing):
    case = make_case(BUG_CASE, seed=12, training=True)
    report = check_case(_Broken(bug), case)
    assert not report.passed
    failed = [c.name for c in report.comparisons if not c.ok]
    assert failing in failed
    lines = report.failures()
    assert any(line.startswith(f"broken {case.id}: {failing} (float64, seed 12)") for line in lines), lines


def test_runner_reports_an_exception_as_a_failure():
    case = make_case(BUG_CASE, seed=12, training=True)
    report = check_case(_Broken("raises"), case)
    assert not report.passed and report.comparisons == []
    assert report.error == "RuntimeError: kernel exploded"
    assert report.failures() == [f"broken {case.id}: raised RuntimeError: kernel exploded"]
    assert report.worst == math.inf


def test_runner_compares_a_gradient_that_is_zero_at_float64_on_the_case_scale():
    """A conv bias feeding train-mode BN has gradient ~1e-17: an exact zero from a port must pass."""
    case = make_case(BUG_CASE, seed=12, training=True)
    want = reference_outputs(case)
    assert float(np.abs(want.grads["spatial.conv.bias"]).max()) < 1e-12
    report = check_case(_Broken("zeroed_bn_bias_grad"), case)
    assert report.passed, "\n".join(report.failures())


def test_non_vacuity_detects_an_adapter_that_ignores_its_weights():
    class IgnoresWeights(_Broken):
        def load(self, module, cfg, params, dtype):
            return {**module, "params": make_case(cfg, seed=13).params}

    case = make_case(ECAConfig(16), seed=13)
    assert check_non_vacuity(IgnoresWeights("none"), case) == ["perturbed conv.weight"]
    assert check_non_vacuity(_Broken("none"), case) == []


def test_an_adapter_that_ignores_the_pool_order_fails_check_case():
    """check_non_vacuity shows the comparison tells the two orders apart; check_case then catches the port."""

    class FixedOrder(_Broken):
        def evaluate(self, module, x, dy, *, training, data_format, dtype):
            module = {**module, "cfg": module["cfg"].replace(spatial_pool_order=("max", "mean"))}
            return super().evaluate(module, x, dy, training=training, data_format=data_format, dtype=dtype)

    port = FixedOrder("none")
    official = make_case(CBAMConfig(16), seed=14)
    assert check_non_vacuity(port, official) == []
    assert check_case(port, official).passed  # right by accident: the official order
    timm = make_case(CBAMConfig.preset("timm", channels=16), seed=14)
    report = check_case(port, timm)
    assert not report.passed
    assert "y" in [c.name for c in report.comparisons if not c.ok]
