"""Checking: a target behind the conformance Adapter interface, the cases it is checked on, and the full check."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from reference_numpy import CBAMConfig, Config, ECAConfig, export_state_dict, param_layout
from reference_numpy.ops import POOLS

from ..adapters.base import Adapter, Outputs
from ..cases import Case, make_case, round_to_dtype, saturating_case
from ..runner import CaseReport, compare_outputs, reference_outputs
from ..runner import exception_line as _last_line
from .binding import Binding, _role
from .targets import _Backend, _sample_shape

# ----------------------------------------------------------------------------- the adapter


class ThirdPartyAdapter(Adapter):
    """A third-party target behind the conformance :class:`Adapter` interface, so that
    :func:`conformance.check_case` does the comparing. Canonical parameters go in through
    the bindings; gradients and running statistics come back through them."""

    name = "target"
    grad_dtypes = ("float64", "float32")

    def __init__(
        self,
        backend: _Backend,
        bindings: Mapping[str, Binding],
        label: str,
        dtypes: Sequence[str],
        dialect: tuple[str, str] | None = None,
    ):
        self.backend, self.bindings, self.name = backend, dict(bindings), label  # type: ignore[misc]
        self.dialect = dialect  # (module, name): that module's weights go in as export_state_dict writes them
        self.dtypes = tuple(dtypes)  # type: ignore[misc]
        self.data_formats = (backend.data_format,)  # type: ignore[misc]
        self.search_runs: dict[Any, Any] = {}  # the target's outputs per (dtype, layout), shared by searches

    def build(self, cfg: Config, dtype: str) -> Any:
        return {"obj": self.backend.instance(dtype), "cfg": cfg}

    def run(self, *args: Any, **kwargs: Any) -> Outputs:
        try:
            return super().run(*args, **kwargs)
        except Exception as e:  # the runner reports the last line: make it the error, not JAX's note
            if hasattr(e, "__notes__"):
                del e.__notes__
            raise

    def load(self, module: Any, cfg: Config, params: dict[str, np.ndarray], dtype: str) -> Any:
        names = {b.name for b in self.bindings.values()}
        if self.dialect is not None and self.dialect[0] == cfg.module:
            exported = export_state_dict(params, self.dialect[1], cfg)  # what a user of that dialect would load
            values = {k: v for k, v in exported.items() if k in names}
        else:
            values = {
                self.bindings[_role(k)].name: self.bindings[_role(k)].to_theirs(np.asarray(v))
                for k, v in params.items()
            }
        return {**module, "obj": self.backend.assign(module["obj"], values, dtype)}

    def evaluate(self, module, x, dy, *, training, data_format, dtype):  # type: ignore[no-untyped-def]
        cfg = module["cfg"]
        y, dx, grads, state = self.backend.call(module["obj"], x, dy, training, dtype)
        layout = param_layout(cfg)
        out = Outputs(np.asarray(y, np.float64), None if dx is None else np.asarray(dx, np.float64))
        for canonical, spec in layout.items():
            b = self.bindings[_role(canonical)]
            if spec.trainable and dy is not None and b.name in grads:
                out.grads[canonical] = np.asarray(b.to_canonical(np.asarray(grads[b.name])), np.float64)
            if not spec.trainable and training and b.name in state:
                out.state[canonical] = np.asarray(b.to_canonical(np.asarray(state[b.name])), np.float64)
        return out


def _cases(cfg: Config, seed: int, dtype: str, data_format: str, *, big_batch: bool = True) -> list[Case]:
    """The cases a configuration is checked on: the default case per mode, plus (eval) a larger batch.

    The larger batch matters: with a batch of two, every pre-activation of a small bottleneck
    may be positive, and a leaky ReLU would pass for a ReLU. In float64 and float32, a saturating case
    (:func:`conformance.cases.saturating_case`) also drives every clamp past its corner, so a
    ReLU6 cannot pass for a ReLU, nor an unclamped hard sigmoid for a clamped one.
    """
    out = [
        make_case(cfg, seed=seed, dtype=dtype, training=training, data_format=data_format)
        for training in ((False, True) if cfg.has_batch_norm else (False,))
    ]
    if big_batch:
        _, c, h, w = out[0].x.shape if data_format == "channels_first" else np.moveaxis(out[0].x, 3, 1).shape
        n = next(v for v in (8, 9, 10, 11) if v not in (c, getattr(cfg, "hidden", 0)))
        batch = make_case(cfg, seed=seed + 1, dtype=dtype, shape=(n, c, h, w), data_format=data_format, name="batch")
        out.append(_straddle(batch))
        if dtype in ("float64", "float32"):
            saturating = saturating_case(cfg, seed=seed + 3, dtype=dtype, data_format=data_format)
            if saturating is not None:
                out.append(saturating)
    return out


def _straddle(case: Case) -> Case:
    """Shift fc1's bias so that every hidden unit is negative for about half the batch and pools.

    Then the activation is exercised on both sides of zero, and a leaky ReLU cannot pass for a ReLU.
    """
    cfg = case.cfg
    prefix = "channel." if isinstance(cfg, CBAMConfig) else ""
    if isinstance(cfg, ECAConfig) or f"{prefix}fc1.bias" not in case.params:
        return case
    x = case.x if case.data_format == "channels_first" else case.x.transpose(0, 3, 1, 2)
    pools = cfg.pool_types if isinstance(cfg, CBAMConfig) else ("avg",)
    z = np.concatenate([POOLS[p][0](x, (2, 3))[:, :, 0, 0] for p in pools])  # (pools * N, C)
    params = dict(case.params)
    pre = np.sort(z @ params[f"{prefix}fc1.weight"].T + params[f"{prefix}fc1.bias"], axis=0)
    k = len(pre) // 2  # halfway between two neighbours, never on the kink of a ReLU
    params[f"{prefix}fc1.bias"] = round_to_dtype(params[f"{prefix}fc1.bias"] - (pre[k - 1] + pre[k]) / 2, case.dtype)
    return dataclasses.replace(case, params=params)


def _inputs(backend: _Backend, channels: int, seed: int, sample: np.ndarray | None) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    if sample is not None:
        return [np.asarray(sample)]
    n, c, h, w = _sample_shape(channels)
    shapes = [(n, c, h, w), (n, c, h + 8, w + 8)]
    if backend.data_format != "channels_first":
        shapes = [(a, hh, ww, cc) for a, cc, hh, ww in shapes]
    return [rng.normal(size=shape) for shape in shapes]


def _smoke(backend: _Backend, obj: Any, channels: int, seed: int, sample: np.ndarray | None = None) -> list[str]:
    """Call the target with its own weights (on ``sample`` when given); on an error, once more with a larger
    input to show a shape change."""
    out: list[str] = []
    for x in _inputs(backend, channels, seed, sample):
        try:
            y = backend.call(obj, x.astype(np.float32), None, False, "float32")[0]
        except Exception as e:
            out.append(f"calling it on an input of shape {x.shape} raised {_last_line(e)}")
            continue
        if y.shape != x.shape:
            out.append(
                f"on an input of shape {x.shape} it returns shape {y.shape}: the output must keep the input's shape"
            )
        elif not np.all(np.isfinite(y)) and np.all(np.isfinite(x)):
            out.append(f"with its own weights, on a finite input of shape {x.shape}, it returns NaN or infinity")
        break
    return out


def _probe(
    backend: _Backend, obj: Any, channels: int, seed: int, sample: np.ndarray | None = None
) -> tuple[list[str], list[str]]:
    """The dtypes to check and sentences: a smoke run with its own weights, then a float64 run.

    A target that computes in float32 even when given float64 weights and input (a Flax ``dtype``
    field, a Keras dtype policy, a cast inside) is checked in float32 only, and the sentence says so.
    """
    sentences = _smoke(backend, obj, channels, seed, sample)
    if sentences:
        return ["float64", "float32"], sentences
    n, c, h, w = _sample_shape(channels)
    shape = (n, c, h, w) if backend.data_format == "channels_first" else (n, h, w, c)
    try:
        y = backend.call(backend.instance("float64"), np.ones(shape), None, False, "float64")[0]
    except Exception as e:
        return ["float32"], [f"it does not run in float64 ({_last_line(e)}): checked at float32 precision"]
    if y.dtype != np.float64:
        return ["float32"], [
            f"given float64 weights and input it computes in {y.dtype} (its own dtype setting or policy): "
            f"checked at {y.dtype} precision"
        ]
    return ["float64", "float32"], []


def own_weights_case(
    backend: _Backend, obj: Any, s: Any, cfg: Config, seed: int, sample: np.ndarray | None, dtype: str
) -> Case | None:
    """A case with the target's own weights (canonical) and ``sample`` (or a generated input): what it
    really computes must equal the reference with the same weights. None when the bindings do not cover
    every canonical tensor of ``cfg``."""
    values = backend.values(obj)
    params = {}
    for k in param_layout(cfg):
        b = s.bindings.get(_role(k))
        if b is None or b.name not in values:
            return None
        params[k] = round_to_dtype(np.asarray(b.to_canonical(values[b.name]), np.float64), dtype)
    base = make_case(cfg, seed=seed + 2, dtype=dtype, data_format=backend.data_format, name="own-weights")
    if sample is None:
        return dataclasses.replace(base, params=params)
    x = round_to_dtype(np.asarray(sample, np.float64), dtype)
    dy = round_to_dtype(np.random.default_rng(seed).normal(size=x.shape), dtype)
    return dataclasses.replace(base, name="sample", params=params, x=x, dy=dy)


_FLOAT32_STEPS = 4
"""How many float32 roundings (of ``max|r|``, u32 = 2**-24 each) a float64 tensor's error may
amount to and still be explained by float32 steps inside the target (SPEC.md section 9.5)."""


def _rejudge(adapter: Adapter, report: CaseReport, judge: str) -> tuple[CaseReport, float]:
    """``report``'s case run again, its outputs judged at ``judge``'s precision (same run dtype).

    Also returns the run's worst ``max|a - r| / (u32 * max|r|)`` over its tensors: how many float32
    roundings of the reference's scale its error amounts to.
    """
    case = report.case
    with_grads = any(c.name == "dx" for c in report.comparisons)
    want = reference_outputs(case, with_grads)
    try:
        got = adapter.run(
            case.cfg,
            case.params,
            case.x,
            case.dy if with_grads else None,
            training=case.training,
            data_format=case.data_format,
            dtype=case.dtype,
        )
    except Exception as e:
        return CaseReport(case, adapter.name, [], _last_line(e)), np.inf
    pairs = [(got.y, want.y), (got.dx, want.dx)]
    pairs += [(got.grads.get(k), v) for k, v in want.grads.items()]
    pairs += [(got.state.get(k), v) for k, v in want.state.items()]
    steps = 0.0
    for a, r in pairs:
        if r is None or a is None or np.shape(a) != np.shape(r) or r.size == 0:
            continue
        scale = float(np.max(np.abs(r))) * 2.0**-24
        err = float(np.max(np.abs(np.asarray(a, np.float64) - r)))
        steps = max(steps, err / scale if scale > 0 else (0.0 if err == 0 else np.inf))
    return CaseReport(case, adapter.name, compare_outputs(got, want, judge, case.seed)), steps


def precision_sentences(
    adapter: Adapter, reports: list[CaseReport], dtypes: Sequence[str], seed: int, judged: str
) -> tuple[str, list[str], str | None]:
    """(the precision it computes at, sentences, the precision it conforms at or None).

    A float64 run that fails the float64 check but passes when judged at float32 precision,
    while its float32 runs pass, and whose errors amount to at most ``_FLOAT32_STEPS`` float32
    roundings of each tensor's scale, conforms at float32 precision: some step of its float64
    path computes in float32. The failing float64 reports are replaced by the re-judged ones.
    """
    if all(r.passed for r in reports):
        if dtypes == ["float32"]:
            return "float32", ["it conforms at float32 precision, the precision it computes in"], "float32"
        return "float64", [], "float64"
    if "float64" not in dtypes or any(not r.passed for r in reports if r.case.dtype != "float64"):
        return dtypes[0], [], None
    failing = [i for i, r in enumerate(reports) if not r.passed]
    if any(reports[i].error for i in failing):
        return "float64", [], None
    judged32 = {i: _rejudge(adapter, reports[i], "float32") for i in failing}
    rejudged = {i: r for i, (r, _) in judged32.items()}
    # float32 steps inside a float64 path (a float32 constant, a cast) err by a few float32
    # roundings of the values involved; a bug of 1e-6 relative passes float32's bound but not this.
    # counted on the generated cases only: the target's own weights (or sample) may drive its gate inputs
    # far from O(1), where one float32 rounding of a gate input is several of the output's
    drawn = [s for i, (_, s) in judged32.items() if reports[i].case.name not in ("own-weights", "sample")]
    if not all(r.passed for r in rejudged.values()) or max(drawn, default=0.0) > _FLOAT32_STEPS:
        return "float64", [], None
    names = sorted({c.name for i in failing for c in reports[i].comparisons if not c.ok})
    worst = max(c.error_ratio for i in failing for c in reports[i].comparisons)
    for i, r in rejudged.items():
        reports[i] = r
    return (
        "float32",
        [
            f"it conforms at float32 precision: in float64, {', '.join(names)} differ from the reference by up to "
            f"{worst:.3g}x the float64 tolerance, within float32's. Some step of its float64 path computes in "
            "float32 (a float32 constant or cast inside, such as PyTorch's Hardsigmoid backward, which multiplies "
            "by a float32 1/6)"
        ],
        "float32",
    )


def _full_check_failures(reports: Sequence[CaseReport]) -> list[str]:
    bad = sorted({cmp.name for r in reports for cmp in r.comparisons if not cmp.ok})
    raised = [r.error for r in reports if r.error]
    out = [
        "its forward matches, but the full check fails on "
        + (", ".join(bad) if bad else f"a raised error: {raised[0]}")
        + (" (its gradients are wrong)" if bad and "y" not in bad else "")
    ]
    own = [r for r in reports if r.case.name in ("own-weights", "sample") and not r.passed]
    if own:
        out.append(
            f"with its own weights{' on the sample input' if own[0].case.name == 'sample' else ''} it does not "
            "compute what the reference computes with the same weights"
        )
    return out
