"""Targets: how verify instantiates, reads, loads and runs an implementation in each framework.

A target is a factory (a class, or a function returning a layer, called with ``init_kwargs``)
or an instance with its own weights: a PyTorch ``nn.Module`` (deep-copied: the caller's module
is never changed), a Keras layer (its weights are restored after the check), a Flax linen
module with its variables, or an NNX module (copied). Running a target goes through the shared
run layer :mod:`conformance.adapters.run`, and every call into the target is wrapped in
:func:`conformance.verify.worker.calling`, which gives it its time limit in a worker process.
"""

from __future__ import annotations

import copy
import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..adapters.run import as_single_array, jax_vjp, tf_vjp, torch_vjp, x64
from .binding import _VAR_LEAVES, Tensor
from .worker import calling

CHANNEL_ARGUMENTS = ("channels", "channel", "in_channels", "num_channels", "gate_channels", "in_chs", "in_planes")
"""Constructor arguments and attributes read as the channel count, only when the weights cannot tell it
(ECA's kernel, a layer built on first call). Other names (``c1``, ``in_filters``, ``dim``) are never guessed."""


class ChannelsUnknown(ValueError):
    """Nothing tells the channel count: a usage mistake (pass ``channels``), not a failure of the target."""


def _sample_shape(channels: int) -> tuple[int, int, int, int]:
    """(N, C, H, W) with N, H, W distinct from each other and from C, H != W."""
    free = [v for v in (2, 5, 3, 6, 7, 4) if v != channels]
    return free[0], channels, free[1], free[2]


def _shape(channels: int, data_format: str) -> tuple[int, int, int, int]:
    n, c, h, w = _sample_shape(channels)
    return (n, c, h, w) if data_format == "channels_first" else (n, h, w, c)


class _Backend:
    """How verify instantiates, reads, loads and runs a target in one framework."""

    framework = ""
    data_format = "channels_last"
    reuse = False
    """Whether one instance serves every run (loading overwrites every tensor): per dtype when ``per_dtype``."""
    per_dtype = True

    def __init__(
        self,
        factory: Callable[..., Any] | None,
        init_kwargs: Mapping[str, Any],
        *,
        instance: Any = None,
        variables: Any = None,
    ):
        self.factory, self.init_kwargs = factory, dict(init_kwargs)
        self.given, self.variables = instance, variables
        self.channels: int | None = None
        self._fns: dict[Any, Any] = {}  # compiled functions (JAX backends)
        self._instances: dict[str | None, Any] = {}

    @property
    def label(self) -> str:
        if self.given is not None:
            return type(self.given).__name__
        return getattr(self.factory, "__name__", repr(self.factory))

    def _new(self) -> Any:
        assert self.factory is not None
        with calling("its constructor"):
            return self.factory(**self.init_kwargs)

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

    def own(self) -> Any:
        """The object holding the target's own weights (the given instance, or a fresh one)."""
        return self.instance("float32")

    def restore(self) -> None:
        """Undo what loading did to a given instance (Keras layers are loaded in place)."""

    def tensors(self, obj: Any) -> tuple[list[Tensor], list[str]]:
        """The target's tensors, and the names of those with no canonical counterpart (counters)."""
        raise NotImplementedError

    def values(self, obj: Any) -> dict[str, np.ndarray]:
        """The target's floating tensors by name, as NumPy."""
        raise NotImplementedError

    def assign(self, obj: Any, values: Mapping[str, np.ndarray], dtype: str) -> Any:
        raise NotImplementedError

    def call(
        self, obj: Any, x: np.ndarray, dy: np.ndarray | None, training: bool, dtype: str
    ) -> tuple[np.ndarray, np.ndarray | None, dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Returns (y, dx, grads by their name, state by their name after a train-mode call)."""
        raise NotImplementedError

    def channels_from_arguments(self, obj: Any | None) -> int | None:
        """The channel count an argument or attribute with a known name gives (never guessed from other names)."""
        spec = getattr(obj, "config", None)  # this project's ports (and anything else holding a spec config)
        for source in (self.init_kwargs, *(() if obj is None else (obj, spec))):
            for name in CHANNEL_ARGUMENTS:
                try:
                    v = source.get(name) if isinstance(source, Mapping) else getattr(source, name, None)
                except Exception:  # a property that raises
                    continue
                if isinstance(v, int) and not isinstance(v, bool) and v >= 1:
                    return v
        return None

    def _need_channels(self, obj: Any, when: str) -> int:
        if self.channels is None:
            self.channels = self.channels_from_arguments(obj)
        if self.channels is None:
            raise ChannelsUnknown(
                f"`channels` must be given: {self.label} creates its weights {when}, and nothing else tells "
                "its channel count (pass channels=N, --channels N on the command line, or a sample input)"
            )
        return self.channels


class _TorchBackend(_Backend):
    framework = "torch"
    data_format = "channels_first"

    def make(self, dtype: str) -> Any:
        import torch

        obj = copy.deepcopy(self.given) if self.given is not None else self._new()
        if not isinstance(obj, torch.nn.Module):
            raise TypeError(f"the factory returned a {type(obj).__name__}, not a torch.nn.Module")
        return obj.to(getattr(torch, dtype))

    def own(self) -> Any:
        return self.given if self.given is not None else self.instance("float32")

    def tensors(self, obj: Any) -> tuple[list[Tensor], list[str]]:
        out = [Tensor(n, tuple(p.shape), True) for n, p in obj.named_parameters()]
        ignored = []
        for n, b in obj.named_buffers():
            if b.is_floating_point():
                out.append(Tensor(n, tuple(b.shape), False))
            else:
                ignored.append(n)
        return out, ignored

    def values(self, obj: Any) -> dict[str, np.ndarray]:
        named = [*obj.named_parameters(), *obj.named_buffers()]
        return {n: t.detach().cpu().double().numpy() for n, t in named if t.is_floating_point()}

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
        named = list(obj.named_parameters())
        dyt = None if dy is None else torch.as_tensor(dy, dtype=getattr(torch, dtype))
        with calling("its forward" if dy is None else "its forward and backward"):
            y, dx, got = torch_vjp(obj, xt, dyt, [p for _, p in named])
        out = as_single_array(y, "its forward")
        if dy is not None and not isinstance(y, torch.Tensor):
            raise TypeError(
                f"its forward returned a {type(y).__module__}.{type(y).__qualname__}, not a torch.Tensor: no "
                "gradient can be taken through it"
            )
        state = {n: b.detach().cpu().numpy().copy() for n, b in obj.named_buffers() if b.is_floating_point()}
        if dy is None:
            return out, None, {}, state
        grads = {
            n: (np.zeros(tuple(p.shape)) if g is None else g.detach().numpy())
            for (n, p), g in zip(named, got, strict=True)
        }
        return out, None if dx is None else dx.detach().numpy(), grads, state


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


def _float_leaf(v: Any) -> bool:
    return np.issubdtype(np.asarray(v).dtype, np.floating)


class _LinenBackend(_Backend):
    framework = "flax"
    reuse, per_dtype = True, False  # the variables are cast when called

    def make(self, dtype: str) -> Any:
        import jax

        if self.given is not None:
            if self.variables is None:
                raise ValueError(
                    f"A Flax linen module holds no weights: pass its variables with it "
                    f"(variables={{'params': ...}}). Received: {self.label} without variables"
                )
            return self.given, {k: np.asarray(v) for k, v in _flatten(self.variables).items()}
        obj = self._new()
        c = self._need_channels(obj, "when it is initialised")
        x = np.zeros(_shape(c, self.data_format), np.float32)
        # shapes only (random initialisers compile slowly); loading overwrites them, the smoke run uses these
        init = functools.partial(obj.init, **_mode_kwargs(obj.__call__, False))
        with calling("its init"):
            shapes = jax.eval_shape(init, jax.random.PRNGKey(0), x)
        rng = np.random.default_rng(0)
        variables = {
            k: np.abs(rng.uniform(0.5, 1.5, v.shape)) if k.endswith(_VAR_LEAVES) else rng.uniform(-0.5, 0.5, v.shape)
            for k, v in _flatten(shapes).items()
        }
        return obj, variables

    def tensors(self, obj: Any) -> tuple[list[Tensor], list[str]]:
        _, flat = obj
        out = [Tensor(k, tuple(np.shape(v)), k.startswith("params.")) for k, v in flat.items() if _float_leaf(v)]
        return out, [k for k, v in flat.items() if not _float_leaf(v)]

    def values(self, obj: Any) -> dict[str, np.ndarray]:
        return {k: np.asarray(v, np.float64) for k, v in obj[1].items() if _float_leaf(v)}

    def assign(self, obj: Any, values: Mapping[str, np.ndarray], dtype: str) -> Any:
        module, flat = obj
        return module, {**flat, **{k: np.asarray(v, dtype) for k, v in values.items()}}

    def call(self, obj, x, dy, training, dtype):  # type: ignore[no-untyped-def]
        import jax.numpy as jnp

        from reference_numpy import nest

        module, flat = obj
        with x64(dtype):
            variables = nest({k: jnp.asarray(np.asarray(v, dtype) if _float_leaf(v) else v) for k, v in flat.items()})
            params = variables.pop("params", {})
            kw = _mode_kwargs(module.__call__, training)
            mutable = list(variables) if training else False

            def f(p: Any, other: Any, xx: Any) -> Any:
                out = module.apply({"params": p, **other}, xx, mutable=mutable, **kw)
                return out if mutable is not False else (out, {})

            y, dx, dparams, updates = _jax_call(self._fns, (id(module), training), f, params, variables, x, dy, dtype)
            grads = {f"params.{k}": np.asarray(v) for k, v in _flat_tree(dparams).items()}
            return as_single_array(y, "its __call__"), dx, grads, _flat_tree(updates)


def _jax_call(
    cache: dict[Any, Any], key: Any, f: Callable[..., Any], params: Any, other: Any, x: Any, dy: Any, dtype: str
) -> Any:
    """``f(params, other, x) -> (y, aux)``, with the VJP when ``dy`` is given: jitted (compiled once per
    ``key``), or eagerly when it cannot be traced. Returns (y, dx, dparams, aux) as NumPy / pytrees."""
    import jax
    import jax.numpy as jnp

    grad = dy is not None
    key = (*key, grad)
    if key not in cache:
        cache[key] = jax.jit(functools.partial(jax_vjp, f))
    args = (
        params,
        other,
        jnp.asarray(np.asarray(x, dtype)),
        None if dy is None else jnp.asarray(np.asarray(dy, dtype)),
    )
    with calling("its __call__" if dy is None else "its __call__ and its VJP"):
        try:
            y, dx, dp, aux = cache[key](*args)
        except Exception:  # not traceable (Python control flow on values): run it eagerly, errors and all
            y, dx, dp, aux = jax_vjp(f, *args)
    return y, None if dx is None else np.asarray(dx), dp if dp is not None else {}, aux


def _flatten(tree: Any) -> dict[str, Any]:
    from reference_numpy import flatten

    if hasattr(tree, "unfreeze"):
        tree = tree.unfreeze()
    return flatten(tree) if isinstance(tree, Mapping) else {}


def _flat_tree(tree: Any) -> dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in _flatten(tree).items()}


class _NNXBackend(_Backend):
    framework = "flax"
    reuse, per_dtype = True, False  # loading casts every variable

    def make(self, dtype: str) -> Any:
        from flax import nnx

        if self.given is not None:
            return nnx.clone(self.given)
        kw = dict(self.init_kwargs)
        # NNX's metaclass hides the signature of the class: look at __init__
        fn = self.factory.__init__ if isinstance(self.factory, type) else self.factory  # type: ignore[misc]
        try:
            takes_rngs = "rngs" in inspect.signature(fn).parameters
        except (TypeError, ValueError):
            takes_rngs = False
        if takes_rngs and "rngs" not in kw:
            kw["rngs"] = nnx.Rngs(0)
        with calling("its constructor"):
            return self.factory(**kw)  # type: ignore[misc]

    def own(self) -> Any:
        return self.given if self.given is not None else self.instance("float32")

    @staticmethod
    def _flat(state: Any) -> dict[str, Any]:
        from flax import nnx

        return {".".join(map(str, path)): v for path, v in nnx.to_flat_state(state)}

    def tensors(self, obj: Any) -> tuple[list[Tensor], list[str]]:
        from flax import nnx

        out, ignored = [], []
        for name, v in self._flat(nnx.state(obj)).items():
            value = _value(v)
            if np.issubdtype(value.dtype, np.floating):
                out.append(Tensor(name, value.shape, isinstance(v, nnx.Param)))
            else:
                ignored.append(name)
        return out, ignored

    def values(self, obj: Any) -> dict[str, np.ndarray]:
        from flax import nnx

        flat = {k: _value(v) for k, v in self._flat(nnx.state(obj)).items()}
        return {k: v.astype(np.float64) for k, v in flat.items() if np.issubdtype(v.dtype, np.floating)}

    def assign(self, obj: Any, values: Mapping[str, np.ndarray], dtype: str) -> Any:
        import jax.numpy as jnp
        from flax import nnx

        with x64(dtype):
            for name, v in self._flat(nnx.state(obj)).items():
                if name in values:
                    v.set_value(jnp.asarray(np.asarray(values[name], dtype)))
                elif hasattr(v, "get_value") and np.issubdtype(np.asarray(v.get_value()).dtype, np.floating):
                    v.set_value(jnp.asarray(np.asarray(v.get_value(), dtype)))
        return obj

    def call(self, obj, x, dy, training, dtype):  # type: ignore[no-untyped-def]
        from flax import nnx

        with x64(dtype):
            obj.train() if training else obj.eval()
            graphdef, params, rest = nnx.split(obj, nnx.Param, ...)

            def f(p: Any, other: Any, xx: Any) -> Any:
                m = nnx.merge(graphdef, p, other)
                return m(xx), nnx.state(m, nnx.Not(nnx.Param))

            y, dx, dparams, new_rest = _jax_call(self._fns, (id(obj), training), f, params, rest, x, dy, dtype)
            grads = {k: _value(v) for k, v in self._flat(dparams).items()} if dy is not None else {}
            state = {k: _value(v) for k, v in self._flat(new_rest).items()}
            return as_single_array(y, "its __call__"), dx, grads, state


def _value(v: Any) -> np.ndarray:
    return np.asarray(v.get_value() if hasattr(v, "get_value") else v)


class _KerasBackend(_Backend):
    framework = "keras"
    reuse = True
    _paths: list[str] | None = None
    _saved: list[np.ndarray] | None = None

    def make(self, dtype: str) -> Any:
        import keras

        if keras.backend.backend() != "tensorflow":
            raise RuntimeError(
                f"verify runs Keras targets on the TensorFlow backend; this is {keras.backend.backend()}"
            )
        if self.given is not None:
            layer = self.given
            if not layer.built:
                c = self._need_channels(layer, "on its first call")
                with calling("its first call"):
                    layer(np.zeros(_shape(c, self.data_format), layer.compute_dtype))
            if self._saved is None:
                self._saved = [np.array(w.numpy()) for w in layer.weights]
            return layer
        previous = keras.config.floatx(), keras.config.dtype_policy()
        keras.config.set_floatx(dtype)  # layers built here take the global dtype policy
        keras.config.set_dtype_policy(dtype)
        try:
            layer = self._new()
            if not isinstance(layer, keras.layers.Layer):
                raise TypeError(f"the factory returned a {type(layer).__name__}, not a keras Layer")
            c = self._need_channels(layer, "on its first call")
            with calling("its first call"):
                layer(np.zeros(_shape(c, self.data_format), dtype))
        finally:
            keras.config.set_floatx(previous[0])
            keras.config.set_dtype_policy(previous[1])
        return layer

    def restore(self) -> None:
        if self.given is not None and self._saved is not None:
            for w, v in zip(self.given.weights, self._saved, strict=True):
                w.assign(v)

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

    def values(self, obj: Any) -> dict[str, np.ndarray]:
        return {n: np.asarray(w.numpy(), np.float64) for n, w in self._named(obj) if "float" in str(w.dtype)}

    def assign(self, obj: Any, values: Mapping[str, np.ndarray], dtype: str) -> Any:
        for name, w in self._named(obj):
            if name in values:
                w.assign(np.asarray(values[name], dtype=str(w.dtype)))
        return obj

    def call(self, obj, x, dy, training, dtype):  # type: ignore[no-untyped-def]
        import tensorflow as tf

        xt = tf.constant(np.asarray(x, dtype))
        named = self._named(obj)
        trainable = [(n, w) for n, w in named if w.trainable]
        dyt = None if dy is None else tf.constant(np.asarray(dy, dtype))
        with calling("its call" if dy is None else "its call and its gradient"):
            y, dx, got = tf_vjp(lambda t: obj(t, training=training), xt, dyt, [w for _, w in trainable])
        out = as_single_array(y, "its call")
        state = {n: np.asarray(w.numpy()) for n, w in named if not w.trainable and "float" in str(w.dtype)}
        if dy is None:
            return out, None, {}, state
        grads = {
            n: (np.zeros(tuple(w.shape)) if g is None else np.asarray(g))
            for (n, w), g in zip(trainable, got, strict=True)
        }
        return out, np.zeros(x.shape) if dx is None else np.asarray(dx), grads, state


def framework_of(obj: Any) -> str | None:
    """``torch``, ``flax`` or ``keras`` for an instance of that framework's module class (None otherwise),
    asked without importing any framework that is not already imported."""
    import sys

    for fw, mod, attr in (
        ("torch", "torch", "nn.Module"),
        ("keras", "keras", "layers.Layer"),
        ("flax", "flax.linen", "Module"),
        ("flax", "flax.nnx", "Module"),
    ):
        if mod in sys.modules:
            cls: Any = sys.modules[mod]
            for part in attr.split("."):
                cls = getattr(cls, part, None)
            if isinstance(cls, type) and isinstance(obj, cls):
                return fw
    return None


def make_backend(
    framework: str,
    factory: Callable[..., Any] | None,
    init_kwargs: Mapping[str, Any],
    *,
    instance: Any = None,
    variables: Any = None,
) -> _Backend:
    kw: dict[str, Any] = {"instance": instance, "variables": variables}
    if framework == "torch":
        return _TorchBackend(factory, init_kwargs, **kw)
    if framework == "keras":
        return _KerasBackend(factory, init_kwargs, **kw)
    from flax import linen, nnx

    if instance is not None:
        is_nnx, is_linen = isinstance(instance, nnx.Module), isinstance(instance, linen.Module)
    elif isinstance(factory, type):
        is_nnx = issubclass(factory, nnx.Module)
        is_linen = issubclass(factory, linen.Module)
    else:  # a function: look at what it returns
        probe = _NNXBackend(factory, init_kwargs).make("float32")
        is_nnx, is_linen = isinstance(probe, nnx.Module), isinstance(probe, linen.Module)
    if is_nnx:
        return _NNXBackend(factory, init_kwargs, **kw)
    if is_linen:
        return _LinenBackend(factory, init_kwargs, **kw)
    name = type(instance).__name__ if instance is not None else getattr(factory, "__name__", factory)
    raise TypeError(f"{name} is neither a Flax linen nor an NNX module")
