"""SE, CBAM and ECA as Flax NNX modules, with the spec's knobs and the canonical weight layout.

>>> from flax import nnx
>>> from flax_impl import nnx as attn
>>> from reference_numpy import CBAMConfig
>>> attn.from_config(CBAMConfig(channels=64), rngs=nnx.Rngs(0)).config.hidden
4
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flax import nnx

from reference_numpy import Config, as_config, knob_names

from ._base import Attention
from .cbam import CBAM
from .eca import ECA
from .porting import load_torch_state_dict, to_torch_state_dict
from .se import SqueezeExcite
from .weights import load_canonical, to_canonical

__all__ = [
    "CBAM",
    "ECA",
    "Attention",
    "SqueezeExcite",
    "from_config",
    "load_canonical",
    "load_torch_state_dict",
    "to_canonical",
    "to_torch_state_dict",
]

_CLASSES: dict[str, type[Attention]] = {"se": SqueezeExcite, "cbam": CBAM, "eca": ECA}


def from_config(cfg: Config | Mapping[str, Any], *, rngs: nnx.Rngs, **options: Any) -> Attention:
    """The NNX module for a spec config or its ``to_dict()``; ``options`` are constructor options (``data_format``, ``dtype``, ...)."""
    cfg = as_config(cfg)
    knobs = {k: getattr(cfg, k) for k in knob_names(cfg.module)}
    return _CLASSES[cfg.module](cfg.channels, rngs=rngs, **knobs, **options)
