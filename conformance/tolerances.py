"""Tolerances of SPEC.md section 9: the one place they live.

float64 and float32 are compared with a bound derived from the computation (running error
analysis, :mod:`reference_numpy.bounds`): ``|a - r| <= BOUND_FACTOR * (u_d + u_ref) * M + TINY_d``
with ``M`` the reference's per-element bound in units of the unit roundoff. Half types
(bfloat16, float16), and comparisons for which no ``M`` exists (two ports against each other),
keep the relative rule ``atol * max|r| + rtol * |r|`` of :data:`TOLERANCES`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "BOUND_FACTOR",
    "DERIVED_DTYPES",
    "DTYPES",
    "TINY",
    "TOLERANCES",
    "UNIT_ROUNDOFF",
    "Tolerance",
    "allowed_error",
    "tolerance",
    "widening",
]


class Tolerance(NamedTuple):
    rtol: float
    atol: float  # times max |reference| of the tensor


TOLERANCES: dict[str, Tolerance] = {
    "float64": Tolerance(rtol=1e-10, atol=1e-12),
    "float32": Tolerance(rtol=1e-5, atol=1e-6),
    "bfloat16": Tolerance(rtol=2e-2, atol=1e-2),
    "float16": Tolerance(rtol=2e-3, atol=1e-3),
}
"""The relative rule: half types, and comparisons without a derived bound."""
DTYPES = tuple(TOLERANCES)

UNIT_ROUNDOFF: dict[str, float] = {"float64": 2.0**-53, "float32": 2.0**-24, "bfloat16": 2.0**-8, "float16": 2.0**-11}
"""u_d: half the distance from 1 to the next number (round to nearest)."""
DERIVED_DTYPES = ("float64", "float32")
"""The dtypes compared with the derived bound (gradients included)."""
BOUND_FACTOR = 2.0
"""Safety factor over the first-order bound M: covers the neglected O(u^2) terms many times over
(they are below n^2 u^2 sum|t|, a factor n u < 1e-3 of the first-order term at the suite's sizes)
and leaves a factor 2 on the library-function constants."""
TINY: dict[str, float] = {d: float(np.finfo(d).tiny) for d in DERIVED_DTYPES}
"""An absolute floor: the smallest normal number, for results in the subnormal range."""


def tolerance(dtype: str) -> Tolerance:
    """The relative rule's tolerance for ``dtype`` (a name such as ``"float32"``)."""
    try:
        return TOLERANCES[dtype]
    except KeyError:
        raise ValueError(f"No tolerance for dtype {dtype!r}. Expected one of {', '.join(map(repr, DTYPES))}") from None


def widening(finer: str, coarser: str, rule: str = "derived") -> float:
    """How many times the error allowed in ``coarser`` exceeds that in ``finer``, under ``rule``
    (``"derived"``: the ratio of the bounds of SPEC.md 9.3; ``"relative"``: of the relative rule's terms).

    >>> widening("float64", "float32") == (2**-24 + 2**-53) / (2 * 2**-53)
    True
    >>> widening("float64", "float32", "relative")
    100000.0
    """
    if rule == "derived" and finer in DERIVED_DTYPES and coarser in DERIVED_DTYPES:
        u64 = UNIT_ROUNDOFF["float64"]
        return (UNIT_ROUNDOFF[coarser] + u64) / (UNIT_ROUNDOFF[finer] + u64)
    a, b = tolerance(finer), tolerance(coarser)
    return min(b.rtol / a.rtol, b.atol / a.atol)


def allowed_error(dtype: str, expected: Any, bound: Any = None, scale: float | None = None) -> np.ndarray:
    """The largest ``|a - r|`` allowed elementwise for a result in ``dtype`` against the float64 ``expected``.

    With ``bound`` (the reference's ``M``, units of u, broadcastable to ``expected``) and ``dtype``
    in :data:`DERIVED_DTYPES`: ``BOUND_FACTOR * (u_d + u_float64) * M + TINY_d`` (the reference's own
    rounding is the ``u_float64`` part). Otherwise the relative rule with ``scale`` (default
    ``max|r|`` over the finite entries).

    >>> print(f'{allowed_error("float32", [1.0], bound=[10.0])[0]:.6g}')  # 2 * (2**-24 + 2**-53) * 10
    1.19209e-06
    >>> print(f'{allowed_error("float32", [1.0, -2.0])[1]:.6g}')  # 1e-6 * 2 + 1e-5 * 2
    2.2e-05
    """
    tol = tolerance(dtype)
    r = np.asarray(expected, dtype=np.float64)
    if bound is not None and dtype in DERIVED_DTYPES:
        m = np.asarray(bound, dtype=np.float64)
        out = BOUND_FACTOR * (UNIT_ROUNDOFF[dtype] + UNIT_ROUNDOFF["float64"]) * m + TINY[dtype]
        return np.broadcast_to(out, r.shape)
    finite = np.isfinite(r)
    if scale is None:
        scale = float(np.abs(r[finite]).max()) if finite.any() else 0.0
    return tol.atol * scale + tol.rtol * np.abs(r)
