"""What the three Linen modules share: declaring the spec's variables and running the shared math."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import operator
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from reference_numpy import Config, Registry, check_data_format, constructor_signature, make_config

from .. import _ops
from .._layout import PARAMS, Entry, entries, float_dtype, initializer, split


class _Scope(nn.Module):
    """One sub-module of the spec's Flax layout (``channel``, ``channel.fc1``, ...), declaring the variables below it."""

    entries: tuple[Entry, ...]  # keys relative to this scope
    param_dtype: Any

    @nn.compact
    def __call__(self) -> dict[str, Any]:
        return _declare(self, self.entries, self.param_dtype)


def _declare(module: nn.Module, items: tuple[Entry, ...], param_dtype: Any) -> dict[str, Any]:
    """Declare ``items`` (keys relative to ``module``): leaves in ``module``, the rest in named sub-scopes.

    Returns key -> the weight's value, or the Linen ``Variable`` of a running statistic.
    """
    out: dict[str, Any] = {}
    children: dict[str, list[Entry]] = {}
    for e in items:
        head, _, rest = e.key.partition(".")
        if rest:
            children.setdefault(head, []).append(e._replace(key=rest))
        elif e.collection == PARAMS:
            out[head] = module.param(head, initializer(e.init), e.shape, param_dtype)
        else:
            out[head] = module.variable(e.collection, head, initializer(e.init), None, e.shape, param_dtype)
    for head, sub in children.items():
        out.update({f"{head}.{k}": v for k, v in _Scope(tuple(sub), param_dtype, name=head)().items()})
    return out


_CLASSES: Registry[type[Attention]] = Registry("flax_impl.linen")


class Attention(nn.Module):
    """Base of the Linen modules :class:`SqueezeExcite`, :class:`CBAM` and :class:`ECA`.

    A module is one spec config plus how to compute it. Build one with
    ``Module.create(channels, *, <knobs>, preset=None, <fields>)`` (the arguments every port's
    constructor takes), ``Module(config=cfg)`` or ``flax_impl.linen.from_config(cfg)``.
    The skeleton (``reference_numpy.ports``): a subclass sets ``module`` (which registers it for
    :func:`class_for`); ``_build`` declares the variables and ``_attend`` computes.

    Attributes:
      config: the spec config (``reference_numpy.SEConfig`` / ``CBAMConfig`` / ``ECAConfig``),
        which owns every knob, preset, derived size and input check.
      data_format: ``"channels_last"`` (N, H, W, C; the default) or ``"channels_first"``.
      dtype: the computation dtype; ``None`` computes in the input's dtype. The output always
        has the input's dtype.
      param_dtype: the dtype of the weights and running statistics.

    Input shape:
      ``(N, H, W, C)`` (``channels_last``) or ``(N, C, H, W)`` (``channels_first``).

    Output shape:
      The input's shape and dtype.
    """

    module: ClassVar[str]
    config: Config
    data_format: str = "channels_last"
    dtype: Any = None
    param_dtype: Any = jnp.float32

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _CLASSES.register(cls)
        # help() and inspect.signature() of create list every knob with the spec's default, then the fields
        create = Attention.__dict__["create"].__func__

        @functools.wraps(create)
        def create_with_knobs(klass: type[Attention], *args: Any, **kwargs: Any) -> Any:
            return create(klass, *args, **kwargs)

        options = [
            inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default)
            for f in dataclasses.fields(cls)
            if f.init and f.name not in ("config", "parent")
        ]
        create_with_knobs.__signature__ = constructor_signature(cls.module, options, self_parameter=True)  # type: ignore[attr-defined]
        cls.create = classmethod(create_with_knobs)  # type: ignore[assignment,method-assign]

    def __post_init__(self) -> None:
        if getattr(self.config, "module", None) != self.module:
            raise TypeError(
                f"{type(self).__name__} expects a {self.module.upper()} config. Received: config={self.config!r}"
            )
        # checked when the module is built, not at its first call
        check_data_format(self.data_format)
        float_dtype("dtype", self.dtype, allow_none=True)
        float_dtype("param_dtype", self.param_dtype)
        super().__post_init__()

    @classmethod
    def create(cls, channels: int, *, preset: str | None = None, **kwargs: Any) -> Any:
        """The module from ``channels``, a ``preset`` and knobs, as every port's constructor takes them.

        Keyword arguments naming a field of the module (``data_format``, ``dtype``,
        ``param_dtype``, ``name``, ...) set it; the others are the spec's knobs, checked by
        ``reference_numpy.make_config`` (an unknown name is a ``TypeError``).
        """
        fields = {f.name for f in dataclasses.fields(cls)} - {"config"}
        options = {k: kwargs.pop(k) for k in list(kwargs) if k in fields}
        return cls(config=make_config(cls.module, channels, preset=preset, **kwargs), **options)

    def _build(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Declare the variables of the spec's Flax layout: (weights, running-statistic ``Variable``s) by key."""
        return split(_declare(self, entries(self.config), self.param_dtype), self.config)

    def _attend(self, x: jax.Array, training: bool, axis_name: str | None) -> jax.Array:
        weights, stats = self._build()
        y, new_stats = _ops.apply(
            self.config,
            weights,
            {k: v.value for k, v in stats.items()},
            x,
            training=training,
            data_format=self.data_format,
            dtype=self.dtype,
            axis_name=axis_name,
        )
        if not self.is_initializing():
            for k, v in new_stats.items():
                stats[k].value = v
        return y

    def attention_maps(self, x: jax.Array, training: bool = False) -> dict[str, jax.Array]:
        """The gates this module multiplies ``x`` by: ``{"channel": (N, C)}``, and CBAM's ``"spatial": (N, 1, H, W)``.

        Call it on initialised variables: ``model.apply(variables, x, method="attention_maps")``.
        ``training`` selects CBAM's batch statistics; nothing is updated. See :mod:`flax_impl.maps`.
        """
        from ..maps import attention_maps

        held = self.variables
        values = {
            e.key: functools.reduce(operator.getitem, e.key.split("."), held[e.collection])
            for e in entries(self.config)
        }
        weights, stats = split(values, self.config)
        return attention_maps(self, weights, stats, x, training=training, axis_name=getattr(self, "axis_name", None))

    @nn.compact
    def __call__(self, x: jax.Array, training: bool = False) -> jax.Array:
        """``x`` scaled by the attention; ``training`` only matters to batch norm (CBAM)."""
        return self._attend(x, training, None)


class_for = _CLASSES.class_for  # the class of a spec module: class_for("cbam") is CBAM
