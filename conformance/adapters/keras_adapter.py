"""The Keras 3 port (``tf_impl``) as an adapter, on whichever Keras backend is active.

Half types run under Keras's mixed policies (half compute, float32 variables), the others
with the layer dtype set to the case's dtype. The vector-Jacobian product is the backend's
own autodiff: ``tf.GradientTape`` on TensorFlow (eager, or compiled by XLA with
``KerasAdapter(jit_compile=True)``), ``jax.vjp`` of ``layer.stateless_call`` under ``jax.jit``
on JAX, ``torch.autograd`` on PyTorch. A compiled run is kept per layer configuration and
input shape and reused, its layer loaded with each case's weights: compiling costs seconds,
running a small case milliseconds.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import keras
import numpy as np
from keras import ops

import tf_impl
from reference_numpy import Config, framework_layout, from_framework_array, param_layout
from tf_impl import to_numpy

from .base import Adapter, Outputs
from .run import tf_vjp, x64

_POLICIES = {"float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}

Tensors = tuple[Any, Any, list[Any]]  # y, dx (or None), grads in the order of layer.trainable_variables


Run = Callable[[Any, Any | None], Tensors]  # (x, dy) -> (y, dx, grads) of one built layer


def _run_tensorflow(layer: keras.layers.Layer, training: bool) -> Run:
    return lambda x, dy: tf_vjp(lambda xx: layer(xx, training=training), x, dy, layer.trainable_variables)


def _run_xla(layer: keras.layers.Layer, training: bool) -> Run:
    import tensorflow as tf

    return tf.function(_run_tensorflow(layer, training), jit_compile=True)


def _run_jax(layer: keras.layers.Layer, training: bool) -> Run:
    import jax

    @jax.jit
    def run(trainable: list[Any], non_trainable: list[Any], x: Any, dy: Any | None) -> tuple[Any, ...]:
        def f(trainable: list[Any], x: Any) -> tuple[Any, list[Any]]:
            return layer.stateless_call(trainable, non_trainable, x, training=training)

        if dy is None:
            y, state = f(trainable, x)
            return y, None, [], state
        y, pullback, state = jax.vjp(f, trainable, x, has_aux=True)
        grads, dx = pullback(dy)
        return y, dx, grads, state

    def call(x: Any, dy: Any | None) -> Tensors:
        values = [v.value for v in layer.trainable_variables], [v.value for v in layer.non_trainable_variables]
        y, dx, grads, state = run(*values, x, dy)
        for v, value in zip(layer.non_trainable_variables, state, strict=True):
            v.assign(value)
        return y, dx, grads

    return call


def _run_torch(layer: keras.layers.Layer, training: bool) -> Run:
    import torch

    def call(x: Any, dy: Any | None) -> Tensors:
        if dy is None:
            with torch.no_grad():
                return layer(x, training=training), None, []
        x = x.detach().requires_grad_(True)
        y = layer(x, training=training)
        dx, *grads = torch.autograd.grad(y, [x, *(v.value for v in layer.trainable_variables)], grad_outputs=dy)
        return y, dx, grads

    return call


_RUN: dict[str, Callable[[keras.layers.Layer, bool], Run]] = {
    "tensorflow": _run_tensorflow,
    "jax": _run_jax,
    "torch": _run_torch,
}
_COMPILED = ("jax",)  # backends whose runs are compiled, so worth keeping; TensorFlow's with jit_compile=True
_KEPT = 16  # compiled runs kept (least recently used dropped)


def _to_tensor(a: np.ndarray, dtype: str) -> Any:
    """Values exactly representable in ``dtype`` -> a backend tensor of that dtype (bfloat16 via float32)."""
    return ops.cast(ops.convert_to_tensor(a.astype("float32" if dtype in _POLICIES else dtype)), dtype)


def _to_numpy(t: Any) -> np.ndarray:
    return np.asarray(to_numpy(t)).astype(np.float64)


class KerasAdapter(Adapter):
    """The Keras port on the active backend; ``jit_compile=True`` runs it under XLA on TensorFlow.

    (JAX always compiles, with ``jax.jit``; PyTorch has no compiled run here: a ValueError.)
    """

    name = "keras"

    def __init__(self, *, jit_compile: bool = False) -> None:
        backend = keras.backend.backend()
        if jit_compile and backend != "tensorflow":
            raise ValueError(
                f"`jit_compile=True` is TensorFlow's XLA; the Keras backend is {backend!r}. Received: jit_compile=True"
            )
        self.jit_compile = jit_compile
        self._runs: OrderedDict[Hashable, tuple[keras.layers.Layer, Run]] = OrderedDict()

    def _layer_and_run(
        self, cfg: Config, policy: str, x_shape: tuple[int, ...], training: bool, data_format: str
    ) -> tuple[keras.layers.Layer, Run]:
        """A built layer and its run: fresh per case when eager, kept per configuration when compiled."""
        backend = keras.backend.backend()
        compiled = self.jit_compile or backend in _COMPILED
        key = (cfg, policy, x_shape, training, data_format)
        if compiled and key in self._runs:
            self._runs.move_to_end(key)
            return self._runs[key]
        layer = tf_impl.from_config(cfg, data_format=data_format, dtype=policy)
        layer.build(x_shape)
        run = (_run_xla if self.jit_compile else _RUN[backend])(layer, training)
        if compiled:
            self._runs[key] = layer, run
            if len(self._runs) > _KEPT:
                self._runs.popitem(last=False)
        return layer, run

    def build(self, cfg: Config, dtype: str) -> Any:
        # The data format is a constructor argument of the layer, so the layer itself is built in evaluate().
        return {"cfg": cfg, "policy": _POLICIES.get(dtype, dtype)}

    def load(self, module: Any, cfg: Config, params: dict[str, np.ndarray], dtype: str) -> Any:
        return {**module, "params": params}

    def evaluate(
        self, module: Any, x: np.ndarray, dy: np.ndarray | None, *, training: bool, data_format: str, dtype: str
    ) -> Outputs:
        # On JAX, float64 exists only in its 64-bit mode: on while the case runs (its variables included).
        with x64(dtype) if keras.backend.backend() == "jax" else contextlib.nullcontext():
            return self._evaluate(module, x, dy, training=training, data_format=data_format, dtype=dtype)

    def _evaluate(
        self, module: Any, x: np.ndarray, dy: np.ndarray | None, *, training: bool, data_format: str, dtype: str
    ) -> Outputs:
        cfg = module["cfg"]
        layer, run = self._layer_and_run(cfg, module["policy"], x.shape, training, data_format)
        tf_impl.load_canonical(layer, module["params"])
        y, dxt, gts = run(_to_tensor(x, dtype), None if dy is None else _to_tensor(dy, dtype))
        dx, grads = None, {}
        if dy is not None:
            dx = _to_numpy(dxt)
            by_id = {id(v): g for v, g in zip(layer.trainable_variables, gts, strict=True)}
            grads = {
                name: from_framework_array(p.kind, _to_numpy(by_id[id(layer.keras_weights[p.key])]), "keras")
                for name, p in framework_layout(cfg, "keras").items()
                if p.collection == "params"
            }
        state = {}
        if training:
            canonical = tf_impl.to_canonical(layer)
            state = {k: canonical[k].astype(np.float64) for k, s in param_layout(cfg).items() if not s.trainable}
        return Outputs(_to_numpy(y), dx, grads, state)
