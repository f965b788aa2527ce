"""The Flax port (``flax_impl``) as two adapters: Linen and NNX.

Both run eagerly (op by op; a jit per case would spend more time compiling than running)
and take the VJP with ``jax.vjp`` with respect to the input and every weight. float64 runs
switch JAX's x64 mode on for the duration of each call only, so it never leaks into other
code in the process.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import flax_impl.linen as fl
import flax_impl.nnx as fn
from flax_impl import PARAMS, STATS, collection_to_canonical
from reference_numpy import Config, flatten

from .base import Adapter, Outputs
from .run import jax_vjp
from .run import x64 as _x64

# (input, weights keyed like the Flax layout without the collection) -> (y, updated running statistics, same keys)
Forward = Callable[[jax.Array, dict[str, jax.Array]], tuple[jax.Array, dict[str, jax.Array]]]


def _evaluate(
    cfg: Config,
    forward: Forward,
    weights: Any,
    flat: Callable[[Any], dict[str, Any]],
    x: np.ndarray,
    dy: np.ndarray | None,
    *,
    training: bool,
    dtype: str,
) -> Outputs:
    """Forward (and VJP) of ``forward`` at ``x`` and the pytree ``weights``; ``flat`` keys a pytree like the layout."""
    xj = jnp.asarray(x, dtype=dtype)
    grads: dict[str, np.ndarray] = {}
    dx = None
    dyj = None if dy is None else jnp.asarray(dy, dtype=dtype)
    y, dxj, dweights, stats = jax_vjp(lambda w, _, xx: forward(xx, w), weights, {}, xj, dyj)
    if dy is not None:
        dx, grads = _f64(dxj), collection_to_canonical(cfg, flat(dweights), PARAMS)
    state = collection_to_canonical(cfg, flat(stats), STATS) if training else {}
    return Outputs(_f64(y), dx, {k: _f64(v) for k, v in grads.items()}, {k: _f64(v) for k, v in state.items()})


def _f64(a: Any) -> np.ndarray:
    return np.asarray(a).astype(np.float64)


class LinenAdapter(Adapter):
    name = "flax.linen"

    def build(self, cfg: Config, dtype: str) -> Any:
        return fl.from_config(cfg, param_dtype=dtype)

    def load(self, module: Any, cfg: Config, params: dict[str, np.ndarray], dtype: str) -> Any:
        with _x64(dtype):
            return module, fl.from_canonical(cfg, params, param_dtype=dtype)

    def evaluate(
        self, module: Any, x: np.ndarray, dy: np.ndarray | None, *, training: bool, data_format: str, dtype: str
    ) -> Outputs:
        model, variables = module
        model = model.clone(data_format=data_format)
        stats = variables.get(STATS, {})

        def forward(x: jax.Array, weights: Any) -> tuple[jax.Array, Any]:
            if not training:
                return model.apply({PARAMS: weights, STATS: stats}, x), {}
            y, updates = model.apply({PARAMS: weights, STATS: stats}, x, training=True, mutable=[STATS])
            return y, updates.get(STATS, {})

        with _x64(dtype):
            return _evaluate(model.config, forward, variables[PARAMS], flatten, x, dy, training=training, dtype=dtype)


class NNXAdapter(Adapter):
    name = "flax.nnx"

    def build(self, cfg: Config, dtype: str) -> Any:
        with _x64(dtype):  # abstract: load() gives every variable its value, so nothing is drawn
            return nnx.eval_shape(lambda: fn.from_config(cfg, param_dtype=dtype, rngs=nnx.Rngs(0)))

    def load(self, module: Any, cfg: Config, params: dict[str, np.ndarray], dtype: str) -> Any:
        with _x64(dtype):
            fn.load_canonical(module, params)
        return module

    def evaluate(
        self, module: Any, x: np.ndarray, dy: np.ndarray | None, *, training: bool, data_format: str, dtype: str
    ) -> Outputs:
        module.data_format = data_format
        module.train() if training else module.eval()
        graphdef, weights, rest = nnx.split(module, nnx.Param, ...)  # type: ignore[misc]

        def forward(x: jax.Array, weights: Any) -> tuple[jax.Array, Any]:
            # fresh variables, made inside the VJP's trace so that batch norm may update them
            m = nnx.merge(graphdef, weights, jax.tree_util.tree_map(lambda a: a, rest))
            return m(x), (nnx.state(m, nnx.BatchStat) if training else {})

        with _x64(dtype):
            return _evaluate(module.config, forward, weights, _flat_state, x, dy, training=training, dtype=dtype)


def _flat_state(state: Any) -> dict[str, Any]:
    return flatten(nnx.to_pure_dict(state)) if isinstance(state, nnx.State) else flatten(state)
