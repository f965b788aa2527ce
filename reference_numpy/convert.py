"""Weight layouts as data (SPEC.md section 7): canonical <-> PyTorch / Flax / Keras, and third-party state dicts.

Every port and every third-party format is a table here; the functions below only apply
tables. The per-kind array transforms also serve ordinary layers (a ``Conv2d``, ``Linear`` or
``BatchNorm2d`` of any shape), which is what porting a whole model needs.

>>> from reference_numpy import CBAMConfig, init_params
>>> cfg = CBAMConfig(channels=32, rd_channels=4)
>>> flax = to_framework(cfg, init_params(cfg), "flax")
>>> {k: v.shape for k, v in flax.items() if "spatial" in k}
{'params.spatial.conv.kernel': (7, 7, 2, 1), 'params.spatial.bn.scale': (1,), 'params.spatial.bn.bias': (1,), 'batch_stats.spatial.bn.mean': (1,), 'batch_stats.spatial.bn.var': (1,)}
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np

from .config import FRAMEWORKS, Config, check_config, param_layout
from .params import check_params, match_keys, real_arrays

__all__ = [
    "FRAMEWORKS",
    "THIRD_PARTY",
    "FrameworkParam",
    "export_state_dict",
    "flatten",
    "framework_layout",
    "from_framework",
    "from_framework_array",
    "import_state_dict",
    "nest",
    "to_framework",
    "to_framework_array",
]

Transform = Callable[[np.ndarray], np.ndarray]


def _same(a: np.ndarray) -> np.ndarray:
    return a


def _t(a: np.ndarray) -> np.ndarray:
    return a.T


# kind -> (canonical -> framework, framework -> canonical)
_TORCH: dict[str, tuple[Transform, Transform]] = {
    "conv1d": (lambda a: a.reshape(1, 1, -1), lambda a: a.reshape(-1)),
}
_CHANNELS_LAST: dict[str, tuple[Transform, Transform]] = {
    "dense": (_t, _t),
    "conv2d": (lambda a: a.transpose(2, 3, 1, 0), lambda a: a.transpose(3, 2, 0, 1)),
    "conv1d": (lambda a: a.reshape(-1, 1, 1), lambda a: a.reshape(-1)),
}

# framework -> (leaf name per kind, collection per kind, array transforms per kind)
_LEAVES = {
    "torch": {
        "dense": "weight",
        "conv2d": "weight",
        "conv1d": "weight",
        "bias": "bias",
        "bn_weight": "weight",
        "bn_bias": "bias",
        "bn_mean": "running_mean",
        "bn_var": "running_var",
    },
    "flax": {
        "dense": "kernel",
        "conv2d": "kernel",
        "conv1d": "kernel",
        "bias": "bias",
        "bn_weight": "scale",
        "bn_bias": "bias",
        "bn_mean": "mean",
        "bn_var": "var",
    },
    "keras": {
        "dense": "kernel",
        "conv2d": "kernel",
        "conv1d": "kernel",
        "bias": "bias",
        "bn_weight": "gamma",
        "bn_bias": "beta",
        "bn_mean": "moving_mean",
        "bn_var": "moving_variance",
    },
}
_TRANSFORMS = {"torch": _TORCH, "flax": _CHANNELS_LAST, "keras": _CHANNELS_LAST}


class FrameworkParam(NamedTuple):
    """Where a canonical tensor lives in a framework, and its shape there.

    ``path`` is the module path plus leaf name, e.g. ``("spatial", "bn", "scale")``;
    ``collection`` is Flax's variable collection (``params`` / ``batch_stats``), and for
    PyTorch and Keras says ``params`` for trainable tensors and ``batch_stats`` for state.
    """

    canonical: str
    path: tuple[str, ...]
    collection: str
    shape: tuple[int, ...]
    kind: str

    @property
    def key(self) -> str:
        """The flat key :func:`to_framework` uses (Flax keys start with the collection)."""
        return ".".join(self.path)


def _check_framework(framework: str) -> None:
    if framework not in _LEAVES:
        raise ValueError(f"`framework` must be one of {', '.join(map(repr, FRAMEWORKS))}. Received: {framework!r}")


_NDIM = {"dense": 2, "conv2d": 4}
"""The rank a tensor of these kinds has in every layout (the others are reshaped, or kept as they are)."""


def _kind_array(kind: str, a: Any, framework: str) -> np.ndarray:
    """``a`` as an array, after checking ``framework``, ``kind`` and that ``a`` holds real numbers of its kind's rank."""
    _check_framework(framework)
    if not isinstance(kind, str) or kind not in _LEAVES[framework]:
        raise ValueError(f"`kind` must be one of {', '.join(map(repr, _LEAVES[framework]))}. Received: {kind!r}")
    arr = np.asarray(_to_numpy(a))
    if arr.dtype.kind in "OUSbc":
        raise TypeError(f"`a` must be an array of real numbers. Received: {'None' if a is None else arr.dtype.name}")
    if kind in _NDIM and arr.ndim != _NDIM[kind]:
        raise ValueError(f"`a` must be {_NDIM[kind]}-D for kind {kind!r}. Received: shape {arr.shape}")
    return arr


def to_framework_array(kind: str, a: Any, framework: str) -> np.ndarray:
    """Canonical (PyTorch-layout) array of ``kind`` -> ``framework``'s layout; any shape of that kind.

    >>> to_framework_array("conv2d", np.zeros((8, 3, 5, 5)), "keras").shape
    (5, 5, 3, 8)
    """
    arr = _kind_array(kind, a, framework)
    return _TRANSFORMS[framework].get(kind, (_same, _same))[0](arr)


def from_framework_array(kind: str, a: Any, framework: str) -> np.ndarray:
    """Inverse of :func:`to_framework_array`."""
    arr = _kind_array(kind, a, framework)
    return _TRANSFORMS[framework].get(kind, (_same, _same))[1](arr)


def framework_leaf(kind: str, framework: str) -> tuple[str, str]:
    """``(collection, leaf name)`` of a tensor of ``kind`` in ``framework``, for any layer of that kind.

    :func:`framework_layout` for ordinary layers, which porting a whole model needs: a
    ``BatchNorm2d``'s ``running_var`` is Flax's ``batch_stats/.../var`` and Keras's ``moving_variance``.

    >>> framework_leaf("bn_var", "flax"), framework_leaf("dense", "keras")
    (('batch_stats', 'var'), ('params', 'kernel'))
    """
    _check_framework(framework)
    if kind not in _LEAVES[framework]:
        raise ValueError(f"`kind` must be one of {', '.join(map(repr, _LEAVES[framework]))}. Received: {kind!r}")
    return ("batch_stats" if kind in ("bn_mean", "bn_var") else "params"), _LEAVES[framework][kind]


def framework_layout(cfg: Config, framework: str) -> dict[str, FrameworkParam]:
    """Canonical name -> :class:`FrameworkParam` for ``framework`` (``torch``, ``flax`` or ``keras``)."""
    _check_framework(framework)
    out = {}
    for name, spec in param_layout(check_config(cfg)).items():
        module_path = tuple(name.split(".")[:-1])
        path = (*module_path, _LEAVES[framework][spec.kind])
        shape = to_framework_array(spec.kind, np.empty(spec.shape), framework).shape
        collection = "params" if spec.trainable else "batch_stats"
        if framework == "flax":
            path = (collection, *path)
        out[name] = FrameworkParam(name, path, collection, shape, spec.kind)
    return out


def to_framework(cfg: Config, params: Mapping[str, Any], framework: str) -> dict[str, np.ndarray]:
    """Canonical params -> ``framework``'s flat names and layouts (use :func:`nest` for a tree)."""
    check_params(cfg, params)
    return {
        p.key: to_framework_array(p.kind, params[name], framework)
        for name, p in framework_layout(cfg, framework).items()
    }


def from_framework(cfg: Config, tensors: Mapping[str, Any], framework: str) -> dict[str, np.ndarray]:
    """``framework``'s flat tensors -> canonical params; every missing/unexpected/mis-shaped key in one error."""
    _check_mapping(tensors, "tensors")
    layout = framework_layout(cfg, framework)
    match_keys(f"{framework} weights", tensors, {p.key: p.shape for p in layout.values()})
    return {name: from_framework_array(p.kind, _to_numpy(tensors[p.key]), framework) for name, p in layout.items()}


def _check_mapping(value: Any, name: str) -> None:
    if not isinstance(value, Mapping):
        raise TypeError(f"`{name}` must be a mapping. Received: {type(value).__name__}")


def _check_sep(sep: Any) -> None:
    if not isinstance(sep, str) or not sep:
        raise ValueError(f"`sep` must be a non-empty string. Received: sep={sep!r}")


def nest(flat: Mapping[str, Any], sep: str = ".") -> dict[str, Any]:
    """``{"a.b.c": v}`` -> ``{"a": {"b": {"c": v}}}``; a key that is also another key's parent is a ValueError.

    >>> nest({"params.fc1.kernel": 1, "params.fc1.bias": 2})
    {'params': {'fc1': {'kernel': 1, 'bias': 2}}}
    """
    _check_mapping(flat, "flat")
    _check_sep(sep)
    out: dict[str, Any] = {}
    for key, v in flat.items():
        if not isinstance(key, str):
            raise TypeError(f"`flat` must have string keys. Received: key {key!r}")
        *parents, leaf = key.split(sep)
        node = out
        for i, part in enumerate(parents):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(
                    f"`flat` has both {sep.join(parents[: i + 1])!r} and {key!r}: one cannot hold the other"
                )
        if isinstance(node.get(leaf), dict):
            raise ValueError(f"`flat` has both {key!r} and keys below it")
        node[leaf] = v
    return out


def flatten(tree: Mapping[str, Any], sep: str = ".") -> dict[str, Any]:
    """Inverse of :func:`nest` (any mapping type, e.g. Flax's FrozenDict or NNX State, whose keys may be ints)."""
    _check_mapping(tree, "tree")
    _check_sep(sep)
    try:
        return _flatten(tree, sep)
    except RecursionError:
        raise ValueError("`tree` is nested too deeply to flatten") from None


def _flatten(tree: Mapping[str, Any], sep: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in tree.items():
        if isinstance(v, Mapping):
            out.update({f"{k}{sep}{kk}": vv for kk, vv in _flatten(v, sep).items()})
        else:
            out[str(k)] = v
    return out


# ----------------------------------------------------------------------------- third-party state dicts


class ThirdParty(NamedTuple):
    """A published implementation's state-dict layout.

    ``names`` maps canonical names to theirs; ``transforms`` maps a canonical kind to
    (canonical -> theirs, theirs -> canonical); ``extras`` are keys they have and we do not,
    written on export as the given value (PyTorch's ``num_batches_tracked``) and dropped on import.
    """

    names: Mapping[str, str]
    transforms: Mapping[str, tuple[Transform, Transform]]
    extras: Mapping[str, Callable[[], np.ndarray]]
    description: str


_AS_1X1_CONV = {"dense": (lambda a: a[:, :, None, None], lambda a: a[:, :, 0, 0])}


def _zero_count() -> np.ndarray:
    return np.zeros((), dtype=np.int64)


def _bn(ours: str, theirs: str) -> dict[str, str]:
    return {f"{ours}.{k}": f"{theirs}.{k}" for k in ("weight", "bias", "running_mean", "running_var")}


def _fc(ours: str, theirs: tuple[str, str], leaves: tuple[str, ...] = ("weight", "bias")) -> dict[str, str]:
    return {f"{ours}fc{i}.{leaf}": f"{t}.{leaf}" for i, t in zip((1, 2), theirs, strict=True) for leaf in leaves}


THIRD_PARTY: dict[tuple[str, str], ThirdParty] = {
    ("se", "timm"): ThirdParty(
        _fc("", ("fc1", "fc2")), _AS_1X1_CONV, {}, "timm.layers.squeeze_excite.SEModule (1x1 convolutions)"
    ),
    ("se", "torchvision"): ThirdParty(
        _fc("", ("fc1", "fc2")), _AS_1X1_CONV, {}, "torchvision.ops.SqueezeExcitation (1x1 convolutions)"
    ),
    ("se", "senet_pytorch"): ThirdParty(
        _fc("", ("fc.0", "fc.2"), ("weight",)), {}, {}, "senet.pytorch SELayer (nn.Linear without bias)"
    ),
    ("cbam", "official"): ThirdParty(
        {
            **_fc("channel.", ("ChannelGate.mlp.1", "ChannelGate.mlp.3")),
            "spatial.conv.weight": "SpatialGate.spatial.conv.weight",
            "spatial.conv.bias": "SpatialGate.spatial.conv.bias",
            **_bn("spatial.bn", "SpatialGate.spatial.bn"),
        },
        {},
        {"SpatialGate.spatial.bn.num_batches_tracked": _zero_count},
        "Jongchan/attention-module CBAM (nn.Linear MLP, BasicConv spatial gate)",
    ),
    ("cbam", "timm"): ThirdParty(
        {
            **_fc("channel.", ("channel.fc1", "channel.fc2")),
            "spatial.conv.weight": "spatial.conv.conv.weight",
            "spatial.conv.bias": "spatial.conv.conv.bias",
            **_bn("spatial.bn", "spatial.conv.bn"),
        },
        _AS_1X1_CONV,
        {"spatial.conv.bn.num_batches_tracked": _zero_count},
        "timm.layers.cbam.CbamModule (1x1 convolutions, ConvNormAct spatial gate)",
    ),
    ("eca", "official"): ThirdParty(
        {"conv.weight": "conv.weight", "conv.bias": "conv.bias"}, _TORCH, {}, "BangguWu/ECANet eca_layer (Conv1d)"
    ),
    ("eca", "timm"): ThirdParty(
        {"conv.weight": "conv.weight", "conv.bias": "conv.bias"}, _TORCH, {}, "timm EcaModule / CecaModule (Conv1d)"
    ),
}


def _third_party(cfg: Config, source: str) -> ThirdParty:
    check_config(cfg)
    table = THIRD_PARTY.get((cfg.module, source))
    if table is None:
        known = [s for m, s in THIRD_PARTY if m == cfg.module]
        raise ValueError(
            f"No {cfg.module.upper()} state-dict layout named {source!r}. Expected one of {', '.join(map(repr, known))}"
        )
    cannot = [k for k in param_layout(cfg) if k not in table.names]
    if cannot:
        raise ValueError(
            f"The {source!r} layout ({table.description}) has no place for {', '.join(cannot)}; "
            f"received a config that needs them: {cfg}"
        )
    return table


def _to_numpy(v: Any) -> np.ndarray:
    """An array from NumPy, a torch tensor (without importing torch), JAX or TF."""
    if hasattr(v, "detach"):
        v = v.detach().cpu()
        if str(getattr(v, "dtype", "")) == "torch.bfloat16":
            v = v.float()
    return np.asarray(v)


def _their_layout(cfg: Config, table: ThirdParty, prefix: str) -> dict[str, tuple[str, str, tuple[int, ...]]]:
    """Canonical name -> (their key with prefix, kind, their shape)."""
    out = {}
    for name, spec in param_layout(cfg).items():
        to_theirs = table.transforms.get(spec.kind, (_same, _same))[0]
        out[name] = (prefix + table.names[name], spec.kind, to_theirs(np.empty(spec.shape)).shape)
    return out


def _check_prefix(prefix: Any) -> None:
    if not isinstance(prefix, str):
        raise TypeError(f'`prefix` must be a string ("" for none). Received: prefix={prefix!r}')


def import_state_dict(
    state_dict: Mapping[str, Any], source: str, cfg: Config, prefix: str = ""
) -> dict[str, np.ndarray]:
    """A third-party state dict (or a whole model's, with the block's ``prefix``) -> canonical float64 params.

    Keys outside ``prefix`` are ignored; within it every missing, unexpected or mis-shaped key
    is reported in one error. Values may be NumPy arrays or framework tensors.

    >>> from reference_numpy import SEConfig
    >>> cfg = SEConfig.preset("timm", channels=64)
    >>> sd = {"layer1.0.conv1.weight": np.zeros((64, 64, 3, 3)),
    ...       "layer1.0.se.fc1.weight": np.ones((8, 64, 1, 1)), "layer1.0.se.fc1.bias": np.zeros(8),
    ...       "layer1.0.se.fc2.weight": np.ones((64, 8, 1, 1)), "layer1.0.se.fc2.bias": np.zeros(64)}
    >>> {k: v.shape for k, v in import_state_dict(sd, "timm", cfg, prefix="layer1.0.se.").items()}
    {'fc1.weight': (8, 64), 'fc1.bias': (8,), 'fc2.weight': (64, 8), 'fc2.bias': (64,)}
    """
    table = _third_party(cfg, source)
    _check_mapping(state_dict, "state_dict")
    _check_prefix(prefix)
    theirs = _their_layout(cfg, table, prefix)
    block = {k: v for k, v in state_dict.items() if k.startswith(prefix)}
    for extra in table.extras:
        block.pop(prefix + extra, None)
    match_keys(
        f"{source!r} state dict" + (f" under prefix {prefix!r}" if prefix else ""),
        block,
        {key: shape for key, _, shape in theirs.values()},
    )
    arrays = real_arrays({key: block[key] for key, _, _ in theirs.values()}, what=f"{source!r} state dict")
    return {
        name: table.transforms.get(kind, (_same, _same))[1](arrays[key].astype(np.float64))
        for name, (key, kind, _) in theirs.items()
    }


def export_state_dict(
    params: Mapping[str, Any],
    target: str,
    cfg: Config,
    prefix: str = "",
    *,
    state_dict: Mapping[str, Any] | None = None,
) -> dict[str, np.ndarray]:
    """Canonical params -> ``target``'s state-dict names and layouts (NumPy arrays), under ``prefix``.

    With ``state_dict`` (a whole model's), returns a copy of it with this block's keys
    replaced and every other key left as it was.
    """
    table = _third_party(cfg, target)
    check_params(cfg, params)
    _check_prefix(prefix)
    if state_dict is not None:
        _check_mapping(state_dict, "state_dict")
    out = dict(state_dict) if state_dict is not None else {}
    for name, (key, kind, _) in _their_layout(cfg, table, prefix).items():
        out[key] = table.transforms.get(kind, (_same, _same))[0](_to_numpy(params[name]))
    for extra, value in table.extras.items():
        if prefix + extra.rsplit(".", 1)[0] + ".weight" in out:  # only where the block it belongs to exists
            out[prefix + extra] = value()
    return out
