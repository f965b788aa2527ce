"""Canonical weights in and out of the Flax port: bit-exact round trips, error listing, PyTorch weights."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.flax
jax = pytest.importorskip("jax")
pytest.importorskip("flax")

import jax.numpy as jnp  # noqa: E402
from flax import nnx  # noqa: E402

import flax_impl.linen as fl  # noqa: E402
import flax_impl.nnx as fn  # noqa: E402
from conformance import compare, make_case, reference_outputs, round_to_dtype  # noqa: E402
from reference_numpy import (  # noqa: E402
    CBAMConfig,
    ECAConfig,
    KeyMismatchError,
    SEConfig,
    flatten,
    framework_layout,
    init_params,
)
from tests._flax_helpers import functional  # noqa: E402

# C != hidden and a kernel that is not square in (in, out): a wrong transpose changes the shape
CONFIGS = [
    pytest.param(SEConfig(channels=12, rd_channels=5), id="se"),
    pytest.param(CBAMConfig(channels=12, rd_channels=5, spatial_bias=True, spatial_kernel_size=3), id="cbam"),
    pytest.param(ECAConfig(channels=12, kernel_size=5, bias=True), id="eca"),
]
DTYPES = ["float32", "bfloat16"]


def _bits(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    return a.view(np.dtype(f"u{a.dtype.itemsize}"))


def _same_bits(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        np.asarray(a[k]).dtype == np.asarray(b[k]).dtype and np.array_equal(_bits(a[k]), _bits(b[k])) for k in a
    )


def _canonical_in(cfg, dtype: str, seed: int = 0) -> dict[str, np.ndarray]:
    """Canonical params exactly representable in ``dtype``, held in ``dtype``."""
    return {k: np.asarray(jnp.asarray(round_to_dtype(v, dtype), dtype)) for k, v in init_params(cfg, seed).items()}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cfg", CONFIGS)
def test_linen_round_trips_are_bit_exact(cfg, dtype: str) -> None:
    params = _canonical_in(cfg, dtype)
    variables = fl.from_canonical(cfg, params, param_dtype=dtype)
    assert _same_bits(fl.to_canonical(cfg, variables), params)
    # and the other way: fresh Flax variables -> canonical -> Flax
    x = jnp.zeros((2, 4, 3, cfg.channels))
    fresh = fl.from_config(cfg, param_dtype=dtype).init(jax.random.key(1), x)
    back = fl.from_canonical(cfg, fl.to_canonical(cfg, fresh), param_dtype=dtype)
    assert _same_bits(flatten(back), flatten(fresh))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cfg", CONFIGS)
def test_nnx_round_trips_are_bit_exact(cfg, dtype: str) -> None:
    params = _canonical_in(cfg, dtype)
    module = fn.from_config(cfg, param_dtype=dtype, rngs=nnx.Rngs(0))
    fn.load_canonical(module, params)
    assert _same_bits(fn.to_canonical(module), params)
    fresh = fn.from_config(cfg, param_dtype=dtype, rngs=nnx.Rngs(1))
    other = fn.from_config(cfg, param_dtype=dtype, rngs=nnx.Rngs(2))
    fn.load_canonical(other, fn.to_canonical(fresh))
    assert _same_bits(flatten(nnx.to_pure_dict(nnx.state(other))), flatten(nnx.to_pure_dict(nnx.state(fresh))))


def test_float64_round_trip_under_x64() -> None:
    cfg = CBAMConfig(channels=12, rd_channels=5)
    params = init_params(cfg, seed=3)
    with jax.enable_x64(True):
        assert _same_bits(fl.to_canonical(cfg, fl.from_canonical(cfg, params, param_dtype=jnp.float64)), params)
        module = fn.from_config(cfg, param_dtype=jnp.float64, rngs=nnx.Rngs(0))
        fn.load_canonical(module, params)
        assert _same_bits(fn.to_canonical(module), params)


def test_the_layout_is_the_spec_flax_table() -> None:
    cfg = CBAMConfig(channels=12, rd_channels=5, spatial_bias=True)
    variables = fl.from_config(cfg).init(jax.random.key(0), jnp.zeros((2, 4, 3, 12)))
    want = {p.key: p.shape for p in framework_layout(cfg, "flax").values()}
    assert {k: tuple(v.shape) for k, v in flatten(variables).items()} == want
    module = fn.from_config(cfg, rngs=nnx.Rngs(0))
    _, params, stats = nnx.split(module, nnx.Param, nnx.BatchStat)
    got = {f"params.{k}": v.shape for k, v in flatten(nnx.to_pure_dict(params)).items()}
    got.update({f"batch_stats.{k}": v.shape for k, v in flatten(nnx.to_pure_dict(stats)).items()})
    assert got == want


def test_initial_values_follow_the_spec() -> None:
    """Uniform in [-b, b] with PyTorch's bound (not [0, b)); BN at 1, 0, 0, 1."""
    cfg = CBAMConfig(channels=64, rd_channels=16)
    variables = fl.from_config(cfg).init(jax.random.key(0), jnp.zeros((1, 2, 2, 64)))
    canonical = fl.to_canonical(cfg, variables)
    w, bound = canonical["channel.fc1.weight"], 1 / np.sqrt(64)
    assert w.min() < -bound / 2 and w.max() > bound / 2 and np.abs(w).max() <= bound
    assert canonical["spatial.bn.weight"].tolist() == [1.0] and canonical["spatial.bn.running_var"].tolist() == [1.0]
    module = fn.from_config(cfg, rngs=nnx.Rngs(0))
    w = fn.to_canonical(module)["channel.fc1.weight"]
    assert w.min() < -bound / 2 and w.max() > bound / 2 and np.abs(w).max() <= bound


# ----------------------------------------------------------------------------- errors


def _broken(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    broken = dict(params)
    del broken["channel.fc2.bias"]
    broken["channel.fc3.weight"] = np.zeros(3)
    broken["spatial.conv.weight"] = np.zeros((1, 2, 5, 5))
    return broken


def _assert_lists_everything(err: KeyMismatchError, missing: str, unexpected: str, misshaped: str) -> None:
    message = str(err)
    assert missing in message and unexpected in message and misshaped in message, message
    assert "missing keys" in message and "unexpected keys" in message and "mis-shaped keys" in message


def test_loading_lists_every_bad_key_at_once() -> None:
    cfg = CBAMConfig(channels=12, rd_channels=5)
    broken = _broken(init_params(cfg))
    with pytest.raises(KeyMismatchError) as err:
        fl.from_canonical(cfg, broken)
    _assert_lists_everything(err.value, "channel.fc2.bias", "channel.fc3.weight", "spatial.conv.weight")
    module = fn.from_config(cfg, rngs=nnx.Rngs(0))
    before = fn.to_canonical(module)
    with pytest.raises(KeyMismatchError) as err:
        fn.load_canonical(module, broken)
    _assert_lists_everything(err.value, "channel.fc2.bias", "channel.fc3.weight", "spatial.conv.weight")
    assert _same_bits(fn.to_canonical(module), before)  # nothing was half-loaded


def test_exporting_lists_every_bad_flax_key_at_once() -> None:
    cfg = CBAMConfig(channels=12, rd_channels=5)
    flat = flatten(fl.from_canonical(cfg, init_params(cfg)))
    del flat["params.channel.fc2.bias"]
    flat["params.channel.fc3.kernel"] = np.zeros(3)
    flat["params.spatial.conv.kernel"] = np.zeros((7, 7, 1, 2))  # transposed the wrong way
    with pytest.raises(KeyMismatchError) as err:
        fl.to_canonical(cfg, {k: v for k, v in flat.items()})
    _assert_lists_everything(
        err.value, "params.channel.fc2.bias", "params.channel.fc3.kernel", "params.spatial.conv.kernel"
    )


# ----------------------------------------------------------------------------- non-vacuity


@pytest.mark.parametrize("namespace", ["linen", "nnx"])
@pytest.mark.parametrize("cfg", CONFIGS)
def test_loaded_weights_matter(namespace: str, cfg) -> None:
    """The loaded model matches the reference; a perturbed weight, or a kernel flipped in space, does not."""
    case = make_case(cfg, seed=4, dtype="float32", data_format="channels_last")
    want = reference_outputs(case, with_grads=False).y

    def run(params):
        f = functional(namespace, cfg, params, "channels_last")
        return f.apply(jnp.asarray(case.x, jnp.float32), f.weights, f.stats, False)[0]

    assert compare("y", run(case.params), want, "float32").ok
    name = next(iter(case.params))
    assert not compare("y", run({**case.params, name: case.params[name] * 1.01 + 0.01}), want, "float32").ok
    kernel = "conv.weight" if isinstance(cfg, ECAConfig) else "spatial.conv.weight"
    if kernel in case.params:  # correlation, not convolution: a flipped kernel is a different module
        flipped = case.params[kernel][..., ::-1].copy()
        assert not compare("y", run({**case.params, kernel: flipped}), want, "float32").ok


# ----------------------------------------------------------------------------- weights from PyTorch


@pytest.mark.torch
@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("cfg", CONFIGS)
def test_pytorch_weights_give_pytorch_outputs(cfg, training: bool) -> None:
    """torch_impl module -> canonical -> Flax (both namespaces): same outputs and BN updates as PyTorch."""
    torch = pytest.importorskip("torch")
    torch_impl = pytest.importorskip("torch_impl")
    torch.manual_seed(0)
    module = torch_impl.from_config(cfg)
    params = torch_impl.to_canonical(module)
    if isinstance(cfg, CBAMConfig):  # non-trivial running statistics
        params["spatial.bn.running_mean"] += 0.3
        params["spatial.bn.running_var"] *= 1.7
        torch_impl.load_canonical(module, params)
    x = np.random.default_rng(0).normal(size=(3, cfg.channels, 4, 5)).astype(np.float32)
    module.train(training)
    with torch.no_grad():
        y_torch = module(torch.from_numpy(x)).numpy()
    after = torch_impl.to_canonical(module)
    for namespace in ("linen", "nnx"):
        f = functional(namespace, cfg, params, "channels_first")
        y, stats = f.apply(jnp.asarray(x), f.weights, f.stats, training)
        assert compare(f"y[{namespace}]", y, y_torch, "float32").ok, namespace
        if training and stats:
            for k, v in f.canonical(f.weights, stats).items():
                if "running" in k:
                    assert compare(k, v, after[k], "float32").ok, (namespace, k)
