"""SE, CBAM and ECA as Flax Linen modules, with the spec's knobs and the canonical weight layout.

>>> from flax_impl import linen
>>> from reference_numpy import CBAMConfig
>>> linen.from_config(CBAMConfig(channels=64), data_format="channels_first").config.hidden
4
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from reference_numpy import Config, as_config

from ._base import Attention, class_for
from .cbam import CBAM
from .eca import ECA
from .porting import attention_configs, load_torch_state_dict, to_torch_state_dict
from .se import SqueezeExcite
from .weights import from_canonical, load_canonical, to_canonical

__all__ = [
    "CBAM",
    "ECA",
    "Attention",
    "SqueezeExcite",
    "attention_configs",
    "class_for",
    "from_canonical",
    "from_config",
    "load_canonical",
    "load_torch_state_dict",
    "to_canonical",
    "to_torch_state_dict",
]


def from_config(cfg: Config | Mapping[str, Any], **options: Any) -> Attention:
    """The Linen module for a spec config or its ``to_dict()``; ``options`` are module fields (``data_format``, ``dtype``, ...).

    Anything else (a non-config ``cfg``, a knob or an unknown name among ``options``) is a
    ``TypeError`` saying what was expected.

    >>> from_config({"module": "se", "channels": 8}, rd_ratio=0.5)
    Traceback (most recent call last):
    ...
    TypeError: from_config takes the knobs from `cfg`; its options are the module's fields: data_format, dtype, param_dtype, name. Received: rd_ratio=0.5
    """
    cfg = as_config(cfg)
    cls = class_for(cfg.module)
    fields = [f.name for f in dataclasses.fields(cls) if f.init and f.name not in ("config", "parent")]
    for k, v in options.items():
        if k not in fields and k != "parent":  # Flax's own field, not listed
            raise TypeError(
                f"from_config takes the knobs from `cfg`; its options are the module's fields: {', '.join(fields)}. "
                f"Received: {k}={v!r}"
            )
    return cls(config=cfg, **options)
