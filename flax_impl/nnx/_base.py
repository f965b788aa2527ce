"""What the three NNX modules share: building the spec's variables and running the shared math."""

from __future__ import annotations

import functools
import inspect
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from flax import nnx

from reference_numpy import knob_names, make_config
from reference_numpy.config import check_data_format

from .. import _ops
from .._layout import PARAMS, entries, float_dtype, initializer, split


class Node(nnx.Module):
    """A sub-module of the spec's Flax layout (``channel``, ``channel.fc1``, ``spatial.bn``, ...).

    It only holds the variables below it, as attributes named like the Flax layout.
    """


def _signature(cls: type[Attention]) -> inspect.Signature:
    """What ``help()`` and ``inspect.signature`` show for a module class: ``channels``, every knob
    with the spec's default, then the constructor's own options.

    The constructor takes the knobs as ``**knobs`` and passes on only those given, so that a
    preset is not overridden by a default; this only documents them.
    """
    defaults = make_config(cls.spec_module, 1)
    kw = inspect.Parameter.KEYWORD_ONLY
    params = [inspect.Parameter("channels", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=int)]
    params += [inspect.Parameter(k, kw, default=getattr(defaults, k)) for k in knob_names(cls.spec_module)]
    options: dict[str, inspect.Parameter] = {}
    for klass in reversed([k for k in cls.__mro__ if issubclass(k, Attention) and "__init__" in k.__dict__]):
        for p in inspect.signature(klass.__init__).parameters.values():
            if p.kind == kw:
                options[p.name] = p
    rngs = options.pop("rngs")
    return inspect.Signature([*params, *options.values(), rngs])


class Attention(nnx.Module):
    """Base of the NNX modules :class:`SqueezeExcite`, :class:`CBAM` and :class:`ECA`.

    Builds the spec config, holds its variables (named as in the spec's Flax layout) and runs
    the shared math.

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

    spec_module: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "spec_module" in cls.__dict__:
            cls.__signature__ = _signature(cls)  # type: ignore[attr-defined]

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
        self.config = make_config(self.spec_module, channels, preset=preset, **knobs)
        check_data_format(data_format)
        float_dtype("dtype", dtype, allow_none=True)
        float_dtype("param_dtype", param_dtype)
        self.data_format, self.dtype, self.param_dtype = data_format, dtype, param_dtype
        for e in entries(self.config):
            *path, leaf = e.key.split(".")
            node: nnx.Module = self
            for part in path:
                if not hasattr(node, part):
                    setattr(node, part, Node())
                node = getattr(node, part)
            kind = nnx.Param if e.collection == PARAMS else nnx.BatchStat
            key = rngs.params() if e.init.dist == "uniform" else None
            setattr(node, leaf, kind(initializer(e.init)(key, e.shape, param_dtype)))

    def _variables(self) -> dict[str, nnx.Variable]:
        """Key (its Flax path without the collection, e.g. ``"spatial.bn.mean"``) -> variable."""
        root: Any = self
        return {e.key: functools.reduce(getattr, e.key.split("."), root) for e in entries(self.config)}

    def _run(self, x: jax.Array, training: bool, axis_name: str | None) -> jax.Array:
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
        return self._run(x, False, None)

    def _maps(self, x: jax.Array, training: bool, axis_name: str | None) -> dict[str, jax.Array]:
        from ..maps import attention_maps

        weights, stats = split({k: v.get_value() for k, v in self._variables().items()}, self.config)
        return attention_maps(self, weights, stats, x, training=training, axis_name=axis_name)

    def attention_maps(self, x: jax.Array) -> dict[str, jax.Array]:
        """The gates this module multiplies ``x`` by: ``{"channel": (N, C)}`` (see :mod:`flax_impl.maps`)."""
        return self._maps(x, False, None)
