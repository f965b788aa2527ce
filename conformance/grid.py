"""The conformance matrix: which configs, dtypes, modes and layouts are checked.

One table serves the test suite and the ``python -m conformance`` report. ``DEFAULT``
covers every preset; ``KNOBS`` adds one variant per knob value so that, together, every
value of every knob of SPEC.md is exercised at least once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from reference_numpy import MODULES, CBAMConfig, Config, ECAConfig, SEConfig

CHANNELS = 24
"""Channel count of the grid: distinct from N, H, W and from every hidden width below."""


class Variant(NamedTuple):
    module: str
    name: str
    build: Callable[[int], Config]

    @property
    def id(self) -> str:
        return f"{self.module}-{self.name}"


def _preset(cls: Any, name: str, **kw: object) -> Callable[[int], Config]:
    return lambda c: cls.preset(name, channels=c, **kw)


def _knob(cls: type, **kw: object) -> Callable[[int], Config]:
    return lambda c: cls(channels=c, **kw)


PRESETS: list[Variant] = [
    Variant("se", "official", _preset(SEConfig, "official")),
    Variant("se", "timm", _preset(SEConfig, "timm")),
    Variant("se", "torchvision", _preset(SEConfig, "torchvision", rd_channels=5)),
    Variant("cbam", "official", _preset(CBAMConfig, "official")),
    Variant("cbam", "timm", _preset(CBAMConfig, "timm")),
    Variant("eca", "paper", _preset(ECAConfig, "paper")),
    Variant("eca", "timm", _preset(ECAConfig, "timm")),
    Variant("eca", "timm_ceca", _preset(ECAConfig, "timm_ceca")),
]

KNOBS: list[Variant] = [
    Variant("se", "relu6-hard_sigmoid", _knob(SEConfig, act="relu6", gate="hard_sigmoid", rd_ratio=0.25)),
    Variant("se", "silu-nobias", _knob(SEConfig, act="silu", bias=False, rd_channels=5)),
    Variant("se", "gelu", _knob(SEConfig, act="gelu", rd_ratio=0.25)),
    Variant("se", "hard_swish-nearest8", _knob(SEConfig, act="hard_swish", rd_round="nearest", rd_divisor=8)),
    Variant("cbam", "avg-only", _knob(CBAMConfig, pool_types=("avg",), rd_ratio=0.25)),
    Variant("cbam", "max-only-k5", _knob(CBAMConfig, pool_types=("max",), spatial_kernel_size=5)),
    Variant("cbam", "lse-lp", _knob(CBAMConfig, pool_types=("lse", "lp"), rd_channels=5)),
    Variant(
        "cbam",
        "all-pools-mean-max",
        _knob(CBAMConfig, pool_types=("max", "lp", "avg", "lse"), spatial_pool_order=("mean", "max")),
    ),
    Variant("cbam", "no-spatial", _knob(CBAMConfig, spatial=False, act="gelu")),
    Variant(
        "cbam",
        "no-norm-bias-k1",
        _knob(CBAMConfig, spatial_norm=False, spatial_bias=True, spatial_kernel_size=1, gate="hard_sigmoid"),
    ),
    Variant(
        "cbam",
        "bias-norm-k3",
        _knob(
            CBAMConfig,
            spatial_bias=True,
            spatial_kernel_size=3,
            mlp_bias=False,
            act="silu",
            bn_momentum=0.3,
            bn_eps=1e-3,
        ),
    ),
    Variant(
        "cbam", "relu6-hard_swish", _knob(CBAMConfig, act="hard_swish", rd_ratio=0.25, rd_divisor=8, rd_round="nearest")
    ),
    Variant("eca", "k1", _knob(ECAConfig, kernel_size=1)),
    Variant("eca", "k5-circular-bias", _knob(ECAConfig, kernel_size=5, padding="circular", bias=True)),
    Variant("eca", "hard_sigmoid-gamma", _knob(ECAConfig, gate="hard_sigmoid", gamma=1.5, beta=2)),
]

MODES = (False, True)  # training


def variants(modules: tuple[str, ...] = MODULES, *, full: bool = False) -> list[Variant]:
    """Presets of ``modules``, plus the knob grid when ``full``."""
    return [v for v in PRESETS + (KNOBS if full else []) if v.module in modules]


NONFINITE_IDS = (
    "se-official",  # relu's selection, sigmoid's product (an Inf cotangent at a saturated gate)
    "se-relu6-hard_sigmoid",  # relu6 and the hard gate: two-sided selections
    "se-hard_swish-nearest8",  # hard_swish: a selection with a non-constant slope
    "cbam-official",  # avg and max pools, the spatial conv's padded zeros, BN (train and eval)
    "cbam-all-pools-mean-max",  # lse and lp pools, the other spatial pool order
    "cbam-no-norm-bias-k1",  # the hard gate on the spatial branch, a conv bias, no BN
    "eca-paper",  # "zeros" padding: padded zeros are values
    "eca-k5-circular-bias",  # "circular" padding: padded taps copy channels
)
"""The variants whose non-finite cases (``cases.nonfinite_cases``) the report runs: together they
exercise every piecewise derivative (relu, relu6, hard_swish, hard_sigmoid, max pools), every pool
over space (avg, max, lse, lp) and over channels (mean, max), BN in train and eval mode, both ECA
paddings and the padded zeros of CBAM's spatial convolution (SPEC.md section 1)."""
NONFINITE_DTYPES = ("float32",)
"""The dtype of the default run's non-finite cases (the one most users run); ``full`` adds every
gradient dtype of the adapter. An adapter without float32 uses its first gradient dtype."""


def nonfinite_variants(modules: tuple[str, ...] = MODULES) -> list[Variant]:
    """The variants of :data:`NONFINITE_IDS` among ``modules``, in module order.

    >>> [v.id for v in nonfinite_variants(("eca",))]
    ['eca-paper', 'eca-k5-circular-bias']
    """
    by_id = {v.id: v for v in PRESETS + KNOBS}
    chosen = [by_id[i] for i in NONFINITE_IDS if by_id[i].module in modules]
    return sorted(chosen, key=lambda v: MODULES.index(v.module))


NONFINITE_TRAIN_IDS = ("cbam-official",)
"""The variants whose non-finite cases also run in train mode: BN's batch statistics (a NaN or Inf
anywhere in the batch reaches every entry). Train mode changes nothing else, so one variant does."""


def nonfinite_modes(variant: Variant) -> tuple[bool, ...]:
    """The modes (``training``) ``variant``'s non-finite cases run in: eval, and train for :data:`NONFINITE_TRAIN_IDS`.

    >>> [nonfinite_modes(v) for v in nonfinite_variants(("cbam",))]
    [(False, True), (False,), (False,)]
    """
    return MODES if variant.id in NONFINITE_TRAIN_IDS else (False,)
