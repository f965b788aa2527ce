"""Verify somebody else's SE / CBAM / ECA implementation against the spec, and say which variant it is.

    python -m conformance verify TARGET --module {se,cbam,eca} --framework {torch,flax,keras}
        [--init-kwargs JSON] [--map auto|DIALECT|FILE.json] [--expect PRESET|JSON]
        [--channels N] [--data-format channels_first|channels_last] [--seed N] [--format text|json]

``TARGET`` is ``package.module:Factory``: a class, or a function returning a layer (a PyTorch
``nn.Module``, a Flax linen or NNX module, a Keras layer), called with ``--init-kwargs``.

What it does, in order:

1. instantiates the target and reads its tensors (PyTorch parameters and floating buffers,
   a linen module's initialised variables, an NNX module's state, a Keras layer's weights
   after calling it once);
2. binds every tensor to a canonical one: by a named PyTorch dialect (the ``THIRD_PARTY``
   tables of :mod:`reference_numpy.convert`), by a JSON map file
   (``{"their.name": "canonical.name"}``, or ``{"their.name": {"canonical": ..., "layout":
   "torch"|"flax"|"keras"}}`` to give a tensor's layout convention), or ``auto``: layers are
   recognised by their shapes (two fully connected layers ``C -> hidden -> C`` (``Linear``,
   ``Dense`` or 1x1 convolutions), a ``(1, 2, k, k)`` spatial convolution, a 1-channel 1-D
   convolution, a batch norm by its statistics' names); what cannot be bound, or could be
   bound two ways, is said in a sentence;
3. calls it once on a sample input with its own weights (a shape error in its forward is a
   reported failure, never a crash);
4. identifies the variant: the configuration that the parameter shapes imply (hidden width,
   biases, kernel sizes, batch norm), with the defaults and then every preset for the
   remaining knobs, then a coordinate search over the discrete knobs (gate, activation, the
   pool types, the spatial pool order, ECA padding, BN momentum and eps), float64 forward
   only, a few dozen candidates at most; when the structure says it is another module (an
   "ECA" with two fully connected layers), that module is identified instead;
5. checks the identified (or closest) configuration in full with :func:`conformance.check_case`:
   output, input gradient, every parameter gradient and, in train mode, the running
   statistics, in float64 (where the target computes in float64) and float32, eval and, when
   it has batch norm, train.

Pass/fail policy: the target passes when it matches SOME configuration of the requested
module (any preset, any knob setting); ``identified`` names it and the diagnosis says how it
differs from the module's defaults. ``expect`` (a preset name, or knobs as a mapping/JSON
with an optional ``"preset"`` key) makes it strict: then only a configuration equivalent to
the expected one passes. Equivalent means the same computation: rounding knobs that give the
same hidden width, or an explicit ECA kernel equal to the adaptive one, are not differences.

Identified configurations are named by their nearest preset:

>>> from reference_numpy import CBAMConfig
>>> describe(CBAMConfig.preset("timm", channels=32, bn_momentum=0.01))
"CBAM preset 'timm' with bn_momentum=0.01 instead of 0.1"
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib
import inspect
import itertools
import json
import math
import sys
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from reference_numpy import (
    THIRD_PARTY,
    CBAMConfig,
    Config,
    ECAConfig,
    SEConfig,
    export_state_dict,
    from_framework_array,
    make_config,
    param_layout,
    to_framework_array,
)
from reference_numpy.config import ACTIVATIONS, ECA_PADDINGS, GATES, SPATIAL_POOLS
from reference_numpy.ops import POOLS

from .adapters.base import Adapter, Outputs
from .cases import Case, make_case, round_to_dtype
from .compare import Comparison
from .runner import CaseReport, check_case, compare_outputs, reference_outputs
from .tolerances import widening

__all__ = ["Binding", "ThirdPartyAdapter", "VerifyReport", "describe", "load_target", "main", "verify"]

FRAMEWORKS = ("torch", "flax", "keras")
MODULES = ("se", "cbam", "eca")
MAX_CANDIDATES = 60
"""Upper bound on the configurations the identification search evaluates per module."""

_NAMES = {"se": "SE", "cbam": "CBAM", "eca": "ECA"}
_CHANNEL_HINTS = (
    "channels",
    "channel",
    "in_channels",
    "num_channels",
    "n_channels",
    "input_channels",
    "gate_channels",
    "in_chs",
    "chs",
    "in_planes",
    "planes",
    "dim",
    "num_features",
    "features",
    "filters",
    "c",
)
_MEAN_LEAVES = ("running_mean", "moving_mean", "mean")
_VAR_LEAVES = ("running_var", "moving_variance", "moving_var", "var", "variance")
_BN_LEAVES = {
    **dict.fromkeys(("weight", "scale", "gamma"), "weight"),
    **dict.fromkeys(("bias", "beta"), "bias"),
    **dict.fromkeys(_MEAN_LEAVES, "running_mean"),
    **dict.fromkeys(_VAR_LEAVES, "running_var"),
}
_BIAS_LEAVES = ("bias", "b", "beta")


# ----------------------------------------------------------------------------- roles
# A role is a canonical name with CBAM's "channel." prefix dropped, so that one binding of a
# target's tensors serves every module: SE's "fc1.weight" is CBAM's "channel.fc1.weight".


def _role(canonical: str) -> str:
    return canonical.removeprefix("channel.")


def _canonical(role: str, module: str) -> str:
    return f"channel.{role}" if module == "cbam" and role.startswith("fc") else role


def _all_kinds() -> dict[str, str]:
    """Role -> canonical kind, asked of the spec's layouts (every optional tensor switched on)."""
    out: dict[str, str] = {}
    for cfg in (
        SEConfig(channels=16),
        CBAMConfig(channels=16, spatial_bias=True),
        ECAConfig(channels=16, bias=True),
    ):
        out.update({_role(k): s.kind for k, s in param_layout(cfg).items()})
    return out


ROLE_KINDS = _all_kinds()


@dataclasses.dataclass(frozen=True)
class Tensor:
    """One of the target's tensors, as the target names and shapes it."""

    name: str
    shape: tuple[int, ...]
    trainable: bool


@dataclasses.dataclass(frozen=True)
class Binding:
    """A target tensor bound to a canonical role, with the array transforms both ways."""

    role: str
    name: str
    shape: tuple[int, ...]
    canonical_shape: tuple[int, ...]
    to_theirs: Callable[[np.ndarray], np.ndarray] = dataclasses.field(repr=False, compare=False)
    to_canonical: Callable[[np.ndarray], np.ndarray] = dataclasses.field(repr=False, compare=False)

    @property
    def kind(self) -> str:
        return ROLE_KINDS[self.role]


def _layout_binding(role: str, t: Tensor, layout: str) -> Binding:
    """Bind ``t`` to ``role`` using ``layout``'s convention (``torch``, ``flax`` or ``keras``) for its kind."""
    kind, shape = ROLE_KINDS[role], t.shape
    if kind == "dense" and len(shape) == 4:  # a 1x1 convolution used as a fully connected layer

        def to(a: np.ndarray) -> np.ndarray:
            return to_framework_array("conv2d", a[:, :, None, None], layout)

        def back(a: np.ndarray) -> np.ndarray:
            return from_framework_array("conv2d", a, layout)[:, :, 0, 0]

    elif kind in ("dense", "conv2d"):
        to = functools.partial(to_framework_array, kind, framework=layout)
        back = functools.partial(from_framework_array, kind, framework=layout)
    else:  # ECA's kernel, biases, BN tensors: the same numbers, their shape

        def to(a: np.ndarray) -> np.ndarray:
            return np.reshape(a, shape)

        def back(a: np.ndarray) -> np.ndarray:
            return np.reshape(a, -1)

    canonical_shape = tuple(back(np.zeros(shape)).shape)
    return Binding(role, t.name, shape, canonical_shape, to, back)


# ----------------------------------------------------------------------------- framework backends


def _last_line(e: BaseException) -> str:
    """``Type: message`` of an exception, without the notes JAX appends (they would be the last line)."""
    notes = getattr(e, "__notes__", None)
    try:
        if notes is not None:
            del e.__notes__
        return traceback.format_exception_only(type(e), e)[-1].strip()
    finally:
        if notes is not None:
            e.__notes__ = notes


def _sample_shape(channels: int) -> tuple[int, int, int, int]:
    """(N, C, H, W) with N, H, W distinct from each other and from C, H != W."""
    free = [v for v in (2, 5, 3, 6, 7, 4) if v != channels]
    return free[0], channels, free[1], free[2]


class _Backend:
    """How verify instantiates, reads, loads and runs a target in one framework."""

    framework = ""
    data_format = "channels_last"
    reuse = False
    """Whether one instance serves every run (loading overwrites every tensor): per dtype when ``per_dtype``."""
    per_dtype = True

    def __init__(self, factory: Callable[..., Any], init_kwargs: Mapping[str, Any]):
        self.factory, self.init_kwargs = factory, dict(init_kwargs)
        self.channels: int | None = None
        self._fns: dict[Any, Any] = {}  # compiled functions (JAX backends)
        self._instances: dict[str | None, Any] = {}

    def make(self, dtype: str) -> Any:
        raise NotImplementedError

    def instance(self, dtype: str) -> Any:
        """A fresh instance, or the cached one where instances can be reused."""
        if not self.reuse:
            return self.make(dtype)
        key = dtype if self.per_dtype else None
        if key not in self._instances:
            self._instances[key] = self.make(dtype)
        return self._instances[key]

    def tensors(self, obj: Any) -> tuple[list[Tensor], list[str]]:
        """The target's tensors, and the names of those with no canonical counterpart (counters)."""
        raise NotImplementedError

    def assign(self, obj: Any, values: Mapping[str, np.ndarray], dtype: str) -> Any:
        raise NotImplementedError

    def call(
        self, obj: Any, x: np.ndarray, dy: np.ndarray | None, training: bool, dtype: str
    ) -> tuple[np.ndarray, np.ndarray | None, dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Returns (y, dx, grads by their name, state by their name after a train-mode call)."""
        raise NotImplementedError

    def hint_channels(self, obj: Any | None) -> int | None:
        spec = getattr(obj, "config", None)  # this project's ports (and anything else holding a spec config)
        for source in (self.init_kwargs, *(() if obj is None else (obj, spec))):
            for name in _CHANNEL_HINTS:
                v = source.get(name) if isinstance(source, Mapping) else getattr(source, name, None)
                if isinstance(v, int) and not isinstance(v, bool) and v >= 1:
                    return v
        return None


def _as_array(y: Any, what: str) -> np.ndarray:
    if isinstance(y, (tuple, list, dict)):
        raise TypeError(f"{what} returned a {type(y).__name__}, expected one array with the input's shape")
    if hasattr(y, "detach"):
        y = y.detach().cpu()
    return np.asarray(y)


class _TorchBackend(_Backend):
    framework = "torch"
    data_format = "channels_first"

    def make(self, dtype: str) -> Any:
        import torch

        obj = self.factory(**self.init_kwargs)
        if not isinstance(obj, torch.nn.Module):
            raise TypeError(f"the factory returned a {type(obj).__name__}, not a torch.nn.Module")
        return obj.to(getattr(torch, dtype))

    def tensors(self, obj: Any) -> tuple[list[Tensor], list[str]]:
        out = [Tensor(n, tuple(p.shape), True) for n, p in obj.named_parameters()]
        ignored = []
        for n, b in obj.named_buffers():
            if b.is_floating_point():
                out.append(Tensor(n, tuple(b.shape), False))
            else:
                ignored.append(n)
        return out, ignored

    def assign(self, obj: Any, values: Mapping[str, np.ndarray], dtype: str) -> Any:
        import torch

        tensors = {**dict(obj.named_parameters()), **dict(obj.named_buffers())}
        with torch.no_grad():
            for name, v in values.items():
                t = tensors[name]
                t.copy_(torch.as_tensor(np.asarray(v), dtype=t.dtype))
        return obj

    def call(self, obj, x, dy, training, dtype):  # type: ignore[no-untyped-def]
        import torch

        obj.train(training)
        xt = torch.tensor(x, dtype=getattr(torch, dtype), requires_grad=dy is not None)
        y = obj(xt)
        out = _as_array(y, "its forward")
        state = {n: b.detach().cpu().numpy().copy() for n, b in obj.named_buffers() if b.is_floating_point()}
        if dy is None:
            return out, None, {}, state
        named = list(obj.named_parameters())
        got = torch.autograd.grad(
            y, [xt] + [p for _, p in named], grad_outputs=torch.as_tensor(dy, dtype=y.dtype), allow_unused=True
        )
        grads = {
            n: (np.zeros(tuple(p.shape)) if g is None else g.detach().numpy())
            for (n, p), g in zip(named, got[1:], strict=True)
        }
        return out, got[0].detach().numpy(), grads, state


def _x64(dtype: str) -> Any:
    """JAX's 64-bit mode for a float64 run; otherwise whatever the process has."""
    import jax

    return jax.enable_x64(dtype == "float64" or bool(jax.config.jax_enable_x64))  # type: ignore[attr-defined]


def _mode_kwargs(fn: Callable[..., Any], training: bool) -> dict[str, bool]:
    """The keyword a Flax module's __call__ takes for train/eval mode, whichever it is called."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return {}
    for name, value in (
        ("training", training),
        ("train", training),
        ("is_training", training),
        ("use_running_average", not training),
        ("deterministic", not training),
    ):
        if name in params:
            return {name: value}
    return {}


class _LinenBackend(_Backend):
    framework = "flax"
    reuse, per_dtype = True, False  # the variables are cast when called

    def make(self, dtype: str) -> Any:
        import jax

        obj = self.factory(**self.init_kwargs)
        if self.channels is None:
            self.channels = self.hint_channels(obj)
        if self.channels is None:
            raise ValueError("cannot tell the channel count of a Flax module before it is initialised; pass channels")
        n, c, h, w = _sample_shape(self.channels)
        x = np.zeros((n, h, w, c), np.float32) if self.data_format == "channels_last" else np.zeros((n, c, h, w))
        # shapes only (random initialisers compile slowly); loading overwrites them, the smoke run uses these
        init = functools.partial(obj.init, **_mode_kwargs(obj.__call__, False))
        shapes = jax.eval_shape(init, jax.random.PRNGKey(0), x.astype(np.float32))
        rng = np.random.default_rng(0)
        variables = {
            k: np.abs(rng.uniform(0.5, 1.5, v.shape)) if k.endswith(_VAR_LEAVES) else rng.uniform(-0.5, 0.5, v.shape)
            for k, v in _flatten(shapes).items()
        }
        return obj, variables

    def tensors(self, obj: Any) -> tuple[list[Tensor], list[str]]:
        _, flat = obj
        return [Tensor(k, tuple(np.shape(v)), k.startswith("params.")) for k, v in flat.items()], []

    def assign(self, obj: Any, values: Mapping[str, np.ndarray], dtype: str) -> Any:
        module, flat = obj
        return module, {**flat, **{k: np.asarray(v, dtype) for k, v in values.items()}}

    def call(self, obj, x, dy, training, dtype):  # type: ignore[no-untyped-def]
        import jax.numpy as jnp

        from reference_numpy import nest

        module, flat = obj
        with _x64(dtype):
            variables = nest({k: jnp.asarray(np.asarray(v, dtype)) for k, v in flat.items()})
            params = variables.pop("params", {})
            kw = _mode_kwargs(module.__call__, training)
            mutable = list(variables) if training else False

            def f(p: Any, other: Any, xx: Any) -> Any:
                out = module.apply({"params": p, **other}, xx, mutable=mutable, **kw)
                return out if mutable is not False else (out, {})

            y, dx, dparams, updates = _jax_call(self._fns, (id(module), training), f, params, variables, x, dy, dtype)
            grads = {f"params.{k}": np.asarray(v) for k, v in _flat_tree(dparams).items()}
            return _as_array(y, "its __call__"), dx, grads, _flat_tree(updates)


def _jax_call(
    cache: dict[Any, Any], key: Any, f: Callable[..., Any], params: Any, other: Any, x: Any, dy: Any, dtype: str
) -> Any:
    """``f(params, other, x) -> (y, aux)``, with the VJP when ``dy`` is given: jitted (compiled once per
    ``key``), or eagerly when it cannot be traced. Returns (y, dx, dparams, aux) as NumPy / pytrees."""
    import jax
    import jax.numpy as jnp

    def vjp(p: Any, o: Any, xx: Any, ct: Any) -> Any:
        # ``o`` is a primal too (its cotangent unused): NNX variables made from a value closed over
        # from an outer trace cannot be updated inside the VJP's trace
        y, pullback, aux = jax.vjp(lambda p_, x_, o_: f(p_, o_, x_), p, xx, o, has_aux=True)
        dp, dx, _ = pullback(ct)
        return y, dx, dp, aux

    grad = dy is not None
    fn: Callable[..., Any] = vjp if grad else f
    key = (*key, grad)
    if key not in cache:
        cache[key] = jax.jit(fn)
    args: tuple[Any, ...] = (params, other, jnp.asarray(np.asarray(x, dtype)))
    if grad:
        args = (*args, jnp.asarray(np.asarray(dy, dtype)))
    try:
        out = cache[key](*args)
    except Exception:  # not traceable (Python control flow on values): run it eagerly, errors and all
        out = fn(*args)
    if not grad:
        return out[0], None, {}, out[1]
    y, dx, dp, aux = out
    return y, np.asarray(dx), dp, aux


def _flatten(tree: Any) -> dict[str, Any]:
    from reference_numpy import flatten

    return flatten(tree) if isinstance(tree, Mapping) else {}


def _flat_tree(tree: Any) -> dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in _flatten(tree).items()}


class _NNXBackend(_Backend):
    framework = "flax"
    reuse, per_dtype = True, False  # loading casts every variable

    def make(self, dtype: str) -> Any:
        from flax import nnx

        kw = dict(self.init_kwargs)
        # NNX's metaclass hides the signature of the class: look at __init__
        fn = self.factory.__init__ if isinstance(self.factory, type) else self.factory  # type: ignore[misc]
        try:
            takes_rngs = "rngs" in inspect.signature(fn).parameters
        except (TypeError, ValueError):
            takes_rngs = False
        if takes_rngs and "rngs" not in kw:
            kw["rngs"] = nnx.Rngs(0)
        return self.factory(**kw)

    @staticmethod
    def _flat(state: Any) -> dict[str, Any]:
        from flax import nnx

        return {".".join(map(str, path)): v for path, v in nnx.to_flat_state(state)}

    def tensors(self, obj: Any) -> tuple[list[Tensor], list[str]]:
        from flax import nnx

        out, ignored = [], []
        for name, v in self._flat(nnx.state(obj)).items():
            value = np.asarray(v.get_value() if hasattr(v, "get_value") else v)
            if np.issubdtype(value.dtype, np.floating):
                out.append(Tensor(name, value.shape, isinstance(v, nnx.Param)))
            else:
                ignored.append(name)
        return out, ignored

    def assign(self, obj: Any, values: Mapping[str, np.ndarray], dtype: str) -> Any:
        import jax.numpy as jnp

        with _x64(dtype):
            for name, v in self._flat_vars(obj).items():
                if name in values:
                    v.set_value(jnp.asarray(np.asarray(values[name], dtype)))
                elif hasattr(v, "get_value") and np.issubdtype(np.asarray(v.get_value()).dtype, np.floating):
                    v.set_value(jnp.asarray(np.asarray(v.get_value(), dtype)))
        return obj

    def _flat_vars(self, obj: Any) -> dict[str, Any]:
        from flax import nnx

        return self._flat(nnx.state(obj))

    def call(self, obj, x, dy, training, dtype):  # type: ignore[no-untyped-def]
        from flax import nnx

        with _x64(dtype):
            obj.train() if training else obj.eval()
            graphdef, params, rest = nnx.split(obj, nnx.Param, ...)

            def f(p: Any, other: Any, xx: Any) -> Any:
                m = nnx.merge(graphdef, p, other)
                return m(xx), nnx.state(m, nnx.Not(nnx.Param))

            y, dx, dparams, new_rest = _jax_call(self._fns, (id(obj), training), f, params, rest, x, dy, dtype)
            grads = {k: _value(v) for k, v in self._flat(dparams).items()} if dy is not None else {}
            state = {k: _value(v) for k, v in self._flat(new_rest).items()}
            return _as_array(y, "its __call__"), dx, grads, state


def _value(v: Any) -> np.ndarray:
    return np.asarray(v.get_value() if hasattr(v, "get_value") else v)


class _KerasBackend(_Backend):
    framework = "keras"
    reuse = True
    _paths: list[str] | None = None

    def make(self, dtype: str) -> Any:
        import keras

        if keras.backend.backend() != "tensorflow":
            raise RuntimeError(
                f"verify runs Keras targets on the TensorFlow backend; this is {keras.backend.backend()}"
            )
        previous = keras.config.floatx(), keras.config.dtype_policy()
        keras.config.set_floatx(dtype)  # layers built here take the global dtype policy
        keras.config.set_dtype_policy(dtype)
        try:
            layer = self.factory(**self.init_kwargs)
            if not isinstance(layer, keras.layers.Layer):
                raise TypeError(f"the factory returned a {type(layer).__name__}, not a keras Layer")
            if self.channels is None:
                self.channels = self.hint_channels(layer)
            if self.channels is None:
                raise ValueError("cannot tell the channel count of a Keras layer before it is built; pass channels")
            n, c, h, w = _sample_shape(self.channels)
            shape = (n, h, w, c) if self.data_format == "channels_last" else (n, c, h, w)
            layer(np.zeros(shape, dtype))
        finally:
            keras.config.set_floatx(previous[0])
            keras.config.set_dtype_policy(previous[1])
        return layer

    def _named(self, obj: Any) -> list[tuple[str, Any]]:
        """(name, variable): the names the first instance had, as every new instance gets fresh unique paths."""
        if self._paths is None:
            self._paths = [w.path for w in obj.weights]
        return list(zip(self._paths, obj.weights, strict=True))

    def tensors(self, obj: Any) -> tuple[list[Tensor], list[str]]:
        out, ignored = [], []
        for name, w in self._named(obj):
            if "float" in str(w.dtype):
                out.append(Tensor(name, tuple(w.shape), bool(w.trainable)))
            else:
                ignored.append(name)
        return out, ignored

    def assign(self, obj: Any, values: Mapping[str, np.ndarray], dtype: str) -> Any:
        for name, w in self._named(obj):
            if name in values:
                w.assign(np.asarray(values[name], dtype=str(w.dtype)))
        return obj

    def call(self, obj, x, dy, training, dtype):  # type: ignore[no-untyped-def]
        import tensorflow as tf

        xt = tf.constant(np.asarray(x, dtype))
        with tf.GradientTape() as tape:
            tape.watch(xt)
            y = obj(xt, training=training)
        out = _as_array(y, "its call")
        named = self._named(obj)
        state = {n: np.asarray(w.numpy()) for n, w in named if not w.trainable and "float" in str(w.dtype)}
        if dy is None:
            return out, None, {}, state
        trainable = [(n, w) for n, w in named if w.trainable]
        got = tape.gradient(y, [xt, *(w for _, w in trainable)], output_gradients=tf.constant(np.asarray(dy, dtype)))
        grads = {
            n: (np.zeros(tuple(w.shape)) if g is None else np.asarray(g))
            for (n, w), g in zip(trainable, got[1:], strict=True)
        }
        dx = np.zeros(x.shape) if got[0] is None else np.asarray(got[0])
        return out, dx, grads, state


def _backend(framework: str, factory: Callable[..., Any], init_kwargs: Mapping[str, Any]) -> _Backend:
    if framework == "torch":
        return _TorchBackend(factory, init_kwargs)
    if framework == "keras":
        return _KerasBackend(factory, init_kwargs)
    from flax import linen, nnx

    if isinstance(factory, type):
        is_nnx = issubclass(factory, nnx.Module)
        is_linen = issubclass(factory, linen.Module)
    else:  # a function: look at what it returns
        probe = _NNXBackend(factory, init_kwargs).make("float32")
        is_nnx, is_linen = isinstance(probe, nnx.Module), isinstance(probe, linen.Module)
    if is_nnx:
        return _NNXBackend(factory, init_kwargs)
    if is_linen:
        return _LinenBackend(factory, init_kwargs)
    raise TypeError(f"{getattr(factory, '__name__', factory)} is neither a Flax linen nor an NNX module")


# ----------------------------------------------------------------------------- structure


@dataclasses.dataclass
class Structure:
    """What the target's tensors say: the bindings, the channel count and what cannot be bound."""

    channels: int | None
    bindings: dict[str, Binding]
    problems: list[str]
    notes: list[str] = dataclasses.field(default_factory=list)
    ignored: list[str] = dataclasses.field(default_factory=list)

    @property
    def kind(self) -> str | None:
        """``mlp`` (SE, or CBAM without its spatial half), ``cbam``, ``eca`` or None."""
        has = set(self.bindings)
        mlp = {"fc1.weight", "fc2.weight"} <= has
        if mlp and "spatial.conv.weight" in has:
            return "cbam"
        if mlp and not has & {"conv.weight", "spatial.conv.weight"}:
            return "mlp"
        if "conv.weight" in has and not has & {"fc1.weight", "fc2.weight", "spatial.conv.weight"}:
            return "eca"
        return None

    def shape(self, role: str) -> tuple[int, ...]:
        return self.bindings[role].canonical_shape


def _split_name(name: str) -> list[str]:
    return name.replace("/", ".").split(".")


def _auto(tensors: Sequence[Tensor], framework: str, channels: int | None) -> Structure:
    """Bind tensors by layer structure and shape (SPEC.md section 7 gives the layouts)."""
    layout = "torch" if framework == "torch" else framework
    groups: dict[str, dict[str, Tensor]] = {}
    for t in tensors:
        parts = _split_name(t.name)
        if framework == "flax" and parts[0] in ("params", "batch_stats") and len(parts) > 1:
            parts = parts[1:]
        groups.setdefault(".".join(parts[:-1]), {})[parts[-1]] = t
    problems: list[str] = []
    dense: list[tuple[Tensor, Tensor | None, tuple[int, int]]] = []  # weight, bias, canonical (out, in)
    spatial: list[tuple[Tensor, Tensor | None]] = []
    eca: list[tuple[Tensor, Tensor | None]] = []
    bns: list[dict[str, Tensor]] = []
    for group, leaves in groups.items():
        lower = {k.lower(): t for k, t in leaves.items()}
        if any(k in _MEAN_LEAVES or k in _VAR_LEAVES for k in lower) or any(k in ("gamma", "scale") for k in lower):
            bn: dict[str, Tensor] = {}
            stray: list[str] = []
            for k, t in lower.items():
                (bn.__setitem__(_BN_LEAVES[k], t) if k in _BN_LEAVES else stray.append(t.name))
            bns.append(bn)
            if stray:
                problems.append(
                    f"{', '.join(stray)} sit beside batch-norm statistics and have no canonical counterpart"
                )
            continue
        biases = [t for k, t in lower.items() if k in _BIAS_LEAVES and len(t.shape) == 1]
        weights = [t for t in leaves.values() if t not in biases]
        if len(weights) != 1 or len(biases) > 1:
            names = ", ".join(f"{t.name} {t.shape}" for t in leaves.values())
            problems.append(f"cannot tell the weight from the bias in {group or 'the top level'}: {names}")
            continue
        (w,), b = weights, (biases[0] if biases else None)
        if len(weights) == 1 and not biases and len(w.shape) == 1 and len(leaves) == 1:
            eca.append((w, None))  # a bare (k,) kernel
            continue
        shape = w.shape
        if len(shape) == 2:
            dense.append((w, b, shape if layout == "torch" else shape[::-1]))
        elif len(shape) == 4:
            o, i, kh, kw = shape if layout == "torch" else (shape[3], shape[2], shape[0], shape[1])
            is_spatial = o == 1 and i in (1, 2) and (channels is None or channels not in (1, 2))
            if kh == kw == 1 and not is_spatial:
                dense.append((w, b, (o, i)))
            else:
                spatial.append((w, b))
        elif len(shape) == 3:
            o, i, _ = shape if layout == "torch" else shape[::-1]
            if o == i == 1:
                eca.append((w, b))
            else:
                problems.append(
                    f"{w.name} is a 1-D convolution kernel of shape {shape} ({i} input and {o} output maps): "
                    "ECA's convolves the channel descriptor as one 1-channel signal"
                )
        else:
            problems.append(f"{w.name} has shape {shape}, which no SE, CBAM or ECA tensor has")
    bindings: dict[str, Binding] = {}
    notes: list[str] = []

    def bind(role: str, t: Tensor | None) -> None:
        if t is not None:
            bindings[role] = _layout_binding(role, t, layout)

    if len(dense) == 2:
        (a, _, (ao, ai)), (b, _, (bo, bi)) = dense
        if channels is None and ai == bo and ao == bi:
            channels = ai
        orders = [(x, y) for x, y in ((0, 1), (1, 0)) if dense[x][2][1] == channels == dense[y][2][0]]
        orders = [(x, y) for x, y in orders if dense[x][2][0] == dense[y][2][1]]
        if not orders:
            problems.append(
                f"the fully connected layers {a.name} and {b.name} map {ai} -> {ao} and {bi} -> {bo} features: "
                f"SE's MLP maps {channels} channels to a hidden width and back"
            )
        else:
            if len(orders) == 2:
                notes.append(
                    f"{a.name} and {b.name} both map {channels} -> {channels} features; "
                    f"taking {a.name} as fc1 because it comes first"
                )
            x, y = orders[0]
            for role, (w, bias, _) in (("fc1", dense[x]), ("fc2", dense[y])):
                bind(f"{role}.weight", w)
                bind(f"{role}.bias", bias)
    elif len(dense) == 1:
        problems.append(
            f"it has one fully connected layer ({dense[0][0].name}, {dense[0][0].shape}); "
            "SE and CBAM have two (channels -> hidden -> channels)"
        )
    elif len(dense) > 2:
        names = ", ".join(w.name for w, _, _ in dense)
        problems.append(f"it has {len(dense)} fully connected layers ({names}); SE and CBAM have two")
    for role, found in (("spatial.conv", spatial), ("conv", eca)):
        if len(found) == 1:
            bind(f"{role}.weight", found[0][0])
            bind(f"{role}.bias", found[0][1])
        elif found:
            what = "2-D" if role == "spatial.conv" else "1-D"
            names = ", ".join(f"{w.name} {w.shape}" for w, _ in found)
            problems.append(f"it has {len(found)} {what} convolutions ({names}); the spec's modules have at most one")
    if len(bns) == 1:
        for leaf, t in bns[0].items():
            bind(f"spatial.bn.{leaf}", t)
    elif len(bns) > 1:
        problems.append(f"it has {len(bns)} batch norms; CBAM has one, after its spatial convolution")
    return Structure(channels, bindings, problems, notes)


def _from_names(
    tensors: Sequence[Tensor], names: Mapping[str, tuple[str, str]], what: str, extras: Iterable[str] = ()
) -> tuple[dict[str, tuple[str, Tensor]], list[str]]:
    """their name -> (role, tensor) for a name table; problems for tensors the table does not know."""
    by_name = {t.name: t for t in tensors}
    found, problems = {}, []
    for theirs, (role, _) in names.items():
        if theirs in by_name:
            found[theirs] = (role, by_name[theirs])
    stray = [t.name for t in tensors if t.name not in names and t.name not in extras]
    if stray:
        problems.append(f"{', '.join(stray)} {'has' if len(stray) == 1 else 'have'} no place in {what}")
    return found, problems


def _check_structure(s: Structure) -> None:
    """Shape checks every binding method shares; appends sentences to ``s.problems``."""
    b, c = s.bindings, s.channels
    if "fc1.weight" in b and "fc2.weight" in b:
        (h, c1), (c2, h2) = s.shape("fc1.weight"), s.shape("fc2.weight")
        if c is None and c1 == c2:
            s.channels = c = c1
        if not (c1 == c2 == c and h == h2):
            s.problems.append(
                f"fc1 maps {c1} -> {h} features and fc2 maps {h2} -> {c2}: "
                f"the spec's MLP maps {c} channels to a hidden width and back"
            )
        has = ["fc1.bias" in b, "fc2.bias" in b]
        if has[0] != has[1]:
            with_bias = "fc1" if has[0] else "fc2"
            s.problems.append(
                f"{with_bias} has a bias and {'fc2' if has[0] else 'fc1'} has none: "
                "the spec's MLP has biases on both layers or on neither"
            )
        for role, n in (("fc1.bias", h), ("fc2.bias", c2)):
            if role in b and s.shape(role) != (n,):
                s.problems.append(f"{b[role].name} has shape {b[role].shape}; {role} should hold {n} values")
    elif "fc1.weight" in b or "fc2.weight" in b:
        s.problems.append("only one of the MLP's two fully connected layers could be bound")
    if "spatial.conv.weight" in b:
        shape = s.shape("spatial.conv.weight")
        o, i, kh, kw = shape
        order = " and ".join(CBAMConfig(channels=1).spatial_pool_order)
        if i != 2:
            s.problems.append(
                f"the spatial conv kernel has shape {shape}: CBAM's takes 2 input maps ({order}), this one takes {i}"
            )
        if o != 1:
            s.problems.append(f"the spatial conv kernel has shape {shape}: CBAM's gives 1 attention map, this one {o}")
        if kh != kw or kh % 2 == 0:
            s.problems.append(
                f"the spatial conv kernel is {kh} x {kw}: the spec's is square with an odd size, padded by (k - 1) / 2"
            )
    if "conv.weight" in b and s.shape("conv.weight")[0] % 2 == 0:
        s.problems.append(f"ECA's kernel size is odd; {b['conv.weight'].name} has {s.shape('conv.weight')[0]} taps")
    for role in (
        "spatial.conv.bias",
        "conv.bias",
        *(f"spatial.bn.{k}" for k in ("weight", "bias", "running_mean", "running_var")),
    ):
        if role in b and s.shape(role) != (1,):
            s.problems.append(
                f"{b[role].name} has shape {b[role].shape}: the spec's {role} holds one value "
                f"({'one map' if 'bn' in role else 'one output'})"
            )
    bn = [k for k in ("weight", "bias", "running_mean", "running_var") if f"spatial.bn.{k}" in b]
    if bn and len(bn) != 4:
        missing = sorted({"weight", "bias", "running_mean", "running_var"} - set(bn))
        s.problems.append(f"the batch norm lacks {', '.join(missing)}: the spec's is affine with running statistics")
    if bn and "spatial.conv.weight" not in b:
        s.problems.append("it has a batch norm but no spatial convolution for it to follow")


def _structure(
    tensors: Sequence[Tensor], ignored: list[str], framework: str, mapping: str, module: str, channels: int | None
) -> Structure:
    if mapping == "auto":
        s = _auto(tensors, framework, channels)
    elif mapping.endswith(".json") or Path(mapping).is_file():
        s = _from_map_file(tensors, framework, mapping, channels)
    else:
        s = _from_dialect(tensors, framework, mapping, module, channels)
    s.ignored = ignored + s.ignored
    _check_structure(s)
    return s


def _from_dialect(
    tensors: Sequence[Tensor], framework: str, dialect: str, module: str, channels: int | None
) -> Structure:
    table = THIRD_PARTY.get((module, dialect))
    if table is None:
        known = [src for m, src in THIRD_PARTY if m == module]
        raise ValueError(
            f"`mapping` must be 'auto', a JSON map file or a {module.upper()} dialect "
            f"({', '.join(map(repr, known))}). Received: mapping={dialect!r}"
        )
    if framework != "torch":
        raise ValueError(f"The named dialects describe PyTorch state dicts; for {framework} use 'auto' or a map file")
    names = {theirs: (_role(canonical), canonical) for canonical, theirs in table.names.items()}
    found, problems = _from_names(tensors, names, f"the {dialect!r} layout ({table.description})", table.extras)
    bindings = {}
    for theirs, (role, t) in found.items():
        kind = ROLE_KINDS[role]
        to, back = table.transforms.get(kind, (_same, _same))
        bindings[role] = Binding(role, theirs, t.shape, tuple(back(np.zeros(t.shape)).shape), to, back)
    return Structure(channels, bindings, problems, ignored=[n for n in table.extras if n in {t.name for t in tensors}])


def _same(a: np.ndarray) -> np.ndarray:
    return a


def _from_map_file(tensors: Sequence[Tensor], framework: str, path: str, channels: int | None) -> Structure:
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"Could not read the map file {path!r}: {e}") from None
    if not isinstance(raw, dict):
        raise ValueError(f'The map file {path!r} must hold a JSON object {{"their.name": "canonical.name"}}')
    names: dict[str, tuple[str, str]] = {}
    for theirs, entry in raw.items():
        canonical, layout = (
            (entry, framework) if isinstance(entry, str) else (entry.get("canonical"), entry.get("layout", framework))
        )
        role = _role(str(canonical))
        if role not in ROLE_KINDS:
            raise ValueError(
                f"The map file names {canonical!r} for {theirs!r}, which is no canonical name. Expected one of {', '.join(ROLE_KINDS)}"
            )
        if layout not in FRAMEWORKS:
            raise ValueError(
                f"The map file gives layout {layout!r} for {theirs!r}. Expected one of {', '.join(FRAMEWORKS)}"
            )
        names[theirs] = (role, layout)
    found, problems = _from_names(tensors, names, f"the map file {path}")
    missing = [n for n in names if n not in found]
    if missing:
        problems.append(f"the map file names {', '.join(missing)}, which the target does not have")
    bindings = {role: _layout_binding(role, t, names[theirs][1]) for theirs, (role, t) in found.items()}
    return Structure(channels, bindings, problems)


# ----------------------------------------------------------------------------- configurations


def _rd_knobs(channels: int, hidden: int) -> dict[str, Any]:
    """Width knobs that give ``hidden`` for ``channels``: the default first, then the presets' roundings."""
    options: list[dict[str, Any]] = [
        {},
        {"rd_round": "nearest"},
        {"rd_round": "nearest", "rd_divisor": 8},
        {"rd_divisor": 8},
    ]
    for ratio in (1 / 8, 1 / 4, 1 / 2, 1 / 32, 1.0):
        options += [{"rd_ratio": ratio}, {"rd_ratio": ratio, "rd_round": "nearest"}]
    for knobs in options:
        if SEConfig(channels=channels, **knobs).hidden == hidden:
            return knobs
    return {"rd_channels": hidden}


def _structural_knobs(module: str, s: Structure) -> dict[str, Any]:
    """The knobs the parameter shapes fix for ``module`` (sizes, biases, BN presence)."""
    b, c = s.bindings, s.channels
    assert c is not None
    if module == "eca":
        k = s.shape("conv.weight")[0]
        return {"kernel_size": None if ECAConfig(channels=c).adaptive_kernel_size == k else k, "bias": "conv.bias" in b}
    knobs = _rd_knobs(c, s.shape("fc1.weight")[0])
    if module == "se":
        return {**knobs, "bias": "fc1.bias" in b}
    knobs["mlp_bias"] = "fc1.bias" in b
    knobs["spatial"] = "spatial.conv.weight" in b
    if knobs["spatial"]:
        knobs["spatial_kernel_size"] = s.shape("spatial.conv.weight")[-1]
        knobs["spatial_bias"] = "spatial.conv.bias" in b
        knobs["spatial_norm"] = "spatial.bn.weight" in b
    return knobs


def _why_not(module: str, s: Structure) -> list[str]:
    """Sentences saying why the structure cannot be ``module``; empty when it can."""
    kind, name = s.kind, _NAMES[module]
    if s.problems:
        return list(s.problems)
    if s.channels is None:
        return ["the channel count could not be told from its arguments or parameter shapes; pass channels"]
    if kind is None:
        have = ", ".join(f"{b.name} {b.shape}" for b in s.bindings.values()) or "no tensors the spec knows"
        return [f"its tensors ({have}) do not form SE, CBAM or ECA"]
    if module == "eca" and kind != "eca":
        other = "SE" if kind == "mlp" else "CBAM"
        extra = "" if kind == "mlp" else " and a spatial convolution"
        return [f"this is {other}, not ECA: it has two fully connected layers{extra} and no 1-D convolution"]
    if module in ("se", "cbam") and kind == "eca":
        k = s.shape("conv.weight")[0]
        return [
            f"this is ECA, not {name}: its weight is a 1-D convolution over channels ({k} taps), "
            "and it has no fully connected layers"
        ]
    if module == "se" and kind == "cbam":
        conv = s.bindings["spatial.conv.weight"]
        bn = " and a batch norm" if "spatial.bn.weight" in s.bindings else ""
        return [
            f"this is CBAM, not SE: besides the two fully connected layers it has a spatial convolution ({conv.name} {conv.shape}){bn}"
        ]
    return []


def _knob_space(cfg: Config) -> list[tuple[str, tuple[Any, ...]]]:
    """The discrete knobs the search varies for ``cfg`` (its structure fixed)."""
    if isinstance(cfg, ECAConfig):
        return [("padding", ECA_PADDINGS), ("gate", GATES)]
    space: list[tuple[str, tuple[Any, ...]]] = [("gate", GATES), ("act", ACTIVATIONS)]
    if isinstance(cfg, CBAMConfig):
        subsets = [p for n in (2, 1, 3, 4) for p in itertools.combinations(SPATIAL_POOLS, n)]
        space.append(("pool_types", tuple(subsets)))
        if cfg.spatial:
            space.append(("spatial_pool_order", (("max", "mean"), ("mean", "max"))))
        if cfg.has_batch_norm:
            space.append(("bn_momentum", (0.01, 0.1, 0.001, 0.003, 0.03, 0.3, 0.5, 0.9, 0.99)))
            space.append(("bn_eps", (1e-5, 1e-3, 1e-4, 1e-6, 1e-2)))
    return space


def _effective(cfg: Config) -> dict[str, Any]:
    """The knobs that change the computation, sizes as sizes (two configs with equal dicts compute the same)."""
    d = cfg.to_dict()
    for k in ("rd_ratio", "rd_channels", "rd_divisor", "rd_round", "kernel_size", "gamma", "beta"):
        d.pop(k, None)
    if isinstance(cfg, (SEConfig, CBAMConfig)):
        d["hidden"] = cfg.hidden
    if isinstance(cfg, ECAConfig):
        d["kernel_size"] = cfg.effective_kernel_size
    if isinstance(cfg, CBAMConfig):
        d["pool_types"] = sorted(cfg.pool_types)  # the MLP outputs are summed: order is immaterial
        if not cfg.spatial:
            d = {k: v for k, v in d.items() if not k.startswith(("spatial_", "bn_"))}
        elif not cfg.spatial_norm:
            d = {k: v for k, v in d.items() if not k.startswith("bn_")}
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}


def _differences(cfg: Config, other: Config) -> list[str]:
    """``knob=value`` for each effective difference of ``cfg`` from ``other``."""
    mine, theirs = _effective(cfg), _effective(other)
    out = []
    for k, v in mine.items():
        if theirs.get(k, v) == v and k in theirs:
            continue
        if k == "hidden":
            rd = {n: getattr(cfg, n) for n in ("rd_ratio", "rd_channels", "rd_divisor", "rd_round")}
            given = ", ".join(f"{n}={x!r}" for n, x in rd.items() if x != getattr(other, n))
            out.append(f"hidden width {v}{f' ({given})' if given else ''} instead of {theirs.get(k)}")
        elif k == "kernel_size":
            out.append(f"kernel_size={v} instead of {theirs.get(k)}")
        else:
            out.append(f"{k}={v!r}" + (f" instead of {theirs[k]!r}" if k in theirs else ""))
    return out


def _preset_configs(cfg: Config) -> list[tuple[str, Config]]:
    out = []
    for name in type(cfg).presets:
        try:
            out.append((name, type(cfg).preset(name, channels=cfg.channels)))
        except ValueError:  # torchvision takes the width explicitly: it names an SE whose width no ratio gives
            width = getattr(cfg, "rd_channels", None)
            if width is not None:
                out.append((name, type(cfg).preset(name, channels=cfg.channels, rd_channels=width)))
    return out


def describe(cfg: Config) -> str:
    """``CBAM preset 'timm'``, ``SE preset 'official' with gate='hard_sigmoid'``: the nearest preset and the rest."""
    name = _NAMES[cfg.module]
    ranked = sorted(_preset_configs(cfg), key=lambda p: len(_differences(cfg, p[1])))
    preset, other = ranked[0]
    diffs = _differences(cfg, other)
    return f"{name} preset {preset!r}" + (f" with {', '.join(diffs)}" if diffs else "")


def _equivalent(a: Config, b: Config) -> bool:
    return a.module == b.module and _effective(a) == _effective(b)


# ----------------------------------------------------------------------------- the adapter


class ThirdPartyAdapter(Adapter):
    """A third-party target behind the conformance :class:`Adapter` interface, so that
    :func:`conformance.check_case` does the comparing. Canonical parameters go in through
    the bindings; gradients and running statistics come back through them."""

    name = "target"
    grad_dtypes = ("float64", "float32")

    def __init__(
        self,
        backend: _Backend,
        bindings: Mapping[str, Binding],
        label: str,
        dtypes: Sequence[str],
        dialect: tuple[str, str] | None = None,
    ):
        self.backend, self.bindings, self.name = backend, dict(bindings), label  # type: ignore[misc]
        self.dialect = dialect  # (module, name): that module's weights go in as export_state_dict writes them
        self.dtypes = tuple(dtypes)  # type: ignore[misc]
        self.data_formats = (backend.data_format,)  # type: ignore[misc]

    def build(self, cfg: Config, dtype: str) -> Any:
        return {"obj": self.backend.instance(dtype), "cfg": cfg}

    def run(self, *args: Any, **kwargs: Any) -> Outputs:
        try:
            return super().run(*args, **kwargs)
        except Exception as e:  # the runner reports the last line: make it the error, not JAX's note
            if hasattr(e, "__notes__"):
                del e.__notes__
            raise

    def load(self, module: Any, cfg: Config, params: dict[str, np.ndarray], dtype: str) -> Any:
        names = {b.name for b in self.bindings.values()}
        if self.dialect is not None and self.dialect[0] == cfg.module:
            exported = export_state_dict(params, self.dialect[1], cfg)  # what a user of that dialect would load
            values = {k: v for k, v in exported.items() if k in names}
        else:
            values = {
                self.bindings[_role(k)].name: self.bindings[_role(k)].to_theirs(np.asarray(v))
                for k, v in params.items()
            }
        return {**module, "obj": self.backend.assign(module["obj"], values, dtype)}

    def evaluate(self, module, x, dy, *, training, data_format, dtype):  # type: ignore[no-untyped-def]
        cfg = module["cfg"]
        y, dx, grads, state = self.backend.call(module["obj"], x, dy, training, dtype)
        layout = param_layout(cfg)
        out = Outputs(np.asarray(y, np.float64), None if dx is None else np.asarray(dx, np.float64))
        for canonical, spec in layout.items():
            b = self.bindings[_role(canonical)]
            if spec.trainable and dy is not None and b.name in grads:
                out.grads[canonical] = np.asarray(b.to_canonical(np.asarray(grads[b.name])), np.float64)
            if not spec.trainable and training and b.name in state:
                out.state[canonical] = np.asarray(b.to_canonical(np.asarray(state[b.name])), np.float64)
        return out


# ----------------------------------------------------------------------------- identification


@dataclasses.dataclass
class _Trial:
    cfg: Config
    comparisons: list[Comparison]
    score: float  # summed relative L2 error: what the coordinate search descends
    error: str | None = None

    @property
    def passed(self) -> bool:
        return self.error is None and all(c.ok for c in self.comparisons)

    @property
    def worst(self) -> float:
        return max((c.error_ratio for c in self.comparisons), default=math.inf)

    @property
    def worst_comparison(self) -> Comparison | None:
        return max(self.comparisons, key=lambda c: c.error_ratio, default=None)


def _rel(a: np.ndarray | None, r: np.ndarray) -> float:
    if a is None or np.shape(a) != np.shape(r):
        return math.inf
    err = float(np.linalg.norm(np.nan_to_num(np.asarray(a, np.float64) - r, nan=1e300)))
    return err / (float(np.linalg.norm(r)) + 1e-300)


def _cases(cfg: Config, seed: int, dtype: str, data_format: str, *, big_batch: bool = True) -> list[Case]:
    """The cases a configuration is checked on: the default case per mode, plus (eval) a larger batch.

    The larger batch matters: with a batch of two, every pre-activation of a small bottleneck
    may be positive, and a leaky ReLU would pass for a ReLU.
    """
    out = [
        make_case(cfg, seed=seed, dtype=dtype, training=training, data_format=data_format)
        for training in ((False, True) if cfg.has_batch_norm else (False,))
    ]
    if big_batch:
        _, c, h, w = out[0].x.shape if data_format == "channels_first" else np.moveaxis(out[0].x, 3, 1).shape
        n = next(v for v in (8, 9, 10, 11) if v not in (c, getattr(cfg, "hidden", 0)))
        batch = make_case(cfg, seed=seed + 1, dtype=dtype, shape=(n, c, h, w), data_format=data_format, name="batch")
        out.append(_straddle(batch))
    return out


def _straddle(case: Case) -> Case:
    """Shift fc1's bias so that every hidden unit is negative for about half the batch and pools.

    Then the activation is exercised on both sides of zero, and a leaky ReLU cannot pass for a ReLU.
    """
    cfg = case.cfg
    prefix = "channel." if isinstance(cfg, CBAMConfig) else ""
    if isinstance(cfg, ECAConfig) or f"{prefix}fc1.bias" not in case.params:
        return case
    x = case.x if case.data_format == "channels_first" else case.x.transpose(0, 3, 1, 2)
    pools = cfg.pool_types if isinstance(cfg, CBAMConfig) else ("avg",)
    z = np.concatenate([POOLS[p][0](x, (2, 3))[:, :, 0, 0] for p in pools])  # (pools * N, C)
    params = dict(case.params)
    pre = np.sort(z @ params[f"{prefix}fc1.weight"].T + params[f"{prefix}fc1.bias"], axis=0)
    k = len(pre) // 2  # halfway between two neighbours, never on the kink of a ReLU
    params[f"{prefix}fc1.bias"] = round_to_dtype(params[f"{prefix}fc1.bias"] - (pre[k - 1] + pre[k]) / 2, case.dtype)
    return dataclasses.replace(case, params=params)


class _Search:
    """Forward-only trials of candidate configs; the target runs once per (layout, case)."""

    def __init__(self, adapter: ThirdPartyAdapter, dtype: str, seed: int):
        self.adapter, self.dtype, self.seed = adapter, dtype, seed
        self.trials: list[_Trial] = []
        self._seen: set[str] = set()
        self._runs: dict[Any, list[tuple[Case, Any]]] = {}

    def _target_runs(self, cfg: Config) -> list[tuple[Case, Any]]:
        """The target's outputs on ``cfg``'s cases; the same for every config with the same layout."""
        key = (tuple((k, s.shape) for k, s in param_layout(cfg).items()), cfg.has_batch_norm)
        if key not in self._runs:
            runs = []
            for case in _cases(cfg, self.seed, self.dtype, self.adapter.data_formats[0]):
                try:
                    got: Any = self.adapter.run(
                        cfg,
                        case.params,
                        case.x,
                        None,
                        training=case.training,
                        data_format=case.data_format,
                        dtype=self.dtype,
                    )
                except Exception as e:
                    got = _last_line(e)
                runs.append((case, got))
            self._runs[key] = runs
        return self._runs[key]

    def trial(self, cfg: Config) -> _Trial | None:
        if cfg.to_json() in self._seen:
            return None
        self._seen.add(cfg.to_json())
        comparisons: list[Comparison] = []
        score = 0.0
        for case, got in self._target_runs(cfg):
            if isinstance(got, str):
                t = _Trial(cfg, [], math.inf, got)
                break
            want = reference_outputs(dataclasses.replace(case, cfg=cfg), with_grads=False)
            comparisons += compare_outputs(got, want, self.dtype, self.seed)
            score += _rel(got.y, want.y) + sum(_rel(got.state.get(k), v) for k, v in want.state.items())
        else:
            t = _Trial(cfg, comparisons, score)
        self.trials.append(t)
        return t

    def run(self, start: Sequence[Config]) -> _Trial | None:
        """Try ``start`` (the structural default, then the presets), then descend knob by knob."""
        best: _Trial | None = None
        for cfg in start:
            t = self.trial(cfg)
            if t is not None and t.passed:
                return t
            if t is not None and (best is None or t.score < best.score):
                best = t
        if best is None or best.error is not None:
            return None
        for _ in range(3):
            improved = False
            for knob, values in _knob_space(best.cfg):
                for value in values:
                    if len(self.trials) >= MAX_CANDIDATES:
                        return None
                    t = self.trial(best.cfg.replace(**{knob: value}))
                    if t is None:
                        continue
                    if t.passed:
                        return t
                    if t.score < best.score * (1 - 1e-9):
                        best, improved = t, True
            if not improved:
                return None
        return None

    def closest(self) -> _Trial | None:
        ok = [t for t in self.trials if t.error is None]
        return min(ok, key=lambda t: (t.worst, t.score), default=None)


def _start_configs(module: str, s: Structure) -> list[Config]:
    assert s.channels is not None
    fixed = _structural_knobs(module, s)
    base = make_config(module, s.channels, **fixed)
    out = [base]
    for _, preset in _preset_configs(base):
        knobs = {k: v for k, v in dataclasses.asdict(preset).items() if k != "channels" and k not in fixed}
        knobs = {k: v for k, v in knobs.items() if not k.startswith("rd_")}  # the shapes fix the width
        cfg = make_config(module, s.channels, **fixed, **knobs)
        if not any(_equivalent(cfg, other) for other in out):
            out.append(cfg)
    return out


# ----------------------------------------------------------------------------- the report


@dataclasses.dataclass
class VerifyReport:
    """The verdict on one target.

    ``passed``: the target matches a configuration of the requested module (the expected one,
    when ``expect`` was given) in output, input gradient, every parameter gradient and running
    statistics. ``identified``: a description of the configuration it matches (of whatever
    module), or None. ``config``: that configuration. ``diagnosis``: sentences.
    ``comparisons``: every per-tensor comparison of the final check (``case_reports`` groups
    them by case).
    """

    target: str
    module: str
    framework: str
    passed: bool
    identified: str | None
    config: Config | None
    diagnosis: list[str]
    comparisons: list[Comparison]
    case_reports: list[CaseReport] = dataclasses.field(default_factory=list)
    bindings: dict[str, str] = dataclasses.field(default_factory=dict)  # their name -> canonical name
    mapping: str = "auto"
    channels: int | None = None

    def to_dict(self) -> dict[str, Any]:
        def num(v: Any) -> Any:
            return None if isinstance(v, float) and not math.isfinite(v) else v

        return {
            "target": self.target,
            "module": self.module,
            "framework": self.framework,
            "mapping": self.mapping,
            "channels": self.channels,
            "passed": self.passed,
            "identified": self.identified,
            "config": None if self.config is None else self.config.to_dict(),
            "diagnosis": self.diagnosis,
            "bindings": self.bindings,
            "cases": [
                {
                    "case": r.case.id,
                    "passed": r.passed,
                    "error": r.error,
                    "comparisons": [
                        {**{k: num(v) for k, v in dataclasses.asdict(c).items()}, "message": c.message}
                        for c in r.comparisons
                    ],
                }
                for r in self.case_reports
            ],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_text(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        head = f"{verdict}: {self.target} as {_NAMES[self.module]} ({self.framework}"
        head += f", {self.channels} channels)" if self.channels else ")"
        lines = [head, f"identified: {self.identified or 'nothing'}"]
        if self.bindings:
            lines.append(f"parameters (mapping {self.mapping!r}):")
            width = max(map(len, self.bindings))
            lines += [f"  {k:<{width}}  ->  {v}" for k, v in self.bindings.items()]
        lines.append("diagnosis:")
        lines += [f"  - {d}" for d in self.diagnosis]
        if self.case_reports:
            lines.append(f"checks (as {describe(self.config)}):" if self.config is not None else "checks:")
            for r in self.case_reports:
                if r.error:
                    lines.append(f"  {r.case.id}: raised {r.error}")
                    continue
                worst = max(r.comparisons, key=lambda c: c.error_ratio)
                status = "ok" if r.passed else "FAIL"
                lines.append(
                    f"  {r.case.id}: {status}, {len(r.comparisons)} tensors, worst {worst.name} at "
                    f"{worst.error_ratio:.3g}x the tolerance"
                )
                lines += [f"    {c.message}" for c in r.comparisons if not c.ok]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_text()


def _float32_sized(reports: Sequence[CaseReport]) -> bool:
    """True when only float64 cases fail, and every failing float64 tensor would pass at float32 tolerance."""
    failing = [r for r in reports if not r.passed]
    if not failing or any(r.case.dtype != "float64" or r.error for r in failing):
        return False
    return all(
        cmp.error_ratio <= widening("float64", "float32", cmp.rule) for r in failing for cmp in r.comparisons
    )


def _smoke(backend: _Backend, obj: Any, channels: int, seed: int) -> list[str]:
    """Call the target with its own weights; on an error, once more with a larger input to show a shape change."""
    rng = np.random.default_rng(seed)
    n, c, h, w = _sample_shape(channels)
    out: list[str] = []
    for hw in ((h, w), (h + 8, w + 8)):
        shape = (n, c, *hw) if backend.data_format == "channels_first" else (n, *hw, c)
        try:
            y = backend.call(obj, rng.normal(size=shape).astype(np.float32), None, False, "float32")[0]
        except Exception as e:
            out.append(f"calling it on an input of shape {shape} raised {_last_line(e)}")
            continue
        if y.shape != shape:
            out.append(
                f"on an input of shape {shape} it returns shape {y.shape}: the output must keep the input's shape"
            )
        break
    return out


def load_target(target: str) -> Callable[..., Any]:
    """``package.module:Factory`` (the attribute may be dotted) -> the factory."""
    if not isinstance(target, str) or target.count(":") != 1:
        raise ValueError(f"`target` must be 'package.module:Factory'. Received: {target!r}")
    module_name, attr = target.split(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(f"Could not import {module_name!r} for target {target!r}: {_last_line(e)}") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"{module_name!r} has no attribute {attr!r} (target {target!r})")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"Target {target!r} is a {type(obj).__name__}, not a class or function")
    return obj  # type: ignore[no-any-return]


def _expected_config(module: str, channels: int, expect: str | Mapping[str, Any] | None) -> Config | None:
    if expect is None:
        return None
    knobs: dict[str, Any] = {"preset": expect} if isinstance(expect, str) else dict(expect)
    preset = knobs.pop("preset", None)
    knobs = {k: tuple(v) if isinstance(v, list) else v for k, v in knobs.items()}
    return make_config(module, channels, preset=preset, **knobs)


def verify(
    target: str,
    *,
    module: str,
    framework: str,
    init_kwargs: Mapping[str, Any] | None = None,
    mapping: str = "auto",
    seed: int = 0,
    channels: int | None = None,
    expect: str | Mapping[str, Any] | None = None,
    data_format: str | None = None,
) -> VerifyReport:
    """Check the implementation ``target`` against ``module``'s spec and identify its variant.

    ``target``: ``package.module:Factory``; ``init_kwargs``: the factory's arguments;
    ``mapping``: ``auto``, a PyTorch dialect of :data:`reference_numpy.THIRD_PARTY` (``timm``,
    ``official``, ...) or a JSON map file; ``channels``: the channel count, when neither the
    arguments nor the parameter shapes tell it; ``expect``: the configuration the target
    claims (a preset name, or knobs with an optional ``"preset"``), which makes the check
    strict; ``data_format``: the layout its forward takes (default: the framework's).
    Mistakes in these arguments raise ``ValueError``; anything wrong with the target itself is
    a failed report.
    """
    if framework not in FRAMEWORKS:
        raise ValueError(
            f"`framework` must be one of {', '.join(map(repr, FRAMEWORKS))}. Received: framework={framework!r}"
        )
    if module not in MODULES:
        raise ValueError(f"`module` must be one of {', '.join(map(repr, MODULES))}. Received: module={module!r}")
    factory = load_target(target)
    label = getattr(factory, "__name__", target)
    diagnosis: list[str] = []

    def fail(sentence: str) -> VerifyReport:
        return VerifyReport(target, module, framework, False, None, None, [*diagnosis, sentence], [], mapping=mapping)

    # 1. instantiate and read its tensors
    try:
        backend = _backend(framework, factory, init_kwargs or {})
    except Exception as e:
        return fail(f"could not tell what kind of module {label} builds: {_last_line(e)}")
    backend.data_format = data_format or backend.data_format
    backend.channels = channels
    try:
        obj = backend.instance("float32")
    except Exception as e:
        kwargs_text = ", ".join(f"{k}={v!r}" for k, v in (init_kwargs or {}).items())
        return fail(f"instantiating {label}({kwargs_text}) raised {_last_line(e)}")
    tensors, ignored = backend.tensors(obj)

    # 2. bind them to canonical tensors; a named mapping that does not fit falls back to shapes
    hint = channels or backend.channels or backend.hint_channels(obj)
    s = _structure(tensors, ignored, backend.framework, mapping, module, hint)
    layout_ok = not (mapping != "auto" and s.problems)
    if not layout_ok:
        by_shape = _structure(tensors, ignored, backend.framework, "auto", module, hint)
        if not by_shape.problems:
            diagnosis += [*s.problems, f"its tensors do not fit the mapping {mapping!r}; bound by their shapes instead"]
            s = by_shape
    if s.channels is None:  # nothing tells: an ECA without a channel argument works with any count
        s.channels = 16
        diagnosis.append("its channel count could not be told from its arguments or parameter shapes; verified with 16")
    c = backend.channels = s.channels
    bindings = {b.name: _canonical(b.role, module) for b in s.bindings.values()}
    bindings.update({n: "(ignored: no canonical counterpart)" for n in s.ignored})
    bindings.update({t.name: f"(unbound) {t.shape}" for t in tensors if t.name not in bindings})

    # 3. does its forward run at all, and in float64?
    dtypes, sentences = _probe(backend, obj, c, seed)
    diagnosis += sentences + s.notes
    dialect = (module, mapping) if layout_ok and (module, mapping) in THIRD_PARTY else None
    adapter = ThirdPartyAdapter(backend, s.bindings, f"{label} ({framework})", dtypes, dialect)

    # 4. which configuration is it?
    why_not = _why_not(module, s)
    diagnosis += why_not
    found, sentences = _identify(module, s, adapter, dtypes[0], seed, requested_possible=not why_not)
    diagnosis += sentences
    common: dict[str, Any] = dict(bindings=bindings, mapping=mapping, channels=c)
    if found is None:
        return VerifyReport(target, module, framework, False, None, None, diagnosis, [], **common)
    cfg, matched = found

    # 5. the full check of that configuration: output, input gradient, parameter gradients, state
    reports = [
        check_case(adapter, case)
        for dtype in dtypes
        for case in _cases(cfg, seed, dtype, backend.data_format, big_batch=dtype == dtypes[0])
    ]
    comparisons = [cmp for r in reports for cmp in r.comparisons]
    full_ok = all(r.passed for r in reports)
    if matched and not full_ok:
        diagnosis += _full_check_failures(reports)
    passed = matched and full_ok and cfg.module == module and layout_ok
    expected = _expected_config(module, c, expect)
    if passed and expected is not None and not _equivalent(cfg, expected):
        passed = False
        differences = ", ".join(_differences(cfg, expected))
        diagnosis.append(f"it was expected to be {describe(expected)}, but differs from it in {differences}")
    if passed:
        what = (
            ", every parameter gradient and the running statistics"
            if cfg.has_batch_norm
            else " and every parameter gradient"
        )
        diagnosis.append(f"output, input gradient{what} agree in {' and '.join(dtypes)} ({len(reports)} cases)")
    identified = describe(cfg) if matched else None
    return VerifyReport(target, module, framework, passed, identified, cfg, diagnosis, comparisons, reports, **common)


def _probe(backend: _Backend, obj: Any, channels: int, seed: int) -> tuple[list[str], list[str]]:
    """The dtypes to check and sentences: a smoke run with its own weights, then a float64 run."""
    sentences = _smoke(backend, obj, channels, seed)
    if sentences:
        return ["float64", "float32"], sentences
    n, c, h, w = _sample_shape(channels)
    shape = (n, c, h, w) if backend.data_format == "channels_first" else (n, h, w, c)
    try:
        y = backend.call(backend.instance("float64"), np.ones(shape), None, False, "float64")[0]
    except Exception as e:
        return ["float32"], [f"it does not run in float64 ({_last_line(e)}): checked in float32 only"]
    if y.dtype != np.float64:
        return ["float32"], [f"given float64 weights and input it computes in {y.dtype}: checked in float32 only"]
    return ["float64", "float32"], []


def _identify(
    module: str, s: Structure, adapter: ThirdPartyAdapter, dtype: str, seed: int, *, requested_possible: bool
) -> tuple[tuple[Config, bool] | None, list[str]]:
    """Search the requested module, then whatever the structure says it is.

    Returns ((config, matched), sentences): the matching configuration, else the closest one
    of the first module searched, else None.
    """
    order = [module] if requested_possible else []
    if s.kind is not None and not s.problems:
        order += [m for m in {"mlp": ("se", "cbam"), "cbam": ("cbam",), "eca": ("eca",)}[s.kind] if m not in order]
    searches = []
    for m in order:
        if _why_not(m, s):
            continue
        search = _Search(adapter, dtype, seed)
        match = search.run(_start_configs(m, s))
        searches.append((m, search))
        if match is not None:
            return (match.cfg, True), _match_sentences(match.cfg, module)
    if not searches:
        return None, []
    m, first = searches[0]
    name, tried = _NAMES[m], sum(len(sr.trials) for _, sr in searches)
    errors = [t.error for t in first.trials if t.error]
    sentences = [f"with the spec's weights loaded it raised {errors[0]}"] if errors else []
    closest = first.closest()
    if closest is None:
        return None, [*sentences, f"no {name} configuration could be run ({tried} tried)"]
    worst = closest.worst_comparison
    sentences.append(
        f"no {name} configuration matches ({tried} tried); the closest is {describe(closest.cfg)} "
        f"(worst error {closest.worst:.3g}x the tolerance{f', on {worst.name}' if worst else ''})"
    )
    return (closest.cfg, False), sentences


def _match_sentences(cfg: Config, module: str) -> list[str]:
    identified, name = describe(cfg), _NAMES[cfg.module]
    out = [f"matches {identified}"]
    diffs = _differences(cfg, make_config(cfg.module, cfg.channels))
    if not diffs:
        out.append(f"it computes exactly the {name} defaults")
    elif not identified.endswith(", ".join(diffs)):  # named after another preset: say how far from the defaults
        out.append(f"it differs from the {name} defaults ({cfg.channels} channels) in {', '.join(diffs)}")
    if cfg.module != module:
        out.append(f"it is {name}, so it does not conform to {_NAMES[module]}")
    elif isinstance(cfg, CBAMConfig) and not cfg.spatial:
        out.append("it has no spatial attention: CBAM's channel half only (the official no_spatial)")
        if cfg.pool_types == ("avg",):
            out.append("CBAM's channel half with average pooling alone computes SE: it verifies as SE too")
    return out


def _full_check_failures(reports: Sequence[CaseReport]) -> list[str]:
    bad = sorted({cmp.name for r in reports for cmp in r.comparisons if not cmp.ok})
    raised = [r.error for r in reports if r.error]
    rounding = _float32_sized(reports)
    out = [
        "its forward matches, but the full check fails on "
        + (", ".join(bad) if bad else f"a raised error: {raised[0]}")
        + (" (its gradients are wrong)" if bad and "y" not in bad and not rounding else "")
    ]
    if rounding:
        out.append(
            "it fails only in float64, by errors within the float32 tolerance: some step of its float64 path "
            "computes in float32 precision (a float32 constant or cast)"
        )
    return out


# ----------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m conformance verify",
        description="Check a third-party SE/CBAM/ECA implementation against the spec and identify its variant.",
    )
    p.add_argument("target", help="package.module:Factory (a class, or a function returning the layer)")
    p.add_argument("--module", required=True, choices=MODULES)
    p.add_argument("--framework", required=True, choices=FRAMEWORKS)
    p.add_argument("--init-kwargs", default="{}", help="JSON object of the factory's keyword arguments")
    p.add_argument(
        "--map", default="auto", dest="mapping", help="auto, a PyTorch dialect (timm, official, ...) or a JSON map file"
    )
    p.add_argument(
        "--expect", default=None, help="the preset it claims to be, or a JSON object of knobs (strict check)"
    )
    p.add_argument("--channels", type=int, default=None, help="channel count, when the arguments do not tell it")
    p.add_argument("--data-format", choices=("channels_first", "channels_last"), default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--format", choices=("text", "json"), default="text")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns 0 when the target conforms, 1 when not, 2 on a usage error."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    try:
        init_kwargs = json.loads(args.init_kwargs)
        if not isinstance(init_kwargs, dict):
            raise ValueError("--init-kwargs must be a JSON object")
        expect: Any = args.expect
        if expect is not None and expect.lstrip().startswith("{"):
            expect = json.loads(expect)
        report = verify(
            args.target,
            module=args.module,
            framework=args.framework,
            init_kwargs=init_kwargs,
            mapping=args.mapping,
            seed=args.seed,
            channels=args.channels,
            expect=expect,
            data_format=args.data_format,
        )
    except (ValueError, TypeError) as e:
        print(f"python -m conformance verify: error: {e}", file=sys.stderr)
        return 2
    print(report.to_json() if args.format == "json" else report.to_text())
    return 0 if report.passed else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
