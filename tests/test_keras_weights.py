"""Weights of the Keras 3 port: layout, initialisation, canonical round trips, errors, and PyTorch -> Keras.

Layouts and initial distributions are the spec's (``framework_layout(cfg, "keras")``,
``param_init``); conversions go through ``reference_numpy.convert``.
"""

from __future__ import annotations

import numpy as np
import pytest

import reference_numpy as ref
from conformance import compare, round_to_dtype
from conformance.grid import CHANNELS, KNOBS, PRESETS, Variant

keras = pytest.importorskip("keras")
pytest.importorskip("tensorflow")
tf_impl = pytest.importorskip("tf_impl")

pytestmark = pytest.mark.keras

VARIANTS = [pytest.param(v, id=v.id) for v in PRESETS + KNOBS]


def _built(cfg: ref.Config, **kwargs) -> tf_impl.AttentionLayer:
    layer = tf_impl.from_config(cfg, data_format="channels_first", **kwargs)
    layer.build((None, cfg.channels, 7, 5))
    return layer


@pytest.mark.parametrize("variant", VARIANTS)
def test_weights_follow_the_keras_layout(variant: Variant) -> None:
    cfg = variant.build(CHANNELS)
    layer = _built(cfg, name="attn")
    layout = ref.framework_layout(cfg, "keras")
    assert {k: tuple(v.shape) for k, v in layer.keras_weights.items()} == {p.key: p.shape for p in layout.values()}
    assert {k: v.trainable for k, v in layer.keras_weights.items()} == {
        p.key: p.collection == "params" for p in layout.values()
    }
    assert {v.path for v in layer.weights} == {f"attn/{p.key.replace('.', '/')}" for p in layout.values()}


@pytest.mark.parametrize("variant", [pytest.param(v, id=v.id) for v in PRESETS])
def test_fresh_weights_follow_the_spec_initialisers(variant: Variant) -> None:
    cfg = variant.build(CHANNELS)
    params = tf_impl.to_canonical(_built(cfg))
    for name, init in ref.param_init(cfg).items():
        if init.dist == "constant":
            assert np.all(params[name] == np.float32(init.value)), name
        else:
            assert np.all(np.abs(params[name]) <= np.float32(init.value)), name
            if params[name].size >= 64:  # spread over the interval, not one-sided (fails with p < 1e-12)
                assert params[name].min() < -init.value / 4 and params[name].max() > init.value / 4, name


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_canonical_round_trip_is_bit_exact(variant: Variant, dtype: str) -> None:
    cfg = variant.build(CHANNELS)
    params = {k: round_to_dtype(v, dtype) for k, v in ref.init_params(cfg, seed=7).items()}
    layer = tf_impl.load_canonical(_built(cfg, dtype=dtype), params)
    back = tf_impl.to_canonical(layer)
    assert list(back) == list(params)
    for k, v in params.items():
        assert back[k].dtype == dtype and np.array_equal(back[k], v), k
    ref.check_params(cfg, back)


def test_load_lists_every_missing_unexpected_and_misshaped_key() -> None:
    cfg = ref.CBAMConfig(channels=CHANNELS)
    params = ref.init_params(cfg)
    del params["spatial.bn.running_var"]
    params["spatial.bn.num_batches_tracked"] = np.zeros(())
    params["channel.fc1.weight"] = params["channel.fc1.weight"].T  # a transposed dense kernel
    with pytest.raises(ref.KeyMismatchError) as info:
        tf_impl.load_canonical(_built(cfg), params)
    assert info.value.missing == ["spatial.bn.running_var"]
    assert info.value.unexpected == ["spatial.bn.num_batches_tracked"]
    assert [m.split(" ")[0] for m in info.value.misshaped] == ["channel.fc1.weight"]


def test_an_unbuilt_layer_has_no_weights_to_exchange() -> None:
    layer = tf_impl.SqueezeExcite(CHANNELS)
    with pytest.raises(ValueError, match="build it first"):
        tf_impl.to_canonical(layer)
    with pytest.raises(ValueError, match="build it first"):
        tf_impl.load_canonical(layer, ref.init_params(layer.config))
    with pytest.raises(TypeError, match="Expected an attnspec Keras layer"):
        tf_impl.to_canonical(keras.layers.Dense(3))


# ----------------------------------------------------------------------------- PyTorch -> canonical -> Keras


def _torch_and_keras_outputs(cfg: ref.Config, perturb: bool = False) -> tuple[np.ndarray, np.ndarray]:
    torch = pytest.importorskip("torch")
    torch_impl = pytest.importorskip("torch_impl")
    torch.manual_seed(0)
    module = torch_impl.from_config(cfg).eval()
    with torch.no_grad():  # move the BN statistics off their initial values
        module.train()(torch.randn(4, cfg.channels, 9, 6))
    module.eval()
    params = torch_impl.to_canonical(module)
    if perturb:
        name = next(iter(params))
        params = {**params, name: params[name] * 1.01 + 0.01}
    x = np.random.default_rng(1).normal(size=(2, cfg.channels, 7, 5)).astype("float32")
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    layer = tf_impl.load_canonical(_built(cfg), params)
    return layer(x).numpy(), expected


@pytest.mark.parametrize("variant", [pytest.param(v, id=v.id) for v in PRESETS])
def test_pytorch_weights_give_the_pytorch_outputs(variant: Variant) -> None:
    got, expected = _torch_and_keras_outputs(variant.build(CHANNELS))
    assert compare("y", got, expected, "float32").ok


@pytest.mark.parametrize("variant", [pytest.param(v, id=v.id) for v in PRESETS if v.name in ("official", "paper")])
def test_a_perturbed_pytorch_weight_is_caught(variant: Variant) -> None:
    got, expected = _torch_and_keras_outputs(variant.build(CHANNELS), perturb=True)
    assert not compare("y", got, expected, "float32").ok
