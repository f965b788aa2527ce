"""Canonical parameter dicts: creation and key/shape checking."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .config import Config, param_init, param_layout

__all__ = ["KeyMismatchError", "check_params", "init_params"]


class KeyMismatchError(ValueError):
    """A parameter dict that does not match a layout; lists every problem at once."""

    def __init__(self, what: str, missing: list[str], unexpected: list[str], misshaped: list[str]):
        self.missing, self.unexpected, self.misshaped = missing, unexpected, misshaped
        parts = []
        if missing:
            parts.append(f"missing keys: {', '.join(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {', '.join(unexpected)}")
        if misshaped:
            parts.append(f"mis-shaped keys: {', '.join(misshaped)}")
        super().__init__(f"{what} does not match the expected layout; " + "; ".join(parts) + ".")


def match_keys(
    what: str,
    got: Mapping[str, Any],
    expected: Mapping[str, tuple[int, ...]],
) -> None:
    """Raise :class:`KeyMismatchError` naming every missing, unexpected and mis-shaped key.

    ``expected`` maps names to shapes; values of ``got`` need only a ``shape`` attribute.
    """
    missing = [k for k in expected if k not in got]
    unexpected = sorted(k for k in got if k not in expected)
    misshaped = [
        f"{k} (expected shape {tuple(shape)}, received {tuple(np.shape(got[k]))})"
        for k, shape in expected.items()
        if k in got and tuple(np.shape(got[k])) != tuple(shape)
    ]
    if missing or unexpected or misshaped:
        raise KeyMismatchError(what, missing, unexpected, misshaped)


def check_params(cfg: Config, params: Mapping[str, Any], *, what: str = "params") -> None:
    """Check that ``params`` has exactly the canonical keys and shapes of ``cfg``.

    >>> from reference_numpy import SEConfig
    >>> check_params(SEConfig(channels=8, rd_channels=2), {"fc1.weight": np.zeros((2, 4))})
    Traceback (most recent call last):
    ...
    reference_numpy.params.KeyMismatchError: params does not match the expected layout; missing keys: fc1.bias, fc2.weight, fc2.bias; mis-shaped keys: fc1.weight (expected shape (2, 8), received (2, 4)).
    """
    if not isinstance(params, Mapping):
        raise TypeError(f"`{what}` must be a mapping of canonical names to arrays. Received: {type(params).__name__}")
    match_keys(what, params, {k: s.shape for k, s in param_layout(cfg).items()})


def init_params(cfg: Config, seed: int = 0) -> dict[str, np.ndarray]:
    """Fresh float64 canonical parameters (PyTorch's default initialisation), seeded.

    >>> from reference_numpy import ECAConfig
    >>> p = init_params(ECAConfig(channels=64), seed=0)
    >>> {k: v.shape for k, v in p.items()}
    {'conv.weight': (3,)}
    """
    rng = np.random.default_rng(seed)
    layout = param_layout(cfg)
    out = {}
    for name, init in param_init(cfg).items():
        shape = layout[name].shape
        if init.dist == "constant":
            out[name] = np.full(shape, init.value, dtype=np.float64)
        else:
            out[name] = rng.uniform(-init.value, init.value, size=shape)
    return out
