"""Canonical weights <-> Linen variables, through the spec's Flax conversion table."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np

from reference_numpy import (
    Config,
    as_config,
    check_strict,
    flatten,
    framework_layout,
    from_framework,
    nest,
    staged_canonical,
)

from .._layout import float_dtype
from ._base import Attention


def load_canonical(module: Attention, params: Mapping[str, Any], strict: bool = True) -> Attention:
    """Load canonical params (NumPy or any framework's arrays) into ``module``; returns ``module``, bound to them.

    Linen modules hold no state: the variables live apart from the module, and the module that
    holds weights is one bound to them (``module.bind(variables)``). So where the other ports
    change the module in place and return it, this returns ``module`` bound to the loaded
    variables; its ``.variables`` is the ``{"params": ..., "batch_stats": ...}`` dict to pass
    to ``apply``. ``module`` itself is not changed.

    - ``module`` bound: its variables are loaded into (each array cast to the dtype of the
      variable it replaces), and with ``strict=False`` the canonical names left out keep their
      values.
    - ``module`` unbound: every variable comes from ``params``, in ``module.param_dtype``, so
      ``strict`` must be True (what would the names left out hold?).

    Everything is checked and converted before anything is built (``reference_numpy.staged_canonical``),
    as in every port: every missing (when ``strict``), unexpected or mis-shaped canonical key in
    one ``reference_numpy.KeyMismatchError``, values that are not real numbers in one
    ``TypeError``, finite values that would overflow a variable's dtype in one ``ValueError``.

    >>> import jax, jax.numpy as jnp
    >>> from flax_impl import linen
    >>> eca = linen.ECA.create(64, kernel_size=5)
    >>> bound = linen.load_canonical(eca, {"conv.weight": [0.0, 0.5, 1.0, 0.5, 0.0]})
    >>> jax.tree_util.tree_map(jnp.shape, bound.variables), linen.to_canonical(bound)["conv.weight"].tolist()
    ({'params': {'conv': {'kernel': (5, 1, 1)}}}, [0.0, 0.5, 1.0, 0.5, 0.0])
    >>> eca.apply(bound.variables, jnp.ones((2, 7, 7, 64))).shape
    (2, 7, 7, 64)
    >>> bound = linen.load_canonical(bound, {"conv.weight": [1.0, 0.0, 0.0, 0.0, 0.0]}, strict=False)
    """
    if not isinstance(module, Attention):
        raise TypeError(f"`module` must be an attnspec Linen module. Received: {type(module).__name__}")
    check_strict(strict)
    if module.scope is None:
        if not strict:
            raise ValueError(
                "load_canonical(..., strict=False) loads a subset into the variables of a bound module "
                "(`module.bind(variables)`); an unbound Linen module holds none. Received: an unbound "
                f"{type(module).__name__}"
            )
        return module.bind(_variables(module.config, params, module.param_dtype))
    held = flatten(module.variables)
    unbound, _ = module.unbind()
    return unbound.bind(_variables(module.config, params, None, held=held, strict=strict))


def _variables(
    cfg: Config,
    params: Mapping[str, Any],
    param_dtype: Any,
    *,
    held: Mapping[str, Any] | None = None,
    strict: bool = True,
) -> dict[str, Any]:
    """Nested Linen variables: ``held`` (flat, collection first) with ``params`` loaded, or ``params`` alone in ``param_dtype``."""
    layout = framework_layout(cfg, "flax")
    dtypes = {name: jnp.dtype(param_dtype) if held is None else held[p.key].dtype for name, p in layout.items()}
    staged = staged_canonical(cfg, params, "flax", strict=strict, dtypes=dtypes)
    flat = dict(held or {})
    flat.update({layout[name].key: jnp.asarray(a, dtype=dtypes[name]) for name, a in staged.items()})
    return nest(flat)


def from_canonical(cfg: Config, params: Mapping[str, Any], *, param_dtype: Any = jnp.float32) -> dict[str, Any]:
    """Canonical params (NumPy or any framework's arrays) -> ``{"params": ..., "batch_stats": ...}``.

    The variables of :func:`load_canonical` for an unbound module of ``cfg``, with the same checks.

    >>> import jax, jax.numpy as jnp
    >>> from reference_numpy import SEConfig, init_params
    >>> cfg = SEConfig(channels=32, rd_channels=4)
    >>> variables = from_canonical(cfg, init_params(cfg))
    >>> jax.tree_util.tree_map(jnp.shape, variables)
    {'params': {'fc1': {'bias': (4,), 'kernel': (32, 4)}, 'fc2': {'bias': (32,), 'kernel': (4, 32)}}}
    """
    cfg = as_config(cfg)
    return _variables(cfg, params, float_dtype("param_dtype", param_dtype))


def to_canonical(module: Attention | Config, variables: Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
    """Linen variables (``params`` and, with batch norm, ``batch_stats``) -> canonical NumPy arrays.

    ``to_canonical(bound_module)`` reads the variables a module is bound to (what
    :func:`load_canonical` returns), as every port's ``to_canonical(module)``;
    ``to_canonical(cfg, variables)`` reads ``variables`` of a module of config ``cfg``. The
    arrays keep their dtype; every missing, unexpected or mis-shaped key is reported at once.
    """
    if isinstance(module, Attention):
        if variables is None:
            if module.scope is None:
                raise ValueError(
                    "to_canonical(module) reads the variables of a bound module (`module.bind(variables)`); "
                    f"pass an unbound one with its variables: to_canonical(module, variables). Received: an unbound "
                    f"{type(module).__name__}"
                )
            variables = module.variables
        module = module.config
    if variables is None:
        raise TypeError(
            "to_canonical(cfg, variables) needs `variables`, the Linen variables of a module of `cfg`. "
            "Received: variables=None"
        )
    if not isinstance(variables, Mapping):
        raise TypeError(f"`variables` must be Linen variables (a mapping). Received: {type(variables).__name__}")
    return from_framework(module, flatten(variables), "flax")
