"""Every invalid config or input is refused by the spec, with a message naming what was expected and received.

Also the config round trips: to_dict/from_dict and JSON, for every config and preset.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

import reference_numpy as ref
from reference_numpy import CBAMConfig, ECAConfig, KeyMismatchError, SEConfig, config_from_dict

RD_CLASSES = [pytest.param(SEConfig, id="se"), pytest.param(CBAMConfig, id="cbam")]
ALL_CLASSES = [*RD_CLASSES, pytest.param(ECAConfig, id="eca")]


# ----------------------------------------------------------------------------- configs


@pytest.mark.parametrize("cls", ALL_CLASSES)
@pytest.mark.parametrize(
    ("channels", "error", "match"),
    [
        pytest.param(0, ValueError, r"`channels` must be an int >= 1\. Received: channels=0", id="zero"),
        pytest.param(-3, ValueError, r"`channels` must be an int >= 1\. Received: channels=-3", id="negative"),
        pytest.param(3.0, TypeError, r"`channels` must be an int\. Received: channels=3\.0 of type float", id="float"),
        pytest.param(True, TypeError, r"`channels` must be an int\. Received: channels=True of type bool", id="bool"),
        pytest.param("8", TypeError, r"`channels` must be an int\. Received: channels='8' of type str", id="str"),
        pytest.param(
            None, TypeError, r"`channels` must be an int\. Received: channels=None of type NoneType", id="none"
        ),
    ],
)
def test_bad_channels(cls, channels, error, match):
    with pytest.raises(error, match=match):
        cls(channels=channels)


@pytest.mark.parametrize("cls", RD_CLASSES)
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        pytest.param(
            {"rd_ratio": 0}, ValueError, r"`rd_ratio` must be in \(0, 1\]\. Received: rd_ratio=0$", id="rd_ratio_0"
        ),
        pytest.param(
            {"rd_ratio": 1.5},
            ValueError,
            r"`rd_ratio` must be in \(0, 1\]\. Received: rd_ratio=1\.5",
            id="rd_ratio_1.5",
        ),
        pytest.param(
            {"rd_ratio": -0.1},
            ValueError,
            r"`rd_ratio` must be in \(0, 1\]\. Received: rd_ratio=-0\.1",
            id="rd_ratio_neg",
        ),
        pytest.param(
            {"rd_ratio": float("nan")},
            ValueError,
            r"`rd_ratio` must be finite\. Received: rd_ratio=nan",
            id="rd_ratio_nan",
        ),
        pytest.param(
            {"rd_ratio": "1/16"},
            TypeError,
            r"`rd_ratio` must be a number\. Received: rd_ratio='1/16'",
            id="rd_ratio_str",
        ),
        pytest.param(
            {"rd_channels": 0},
            ValueError,
            r"`rd_channels` must be an int >= 1\. Received: rd_channels=0",
            id="rd_channels_0",
        ),
        pytest.param(
            {"rd_channels": 2.0},
            TypeError,
            r"`rd_channels` must be an int\. Received: rd_channels=2\.0",
            id="rd_channels_float",
        ),
        pytest.param(
            {"rd_divisor": 0},
            ValueError,
            r"`rd_divisor` must be an int >= 1\. Received: rd_divisor=0",
            id="rd_divisor_0",
        ),
        pytest.param(
            {"rd_round": "ceil"},
            ValueError,
            r"`rd_round` must be one of 'floor', 'nearest'\. Received: rd_round='ceil'",
            id="rd_round",
        ),
        pytest.param(
            {"act": "tanh"},
            ValueError,
            r"`act` must be one of 'relu', 'relu6', 'silu', 'gelu', 'hard_swish'\. Received: act='tanh'",
            id="act",
        ),
        pytest.param(
            {"gate": "hard_tanh"},
            ValueError,
            r"`gate` must be one of 'sigmoid', 'hard_sigmoid'\. Received: gate='hard_tanh'",
            id="gate",
        ),
        pytest.param({"act": None}, ValueError, r"`act` must be one of .*Received: act=None", id="act_none"),
    ],
)
def test_bad_reduction_and_activation_knobs(cls, kwargs, error, match):
    with pytest.raises(error, match=match):
        cls(channels=16, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        pytest.param(
            {"spatial_kernel_size": 4},
            ValueError,
            r"`spatial_kernel_size` must be an odd int >= 1\. Received: spatial_kernel_size=4",
            id="k4",
        ),
        pytest.param(
            {"spatial_kernel_size": 0},
            ValueError,
            r"`spatial_kernel_size` must be an int >= 1\. Received: spatial_kernel_size=0",
            id="k0",
        ),
        pytest.param(
            {"spatial_kernel_size": 7.0},
            TypeError,
            r"`spatial_kernel_size` must be an int\. Received: spatial_kernel_size=7\.0",
            id="k_float",
        ),
        pytest.param(
            {"pool_types": ("avg", "median")},
            ValueError,
            r"`pool_types` must be one of 'avg', 'max', 'lse', 'lp'\. Received: pool_types='median'",
            id="unknown_pool",
        ),
        pytest.param(
            {"pool_types": ()},
            ValueError,
            r"`pool_types` must name at least one of \('avg', 'max', 'lse', 'lp'\)\. Received: pool_types=\(\)",
            id="empty_pools",
        ),
        pytest.param(
            {"pool_types": ("avg", "max", "avg")},
            ValueError,
            r"`pool_types` must not repeat a pool\. Received: pool_types=\('avg', 'max', 'avg'\)",
            id="duplicate_pools",
        ),
        pytest.param(
            {"pool_types": "avg"},
            TypeError,
            r"`pool_types` must be a sequence of strings\. Received: pool_types='avg'",
            id="pools_str",
        ),
        *(
            pytest.param(
                {"spatial_pool_order": order},
                ValueError,
                r"`spatial_pool_order` must be \('max', 'mean'\) or \('mean', 'max'\)\. Received: spatial_pool_order="
                + re.escape(str(order)),
                id=f"order_{'_'.join(order) or 'empty'}",
            )
            for order in [("max", "max"), ("avg", "max"), ("max",), ("max", "mean", "max"), ()]
        ),
        pytest.param({"bn_eps": 0.0}, ValueError, r"`bn_eps` must be > 0\. Received: bn_eps=0\.0", id="bn_eps_0"),
        pytest.param({"bn_eps": -1e-5}, ValueError, r"`bn_eps` must be > 0\. Received: bn_eps=-1e-05", id="bn_eps_neg"),
        pytest.param(
            {"bn_momentum": 1.5},
            ValueError,
            r"`bn_momentum` must be in \[0, 1\]\. Received: bn_momentum=1\.5",
            id="bn_momentum_1.5",
        ),
        pytest.param(
            {"bn_momentum": -0.1},
            ValueError,
            r"`bn_momentum` must be in \[0, 1\]\. Received: bn_momentum=-0\.1",
            id="bn_momentum_neg",
        ),
        *(
            pytest.param(
                {knob: 1}, TypeError, rf"`{knob}` must be a bool\. Received: {knob}=1 of type int", id=f"{knob}_int"
            )
            for knob in ("mlp_bias", "spatial", "spatial_bias", "spatial_norm")
        ),
    ],
)
def test_bad_cbam_knobs(kwargs, error, match):
    with pytest.raises(error, match=match):
        CBAMConfig(channels=16, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        pytest.param(
            {"kernel_size": 2}, ValueError, r"`kernel_size` must be an odd int >= 1\. Received: kernel_size=2", id="k2"
        ),
        pytest.param(
            {"kernel_size": -1}, ValueError, r"`kernel_size` must be an int >= 1\. Received: kernel_size=-1", id="k-1"
        ),
        pytest.param(
            {"kernel_size": 0}, ValueError, r"`kernel_size` must be an int >= 1\. Received: kernel_size=0", id="k0"
        ),
        pytest.param(
            {"kernel_size": 3.0}, TypeError, r"`kernel_size` must be an int\. Received: kernel_size=3\.0", id="k_float"
        ),
        pytest.param({"gamma": 0}, ValueError, r"`gamma` must be non-zero\. Received: gamma=0", id="gamma_0"),
        pytest.param(
            {"gamma": float("inf")}, ValueError, r"`gamma` must be finite\. Received: gamma=inf", id="gamma_inf"
        ),
        pytest.param({"beta": "1"}, TypeError, r"`beta` must be a number\. Received: beta='1'", id="beta_str"),
        pytest.param(
            {"padding": "reflect"},
            ValueError,
            r"`padding` must be one of 'zeros', 'circular'\. Received: padding='reflect'",
            id="padding",
        ),
        pytest.param(
            {"gate": "relu"},
            ValueError,
            r"`gate` must be one of 'sigmoid', 'hard_sigmoid'\. Received: gate='relu'",
            id="gate",
        ),
        pytest.param(
            {"bias": "yes"}, TypeError, r"`bias` must be a bool\. Received: bias='yes' of type str", id="bias_str"
        ),
    ],
)
def test_bad_eca_knobs(kwargs, error, match):
    with pytest.raises(error, match=match):
        ECAConfig(channels=16, **kwargs)


def test_se_bias_must_be_bool():
    with pytest.raises(TypeError, match=r"`bias` must be a bool\. Received: bias=0 of type int"):
        SEConfig(channels=16, bias=0)


# ----------------------------------------------------------------------------- inputs

CONFIGS = [
    pytest.param(SEConfig(8, rd_channels=2), id="se"),
    pytest.param(CBAMConfig(8, rd_channels=2, spatial_kernel_size=3), id="cbam"),
    pytest.param(ECAConfig(8), id="eca"),
]
NAMES = {"se": "SE", "cbam": "CBAM", "eca": "ECA"}


def _params(cfg):
    return ref.init_params(cfg, seed=0)


@pytest.mark.parametrize("cfg", CONFIGS)
@pytest.mark.parametrize(
    ("shape", "data_format", "axis"),
    [
        pytest.param((2, 7, 3, 4), "channels_first", 1, id="nchw"),
        pytest.param((2, 3, 4, 7), "channels_last", 3, id="nhwc"),
        pytest.param((2, 8, 3, 4), "channels_last", 3, id="nchw_input_as_nhwc"),
        pytest.param((2, 3, 4, 8), "channels_first", 1, id="nhwc_input_as_nchw"),
    ],
)
def test_wrong_channel_count(cfg, shape, data_format, axis):
    name = f"{NAMES[cfg.module]}\\(channels=8\\)"
    match = rf'{name} expects 8 input channels on axis {axis} \(data_format="{data_format}"\)\. Received input of shape {re.escape(str(shape))}\.'
    with pytest.raises(ValueError, match=match):
        ref.forward(cfg, _params(cfg), np.zeros(shape), data_format=data_format)


@pytest.mark.parametrize("cfg", CONFIGS)
@pytest.mark.parametrize(
    ("shape", "data_format", "layout"),
    [
        pytest.param((8, 3, 4), "channels_first", "N, C, H, W", id="rank3"),
        pytest.param((2, 8, 3, 4, 1), "channels_first", "N, C, H, W", id="rank5"),
        pytest.param((3, 4, 8), "channels_last", "N, H, W, C", id="rank3_nhwc"),
        pytest.param((8,), "channels_first", "N, C, H, W", id="rank1"),
    ],
)
def test_wrong_rank(cfg, shape, data_format, layout):
    match = rf"{NAMES[cfg.module]}\(channels=8\) expects a 4-D input \({layout}\)\. Received input of shape {re.escape(str(shape))}\."
    with pytest.raises(ValueError, match=match):
        ref.forward(cfg, _params(cfg), np.zeros(shape), data_format=data_format)


@pytest.mark.parametrize("cfg", CONFIGS)
@pytest.mark.parametrize("dtype", ["int32", "int64", "uint8", "bool", "complex128"])
def test_non_floating_input_is_a_type_error_naming_the_dtype(cfg, dtype):
    with pytest.raises(
        TypeError, match=rf"{NAMES[cfg.module]}\(channels=8\) expects a floating-point input\. Received: dtype={dtype}$"
    ):
        ref.forward(cfg, _params(cfg), np.zeros((2, 8, 3, 4), dtype=dtype))


@pytest.mark.parametrize("cfg", CONFIGS)
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_floating_inputs_are_accepted(cfg, dtype):
    y = ref.forward(cfg, _params(cfg), np.ones((2, 8, 3, 4), dtype=dtype))[0]
    assert y.dtype == np.dtype(dtype)


@pytest.mark.parametrize(
    ("shape", "data_format"),
    [
        pytest.param((1, 8, 1, 1), "channels_first", id="nchw"),
        pytest.param((1, 1, 1, 8), "channels_last", id="nhwc"),
    ],
)
def test_train_mode_bn_needs_more_than_one_value(shape, data_format):
    cfg = CBAMConfig(8, rd_channels=2)
    match = (
        r"CBAM\(channels=8\) in training mode needs more than one value per channel for batch norm "
        rf"\(N \* H \* W > 1\)\. Received input of shape {re.escape(str(shape))}\."
    )
    with pytest.raises(ValueError, match=match):
        ref.forward(cfg, _params(cfg), np.zeros(shape), training=True, data_format=data_format)
    ref.forward(cfg, _params(cfg), np.zeros(shape), training=False, data_format=data_format)  # eval is fine
    no_bn = cfg.replace(spatial_norm=False)
    ref.forward(no_bn, _params(no_bn), np.zeros(shape), training=True, data_format=data_format)  # no BN: fine


@pytest.mark.parametrize("cfg", CONFIGS)
@pytest.mark.parametrize("shape", [(0, 8, 3, 4), (2, 8, 0, 4), (2, 8, 3, 0)], ids=["N0", "H0", "W0"])
def test_empty_batch_or_spatial_dims_are_refused(cfg, shape):
    """SPEC.md section 1: N, H, W >= 1. (Today H=0 warns "Mean of empty slice" and returns NaN-derived output.)"""
    with pytest.raises(
        ValueError, match=rf"{NAMES[cfg.module]}\(channels=8\) .*Received input of shape {re.escape(str(shape))}"
    ):
        ref.forward(cfg, _params(cfg), np.zeros(shape))


@pytest.mark.parametrize("cfg", CONFIGS)
@pytest.mark.parametrize("data_format", ["NCHW", "channels-first", "", None])
def test_bad_data_format(cfg, data_format):
    with pytest.raises(
        ValueError,
        match=rf"`data_format` must be one of 'channels_first', 'channels_last'\. Received: data_format={re.escape(repr(data_format))}",
    ):
        ref.forward(cfg, _params(cfg), np.zeros((2, 8, 3, 4)), data_format=data_format)


def test_wrong_params_list_every_problem_at_once():
    cfg = CBAMConfig(8, rd_channels=2, spatial_kernel_size=3)
    params = _params(cfg)
    del params["channel.fc1.bias"], params["spatial.bn.running_var"]
    params["channel.fc2.weight"] = np.zeros((2, 8))  # transposed
    params["spatial.conv.weight"] = np.zeros((1, 2, 7, 7))
    params["spatial.conv.bias"] = np.zeros(1)  # spatial_bias=False
    params["extra"] = np.zeros(3)
    match = (
        r"params does not match the expected layout; "
        r"missing keys: channel\.fc1\.bias, spatial\.bn\.running_var; "
        r"unexpected keys: extra, spatial\.conv\.bias; "
        r"mis-shaped keys: channel\.fc2\.weight \(expected shape \(8, 2\), received \(2, 8\)\), "
        r"spatial\.conv\.weight \(expected shape \(1, 2, 3, 3\), received \(1, 2, 7, 7\)\)\.$"
    )
    with pytest.raises(KeyMismatchError, match=match) as info:
        ref.forward(cfg, params, np.zeros((2, 8, 3, 4)))
    assert isinstance(info.value, ValueError)
    assert info.value.missing == ["channel.fc1.bias", "spatial.bn.running_var"]
    assert info.value.unexpected == ["extra", "spatial.conv.bias"]
    assert len(info.value.misshaped) == 2


@pytest.mark.parametrize(
    ("cfg", "params", "match"),
    [
        pytest.param(
            SEConfig(8, rd_channels=2, bias=False),
            {"fc1.weight": np.zeros((2, 8))},
            r"missing keys: fc2\.weight\.$",
            id="missing",
        ),
        pytest.param(
            ECAConfig(8, kernel_size=3),
            {"conv.weight": np.zeros(3), "conv.bias": np.zeros(1)},
            r"unexpected keys: conv\.bias\.$",
            id="unexpected",
        ),
        pytest.param(
            ECAConfig(8, kernel_size=3),
            {"conv.weight": np.zeros((1, 1, 3))},
            r"mis-shaped keys: conv\.weight \(expected shape \(3,\), received \(1, 1, 3\)\)\.$",
            id="misshaped",
        ),
    ],
)
def test_wrong_params_single_problem(cfg, params, match):
    with pytest.raises(KeyMismatchError, match=match):
        ref.forward(cfg, params, np.zeros((2, 8, 3, 4)))


@pytest.mark.parametrize("params", [[("conv.weight", np.zeros(3))], None, np.zeros(3)], ids=["list", "none", "array"])
def test_params_must_be_a_mapping(params):
    with pytest.raises(TypeError, match=r"`params` must be a mapping of canonical names to arrays\. Received: "):
        ref.forward(ECAConfig(8, kernel_size=3), params, np.zeros((2, 8, 3, 4)))


@pytest.mark.parametrize("cfg", ["se", {"module": "se", "channels": 8}, None], ids=["str", "dict", "none"])
def test_forward_needs_a_config_object(cfg):
    with pytest.raises(TypeError, match=r"Expected an SEConfig, CBAMConfig or ECAConfig\. Received: "):
        ref.forward(cfg, {}, np.zeros((2, 8, 3, 4)))


@pytest.mark.parametrize("cfg", CONFIGS)
@pytest.mark.parametrize("data_format", ["channels_first", "channels_last"])
def test_backward_with_a_wrong_dy_shape(cfg, data_format):
    x = np.zeros((2, 8, 3, 4)) if data_format == "channels_first" else np.zeros((2, 3, 4, 8))
    _, cache, _ = ref.forward(cfg, _params(cfg), x, data_format=data_format)
    for bad in [np.zeros((2, 8, 4, 3)), np.zeros((2, 3, 4)), np.zeros((1, *x.shape[1:]))]:
        match = rf"`dy` must have the output's shape {re.escape(str(x.shape))}\. Received: dy of shape {re.escape(str(bad.shape))}"
        with pytest.raises(ValueError, match=match):
            ref.backward(cfg, bad, cache)


def test_backward_with_another_configs_cache():
    cfg = SEConfig(8, rd_channels=2)
    _, cache, _ = ref.forward(cfg, _params(cfg), np.zeros((2, 8, 3, 4)))
    with pytest.raises(
        ValueError,
        match=r"`cache` was made by a forward pass of SEConfig\(channels=8.*rd_channels=2.*not of SEConfig\(channels=8.*rd_channels=None",
    ):
        ref.backward(SEConfig(8), np.zeros((2, 8, 3, 4)), cache)


# ----------------------------------------------------------------------------- config round trips

ROUND_TRIP_CONFIGS = [
    pytest.param(SEConfig(64), id="se-default"),
    pytest.param(
        SEConfig(
            24,
            rd_ratio=0.3,
            rd_channels=5,
            rd_divisor=4,
            rd_round="nearest",
            bias=False,
            act="gelu",
            gate="hard_sigmoid",
        ),
        id="se-all",
    ),
    pytest.param(CBAMConfig(64), id="cbam-default"),
    pytest.param(
        CBAMConfig(
            12,
            rd_ratio=0.5,
            rd_channels=3,
            rd_divisor=2,
            rd_round="nearest",
            mlp_bias=False,
            act="hard_swish",
            gate="hard_sigmoid",
            pool_types=["lp", "lse", "max"],
            spatial=False,
            spatial_kernel_size=5,
            spatial_pool_order=["mean", "max"],
            spatial_bias=True,
            spatial_norm=False,
            bn_eps=1e-3,
            bn_momentum=0.3,
        ),
        id="cbam-all",
    ),
    pytest.param(ECAConfig(64), id="eca-default"),
    pytest.param(
        ECAConfig(7, kernel_size=5, gamma=1.5, beta=-0.5, padding="circular", bias=True, gate="hard_sigmoid"),
        id="eca-all",
    ),
    *(
        pytest.param(cls.preset(name, channels=48), id=f"{cls.module}-preset-{name}")
        for cls in (CBAMConfig, ECAConfig)
        for name in cls.presets
    ),
    pytest.param(SEConfig.preset("official", channels=48), id="se-preset-official"),
    pytest.param(SEConfig.preset("timm", channels=48), id="se-preset-timm"),
    pytest.param(SEConfig.preset("torchvision", channels=48, rd_channels=12), id="se-preset-torchvision"),
]


@pytest.mark.parametrize("cfg", ROUND_TRIP_CONFIGS)
def test_config_round_trips(cfg):
    d = cfg.to_dict()
    assert d["module"] == cfg.module
    assert all(not isinstance(v, tuple) for v in d.values())  # JSON-ready
    assert type(cfg).from_dict(d) == cfg
    assert config_from_dict(d) == cfg
    text = cfg.to_json()
    assert json.loads(text) == d
    back = config_from_dict(json.loads(text))
    assert back == cfg and type(back) is type(cfg)
    assert hash(back) == hash(cfg)
    assert ref.param_layout(back) == ref.param_layout(cfg)


def test_from_dict_without_module_uses_the_class():
    assert SEConfig.from_dict({"channels": 8}) == SEConfig(8)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        pytest.param(
            lambda: SEConfig.from_dict({"module": "se", "channels": 8, "ratio": 0.5}),
            ValueError,
            r"SEConfig\.from_dict got unknown keys \['ratio'\]\. Expected a subset of \['act', 'bias', 'channels', ",
            id="unknown_key",
        ),
        pytest.param(
            lambda: CBAMConfig.from_dict({"channels": 8, "no_spatial": True, "kernel": 3}),
            ValueError,
            r"CBAMConfig\.from_dict got unknown keys \['kernel', 'no_spatial'\]",
            id="unknown_keys_all_named",
        ),
        pytest.param(
            lambda: SEConfig.from_dict({"module": "cbam", "channels": 8}),
            ValueError,
            r"SEConfig\.from_dict expects module='se'\. Received: module='cbam'",
            id="wrong_module",
        ),
        pytest.param(
            lambda: ECAConfig.from_dict(SEConfig(8).to_dict()),
            ValueError,
            r"ECAConfig\.from_dict expects module='eca'\. Received: module='se'",
            id="other_configs_dict",
        ),
        pytest.param(
            lambda: config_from_dict({"module": "bam", "channels": 8}),
            ValueError,
            r"`module` must be one of 'se', 'cbam', 'eca'\. Received: module='bam'",
            id="unknown_module",
        ),
        pytest.param(
            lambda: config_from_dict({"channels": 8}),
            ValueError,
            r"`module` must be one of 'se', 'cbam', 'eca'\. Received: module=None",
            id="no_module",
        ),
        pytest.param(
            lambda: config_from_dict({"module": "eca", "channels": 8, "kernel_size": 4}),
            ValueError,
            r"`kernel_size` must be an odd int >= 1\. Received: kernel_size=4",
            id="invalid_value",
        ),
    ],
)
def test_from_dict_refuses(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_configs_are_frozen_and_replace_revalidates():
    cfg = CBAMConfig(16)
    with pytest.raises(AttributeError):
        cfg.channels = 8  # type: ignore[misc]
    with pytest.raises(
        ValueError, match=r"`spatial_kernel_size` must be an odd int >= 1\. Received: spatial_kernel_size=6"
    ):
        cfg.replace(spatial_kernel_size=6)


# ----------------------------------------------------------------------------- bounds (issue #14)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        pytest.param(
            lambda: ECAConfig(channels=16, gamma=5e-324),
            r"`gamma` and `beta` must give an adaptive kernel size <= 2147483647\. Received: gamma=5e-324, beta=1 "
            r"\(channels=16\), which give \|log2\(channels\) \+ beta\| / gamma = inf",
            id="eca_gamma_denormal",
        ),
        pytest.param(
            lambda: SEConfig(channels=10**400),
            r"`channels` must be an int <= 2147483647 \(2\*\*31 - 1\)\. Received: channels=<an int of about 400 digits>",
            id="se_channels_huge",
        ),
        pytest.param(
            lambda: SEConfig(16, rd_channels=2**31), r"`rd_channels` must be an int <= 2147483647", id="rd_channels"
        ),
        pytest.param(
            lambda: CBAMConfig(16, spatial_kernel_size=2**31 + 1),
            r"`spatial_kernel_size` must be an int <= 2147483647",
            id="spatial_kernel",
        ),
        pytest.param(
            lambda: SEConfig(2**31 - 1, rd_ratio=1, rd_divisor=2, rd_round="nearest"),
            r"The hidden width must be <= 2147483647\. Received: .* which give 2147483648",
            id="hidden",
        ),
        pytest.param(lambda: SEConfig(16, rd_ratio=10**400), r"`rd_ratio` must be finite", id="rd_ratio_huge_int"),
        pytest.param(
            lambda: CBAMConfig(16, spatial_pool_order=("max", 1)),
            r"`spatial_pool_order` must be \('max', 'mean'\) or \('mean', 'max'\)\. Received: spatial_pool_order=\('max', 1\)",
            id="pool_order_int",
        ),
    ],
)
def test_every_size_is_bounded_at_construction(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_the_largest_sizes_are_accepted():
    cfg = SEConfig(2**31 - 1, rd_channels=2**31 - 1)
    assert cfg.hidden == 2**31 - 1
    assert ECAConfig(2**31 - 1, kernel_size=2**31 - 1).effective_kernel_size == 2**31 - 1


@pytest.mark.parametrize("training", ["no", "", 1, 0, None, 0.5, np.array([True, False])])
def test_training_must_be_a_bool(training):
    cfg = CBAMConfig(8, rd_channels=2)
    with pytest.raises(TypeError, match=r"`training` must be a bool\. Received: training="):
        ref.forward(cfg, ref.init_params(cfg), np.ones((2, 8, 3, 4)), training=training)


@pytest.mark.parametrize("training", [True, np.bool_(True), np.array(True)])
def test_training_bools_are_accepted(training):
    cfg = CBAMConfig(8, rd_channels=2)
    _, _, state = ref.forward(cfg, ref.init_params(cfg), np.ones((2, 8, 3, 4)), training=training)
    assert sorted(state) == ["spatial.bn.running_mean", "spatial.bn.running_var"]


def test_as_config_takes_a_config_or_its_dict():
    cfg = CBAMConfig.preset("timm", channels=8)
    assert ref.as_config(cfg) is cfg
    assert ref.as_config(cfg.to_dict()) == cfg
    with pytest.raises(TypeError, match=r"`cfg` must be an SEConfig, CBAMConfig or ECAConfig, or a dict"):
        ref.as_config(["cbam"])
