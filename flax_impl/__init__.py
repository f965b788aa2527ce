"""The Flax port of attnspec: ``flax_impl.linen`` and ``flax_impl.nnx``.

Importing this package imports neither JAX nor Flax (it only checks that both are installed);
``flax_impl.linen`` and ``flax_impl.nnx`` load on first use. float64 needs JAX's x64 mode
(``jax.enable_x64``).
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any


def _require(*names: str) -> None:
    """A ModuleNotFoundError naming the extra to install when one of ``names`` is not installed (none is imported)."""
    for name in names:
        cause: ModuleNotFoundError | None = None
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError as e:  # an import hook that hides it
            if e.name != name:
                raise
            found, cause = False, e
        if not found:
            raise ModuleNotFoundError(
                f'flax_impl needs JAX and Flax ({name} is not installed): pip install "attnspec[flax]"', name=name
            ) from cause


_require("jax", "flax")

__all__ = ["linen", "nnx"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
