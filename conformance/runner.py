"""Run one case through an adapter and compare everything with the reference."""

from __future__ import annotations

import dataclasses
import traceback

import numpy as np

import reference_numpy as ref

from .adapters.base import Adapter, Outputs
from .cases import Case
from .compare import Comparison, compare

__all__ = ["CaseReport", "check_against", "check_case", "check_non_vacuity", "reference_outputs"]

ZERO_AT_FLOAT64 = 1e-12
"""A reference gradient whose largest entry is below this times the case's largest gradient
is zero at float64 precision (e.g. a bias feeding train-mode BN); it is compared on that scale."""


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


def reference_outputs(case: Case, with_grads: bool = True) -> Outputs:
    """The float64 reference's outputs for ``case``."""
    y, cache, state = ref.forward(case.cfg, case.params, case.x, training=case.training, data_format=case.data_format)
    if not with_grads:
        return Outputs(y, state=state)
    dx, grads = ref.backward(case.cfg, case.dy, cache)
    return Outputs(y, dx, grads, state)


def compare_outputs(got: Outputs, want: Outputs, dtype: str, seed: int | None) -> list[Comparison]:
    """Compare every tensor ``want`` has; a tensor ``got`` lacks is a failure, never a skip."""
    out = [compare("y", got.y, want.y, dtype, seed=seed)]
    if want.dx is not None:
        out.append(compare("dx", got.dx, want.dx, dtype, seed=seed))
        case_scale = max([float(np.abs(g).max()) for g in want.grads.values()] + [0.0])
        for k, g in want.grads.items():
            name = f"grad[{k}]"
            if k not in got.grads:
                out.append(Comparison(name, dtype, False, float("inf"), None, None, None, 0.0, seed, "missing"))
                continue
            zero = float(np.abs(g).max()) <= ZERO_AT_FLOAT64 * case_scale
            out.append(compare(name, got.grads[k], g, dtype, seed=seed, scale=case_scale if zero else None))
        for k in sorted(set(got.grads) - set(want.grads)):
            out.append(Comparison(f"grad[{k}]", dtype, False, float("inf"), None, None, None, 0.0, seed, "unexpected"))
    for k, v in want.state.items():
        if k not in got.state:
            out.append(Comparison(f"state[{k}]", dtype, False, float("inf"), None, None, None, 0.0, seed, "missing"))
        else:
            out.append(compare(f"state[{k}]", got.state[k], v, dtype, seed=seed))
    return out


def check_case(adapter: Adapter, case: Case, *, with_grads: bool | None = None) -> CaseReport:
    """Run ``case`` through ``adapter`` and compare output, dx, grads and state with the reference.

    Gradients are checked when ``case.dtype`` is in ``adapter.grad_dtypes`` unless told.
    Anything the implementation raises becomes a failed report with its last line.
    """
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


def check_non_vacuity(adapter: Adapter, case: Case) -> list[str]:
    """Show the comparison can fail: a perturbed weight and (CBAM) a swapped pool order must FAIL.

    Returns the names of the mutations that were NOT caught (empty when the check is sound).
    """
    uncaught = []
    name = next(iter(case.params))
    perturbed = {**case.params, name: case.params[name] * (1 + 1e-2) + 1e-2}
    got = adapter.run(
        case.cfg, perturbed, case.x, None, training=case.training, data_format=case.data_format, dtype=case.dtype
    )
    if all(c.ok for c in compare_outputs(got, reference_outputs(case, False), case.dtype, case.seed)):
        uncaught.append(f"perturbed {name}")
    if isinstance(case.cfg, ref.CBAMConfig) and case.cfg.spatial:
        swapped = case.cfg.replace(spatial_pool_order=case.cfg.spatial_pool_order[::-1])
        got = adapter.run(
            case.cfg, case.params, case.x, None, training=case.training, data_format=case.data_format, dtype=case.dtype
        )
        want = reference_outputs(dataclasses.replace(case, cfg=swapped), False)
        if all(c.ok for c in compare_outputs(got, want, case.dtype, case.seed)):
            uncaught.append("swapped spatial_pool_order")
    return uncaught
