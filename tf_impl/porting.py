"""Whole Keras models <-> PyTorch state dicts (SPEC.md section 7), through ``reference_numpy.porting``.

The PyTorch module path of a Keras layer is the dot-join of the layer names from the model
down to it: a flat functional model names its layers ``"layer1.0.conv1"``, a subclassed one
nests a layer named ``"conv1"`` in one named ``"0"`` in one named ``"layer1"``; any mix works.
Layers without weights (padding, pooling, activations) take no part. Ported: ``Conv2D``
(``groups`` included), ``DepthwiseConv2D``, ``Dense``, ``BatchNormalization``,
``LayerNormalization`` and this package's attention layers (through the canonical layout, in
any PyTorch dialect of the module: ``reference_numpy.porting.dialects``).

>>> import keras, numpy as np, tf_impl
>>> model = keras.Sequential([keras.layers.Conv2D(4, 3, name="conv"), tf_impl.SqueezeExcite(4, rd_channels=2, name="se")])
>>> model.build((None, 8, 8, 3))
>>> sd = {"conv.weight": np.ones((4, 3, 3, 3)), "conv.bias": np.zeros(4),
...       "se.fc1.weight": np.ones((2, 4, 1, 1)), "se.fc1.bias": np.zeros(2),   # timm's 1x1 convolutions
...       "se.fc2.weight": np.ones((4, 2, 1, 1)), "se.fc2.bias": np.zeros(4)}
>>> report = tf_impl.load_torch_state_dict(model, sd)
>>> len(report.loaded), report.dialects, tuple(model.get_layer("conv").kernel.shape)
(6, {'se': ('timm', 'torchvision')}, (3, 3, 3, 4))
>>> sorted(tf_impl.to_torch_state_dict(model)) == sorted(sd)
True
"""

from __future__ import annotations

import functools
import types
from collections.abc import Mapping
from typing import Any

import keras
import numpy as np

from reference_numpy import PortReport, framework_layout, with_doc
from reference_numpy.porting import DEFAULT_DIALECT, EXPORT_DOC, LOAD_DOC, Walk

from ._base import AttentionLayer, load_canonical, to_canonical, to_numpy

__all__ = ["load_torch_state_dict", "to_torch_state_dict"]

_KINDS: tuple[tuple[type, str], ...] = (
    (keras.layers.DepthwiseConv2D, "depthwise_conv2d"),
    (keras.layers.Conv2D, "conv2d"),
    (keras.layers.Dense, "dense"),
    (keras.layers.BatchNormalization, "batch_norm"),
    (keras.layers.LayerNormalization, "layer_norm"),
)

_PORT = types.SimpleNamespace(
    describe=lambda v: (tuple(v.shape), v.dtype),
    stage=lambda a, v: keras.ops.convert_to_tensor(a, dtype=v.dtype),
    assign=lambda v, value: v.assign(value),
    to_numpy=lambda v: to_numpy(v.value),
    load_canonical=load_canonical,
    to_canonical=to_canonical,
)
"""What the porter's Walk does with Keras variables and layers."""


def _children(layer: Any) -> list[Any]:
    return list(layer._flatten_layers(include_self=False, recursive=False))


def _variable(layer: Any, leaf: str) -> keras.Variable | None:
    v = getattr(layer, leaf, None)
    return v if isinstance(v, keras.Variable) else None


def _walk(model: Any) -> Walk:
    """Every weight-holding layer, and the variables no slot covers."""
    if not isinstance(model, keras.layers.Layer):
        raise TypeError(f"`model` must be a Keras model or layer. Received: {type(model).__name__}")
    if not model.built:
        raise ValueError(f"{type(model).__name__} has no weights yet: build it first (call it on an input).")
    walk = Walk("keras", _PORT, holder="layer", variable="weight")

    def visit(layer: Any, path: str) -> None:
        for child in _children(layer):
            where = f"{path}.{child.name}" if path else child.name
            if isinstance(child, AttentionLayer):
                held = child.keras_weights
                by_name = {name: held[p.key] for name, p in framework_layout(child.config, "keras").items()}
                walk.add(where, "attention", child, by_name, child.config)
                continue
            kind = next((k for cls, k in _KINDS if isinstance(child, cls)), None)
            if kind is not None:
                walk.add_layer(where, kind, child, functools.partial(_variable, child))
                continue
            visit(child, where)

    visit(model, "")
    walk.unknown = [v.path for v in model.weights if id(v) not in walk.covered]
    return walk


@with_doc(LOAD_DOC, model="the built Keras ``model``", framework="Keras", variable="weight", holder="layer")
def load_torch_state_dict(model: Any, state_dict: Mapping[str, Any], *, strict: bool = True) -> PortReport:
    return _walk(model).load(state_dict, strict=strict, target=f"Keras model {model.name!r}")


@with_doc(EXPORT_DOC, model="The built Keras ``model``")
def to_torch_state_dict(model: Any, *, dialect: str = DEFAULT_DIALECT) -> dict[str, np.ndarray]:
    return _walk(model).export(dialect=dialect)
