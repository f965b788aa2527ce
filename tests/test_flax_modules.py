"""The Flax port under JAX's transformations, batch norm in both namespaces, dtypes and the constructor API.

The generic conformance grid (tests/test_conformance_ports.py) runs the modules eagerly;
here they run under jax.jit, jax.grad and jax.vmap, with batch statistics averaged over a
named axis, and every result is compared with the NumPy reference through the shared
tolerance table.
"""

from __future__ import annotations

import dataclasses
import inspect
import re

import numpy as np
import pytest

pytestmark = pytest.mark.flax
jax = pytest.importorskip("jax")
pytest.importorskip("flax")

import jax.numpy as jnp  # noqa: E402
from flax import nnx  # noqa: E402

import flax_impl.linen as fl  # noqa: E402
import flax_impl.nnx as fn  # noqa: E402
from conformance import check_case, compare, get_adapter, make_case, reference_outputs  # noqa: E402
from conformance.grid import CHANNELS, KNOBS, PRESETS  # noqa: E402
from conformance.runner import compare_outputs  # noqa: E402
from reference_numpy import CBAMConfig, ECAConfig, SEConfig, knob_names, make_config  # noqa: E402
from reference_numpy.config import check_data_format  # noqa: E402
from tests._flax_helpers import NAMESPACES, functional, outputs  # noqa: E402

CONFIGS = {
    "se": SEConfig(channels=CHANNELS, rd_channels=5, act="gelu"),
    "cbam": CBAMConfig(channels=CHANNELS, rd_channels=5, pool_types=("avg", "max", "lse", "lp"), spatial_kernel_size=5),
    "eca": ECAConfig(channels=CHANNELS, kernel_size=5, bias=True),
}
MODULES = [pytest.param(cfg, id=name) for name, cfg in CONFIGS.items()]
SPACES = [pytest.param(ns, id=ns) for ns in NAMESPACES]


def _failures(got, want, dtype: str, seed: int) -> list[str]:
    return [c.message for c in compare_outputs(got, want, dtype, seed) if not c.ok]


# ----------------------------------------------------------------------------- jit, grad, vmap


@pytest.mark.parametrize("cfg", MODULES)
@pytest.mark.parametrize("namespace", SPACES)
def test_jit_grad_and_vmap_agree_with_the_reference(namespace: str, cfg) -> None:
    case = make_case(cfg, seed=7, dtype="float32", training=True, data_format="channels_last")
    want = reference_outputs(case)
    f = functional(namespace, cfg, case.params, "channels_last")
    x, dy = jnp.asarray(case.x, jnp.float32), jnp.asarray(case.dy, jnp.float32)

    @jax.jit
    def forward_and_vjp(x, weights, dy):
        y, pullback, stats = jax.vjp(lambda x, w: f.apply(x, w, f.stats, True), x, weights, has_aux=True)
        return (y, *pullback(dy), stats)

    y, dx, dw, stats = forward_and_vjp(x, f.weights, dy)
    got = outputs(cfg, y, dx, f.canonical(dw, stats), f.canonical(f.weights, stats))
    assert not _failures(got, want, "float32", case.seed), "jit(vjp)"

    loss = lambda x, w: jnp.sum(f.apply(x, w, f.stats, True)[0] * dy)  # noqa: E731
    dx, dw = jax.jit(jax.grad(loss, argnums=(0, 1)))(x, f.weights)
    got = outputs(cfg, y, dx, f.canonical(dw, f.stats), {})
    assert not _failures(got, dataclasses.replace(want, state={}), "float32", case.seed), "jit(grad)"

    # vmap over an extra leading axis: each slice is its own batch (own batch statistics)
    other = make_case(cfg, seed=8, dtype="float32", training=True, data_format="channels_last")
    cases = [case, dataclasses.replace(case, x=other.x)]
    ys, stats = jax.vmap(lambda x: f.apply(x, f.weights, f.stats, True))(jnp.stack([x, jnp.asarray(other.x)]))
    for i, c in enumerate(cases):
        state = f.canonical(f.weights, jax.tree_util.tree_map(lambda a, i=i: a[i], stats))
        got = outputs(cfg, ys[i], None, {}, state)
        assert not _failures(got, reference_outputs(c, with_grads=False), "float32", c.seed), f"vmap slice {i}"


def test_a_perturbed_weight_fails_under_jit() -> None:
    """Non-vacuity of the comparisons above."""
    cfg = CONFIGS["cbam"]
    case = make_case(cfg, seed=7, dtype="float32", training=True, data_format="channels_last")
    name = "channel.fc1.weight"  # (scaling the spatial kernel alone would be undone by train-mode BN)
    f = functional("linen", cfg, {**case.params, name: case.params[name] * 1.01 + 0.01}, "channels_last")
    y, _ = jax.jit(lambda x: f.apply(x, f.weights, f.stats, True))(jnp.asarray(case.x))
    assert not compare("y", y, reference_outputs(case, with_grads=False).y, "float32").ok


# ----------------------------------------------------------------------------- batch norm


def _x64_case(cfg, seed: int):
    return make_case(cfg, seed=seed, dtype="float64", training=True, data_format="channels_last")


def test_linen_training_updates_batch_stats_as_the_reference() -> None:
    cfg = CBAMConfig(channels=CHANNELS, bn_momentum=0.3)
    with jax.enable_x64(True):
        case = _x64_case(cfg, seed=4)
        model = fl.from_config(cfg, param_dtype=jnp.float64)
        variables = fl.from_canonical(cfg, case.params, param_dtype=jnp.float64)
        x = jnp.asarray(case.x)
        params = dict(case.params)
        for step in range(2):  # the second step starts from the first one's statistics
            y, updates = model.apply(variables, x, training=True, mutable=["batch_stats"])
            want = reference_outputs(dataclasses.replace(case, params=params), with_grads=False)
            state = {k: v for k, v in fl.to_canonical(cfg, {**variables, **updates}).items() if "running" in k}
            assert not _failures(outputs(cfg, y, None, {}, state), want, "float64", step)
            variables = {**variables, **updates}
            params.update(want.state)
        with pytest.raises(Exception, match="batch_stats"):  # training needs the collection mutable
            model.apply(variables, x, training=True)
        y = model.apply(variables, x)  # eval: running statistics, nothing to update
        want = reference_outputs(dataclasses.replace(case, params=params, training=False), with_grads=False)
        assert compare("y", y, want.y, "float64").ok
        # init in training mode leaves the statistics at their initial values
        fresh = model.init(jax.random.key(0), x, training=True)
        assert fresh["batch_stats"]["spatial"]["bn"]["var"].tolist() == [1.0]
    assert jnp.zeros(1).dtype == jnp.float32


def test_nnx_train_and_eval_modes() -> None:
    cfg = CBAMConfig(channels=CHANNELS, bn_momentum=0.3)
    with jax.enable_x64(True):
        case = _x64_case(cfg, seed=4)
        module = fn.from_config(cfg, param_dtype=jnp.float64, rngs=nnx.Rngs(0))
        assert module.use_running_average is False  # NNX's convention: modules start in training mode
        fn.load_canonical(module, case.params)
        x = jnp.asarray(case.x)

        def check(y, training: bool, params: dict) -> dict:
            want = reference_outputs(dataclasses.replace(case, params=params, training=training), with_grads=False)
            state = {k: v for k, v in fn.to_canonical(module).items() if "running" in k}
            assert not _failures(outputs(cfg, y, None, {}, state if training else {}), want, "float64", 0)
            if not training:  # the statistics did not move
                assert all(np.array_equal(state[k], params[k]) for k in state)
            return {**params, **want.state}

        params = check(module(x), True, dict(case.params))
        module.eval()
        assert module.use_running_average is True
        params = check(module(x), False, params)
        params = check(module(x, use_running_average=False), True, params)  # a call may override the mode
        module.train()
        check(module(x), True, params)


@pytest.mark.parametrize("namespace", SPACES)
def test_axis_name_averages_batch_statistics_across_devices(namespace: str) -> None:
    """Three emulated devices (vmap with a named axis) hold a third of the batch each; the output, the
    running statistics and the gradients equal the reference's on the whole batch."""
    cfg = CBAMConfig(channels=CHANNELS, rd_channels=5, bn_momentum=0.2)
    case = make_case(
        cfg, seed=9, dtype="float32", training=True, data_format="channels_last", shape=(6, CHANNELS, 5, 3)
    )
    want = reference_outputs(case)
    f = functional(namespace, cfg, case.params, "channels_last", axis_name="devices")
    shard = lambda a: jnp.asarray(a).reshape(3, 2, *a.shape[1:])  # noqa: E731

    @jax.jit
    def forward_and_vjp(xs, weights, dys):
        def forward(xs, weights):
            return jax.vmap(lambda x: f.apply(x, weights, f.stats, True), axis_name="devices")(xs)

        ys, pullback, stats = jax.vjp(forward, xs, weights, has_aux=True)
        return (ys, *pullback(dys), stats)

    ys, dxs, dw, stats = forward_and_vjp(shard(case.x), f.weights, shard(case.dy))
    per_device = [f.canonical(f.weights, jax.tree_util.tree_map(lambda a, i=i: a[i], stats)) for i in range(3)]
    assert all(np.array_equal(s[k], per_device[0][k]) for s in per_device for k in s)
    got = outputs(cfg, ys.reshape(case.x.shape), dxs.reshape(case.x.shape), f.canonical(dw, f.stats), per_device[0])
    assert not _failures(got, want, "float32", case.seed)
    # without the named axis every device would normalise with its own statistics
    g = functional(namespace, cfg, case.params, "channels_last")
    ys_local, _ = jax.jit(jax.vmap(lambda x: g.apply(x, g.weights, g.stats, True)))(shard(case.x))
    assert not compare("y", ys_local.reshape(case.x.shape), want.y, "float32").ok


def test_axis_name_under_pmap() -> None:
    cfg = CBAMConfig(channels=CHANNELS, rd_channels=5)
    n = jax.local_device_count()
    case = make_case(
        cfg, seed=2, dtype="float32", training=True, data_format="channels_last", shape=(2 * n, CHANNELS, 5, 3)
    )
    f = functional("linen", cfg, case.params, "channels_last", axis_name="batch")
    xs = jnp.asarray(case.x).reshape(n, 2, *case.x.shape[1:])
    ys, stats = jax.pmap(lambda x: f.apply(x, f.weights, f.stats, True), axis_name="batch")(xs)
    got = outputs(
        cfg, ys.reshape(case.x.shape), None, {}, f.canonical(f.weights, jax.tree_util.tree_map(lambda a: a[0], stats))
    )
    assert not _failures(got, reference_outputs(case, with_grads=False), "float32", case.seed)


# ----------------------------------------------------------------------------- dtypes, NaN, x64


@pytest.mark.parametrize("namespace", SPACES)
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_output_dtype_and_accuracy(namespace: str, dtype: str) -> None:
    cfg = CONFIGS["cbam"]
    case = make_case(cfg, seed=6, dtype=dtype, training=True, data_format="channels_last")
    f = functional(namespace, cfg, case.params, "channels_last", param_dtype=dtype)
    y, _ = f.apply(jnp.asarray(case.x, dtype), f.weights, f.stats, True)
    assert y.dtype == jnp.dtype(dtype)
    assert compare("y", y, reference_outputs(case, with_grads=False).y, dtype).ok
    # ``dtype`` sets the computation dtype only: a float32 input gives float32 back
    g = functional(namespace, cfg, case.params, "channels_last", dtype=dtype)
    y32, _ = g.apply(jnp.asarray(case.x, jnp.float32), g.weights, g.stats, True)
    assert y32.dtype == jnp.float32
    assert compare("y", y32, reference_outputs(case, with_grads=False).y, dtype).ok


def test_nan_propagates_through_max_pools() -> None:
    cfg = CBAMConfig(channels=CHANNELS, pool_types=("max",), spatial_norm=False)
    case = make_case(cfg, seed=1, dtype="float32", data_format="channels_last")
    x = case.x.copy()
    x[0, 1, 2, 3] = np.nan
    case = dataclasses.replace(case, x=x)
    want = reference_outputs(case, with_grads=False).y
    assert np.isnan(want[0]).all() and not np.isnan(want[1:]).any()
    for namespace in NAMESPACES:
        f = functional(namespace, cfg, case.params, "channels_last")
        y, _ = f.apply(jnp.asarray(x), f.weights, f.stats, False)
        assert compare("y", y, want, "float32").ok, namespace


@pytest.mark.parametrize("namespace", SPACES)
def test_max_pool_ties_split_the_gradient_under_jit(namespace: str) -> None:
    """Conformance cases are tie-free; here a channel is constant over H, W and a pixel is zero in
    every channel, so both max pools tie, and the gradient must be split evenly among the maxima."""
    cfg = CBAMConfig(channels=CHANNELS, rd_channels=5, pool_types=("max", "avg"), spatial_norm=False)
    case = make_case(cfg, seed=5, dtype="float32", data_format="channels_last")
    x = case.x.copy()
    x[0, :, :, 3] = 0.75  # every position of (sample 0, channel 3) is the max over H, W
    x[1, 2, 1, :] = 0.0  # every channel of this pixel is the max over C
    case = dataclasses.replace(case, x=x)
    f = functional(namespace, cfg, case.params, "channels_last")

    @jax.jit
    def forward_and_vjp(x, weights, dy):
        y, pullback, _ = jax.vjp(lambda x, w: f.apply(x, w, f.stats, False), x, weights, has_aux=True)
        return (y, *pullback(dy))

    y, dx, dw = forward_and_vjp(jnp.asarray(x), f.weights, jnp.asarray(case.dy))
    got = outputs(cfg, y, dx, f.canonical(dw, f.stats), {})
    assert not _failures(got, reference_outputs(case), "float32", case.seed)


def test_an_upstream_product_fused_into_the_backward_pass_keeps_the_ties() -> None:
    """Under one jit XLA may recompute CBAM's input inside the backward pass (and contract a
    product there into a fused multiply-add); the max pools must still find their maxima."""
    cfg = CBAMConfig(channels=CHANNELS, rd_channels=5)
    case = make_case(cfg, seed=8, dtype="float32", training=True, data_format="channels_last")
    f = functional("linen", cfg, case.params, "channels_last")
    a = jnp.asarray(case.x)
    scale = jnp.linspace(0.5, 1.5, CHANNELS, dtype=jnp.float32)
    x = np.asarray(jax.jit(lambda a: a * scale + 0.25)(a))
    want = reference_outputs(dataclasses.replace(case, x=x))
    loss = lambda a, w: jnp.sum(f.apply(a * scale + 0.25, w, f.stats, True)[0] * case.dy)  # noqa: E731
    da, dw = jax.jit(jax.grad(loss, argnums=(0, 1)))(a, f.weights)
    assert bool(jnp.isfinite(da).all())
    assert compare("dx", np.asarray(da) / np.asarray(scale), want.dx, "float32").ok
    got = f.canonical(dw, f.stats)
    assert all(compare(k, got[k], v, "float32").ok for k, v in want.grads.items())


def test_float64_runs_in_x64_without_leaking_it() -> None:
    """The adapters switch x64 on for float64 cases only; afterwards JAX is as it was."""
    before = jax.config.read("jax_enable_x64")
    case = make_case(CONFIGS["eca"], seed=3, dtype="float64", training=True)
    for name in ("flax.linen", "flax.nnx"):
        report = check_case(get_adapter(name), case)
        assert report.passed, "\n".join(report.failures())  # float64 tolerance: computed in float64
        assert jax.config.read("jax_enable_x64") == before
    if not before:
        assert jnp.zeros(1).dtype == jnp.float32


# ----------------------------------------------------------------------------- constructor API


def test_constructors_build_the_spec_config() -> None:
    want = CBAMConfig.preset("timm", channels=64, spatial_kernel_size=3)
    linen = fl.CBAM.create(64, preset="timm", spatial_kernel_size=3, data_format="channels_first")
    assert linen.config == want and linen.data_format == "channels_first"
    module = nnx.eval_shape(lambda: fn.CBAM(64, preset="timm", spatial_kernel_size=3, rngs=nnx.Rngs(0)))
    assert module.config == want and module.data_format == "channels_last"
    assert fl.SqueezeExcite.create(64).data_format == "channels_last"
    with pytest.raises(TypeError, match="ECA got an unexpected keyword argument 'kernal_size'"):
        fl.ECA.create(64, kernal_size=3)
    with pytest.raises(TypeError, match="ECA got an unexpected keyword argument 'kernal_size'"):
        fn.ECA(64, kernal_size=3, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="rd_ratio"):
        fn.SqueezeExcite(64, rd_ratio=1.5, rngs=nnx.Rngs(0))
    with pytest.raises(TypeError, match="expects a CBAM config"):
        fl.CBAM(config=SEConfig(channels=64))


@pytest.mark.parametrize("cls", [fn.SqueezeExcite, fn.CBAM, fn.ECA], ids=lambda c: c.__name__)
def test_nnx_signatures_list_every_knob(cls) -> None:
    """help() shows channels, every knob of the spec with its default, then the options."""
    params = inspect.signature(cls).parameters
    knobs = knob_names(cls.module)
    assert list(params)[: len(knobs) + 1] == ["channels", *knobs]
    assert list(params)[len(knobs) + 1 :][:4] == ["preset", "data_format", "dtype", "param_dtype"]
    assert list(params)[-1] == "rngs" and params["data_format"].default == "channels_last"


@pytest.mark.parametrize("variant", [pytest.param(v, id=v.id) for v in PRESETS + KNOBS])
def test_from_config_and_every_knob(variant) -> None:
    cfg = variant.build(CHANNELS)
    knobs = {k: getattr(cfg, k) for k in knob_names(cfg.module)}
    assert make_config(cfg.module, CHANNELS, **knobs) == cfg
    assert fl.from_config(cfg).config == cfg
    assert type(fl.from_config(cfg)).create(CHANNELS, **knobs).config == cfg
    assert nnx.eval_shape(lambda: fn.from_config(cfg, rngs=nnx.Rngs(0))).config == cfg


@pytest.mark.parametrize("namespace", SPACES)
def test_input_errors_come_from_the_spec(namespace: str) -> None:
    cfg = SEConfig(channels=8, rd_channels=2)
    f = functional(
        namespace,
        cfg,
        {
            k: np.zeros(s)
            for k, s in [("fc1.weight", (2, 8)), ("fc1.bias", (2,)), ("fc2.weight", (8, 2)), ("fc2.bias", (8,))]
        },
        "channels_last",
    )
    with pytest.raises(ValueError) as err:
        f.apply(jnp.zeros((2, 5, 5, 4)), f.weights, f.stats, False)
    with pytest.raises(ValueError) as spec:
        cfg.validate_input((2, 5, 5, 4), "float32", data_format="channels_last")
    assert str(err.value) == str(spec.value)
    with pytest.raises(TypeError, match="floating-point"):
        f.apply(jnp.zeros((2, 5, 5, 8), jnp.int32), f.weights, f.stats, False)


# ----------------------------------------------------------------------------- checked at construction

_BAD_OPTIONS = [
    pytest.param("data_format", "NCHW", ValueError, id="data_format-NCHW"),
    pytest.param("data_format", None, ValueError, id="data_format-None"),
    pytest.param("dtype", "int32", TypeError, id="dtype-int32"),
    pytest.param("dtype", jnp.complex64, TypeError, id="dtype-complex64"),
    pytest.param("dtype", "no_such_dtype", TypeError, id="dtype-unknown"),
    pytest.param("param_dtype", None, TypeError, id="param_dtype-None"),
    pytest.param("param_dtype", jnp.int8, TypeError, id="param_dtype-int8"),
]


def _spec_message(option: str, value) -> str:
    """The spec's "expected ... Received" message for a bad ``option``."""
    if option == "data_format":
        with pytest.raises(ValueError) as err:
            check_data_format(value)
        return str(err.value)
    expected = "a floating dtype or None" if option == "dtype" else "a floating dtype"
    return f"`{option}` must be {expected}. Received: {option}={value!r}"


@pytest.mark.parametrize(("option", "value", "error"), _BAD_OPTIONS)
def test_data_format_and_dtypes_are_checked_when_the_module_is_built(option, value, error) -> None:
    """Every constructor refuses them at once (no init, no call), with the spec's message."""
    cfg = CBAMConfig(channels=8)
    builds = {
        "linen.create": lambda: fl.CBAM.create(8, **{option: value}),
        "linen.__init__": lambda: fl.CBAM(config=cfg, **{option: value}),
        "linen.from_config": lambda: fl.from_config(cfg.to_dict(), **{option: value}),
        "linen.clone": lambda: fl.CBAM(config=cfg).clone(**{option: value}),
        "nnx.__init__": lambda: fn.CBAM(8, rngs=nnx.Rngs(0), **{option: value}),
        "nnx.from_config": lambda: fn.from_config(cfg.to_dict(), rngs=nnx.Rngs(0), **{option: value}),
        "nnx.SqueezeExcite": lambda: fn.SqueezeExcite(8, rngs=nnx.Rngs(0), **{option: value}),
        "linen.ECA": lambda: fl.ECA.create(8, **{option: value}),
    }
    want = _spec_message(option, value)
    for name, build in builds.items():
        with pytest.raises(error) as err:
            build()
        assert str(err.value) == want, name
    # non-vacuity: the same constructors with valid options build
    assert fl.CBAM.create(8, data_format="channels_first", dtype="bfloat16").dtype == "bfloat16"
    assert fn.CBAM(8, data_format="channels_first", dtype=jnp.float16, rngs=nnx.Rngs(0)).data_format == "channels_first"


def test_from_config_accepts_a_config_or_its_dict_and_refuses_anything_else() -> None:
    cfg = CBAMConfig(channels=8, pool_types=("avg", "lse"))
    assert fl.from_config(cfg.to_dict()).config == cfg
    assert nnx.eval_shape(lambda: fn.from_config(cfg.to_dict(), rngs=nnx.Rngs(0))).config == cfg
    spec = "`cfg` must be an SEConfig, CBAMConfig or ECAConfig, or a dict from its to_dict()"
    for bad in ("cbam", None, 5, [("module", "cbam")], CBAMConfig):
        with pytest.raises(TypeError, match=re.escape(spec)):
            fl.from_config(bad)
        with pytest.raises(TypeError, match=re.escape(spec)):
            fn.from_config(bad, rngs=nnx.Rngs(0))
    # the dict is checked by the spec like any config
    with pytest.raises(ValueError, match="`module` must be one of"):
        fl.from_config({"channels": 8})
    with pytest.raises(ValueError, match="unknown keys \\['bogus'\\]"):
        fn.from_config({**cfg.to_dict(), "bogus": 1}, rngs=nnx.Rngs(0))
    # options are the module's fields (linen) or constructor options (nnx), never knobs
    with pytest.raises(TypeError, match=r"its options are the module's fields: data_format, dtype, param_dtype, "):
        fl.from_config(cfg, rd_ratio=0.5)
    with pytest.raises(TypeError, match=r"Received: channels=4"):
        fn.from_config(cfg, rngs=nnx.Rngs(0), channels=4)
    with pytest.raises(TypeError, match=r"its options are the constructor's: .*Received: preset='timm'"):
        fn.from_config(cfg, rngs=nnx.Rngs(0), preset="timm")
    assert fl.from_config(cfg, name="attn", axis_name="batch").axis_name == "batch"
