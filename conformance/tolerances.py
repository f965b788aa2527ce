"""The per-dtype tolerance table of SPEC.md section 9: the one place tolerances live."""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["DTYPES", "TOLERANCES", "Tolerance", "tolerance"]


class Tolerance(NamedTuple):
    rtol: float
    atol: float  # times max |reference| of the tensor


TOLERANCES: dict[str, Tolerance] = {
    "float64": Tolerance(rtol=1e-10, atol=1e-12),
    "float32": Tolerance(rtol=1e-5, atol=1e-6),
    "bfloat16": Tolerance(rtol=2e-2, atol=1e-2),
    "float16": Tolerance(rtol=2e-3, atol=1e-3),
}
DTYPES = tuple(TOLERANCES)


def tolerance(dtype: str) -> Tolerance:
    """The tolerance for ``dtype`` (a name such as ``"float32"``)."""
    try:
        return TOLERANCES[dtype]
    except KeyError:
        raise ValueError(f"No tolerance for dtype {dtype!r}. Expected one of {', '.join(map(repr, DTYPES))}") from None
