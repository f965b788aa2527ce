"""Porting whole PyTorch networks (SPEC.md section 7): the tables and the plan, with no framework imported.

A port (``tf_impl``, ``flax_impl.linen``, ``flax_impl.nnx``) describes its model as a list of
:class:`Slot`: one per layer that holds weights, named by the PyTorch module path of the same
layer (``layer1.0.conv1``), with the layer's kind and its variables' shapes and dtypes.
:func:`plan_import` matches a PyTorch state dict against those slots and returns every array
converted to the slot's layout (or a :class:`PortError` listing every problem at once);
:func:`export_torch` goes the other way. The port only walks its model and assigns.

Ordinary layers go through the per-kind tables below: ``Conv2d`` (grouped included) ``(O, I/g,
kh, kw)`` <-> ``(kh, kw, I/g, O)``, depthwise ``(C*m, 1, kh, kw)`` <-> Keras ``DepthwiseConv2D``
``(kh, kw, C, m)``, ``Linear`` ``(out, in)`` <-> ``(in, out)``, batch norm ``weight``/``bias``/
``running_mean``/``running_var`` <-> Flax ``scale``/``bias`` + ``batch_stats`` ``mean``/``var``,
Keras ``gamma``/``beta``/``moving_mean``/``moving_variance``, layer norm ``weight``/``bias`` <->
``scale``/``bias`` or ``gamma``/``beta``. Attention blocks go through the canonical layout: the
keys under the block's path are matched against every PyTorch dialect of its module (this
project's, :data:`ATTNSPEC`, and the published ones of ``THIRD_PARTY``) for the target layer's
config, and CBAM's spatial kernel is reordered when the dialect stacks its two descriptors in
another order than the config. ``num_batches_tracked`` is ignored everywhere.

>>> import numpy as np
>>> slots = [Slot("fc", "dense", {"params.kernel": ((3, 2), "float32"), "params.bias": ((2,), "float32")})]
>>> plan = plan_import(slots, {"fc.weight": np.ones((2, 3)), "fc.bias": np.zeros(2)}, "flax")
>>> {k: v.shape for k, v in plan.arrays["fc"].items()}
{'params.kernel': (3, 2), 'params.bias': (2,)}
>>> plan_import(slots, {"fc.weight": np.ones((3, 2)), "head.bias": np.zeros(2)}, "flax")
Traceback (most recent call last):
...
reference_numpy.porting.PortError: The PyTorch state dict does not fit the flax model (nothing was loaded); missing keys: fc.bias; unexpected keys: head.bias; mis-shaped keys: fc.weight (expected shape (2, 3), received (3, 2)).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from .config import CBAMConfig, Config, ECAConfig, SEConfig, check_config, param_layout
from .convert import THIRD_PARTY, framework_layout, framework_leaf, from_framework_array, to_framework_array
from .params import check_fits, real_arrays

__all__ = [
    "ATTNSPEC",
    "DEFAULT_DIALECT",
    "EXPORT_DOC",
    "LAYERS",
    "LOAD_DOC",
    "Plan",
    "PortError",
    "PortReport",
    "Slot",
    "Walk",
    "dialects",
    "export_torch",
    "infer_attention_config",
    "layer_kind_of_flax_leaves",
    "plan_import",
    "port_leaf",
    "settle",
    "torch_shape",
]

ATTNSPEC = "attnspec"
"""This project's PyTorch dialect (``torch_impl``'s state dicts: ``framework_layout(cfg, "torch")``)."""

DEFAULT_DIALECT = "timm"
"""The dialect :func:`export_torch` writes attention blocks in unless told otherwise (every module has one)."""

SKIPPED = "num_batches_tracked"
"""PyTorch batch norm's step counter: no framework has it, so it is ignored on import and not written on export."""

PORT_FRAMEWORKS = ("flax", "keras")

LAYERS: dict[str, dict[str, str]] = {
    "conv2d": {"weight": "conv2d", "bias": "bias"},
    "depthwise_conv2d": {"weight": "depthwise_conv2d", "bias": "bias"},
    "dense": {"weight": "dense", "bias": "bias"},
    "batch_norm": {"weight": "bn_weight", "bias": "bn_bias", "running_mean": "bn_mean", "running_var": "bn_var"},
    "layer_norm": {"weight": "norm_weight", "bias": "norm_bias"},
}
"""Layer kind -> PyTorch leaf -> tensor kind. ``conv2d`` covers grouped convolutions (and Flax's depthwise
ones, ``feature_group_count=C``); ``depthwise_conv2d`` is Keras's ``DepthwiseConv2D``."""

# tensor kinds this module adds to convert.py's: (leaf per framework, Flax collection)
_EXTRA_LEAVES: dict[str, dict[str, str]] = {
    "depthwise_conv2d": {"flax": "kernel", "keras": "kernel"},
    "norm_weight": {"flax": "scale", "keras": "gamma"},
    "norm_bias": {"flax": "bias", "keras": "beta"},
}


def port_leaf(kind: str, framework: str) -> str:
    """A tensor kind's leaf in ``framework`` (``flax`` or ``keras``); Flax leaves start with their collection.

    >>> port_leaf("bn_var", "flax"), port_leaf("bn_var", "keras"), port_leaf("norm_weight", "keras")
    ('batch_stats.var', 'moving_variance', 'gamma')
    """
    if framework not in PORT_FRAMEWORKS:
        raise ValueError(f"`framework` must be 'flax' or 'keras'. Received: {framework!r}")
    if kind in _EXTRA_LEAVES:
        collection, leaf = "params", _EXTRA_LEAVES[kind][framework]
    else:
        collection, leaf = framework_leaf(kind, framework)
    return f"{collection}.{leaf}" if framework == "flax" else leaf


def _to_port(kind: str, a: np.ndarray, shape: tuple[int, ...], framework: str) -> np.ndarray:
    """PyTorch layout -> the port's layout of ``shape`` (which the depthwise reshape needs)."""
    if kind == "depthwise_conv2d":  # (C*m, 1, kh, kw) -> (kh, kw, C, m)
        kh, kw, c, m = shape
        return a.reshape(c, m, kh, kw).transpose(2, 3, 0, 1)
    if kind in _EXTRA_LEAVES:
        return a
    return to_framework_array(kind, a, framework)


def _from_port(kind: str, a: np.ndarray, framework: str) -> np.ndarray:
    if kind == "depthwise_conv2d":
        kh, kw, c, m = a.shape
        return a.transpose(2, 3, 0, 1).reshape(c * m, 1, kh, kw)
    if kind in _EXTRA_LEAVES:
        return a
    return from_framework_array(kind, a, framework)


def torch_shape(kind: str, shape: Sequence[int], framework: str) -> tuple[int, ...]:
    """The PyTorch shape of a tensor of ``kind`` that has ``shape`` in ``framework``.

    >>> torch_shape("conv2d", (3, 5, 4, 8), "keras"), torch_shape("depthwise_conv2d", (3, 3, 16, 2), "keras")
    ((8, 4, 3, 5), (32, 1, 3, 3))
    """
    return tuple(_from_port(kind, np.empty(tuple(shape), dtype=np.int8), framework).shape)


# ----------------------------------------------------------------------------- reports


@dataclasses.dataclass
class PortReport:
    """What a port of a PyTorch state dict did, by PyTorch key.

    ``loaded``: keys copied into the model. ``missing``: keys the model needs that the state dict
    lacks; ``unexpected``: keys of the state dict that have no place in the model; ``misshaped``:
    ``"key (expected shape ..., received ...)"``; ``problems``: anything else (values that are not
    real numbers, values that overflow the target dtype, layers the porter does not know).
    ``dialects``: attention block path -> the PyTorch dialects whose layout its keys match
    (``("timm", "torchvision")``). ``ignored``: the ``num_batches_tracked`` keys.
    """

    loaded: list[str] = dataclasses.field(default_factory=list)
    missing: list[str] = dataclasses.field(default_factory=list)
    unexpected: list[str] = dataclasses.field(default_factory=list)
    misshaped: list[str] = dataclasses.field(default_factory=list)
    problems: list[str] = dataclasses.field(default_factory=list)
    dialects: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    ignored: list[str] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether every tensor found its place (what ``strict=True`` requires)."""
        return not (self.missing or self.unexpected or self.misshaped or self.problems)

    def describe(self) -> str:
        parts = []
        for label, items in (
            ("missing keys", self.missing),
            ("unexpected keys", self.unexpected),
            ("mis-shaped keys", self.misshaped),
            ("other problems", self.problems),
        ):
            if items:
                parts.append(f"{label}: {', '.join(items)}")
        return "; ".join(parts)

    def __str__(self) -> str:
        head = f"{len(self.loaded)} tensors loaded"
        return f"{head}; {self.describe()}" if not self.ok else head


class PortError(ValueError):
    """A PyTorch state dict that does not fit the model; names every missing, unexpected and mis-shaped key and
    every other problem at once. Nothing was loaded. ``report`` is the :class:`PortReport`."""

    def __init__(self, report: PortReport, target: str):
        self.report = report
        super().__init__(f"The PyTorch state dict does not fit the {target} (nothing was loaded); {report.describe()}.")

    @property
    def missing(self) -> list[str]:
        return self.report.missing

    @property
    def unexpected(self) -> list[str]:
        return self.report.unexpected

    @property
    def misshaped(self) -> list[str]:
        return self.report.misshaped


# ----------------------------------------------------------------------------- slots and plans


class Slot(NamedTuple):
    """One layer of the target model that holds weights.

    ``path``: the PyTorch module path it takes its tensors from (``layer1.0.conv1``). ``layer``:
    a :data:`LAYERS` kind or ``"attention"``. ``variables``: for an ordinary layer, its leaves
    (:func:`port_leaf` names) -> ``(shape, dtype)``; for an attention block, canonical name ->
    ``(canonical shape, dtype)``. ``config``: the attention block's spec config. ``inferred``:
    the config was read off the variables' shapes (Linen), so knobs that shapes do not show
    (CBAM's ``spatial_pool_order``) are taken to be the dialect's own.
    """

    path: str
    layer: str
    variables: Mapping[str, tuple[tuple[int, ...], Any]]
    config: Config | None = None
    inferred: bool = False


@dataclasses.dataclass
class Plan:
    """Arrays ready to assign: ``arrays[path][leaf]`` in the port's layout for ordinary layers,
    ``blocks[path][canonical name]`` for attention blocks (the port's ``load_canonical`` places them)."""

    arrays: dict[str, dict[str, np.ndarray]]
    blocks: dict[str, dict[str, np.ndarray]]
    report: PortReport


class _DialectTensor(NamedTuple):
    key: str  # relative to the block
    shape: tuple[int, ...]
    to_canonical: Callable[[np.ndarray], np.ndarray]
    from_canonical: Callable[[np.ndarray], np.ndarray]


def dialects(module: str) -> tuple[str, ...]:
    """The PyTorch dialects of ``module`` (``se``, ``cbam``, ``eca``), in the order they are tried and named.

    >>> dialects("se")
    ('timm', 'attnspec', 'torchvision', 'senet_pytorch')
    """
    third = [s for m, s in THIRD_PARTY if m == module]
    return (DEFAULT_DIALECT, ATTNSPEC, *[s for s in third if s != DEFAULT_DIALECT])


def _pool_order(cfg: Config, dialect: str, inferred: bool) -> tuple[int, ...] | None:
    """Index map from the dialect's stacking of CBAM's spatial descriptors to the config's, or None when equal.

    The published dialects fix the order (their presets say which); this project's follows the config.
    """
    if not isinstance(cfg, CBAMConfig) or dialect == ATTNSPEC or inferred or dialect not in CBAMConfig.presets:
        return None
    theirs = CBAMConfig.preset(dialect, channels=cfg.channels).spatial_pool_order
    if theirs == cfg.spatial_pool_order:
        return None
    return tuple(theirs.index(p) for p in cfg.spatial_pool_order)


def _dialect_layout(cfg: Config, dialect: str, inferred: bool = False) -> dict[str, _DialectTensor] | None:
    """Canonical name -> where and how the dialect keeps it; None when the dialect cannot hold this config."""
    layout = param_layout(cfg)
    if dialect == ATTNSPEC:
        return {
            name: _DialectTensor(
                p.key,
                p.shape,
                functools.partial(from_framework_array, p.kind, framework="torch"),
                functools.partial(to_framework_array, p.kind, framework="torch"),
            )
            for name, p in framework_layout(cfg, "torch").items()
        }
    table = THIRD_PARTY.get((cfg.module, dialect))
    if table is None or any(name not in table.names for name in layout):
        return None
    out = {}
    order = _pool_order(cfg, dialect, inferred)
    for name, spec in layout.items():
        to_theirs, from_theirs = table.transforms.get(spec.kind, (lambda a: a, lambda a: a))
        if order is not None and name == "spatial.conv.weight":
            inverse = tuple(order.index(i) for i in range(len(order)))
            to_c = lambda a, f=from_theirs, o=order: np.take(f(a), o, axis=1)  # noqa: E731
            from_c = lambda a, t=to_theirs, o=inverse: t(np.take(a, o, axis=1))  # noqa: E731
        else:
            to_c, from_c = from_theirs, to_theirs
        shape = to_theirs(np.empty(spec.shape, dtype=np.int8)).shape
        out[name] = _DialectTensor(table.names[name], tuple(shape), to_c, from_c)
    return out


def _shape(value: Any) -> tuple[int, ...] | None:
    try:
        return tuple(int(s) for s in np.shape(value))
    except (TypeError, ValueError):
        return None


def _array(key: str, value: Any, dtype: Any, report: PortReport) -> np.ndarray | None:
    """``value`` as a real NumPy array that fits ``dtype``, or None with the problem reported."""
    try:
        a = real_arrays({key: value}, what="the PyTorch state dict")[key]
        check_fits({key: a}, dtype, what="the PyTorch state dict")
    except (TypeError, ValueError) as e:
        report.problems.append(str(e))
        return None
    return a


def _claim_block(
    slot: Slot, got: Mapping[str, Any], report: PortReport
) -> tuple[str, dict[str, _DialectTensor], dict[str, str]]:
    """Pick the dialect of an attention block's keys (relative to the block); report what does not match it.

    Returns (dialect, its layout, canonical name -> relative key for the tensors that match).
    """
    cfg = check_config(slot.config)
    shapes = {k: _shape(v) for k, v in got.items()}
    candidates = {d: lay for d in dialects(cfg.module) if (lay := _dialect_layout(cfg, d, slot.inferred)) is not None}
    exact = [
        d
        for d, lay in candidates.items()
        if set(shapes) == {t.key for t in lay.values()} and all(shapes[t.key] == t.shape for t in lay.values())
    ]
    if exact:
        report.dialects[slot.path] = tuple(exact)
        lay = candidates[exact[0]]
        return exact[0], lay, {name: t.key for name, t in lay.items()}

    def score(d: str) -> tuple[int, int]:
        keys = {t.key for t in candidates[d].values()}
        return (len(keys & set(shapes)), -len(set(shapes) - keys))

    best = max(candidates, key=score)  # max keeps the first of equals: the preferred dialect
    lay = candidates[best]
    report.dialects[slot.path] = (best,)
    prefix = slot.path + "."
    matched = {}
    for name, t in lay.items():
        if t.key not in shapes:
            report.missing.append(prefix + t.key)
        elif shapes[t.key] != t.shape:
            report.misshaped.append(f"{prefix}{t.key} (expected shape {t.shape}, received {shapes[t.key]})")
        else:
            matched[name] = t.key
    known = {t.key for t in lay.values()}
    report.unexpected.extend(prefix + k for k in got if k not in known)
    return best, lay, matched


def plan_import(
    slots: Iterable[Slot], state_dict: Mapping[str, Any], framework: str, *, strict: bool = True, target: str = ""
) -> Plan:
    """Match ``state_dict`` (PyTorch keys -> tensors or arrays) against ``slots`` and convert what fits.

    With ``strict`` any missing, unexpected or mis-shaped key or other problem raises one
    :class:`PortError` naming them all; otherwise the plan holds what fits and its report the rest.
    """
    if not isinstance(strict, bool):
        raise TypeError(f"`strict` must be a bool. Received: strict={strict!r} of type {type(strict).__name__}")
    if not isinstance(state_dict, Mapping):
        raise TypeError(
            f"`state_dict` must be a mapping of PyTorch keys to tensors or arrays. Received: {type(state_dict).__name__}"
        )
    report = PortReport()
    todo: dict[str, Any] = {}
    for key, value in state_dict.items():
        if not isinstance(key, str):
            report.problems.append(f"key {key!r} is not a string")
        elif key.rsplit(".", 1)[-1] == SKIPPED:
            report.ignored.append(key)
        else:
            todo[key] = value
    claimed: set[str] = set()
    arrays: dict[str, dict[str, np.ndarray]] = {}
    blocks: dict[str, dict[str, np.ndarray]] = {}
    for slot in slots:
        prefix = slot.path + "."
        if slot.layer == "attention":
            got = {k[len(prefix) :]: v for k, v in todo.items() if k.startswith(prefix)}
            claimed.update(prefix + k for k in got)
            _, lay, matched = _claim_block(slot, got, report)
            block = {}
            for name, rel in matched.items():
                a = _array(prefix + rel, got[rel], slot.variables[name][1], report)
                if a is not None:
                    block[name] = lay[name].to_canonical(a)
                    report.loaded.append(prefix + rel)
            if block:
                blocks[slot.path] = block
            continue
        if slot.layer not in LAYERS:
            raise ValueError(f"`layer` must be 'attention' or one of {', '.join(map(repr, LAYERS))}. Received: {slot}")
        leaves = {}
        for torch_leaf, kind in LAYERS[slot.layer].items():
            leaf = port_leaf(kind, framework)
            if leaf not in slot.variables:
                continue  # the layer has no such tensor (a convolution without bias)
            key = prefix + torch_leaf
            shape, dtype = slot.variables[leaf]
            expected = torch_shape(kind, shape, framework)
            if key not in todo:
                report.missing.append(key)
                continue
            claimed.add(key)
            received = _shape(todo[key])
            if received != expected:
                report.misshaped.append(f"{key} (expected shape {expected}, received {received})")
                continue
            a = _array(key, todo[key], dtype, report)
            if a is not None:
                leaves[leaf] = _to_port(kind, a, tuple(shape), framework)
                report.loaded.append(key)
        if leaves:
            arrays[slot.path] = leaves
    report.unexpected.extend(k for k in todo if k not in claimed)
    if strict and not report.ok:
        raise PortError(report, target or f"{framework} model")
    return Plan(arrays, blocks, report)


def settle(plan: Plan, problems: Iterable[str], *, strict: Any, target: str) -> PortReport:
    """Add a port's own ``problems`` (variables it could not place) to ``plan``'s report; with ``strict``
    raise one :class:`PortError` if anything is wrong. Returns the report. ``strict`` must be a bool."""
    if not isinstance(strict, bool):
        raise TypeError(f"`strict` must be a bool. Received: strict={strict!r} of type {type(strict).__name__}")
    plan.report.problems.extend(problems)
    if strict and not plan.report.ok:
        raise PortError(plan.report, target)
    return plan.report


def export_torch(
    layers: Iterable[tuple[Slot, Mapping[str, Any]]], framework: str, *, dialect: str = DEFAULT_DIALECT
) -> dict[str, np.ndarray]:
    """The PyTorch state dict of a model (without ``num_batches_tracked``), from each slot and its values.

    Values are keyed like the slot's variables: port leaves for ordinary layers (arrays in the
    port's layout), canonical names for attention blocks. Attention blocks are written in
    ``dialect`` (:func:`dialects`). Arrays keep their dtype; every value is a NumPy array.
    """
    out: dict[str, np.ndarray] = {}
    for slot, values in layers:
        prefix = slot.path + "."
        if slot.layer == "attention":
            cfg = check_config(slot.config)
            lay = _dialect_layout(cfg, dialect, slot.inferred)
            if lay is None:
                known = [d for d in dialects(cfg.module) if _dialect_layout(cfg, d, slot.inferred) is not None]
                raise ValueError(
                    f"The {cfg.module.upper()} block at {slot.path!r} cannot be written in the {dialect!r} dialect. "
                    f"Expected one of {', '.join(map(repr, known))}"
                )
            for name, t in lay.items():
                out[prefix + t.key] = np.asarray(t.from_canonical(np.asarray(values[name])))
            continue
        for torch_leaf, kind in LAYERS[slot.layer].items():
            leaf = port_leaf(kind, framework)
            if leaf in values:
                out[prefix + torch_leaf] = np.ascontiguousarray(_from_port(kind, np.asarray(values[leaf]), framework))
    return out


# ----------------------------------------------------------------------------- stateful models: NNX and Keras

LOAD_DOC = """Load a PyTorch state dict (torch tensors or NumPy arrays) into {model}, in place.

Tensors are placed by module path (see the module docstring) and converted to {framework}'s
layouts; attention blocks go through the canonical layout in whichever PyTorch dialect
their keys match. ``num_batches_tracked`` is ignored. Every value is cast to its variable's dtype.

With ``strict=True`` (the default) every missing, unexpected and mis-shaped key, and every
other problem (values that are not real numbers or overflow the variable's dtype, {variable}s of
{holder}s the porter does not know), is reported in one ``reference_numpy.PortError`` and
nothing is changed. With ``strict=False`` what fits is loaded and the rest reported.
Returns the ``reference_numpy.PortReport``.
"""
"""The docstring of every stateful port's ``load_torch_state_dict`` (:meth:`Walk.load`), its words filled in."""

EXPORT_DOC = """{model}'s weights as a PyTorch state dict of NumPy arrays (variables' dtypes kept).

Keys are the module paths of the module docstring plus PyTorch's leaf names, without
``num_batches_tracked`` (PyTorch's ``load_state_dict`` keeps its own count when it is absent).
Attention blocks are written in ``dialect``: ``"timm"`` (the default), ``"attnspec"`` (this
project's ``torch_impl``) or any other of ``reference_numpy.porting.dialects(module)``.
"""
"""The docstring of every stateful port's ``to_torch_state_dict`` (:meth:`Walk.export`)."""


class Walk:
    """What a port's walk over a model that holds its variables (NNX, Keras) found, and the load and
    export over it: the porter's skeleton, written once for both.

    The port adds an entry per layer that holds weights (:meth:`add`, :meth:`add_layer`): its
    slot, the layer itself (what an attention block's ``load_canonical`` and ``to_canonical``
    take) and its leaves (port leaf, or canonical name for a block -> the framework's variable);
    ``unknown`` lists the paths of the variables that no entry holds. ``port`` holds the framework's
    operations: ``describe(variable)`` -> ``(shape, dtype)``, ``stage(array, variable)`` -> the
    array as a value of the variable's dtype, ``assign(variable, value)``, ``to_numpy(variable)``,
    and the port's ``load_canonical`` and ``to_canonical``. ``holder`` and ``variable`` are the
    framework's words (``"module"``, ``"variable"``; ``"layer"``, ``"weight"``) for messages.
    """

    def __init__(self, framework: str, port: Any, *, holder: str, variable: str) -> None:
        self.framework, self.port, self.holder, self.variable = framework, port, holder, variable
        self.found: list[tuple[Slot, Any, dict[str, Any]]] = []
        self.covered: set[int] = set()
        self.unknown: list[str] = []

    def add(self, path: str, layer: str, owner: Any, leaves: Mapping[str, Any], config: Config | None = None) -> None:
        """A layer at ``path`` (a :data:`LAYERS` kind or ``"attention"``, with its ``config``) and its leaves."""
        variables = {n: self.port.describe(v) for n, v in leaves.items()}
        self.found.append((Slot(path, layer, variables, config), owner, dict(leaves)))
        self.covered.update(id(v) for v in leaves.values())

    def add_layer(self, path: str, kind: str, owner: Any, lookup: Callable[[str], Any]) -> None:
        """An ordinary layer of :data:`LAYERS` kind ``kind``, whose variables ``lookup(port leaf)`` finds (None: absent)."""
        leaves = {leaf: lookup(leaf) for leaf in (port_leaf(k, self.framework) for k in LAYERS[kind].values())}
        self.add(path, kind, owner, {leaf: v for leaf, v in leaves.items() if v is not None})

    def load(self, state_dict: Mapping[str, Any], *, strict: bool, target: str) -> PortReport:
        """Load a PyTorch state dict into what was found: every problem first (:func:`plan_import`,
        :func:`settle`), then every value converted, then assigned. Returns the report."""
        plan = plan_import([slot for slot, _, _ in self.found], state_dict, self.framework, strict=False, target=target)
        unknown = [f"{path} (a {self.variable} of a {self.holder} the porter does not know)" for path in self.unknown]
        settle(plan, unknown, strict=strict, target=target)
        blocks, staged = [], []
        for slot, owner, leaves in self.found:
            if slot.path in plan.blocks:
                blocks.append((owner, plan.blocks[slot.path]))
            staged += [
                (leaves[leaf], self.port.stage(a, leaves[leaf])) for leaf, a in plan.arrays.get(slot.path, {}).items()
            ]
        for owner, params in blocks:
            self.port.load_canonical(owner, params, strict=strict)
        for variable, value in staged:
            self.port.assign(variable, value)
        return plan.report

    def export(self, *, dialect: str) -> dict[str, np.ndarray]:
        """The PyTorch state dict of what was found (:func:`export_torch`); attention blocks in ``dialect``."""
        if self.unknown:
            raise ValueError(f"The porter does not know the {self.holder}s holding {', '.join(self.unknown)}")
        pairs = [
            (slot, self.port.to_canonical(owner) if slot.layer == "attention" else self._numpy(leaves))
            for slot, owner, leaves in self.found
        ]
        return export_torch(pairs, self.framework, dialect=dialect)

    def _numpy(self, leaves: Mapping[str, Any]) -> dict[str, np.ndarray]:
        return {leaf: self.port.to_numpy(v) for leaf, v in leaves.items()}


# ----------------------------------------------------------------------------- Linen: layers read off their variables


def layer_kind_of_flax_leaves(shapes: Mapping[str, tuple[int, ...]]) -> str | None:
    """The :data:`LAYERS` kind of a Flax scope's own leaves (``"params.kernel"`` -> shape, ...), or None.

    >>> layer_kind_of_flax_leaves({"params.kernel": (3, 3, 8, 16)})
    'conv2d'
    >>> layer_kind_of_flax_leaves({"params.scale": (8,), "params.bias": (8,), "batch_stats.mean": (8,), "batch_stats.var": (8,)})
    'batch_norm'
    """
    keys = set(shapes)
    if "params.kernel" in keys and keys <= {"params.kernel", "params.bias"}:
        return {4: "conv2d", 2: "dense"}.get(len(shapes["params.kernel"]))
    if {"batch_stats.mean", "batch_stats.var"} <= keys and keys <= {
        "params.scale",
        "params.bias",
        "batch_stats.mean",
        "batch_stats.var",
    }:
        return "batch_norm"
    if keys and keys <= {"params.scale", "params.bias"}:
        return "layer_norm"
    return None


def infer_attention_config(shapes: Mapping[str, tuple[int, ...]]) -> Config | None:
    """The spec config whose Flax layout is exactly ``shapes`` (a scope's leaves, ``"params.fc1.kernel"`` -> shape).

    Only what shapes show is read: widths, biases, kernel sizes, CBAM's spatial branch and its
    batch norm; everything else keeps the spec's defaults (ECA's ``channels`` is 1: its weights
    do not depend on it). None when no SE, CBAM or ECA layout matches.

    >>> infer_attention_config({"params.fc1.kernel": (64, 8), "params.fc2.kernel": (8, 64)})
    SEConfig(channels=64, rd_ratio=0.0625, rd_channels=8, rd_divisor=1, rd_round='floor', bias=False, act='relu', gate='sigmoid')
    """
    keys = set(shapes)
    try:
        cfg: Config
        if "params.conv.kernel" in keys:
            k, *rest = shapes["params.conv.kernel"]
            if rest != [1, 1]:
                return None
            cfg = ECAConfig(channels=1, kernel_size=k, bias="params.conv.bias" in keys)
        elif "params.fc1.kernel" in keys and len(shapes["params.fc1.kernel"]) == 2:
            c, h = shapes["params.fc1.kernel"]
            cfg = SEConfig(channels=c, rd_channels=h, bias="params.fc1.bias" in keys)
        elif "params.channel.fc1.kernel" in keys and len(shapes["params.channel.fc1.kernel"]) == 2:
            c, h = shapes["params.channel.fc1.kernel"]
            kernel = shapes.get("params.spatial.conv.kernel")
            cfg = CBAMConfig(
                channels=c,
                rd_channels=h,
                mlp_bias="params.channel.fc1.bias" in keys,
                spatial=kernel is not None,
                spatial_kernel_size=kernel[0] if kernel else 7,
                spatial_bias="params.spatial.conv.bias" in keys,
                spatial_norm="params.spatial.bn.scale" in keys,
            )
        else:
            return None
    except (TypeError, ValueError):
        return None
    expected = {".".join(p.path): p.shape for p in framework_layout(cfg, "flax").values()}
    return cfg if expected == {k: tuple(v) for k, v in shapes.items()} else None
