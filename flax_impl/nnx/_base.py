"""What the three NNX modules share: building the spec's variables and running the shared math."""

from __future__ import annotations

import functools
import inspect
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from flax import nnx

from reference_numpy import Registry, check_data_format, make_config, show_constructor

from .. import _ops
from .._layout import PARAMS, entries, float_dtype, initializer, split


class Node(nnx.Module):
    """A sub-module of the spec's Flax layout (``channel``, ``channel.fc1``, ``spatial.bn``, ...).

    It only holds the variables below it, as attributes named like the Flax layout.
    """


def _options(cls: type[Attention]) -> list[inspect.Parameter]:
    """The keyword-only options of ``cls``'s constructors besides ``preset``, base class first, ``rngs`` last."""
    options: dict[str, inspect.Parameter] = {}
    for klass in reversed([k for k in cls.__mro__ if issubclass(k, Attention) and "__init__" in k.__dict__]):
        for p in inspect.signature(klass.__init__).parameters.values():
            if p.kind == p.KEYWORD_ONLY and p.name != "preset":
                options[p.name] = p
    rngs = options.pop("rngs")
    return [*options.values(), rngs]


_CLASSES: Registry[type[Attention]] = Registry("flax_impl.nnx")


class Attention(nnx.Module):
    """Base of the NNX modules :class:`SqueezeExcite`, :class:`CBAM` and :class:`ECA`.

    Builds the spec config, holds its variables (named as in the spec's Flax layout) and runs
    the shared math. The skeleton (``reference_numpy.ports``): a subclass sets ``module`` (which
    registers it for :func:`class_for`); ``_build`` creates the variables and ``_attend`` computes.

    Args:
      channels: the number of input channels.
      preset: a published implementation's configuration (SPEC.md section 6), applied
        before the knobs.
      data_format: ``"channels_last"`` (N, H, W, C; the default) or ``"channels_first"``.
      dtype: the computation dtype; ``None`` computes in the input's dtype. The output always
        has the input's dtype.
      param_dtype: the dtype of the weights and running statistics.
      rngs: the ``nnx.Rngs`` whose ``params`` stream initialises the weights.
      **knobs: the spec's knobs, checked by ``reference_numpy.make_config`` (an unknown
        name is a ``TypeError`` listing the known ones).

    Input shape:
      ``(N, H, W, C)`` (``channels_last``) or ``(N, C, H, W)`` (``channels_first``).

    Output shape:
      The input's shape and dtype.
    """

    module: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _CLASSES.register(cls)
        # help() and inspect.signature() list every knob with the spec's default; the
        # constructor itself forwards only the knobs given, so that a preset is not overridden.
        show_constructor(cls, _options(cls))

    def __init__(
        self,
        channels: int,
        *,
        preset: str | None = None,
        data_format: str = "channels_last",
        dtype: Any = None,
        param_dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
        **knobs: Any,
    ) -> None:
        self.config = make_config(self.module, channels, preset=preset, **knobs)
        check_data_format(data_format)
        float_dtype("dtype", dtype, allow_none=True)
        float_dtype("param_dtype", param_dtype)
        self.data_format, self.dtype, self.param_dtype = data_format, dtype, param_dtype
        self._build(rngs)

    def _build(self, rngs: nnx.Rngs) -> None:
        """Create the variables of the spec's Flax layout, as attributes of nested nodes, drawn as ``param_init`` says."""
        for e in entries(self.config):
            *path, leaf = e.key.split(".")
            node: nnx.Module = self
            for part in path:
                if not hasattr(node, part):
                    setattr(node, part, Node())
                node = getattr(node, part)
            kind = nnx.Param if e.collection == PARAMS else nnx.BatchStat
            key = rngs.params() if e.init.dist == "uniform" else None
            setattr(node, leaf, kind(initializer(e.init)(key, e.shape, self.param_dtype)))

    def _variables(self) -> dict[str, nnx.Variable]:
        """Key (its Flax path without the collection, e.g. ``"spatial.bn.mean"``) -> variable."""
        root: Any = self
        return {e.key: functools.reduce(getattr, e.key.split("."), root) for e in entries(self.config)}

    def _attend(self, x: jax.Array, training: bool, axis_name: str | None) -> jax.Array:
        variables = self._variables()
        weights, stats = split({k: v.get_value() for k, v in variables.items()}, self.config)
        y, new_stats = _ops.apply(
            self.config,
            weights,
            stats,
            x,
            training=training,
            data_format=self.data_format,
            dtype=self.dtype,
            axis_name=axis_name,
        )
        for k, v in new_stats.items():
            variables[k].set_value(v)
        return y

    def __call__(self, x: jax.Array) -> jax.Array:
        """``x`` scaled by the attention."""
        return self._attend(x, False, None)

    def _maps(self, x: jax.Array, training: bool, axis_name: str | None) -> dict[str, jax.Array]:
        from ..maps import attention_maps

        weights, stats = split({k: v.get_value() for k, v in self._variables().items()}, self.config)
        return attention_maps(self, weights, stats, x, training=training, axis_name=axis_name)

    def attention_maps(self, x: jax.Array) -> dict[str, jax.Array]:
        """The gates this module multiplies ``x`` by: ``{"channel": (N, C)}`` (see :mod:`flax_impl.maps`)."""
        return self._maps(x, False, None)


class_for = _CLASSES.class_for  # the class of a spec module: class_for("cbam") is CBAM
