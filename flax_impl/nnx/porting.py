"""NNX modules <-> PyTorch state dicts (SPEC.md section 7), through ``reference_numpy.porting``.

The PyTorch module path of an NNX sub-module is the dot-join of its path in the module graph
(``nnx.iter_modules``): attribute names and list indices, so ``self.layer1 = nnx.List([...])``
holding a block whose attribute ``conv1`` is an ``nnx.Conv`` takes ``layer1.0.conv1.weight``.
Ported: ``nnx.Conv`` (2-D; grouped and depthwise ones included: ``feature_group_count``),
``nnx.Linear``, ``nnx.BatchNorm``, ``nnx.LayerNorm`` and this package's attention modules
(through the canonical layout, in any PyTorch dialect of the module:
``reference_numpy.porting.dialects``).

>>> import numpy as np
>>> from flax import nnx
>>> from flax_impl import nnx as attn
>>> class Net(nnx.Module):
...     def __init__(self, rngs):
...         self.fc = nnx.Linear(8, 4, rngs=rngs)
...         self.norm = nnx.LayerNorm(4, rngs=rngs)
>>> net = Net(nnx.Rngs(0))
>>> sd = {"fc.weight": np.ones((4, 8)), "fc.bias": np.zeros(4), "norm.weight": np.ones(4), "norm.bias": np.zeros(4)}
>>> attn.load_torch_state_dict(net, sd).loaded
['fc.weight', 'fc.bias', 'norm.weight', 'norm.bias']
>>> net.fc.kernel.shape, sorted(attn.to_torch_state_dict(net)) == sorted(sd)
((8, 4), True)
"""

from __future__ import annotations

import functools
import types
from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import nnx

from reference_numpy import PortReport, framework_layout, with_doc
from reference_numpy.porting import DEFAULT_DIALECT, EXPORT_DOC, LOAD_DOC, Walk

from ._base import Attention
from .weights import load_canonical, to_canonical

__all__ = ["load_torch_state_dict", "to_torch_state_dict"]

_KINDS: tuple[tuple[type, str], ...] = (
    (nnx.Conv, "conv2d"),
    (nnx.Linear, "dense"),
    (nnx.BatchNorm, "batch_norm"),
    (nnx.LayerNorm, "layer_norm"),
)

_PORT = types.SimpleNamespace(
    describe=lambda v: (tuple(v.get_value().shape), v.get_value().dtype),
    stage=lambda a, v: jnp.asarray(a, dtype=v.get_value().dtype),
    assign=lambda v, value: v.set_value(value),
    to_numpy=lambda v: np.asarray(v.get_value()),
    load_canonical=load_canonical,
    to_canonical=to_canonical,
)
"""What the porter's Walk does with NNX variables and modules."""


def _variable(m: Any, leaf: str) -> nnx.Variable | None:
    v = getattr(m, leaf.split(".", 1)[1], None)  # "params.kernel" -> m.kernel
    return v if isinstance(v, nnx.Variable) else None


def _walk(module: Any) -> Walk:
    """Every weight-holding sub-module, and the variables no slot covers."""
    if not isinstance(module, nnx.Module):
        raise TypeError(f"`module` must be an NNX module. Received: {type(module).__name__}")
    walk = Walk("flax", _PORT, holder="module", variable="variable")
    modules = list(nnx.iter_modules(module))
    blocks = [tuple(path) for path, m in modules if isinstance(m, Attention)]
    for path, m in modules:
        if any(len(path) > len(p) and tuple(path[: len(p)]) == p for p in blocks):
            continue  # a node of an attention block
        where = ".".join(map(str, path))
        if isinstance(m, Attention):
            variables = m._variables()
            by_name = {name: variables[".".join(p.path[1:])] for name, p in framework_layout(m.config, "flax").items()}
            walk.add(where, "attention", m, by_name, m.config)
            continue
        kind = next((k for cls, k in _KINDS if isinstance(m, cls)), None)
        if kind == "conv2d" and len(m.kernel.get_value().shape) != 4:
            kind = None
        own = {
            k: v
            for k, v in vars(m).items()
            if isinstance(v, nnx.Variable) and isinstance(v, (nnx.Param, nnx.BatchStat))
        }
        if kind is None:
            walk.unknown.extend(f"{where}.{k}" if where else k for k in own)
            continue
        walk.add_layer(where, kind, m, functools.partial(_variable, m))
        walk.unknown.extend(f"{where}.{k}" for k, v in own.items() if id(v) not in walk.covered)
    return walk


@with_doc(LOAD_DOC, model="the NNX ``module``", framework="Flax", variable="variable", holder="module")
def load_torch_state_dict(module: Any, state_dict: Mapping[str, Any], *, strict: bool = True) -> PortReport:
    return _walk(module).load(state_dict, strict=strict, target=f"NNX module {type(module).__name__}")


@with_doc(EXPORT_DOC, model="The NNX ``module``")
def to_torch_state_dict(module: Any, *, dialect: str = DEFAULT_DIALECT) -> dict[str, np.ndarray]:
    return _walk(module).export(dialect=dialect)
