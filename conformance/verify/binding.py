"""Binding weights: the target's tensors bound to canonical ones, by shape (``auto``), a named dialect or a map file."""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from reference_numpy import (
    FRAMEWORKS,
    THIRD_PARTY,
    CBAMConfig,
    ECAConfig,
    SEConfig,
    from_framework_array,
    param_layout,
    to_framework_array,
)

_NAMES = {"se": "SE", "cbam": "CBAM", "eca": "ECA"}

_MEAN_LEAVES = ("running_mean", "moving_mean", "mean")
_VAR_LEAVES = ("running_var", "moving_variance", "moving_var", "var", "variance")
_BN_LEAVES = {
    **dict.fromkeys(("weight", "scale", "gamma"), "weight"),
    **dict.fromkeys(("bias", "beta"), "bias"),
    **dict.fromkeys(_MEAN_LEAVES, "running_mean"),
    **dict.fromkeys(_VAR_LEAVES, "running_var"),
}
_BIAS_LEAVES = ("bias", "b", "beta")


# ----------------------------------------------------------------------------- roles
# A role is a canonical name with CBAM's "channel." prefix dropped, so that one binding of a
# target's tensors serves every module: SE's "fc1.weight" is CBAM's "channel.fc1.weight".


def _role(canonical: str) -> str:
    return canonical.removeprefix("channel.")


def _canonical(role: str, module: str) -> str:
    return f"channel.{role}" if module == "cbam" and role.startswith("fc") else role


def _all_kinds() -> dict[str, str]:
    """Role -> canonical kind, asked of the spec's layouts (every optional tensor switched on)."""
    out: dict[str, str] = {}
    for cfg in (
        SEConfig(channels=16),
        CBAMConfig(channels=16, spatial_bias=True),
        ECAConfig(channels=16, bias=True),
    ):
        out.update({_role(k): s.kind for k, s in param_layout(cfg).items()})
    return out


ROLE_KINDS = _all_kinds()


@dataclasses.dataclass(frozen=True)
class Tensor:
    """One of the target's tensors, as the target names and shapes it."""

    name: str
    shape: tuple[int, ...]
    trainable: bool


@dataclasses.dataclass(frozen=True)
class Binding:
    """A target tensor bound to a canonical role, with the array transforms both ways."""

    role: str
    name: str
    shape: tuple[int, ...]
    canonical_shape: tuple[int, ...]
    to_theirs: Callable[[np.ndarray], np.ndarray] = dataclasses.field(repr=False, compare=False)
    to_canonical: Callable[[np.ndarray], np.ndarray] = dataclasses.field(repr=False, compare=False)

    @property
    def kind(self) -> str:
        return ROLE_KINDS[self.role]


def _layout_binding(role: str, t: Tensor, layout: str) -> Binding:
    """Bind ``t`` to ``role`` using ``layout``'s convention (``torch``, ``flax`` or ``keras``) for its kind."""
    kind, shape = ROLE_KINDS[role], t.shape
    if kind == "dense" and len(shape) == 4:  # a 1x1 convolution used as a fully connected layer

        def to(a: np.ndarray) -> np.ndarray:
            return to_framework_array("conv2d", a[:, :, None, None], layout)

        def back(a: np.ndarray) -> np.ndarray:
            return from_framework_array("conv2d", a, layout)[:, :, 0, 0]

    elif kind in ("dense", "conv2d"):
        to = functools.partial(to_framework_array, kind, framework=layout)
        back = functools.partial(from_framework_array, kind, framework=layout)
    else:  # ECA's kernel, biases, BN tensors: the same numbers, their shape

        def to(a: np.ndarray) -> np.ndarray:
            return np.reshape(a, shape)

        def back(a: np.ndarray) -> np.ndarray:
            return np.reshape(a, -1)

    canonical_shape = tuple(back(np.zeros(shape)).shape)
    return Binding(role, t.name, shape, canonical_shape, to, back)


# ----------------------------------------------------------------------------- structure


@dataclasses.dataclass
class Structure:
    """What the target's tensors say: the bindings, the channel count and what cannot be bound."""

    channels: int | None
    bindings: dict[str, Binding]
    problems: list[str]
    notes: list[str] = dataclasses.field(default_factory=list)
    ignored: list[str] = dataclasses.field(default_factory=list)
    facts: dict[str, Any] = dataclasses.field(default_factory=dict)
    """What ``auto`` saw, for the structural diagnosis: ``dense`` [(name, out, in)], ``bn`` [(group, size)],
    ``conv1d`` [(name, (out, in, k))], ``conv2d`` [(name, (out, in, kh, kw))]."""

    @property
    def kind(self) -> str | None:
        """``mlp`` (SE, or CBAM without its spatial half), ``cbam``, ``eca`` or None."""
        has = set(self.bindings)
        mlp = {"fc1.weight", "fc2.weight"} <= has
        if mlp and "spatial.conv.weight" in has:
            return "cbam"
        if mlp and not has & {"conv.weight", "spatial.conv.weight"}:
            return "mlp"
        if "conv.weight" in has and not has & {"fc1.weight", "fc2.weight", "spatial.conv.weight"}:
            return "eca"
        return None

    def shape(self, role: str) -> tuple[int, ...]:
        return self.bindings[role].canonical_shape


def _split_name(name: str) -> list[str]:
    return name.replace("/", ".").split(".")


def _auto(tensors: Sequence[Tensor], framework: str, channels: int | None) -> Structure:
    """Bind tensors by layer structure and shape (SPEC.md section 7 gives the layouts)."""
    layout = "torch" if framework == "torch" else framework
    groups: dict[str, dict[str, Tensor]] = {}
    for t in tensors:
        parts = _split_name(t.name)
        if framework == "flax" and parts[0] in ("params", "batch_stats") and len(parts) > 1:
            parts = parts[1:]
        groups.setdefault(".".join(parts[:-1]), {})[parts[-1]] = t
    problems: list[str] = []
    dense: list[tuple[Tensor, Tensor | None, tuple[int, int]]] = []  # weight, bias, canonical (out, in)
    spatial: list[tuple[Tensor, Tensor | None]] = []
    eca: list[tuple[Tensor, Tensor | None]] = []
    bns: list[dict[str, Tensor]] = []
    facts: dict[str, Any] = {"dense": [], "bn": [], "conv1d": [], "conv2d": []}
    for group, leaves in groups.items():
        lower = {k.lower(): t for k, t in leaves.items()}
        if any(k in _MEAN_LEAVES or k in _VAR_LEAVES for k in lower) or any(k in ("gamma", "scale") for k in lower):
            bn: dict[str, Tensor] = {}
            stray: list[str] = []
            for k, t in lower.items():
                (bn.__setitem__(_BN_LEAVES[k], t) if k in _BN_LEAVES else stray.append(t.name))
            bns.append(bn)
            sizes = [int(np.prod(t.shape)) for t in bn.values()]
            facts["bn"].append((group, max(sizes, default=0)))
            if stray:
                problems.append(
                    f"{', '.join(stray)} sit beside batch-norm statistics and have no canonical counterpart"
                )
            continue
        biases = [t for k, t in lower.items() if k in _BIAS_LEAVES and len(t.shape) == 1]
        weights = [t for t in leaves.values() if t not in biases]
        if len(weights) != 1 or len(biases) > 1:
            names = ", ".join(f"{t.name} {t.shape}" for t in leaves.values())
            problems.append(f"cannot tell the weight from the bias in {group or 'the top level'}: {names}")
            continue
        (w,), b = weights, (biases[0] if biases else None)
        if len(weights) == 1 and not biases and len(w.shape) == 1 and len(leaves) == 1:
            eca.append((w, None))  # a bare (k,) kernel
            continue
        shape = w.shape
        if len(shape) == 2:
            dense.append((w, b, shape if layout == "torch" else shape[::-1]))
        elif len(shape) == 4:
            o, i, kh, kw = shape if layout == "torch" else (shape[3], shape[2], shape[0], shape[1])
            is_spatial = o == 1 and i in (1, 2) and (channels is None or channels not in (1, 2))
            if kh == kw == 1 and not is_spatial:
                dense.append((w, b, (o, i)))
            else:
                spatial.append((w, b))
        elif len(shape) == 3:
            o, i, _ = shape if layout == "torch" else shape[::-1]
            k = shape[2] if layout == "torch" else shape[0]
            facts["conv1d"].append((w.name, (o, i, k)))
            if o == i == 1:
                eca.append((w, b))
            else:
                problems.append(
                    f"{w.name} is a 1-D convolution kernel of shape {shape} ({i} input and {o} output maps): "
                    "ECA's convolves the channel descriptor as one 1-channel signal"
                )
        else:
            problems.append(f"{w.name} has shape {shape}, which no SE, CBAM or ECA tensor has")
    bindings: dict[str, Binding] = {}
    notes: list[str] = []

    def bind(role: str, t: Tensor | None) -> None:
        if t is not None:
            bindings[role] = _layout_binding(role, t, layout)

    if len(dense) == 2:
        (a, _, (ao, ai)), (b, _, (bo, bi)) = dense
        if channels is None and ai == bo and ao == bi:
            channels = ai
        orders = [(x, y) for x, y in ((0, 1), (1, 0)) if dense[x][2][1] == channels == dense[y][2][0]]
        orders = [(x, y) for x, y in orders if dense[x][2][0] == dense[y][2][1]]
        if not orders:
            problems.append(
                f"the fully connected layers {a.name} and {b.name} map {ai} -> {ao} and {bi} -> {bo} features: "
                f"SE's MLP maps {channels} channels to a hidden width and back"
            )
        else:
            if len(orders) == 2:
                notes.append(
                    f"{a.name} and {b.name} both map {channels} -> {channels} features; "
                    f"taking {a.name} as fc1 because it comes first"
                )
            x, y = orders[0]
            for role, (w, bias, _) in (("fc1", dense[x]), ("fc2", dense[y])):
                bind(f"{role}.weight", w)
                bind(f"{role}.bias", bias)
    elif len(dense) == 1:
        problems.append(
            f"it has one fully connected layer ({dense[0][0].name}, {dense[0][0].shape}); "
            "SE and CBAM have two (channels -> hidden -> channels)"
        )
    elif len(dense) > 2:
        names = ", ".join(w.name for w, _, _ in dense)
        problems.append(f"it has {len(dense)} fully connected layers ({names}); SE and CBAM have two")
    for role, found in (("spatial.conv", spatial), ("conv", eca)):
        if len(found) == 1:
            bind(f"{role}.weight", found[0][0])
            bind(f"{role}.bias", found[0][1])
        elif found:
            what = "2-D" if role == "spatial.conv" else "1-D"
            names = ", ".join(f"{w.name} {w.shape}" for w, _ in found)
            problems.append(f"it has {len(found)} {what} convolutions ({names}); the spec's modules have at most one")
    if len(bns) == 1:
        for leaf, t in bns[0].items():
            bind(f"spatial.bn.{leaf}", t)
    elif len(bns) > 1:
        problems.append(f"it has {len(bns)} batch norms; CBAM has one, after its spatial convolution")
    facts["dense"] = [(w.name, o, i) for w, _, (o, i) in dense]
    if channels is None and dense and len(dense) != 2:  # one layer, or two MLPs: the widest side is the channels
        channels = max(max(o, i) for _, _, (o, i) in dense) or None
    if channels is None and facts["conv1d"]:
        o, i, _ = facts["conv1d"][0][1]
        channels = max(o, i) if max(o, i) > 1 else None
    facts["conv2d"] = [(w.name, w.shape) for w, _ in spatial]
    return Structure(channels, bindings, problems, notes, facts=facts)


def _from_names(
    tensors: Sequence[Tensor], names: Mapping[str, tuple[str, str]], what: str, extras: Iterable[str] = ()
) -> tuple[dict[str, tuple[str, Tensor]], list[str]]:
    """their name -> (role, tensor) for a name table; problems for tensors the table does not know."""
    by_name = {t.name: t for t in tensors}
    found, problems = {}, []
    for theirs, (role, _) in names.items():
        if theirs in by_name:
            found[theirs] = (role, by_name[theirs])
    stray = [t.name for t in tensors if t.name not in names and t.name not in extras]
    if stray:
        problems.append(f"{', '.join(stray)} {'has' if len(stray) == 1 else 'have'} no place in {what}")
    return found, problems


def _check_structure(s: Structure) -> None:
    """Shape checks every binding method shares; appends sentences to ``s.problems``."""
    b, c = s.bindings, s.channels
    if "fc1.weight" in b and "fc2.weight" in b:
        (h, c1), (c2, h2) = s.shape("fc1.weight"), s.shape("fc2.weight")
        if c is None and c1 == c2:
            s.channels = c = c1
        if not (c1 == c2 == c and h == h2):
            s.problems.append(
                f"fc1 maps {c1} -> {h} features and fc2 maps {h2} -> {c2}: "
                f"the spec's MLP maps {c} channels to a hidden width and back"
            )
        has = ["fc1.bias" in b, "fc2.bias" in b]
        if has[0] != has[1]:
            with_bias = "fc1" if has[0] else "fc2"
            s.problems.append(
                f"{with_bias} has a bias and {'fc2' if has[0] else 'fc1'} has none: "
                "the spec's MLP has biases on both layers or on neither"
            )
        for role, n in (("fc1.bias", h), ("fc2.bias", c2)):
            if role in b and s.shape(role) != (n,):
                s.problems.append(f"{b[role].name} has shape {b[role].shape}; {role} should hold {n} values")
    elif "fc1.weight" in b or "fc2.weight" in b:
        s.problems.append("only one of the MLP's two fully connected layers could be bound")
    if "spatial.conv.weight" in b:
        shape = s.shape("spatial.conv.weight")
        o, i, kh, kw = shape
        order = " and ".join(CBAMConfig(channels=1).spatial_pool_order)
        if i != 2:
            s.problems.append(
                f"the spatial conv kernel has shape {shape}: CBAM's takes 2 input maps ({order}), this one takes {i}"
            )
        if o != 1:
            s.problems.append(f"the spatial conv kernel has shape {shape}: CBAM's gives 1 attention map, this one {o}")
        if kh != kw or kh % 2 == 0:
            s.problems.append(
                f"the spatial conv kernel is {kh} x {kw}: the spec's is square with an odd size, padded by (k - 1) / 2"
            )
    if "conv.weight" in b and s.shape("conv.weight")[0] % 2 == 0:
        s.problems.append(f"ECA's kernel size is odd; {b['conv.weight'].name} has {s.shape('conv.weight')[0]} taps")
    for role in (
        "spatial.conv.bias",
        "conv.bias",
        *(f"spatial.bn.{k}" for k in ("weight", "bias", "running_mean", "running_var")),
    ):
        if role in b and s.shape(role) != (1,):
            s.problems.append(
                f"{b[role].name} has shape {b[role].shape}: the spec's {role} holds one value "
                f"({'one map' if 'bn' in role else 'one output'})"
            )
    bn = [k for k in ("weight", "bias", "running_mean", "running_var") if f"spatial.bn.{k}" in b]
    if bn and len(bn) != 4:
        missing = sorted({"weight", "bias", "running_mean", "running_var"} - set(bn))
        s.problems.append(f"the batch norm lacks {', '.join(missing)}: the spec's is affine with running statistics")
    if bn and "spatial.conv.weight" not in b:
        s.problems.append("it has a batch norm but no spatial convolution for it to follow")


def _structure(
    tensors: Sequence[Tensor], ignored: list[str], framework: str, mapping: str, module: str, channels: int | None
) -> Structure:
    if mapping == "auto":
        s = _auto(tensors, framework, channels)
    elif mapping.endswith(".json") or Path(mapping).is_file():
        s = _from_map_file(tensors, framework, mapping, channels)
    else:
        s = _from_dialect(tensors, framework, mapping, module, channels)
    s.ignored = ignored + s.ignored
    _check_structure(s)
    return s


def _from_dialect(
    tensors: Sequence[Tensor], framework: str, dialect: str, module: str, channels: int | None
) -> Structure:
    table = THIRD_PARTY.get((module, dialect))
    if table is None:
        known = [src for m, src in THIRD_PARTY if m == module]
        raise ValueError(
            f"`mapping` must be 'auto', a JSON map file or a {module.upper()} dialect "
            f"({', '.join(map(repr, known))}). Received: mapping={dialect!r}"
        )
    if framework != "torch":
        raise ValueError(f"The named dialects describe PyTorch state dicts; for {framework} use 'auto' or a map file")
    names = {theirs: (_role(canonical), canonical) for canonical, theirs in table.names.items()}
    found, problems = _from_names(tensors, names, f"the {dialect!r} layout ({table.description})", table.extras)
    bindings = {}
    for theirs, (role, t) in found.items():
        kind = ROLE_KINDS[role]
        to, back = table.transforms.get(kind, (_same, _same))
        bindings[role] = Binding(role, theirs, t.shape, tuple(back(np.zeros(t.shape)).shape), to, back)
    return Structure(channels, bindings, problems, ignored=[n for n in table.extras if n in {t.name for t in tensors}])


def _same(a: np.ndarray) -> np.ndarray:
    return a


def _from_map_file(tensors: Sequence[Tensor], framework: str, path: str, channels: int | None) -> Structure:
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise ValueError(f"Could not read the map file {path!r}: {e}") from None
    if not isinstance(raw, dict):
        raise ValueError(f'The map file {path!r} must hold a JSON object {{"their.name": "canonical.name"}}')
    names: dict[str, tuple[str, str]] = {}
    for theirs, entry in raw.items():
        if not isinstance(entry, (str, dict)):
            raise ValueError(
                f"The map file {path!r} gives {entry!r} for {theirs!r}: each entry must be a canonical name or "
                '{"canonical": ..., "layout": ...}'
            )
        canonical, layout = (
            (entry, framework) if isinstance(entry, str) else (entry.get("canonical"), entry.get("layout", framework))
        )
        role = _role(str(canonical))
        if role not in ROLE_KINDS:
            raise ValueError(
                f"The map file names {canonical!r} for {theirs!r}, which is no canonical name. Expected one of {', '.join(ROLE_KINDS)}"
            )
        if layout not in FRAMEWORKS:
            raise ValueError(
                f"The map file gives layout {layout!r} for {theirs!r}. Expected one of {', '.join(FRAMEWORKS)}"
            )
        names[theirs] = (role, layout)
    found, problems = _from_names(tensors, names, f"the map file {path}")
    missing = [n for n in names if n not in found]
    if missing:
        problems.append(f"the map file names {', '.join(missing)}, which the target does not have")
    bindings = {role: _layout_binding(role, t, names[theirs][1]) for theirs, (role, t) in found.items()}
    return Structure(channels, bindings, problems)
