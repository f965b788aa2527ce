"""``attention_maps``: every port returns the gates of the reference's forward, with one idiom.

The idiom (issue #13, item 5): a method ``attention_maps(x)`` on every module of every port,
taking the forward's mode argument (PyTorch: ``module.training``; Linen: ``training=``
through ``apply(..., method="attention_maps")``; NNX: ``use_running_average=``; Keras:
``training=``) and returning ``{"channel": (N, C)}`` plus, for CBAM with its spatial branch,
``"spatial": (N, 1, H, W)`` in every data format. The expected values are the reference's own
intermediates (``reference_numpy`` caches: SE's and ECA's ``s``, CBAM's ``g`` and
``spatial.s``), compared in float64 under SPEC.md section 9's relative rule.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conformance import compare
from reference_numpy import CBAMConfig, Config, ECAConfig, SEConfig, forward, init_params

CONFIGS = {
    "se-timm": SEConfig.preset("timm", channels=24),
    "eca-ceca": ECAConfig.preset("timm_ceca", channels=24, bias=True),
    "cbam-official": CBAMConfig(channels=24),  # spatial BN, max-then-mean
    "cbam-pools-nobn": CBAMConfig(
        channels=24, pool_types=("avg", "max", "lse", "lp"), spatial_norm=False, spatial_bias=True, gate="hard_sigmoid"
    ),
    "cbam-channel-only": CBAMConfig(channels=24, spatial=False),
}
PORTS = [
    pytest.param("torch", id="torch", marks=pytest.mark.torch),
    pytest.param("linen", id="flax.linen", marks=pytest.mark.flax),
    pytest.param("nnx", id="flax.nnx", marks=pytest.mark.flax),
    pytest.param("keras", id="keras", marks=pytest.mark.keras),
]
FORMATS = ("channels_first", "channels_last")


def _params(cfg: Config, seed: int = 0) -> dict[str, np.ndarray]:
    params = init_params(cfg, seed=seed)
    if "spatial.bn.running_var" in params:  # running statistics away from (0, 1), so eval mode uses them
        params.update({"spatial.bn.running_mean": np.array([0.3]), "spatial.bn.running_var": np.array([1.7])})
    return params


def _input(cfg: Config, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(3, cfg.channels, 6, 5))


def expected_maps(cfg: Config, params: dict[str, np.ndarray], x: np.ndarray, training: bool) -> dict[str, np.ndarray]:
    """The reference's intermediates for NCHW ``x``."""
    _, cache, _ = forward(cfg, params, x, training=training)
    if cfg.module != "cbam":
        return {"channel": cache.s}
    maps = {"channel": cache.g[:, :, 0, 0]}
    if cache.spatial is not None:
        maps["spatial"] = cache.spatial.s
    return maps


def _layout(x: np.ndarray, data_format: str) -> np.ndarray:
    return x if data_format == "channels_first" else x.transpose(0, 2, 3, 1)


def port_maps(
    port: str, cfg: Config, params: dict[str, np.ndarray], x: np.ndarray, data_format: str, training: bool
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(maps, the canonical state before, the canonical state after) of ``port`` in float64, ``x`` given NCHW."""
    xin = _layout(x, data_format)
    if port == "torch":
        torch = pytest.importorskip("torch")
        torch_impl = pytest.importorskip("torch_impl")
        module = torch_impl.load_canonical(torch_impl.from_config(cfg, dtype=torch.float64), params)
        module.train(training)
        before = torch_impl.to_canonical(module)
        maps = module.attention_maps(torch.from_numpy(xin))
        return {k: v.detach().numpy() for k, v in maps.items()}, before, torch_impl.to_canonical(module)
    if port in ("linen", "nnx"):
        jax = pytest.importorskip("jax")
        pytest.importorskip("flax")
        import jax.numpy as jnp

        with jax.enable_x64(True):
            if port == "linen":
                from flax_impl import linen

                model = linen.from_config(cfg, data_format=data_format, param_dtype=jnp.float64)
                variables = linen.from_canonical(cfg, params, param_dtype=jnp.float64)
                maps = model.apply(variables, jnp.asarray(xin), training=training, method="attention_maps")
                state = linen.to_canonical(cfg, variables)
                return {k: np.asarray(v) for k, v in maps.items()}, state, state  # Linen cannot update in place
            from flax import nnx

            from flax_impl import nnx as fnnx

            module = fnnx.from_config(cfg, data_format=data_format, param_dtype=jnp.float64, rngs=nnx.Rngs(0))
            fnnx.load_canonical(module, params)
            before = fnnx.to_canonical(module)
            if cfg.module == "cbam":
                maps = module.attention_maps(jnp.asarray(xin), use_running_average=not training)
            else:
                maps = module.attention_maps(jnp.asarray(xin))
            return {k: np.asarray(v) for k, v in maps.items()}, before, fnnx.to_canonical(module)
    pytest.importorskip("keras")
    tf_impl = pytest.importorskip("tf_impl")
    layer = tf_impl.from_config(cfg, data_format=data_format, dtype="float64")
    layer.build(xin.shape)
    tf_impl.load_canonical(layer, params)
    before = tf_impl.to_canonical(layer)
    maps = layer.attention_maps(xin, training=training)
    from keras import ops

    return {k: ops.convert_to_numpy(v) for k, v in maps.items()}, before, tf_impl.to_canonical(layer)


def _check(maps: dict[str, Any], want: dict[str, np.ndarray]) -> list[str]:
    if sorted(maps) != sorted(want):
        return [f"keys {sorted(maps)}, expected {sorted(want)}"]
    return [c.message for k in want if not (c := compare(k, maps[k], want[k], "float64")).ok]


def _cases() -> list:
    """(port, config, mode, data format); the PyTorch port takes NCHW only."""
    out = []
    for port in PORTS:
        for name, cfg in CONFIGS.items():
            modes = (False, True) if getattr(cfg, "spatial_norm", False) and cfg.spatial else (False,)
            for training in modes:
                for fmt in FORMATS[:1] if port.values[0] == "torch" else FORMATS:
                    mode = "train" if training else "eval"
                    out.append(
                        pytest.param(
                            *port.values, name, training, fmt, id=f"{port.id}-{name}-{mode}-{fmt}", marks=port.marks
                        )
                    )
    return out


@pytest.mark.parametrize(("port", "name", "training", "data_format"), _cases())
def test_maps_match_the_reference(port: str, name: str, training: bool, data_format: str) -> None:
    cfg = CONFIGS[name]
    params, x = _params(cfg), _input(cfg)
    maps, before, after = port_maps(port, cfg, params, x, data_format, training)
    want = expected_maps(cfg, params, x, training)
    assert not _check(maps, want)
    for k, v in maps.items():
        assert v.shape == want[k].shape and v.dtype == np.float64, (k, v.shape, v.dtype)
    # the maps are the gates of the forward: y = x * g (* s); and computing them changed no state
    y_ref = forward(cfg, params, x, training=training)[0]
    recomposed = x * maps["channel"][:, :, None, None] * maps.get("spatial", 1.0)
    assert compare("x * maps", recomposed, y_ref, "float64").ok
    assert before.keys() == after.keys() and all(np.array_equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("port", PORTS)
@pytest.mark.parametrize("name", ["se-timm", "eca-ceca", "cbam-official"])
def test_maps_catch_a_perturbed_weight(port: str, name: str) -> None:
    """Non-vacuity: the comparison above fails for maps computed with one weight off by 1%."""
    cfg = CONFIGS[name]
    params, x = _params(cfg), _input(cfg)
    key = {"se": "fc1.weight", "eca": "conv.weight", "cbam": "spatial.conv.weight"}[cfg.module]
    perturbed = {**params, key: params[key] * 1.01}
    maps, _, _ = port_maps(port, cfg, perturbed, x, "channels_first", False)
    assert _check(maps, expected_maps(cfg, params, x, False))


@pytest.mark.torch
def test_torch_maps_are_differentiable_and_follow_the_module_mode() -> None:
    torch = pytest.importorskip("torch")
    torch_impl = pytest.importorskip("torch_impl")
    cbam = torch_impl.CBAM(16, dtype=torch.float64)
    x = torch.randn(2, 16, 5, 4, dtype=torch.float64, requires_grad=True)
    train_maps = cbam.train().attention_maps(x)
    train_maps["spatial"].sum().backward()
    assert x.grad is not None and cbam.spatial.conv.weight.grad is not None
    eval_maps = cbam.eval().attention_maps(x)
    assert not torch.equal(train_maps["spatial"], eval_maps["spatial"])  # batch vs running statistics


@pytest.mark.torch
def test_attention_map_example_draws_a_map_that_follows_the_edges(tmp_path) -> None:
    """examples/attention_map.py: the picture is written, and its map is high where the features are."""
    pytest.importorskip("torch")
    pytest.importorskip("matplotlib")
    from examples import attention_map

    out = tmp_path / "map.png"
    attention_map.main(["--out", str(out)])
    assert out.stat().st_size > 10_000
    features = attention_map.edge_features(attention_map.load_image())
    s = attention_map.spatial_map(features)
    strength = features[0].max(axis=0)
    strong, weak = strength > np.quantile(strength, 0.9), strength < np.quantile(strength, 0.5)
    assert s.shape == strength.shape and s[strong].mean() > s[weak].mean() + 0.2


@pytest.mark.keras
@pytest.mark.parametrize(
    ("name", "training"), [("se-timm", False), ("eca-ceca", False), ("cbam-official", False), ("cbam-official", True)]
)
def test_keras_maps_in_float32_on_the_active_backend(name: str, training: bool) -> None:
    """float32 layers (Keras's default) on whichever backend this process runs, as test_keras_backends does."""
    pytest.importorskip("keras")
    tf_impl = pytest.importorskip("tf_impl")
    from keras import ops

    cfg = CONFIGS[name]
    params, x = _params(cfg), _input(cfg)
    layer = tf_impl.from_config(cfg, data_format="channels_last")
    layer.build(_layout(x, "channels_last").shape)
    tf_impl.load_canonical(layer, params)
    x32 = x.astype(np.float32)  # the reference runs on the same (rounded) input
    maps = layer.attention_maps(_layout(x32, "channels_last"), training=training)
    want = expected_maps(cfg, tf_impl.to_canonical(layer), x32.astype(np.float64), training)
    got = {k: ops.convert_to_numpy(v) for k, v in maps.items()}
    assert all(v.dtype == np.float32 for v in got.values())
    assert not [c.message for k in want if not (c := compare(k, got[k], want[k], "float32")).ok]


@pytest.mark.keras
def test_keras_maps_on_the_jax_and_torch_backends() -> None:
    """The float32 Keras test above, rerun in one fresh pytest per other Keras backend (chosen once per process).

    (float64 is left to the TensorFlow session: on the JAX backend in train mode and on the
    PyTorch backend, the Keras port's own float64 forward differs from the reference at about
    1e-7, float32's level, and the maps with it.)
    """
    pytest.importorskip("keras")
    backends = [b for b in ("jax", "torch") if importlib.util.find_spec(b) is not None]
    assert backends, "neither JAX nor PyTorch is installed: the `all` extra installs both"
    root = Path(__file__).resolve().parents[1]
    procs = {
        b: subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pytest",
                __file__,
                "-q",
                "-x",
                "-p",
                "no:cacheprovider",
                "-k",
                "float32_on_the_active",
            ],
            cwd=root,
            env={**os.environ, "KERAS_BACKEND": b, "TF_CPP_MIN_LOG_LEVEL": "3"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for b in backends
    }
    for b, proc in procs.items():
        out, _ = proc.communicate(timeout=900)
        assert proc.returncode == 0 and "4 passed" in out and "skipped" not in out, f"KERAS_BACKEND={b}:\n{out[-3000:]}"
