"""The report's non-finite table (SPEC.md section 1, issue #14 item 7) and its sound comparison (SPEC.md 9.3).

Three things are checked here:

- the bound: every non-finite case of every variant gets an ``M`` that is finite at every finite
  entry of the reference and 0 at every non-finite one; a finite entry that no non-finite value
  reaches gets exactly the bound of the finite case, and an exact point of the rule (a selection's
  0, a saturated gate) gets 0, so that any deviation there fails;
- the report: a non-finite table (cases agreeing / run per framework and variant) in every rendering,
  a run that fails when one case disagrees;
- non-vacuity: four plausible ways to get non-finite values wrong, each a NumPy reference with one
  piece swapped, pass every finite case of the grid and are caught by the non-finite cases.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
from collections.abc import Callable, Iterator
from typing import Any
from unittest import mock

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

import reference_numpy as ref
from conformance import ADAPTERS, compare, make_case, reference_outputs
from conformance.adapters.numpy_ref import NumpyAdapter
from conformance.cases import nonfinite_cases
from conformance.grid import CHANNELS, KNOBS, NONFINITE_IDS, PRESETS, nonfinite_modes, nonfinite_variants, variants
from conformance.report import render_json, render_markdown, render_text, run_matrix
from conformance.runner import check_case
from reference_numpy import ECAConfig, SEConfig, ops
from reference_numpy.bounds import Bounds, NoBoundError, _bounded

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # Inf * 0 = NaN is the rule here


def _tensors(want: Any) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    b = want.bound
    yield "y", want.y, b.y
    if want.dx is not None:
        yield "dx", want.dx, b.dx
        yield from ((f"grad[{k}]", want.grads[k], b.grads[k]) for k in want.grads)
    yield from ((f"state[{k}]", want.state[k], b.state[k]) for k in want.state)


# ----------------------------------------------------------------------------- the bound


@pytest.mark.parametrize("variant", variants(full=True), ids=lambda v: v.id)
def test_every_non_finite_case_is_bounded(variant):
    """M is finite wherever the reference is, and 0 where it is not (compared exactly there)."""
    cfg = variant.build(CHANNELS)
    for training in (False, True) if cfg.has_batch_norm else (False,):
        for case in nonfinite_cases(cfg, dtype="float32", training=training, data_format="channels_last"):
            for name, r, m in _tensors(reference_outputs(case)):
                assert m.shape == r.shape, (case.id, name)
                finite = np.isfinite(r)
                assert np.isfinite(m[finite]).all() and (m[finite] >= 0).all(), (case.id, name)
                assert (m[~finite] == 0).all(), (case.id, name)


def test_entries_no_non_finite_value_reaches_keep_the_finite_bound():
    """A NaN in sample 0 of x (eval mode) leaves sample 1 computed by the finite case's expressions,
    so its bound must be the finite case's, to the last bit; a NaN in dy leaves the forward alone."""
    cfg = SEConfig(CHANNELS)
    base = make_case(cfg, dtype="float32")
    want = reference_outputs(base)
    by_name = {c.name: c for c in nonfinite_cases(cfg, dtype="float32")}
    nan_x = reference_outputs(by_name["nonfinite-x-nan"])
    assert np.isnan(nan_x.y[0]).any() and np.isfinite(nan_x.y[1]).all()
    np.testing.assert_array_equal(nan_x.bound.y[1], want.bound.y[1])
    np.testing.assert_array_equal(nan_x.bound.dx[1], want.bound.dx[1])
    nan_dy = reference_outputs(by_name["nonfinite-dy-nan"])
    np.testing.assert_array_equal(nan_dy.bound.y, want.bound.y)


def test_an_exact_point_of_the_rule_gets_a_zero_bound():
    """conv.bias = +Inf saturates ECA's hard gate: s = 1 exactly, so du selects 0 whatever dy holds.
    The weight and bias gradients are exact zeros (M = 0): anything else fails, however small."""
    cfg = ECAConfig(CHANNELS, gate="hard_sigmoid", bias=True)
    case = next(c for c in nonfinite_cases(cfg, dtype="float32") if c.name == "nonfinite-conv.bias-inf")
    want = reference_outputs(case)
    assert (want.grads["conv.weight"] == 0).all() and (want.bound.grads["conv.weight"] == 0).all()
    np.testing.assert_array_equal(want.y, case.x)  # y = x * 1
    off = want.grads["conv.weight"] + 1e-30
    assert not compare("g", off, want.grads["conv.weight"], "float32", bound=want.bound.grads["conv.weight"]).ok
    assert compare("y", want.y, want.y, "float32", bound=want.bound.y).ok


def test_a_finite_entry_without_a_finite_bound_is_refused():
    """The last line of defence: error_bounds raises rather than hand out an infinite (vacuous) bound,
    and compare refuses one at a finite entry."""
    case = next(c for c in nonfinite_cases(SEConfig(CHANNELS)) if c.name == "nonfinite-x-inf")
    y, cache, _ = ref.forward(case.cfg, case.params, case.x)
    good = ref.error_bounds(case.cfg, cache, case.dy)
    bad = good._replace(y=np.full_like(good.y, np.inf))
    with pytest.raises(NoBoundError, match="No error bound for the finite entries of y"):
        _bounded(case.cfg, cache, case.dy, bad)
    assert isinstance(_bounded(case.cfg, cache, case.dy, good), Bounds)
    with pytest.raises(ValueError, match="must be finite where the reference is finite"):
        compare("y", y, y, "float32", bound=bad.y)
    assert compare("y", [np.nan, 1.0], [np.nan, 1.0], "float32", bound=[np.inf, 1.0]).ok  # NaN: matched exactly


def _kinds(case) -> list[np.ndarray]:
    """0 finite, 1 +Inf, 2 -Inf, 3 NaN, for every tensor the reference computes for ``case``."""
    y, cache, state = ref.forward(case.cfg, case.params, case.x, training=case.training)
    dx, grads = ref.backward(case.cfg, case.dy, cache)
    return [
        np.select([np.isnan(a), np.isposinf(a), np.isneginf(a)], [3, 1, 2], 0)
        for a in (y, dx, *grads.values(), *state.values())
    ]


def test_the_premise_holds_on_the_report_cases():
    """SPEC.md 9.3's premise: a non-finite value has the same kind in any rounding of the computation.
    Perturbing every finite input by up to 1e-6 relative (far more than float32 rounding moves an
    intermediate relative to its size) leaves where NaN, +Inf and -Inf appear unchanged."""
    rng = np.random.default_rng(0)

    def jitter(a: np.ndarray) -> np.ndarray:
        return np.where(np.isfinite(a), a * (1 + rng.uniform(-1e-6, 1e-6, np.shape(a))), a)

    for v in nonfinite_variants():
        for training in nonfinite_modes(v):
            for case in nonfinite_cases(v.build(CHANNELS), dtype="float32", training=training):
                moved = dataclasses.replace(
                    case, x=jitter(case.x), dy=jitter(case.dy), params={k: jitter(w) for k, w in case.params.items()}
                )
                for a, b in zip(_kinds(moved), _kinds(case), strict=True):
                    np.testing.assert_array_equal(a, b, err_msg=f"{v.id} {case.id}")


# ----------------------------------------------------------------------------- the grid


def test_the_non_finite_variants_cover_every_piece_of_the_rule():
    """Every piecewise derivative, every pool, BN in both modes, both ECA paddings, the hard gate."""
    chosen = [v.build(CHANNELS) for v in nonfinite_variants()]
    assert [v.id for v in nonfinite_variants()] == list(NONFINITE_IDS)
    assert {c.act for c in chosen if not isinstance(c, ECAConfig)} >= {"relu", "relu6", "hard_swish"}
    assert {c.gate for c in chosen} == {"sigmoid", "hard_sigmoid"}
    cbams = [c for c in chosen if isinstance(c, ref.CBAMConfig)]
    assert {p for c in cbams for p in c.pool_types} == {"avg", "max", "lse", "lp"}
    assert {c.spatial_pool_order for c in cbams} == {("max", "mean"), ("mean", "max")}
    assert {c.spatial_norm for c in cbams} == {True, False} and any(c.spatial_bias for c in cbams)
    assert {c.padding for c in chosen if isinstance(c, ECAConfig)} == {"zeros", "circular"}
    bn = [v for v in nonfinite_variants() if v.build(CHANNELS).has_batch_norm]
    assert any(nonfinite_modes(v) == (False, True) for v in bn)
    assert set(NONFINITE_IDS) <= {v.id for v in PRESETS + KNOBS}


# ----------------------------------------------------------------------------- non-vacuity: mutants


def _mask_vjp(df: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    return lambda x, g: g * df(x)  # a 0/1 mask times g: Inf * 0 = NaN through an inactive unit


def _max_grad_by_mask(x, y, dy, axes):
    hit = x == y
    return hit * (dy / hit.sum(axis=axes, keepdims=True))  # Inf * 0 = NaN off the maximum


def _passing_nan(lo: float, hi: float | None, slope: Callable[[Any, Any], Any]) -> Callable[..., np.ndarray]:
    """PyTorch's native threshold backward: 0 where ``x <= lo`` (or ``x >= hi``), else the gradient: NaN passes."""

    def vjp(x, g):
        off = (x <= lo) if hi is None else (x <= lo) | (x >= hi)
        return np.where(off, 0.0, slope(x, g))

    return vjp


def _conv2d_skipping_padding(d, w):
    """TensorFlow's "SAME": a tap over the padding is skipped, so a NaN weight there meets no zero."""
    k = w.shape[-1]
    p = k // 2
    win = sliding_window_view(np.pad(d, ((0, 0), (0, 0), (p, p), (p, p))), (k, k), axis=(2, 3))  # (N, I, H, W, k, k)
    inside = sliding_window_view(np.pad(np.ones(d.shape[-2:], bool), p), (k, k))  # (H, W, k, k)
    terms = win[:, None] * w[None, :, :, None, None]  # (N, O, I, H, W, k, k)
    return np.where(inside, terms, 0.0).sum(axis=(2, 5, 6))


def _conv1d_skipping_padding(z, w, mode):
    if mode != "zeros":
        return ops_conv1d(z, w, mode)
    idx, valid = ops.pad_index(z.shape[1], w.shape[0] // 2, mode)
    taps = sliding_window_view(z[:, idx], w.shape[0], axis=1)  # (N, C, k)
    inside = sliding_window_view(valid, w.shape[0])  # (C, k)
    return np.where(inside, taps * w, 0.0).sum(axis=-1)


ops_conv1d = ops.conv1d


def _nan_dropping_max(x, axes):
    return np.fmax.reduce(x, axis=axes, keepdims=True) if len(axes) == 1 else np.nanmax(x, axis=axes, keepdims=True)


@contextlib.contextmanager
def _masks() -> Iterator[None]:
    acts = {name: _mask_vjp(ops.ACTS[name][1]) for name in ("relu", "relu6", "hard_swish")}
    with (
        mock.patch.dict(ops.ACT_VJPS, acts),
        mock.patch.dict(ops.GATE_VJPS, {"hard_sigmoid": _mask_vjp(ops.GATES["hard_sigmoid"][1])}),
        mock.patch.dict(ops.POOLS, {"max": (ops.POOLS["max"][0], _max_grad_by_mask)}),
    ):
        yield


@contextlib.contextmanager
def _same_padding() -> Iterator[None]:
    with (
        mock.patch.object(ops, "conv2d", _conv2d_skipping_padding),
        mock.patch.object(ops, "conv1d", _conv1d_skipping_padding),
    ):
        yield


@contextlib.contextmanager
def _torch_native() -> Iterator[None]:
    acts = {
        "relu": _passing_nan(0.0, None, lambda x, g: g),
        "relu6": _passing_nan(0.0, 6.0, lambda x, g: g),
        "hard_swish": lambda x, g: np.where(x < -3.0, 0.0, np.where(x <= 3.0, g * (x / 3.0 + 0.5), g)),
    }
    with mock.patch.dict(ops.ACT_VJPS, acts):
        yield


@contextlib.contextmanager
def _nan_dropping() -> Iterator[None]:
    pools = {name: (_nan_dropping_max, ops.POOLS["max"][1]) for name in ("max",)}
    with mock.patch.dict(ops.POOLS, pools):
        yield


@dataclasses.dataclass(frozen=True)
class Mutant:
    name: str
    swap: Callable[[], contextlib.AbstractContextManager[None]]
    modules: tuple[str, ...]  # where its bug lives (the report runs only these, to save time)
    what: str


MUTANTS = [
    Mutant("masks", _masks, ("se", "cbam"), "derivatives of relu, relu6, hard_swish, hard_sigmoid, max multiply masks"),
    Mutant("same_padding", _same_padding, ("cbam", "eca"), "convolutions skip padded taps (TensorFlow's SAME)"),
    Mutant("torch_native", _torch_native, ("se",), "relu, relu6, hard_swish pass the gradient at a NaN input"),
    Mutant("nan_dropping_max", _nan_dropping, ("cbam",), "max pools drop NaN (fmax)"),
]


class _MutantAdapter(NumpyAdapter):
    """The NumPy reference with one piece swapped while it runs (never while the reference runs)."""

    swap: Callable[[], contextlib.AbstractContextManager[None]]

    def evaluate(self, module, x, dy, *, training, data_format, dtype):
        with self.swap():
            return super().evaluate(module, x, dy, training=training, data_format=data_format, dtype=dtype)


ADAPTER_CLASSES: dict[str, type[_MutantAdapter]] = {
    m.name: type(f"Mutant_{m.name}", (_MutantAdapter,), {"name": f"mutant-{m.name}", "swap": staticmethod(m.swap)})
    for m in MUTANTS
}
globals().update({cls.__name__: cls for cls in ADAPTER_CLASSES.values()})  # importable by name (ADAPTERS)


@pytest.fixture
def registered(monkeypatch):
    def add(m: Mutant) -> str:
        cls = ADAPTER_CLASSES[m.name]
        monkeypatch.setitem(ADAPTERS, cls.name, (__name__, cls.__name__, ()))
        return cls.name

    return add


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.name)
def test_a_mutant_passes_the_finite_grid_and_fails_the_non_finite_table(mutant, registered):
    name = registered(mutant)
    m = run_matrix([name], modules=mutant.modules, progress=False)
    assert all(r.cells[name].status == "pass" for r in m.rows), m.failures[:5]  # right on finite values
    agree, run = m.nonfinite_agree(name)
    assert 0 < run and agree < run, f"{mutant.what}: not caught by the non-finite cases"
    assert not m.passed and "result: FAIL" in render_text(m)
    assert m.non_vacuity_status(name) == "ok"
    assert any(".nonfinite-" in f for f in m.failures)


def test_the_mutants_are_caught_where_expected():
    """Each mutant's bug shows in the cases that exercise it (not only somewhere)."""
    where = {
        "masks": ("se-relu6-hard_sigmoid", "nonfinite-dy-inf"),  # Inf cotangent * the hard gate's 0 mask
        "same_padding": ("eca-paper", "nonfinite-conv.weight-nan"),
        "torch_native": ("se-official", "nonfinite-x-nan"),
        "nan_dropping_max": ("cbam-official", "nonfinite-x-nan"),
    }
    by_id = {v.id: v for v in PRESETS + KNOBS}
    for m in MUTANTS:
        vid, case_name = where[m.name]
        cfg = by_id[vid].build(CHANNELS)
        case = next(c for c in nonfinite_cases(cfg, dtype="float64") if c.name == case_name)
        assert not check_case(ADAPTER_CLASSES[m.name](), case).passed, m.name
        assert check_case(NumpyAdapter(), case).passed


# ----------------------------------------------------------------------------- the report


def _nonfinite_lines(text: str) -> list[str]:
    """The non-finite table of a text report: its header line and its rows."""
    lines = text.split("non-finite values (SPEC.md 1)")[1].splitlines()[1:]
    return lines[: lines.index("")]


def test_the_report_has_a_non_finite_table_in_every_rendering(registered):
    bad = registered(MUTANTS[2])  # torch_native: only SE's relu
    m = run_matrix(["numpy", bad], modules=("se", "eca"), progress=False)
    agree, run = m.nonfinite_agree("numpy")
    assert agree == run == 3 * 18 + 9 + 12 and m.nonfinite_cases == 2 * run
    assert m.checks == m.cases + m.nonfinite_cases + m.non_vacuity_checks
    text = render_text(m)
    assert "non-finite values (SPEC.md 1): NaN, +Inf, -Inf in x, in each weight and in dy (f64)" in text
    table = {line.split()[0]: line.split()[1:] for line in _nonfinite_lines(text)[1:]}
    assert table["eca/paper"] == ["9/9", "9/9"]
    assert table["se/official"][0] == "18/18" and table["se/official"][1] == "FAIL"
    assert table["all"][0] == f"{run}/{run}" and table["all"][1] == "FAIL"
    assert f"{run} non-finite" not in text.splitlines()[0] and f"{2 * run} non-finite" in text.splitlines()[0]
    md = render_markdown(m)
    assert "| non-finite | numpy | mutant-torch_native |" in md and f"| all | {run}/{run} | FAIL " in md
    doc = json.loads(render_json(m))
    assert doc["frameworks"]["numpy"]["nonfinite"]["all_agree"] is True
    assert doc["frameworks"][bad]["nonfinite"]["all_agree"] is False
    assert doc["nonfinite_cases"] == 2 * run and doc["passed"] is False
    row = next(r for r in doc["nonfinite"] if r["variant"] == "paper")
    assert row["cells"]["numpy"] == {"status": "pass", "cases": 9, "agree": 9, "dtypes": ["float64"]}


def test_nonfinite_false_leaves_the_table_out():
    m = run_matrix(["numpy"], modules=("eca",), progress=False, nonfinite=False)
    assert m.nonfinite == [] and m.nonfinite_cases == 0 and m.passed
    assert "non-finite" not in render_text(m)
    assert json.loads(render_json(m))["frameworks"]["numpy"]["nonfinite"] is None


def test_a_framework_that_is_not_installed_shows_its_status_in_the_table(monkeypatch):
    monkeypatch.setitem(ADAPTERS, "absent", ("no_such_module_anywhere", "X", ("no_such_package_anywhere",)))
    m = run_matrix(["numpy", "absent"], modules=("eca",), progress=False)
    assert [r.cells["absent"].status for r in m.nonfinite] == ["not installed", "not installed"]
    assert _nonfinite_lines(render_text(m))[-1].split() == ["all", "21/21", "not", "installed"]
    assert math.isclose(m.nonfinite_timings["absent"], 0.0)
