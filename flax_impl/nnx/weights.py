"""Canonical weights <-> NNX modules, through the spec's Flax conversion table."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np

from reference_numpy import from_framework, to_framework

from .._layout import entries, variable_key
from ._base import Attention


def load_canonical(module: Attention, params: Mapping[str, Any]) -> None:
    """Set ``module``'s weights and running statistics from canonical params, in place.

    Each array is cast to the dtype of the variable it replaces. Every missing, unexpected or
    mis-shaped canonical key is reported in one ``reference_numpy.KeyMismatchError``, before
    anything is changed.

    >>> from flax import nnx
    >>> from reference_numpy import ECAConfig, init_params
    >>> from flax_impl.nnx import ECA, to_canonical
    >>> eca = ECA(64, kernel_size=5, rngs=nnx.Rngs(0))
    >>> load_canonical(eca, {"conv.weight": [0.0, 0.5, 1.0, 0.5, 0.0]})
    >>> eca.conv.kernel.shape, to_canonical(eca)["conv.weight"].tolist()
    ((5, 1, 1), [0.0, 0.5, 1.0, 0.5, 0.0])
    """
    flat = to_framework(module.config, params, "flax")
    variables = module._variables()
    for e in entries(module.config):
        var = variables[e.key]
        var.set_value(jnp.asarray(flat[variable_key(e)], dtype=var.get_value().dtype))


def to_canonical(module: Attention) -> dict[str, np.ndarray]:
    """``module``'s weights and running statistics as canonical NumPy arrays (dtypes kept)."""
    variables = module._variables()
    flat = {variable_key(e): variables[e.key].get_value() for e in entries(module.config)}
    return from_framework(module.config, flat, "flax")
