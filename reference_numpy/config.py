"""Spec configs for SE, CBAM and ECA: every knob of SPEC.md, validated once, here.

The configs are frozen dataclasses. Everything a port needs to know about a module
(derived sizes, presets, the canonical parameter layout, initial values, input checks)
is asked of the config, so that no port recomputes or re-validates anything.

>>> cfg = CBAMConfig(channels=64)
>>> cfg.hidden
4
>>> CBAMConfig.preset("timm", channels=24).hidden
2
>>> ECAConfig(channels=256).effective_kernel_size
5
>>> SEConfig(channels=64, rd_ratio=1.5)
Traceback (most recent call last):
...
ValueError: `rd_ratio` must be in (0, 1]. Received: rd_ratio=1.5
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal, NamedTuple, TypeVar, Union

import numpy as np

__all__ = [
    "ACTIVATIONS",
    "CHANNEL_POOLS",
    "DATA_FORMATS",
    "EXTRAS",
    "FRAMEWORKS",
    "GATES",
    "MAX_SIZE",
    "MODULES",
    "PORTS",
    "REQUIRES",
    "SPATIAL_POOLS",
    "CBAMConfig",
    "Config",
    "ECAConfig",
    "InitSpec",
    "ParamSpec",
    "SEConfig",
    "as_config",
    "check_config",
    "check_data_format",
    "check_module",
    "check_training",
    "config_from_dict",
    "knob_names",
    "make_config",
    "param_init",
    "param_layout",
]

ACTIVATIONS = ("relu", "relu6", "silu", "gelu", "hard_swish")
GATES = ("sigmoid", "hard_sigmoid")
SPATIAL_POOLS = ("avg", "max", "lse", "lp")
"""Pools over H, W that give CBAM's channel descriptors (SPEC.md section 2)."""
CHANNEL_POOLS = ("max", "mean")
"""Pools over C that give CBAM's spatial descriptors."""
ROUNDINGS = ("floor", "nearest")
ECA_PADDINGS = ("zeros", "circular")
DATA_FORMATS = ("channels_first", "channels_last")
"""Where the channel axis is: ``(N, C, H, W)`` or ``(N, H, W, C)``; every port's ``data_format``."""
FRAMEWORKS = ("torch", "flax", "keras")
"""The frameworks with a port, and a weight layout (``framework_layout(cfg, framework)``)."""
PORTS: dict[str, tuple[str, ...]] = {"torch": ("torch",), "flax": ("flax.linen", "flax.nnx"), "keras": ("keras",)}
"""Each framework's ports, by the names the conformance suite and its command line give them
(``flax`` on the command line stands for both of its ports)."""
EXTRAS: dict[str, str] = {"torch": "torch", "flax": "flax", "keras": "tf"}
"""The pip extra of attnspec that installs each framework (``pip install "attnspec[tf]"``; pyproject.toml)."""
REQUIRES: dict[str, tuple[str, ...]] = {"torch": ("torch",), "flax": ("jax", "flax"), "keras": ("keras", "tensorflow")}
"""The top-level packages each framework's ports import (what a missing-framework check looks for)."""
MAX_SIZE = 2**31 - 1
INPUT_DTYPES = ("float16", "bfloat16", "float32", "float64")
"""The dtypes a layer computes in (SPEC.md section 1); anything else is refused by name."""


def _dtype_name(dtype: Any) -> str:
    """``"float32"`` for ``np.float32``, ``torch.float32``, ``jnp.float32``, ``"float32"``, ..."""
    return str(getattr(dtype, "name", None) or getattr(dtype, "__name__", None) or dtype).replace("torch.", "")


"""Largest size (channels, widths, kernel sizes) a config accepts or derives: every framework's int32 dimension limit."""


class ParamSpec(NamedTuple):
    """Shape, kind and trainability of one canonical tensor.

    ``kind`` is one of ``dense`` (weight ``(out, in)``), ``bias``, ``conv2d``
    (``(O, I, kh, kw)``), ``conv1d`` (ECA's ``(k,)``), ``bn_weight``, ``bn_bias``,
    ``bn_mean`` and ``bn_var``; the conversion tables are keyed by it.
    """

    shape: tuple[int, ...]
    kind: str
    trainable: bool


class InitSpec(NamedTuple):
    """How a canonical tensor is initialised: ``uniform`` in ``[-value, value]`` or ``constant``.

    The bounds are PyTorch's defaults (``1 / sqrt(fan_in)`` for weights and biases), so a
    freshly built layer has the same distribution in every framework.
    """

    dist: Literal["uniform", "constant"]
    value: float


# ----------------------------------------------------------------------------- checks


def _fmt(value: Any) -> str:
    """``repr(value)``, shortened for huge ints and long reprs (an error message stays one readable line)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"{'-' if value < 0 else ''}<an int of about {round(value.bit_length() * math.log10(2))} digits>"
    text = repr(value)
    return text if len(text) <= 200 else text[:200] + "..."


def _check_int(name: str, value: Any, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"`{name}` must be an int. Received: {name}={_fmt(value)} of type {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"`{name}` must be an int >= {minimum}. Received: {name}={_fmt(value)}")
    if value > MAX_SIZE:
        raise ValueError(f"`{name}` must be an int <= {MAX_SIZE} (2**31 - 1). Received: {name}={_fmt(value)}")
    return value


def _check_number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"`{name}` must be a number. Received: {name}={_fmt(value)} of type {type(value).__name__}")
    try:
        finite = math.isfinite(value)
    except OverflowError:  # an int beyond float range
        finite = False
    if not finite:
        raise ValueError(f"`{name}` must be finite. Received: {name}={_fmt(value)}")
    return value


def _check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"`{name}` must be a bool. Received: {name}={_fmt(value)} of type {type(value).__name__}")
    return value


def check_training(training: Any, name: str = "training") -> Any:
    """``training`` if it is a bool (Python or NumPy) or a 0-d boolean array/tensor (e.g. traced under
    ``jax.jit``), else a TypeError: a string such as ``"no"`` is truthy and would silently train.

    >>> check_training("no")
    Traceback (most recent call last):
    ...
    TypeError: `training` must be a bool. Received: training='no' of type str
    """
    if isinstance(training, (bool, np.bool_)):
        return training
    dtype = getattr(training, "dtype", None)
    if dtype is not None and str(getattr(dtype, "name", dtype)).replace("torch.", "") == "bool":
        if tuple(getattr(training, "shape", ())) == ():
            return training
    raise TypeError(f"`{name}` must be a bool. Received: {name}={_fmt(training)} of type {type(training).__name__}")


def _check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"`{name}` must be one of {', '.join(map(repr, choices))}. Received: {name}={_fmt(value)}")
    return value


def check_data_format(data_format: Any) -> str:
    """``data_format`` if it is ``"channels_first"`` or ``"channels_last"``, else a ValueError saying so."""
    return _check_choice("data_format", data_format, DATA_FORMATS)


def _check_odd(name: str, value: Any) -> int:
    _check_int(name, value, minimum=1)
    if value % 2 == 0:
        raise ValueError(f"`{name}` must be an odd int >= 1. Received: {name}={_fmt(value)}")
    return value


def _as_tuple(name: str, value: Any) -> tuple[Any, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise TypeError(f"`{name}` must be a sequence of strings. Received: {name}={_fmt(value)}")
    return tuple(value)


def _check_rd(cfg: SEConfig | CBAMConfig) -> None:
    _check_int("channels", cfg.channels, minimum=1)
    ratio = _check_number("rd_ratio", cfg.rd_ratio)
    if not 0 < ratio <= 1:
        raise ValueError(f"`rd_ratio` must be in (0, 1]. Received: rd_ratio={_fmt(cfg.rd_ratio)}")
    if cfg.rd_channels is not None:
        _check_int("rd_channels", cfg.rd_channels, minimum=1)
    _check_int("rd_divisor", cfg.rd_divisor, minimum=1)
    _check_choice("rd_round", cfg.rd_round, ROUNDINGS)
    _check_choice("act", cfg.act, ACTIVATIONS)
    _check_choice("gate", cfg.gate, GATES)
    hidden = _hidden(cfg)
    if hidden > MAX_SIZE:
        raise ValueError(
            f"The hidden width must be <= {MAX_SIZE}. Received: channels={cfg.channels}, rd_ratio={_fmt(cfg.rd_ratio)}, "
            f"rd_divisor={cfg.rd_divisor}, rd_round={cfg.rd_round!r}, which give {hidden}"
        )


def _hidden(cfg: SEConfig | CBAMConfig) -> int:
    if cfg.rd_channels is not None:
        return cfg.rd_channels
    v, d = cfg.channels * cfg.rd_ratio, cfg.rd_divisor
    if cfg.rd_round == "floor":
        return max(d, int(v) // d * d)
    return max(d, int(v + d / 2) // d * d)


# ----------------------------------------------------------------------------- configs

C = TypeVar("C", bound="_ConfigBase")


@dataclasses.dataclass(frozen=True)
class _ConfigBase:
    module: ClassVar[str]
    presets: ClassVar[Mapping[str, Mapping[str, Any]]]
    channels: int

    def to_dict(self) -> dict[str, Any]:
        """The config as JSON-ready plain data (tuples become lists), with its module name."""
        d: dict[str, Any] = {"module": self.module}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            d[f.name] = list(v) if isinstance(v, tuple) else v
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls: type[C], d: Mapping[str, Any]) -> C:
        """Inverse of :meth:`to_dict`; unknown keys are an error, never ignored."""
        if not isinstance(d, Mapping):
            raise TypeError(f"{cls.__name__}.from_dict expects a mapping. Received: {type(d).__name__}")
        d = dict(d)
        bad = [k for k in d if not isinstance(k, str)]
        if bad:
            raise TypeError(f"{cls.__name__}.from_dict expects string keys. Received: keys {_fmt(bad)}")
        module = d.pop("module", cls.module)
        if module != cls.module:
            raise ValueError(f"{cls.__name__}.from_dict expects module={cls.module!r}. Received: module={module!r}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(
                f"{cls.__name__}.from_dict got unknown keys {unknown}. Expected a subset of {sorted(names)}"
            )
        return cls(**d)

    @classmethod
    def preset(cls: type[C], name: str, *, channels: int, **overrides: Any) -> C:
        """A published implementation's configuration (SPEC.md section 6), then ``overrides``."""
        if name not in cls.presets:
            raise ValueError(
                f"{cls.__name__} has no preset {name!r}. Expected one of {', '.join(map(repr, cls.presets))}"
            )
        return cls._build_preset(name, channels, overrides)

    @classmethod
    def _build_preset(cls: type[C], name: str, channels: int, overrides: dict[str, Any]) -> C:
        return cls(channels=channels, **{**cls.presets[name], **overrides})

    def replace(self: C, **changes: Any) -> C:
        return dataclasses.replace(self, **changes)

    # -- input checks, raised from the spec so that every framework says the same thing

    def validate_input(
        self,
        shape: Sequence[int],
        dtype: Any = "float64",
        *,
        data_format: str = "channels_first",
        training: bool = False,
    ) -> None:
        """Check an input's rank, channel count and dtype; ``dtype`` is anything with a name.

        >>> SEConfig(channels=64).validate_input((2, 32, 8, 8))
        Traceback (most recent call last):
        ...
        ValueError: SE(channels=64) expects 64 input channels on axis 1 (data_format="channels_first"). Received input of shape (2, 32, 8, 8).
        """
        check_data_format(data_format)
        check_training(training)
        shape = tuple(int(s) if s is not None else -1 for s in shape)
        name = f"{self.module.upper()}(channels={self.channels})"
        dtype_name = str(getattr(dtype, "name", dtype)).replace("torch.", "")
        if not (dtype_name.startswith("float") or dtype_name.startswith("bfloat")):
            raise TypeError(f"{name} expects a floating-point input. Received: dtype={dtype_name}")
        if len(shape) != 4:
            raise ValueError(
                f"{name} expects a 4-D input ({'N, C, H, W' if data_format == 'channels_first' else 'N, H, W, C'}). "
                f"Received input of shape {shape}."
            )
        axis = 1 if data_format == "channels_first" else 3
        if any(0 <= s < 1 for i, s in enumerate(shape) if i != axis):  # -1: unknown (symbolic) size
            raise ValueError(f"{name} expects N, H, W >= 1. Received input of shape {shape}.")
        if shape[axis] != self.channels:
            raise ValueError(
                f"{name} expects {self.channels} input channels on axis {axis} "
                f'(data_format="{data_format}"). Received input of shape {shape}.'
            )
        if training and self.has_batch_norm:
            n, h, w = (shape[0], shape[2], shape[3]) if axis == 1 else shape[:3]
            if min(n, h, w) > 0 and n * h * w == 1:
                raise ValueError(
                    f"{name} in training mode needs more than one value per channel for batch norm "
                    f"(N * H * W > 1). Received input of shape {shape}."
                )

    def validate_input_dtype(self, dtype: Any, expected: Any = None) -> None:
        """Check an input's dtype: one of SPEC.md's float dtypes and, with ``expected``, that one.

        ``expected`` is the dtype of the module's parameters (a port passes None where its
        framework mixes dtypes by design, e.g. under autocast). Both are anything with a name.

        >>> SEConfig(channels=64).validate_input_dtype("float64", expected="float32")
        Traceback (most recent call last):
        ...
        TypeError: SE(channels=64) with float32 parameters expects a float32 input. Received: dtype=float64
        >>> SEConfig(channels=64).validate_input_dtype("float8_e4m3fn")
        Traceback (most recent call last):
        ...
        TypeError: SE(channels=64) expects a float16, bfloat16, float32 or float64 input. Received: dtype=float8_e4m3fn
        """
        name = f"{self.module.upper()}(channels={self.channels})"
        got = _dtype_name(dtype)
        if got not in INPUT_DTYPES:
            raise TypeError(
                f"{name} expects a {', '.join(INPUT_DTYPES[:-1])} or {INPUT_DTYPES[-1]} input. Received: dtype={got}"
            )
        if expected is not None and got != (want := _dtype_name(expected)):
            raise TypeError(f"{name} with {want} parameters expects a {want} input. Received: dtype={got}")

    @property
    def has_batch_norm(self) -> bool:
        return False


@dataclasses.dataclass(frozen=True)
class SEConfig(_ConfigBase):
    """Squeeze-and-Excitation (SPEC.md section 3)."""

    module: ClassVar[str] = "se"
    presets: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "official": {},
        "timm": {"rd_round": "nearest", "rd_divisor": 8},
        "torchvision": {},
    }
    channels: int
    rd_ratio: float = 1 / 16
    rd_channels: int | None = None
    rd_divisor: int = 1
    rd_round: str = "floor"
    bias: bool = True
    act: str = "relu"
    gate: str = "sigmoid"

    def __post_init__(self) -> None:
        _check_rd(self)
        _check_bool("bias", self.bias)

    @classmethod
    def _build_preset(cls, name: str, channels: int, overrides: dict[str, Any]) -> SEConfig:
        if name == "torchvision" and overrides.get("rd_channels") is None:
            raise ValueError(
                "SE preset 'torchvision' takes the squeeze width explicitly, as "
                "torchvision.ops.SqueezeExcitation does. Received: rd_channels=None"
            )
        return super()._build_preset(name, channels, overrides)

    @property
    def hidden(self) -> int:
        """Width of the bottleneck (SPEC.md section 2, "Hidden width")."""
        return _hidden(self)


@dataclasses.dataclass(frozen=True)
class CBAMConfig(_ConfigBase):
    """Convolutional Block Attention Module (SPEC.md section 4)."""

    module: ClassVar[str] = "cbam"
    presets: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "official": {},
        "timm": {
            "rd_round": "nearest",
            "mlp_bias": False,
            "spatial_pool_order": ("mean", "max"),
            "bn_momentum": 0.1,
        },
    }
    channels: int
    rd_ratio: float = 1 / 16
    rd_channels: int | None = None
    rd_divisor: int = 1
    rd_round: str = "floor"
    mlp_bias: bool = True
    act: str = "relu"
    gate: str = "sigmoid"
    pool_types: tuple[str, ...] = ("avg", "max")
    spatial: bool = True
    spatial_kernel_size: int = 7
    spatial_pool_order: tuple[str, ...] = ("max", "mean")
    spatial_bias: bool = False
    spatial_norm: bool = True
    bn_eps: float = 1e-5
    bn_momentum: float = 0.01

    def __post_init__(self) -> None:
        _check_rd(self)
        _check_bool("mlp_bias", self.mlp_bias)
        pools = _as_tuple("pool_types", self.pool_types)
        object.__setattr__(self, "pool_types", pools)
        if not pools:
            raise ValueError(f"`pool_types` must name at least one of {SPATIAL_POOLS}. Received: pool_types=()")
        for p in pools:
            _check_choice("pool_types", p, SPATIAL_POOLS)
        if len(set(pools)) != len(pools):
            raise ValueError(f"`pool_types` must not repeat a pool. Received: pool_types={pools}")
        _check_bool("spatial", self.spatial)
        _check_odd("spatial_kernel_size", self.spatial_kernel_size)
        order = _as_tuple("spatial_pool_order", self.spatial_pool_order)
        object.__setattr__(self, "spatial_pool_order", order)
        if not all(isinstance(q, str) for q in order) or sorted(order) != sorted(CHANNEL_POOLS):
            raise ValueError(
                f"`spatial_pool_order` must be ('max', 'mean') or ('mean', 'max'). Received: spatial_pool_order={order}"
            )
        _check_bool("spatial_bias", self.spatial_bias)
        _check_bool("spatial_norm", self.spatial_norm)
        if _check_number("bn_eps", self.bn_eps) <= 0:
            raise ValueError(f"`bn_eps` must be > 0. Received: bn_eps={_fmt(self.bn_eps)}")
        if not 0 <= _check_number("bn_momentum", self.bn_momentum) <= 1:
            raise ValueError(f"`bn_momentum` must be in [0, 1]. Received: bn_momentum={_fmt(self.bn_momentum)}")

    @property
    def hidden(self) -> int:
        """Width of the shared channel MLP's bottleneck."""
        return _hidden(self)

    @property
    def has_batch_norm(self) -> bool:
        return self.spatial and self.spatial_norm


@dataclasses.dataclass(frozen=True)
class ECAConfig(_ConfigBase):
    """Efficient Channel Attention (SPEC.md section 5)."""

    module: ClassVar[str] = "eca"
    presets: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "paper": {},
        "timm": {},
        "timm_ceca": {"padding": "circular"},
    }
    channels: int
    kernel_size: int | None = None
    gamma: float = 2
    beta: float = 1
    padding: str = "zeros"
    bias: bool = False
    gate: str = "sigmoid"

    def __post_init__(self) -> None:
        _check_int("channels", self.channels, minimum=1)
        if self.kernel_size is not None:
            _check_odd("kernel_size", self.kernel_size)
        if _check_number("gamma", self.gamma) == 0:
            raise ValueError(f"`gamma` must be non-zero. Received: gamma={_fmt(self.gamma)}")
        _check_number("beta", self.beta)
        t = abs((math.log2(self.channels) + self.beta) / self.gamma)  # psi(C) before rounding; may be inf
        if not t < MAX_SIZE:
            raise ValueError(
                f"`gamma` and `beta` must give an adaptive kernel size <= {MAX_SIZE}. "
                f"Received: gamma={_fmt(self.gamma)}, beta={_fmt(self.beta)} (channels={self.channels}), "
                f"which give |log2(channels) + beta| / gamma = {t:.4g}"
            )
        _check_choice("padding", self.padding, ECA_PADDINGS)
        _check_bool("bias", self.bias)
        _check_choice("gate", self.gate, GATES)

    @classmethod
    def _build_preset(cls, name: str, channels: int, overrides: dict[str, Any]) -> ECAConfig:
        cfg = super()._build_preset(name, channels, overrides)
        if name.startswith("timm") and "kernel_size" not in overrides:
            # timm fixes the size at construction: max(adaptive, 3)
            cfg = cfg.replace(kernel_size=max(cfg.adaptive_kernel_size, 3))
        return cfg

    @property
    def adaptive_kernel_size(self) -> int:
        """The paper's psi(C) as the authors' code computes it."""
        t = int(abs((math.log2(self.channels) + self.beta) / self.gamma))
        return t if t % 2 else t + 1

    @property
    def effective_kernel_size(self) -> int:
        """``kernel_size`` when given, else the adaptive size."""
        return self.kernel_size if self.kernel_size is not None else self.adaptive_kernel_size


Config = Union[SEConfig, CBAMConfig, ECAConfig]  # noqa: UP007 (a runtime alias)
CONFIG_TYPES: dict[str, type[_ConfigBase]] = {cls.module: cls for cls in (SEConfig, CBAMConfig, ECAConfig)}
MODULES: tuple[str, ...] = tuple(CONFIG_TYPES)
"""The spec's module names, ``("se", "cbam", "eca")``: each port's ``module`` and the key of every per-module table."""


def check_module(module: Any) -> str:
    """``module`` if it names a module of the spec (:data:`MODULES`), else a ValueError saying so.

    >>> check_module("bam")
    Traceback (most recent call last):
    ...
    ValueError: `module` must be one of 'se', 'cbam', 'eca'. Received: module='bam'
    """
    return _check_choice("module", module, MODULES)


def config_from_dict(d: Mapping[str, Any]) -> Config:
    """Build whichever config ``d["module"]`` names."""
    if not isinstance(d, Mapping):
        raise TypeError(f"A config must be a mapping with a 'module' key. Received: {type(d).__name__}")
    return CONFIG_TYPES[check_module(d.get("module"))].from_dict(d)  # type: ignore[return-value]


def make_config(module: str, channels: int, *, preset: str | None = None, **knobs: Any) -> Config:
    """The config a port's constructor describes: ``preset`` (if any), then the knobs given.

    Every port builds its config through this, so every framework accepts and rejects the
    same arguments with the same messages.

    >>> make_config("cbam", 64, preset="timm", spatial_kernel_size=3).spatial_kernel_size
    3
    >>> make_config("eca", 64, kernal_size=3)
    Traceback (most recent call last):
    ...
    TypeError: ECA got an unexpected keyword argument 'kernal_size'. Expected one of: kernel_size, gamma, beta, padding, bias, gate
    """
    cls = CONFIG_TYPES[check_module(module)]
    names = [f.name for f in dataclasses.fields(cls) if f.name != "channels"]
    for k in knobs:
        if k not in names:
            raise TypeError(
                f"{module.upper()} got an unexpected keyword argument {k!r}. Expected one of: {', '.join(names)}"
            )
    if preset is None:
        return cls(channels=channels, **knobs)  # type: ignore[return-value]
    return cls.preset(preset, channels=channels, **knobs)  # type: ignore[return-value]


def knob_names(module: str) -> tuple[str, ...]:
    """The keyword arguments (besides ``channels``) of ``module``'s config, in declaration order."""
    return tuple(f.name for f in dataclasses.fields(CONFIG_TYPES[check_module(module)]) if f.name != "channels")


def as_config(cfg: Any) -> Config:
    """A spec config from a config or its :meth:`to_dict` (a plain mapping with a ``"module"`` key).

    What every port's ``from_config`` accepts (Keras's convention: ``from_config`` takes a dict).

    >>> as_config({"module": "eca", "channels": 16}) == ECAConfig(16)
    True
    >>> as_config("se")
    Traceback (most recent call last):
    ...
    TypeError: `cfg` must be an SEConfig, CBAMConfig or ECAConfig, or a dict from its to_dict(). Received: cfg='se' of type str
    """
    if isinstance(cfg, Mapping):
        return config_from_dict(cfg)
    if not isinstance(cfg, (SEConfig, CBAMConfig, ECAConfig)):
        raise TypeError(
            "`cfg` must be an SEConfig, CBAMConfig or ECAConfig, or a dict from its to_dict(). "
            f"Received: cfg={_fmt(cfg)} of type {type(cfg).__name__}"
        )
    return cfg


def check_config(cfg: Any) -> Config:
    """``cfg`` if it is a spec config object (not its dict: see :func:`as_config`), else a TypeError saying so."""
    if not isinstance(cfg, (SEConfig, CBAMConfig, ECAConfig)):
        raise TypeError(
            "`cfg` must be a spec config. Expected an SEConfig, CBAMConfig or ECAConfig. "
            f"Received: cfg={_fmt(cfg)} of type {type(cfg).__name__}"
        )
    return cfg


# ----------------------------------------------------------------------------- layout


def _dense(prefix: str, n_out: int, n_in: int, bias: bool) -> dict[str, ParamSpec]:
    out = {f"{prefix}.weight": ParamSpec((n_out, n_in), "dense", True)}
    if bias:
        out[f"{prefix}.bias"] = ParamSpec((n_out,), "bias", True)
    return out


def _mlp(prefix: str, channels: int, hidden: int, bias: bool) -> dict[str, ParamSpec]:
    return {**_dense(f"{prefix}fc1", hidden, channels, bias), **_dense(f"{prefix}fc2", channels, hidden, bias)}


def param_layout(cfg: Config) -> dict[str, ParamSpec]:
    """Canonical name -> :class:`ParamSpec`, in a fixed order, BN running statistics included.

    >>> for name, spec in param_layout(CBAMConfig(channels=64, spatial_norm=False)).items():
    ...     print(name, spec.shape, spec.kind, spec.trainable)
    channel.fc1.weight (4, 64) dense True
    channel.fc1.bias (4,) bias True
    channel.fc2.weight (64, 4) dense True
    channel.fc2.bias (64,) bias True
    spatial.conv.weight (1, 2, 7, 7) conv2d True
    """
    check_config(cfg)
    if isinstance(cfg, SEConfig):
        return _mlp("", cfg.channels, cfg.hidden, cfg.bias)
    if isinstance(cfg, ECAConfig):
        out = {"conv.weight": ParamSpec((cfg.effective_kernel_size,), "conv1d", True)}
        if cfg.bias:
            out["conv.bias"] = ParamSpec((1,), "bias", True)
        return out
    out = _mlp("channel.", cfg.channels, cfg.hidden, cfg.mlp_bias)
    if cfg.spatial:
        k = cfg.spatial_kernel_size
        out["spatial.conv.weight"] = ParamSpec((1, 2, k, k), "conv2d", True)
        if cfg.spatial_bias:
            out["spatial.conv.bias"] = ParamSpec((1,), "bias", True)
        if cfg.spatial_norm:
            out["spatial.bn.weight"] = ParamSpec((1,), "bn_weight", True)
            out["spatial.bn.bias"] = ParamSpec((1,), "bn_bias", True)
            out["spatial.bn.running_mean"] = ParamSpec((1,), "bn_mean", False)
            out["spatial.bn.running_var"] = ParamSpec((1,), "bn_var", False)
    return out


def _fan_in(spec: ParamSpec) -> int:
    return math.prod(spec.shape[1:]) if spec.kind in ("dense", "conv2d") else math.prod(spec.shape)


def param_init(cfg: Config) -> dict[str, InitSpec]:
    """Initial distribution of every canonical tensor (PyTorch's defaults).

    Weights and biases are uniform in ``[-1/sqrt(fan_in), 1/sqrt(fan_in)]`` (a bias uses its
    weight's fan-in); BN starts at weight 1, bias 0, mean 0, var 1.
    """
    layout = param_layout(cfg)
    constants = {"bn_weight": 1.0, "bn_bias": 0.0, "bn_mean": 0.0, "bn_var": 1.0}
    out: dict[str, InitSpec] = {}
    for name, spec in layout.items():
        if spec.kind in constants:
            out[name] = InitSpec("constant", constants[spec.kind])
        else:
            weight = layout[name.rsplit(".", 1)[0] + ".weight"] if spec.kind == "bias" else spec
            out[name] = InitSpec("uniform", 1.0 / math.sqrt(_fan_in(weight)))
    return out
