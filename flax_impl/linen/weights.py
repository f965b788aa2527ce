"""Canonical weights <-> Linen variables, through the spec's Flax conversion table."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np

from reference_numpy import Config, flatten, from_framework, nest, to_framework


def from_canonical(cfg: Config, params: Mapping[str, Any], *, param_dtype: Any = jnp.float32) -> dict[str, Any]:
    """Canonical params (NumPy or any framework's arrays) -> ``{"params": ..., "batch_stats": ...}``.

    Every missing, unexpected or mis-shaped canonical key is reported in one
    ``reference_numpy.KeyMismatchError``.

    >>> import jax, jax.numpy as jnp
    >>> from reference_numpy import SEConfig, init_params
    >>> cfg = SEConfig(channels=32, rd_channels=4)
    >>> variables = from_canonical(cfg, init_params(cfg))
    >>> jax.tree_util.tree_map(jnp.shape, variables)
    {'params': {'fc1': {'bias': (4,), 'kernel': (32, 4)}, 'fc2': {'bias': (32,), 'kernel': (4, 32)}}}
    """
    return nest({k: jnp.asarray(v, dtype=param_dtype) for k, v in to_framework(cfg, params, "flax").items()})


def to_canonical(cfg: Config, variables: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Linen variables (``params`` and, with batch norm, ``batch_stats``) -> canonical NumPy arrays.

    The arrays keep their dtype; every missing, unexpected or mis-shaped key is reported at once.
    """
    return from_framework(cfg, flatten(variables), "flax")
