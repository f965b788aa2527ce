"""Which configurations compute the same thing, and how to name one: config equivalence, nearest preset.

Two configurations are *equivalent* when they compute the same function: knobs that act only
through a derived size (``rd_ratio``/``rd_channels``/``rd_divisor``/``rd_round`` through the
hidden width, ``kernel_size``/``gamma``/``beta`` through ECA's effective kernel size) count as
that size; CBAM's pool order in the MLP is immaterial (the outputs are summed); knobs of a part
that is switched off (the spatial half, its batch norm) do not count.

>>> from reference_numpy import CBAMConfig, SEConfig
>>> equivalent(SEConfig(channels=32, rd_ratio=1 / 4), SEConfig(channels=32, rd_channels=8))
True
>>> describe(CBAMConfig.preset("timm", channels=32, bn_momentum=0.01))
"CBAM preset 'timm' with bn_momentum=0.01 instead of 0.1"
>>> width_knobs(32, 8)
{'rd_round': 'nearest', 'rd_divisor': 8}
"""

from __future__ import annotations

from typing import Any

from .config import CBAMConfig, Config, ECAConfig, SEConfig, make_config

__all__ = [
    "describe",
    "differences",
    "effective_knobs",
    "equivalent",
    "nearest_preset",
    "preset_configs",
    "width_knobs",
]

NAMES = {"se": "SE", "cbam": "CBAM", "eca": "ECA"}
SIZE_KNOBS = ("rd_ratio", "rd_channels", "rd_divisor", "rd_round", "kernel_size", "gamma", "beta")
"""Knobs that matter only through a derived size (the hidden width, ECA's effective kernel size)."""


def _config(cfg: Any, name: str) -> Config:
    if not isinstance(cfg, (SEConfig, CBAMConfig, ECAConfig)):
        raise TypeError(
            f"`{name}` must be a spec config (SEConfig, CBAMConfig or ECAConfig). Received: {name} of type "
            f"{type(cfg).__name__}"
        )
    return cfg


def effective_knobs(cfg: Config) -> dict[str, Any]:
    """The knobs that change the computation, sizes as sizes (two configs with equal dicts compute the same)."""
    d = _config(cfg, "cfg").to_dict()
    for k in SIZE_KNOBS:
        d.pop(k, None)
    if isinstance(cfg, (SEConfig, CBAMConfig)):
        d["hidden"] = cfg.hidden
    if isinstance(cfg, ECAConfig):
        d["kernel_size"] = cfg.effective_kernel_size
    if isinstance(cfg, CBAMConfig):
        d["pool_types"] = sorted(cfg.pool_types)  # the MLP outputs are summed: order is immaterial
        if not cfg.spatial:
            d = {k: v for k, v in d.items() if not k.startswith(("spatial_", "bn_"))}
        elif not cfg.spatial_norm:
            d = {k: v for k, v in d.items() if not k.startswith("bn_")}
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}


def equivalent(a: Config, b: Config) -> bool:
    """Whether ``a`` and ``b`` compute the same function (see the module docstring)."""
    _config(a, "a"), _config(b, "b")
    return a.module == b.module and effective_knobs(a) == effective_knobs(b)


def differences(cfg: Config, other: Config) -> list[str]:
    """``knob=value instead of ...`` for each effective difference of ``cfg`` from ``other``.

    >>> differences(SEConfig(channels=32, gate="hard_sigmoid"), SEConfig(channels=32))
    ["gate='hard_sigmoid' instead of 'sigmoid'"]
    """
    mine, theirs = effective_knobs(_config(cfg, "cfg")), effective_knobs(_config(other, "other"))
    out = []
    for k, v in mine.items():
        if theirs.get(k, v) == v and k in theirs:
            continue
        if k == "hidden":
            rd = {n: getattr(cfg, n) for n in ("rd_ratio", "rd_channels", "rd_divisor", "rd_round")}
            given = ", ".join(f"{n}={x!r}" for n, x in rd.items() if x != getattr(other, n))
            out.append(f"hidden width {v}{f' ({given})' if given else ''} instead of {theirs.get(k)}")
        elif k == "kernel_size":
            out.append(f"kernel_size={v} instead of {theirs.get(k)}")
        else:
            out.append(f"{k}={v!r}" + (f" instead of {theirs[k]!r}" if k in theirs else ""))
    return out


def preset_configs(cfg: Config) -> list[tuple[str, Config]]:
    """Every preset of ``cfg``'s module at its channel count; a size a preset leaves open (torchvision's
    explicit squeeze width) is taken from ``cfg`` when ``cfg`` gives it explicitly."""
    out = []
    for name in type(_config(cfg, "cfg")).presets:
        try:
            out.append((name, type(cfg).preset(name, channels=cfg.channels)))
        except ValueError:  # torchvision takes the width explicitly: it names an SE whose width no ratio gives
            width = getattr(cfg, "rd_channels", None)
            if width is not None:
                out.append((name, type(cfg).preset(name, channels=cfg.channels, rd_channels=width)))
    return out


def nearest_preset(cfg: Config) -> tuple[str, Config, list[str]]:
    """(name, preset config, differences) of the preset ``cfg`` differs least from."""
    ranked = sorted(preset_configs(cfg), key=lambda p: len(differences(cfg, p[1])))
    name, other = ranked[0]
    return name, other, differences(cfg, other)


def describe(cfg: Config) -> str:
    """``CBAM preset 'timm'``, ``SE preset 'official' with gate='hard_sigmoid'``: the nearest preset and the rest."""
    name, _, diffs = nearest_preset(cfg)
    return f"{NAMES[cfg.module]} preset {name!r}" + (f" with {', '.join(diffs)}" if diffs else "")


def width_knobs(channels: int, hidden: int) -> dict[str, Any]:
    """Width knobs that give ``hidden`` for ``channels``: the default first, then the presets' roundings,
    then common ratios, else ``rd_channels`` itself."""
    for name, v in (("channels", channels), ("hidden", hidden)):
        if isinstance(v, bool) or not hasattr(type(v), "__index__"):  # int, or a NumPy integer
            raise TypeError(f"`{name}` must be an int. Received: {name}={v!r} of type {type(v).__name__}")
        if v < 1:
            raise ValueError(f"`{name}` must be >= 1. Received: {name}={v!r}")
    options: list[dict[str, Any]] = [
        {},
        {"rd_round": "nearest"},
        {"rd_round": "nearest", "rd_divisor": 8},
        {"rd_divisor": 8},
    ]
    for ratio in (1 / 8, 1 / 4, 1 / 2, 1 / 32, 1.0):
        options += [{"rd_ratio": ratio}, {"rd_ratio": ratio, "rd_round": "nearest"}]
    for knobs in options:
        try:
            if make_config("se", channels, **knobs).hidden == hidden:  # type: ignore[union-attr]
                return knobs
        except ValueError:  # a rounding that gives no valid width at this channel count
            continue
    return {"rd_channels": hidden}
