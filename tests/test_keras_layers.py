"""Keras conventions of the Keras 3 port (TensorFlow backend): construction, serialisation,
saving, training with XLA, mixed precision, symbolic shapes, data formats, input checks, NaN.

Numerical agreement with the spec is the conformance suite's job (tests/test_conformance_ports.py);
where a test here compares numbers it uses the suite's ``compare`` and its tolerances.
"""

from __future__ import annotations

import numpy as np
import pytest

import reference_numpy as ref
from conformance import compare, round_to_dtype

keras = pytest.importorskip("keras")
pytest.importorskip("tensorflow")
tf_impl = pytest.importorskip("tf_impl")

pytestmark = pytest.mark.keras

C = 24
SHAPE_NHWC = (3, 7, 5, C)
LAYERS = [
    pytest.param("se", {"preset": "timm"}, id="se-timm"),
    pytest.param("cbam", {"spatial_kernel_size": 3}, id="cbam-k3"),
    pytest.param("cbam", {"preset": "timm", "pool_types": ("avg", "max", "lse", "lp")}, id="cbam-timm-all-pools"),
    pytest.param("eca", {"preset": "timm_ceca"}, id="eca-timm_ceca"),
]
CLASSES = {"se": "SqueezeExcite", "cbam": "CBAM", "eca": "ECA"}


def _layer(module: str, knobs: dict, **kwargs) -> tf_impl.AttentionLayer:
    return getattr(tf_impl, CLASSES[module])(C, **knobs, **kwargs)


def _x(shape=SHAPE_NHWC, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def _reference_y(layer: tf_impl.AttentionLayer, x: np.ndarray, *, training: bool = False) -> np.ndarray:
    params = {k: np.asarray(v, np.float64) for k, v in tf_impl.to_canonical(layer).items()}
    return ref.forward(layer.config, params, x.astype(np.float64), training, layer.data_format)[0]


# ----------------------------------------------------------------------------- construction


@pytest.mark.parametrize(("module", "knobs"), LAYERS)
def test_the_config_is_the_spec_config(module: str, knobs: dict) -> None:
    layer = _layer(module, knobs)
    assert layer.config == ref.make_config(module, C, **knobs)


def test_keras_arguments_pass_through_and_unknown_knobs_are_rejected() -> None:
    layer = tf_impl.ECA(C, kernel_size=3, name="attn", dtype="float64", trainable=False)
    assert (layer.name, layer.compute_dtype, layer.trainable, layer.config.kernel_size) == ("attn", "float64", False, 3)
    with pytest.raises(TypeError, match="ECA got an unexpected keyword argument 'kernal_size'"):
        tf_impl.ECA(C, kernal_size=3)
    with pytest.raises(ValueError, match="`rd_ratio` must be in"):
        tf_impl.SqueezeExcite(C, rd_ratio=2.0)
    with pytest.raises(ValueError, match="`data_format` must be one of"):
        tf_impl.CBAM(C, data_format="NCHW")


def test_dtype_is_checked_at_construction() -> None:
    with pytest.raises(TypeError, match=r"`dtype` must be a floating dtype .* Received: dtype='int32'"):
        tf_impl.CBAM(C, dtype="int32")
    assert tf_impl.CBAM(C, dtype="mixed_bfloat16").compute_dtype == "bfloat16"  # the check passes what is valid


def test_from_config_refuses_what_it_cannot_read_with_a_type_error() -> None:
    cfg = ref.CBAMConfig(channels=C)
    for layer in (tf_impl.from_config(cfg.to_dict()), tf_impl.CBAM.from_config(cfg.to_dict())):
        assert layer.config == cfg  # the spec's to_dict() is read by both, the module key included
    with pytest.raises(TypeError, match=r"CBAM\.from_config expects the dict of get_config\(\) \(a spec config: use"):
        tf_impl.CBAM.from_config(cfg)
    with pytest.raises(TypeError, match=r"Received: config=None of type NoneType"):
        tf_impl.ECA.from_config(None)
    with pytest.raises(ValueError, match=r"expects a config of module 'se'\. Received: module='cbam'"):
        tf_impl.SqueezeExcite.from_config(cfg.to_dict())
    with pytest.raises(TypeError, match=r"`cfg` must be an SEConfig, CBAMConfig or ECAConfig"):
        tf_impl.from_config([("channels", C)])
    with pytest.raises(TypeError, match=r"takes the module's knobs from `cfg`.* Received: channels=8, preset='timm'"):
        tf_impl.from_config(cfg, channels=8, preset="timm")


def test_data_format_defaults_to_keras_image_data_format() -> None:
    assert tf_impl.SqueezeExcite(C).data_format == keras.config.image_data_format()


@pytest.mark.parametrize(("module", "knobs"), LAYERS)
def test_get_config_round_trip(module: str, knobs: dict) -> None:
    layer = _layer(module, knobs, data_format="channels_first", name="attn", dtype="float64")
    config = layer.get_config()
    assert "preset" not in config and config["channels"] == C  # the resolved config, so reload is exact
    again = type(layer).from_config(config)
    assert again.config == layer.config and again.get_config() == config
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(revived) is type(layer) and revived.config == layer.config
    assert keras.saving.get_registered_name(type(layer)) == f"attnspec>{type(layer).__name__}"


# ----------------------------------------------------------------------------- models


def _model() -> keras.Model:
    inputs = keras.Input(SHAPE_NHWC[1:])
    h = tf_impl.SqueezeExcite(C, preset="timm", name="se")(inputs)
    h = tf_impl.CBAM(C, preset="timm", spatial_kernel_size=3, name="cbam")(h)
    return keras.Model(inputs, tf_impl.ECA(C, preset="timm_ceca", name="eca")(h))


def test_model_saves_to_keras_file_and_reloads_identically(tmp_path) -> None:
    model, x = _model(), _x()
    model(x, training=True)  # moves the BN statistics away from their initial values
    path = tmp_path / "attention.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert [w.path for w in loaded.weights] == [w.path for w in model.weights]
    for a, b in zip(loaded.weights, model.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(loaded(x).numpy(), model(x).numpy())


def test_fit_runs_a_jit_compiled_training_step() -> None:
    model, x = _model(), _x()
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse", jit_compile=True)
    before = {w.path: w.numpy().copy() for w in model.weights}
    history = model.fit(x, np.zeros_like(x), batch_size=len(x), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    changed = {w.path for w in model.weights if not np.array_equal(w.numpy(), before[w.path])}
    assert {w.path for w in model.trainable_weights} <= changed
    assert {"cbam/spatial/bn/moving_mean", "cbam/spatial/bn/moving_variance"} <= changed


# ----------------------------------------------------------------------------- dtypes


@pytest.mark.parametrize("half", ["float16", "bfloat16"])
@pytest.mark.parametrize(("module", "knobs"), LAYERS)
def test_mixed_policies_compute_in_half_with_float32_variables(module: str, knobs: dict, half: str) -> None:
    layer = _layer(module, knobs, dtype=f"mixed_{half}")
    x = round_to_dtype(_x(), half)
    y = layer(x, training=True)
    assert y.dtype == half
    assert {w.dtype for w in layer.weights} == {"float32"}
    expected = _reference_y(layer, x)  # after the call: BN now holds the updated statistics
    assert compare("y", layer(x).numpy().astype(np.float64), expected, half).ok


def test_float64_layers_compute_in_float64() -> None:
    layer = tf_impl.CBAM(C, dtype="float64")
    y = layer(_x().astype("float64"))
    assert y.dtype == "float64" and {w.dtype for w in layer.weights} == {"float64"}


# ----------------------------------------------------------------------------- shapes and formats


@pytest.mark.parametrize(("module", "knobs"), LAYERS)
@pytest.mark.parametrize(
    ("data_format", "shape"), [("channels_last", (None, None, C)), ("channels_first", (C, 7, None))]
)
def test_symbolic_call_infers_the_output_shape(module: str, knobs: dict, data_format: str, shape: tuple) -> None:
    inputs = keras.Input(shape)
    assert _layer(module, knobs, data_format=data_format)(inputs).shape == (None, *shape)


@pytest.mark.parametrize(("module", "knobs"), LAYERS)
@pytest.mark.parametrize("training", [False, True])
def test_data_formats_agree(module: str, knobs: dict, training: bool) -> None:
    x_last = _x()
    x_first = x_last.transpose(0, 3, 1, 2)
    last = _layer(module, knobs, data_format="channels_last")
    first = _layer(module, knobs, data_format="channels_first")
    last.build(x_last.shape)
    first.build(x_first.shape)
    tf_impl.load_canonical(first, tf_impl.to_canonical(last))
    y_last = last(x_last, training=training).numpy()
    y_first = first(x_first, training=training).numpy()
    assert compare("y", y_first.transpose(0, 2, 3, 1), y_last, "float32").ok
    for k, v in tf_impl.to_canonical(last).items():
        assert compare(k, tf_impl.to_canonical(first)[k], v, "float32").ok


def test_input_checks_come_from_the_spec() -> None:
    layer = tf_impl.CBAM(C)
    with pytest.raises(ValueError, match=r"CBAM\(channels=24\) expects 24 input channels on axis 3"):
        layer(_x((2, 5, 4, 8)))
    with pytest.raises(ValueError, match="expects 24 input channels"):
        layer.compute_output_shape((None, 5, 4, 8))
    with pytest.raises(ValueError, match="expects a 4-D input"):
        tf_impl.SqueezeExcite(C)(_x((2, 5, C)))
    with pytest.raises(TypeError, match=r"expects a floating-point input\. Received: dtype=int32"):
        tf_impl.ECA(C)(np.ones(SHAPE_NHWC, dtype="int32"))
    with pytest.raises(ValueError, match="needs more than one value per channel"):
        tf_impl.CBAM(C)(_x((1, 1, 1, C)), training=True)


# ----------------------------------------------------------------------------- batch norm and NaN


def test_frozen_layer_runs_its_batch_norm_in_inference_mode() -> None:
    layer, x = tf_impl.CBAM(C, trainable=False), _x()
    eval_y = layer(x, training=False).numpy()
    train_y = layer(x, training=True).numpy()
    np.testing.assert_array_equal(train_y, eval_y)
    assert {k: float(v[0]) for k, v in tf_impl.to_canonical(layer).items() if "running" in k} == {
        "spatial.bn.running_mean": 0.0,
        "spatial.bn.running_var": 1.0,
    }


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "xla"])
@pytest.mark.parametrize(
    ("module", "knobs"),
    [
        pytest.param("cbam", {"pool_types": ("max",)}, id="cbam-max"),
        pytest.param("cbam", {}, id="cbam-avg-max"),
        pytest.param("cbam", {"pool_types": ("avg", "lse")}, id="cbam-avg-lse"),
        pytest.param("se", {}, id="se"),
    ],
)
def test_nan_propagates_through_every_pool(module: str, knobs: dict, jit: bool) -> None:
    """SPEC section 1: a NaN in a window makes the pooled value NaN, max pools included (XLA's drops it)."""
    import tensorflow as tf

    layer = _layer(module, knobs)
    x = _x()
    x[1, 2, 3, 4] = np.nan
    layer.build(x.shape)
    call = tf.function(layer, jit_compile=True) if jit else layer
    y = call(tf.constant(x)).numpy()
    expected = _reference_y(layer, x)
    assert np.isnan(expected[1]).all() and not np.isnan(expected[0]).any()  # the case can fail
    assert compare("y", y, expected, "float32").ok


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_max_pool_ties_share_the_gradient(data_format: str) -> None:
    """SPEC section 2: on ties a max pool's gradient is split evenly, over space and over channels."""
    from conformance import Case, check_case, get_adapter

    cfg = ref.CBAMConfig(channels=C, pool_types=("max",), spatial_kernel_size=3)
    rng = np.random.default_rng(4)
    x = rng.integers(-2, 3, size=(2, C, 5, 4)).astype(np.float64)  # small integers: most windows hold ties
    for axes in ((2, 3), (1,)):  # the case can fail: tied maxima over space and over channels
        assert ((x == x.max(axis=axes, keepdims=True)).sum(axis=axes) > 1).any()
    x = x if data_format == "channels_first" else x.transpose(0, 2, 3, 1)
    case = Case(
        "ties", cfg, x, ref.init_params(cfg, seed=4), rng.normal(size=x.shape), False, data_format, "float64", 4
    )
    report = check_case(get_adapter("keras"), case)
    assert report.passed, "\n".join(report.failures())
