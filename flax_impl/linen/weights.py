"""Canonical weights <-> Linen variables, through the spec's Flax conversion table."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np

from reference_numpy import Config, as_config, canonical_arrays, flatten, framework_layout, from_framework, nest
from reference_numpy.convert import to_framework_array

from .._layout import float_dtype


def from_canonical(cfg: Config, params: Mapping[str, Any], *, param_dtype: Any = jnp.float32) -> dict[str, Any]:
    """Canonical params (NumPy or any framework's arrays) -> ``{"params": ..., "batch_stats": ...}``.

    Every value is checked before anything is built (``reference_numpy.canonical_arrays``):
    every missing, unexpected or mis-shaped canonical key in one
    ``reference_numpy.KeyMismatchError``, values that are not real numbers in one ``TypeError``,
    finite values that would overflow ``param_dtype`` in one ``ValueError``.

    >>> import jax, jax.numpy as jnp
    >>> from reference_numpy import SEConfig, init_params
    >>> cfg = SEConfig(channels=32, rd_channels=4)
    >>> variables = from_canonical(cfg, init_params(cfg))
    >>> jax.tree_util.tree_map(jnp.shape, variables)
    {'params': {'fc1': {'bias': (4,), 'kernel': (32, 4)}, 'fc2': {'bias': (32,), 'kernel': (4, 32)}}}
    """
    cfg = as_config(cfg)
    dtype = float_dtype("param_dtype", param_dtype)
    arrays = canonical_arrays(cfg, params, what="canonical params", dtypes=dtype)
    layout = framework_layout(cfg, "flax")
    return nest(
        {
            p.key: jnp.asarray(to_framework_array(p.kind, arrays[name], "flax"), dtype=dtype)
            for name, p in layout.items()
        }
    )


def to_canonical(cfg: Config, variables: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Linen variables (``params`` and, with batch norm, ``batch_stats``) -> canonical NumPy arrays.

    The arrays keep their dtype; every missing, unexpected or mis-shaped key is reported at once.
    """
    if not isinstance(variables, Mapping):
        raise TypeError(f"`variables` must be Linen variables (a mapping). Received: {type(variables).__name__}")
    return from_framework(cfg, flatten(variables), "flax")
