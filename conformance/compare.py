"""Elementwise comparison against the reference, with a structured result and the failure message of SPEC.md 9."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from .tolerances import DERIVED_DTYPES, allowed_error, tolerance

__all__ = ["Comparison", "compare"]


@dataclasses.dataclass(frozen=True)
class Comparison:
    """One tensor compared with the reference.

    ``error_ratio`` is the worst ``|a - r| / allowed`` over the tensor (<= 1 passes), with
    ``allowed`` from :func:`conformance.tolerances.allowed_error`; ``worst_index`` is where it
    happens, ``actual``/``expected`` the values there. ``rule`` is ``"derived"`` when the
    reference's error bound was used, ``"relative"`` for the relative rule (then ``scale`` is
    the ``max|r|`` it used).
    """

    name: str
    dtype: str
    ok: bool
    error_ratio: float
    worst_index: tuple[int, ...] | None
    actual: float | None
    expected: float | None
    scale: float
    seed: int | None = None
    note: str = ""
    rule: str = "relative"

    @property
    def message(self) -> str:
        """One line: what, where, both values, how far off, and the seed that reproduces it."""
        seed = f", seed {self.seed}" if self.seed is not None else ""
        head = f"{self.name} ({self.dtype}{seed})"
        if self.note:
            return f"{head}: {self.note}"
        verdict = "ok" if self.ok else "MISMATCH"
        return (
            f"{head}: {verdict}, worst at index {self.worst_index}: got {self.actual!r}, expected {self.expected!r}; "
            f"error {self.error_ratio:.3g}x the tolerance"
        )

    def __str__(self) -> str:
        return self.message


def _failure(name: str, dtype: str, seed: int | None, note: str) -> Comparison:
    return Comparison(name, dtype, False, float("inf"), None, None, None, 0.0, seed, note)


def compare(
    name: str,
    actual: Any,
    expected: Any,
    dtype: str,
    *,
    seed: int | None = None,
    scale: float | None = None,
    bound: Any = None,
) -> Comparison:
    """Compare ``actual`` with the float64 reference ``expected`` under ``dtype``'s tolerance.

    With ``bound`` (the reference's per-element error bound ``M`` in units of u, from
    :func:`reference_numpy.error_bounds`; any shape broadcastable to ``expected``) and a dtype
    in :data:`~conformance.tolerances.DERIVED_DTYPES`, the test is SPEC.md 9.3's
    ``|a - r| <= BOUND_FACTOR * (u_d + u_float64) * M + TINY_d``. Otherwise (half types, or no
    ``bound``) it is ``|a - r| <= atol * scale + rtol * |r|`` with ``scale`` the largest ``|r|``
    of the tensor unless given. A ``bound`` that is negative, NaN, infinite at a finite entry of
    ``expected`` or of the wrong shape is a ``ValueError``. NaN matches NaN and an infinity matches
    the same infinity, whatever the bound there; anything else non-finite fails.

    >>> c = compare("y", [1.0, 2.0], [1.0, 2.0 + 1e-3], "float32", seed=0)
    >>> c.ok, c.worst_index
    (False, (1,))
    >>> print(c.message)
    y (float32, seed 0): MISMATCH, worst at index (1,): got 2.0, expected 2.001; error 45.4x the tolerance
    >>> compare("y", [1.0 + 1e-6], [1.0], "float32", bound=[10.0]).ok  # 1e-6 <= 2 * 2**-24 * 10
    True
    """
    tolerance(dtype)
    if scale is not None and (
        isinstance(scale, bool) or not isinstance(scale, (int, float, np.floating)) or not 0 <= scale < np.inf
    ):
        raise ValueError(f"`scale` must be a finite number >= 0 or None. Received: scale={scale!r}")
    r = np.asarray(expected, dtype=np.float64)
    derived = bound is not None and dtype in DERIVED_DTYPES
    if derived:
        m = np.asarray(bound, dtype=np.float64)
        try:
            np.broadcast_shapes(m.shape, r.shape)
        except ValueError:
            raise ValueError(
                f"`bound` of {name} must broadcast to shape {r.shape}. Received: shape {m.shape}"
            ) from None
        if not (m >= 0).all():  # also refuses NaN
            raise ValueError(f"`bound` of {name} must be >= 0 (and not NaN) everywhere. Received: min {np.min(m)}")
        if not np.isfinite(np.broadcast_to(m, r.shape)[np.isfinite(r)]).all():  # it would pass anything there
            raise ValueError(f"`bound` of {name} must be finite where the reference is finite. Received: +inf")
    try:
        a = np.asarray(actual, dtype=np.float64)
    except (TypeError, ValueError) as e:
        return _failure(name, dtype, seed, f"could not be read as an array: {e}")
    if a.shape != r.shape:
        return _failure(name, dtype, seed, f"shape {a.shape}, expected {r.shape}")
    if a.size == 0:
        return Comparison(name, dtype, True, 0.0, None, None, None, 0.0, seed)
    finite_r = np.isfinite(r)
    same_nonfinite = (np.isnan(a) & np.isnan(r)) | ((a == r) & ~finite_r)
    if scale is None:
        scale = float(np.abs(r[finite_r]).max()) if finite_r.any() else 0.0
    allowed = allowed_error(dtype, r, bound if derived else None, scale)
    with np.errstate(invalid="ignore", divide="ignore"):
        err = np.abs(a - r)
        ratio = np.where(same_nonfinite, 0.0, np.where(err == 0, 0.0, err / allowed))
    ratio = np.where(np.isnan(ratio), np.inf, ratio)
    i = np.unravel_index(int(np.argmax(ratio)), ratio.shape)
    worst = float(ratio[i])
    rule = "derived" if derived else "relative"
    index = tuple(int(j) for j in i)
    return Comparison(name, dtype, worst <= 1.0, worst, index, float(a[i]), float(r[i]), scale, seed, rule=rule)
