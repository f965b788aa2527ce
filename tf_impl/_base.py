"""The base layer and the weight functions: config, weights, serialisation and input checks all come from ``reference_numpy``."""

from __future__ import annotations

import contextlib
import inspect
import textwrap
from collections.abc import Mapping
from typing import Any, ClassVar, Generic, TypeVar

import keras
import numpy as np
from keras import ops

from reference_numpy import (
    CONFIG_TYPES,
    Config,
    InitSpec,
    Registry,
    as_config,
    check_data_format,
    check_training,
    framework_layout,
    from_framework,
    knob_names,
    make_config,
    param_init,
    show_constructor,
    staged_canonical,
)

from ._ops import POOLS, Layout, accumulation_dtype, gate

# The keyword arguments keras.layers.Layer takes (name, dtype, trainable, ...); every other
# keyword is a knob of the spec config, so an unknown one is rejected by make_config.
_LAYER_KWARGS = frozenset(
    p.name for p in inspect.signature(keras.layers.Layer.__init__).parameters.values() if p.kind == p.KEYWORD_ONLY
) | {"input_shape", "input_dim"}


def initializer(init: InitSpec) -> keras.initializers.Initializer:
    """The Keras initialiser of one canonical tensor's spec distribution."""
    if init.dist == "constant":
        return keras.initializers.Constant(init.value)
    return keras.initializers.RandomUniform(-init.value, init.value)


class WeightGroup(keras.layers.Layer):
    """A named holder of weights (``fc1``, ``conv``, ``bn``, ...), so that weight paths mirror the Keras keys.

    It is never called: its owner creates its weights and reads them.
    """

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.built = True


ConfigT = TypeVar("ConfigT", bound=Config)

_CLASSES: Registry[type[AttentionLayer[Any]]] = Registry("tf_impl")

_OPTIONS = [
    inspect.Parameter("data_format", inspect.Parameter.KEYWORD_ONLY, default=None),
    inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD),  # keras.layers.Layer's: name, dtype, trainable
]

_SHARED_DOC = """\
    Args:
        channels: Number of input channels ``C``.
{preset}
{knobs}
        data_format: ``"channels_last"`` (N, H, W, C) or ``"channels_first"`` (N, C, H, W).
            Defaults to ``keras.config.image_data_format()``.
        **kwargs: ``keras.layers.Layer`` arguments (``name``, ``dtype``, ``trainable``).

    Input shape:
        4D tensor ``(batch, height, width, channels)`` with ``data_format="channels_last"``,
        ``(batch, channels, height, width)`` with ``data_format="channels_first"``.

    Output shape:
        The input's shape; the dtype is the layer's compute dtype.
"""
_SHARED_DOC_MARK = "    {Args, Input shape, Output shape}\n"
"""Where a layer's docstring takes :data:`_SHARED_DOC`, written once for every layer, its presets and knobs
filled in from the spec config (``CONFIG_TYPES[module]``)."""


def _shared_doc(module: str) -> str:
    spec = CONFIG_TYPES[module]
    presets = [f'``"{p}"``' for p in spec.presets]
    preset = f"preset: {', '.join(presets[:-1])} or {presets[-1]} (SPEC.md section 6); the knobs given override it."
    knobs = f"{', '.join(knob_names(module))}: keyword-only, the fields of ``reference_numpy.{spec.__name__}``."
    return _SHARED_DOC.format(preset=_arg(preset), knobs=_arg(knobs))


def _arg(text: str) -> str:
    """One entry of a docstring's ``Args:``, wrapped."""
    return textwrap.fill(text, 96, initial_indent=" " * 8, subsequent_indent=" " * 12)


class AttentionLayer(keras.layers.Layer, Generic[ConfigT]):
    """A layer computing the module ``module`` of the spec from a :mod:`reference_numpy` config.

    The skeleton (``reference_numpy.ports``): a subclass sets ``module`` (which registers it for
    :func:`class_for`), and implements ``_attend(x, p, training)`` with ``p`` the weights by their
    Keras flat key (``framework_layout(cfg, "keras")``), already cast to the accumulation dtype;
    ``build`` checks the input shape and ``_build`` creates the weights. (Not ``forward``: on the
    PyTorch backend a Keras layer is a ``torch.nn.Module``.)
    """

    module: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _CLASSES.register(cls)
        # help() and inspect.signature() list every knob with the spec's default; the
        # constructor itself forwards only the knobs given, so that a preset is not overridden.
        show_constructor(cls, _OPTIONS)
        if cls.__doc__ is not None:  # None under python -OO
            cls.__doc__ = cls.__doc__.replace(_SHARED_DOC_MARK, _shared_doc(cls.module))

    def __init__(self, channels: int, *, preset: str | None = None, data_format: str | None = None, **kwargs: Any):
        layer_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in _LAYER_KWARGS}
        config = make_config(self.module, channels, preset=preset, **kwargs)
        super().__init__(**layer_kwargs)
        if not all(d.startswith(("float", "bfloat")) for d in (self.compute_dtype, self.variable_dtype)):
            raise TypeError(
                "`dtype` must be a floating dtype or a policy of floating dtypes. "
                f"Received: dtype={layer_kwargs.get('dtype')!r}"
            )
        self._spec: ConfigT = config  # type: ignore[assignment]  # make_config(self.module, ...) is a ConfigT
        self.data_format = keras.config.image_data_format() if data_format is None else data_format
        check_data_format(self.data_format)
        self._layout = Layout(channels_last=self.data_format == "channels_last")

    @property
    def config(self) -> ConfigT:
        """The spec config (presets resolved, derived sizes such as ``config.hidden`` included)."""
        return self._spec

    @property
    def keras_weights(self) -> dict[str, Any]:
        """The built layer's variables by Keras flat key: ``{"spatial.bn.gamma": <variable cbam/spatial/bn/gamma>}``.

        The keys are those of ``reference_numpy.framework_layout(layer.config, "keras")``.
        """
        if not self.built:
            raise ValueError(
                f"{type(self).__name__} has no weights yet: build it first "
                "(call it on an input or `layer.build(input_shape)`)."
            )
        return dict(self._vars)

    # -- Keras protocol

    def build(self, input_shape: Any) -> None:
        self._spec.validate_input(input_shape, self.compute_dtype, data_format=self.data_format)
        self._check_backend_dtype()
        self._build()

    def _build(self) -> None:
        """Create the weights of ``framework_layout(config, "keras")`` in named groups, drawn as ``param_init`` says."""
        init = param_init(self._spec)
        groups: dict[tuple[str, ...], WeightGroup] = {}
        self._vars = {}
        for name, p in framework_layout(self._spec, "keras").items():
            *modules, leaf = p.path
            owner = groups.setdefault(tuple(modules), WeightGroup(name=modules[-1], dtype=self.dtype_policy))
            with contextlib.ExitStack() as scopes:  # the path of "spatial.bn.gamma" is "<layer>/spatial/bn/gamma"
                for outer in modules[:-1]:
                    scopes.enter_context(keras.name_scope(outer))
                self._vars[p.key] = owner.add_weight(
                    name=leaf,
                    shape=p.shape,
                    initializer=initializer(init[name]),
                    trainable=p.collection == "params",
                    autocast=False,  # read in the accumulation dtype: BN statistics stay float32 under half policies
                )
        self._groups = {".".join(k): g for k, g in groups.items()}

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        # As Keras's BatchNormalization: a frozen layer (trainable=False) runs its BN in inference mode.
        # None is Keras's "not given" (inference); anything but a bool is refused, never truth-tested.
        training = False if training is None else check_training(training)
        training = bool(training) and self.trainable
        self._spec.validate_input(inputs.shape, inputs.dtype, data_format=self.data_format, training=training)
        self._check_backend_dtype()
        acc = accumulation_dtype(self.compute_dtype)
        y, new_state = self._attend(inputs, {k: ops.cast(v, acc) for k, v in self._vars.items()}, training)
        for key, value in new_state.items():
            self._vars[key].assign(ops.cast(value, self._vars[key].dtype))
        return y

    def attention_maps(self, inputs: Any, training: bool | None = None) -> dict[str, Any]:
        """The gates this layer multiplies ``inputs`` by: ``{"channel": (N, C)}``, and CBAM's ``"spatial": (N, 1, H, W)``.

        ``training`` as in ``call``; no moving statistic is updated. Builds the layer if needed.
        See :mod:`tf_impl.maps`.
        """
        from .maps import attention_maps

        dtype = getattr(inputs, "dtype", None)
        if dtype is None:
            dtype = np.asarray(inputs).dtype
        try:
            floating = keras.backend.is_float_dtype(keras.backend.standardize_dtype(dtype))
        except (TypeError, ValueError):  # not a dtype Keras knows (strings, objects)
            floating = False
        if not floating:
            raise TypeError(f"{self._spec} expects a floating-point input. Received: dtype={dtype}")
        inputs = ops.convert_to_tensor(inputs)
        if not self.built:
            self.build(inputs.shape)
        training = False if training is None else check_training(training)
        training = bool(training) and self.trainable
        inputs = ops.cast(inputs, self.compute_dtype)  # as Keras's __call__ casts the inputs of call
        self._spec.validate_input(inputs.shape, inputs.dtype, data_format=self.data_format, training=training)
        acc = accumulation_dtype(self.compute_dtype)
        return attention_maps(self, inputs, {k: ops.cast(v, acc) for k, v in self._vars.items()}, training)

    def compute_output_shape(self, input_shape: Any) -> Any:
        self._spec.validate_input(input_shape, self.compute_dtype, data_format=self.data_format)
        return tuple(input_shape)

    def get_config(self) -> dict[str, Any]:
        spec = {k: v for k, v in self._spec.to_dict().items() if k != "module"}
        return {**super().get_config(), **spec, "data_format": self.data_format}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> AttentionLayer[Any]:
        """The layer of a ``get_config()`` dict (Keras's convention; a spec config's ``to_dict()`` of this module too).

        A spec config object goes through the module function: ``tf_impl.from_config(cfg)``.
        """
        if not isinstance(config, Mapping):
            hint = " (a spec config: use tf_impl.from_config(cfg))" if isinstance(config, Config) else ""
            raise TypeError(
                f"{cls.__name__}.from_config expects the dict of get_config(){hint}. "
                f"Received: config={config!r} of type {type(config).__name__}"
            )
        config = dict(config)
        module = config.pop("module", cls.module)
        if module != cls.module:
            raise ValueError(
                f"{cls.__name__}.from_config expects a config of module {cls.module!r}. Received: module={module!r}"
            )
        return super().from_config(config)

    def _check_backend_dtype(self) -> None:
        """Refuse float64 where the backend would silently compute in float32 (JAX outside its 64-bit mode)."""
        if keras.backend.backend() != "jax" or "float64" not in (self.compute_dtype, self.variable_dtype):
            return
        import jax

        if jax.dtypes.canonicalize_dtype(np.float64) != np.float64:
            raise ValueError(
                f"{type(self).__name__} in float64 on the JAX backend needs JAX's 64-bit mode, without which JAX "
                "computes in float32: call jax.config.update('jax_enable_x64', True) (or set JAX_ENABLE_X64=1) "
                "before building and calling the layer. Received: dtype='float64' with jax_enable_x64 off."
            )

    # -- the module's math

    def _attend(self, x: Any, p: dict[str, Any], training: bool) -> tuple[Any, dict[str, Any]]:
        """Returns (y, new values of non-trainable weights by Keras key)."""
        raise NotImplementedError

    def pool(self, kind: str, x: Any, over: str = "space") -> Any:
        """A pool of SPEC.md section 2 over ``space`` (H, W) -> (N, C) or ``channels`` -> (N, H, W)."""
        return POOLS[kind](x, over, self._layout, accumulation_dtype(self.compute_dtype))

    def gate(self, x: Any, g: Any, over: str = "space") -> Any:
        """``x * g`` in x's dtype, g holding one value per window: per channel (over space) or per position."""
        return gate(x, g, over, self._layout)


class_for = _CLASSES.class_for  # the class of a spec module: class_for("cbam") is CBAM


def from_config(cfg: Config | Mapping[str, Any], **layer_kwargs: Any) -> AttentionLayer[Any]:
    """The layer computing spec config ``cfg`` (or its ``to_dict()``, Keras's convention); ``layer_kwargs`` are
    ``data_format`` and Keras's (name, dtype, ...).

    (A layer's own ``get_config()`` goes back through the class: ``tf_impl.CBAM.from_config(layer.get_config())``.)
    """
    cfg = as_config(cfg)
    knobs = {k: v for k, v in cfg.to_dict().items() if k != "module"}
    clash = sorted(set(layer_kwargs) & {*knobs, "preset"})
    if clash:
        raise TypeError(
            "from_config takes the module's knobs from `cfg`; its keyword arguments are `data_format` and Keras's "
            f"layer arguments (name, dtype, ...). Received: {', '.join(f'{k}={layer_kwargs[k]!r}' for k in clash)}"
        )
    return class_for(cfg.module)(**knobs, **layer_kwargs)


def to_numpy(t: Any) -> np.ndarray:
    """A backend tensor or variable value as a NumPy array, on any Keras backend.

    (TensorFlow's own ``.numpy()`` avoids a NumPy 2 warning of ``keras.ops.convert_to_numpy``.)

    >>> import keras, tf_impl
    >>> tf_impl.to_numpy(keras.ops.ones((2,))).tolist()
    [1.0, 1.0]
    """
    return t.numpy() if keras.backend.backend() == "tensorflow" else ops.convert_to_numpy(t)


def _check_layer(layer: Any) -> AttentionLayer[Any]:
    if not isinstance(layer, AttentionLayer):
        raise TypeError(
            f"Expected an attnspec Keras layer (SqueezeExcite, CBAM or ECA). Received: {type(layer).__name__}"
        )
    return layer


def to_canonical(module: AttentionLayer[Any]) -> dict[str, np.ndarray]:
    """The built layer ``module``'s weights (BN statistics included) as canonical name -> array, in the variables' dtype."""
    tensors = {k: to_numpy(v.value) for k, v in _check_layer(module).keras_weights.items()}
    return from_framework(module.config, tensors, "keras")


def load_canonical(module: AttentionLayer[Any], params: Mapping[str, Any], strict: bool = True) -> AttentionLayer[Any]:
    """Assign canonical ``params`` to the built layer ``module``; returns ``module``.

    (``module``, as every port names it; here a Keras layer.)

    Everything is checked and converted to the variables' dtypes before anything is assigned
    (``reference_numpy.staged_canonical``): every missing (when ``strict``), unexpected or
    mis-shaped key in one ``KeyMismatchError``, values that are not real numbers in one
    ``TypeError``, finite values that would overflow a variable's dtype in one ``ValueError``.
    With ``strict=False`` any subset of the canonical names is loaded and the others keep their values.
    """
    variables = _check_layer(module).keras_weights
    targets = {name: variables[p.key] for name, p in framework_layout(module.config, "keras").items()}
    arrays = staged_canonical(
        module.config, params, "keras", strict=strict, dtypes={name: v.dtype for name, v in targets.items()}
    )
    staged = {
        name: ops.convert_to_tensor(a, dtype=targets[name].dtype) for name, a in arrays.items()
    }  # rounded to the variable's dtype (to nearest)
    for name, value in staged.items():
        targets[name].assign(value)
    return module
