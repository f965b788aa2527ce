"""The Keras port under its backends' deployment and transform tools, held to the reference (issue #11 item 4).

TensorFlow backend: ``model.export()`` (a SavedModel) and its TFLite conversion, both with a
dynamic batch dimension and run at a batch size no trace used, in inference mode. JAX
backend: ``jax.jit`` and ``jax.grad`` of ``layer.stateless_call``, in train and eval mode, in
float64: output, input and weight gradients, and the BN statistics of CBAM's spatial gate.

Keras picks its backend once per process, so each backend's tests exist only in a process
running that backend; the TensorFlow session (the default) runs the JAX tests in a fresh
process (as tests/test_keras_backends.py does).
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

from conformance import Case, compare, make_case, reference_outputs
from conformance.adapters import Outputs
from conformance.grid import CHANNELS, PRESETS
from conformance.runner import compare_outputs
from reference_numpy import framework_layout, from_framework_array, param_layout
from tests.test_keras_backends import FAST_COMPILE

keras = pytest.importorskip("keras")
tf_impl = pytest.importorskip("tf_impl")

pytestmark = pytest.mark.keras

BACKEND = keras.backend.backend()
VARIANTS = {v.id: v for v in PRESETS if v.id in ("se-timm", "cbam-official", "eca-timm_ceca")}
SHAPE = (3, CHANNELS, 6, 7)
"""(N, C, H, W) of every case: N = 3 is neither the TFLite converter's default batch (1) nor a traced one."""
STEP = 1e-3
"""Relative change of one weight that every comparison here must notice (the non-vacuity check)."""


def _case(variant_id: str, dtype: str, training: bool, data_format: str = "channels_last") -> Case:
    cfg = VARIANTS[variant_id].build(CHANNELS)
    return make_case(cfg, seed=11, dtype=dtype, training=training, data_format=data_format, shape=SHAPE)


def _assert_matches_reference(got: Outputs, case: Case) -> None:
    """``got`` agrees with the reference within SPEC.md 9.3's bound, and would not with one weight moved by STEP."""
    want = reference_outputs(case, with_grads=got.dx is not None)
    failures = [c.message for c in compare_outputs(got, want, case.dtype, case.seed) if not c.ok]
    assert not failures, "\n".join(failures)
    name = next(iter(case.params))
    moved = dataclasses.replace(case, params={**case.params, name: case.params[name] * (1 + STEP)})
    assert not all(c.ok for c in compare_outputs(got, reference_outputs(moved, got.dx is not None), case.dtype, None))


def _loaded_layer(case: Case, dtype: str) -> Any:
    layer = tf_impl.from_config(case.cfg, data_format=case.data_format, dtype=dtype)
    layer.build(case.x.shape)
    return tf_impl.load_canonical(layer, case.params)


# ----------------------------------------------------------------------------- TensorFlow: SavedModel and TFLite

if BACKEND == "tensorflow":

    @pytest.fixture(scope="module", params=list(VARIANTS))
    def exported(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
        """One module exported once: the case, the layer's own output, the SavedModel's path and the TFLite model."""
        import tensorflow as tf

        case = _case(request.param, "float32", training=False)
        layer = _loaded_layer(case, "float32")
        inputs = keras.Input(case.x.shape[1:])  # batch None: dynamic
        path = tmp_path_factory.mktemp(request.param) / "saved_model"
        keras.Model(inputs, layer(inputs)).export(str(path), format="tf_saved_model", verbose=False)
        tflite = tf.lite.TFLiteConverter.from_saved_model(str(path)).convert()
        y_layer = layer(case.x, training=False).numpy().astype(np.float64)
        return {"case": case, "y_layer": y_layer, "path": path, "tflite": tflite}

    def test_saved_model_runs_any_batch_size_as_the_layer_and_the_reference(exported: dict[str, Any]) -> None:
        import tensorflow as tf

        case, y_layer = exported["case"], exported["y_layer"]
        served = tf.saved_model.load(str(exported["path"]))
        signature = served.signatures["serving_default"].structured_input_signature[1]
        assert [tuple(s.shape) for s in signature.values()] == [(None, *case.x.shape[1:])]
        y = served.serve(tf.constant(case.x, tf.float32)).numpy().astype(np.float64)
        assert compare("y", y, y_layer, "float32").ok  # two float32 runs: the relative rule of SPEC.md 9
        _assert_matches_reference(Outputs(y), case)
        # Another batch size: per sample, the same function.
        y1 = served.serve(tf.constant(case.x[1:2], tf.float32)).numpy()
        assert compare("y", y1, y_layer[1:2], "float32").ok

    def test_tflite_model_runs_a_resized_batch_as_the_layer_and_the_reference(exported: dict[str, Any]) -> None:
        import warnings

        import tensorflow as tf

        case, y_layer = exported["case"], exported["y_layer"]
        with warnings.catch_warnings():  # tf.lite.Interpreter's deprecation notice (LiteRT is not a dependency)
            warnings.simplefilter("ignore", UserWarning)
            interpreter = tf.lite.Interpreter(model_content=exported["tflite"])
        (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
        assert tuple(inp["shape_signature"]) == (-1, *case.x.shape[1:]) and inp["shape"][0] == 1
        interpreter.resize_tensor_input(inp["index"], case.x.shape, strict=True)
        interpreter.allocate_tensors()
        interpreter.set_tensor(inp["index"], case.x.astype(np.float32))
        interpreter.invoke()
        y = interpreter.get_tensor(out["index"]).astype(np.float64)
        assert y.shape == case.x.shape
        assert compare("y", y, y_layer, "float32").ok
        _assert_matches_reference(Outputs(y), case)

    def test_jax_backend_in_a_subprocess() -> None:
        """Runs this file under KERAS_BACKEND=jax: every JAX test must pass there (none skipped)."""
        pytest.importorskip("jax")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "KERAS_"))}
        env.update(KERAS_BACKEND="jax", XLA_FLAGS=f"{env.get('XLA_FLAGS', '')} {FAST_COMPILE}".strip())
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", "-p", "no:randomly", __file__]
        run = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
        assert run.returncode == 0, run.stdout[-6000:]
        assert f"{len(JAX_CASES)} passed" in run.stdout and "skipped" not in run.stdout, run.stdout[-2000:]


# ----------------------------------------------------------------------------- JAX: jit and grad of stateless_call

JAX_CASES = [pytest.param(v, t, id=f"{v}-{'train' if t else 'eval'}") for v in VARIANTS for t in (True, False)]

if BACKEND == "jax":

    @pytest.mark.parametrize(("variant_id", "training"), JAX_CASES)
    def test_jit_and_grad_of_stateless_call_match_the_reference(variant_id: str, training: bool) -> None:
        import jax
        import jax.numpy as jnp

        from conformance.adapters.run import x64

        with x64("float64"):
            case = _case(variant_id, "float64", training, "channels_last" if training else "channels_first")
            layer = _loaded_layer(case, "float64")
            trainable = [v.value for v in layer.trainable_variables]
            non_trainable = [v.value for v in layer.non_trainable_variables]

            @jax.jit
            def forward(trainable: list[Any], non_trainable: list[Any], x: Any) -> tuple[Any, list[Any]]:
                return layer.stateless_call(trainable, non_trainable, x, training=training)

            def loss(trainable: list[Any], x: Any, non_trainable: list[Any], dy: Any) -> tuple[Any, list[Any]]:
                y, state = layer.stateless_call(trainable, non_trainable, x, training=training)
                return jnp.sum(y * dy), state  # its gradient w.r.t. y is dy exactly: a VJP

            grad = jax.jit(jax.grad(loss, argnums=(0, 1), has_aux=True))
            x, dy = jnp.asarray(case.x), jnp.asarray(case.dy)
            y, state = forward(trainable, non_trainable, x)
            (d_trainable, dx), grad_state = grad(trainable, x, non_trainable, dy)
            assert y.dtype == dx.dtype == jnp.float64
            for a, b in zip(state, grad_state, strict=True):  # the differentiated call updates BN the same way
                np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

            by_id = {id(v): np.asarray(g) for v, g in zip(layer.trainable_variables, d_trainable, strict=True)}
            layout = framework_layout(case.cfg, "keras")
            grads = {
                name: from_framework_array(p.kind, by_id[id(layer.keras_weights[p.key])], "keras")
                for name, p in layout.items()
                if p.collection == "params"
            }
            for v, value in zip(layer.non_trainable_variables, state, strict=True):
                v.assign(value)
            canonical = tf_impl.to_canonical(layer)
            new_state = {k: canonical[k] for k, s in param_layout(case.cfg).items() if not s.trainable}
        if not training:  # eval mode leaves the BN statistics alone
            for k, v in new_state.items():
                np.testing.assert_array_equal(v, case.params[k])
            new_state = {}
        assert bool(new_state) == (training and case.cfg.module == "cbam")
        _assert_matches_reference(Outputs(np.asarray(y), np.asarray(dx), grads, new_state), case)
