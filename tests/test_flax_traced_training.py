"""A traced ``training`` flag under ``jax.jit`` (SPEC.md section 8, configs and flags; issue #14 item 5).

``training`` (Linen) and ``use_running_average`` (NNX) may be a Python bool (the static path)
or a 0-d boolean array, traced under ``jax.jit``: one compiled program then serves both modes.
Batch norm picks batch or running statistics with ``lax.cond`` and returns the running
statistics in both modes, unchanged in eval mode. Anything else is a ``TypeError``.

Each module (SE, CBAM with its batch norm, ECA) runs in float64 under ``jax.jit`` with the flag
static and traced. Eval mode compiles to the same arithmetic: output, gradients and statistics
agree bit for bit. In train mode XLA may order the batch statistics' reductions differently
inside the conditional, so both are held to the NumPy reference (the conformance tolerance)
instead, and the updated statistics too.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.flax
jax = pytest.importorskip("jax")
pytest.importorskip("flax")

import jax.numpy as jnp  # noqa: E402
from flax import nnx  # noqa: E402

import flax_impl.linen as fl  # noqa: E402
import flax_impl.nnx as fn  # noqa: E402
import reference_numpy as ref  # noqa: E402
from conformance import compare, make_case  # noqa: E402
from flax_impl._layout import STATS  # noqa: E402
from reference_numpy import CBAMConfig, ECAConfig, SEConfig  # noqa: E402

CONFIGS = {
    "se": SEConfig(channels=6, rd_channels=2),
    "cbam": CBAMConfig(channels=6, rd_channels=2, pool_types=("avg", "max"), spatial_norm=True),
    "eca": ECAConfig(channels=6, kernel_size=3),
}
SHAPE = (2, 6, 3, 5)  # N, C, H, W


def _program(namespace: str, cfg: Any, params: dict[str, np.ndarray]) -> tuple[Any, Any, Any]:
    """(f, weights, stats) with ``f(weights, stats, x, dy, training) -> (y, new stats, grads of sum(y * dy))``."""
    if namespace == "linen":
        model = fl.from_config(cfg, data_format="channels_first", param_dtype=jnp.float64)
        variables = fl.from_canonical(cfg, params, param_dtype=jnp.float64)

        def run(weights: Any, stats: Any, x: jax.Array, training: Any) -> tuple[jax.Array, Any]:
            y, upd = model.apply({"params": weights, STATS: stats}, x, training=training, mutable=[STATS])
            return y, upd.get(STATS, {})

        weights, stats = variables["params"], variables.get(STATS, {})
    else:
        module = nnx.eval_shape(
            lambda: fn.from_config(cfg, data_format="channels_first", param_dtype=jnp.float64, rngs=nnx.Rngs(0))
        )
        fn.load_canonical(module, params)
        graphdef, weights, stats = nnx.split(module, nnx.Param, nnx.BatchStat)

        def run(weights: Any, stats: Any, x: jax.Array, training: Any) -> tuple[jax.Array, Any]:
            m = nnx.merge(graphdef, weights, jax.tree_util.tree_map(lambda a: a, stats))
            if cfg.module == "cbam":
                running = not training if isinstance(training, bool) else jnp.logical_not(training)
                y = m(x, use_running_average=running)
            else:
                y = m(x)
            return y, nnx.state(m, nnx.BatchStat)

    def f(weights: Any, stats: Any, x: jax.Array, dy: jax.Array, training: Any) -> Any:
        def loss(weights: Any, x: jax.Array) -> tuple[jax.Array, Any]:
            y, new = run(weights, stats, x, training)
            return jnp.sum(y * dy), (y, new)

        (_, (y, new)), grads = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(weights, x)
        return y, new, grads

    return f, weights, stats


def _leaves(tree: Any) -> list[np.ndarray]:
    return [np.asarray(a) for a in jax.tree_util.tree_leaves(tree)]


@pytest.mark.parametrize("namespace", ["linen", "nnx"])
@pytest.mark.parametrize("module", list(CONFIGS))
@pytest.mark.parametrize("training", [False, True])
def test_a_traced_flag_gives_what_the_static_flag_gives(namespace, module, training):
    cfg = CONFIGS[module]
    case = make_case(cfg, seed=3, dtype="float64", training=training, shape=SHAPE)
    with jax.enable_x64(True):
        f, weights, stats = _program(namespace, cfg, case.params)
        x, dy = jnp.asarray(case.x), jnp.asarray(case.dy)
        static = jax.jit(f, static_argnums=4)(weights, stats, x, dy, training)
        traced = jax.jit(f)(weights, stats, x, dy, jnp.asarray(training))
        static, traced = jax.tree_util.tree_map(np.asarray, (static, traced))
    (y_s, new_s, (gw_s, gx_s)), (y_t, new_t, (gw_t, gx_t)) = static, traced
    assert jax.tree_util.tree_structure(gw_s) == jax.tree_util.tree_structure(gw_t)
    if cfg.has_batch_norm and not training:
        # the traced program returns the running statistics, unchanged; the static one leaves them
        for a, b in zip(_leaves(new_t), _leaves(stats), strict=True):
            np.testing.assert_array_equal(a, b)
    if not training:  # the same arithmetic: bit for bit
        np.testing.assert_array_equal(y_t, y_s)
        np.testing.assert_array_equal(gx_t, gx_s)
        for a, b in zip(_leaves(gw_t), _leaves(gw_s), strict=True):
            np.testing.assert_array_equal(a, b)
        return
    # train mode: both against the reference, statistics included
    want_y, cache, want_state = ref.forward(cfg, case.params, case.x, training=True)
    want_dx, want_grads = ref.backward(cfg, case.dy, cache)
    canonical = fl.to_canonical if namespace == "linen" else None
    for label, (y, new, gw, gx) in {"static": (y_s, new_s, gw_s, gx_s), "traced": (y_t, new_t, gw_t, gx_t)}.items():
        checks = [compare(f"{label} y", y, want_y, "float64"), compare(f"{label} dx", gx, want_dx, "float64")]
        got = _canonical(namespace, cfg, gw, new, canonical)
        checks += [compare(f"{label} grad[{k}]", got[k], v, "float64") for k, v in want_grads.items()]
        checks += [compare(f"{label} state[{k}]", got[k], v, "float64") for k, v in want_state.items()]
        bad = [c.message for c in checks if not c.ok]
        assert not bad, "\n".join(bad)
    assert set(want_state) == ({"spatial.bn.running_mean", "spatial.bn.running_var"} if cfg.has_batch_norm else set())


def _canonical(namespace: str, cfg: Any, weights: Any, stats: Any, to_canonical: Any) -> dict[str, np.ndarray]:
    if namespace == "nnx":
        weights, stats = nnx.to_pure_dict(weights), nnx.to_pure_dict(stats)
    variables = {"params": weights, **({STATS: stats} if stats else {})}
    return {k: np.asarray(v) for k, v in fl.to_canonical(cfg, variables).items()}


@pytest.mark.parametrize("namespace", ["linen", "nnx"])
@pytest.mark.parametrize("flag", ["no", 1, 1.0, np.float32(0.0), np.array([True]), "jnp-float"])
def test_a_flag_that_is_not_a_bool_is_a_type_error(namespace, flag):
    cfg = CONFIGS["cbam"]
    x = jnp.ones((2, 3, 5, 6))
    flag = jnp.asarray(0.0) if flag == "jnp-float" else flag
    name = "training" if namespace == "linen" else "use_running_average"
    if namespace == "linen":
        model = fl.from_config(cfg)
        variables = model.init(jax.random.key(0), x)
        call = lambda: model.apply(variables, x, training=flag, mutable=[STATS])  # noqa: E731
    else:
        module = fn.from_config(cfg, rngs=nnx.Rngs(0))
        call = lambda: module(x, use_running_average=flag)  # noqa: E731
    with pytest.raises(TypeError, match=f"`{name}` must be a bool"):
        call()


@pytest.mark.parametrize("module", list(CONFIGS))
def test_a_traced_non_bool_flag_is_a_type_error_at_trace_time(module):
    model = fl.from_config(CONFIGS[module])
    x = jnp.ones((2, 3, 5, 6))
    variables = model.init(jax.random.key(0), x)
    f = jax.jit(lambda v, x, t: model.apply(v, x, training=t, mutable=[STATS]))
    with pytest.raises(TypeError, match="`training` must be a bool"):
        f(variables, x, jnp.asarray(1.0))
    f(variables, x, jnp.asarray(True))  # a traced bool is fine


def test_a_traced_flag_on_a_one_value_batch_norm_input_is_checked_as_training():
    """Batch norm needs N * H * W > 1 in train mode; a traced flag may train, so it is checked."""
    model = fl.from_config(CONFIGS["cbam"])
    x = jnp.ones((1, 1, 1, 6))
    variables = model.init(jax.random.key(0), x)
    model.apply(variables, x, training=False)  # static eval: fine
    f = jax.jit(lambda v, x, t: model.apply(v, x, training=t, mutable=[STATS]))
    with pytest.raises(ValueError, match="more than one value per channel"):
        f(variables, x, jnp.asarray(False))


def test_maps_take_a_traced_flag():
    cfg = CONFIGS["cbam"]
    model = fl.from_config(cfg)
    x = jax.random.normal(jax.random.key(1), (2, 3, 5, 6))
    variables = model.init(jax.random.key(0), x)
    maps = jax.jit(lambda v, x, t: model.apply(v, x, t, method="attention_maps"))
    for training in (False, True):
        got = maps(variables, x, jnp.asarray(training))
        want = model.apply(variables, x, training, method="attention_maps")
        for k in want:
            np.testing.assert_allclose(got[k], want[k], rtol=1e-6, atol=1e-6)
    module = fn.from_config(cfg, rngs=nnx.Rngs(0))
    got = nnx.jit(lambda m, x, r: m.attention_maps(x, use_running_average=r))(module, x, jnp.asarray(True))
    assert got["spatial"].shape == (2, 1, 3, 5)
