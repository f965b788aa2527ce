"""The variables a module holds, read from the spec's Flax layout, and their conversions.

Names, shapes, collections and initial distributions all come from ``reference_numpy``
(``framework_layout(cfg, "flax")`` and ``param_init(cfg)``); nothing here knows a module.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from reference_numpy import (
    Config,
    InitSpec,
    framework_layout,
    from_framework_array,
    param_init,
)

PARAMS, STATS = "params", "batch_stats"


class Entry(NamedTuple):
    """One variable: ``key`` is its path without the collection, e.g. ``"spatial.bn.mean"``."""

    key: str
    collection: str  # "params" or "batch_stats"
    shape: tuple[int, ...]
    init: InitSpec


@functools.cache
def entries(cfg: Config) -> tuple[Entry, ...]:
    """Every variable of ``cfg``'s module, in the spec's canonical order."""
    inits = param_init(cfg)
    return tuple(
        Entry(".".join(p.path[1:]), p.collection, p.shape, inits[name])
        for name, p in framework_layout(cfg, "flax").items()
    )


def initializer(spec: InitSpec) -> Callable[[Any, tuple[int, ...], Any], jax.Array]:
    """A ``(key, shape, dtype)`` initializer for the spec's distribution (uniform in [-b, b] or constant)."""
    if spec.dist == "constant":
        return lambda key, shape, dtype: jnp.full(shape, spec.value, dtype)
    return lambda key, shape, dtype: jax.random.uniform(key, shape, dtype, -spec.value, spec.value)


def split(values: Mapping[str, Any], cfg: Config) -> tuple[dict[str, Any], dict[str, Any]]:
    """Values keyed like :func:`entries` -> (weights, running statistics)."""
    kinds = {e.key: e.collection for e in entries(cfg)}
    weights = {k: v for k, v in values.items() if kinds[k] == PARAMS}
    return weights, {k: v for k, v in values.items() if kinds[k] == STATS}


def variable_key(e: Entry) -> str:
    """The flat key of ``e`` in ``reference_numpy.to_framework``'s Flax naming: collection first."""
    return f"{e.collection}.{e.key}"


def collection_to_canonical(cfg: Config, values: Mapping[str, Any], collection: str) -> dict[str, np.ndarray]:
    """One collection's arrays keyed like :func:`entries` (e.g. gradients of the weights, or the
    updated running statistics) -> canonical names and layouts."""
    return {
        name: from_framework_array(p.kind, np.asarray(values[".".join(p.path[1:])]), "flax")
        for name, p in framework_layout(cfg, "flax").items()
        if p.collection == collection
    }


def float_dtype(name: str, dtype: Any, *, allow_none: bool = False) -> Any:
    """``dtype`` as a JAX floating dtype, checked when a module is built (not at its first call).

    ``None`` passes when ``allow_none`` (the computation dtype: the input's).
    """
    if dtype is None and allow_none:
        return None
    try:
        resolved = None if dtype is None else jnp.dtype(dtype)  # jnp.dtype(None) would be float64
    except (TypeError, ValueError):
        resolved = None
    if resolved is None or not jnp.issubdtype(resolved, jnp.floating):
        expected = "a floating dtype" + (" or None" if allow_none else "")
        raise TypeError(f"`{name}` must be {expected}. Received: {name}={dtype!r}")
    return resolved
