"""The Flax port of attnspec: ``flax_impl.linen`` and ``flax_impl.nnx``.

Importing this package imports neither JAX nor Flax (it only checks that both are installed);
``flax_impl.linen`` and ``flax_impl.nnx`` load on first use. float64 needs JAX's x64 mode
(``jax.enable_x64``).

What both APIs share is published here, for code that reads their variables by collection
(the conformance adapters, gradients of the weights):

- ``PARAMS``, ``STATS``: the collections of the weights (``"params"``) and of the running
  statistics (``"batch_stats"``);
- ``collection_to_canonical(cfg, values, collection)``: one collection's arrays, keyed by their
  Flax path without the collection (``"spatial.bn.mean"``), as canonical names and layouts.

>>> import numpy as np, flax_impl
>>> from reference_numpy import CBAMConfig
>>> stats = {"spatial.bn.mean": np.zeros(1), "spatial.bn.var": np.ones(1)}
>>> flax_impl.collection_to_canonical(CBAMConfig(channels=8), stats, flax_impl.STATS)
{'spatial.bn.running_mean': array([0.]), 'spatial.bn.running_var': array([1.])}
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

__all__ = ["PARAMS", "STATS", "collection_to_canonical", "linen", "nnx"]

_SUBMODULES = ("linen", "nnx")


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in __all__:  # imports JAX
        return getattr(importlib.import_module(f"{__name__}._layout"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
