"""Derived sizes and presets (SPEC.md sections 2, 5 and 6), as literal tables worked out by hand.

Hidden width, ratio 1/16, v = C / 16:
  floor:   max(d, int(v) // d * d)
  nearest: max(d, int(v + d / 2) // d * d)
ECA adaptive size: t = int(|(log2 C + beta) / gamma|), k = t if t is odd else t + 1.
"""

from __future__ import annotations

import pytest

from reference_numpy import CBAMConfig, ECAConfig, SEConfig, param_layout

CHANNELS = (1, 8, 16, 24, 40, 64, 72, 120, 256)
# v = C/16:               0.0625 0.5 1  1.5 2.5 4  4.5 7.5 16
HIDDEN = {
    ("floor", 1): (1, 1, 1, 1, 2, 4, 4, 7, 16),
    ("floor", 8): (8, 8, 8, 8, 8, 8, 8, 8, 16),
    ("nearest", 1): (1, 1, 1, 2, 3, 4, 5, 8, 16),
    ("nearest", 8): (8, 8, 8, 8, 8, 8, 8, 8, 16),
}
HIDDEN_CASES = [
    pytest.param(cls, rd_round, divisor, c, want, id=f"{cls.module}-{rd_round}-d{divisor}-C{c}")
    for cls in (SEConfig, CBAMConfig)
    for (rd_round, divisor), row in HIDDEN.items()
    for c, want in zip(CHANNELS, row, strict=True)
]


@pytest.mark.parametrize(("cls", "rd_round", "divisor", "channels", "expected"), HIDDEN_CASES)
def test_hidden_width_table(cls, rd_round, divisor, channels, expected):
    cfg = cls(channels=channels, rd_ratio=1 / 16, rd_round=rd_round, rd_divisor=divisor)
    assert cfg.hidden == expected
    prefix = "channel." if cls is CBAMConfig else ""
    assert param_layout(cfg)[f"{prefix}fc1.weight"].shape == (expected, channels)
    assert param_layout(cfg)[f"{prefix}fc2.weight"].shape == (channels, expected)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        pytest.param({"channels": 64, "rd_ratio": 0.25}, 16, id="ratio_quarter"),
        pytest.param({"channels": 12, "rd_ratio": 0.5, "rd_round": "nearest", "rd_divisor": 4}, 8, id="nearest_6_to_8"),
        pytest.param({"channels": 12, "rd_ratio": 0.5, "rd_divisor": 4}, 4, id="floor_6_to_4"),
        pytest.param({"channels": 10, "rd_ratio": 0.5, "rd_round": "nearest", "rd_divisor": 4}, 4, id="nearest_5_to_4"),
        pytest.param({"channels": 7, "rd_ratio": 1.0}, 7, id="ratio_one"),
        pytest.param({"channels": 64, "rd_channels": 5}, 5, id="rd_channels_wins"),
        pytest.param(
            {"channels": 64, "rd_channels": 5, "rd_divisor": 8, "rd_round": "nearest"}, 5, id="rd_channels_not_rounded"
        ),
        pytest.param({"channels": 2, "rd_channels": 9}, 9, id="rd_channels_above_channels"),
    ],
)
def test_hidden_width_other_knobs(kwargs, expected):
    assert SEConfig(**kwargs).hidden == expected
    assert CBAMConfig(**kwargs).hidden == expected


def test_hidden_width_examples_quoted_in_spec():
    assert SEConfig(channels=64).hidden == 4  # official SE
    assert SEConfig.preset("timm", channels=64).hidden == 8  # timm SEModule
    assert CBAMConfig.preset("timm", channels=24).hidden == 2  # timm CBAM
    assert CBAMConfig(channels=24).hidden == 1  # official CBAM


ECA_CHANNELS = (1, 4, 8, 64, 128, 256, 512, 1024, 2048)
# (log2 C + 1) / 2:  0.5 1.5 2  3.5 4  4.5 5  5.5 6
ECA_ADAPTIVE = (1, 1, 3, 3, 5, 5, 5, 5, 7)
ECA_TIMM = (3, 3, 3, 3, 5, 5, 5, 5, 7)


@pytest.mark.parametrize(
    ("channels", "adaptive", "timm"),
    [pytest.param(*row, id=f"C{row[0]}") for row in zip(ECA_CHANNELS, ECA_ADAPTIVE, ECA_TIMM, strict=True)],
)
def test_eca_adaptive_kernel_size_table(channels, adaptive, timm):
    cfg = ECAConfig(channels=channels)
    assert cfg.kernel_size is None
    assert cfg.adaptive_kernel_size == adaptive
    assert cfg.effective_kernel_size == adaptive
    assert param_layout(cfg)["conv.weight"].shape == (adaptive,)
    assert ECAConfig.preset("paper", channels=channels).effective_kernel_size == adaptive
    for preset in ("timm", "timm_ceca"):
        p = ECAConfig.preset(preset, channels=channels)
        assert p.kernel_size == timm  # fixed at construction, as timm does
        assert p.effective_kernel_size == timm


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        pytest.param({"channels": 64, "gamma": 1, "beta": 1}, 7, id="gamma1"),  # 7 -> 7
        pytest.param({"channels": 64, "gamma": 2, "beta": 2}, 5, id="beta2"),  # 4 -> 5
        pytest.param({"channels": 64, "gamma": -2, "beta": 1}, 3, id="negative_gamma"),  # |-3.5| -> 3
        pytest.param({"channels": 64, "kernel_size": 9}, 9, id="explicit"),
        pytest.param({"channels": 2, "kernel_size": 1}, 1, id="explicit_one"),
    ],
)
def test_eca_kernel_size_other_knobs(kwargs, expected):
    assert ECAConfig(**kwargs).effective_kernel_size == expected


def test_eca_timm_preset_keeps_an_explicit_kernel_size():
    assert ECAConfig.preset("timm", channels=2048, kernel_size=1).kernel_size == 1
    assert ECAConfig.preset("timm_ceca", channels=1, kernel_size=5).kernel_size == 5


# ----------------------------------------------------------------------------- presets (SPEC.md section 6)


def _differences(cfg, default):
    return {k: v for k, v in cfg.to_dict().items() if v != default.to_dict()[k]}


@pytest.mark.parametrize(
    ("cls", "name", "kwargs", "expected"),
    [
        pytest.param(SEConfig, "official", {}, {}, id="se-official"),
        pytest.param(SEConfig, "timm", {}, {"rd_round": "nearest", "rd_divisor": 8}, id="se-timm"),
        pytest.param(SEConfig, "torchvision", {"rd_channels": 16}, {"rd_channels": 16}, id="se-torchvision"),
        pytest.param(CBAMConfig, "official", {}, {}, id="cbam-official"),
        pytest.param(
            CBAMConfig,
            "timm",
            {},
            {"rd_round": "nearest", "mlp_bias": False, "spatial_pool_order": ["mean", "max"], "bn_momentum": 0.1},
            id="cbam-timm",
        ),
        pytest.param(ECAConfig, "paper", {}, {}, id="eca-paper"),
        pytest.param(ECAConfig, "timm", {}, {"kernel_size": 3}, id="eca-timm"),
        pytest.param(ECAConfig, "timm_ceca", {}, {"kernel_size": 3, "padding": "circular"}, id="eca-timm_ceca"),
    ],
)
def test_preset_sets_exactly_its_fields(cls, name, kwargs, expected):
    """Each preset differs from the defaults in exactly the fields SPEC.md section 6 lists (C=64)."""
    cfg = cls.preset(name, channels=64, **kwargs)
    assert isinstance(cfg, cls)
    assert cfg.channels == 64
    assert _differences(cfg, cls(channels=64)) == expected


def test_official_defaults_are_the_released_code():
    se = SEConfig(channels=64)
    assert (se.rd_ratio, se.rd_channels, se.rd_divisor, se.rd_round, se.bias, se.act, se.gate) == (
        1 / 16,
        None,
        1,
        "floor",
        True,
        "relu",
        "sigmoid",
    )
    cbam = CBAMConfig(channels=64)
    assert cbam.pool_types == ("avg", "max")
    assert cbam.spatial_pool_order == ("max", "mean")
    assert (cbam.spatial, cbam.spatial_kernel_size, cbam.spatial_bias, cbam.spatial_norm) == (True, 7, False, True)
    assert (cbam.bn_eps, cbam.bn_momentum, cbam.mlp_bias) == (1e-5, 0.01, True)
    eca = ECAConfig(channels=64)
    assert (eca.kernel_size, eca.gamma, eca.beta, eca.padding, eca.bias, eca.gate) == (
        None,
        2,
        1,
        "zeros",
        False,
        "sigmoid",
    )


def test_preset_overrides_apply_after_the_preset():
    cfg = CBAMConfig.preset("timm", channels=64, bn_momentum=0.2, spatial_kernel_size=3)
    assert (cfg.bn_momentum, cfg.spatial_kernel_size, cfg.mlp_bias) == (0.2, 3, False)
    assert SEConfig.preset("timm", channels=64, rd_divisor=4).rd_divisor == 4


def test_torchvision_preset_requires_rd_channels():
    with pytest.raises(ValueError, match=r"'torchvision'.*Received: rd_channels=None"):
        SEConfig.preset("torchvision", channels=64)
    with pytest.raises(ValueError, match=r"'torchvision'.*Received: rd_channels=None"):
        SEConfig.preset("torchvision", channels=64, rd_channels=None)


@pytest.mark.parametrize(
    ("cls", "name"),
    [
        pytest.param(SEConfig, "paper", id="se"),
        pytest.param(CBAMConfig, "timm_ceca", id="cbam"),
        pytest.param(ECAConfig, "official", id="eca"),
    ],
)
def test_unknown_preset_names_the_known_ones(cls, name):
    with pytest.raises(ValueError, match=rf"has no preset '{name}'. Expected one of '"):
        cls.preset(name, channels=64)
