"""Shared pieces of the Flax tests: each namespace's module as one pure function of arrays."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np
from flax import nnx

import flax_impl.linen as fl
import flax_impl.nnx as fn
from conformance import Outputs
from reference_numpy import Config, param_layout

NAMESPACES = ("linen", "nnx")


class Functional(NamedTuple):
    """``apply(x, weights, stats, training) -> (y, new stats)``, pure, for jit/grad/vmap.

    ``weights`` and ``stats`` are nested pytrees (Linen dicts or NNX states);
    ``canonical(weights, stats)`` maps such trees (e.g. gradients) back to canonical names.
    """

    apply: Callable[[jax.Array, Any, Any, bool], tuple[jax.Array, Any]]
    weights: Any
    stats: Any
    canonical: Callable[[Any, Any], dict[str, np.ndarray]]


def _canonical(cfg: Config, weights: Any, stats: Any) -> dict[str, np.ndarray]:
    return fl.to_canonical(cfg, {"params": weights, **({"batch_stats": stats} if stats else {})})


def functional(
    namespace: str, cfg: Config, params: dict[str, np.ndarray], data_format: str, **options: Any
) -> Functional:
    """The module of ``namespace`` for ``cfg``, loaded with canonical ``params``, as a pure function.

    ``options`` are the module's (``data_format``, ``dtype``, ``param_dtype``, ...); the weights
    are loaded in ``param_dtype`` in both namespaces.
    """
    if namespace == "linen":
        model = fl.from_config(cfg, data_format=data_format, **options)
        variables = fl.from_canonical(cfg, params, **{k: v for k, v in options.items() if k == "param_dtype"})

        def apply_linen(x: jax.Array, weights: Any, stats: Any, training: bool) -> tuple[jax.Array, Any]:
            y, updates = model.apply(
                {"params": weights, "batch_stats": stats}, x, training=training, mutable=["batch_stats"]
            )
            return y, updates.get("batch_stats", {})

        return Functional(
            apply_linen, variables["params"], variables.get("batch_stats", {}), lambda w, s: _canonical(cfg, w, s)
        )

    module = nnx.eval_shape(lambda: fn.from_config(cfg, data_format=data_format, rngs=nnx.Rngs(0), **options))
    fn.load_canonical(module, params)
    graphdef, weights, stats = nnx.split(module, nnx.Param, nnx.BatchStat)

    def apply_nnx(x: jax.Array, weights: Any, stats: Any, training: bool) -> tuple[jax.Array, Any]:
        m = nnx.merge(graphdef, weights, jax.tree_util.tree_map(lambda a: a, stats))  # variables of this trace
        m.train() if training else m.eval()
        return m(x), nnx.state(m, nnx.BatchStat)

    def canonical_nnx(weights: Any, stats: Any) -> dict[str, np.ndarray]:
        return _canonical(cfg, nnx.to_pure_dict(weights), nnx.to_pure_dict(stats))

    return Functional(apply_nnx, weights, stats, canonical_nnx)


def outputs(cfg: Config, y: Any, dx: Any, grads: dict[str, np.ndarray], state: dict[str, np.ndarray]) -> Outputs:
    """Port results as the conformance core's :class:`~conformance.Outputs` (trainable grads, BN stats)."""
    layout = param_layout(cfg)
    return Outputs(
        np.asarray(y, dtype=np.float64),
        None if dx is None else np.asarray(dx, dtype=np.float64),
        {k: np.asarray(v, dtype=np.float64) for k, v in grads.items() if layout[k].trainable},
        {k: np.asarray(v, dtype=np.float64) for k, v in state.items() if not layout[k].trainable},
    )
