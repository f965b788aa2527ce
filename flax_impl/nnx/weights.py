"""Canonical weights <-> NNX modules, through the spec's Flax conversion table."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np

from reference_numpy import framework_layout, from_framework, staged_canonical

from .._layout import entries, variable_key
from ._base import Attention


def load_canonical(module: Attention, params: Mapping[str, Any], strict: bool = True) -> Attention:
    """Set ``module``'s weights and running statistics from canonical params, in place; returns ``module``.

    Each array is cast to the dtype of the variable it replaces. Everything is checked and
    converted before anything is changed (``reference_numpy.staged_canonical``): every missing
    (when ``strict``), unexpected or mis-shaped canonical key in one
    ``reference_numpy.KeyMismatchError``, values that are not real numbers in one ``TypeError``,
    finite values that would overflow a variable's dtype in one ``ValueError``. With
    ``strict=False`` any subset of the canonical names is loaded and the others keep their values.

    >>> from flax import nnx
    >>> from reference_numpy import ECAConfig, init_params
    >>> from flax_impl.nnx import ECA, to_canonical
    >>> eca = ECA(64, kernel_size=5, rngs=nnx.Rngs(0))
    >>> _ = load_canonical(eca, {"conv.weight": [0.0, 0.5, 1.0, 0.5, 0.0]})
    >>> eca.conv.kernel.shape, to_canonical(eca)["conv.weight"].tolist()
    ((5, 1, 1), [0.0, 0.5, 1.0, 0.5, 0.0])
    """
    if not isinstance(module, Attention):
        raise TypeError(f"`module` must be an attnspec NNX module. Received: {type(module).__name__}")
    variables = module._variables()
    by_name = {name: variables[".".join(p.path[1:])] for name, p in framework_layout(module.config, "flax").items()}
    dtypes = {name: var.get_value().dtype for name, var in by_name.items()}
    arrays = staged_canonical(module.config, params, "flax", strict=strict, dtypes=dtypes)
    staged = {name: jnp.asarray(a, dtype=dtypes[name]) for name, a in arrays.items()}
    for name, value in staged.items():
        by_name[name].set_value(value)
    return module


def to_canonical(module: Attention) -> dict[str, np.ndarray]:
    """``module``'s weights and running statistics as canonical NumPy arrays (dtypes kept)."""
    if not isinstance(module, Attention):
        raise TypeError(
            f"`module` must be an attnspec NNX module (SqueezeExcite, CBAM or ECA). Received: {type(module).__name__}"
        )
    variables = module._variables()
    flat = {variable_key(e): variables[e.key].get_value() for e in entries(module.config)}
    return from_framework(module.config, flat, "flax")
