"""Run one case through an adapter and compare everything with the reference."""

from __future__ import annotations

import dataclasses
import traceback
from typing import Any

import numpy as np

import reference_numpy as ref

from .adapters.base import Adapter, Outputs
from .cases import Case, round_to_dtype
from .compare import Comparison, compare
from .tolerances import DERIVED_DTYPES

__all__ = [
    "LADDER",
    "NON_VACUITY_STEP",
    "CaseReport",
    "check_against",
    "check_case",
    "check_non_vacuity",
    "reference_outputs",
    "smallest_caught",
]


@dataclasses.dataclass
class CaseReport:
    """All comparisons of one case; ``error`` holds the last line of anything the implementation raised."""

    case: Case
    framework: str
    comparisons: list[Comparison]
    error: str | None = None

    @property
    def passed(self) -> bool:
        return self.error is None and all(c.ok for c in self.comparisons)

    @property
    def worst(self) -> float:
        return max((c.error_ratio for c in self.comparisons), default=float("inf") if self.error else 0.0)

    def failures(self) -> list[str]:
        out = [f"{self.framework} {self.case.id}: raised {self.error}"] if self.error else []
        return out + [f"{self.framework} {self.case.id}: {c.message}" for c in self.comparisons if not c.ok]


def exception_line(e: BaseException) -> str:
    """The last line of a traceback (``Type: message``), without notes a framework appends (JAX does)."""
    notes = getattr(e, "__notes__", None)
    try:
        e.__notes__ = []  # type: ignore[attr-defined]
        lines = [line for line in traceback.format_exception_only(type(e), e) if line.strip()]
    finally:
        if notes is None:
            del e.__notes__
        else:
            e.__notes__ = notes  # type: ignore[attr-defined]
    return lines[-1].strip() if lines else type(e).__name__


def _check_args(adapter: Any = None, case: Any = None, with_grads: Any = None, *, need_adapter: bool = True) -> None:
    """Wrong types of the runner's arguments, said by name before anything runs."""
    if need_adapter and not isinstance(adapter, Adapter):
        raise TypeError(
            f"`adapter` must be a conformance Adapter (conformance.get_adapter(name)). Received: {type(adapter).__name__}"
        )
    if not isinstance(case, Case):
        raise TypeError(
            f"`case` must be a conformance Case (conformance.make_case(cfg)). Received: {type(case).__name__}"
        )
    if with_grads is not None and not isinstance(with_grads, bool):
        raise TypeError(f"`with_grads` must be a bool or None. Received: with_grads={with_grads!r}")


def reference_outputs(case: Case, with_grads: bool = True) -> Outputs:
    """The float64 reference's outputs for ``case``, with their error bounds in ``.bound`` (SPEC.md 9.3).

    >>> from reference_numpy import ECAConfig
    >>> from conformance import make_case
    >>> want = reference_outputs(make_case(ECAConfig(channels=8)))
    >>> want.bound.y.shape == want.y.shape, sorted(want.bound.grads)
    (True, ['conv.weight'])
    """
    _check_args(case=case, with_grads=with_grads, need_adapter=False)
    y, cache, state = ref.forward(case.cfg, case.params, case.x, training=case.training, data_format=case.data_format)
    b = ref.error_bounds(case.cfg, cache, case.dy if with_grads else None)
    if not with_grads:
        return Outputs(y, state=state, bound=Outputs(b.y, state=b.state))
    dx, grads = ref.backward(case.cfg, case.dy, cache)
    return Outputs(y, dx, grads, state, bound=Outputs(b.y, b.dx, b.grads, b.state))


def _missing(name: str, dtype: str, seed: int | None, note: str) -> Comparison:
    return Comparison(name, dtype, False, float("inf"), None, None, None, 0.0, seed, note)


def _state_scale(state: dict[str, np.ndarray], k: str) -> float | None:
    """The relative rule's scale for a running mean: the size of the values it averages (SPEC.md 9.3).

    A batch mean of values of size ``s`` errs by about ``u * s`` in any format however small the
    mean is (it may cancel to nearly 0), and ``s <= sqrt(var + mean**2)``; the running variance
    stands for ``var``. None (the tensor's own ``max|r|``) for every other tensor.
    """
    var = k[: -len("running_mean")] + "running_var" if k.endswith("running_mean") else None
    if var is None or var not in state:
        return None
    mean, v = np.asarray(state[k], np.float64), np.asarray(state[var], np.float64)
    if not (np.isfinite(mean).all() and np.isfinite(v).all()):
        return None
    return float(np.sqrt(np.max(np.maximum(v, 0.0) + mean * mean)))


def compare_outputs(got: Outputs, want: Outputs, dtype: str, seed: int | None) -> list[Comparison]:
    """Compare every tensor ``want`` has; a tensor ``got`` lacks is a failure, never a skip.

    Each tensor is compared under the bound ``want.bound`` holds for it (SPEC.md 9.3), or under
    the relative rule when ``want`` has no bounds (e.g. a version-1 vector file).
    """
    b = want.bound

    def bound_of(kind: str, k: str | None = None) -> np.ndarray | None:
        if b is None:
            return None
        if k is None:
            return getattr(b, kind)
        return getattr(b, kind).get(k)

    out = [compare("y", got.y, want.y, dtype, seed=seed, bound=bound_of("y"))]
    if want.dx is not None:
        out.append(compare("dx", got.dx, want.dx, dtype, seed=seed, bound=bound_of("dx")))
        for k, g in want.grads.items():
            name = f"grad[{k}]"
            if k not in got.grads:
                out.append(_missing(name, dtype, seed, "missing"))
                continue
            out.append(compare(name, got.grads[k], g, dtype, seed=seed, bound=bound_of("grads", k)))
        for k in sorted(set(got.grads) - set(want.grads)):
            out.append(_missing(f"grad[{k}]", dtype, seed, "unexpected"))
    for k, v in want.state.items():
        if k not in got.state:
            out.append(_missing(f"state[{k}]", dtype, seed, "missing"))
        else:
            scale = _state_scale(want.state, k) if dtype not in DERIVED_DTYPES else None
            out.append(
                compare(f"state[{k}]", got.state[k], v, dtype, seed=seed, bound=bound_of("state", k), scale=scale)
            )
    return out


def check_case(adapter: Adapter, case: Case, *, with_grads: bool | None = None) -> CaseReport:
    """Run ``case`` through ``adapter`` and compare output, dx, grads and state with the reference.

    Gradients are checked when ``case.dtype`` is in ``adapter.grad_dtypes`` unless told.
    Anything the implementation raises becomes a failed report with its last line.
    """
    _check_args(adapter, case, with_grads)
    grads = case.dtype in adapter.grad_dtypes if with_grads is None else with_grads
    return check_against(adapter, case, reference_outputs(case, grads))


def check_against(adapter: Adapter, case: Case, want: Outputs) -> CaseReport:
    """Run ``case`` through ``adapter`` and compare with ``want`` (gradients only where ``want`` has them).

    ``want`` is the reference's outputs, or stored ones (golden vectors). Anything the
    implementation raises becomes a failed report with its last line.
    """
    try:
        got = adapter.run(
            case.cfg,
            case.params,
            case.x,
            case.dy if want.dx is not None else None,
            training=case.training,
            data_format=case.data_format,
            dtype=case.dtype,
        )
    except Exception as e:
        return CaseReport(case, adapter.name, [], exception_line(e))
    return CaseReport(case, adapter.name, compare_outputs(got, want, case.dtype, case.seed))


NON_VACUITY_STEP: dict[str, float] = {"float64": 1e-7, "float32": 1e-3, "bfloat16": 1e-1, "float16": 1e-1}
"""The relative weight perturbation :func:`check_non_vacuity` requires to be caught, per dtype (SPEC.md 9.4)."""
LADDER = (1e-1, 1e-3, 1e-5, 1e-7, 1e-9, 1e-11, 1e-13)
"""Relative weight perturbations :func:`smallest_caught` tries, largest first."""


def _perturbed(case: Case, rel: float) -> dict[str, np.ndarray] | None:
    """``case.params`` with its first tensor scaled by ``1 + rel`` (rounded to the case's dtype); None if unchanged."""
    name = next(iter(case.params))
    w = round_to_dtype(case.params[name] * (1 + rel), case.dtype)
    return None if np.array_equal(w, case.params[name]) else {**case.params, name: w}


def _caught(adapter: Adapter, case: Case, params: dict[str, np.ndarray], want: Outputs) -> bool:
    got = adapter.run(
        case.cfg,
        params,
        case.x,
        case.dy if want.dx is not None else None,
        training=case.training,
        data_format=case.data_format,
        dtype=case.dtype,
    )
    return not all(c.ok for c in compare_outputs(got, want, case.dtype, case.seed))


def check_non_vacuity(adapter: Adapter, case: Case) -> list[str]:
    """Show the comparison can fail: a perturbed weight and (CBAM) a swapped pool order must FAIL.

    The first weight tensor is scaled by ``1 + NON_VACUITY_STEP[case.dtype]`` (1e-7 in float64,
    1e-3 in float32); output, gradients (for the adapter's ``grad_dtypes``) and state are compared.
    Returns the names of the mutations that were NOT caught (empty when the check is sound).
    """
    _check_args(adapter, case)
    uncaught = []
    name = next(iter(case.params))
    grads = case.dtype in adapter.grad_dtypes
    want = reference_outputs(case, grads)
    params = _perturbed(case, NON_VACUITY_STEP.get(case.dtype, 1e-1))
    if params is None or not _caught(adapter, case, params, want):
        uncaught.append(f"perturbed {name}")
    if isinstance(case.cfg, ref.CBAMConfig) and case.cfg.spatial:
        swapped = case.cfg.replace(spatial_pool_order=case.cfg.spatial_pool_order[::-1])
        if not _caught(adapter, case, case.params, reference_outputs(dataclasses.replace(case, cfg=swapped), False)):
            uncaught.append("swapped spatial_pool_order")
    return uncaught


def smallest_caught(adapter: Adapter, case: Case, ladder: tuple[float, ...] = LADDER) -> float | None:
    """The smallest relative perturbation of the first weight tensor that the comparison catches.

    Walks ``ladder`` from its largest step down and stops at the first step not caught, or at the
    first that rounding to ``case.dtype`` makes no perturbation at all; ``None`` when even the
    largest is not caught. Gradients are compared for the adapter's ``grad_dtypes``.

    >>> from reference_numpy import ECAConfig
    >>> from conformance import get_adapter, make_case
    >>> smallest_caught(get_adapter("numpy"), make_case(ECAConfig(channels=8)), (1e-3, 1e-7, 1e-11))
    1e-11
    """
    want = reference_outputs(case, case.dtype in adapter.grad_dtypes)
    best = None
    for rel in sorted(ladder, reverse=True):
        params = _perturbed(case, rel)
        if params is None or not _caught(adapter, case, params, want):
            break
        best = rel
    return best
