"""The Flax port of attnspec: ``flax_impl.linen`` and ``flax_impl.nnx``.

Importing this package imports neither JAX nor Flax; ``flax_impl.linen`` and ``flax_impl.nnx``
load on first use. float64 needs JAX's x64 mode (``jax.enable_x64``).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["linen", "nnx"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
