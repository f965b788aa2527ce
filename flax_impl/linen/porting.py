"""Linen variables <-> PyTorch state dicts (SPEC.md section 7), through ``reference_numpy.porting``.

The PyTorch module path of a Linen scope is the dot-join of its scope names:
``("layer1", "0", "conv1")`` (nested modules named ``"layer1"``, ``"0"``, ``"conv1"``) and a
scope named ``"layer1.0.conv1"`` both take ``layer1.0.conv1.weight``. Linen variables carry no
module types, so each scope's kind is read off its variables: ``kernel`` of rank 4 is a
convolution (grouped and depthwise ones included: ``feature_group_count``), of rank 2 a dense
layer; ``scale``/``bias`` with ``batch_stats`` ``mean``/``var`` a batch norm, without them a
layer norm; a scope whose whole subtree is exactly the Flax layout of an SE, CBAM or ECA config
is that attention block (``reference_numpy.porting.infer_attention_config``; knobs that no
shape shows, such as CBAM's ``spatial_pool_order``, are taken to be the PyTorch dialect's own,
unless ``configs``, e.g. from :func:`attention_configs`, gives the blocks' real configs).
Only the ``params`` and ``batch_stats`` collections are read; other collections are kept as they are.

>>> import jax, jax.numpy as jnp, numpy as np
>>> from flax import linen as nn
>>> from flax_impl import linen
>>> class Net(nn.Module):
...     @nn.compact
...     def __call__(self, x):
...         x = nn.Conv(4, (3, 3), use_bias=False, name="conv")(x)
...         return linen.ECA.create(4, kernel_size=3, name="se")(x)
>>> variables = Net().init(jax.random.key(0), jnp.ones((1, 8, 8, 3)))
>>> sd = {"conv.weight": np.ones((4, 3, 3, 3), np.float32), "se.conv.weight": np.ones((1, 1, 3), np.float32)}
>>> variables = linen.load_torch_state_dict(variables, sd)
>>> jax.tree_util.tree_map(jnp.shape, variables)
{'params': {'conv': {'kernel': (3, 3, 3, 4)}, 'se': {'conv': {'kernel': (3, 1, 1)}}}}
>>> all(np.array_equal(v, sd[k]) for k, v in linen.to_torch_state_dict(variables).items())
True
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from reference_numpy import Config, check_config, framework_layout, from_framework_array, to_framework_array
from reference_numpy.porting import (
    DEFAULT_DIALECT,
    Slot,
    export_torch,
    infer_attention_config,
    layer_kind_of_flax_leaves,
    plan_import,
    settle,
)

from ._base import Attention

__all__ = ["attention_configs", "load_torch_state_dict", "to_torch_state_dict"]

_COLLECTIONS = ("params", "batch_stats")
Path = tuple[str, ...]


def _leaves(variables: Mapping[str, Any]) -> dict[Path, Any]:
    """(collection, *scope, leaf) -> array, for the collections the porter reads."""
    if not isinstance(variables, Mapping):
        raise TypeError(f"`variables` must be Linen variables (a mapping). Received: {type(variables).__name__}")
    out: dict[Path, Any] = {}

    def visit(node: Any, path: Path) -> None:
        if isinstance(node, Mapping):
            for k, v in node.items():
                visit(v, (*path, str(k)))
        else:
            out[path] = node

    for collection in _COLLECTIONS:
        if collection in variables:
            visit(variables[collection], (collection,))
    return out


def attention_configs(module: nn.Module, *args: Any, **kwargs: Any) -> dict[str, Config]:
    """The spec config of every attention block of ``module``, by PyTorch module path.

    Found by tracing ``module.init(key, *args, **kwargs)`` for shapes only (``jax.eval_shape``):
    nothing is computed. Pass the result as ``configs`` to :func:`load_torch_state_dict` and
    :func:`to_torch_state_dict` so that each block is checked against its real config.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"`module` must be a Linen module. Received: {type(module).__name__}")
    found: dict[str, Config] = {}

    def record(next_fun: Any, args: Any, kwargs: Any, context: Any) -> Any:
        if isinstance(context.module, Attention) and context.method_name == "__call__":
            found[".".join(context.module.path)] = context.module.config
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(record):
        jax.eval_shape(lambda: module.init(jax.random.key(0), *args, **kwargs))
    return found


def _configs(configs: Mapping[str, Config] | None) -> dict[str, Config]:
    if configs is None:
        return {}
    if not isinstance(configs, Mapping):
        raise TypeError(f"`configs` must map module paths to spec configs. Received: {type(configs).__name__}")
    return {str(k): check_config(v) for k, v in configs.items()}


def _walk(
    leaves: Mapping[Path, Any], configs: Mapping[str, Config]
) -> tuple[list[tuple[Slot, dict[str, Path]]], list[str]]:
    """Every weight-holding scope as (slot, slot variable name -> leaf path), and the problems (uncovered leaves)."""
    scopes: dict[Path, list[Path]] = {}  # scope -> the leaf paths below it
    for path in leaves:
        for i in range(len(path) - 1):
            scopes.setdefault(path[1 : 1 + i], []).append(path)
    found: list[tuple[Slot, dict[str, Path]]] = []
    covered: set[Path] = set()
    seen: set[str] = set()
    problems: list[str] = []

    def rel(path: Path, scope: Path) -> str:
        return ".".join((path[0], *path[1 + len(scope) :]))

    def visit(scope: Path) -> None:
        below = scopes[scope]
        name = ".".join(scope)
        if scope:
            shapes = {rel(p, scope): tuple(np.shape(leaves[p])) for p in below}
            cfg = configs.get(name)
            if cfg is not None:
                seen.add(name)
                expected = {".".join(p.path): p.shape for p in framework_layout(cfg, "flax").values()}
                if expected != shapes:
                    problems.append(f"{name} (its variables are not the Flax layout of the config given: {cfg})")
                    covered.update(below)
                    return
            else:
                cfg = infer_attention_config(shapes)
            if cfg is not None:
                where = {}
                for canonical, p in framework_layout(cfg, "flax").items():
                    where[canonical] = (p.path[0], *scope, *p.path[1:])
                variables = {c: (tuple(np.shape(leaves[p])), leaves[p].dtype) for c, p in where.items()}
                found.append((Slot(name, "attention", variables, cfg, inferred=name not in configs), where))
                covered.update(where.values())
                return
        own = {rel(p, scope): p for p in below if len(p) == len(scope) + 2}
        if own:
            kind = layer_kind_of_flax_leaves({k: tuple(np.shape(leaves[p])) for k, p in own.items()})
            if kind is not None:
                variables = {k: (tuple(np.shape(leaves[p])), leaves[p].dtype) for k, p in own.items()}
                found.append((Slot(name, kind, variables), own))
                covered.update(own.values())
        for child in sorted({p[1 + len(scope)] for p in below if len(p) > len(scope) + 2}, key=_order(below, scope)):
            visit((*scope, child))

    if scopes:
        visit(())
    problems += [f"{'/'.join(p)} (a variable of a scope the porter does not know)" for p in leaves if p not in covered]
    problems += [
        f"{path} (given in `configs`, but no such scope holds variables)" for path in configs if path not in seen
    ]
    return found, problems


def _order(below: list[Path], scope: Path) -> Any:
    first: dict[Any, int] = {}
    for i, p in enumerate(below):
        first.setdefault(p[1 + len(scope)], i)
    return first.__getitem__


def _rebuild(variables: Mapping[str, Any], new: Mapping[Path, Any]) -> dict[str, Any]:
    def visit(node: Any, path: Path) -> Any:
        if isinstance(node, Mapping):
            return {k: visit(v, (*path, str(k))) for k, v in node.items()}
        return new.get(path, node)

    return {k: visit(v, (k,)) if k in _COLLECTIONS else v for k, v in variables.items()}


def load_torch_state_dict(
    variables: Mapping[str, Any],
    state_dict: Mapping[str, Any],
    *,
    strict: bool = True,
    configs: Mapping[str, Config] | None = None,
) -> Any:
    """Linen ``variables`` with a PyTorch state dict (torch tensors or NumPy arrays) loaded into them.

    Tensors are placed by module path (see the module docstring) and converted to Flax's
    layouts; attention blocks go through the canonical layout in whichever PyTorch dialect
    their keys match. ``num_batches_tracked`` is ignored. Every value is cast to the dtype of the
    leaf it replaces; ``variables`` itself is not changed.

    With ``strict=True`` (the default) every missing, unexpected and mis-shaped key and every
    other problem is reported in one ``reference_numpy.PortError``, and the new variables are
    returned. With ``strict=False`` what fits is loaded and ``(variables, report)`` returned, the
    report a ``reference_numpy.PortReport``. ``configs`` (module path -> spec config, e.g. from
    :func:`attention_configs`) gives attention blocks their real configs instead of inferred ones.
    """
    leaves = _leaves(variables)
    found, problems = _walk(leaves, _configs(configs))
    plan = plan_import([slot for slot, _ in found], state_dict, "flax", strict=False, target="Linen variables")
    settle(plan, problems, strict=strict, target="Linen variables")
    new: dict[Path, Any] = {}
    for slot, where in found:
        for leaf, a in plan.arrays.get(slot.path, {}).items():
            new[where[leaf]] = jnp.asarray(a, dtype=leaves[where[leaf]].dtype)
        if slot.path in plan.blocks:
            layout = framework_layout(slot.config, "flax")
            for canonical, a in plan.blocks[slot.path].items():
                target = leaves[where[canonical]]
                new[where[canonical]] = jnp.asarray(to_framework_array(layout[canonical].kind, a, "flax"), target.dtype)
    out = _rebuild(variables, new)
    return out if strict else (out, plan.report)


def to_torch_state_dict(
    variables: Mapping[str, Any], *, dialect: str = DEFAULT_DIALECT, configs: Mapping[str, Config] | None = None
) -> dict[str, np.ndarray]:
    """Linen ``variables`` as a PyTorch state dict of NumPy arrays (dtypes kept), without ``num_batches_tracked``.

    Attention blocks are written in ``dialect``: ``"timm"`` (the default), ``"attnspec"`` (this
    project's ``torch_impl``) or any other of ``reference_numpy.porting.dialects(module)``; ``configs``
    as for :func:`load_torch_state_dict`.
    """
    leaves = _leaves(variables)
    found, problems = _walk(leaves, _configs(configs))
    if problems:
        raise ValueError(f"The porter cannot write these variables: {', '.join(problems)}")
    pairs = []
    for slot, where in found:
        if slot.layer == "attention":
            layout = framework_layout(slot.config, "flax")
            values = {c: from_framework_array(layout[c].kind, np.asarray(leaves[p]), "flax") for c, p in where.items()}
        else:
            values = {leaf: np.asarray(leaves[p]) for leaf, p in where.items()}
        pairs.append((slot, values))
    return export_torch(pairs, "flax", dialect=dialect)
