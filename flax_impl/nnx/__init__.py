"""SE, CBAM and ECA as Flax NNX modules, with the spec's knobs and the canonical weight layout.

>>> from flax import nnx
>>> from flax_impl import nnx as attn
>>> from reference_numpy import CBAMConfig
>>> attn.from_config(CBAMConfig(channels=64), rngs=nnx.Rngs(0)).config.hidden
4
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from flax import nnx

from reference_numpy import Config, as_config, knob_names

from ._base import Attention, class_for
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
    "class_for",
    "from_config",
    "load_canonical",
    "load_torch_state_dict",
    "to_canonical",
    "to_torch_state_dict",
]


def from_config(cfg: Config | Mapping[str, Any], *, rngs: nnx.Rngs, **options: Any) -> Attention:
    """The NNX module for a spec config or its ``to_dict()``; ``options`` are constructor options (``data_format``, ``dtype``, ...).

    Anything else (a non-config ``cfg``, a knob, ``preset`` or an unknown name among
    ``options``) is a ``TypeError`` saying what was expected.

    >>> from_config({"module": "se", "channels": 8}, rngs=nnx.Rngs(0), preset="timm")
    Traceback (most recent call last):
    ...
    TypeError: from_config takes the knobs from `cfg`; its options are the constructor's: data_format, dtype, param_dtype. Received: preset='timm'
    """
    cfg = as_config(cfg)
    cls = class_for(cfg.module)
    params = inspect.signature(cls).parameters.values()
    allowed = [
        p.name for p in params if p.kind == p.KEYWORD_ONLY and p.name not in {"preset", "rngs", *knob_names(cfg.module)}
    ]
    for k, v in options.items():
        if k not in allowed:
            raise TypeError(
                f"from_config takes the knobs from `cfg`; its options are the constructor's: {', '.join(allowed)}. "
                f"Received: {k}={v!r}"
            )
    knobs = {k: getattr(cfg, k) for k in knob_names(cfg.module)}
    return cls(cfg.channels, rngs=rngs, **knobs, **options)
