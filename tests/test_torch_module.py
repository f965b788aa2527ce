"""torch_impl beyond the conformance grid: construction, canonical weights, memory formats, ties, NaN, SyncBN.

Every numerical check goes through the conformance core's ``compare`` against the float64
reference (tolerances from SPEC.md section 9); every equivalence has a case next to it that
must fail.
"""

from __future__ import annotations

import dataclasses
import inspect

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import torch_impl  # noqa: E402
from conformance import compare, make_case, reference_outputs, round_to_dtype  # noqa: E402
from conformance.grid import CHANNELS, PRESETS, Variant  # noqa: E402
from reference_numpy import (  # noqa: E402
    CBAMConfig,
    ECAConfig,
    KeyMismatchError,
    SEConfig,
    export_state_dict,
    forward,
    import_state_dict,
    init_params,
    knob_names,
    make_config,
    param_init,
    param_layout,
    to_framework,
)
from reference_numpy.config import CONFIG_TYPES  # noqa: E402

pytestmark = pytest.mark.torch

CLASSES = {"se": torch_impl.SqueezeExcite, "cbam": torch_impl.CBAM, "eca": torch_impl.ECA}
MODULES = [pytest.param(m, id=m) for m in CLASSES]
PRESET_VARIANTS = [pytest.param(v, id=v.id) for v in PRESETS]
DTYPES = {"float64": torch.float64, "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _run(module, x: np.ndarray, dy: np.ndarray | None, dtype: str, *, channels_last: bool = False, training=False):
    """Forward (and backward with ``dy``) of NCHW ``x``; returns (y, dx, grads, state) as float64 NumPy."""
    module.train(training)
    xt = torch.from_numpy(x).to(DTYPES[dtype])
    if channels_last:
        xt = xt.contiguous(memory_format=torch.channels_last)
    xt.requires_grad_(dy is not None)
    y = module(xt)
    if dy is not None:
        y.backward(torch.from_numpy(dy).to(DTYPES[dtype]))
    grads = {
        k: v.grad.double().numpy().reshape(param_layout(module.config)[k].shape)
        for k, v in module.named_parameters()
        if v.grad is not None
    }
    state = {k: v for k, v in torch_impl.to_canonical(module).items() if "running" in k}
    return y, (None if dy is None else xt.grad), grads, state


def _assert_matches(case, y, dx, grads, dtype: str) -> None:
    want = reference_outputs(case, with_grads=dx is not None)
    checks = [compare("y", y.detach().double().numpy(), want.y, dtype, seed=case.seed)]
    if dx is not None:
        checks.append(compare("dx", dx.double().numpy(), want.dx, dtype, seed=case.seed))
        checks += [compare(f"grad[{k}]", grads[k], g, dtype, seed=case.seed) for k, g in want.grads.items()]
    bad = [c.message for c in checks if not c.ok]
    assert not bad, "\n".join(bad)


def _loaded(case, dtype: str = "float64"):
    return torch_impl.load_canonical(torch_impl.from_config(case.cfg, dtype=DTYPES[dtype]), case.params)


# ----------------------------------------------------------------------------- construction


@pytest.mark.parametrize("module", MODULES)
def test_signature_lists_every_knob_with_the_spec_default(module):
    params = inspect.signature(CLASSES[module]).parameters
    assert list(params) == ["channels", *knob_names(module), "preset", "device", "dtype"]
    defaults = {f.name: f.default for f in dataclasses.fields(CONFIG_TYPES[module]) if f.name != "channels"}
    assert {k: params[k].default for k in knob_names(module)} == defaults
    assert all(params[k].kind is inspect.Parameter.KEYWORD_ONLY for k in (*knob_names(module), "preset"))


@pytest.mark.parametrize("variant", PRESET_VARIANTS)
def test_kwargs_preset_and_from_config_build_the_same_module(variant: Variant):
    cfg = variant.build(CHANNELS)
    overrides = {"rd_channels": 5} if variant.id == "se-torchvision" else {}
    by_kwargs = CLASSES[variant.module](CHANNELS, preset=variant.name, **overrides)
    torch.manual_seed(0)
    by_config = torch_impl.from_config(cfg)
    torch.manual_seed(0)
    again = torch_impl.from_config(cfg)
    assert by_kwargs.config == by_config.config == cfg
    assert list(by_kwargs.state_dict()) == list(by_config.state_dict()) == list(param_layout(cfg))
    assert all(
        torch.equal(a, b) for a, b in zip(by_config.state_dict().values(), again.state_dict().values(), strict=True)
    )


def test_explicit_knobs_override_a_preset_and_defaults_do_not():
    assert torch_impl.CBAM(64, preset="timm").config.spatial_pool_order == ("mean", "max")
    assert torch_impl.CBAM(64, preset="timm", spatial_kernel_size=3).config == CBAMConfig.preset(
        "timm", channels=64, spatial_kernel_size=3
    )
    assert torch_impl.ECA(64, preset="timm", kernel_size=7).config.kernel_size == 7


@pytest.mark.parametrize(
    ("module", "kwargs"),
    [
        pytest.param("eca", {"kernal_size": 3}, id="eca-typo"),
        pytest.param("cbam", {"spatial_kernel_size": 4}, id="cbam-even-kernel"),
        pytest.param("se", {"rd_ratio": 1.5}, id="se-ratio"),
        pytest.param("se", {"preset": "timmm"}, id="se-unknown-preset"),
    ],
)
def test_bad_arguments_raise_the_spec_error(module, kwargs):
    with pytest.raises((TypeError, ValueError)) as spec_error:
        make_config(module, 64, **kwargs)
    with pytest.raises(spec_error.type, match=None) as ours:
        CLASSES[module](64, **kwargs)
    assert str(ours.value) == str(spec_error.value)


def test_from_config_rejects_something_else():
    with pytest.raises(TypeError, match="Expected an SEConfig, CBAMConfig or ECAConfig"):
        torch_impl.from_config({"module": "se", "channels": 8})


def test_input_checks_come_from_the_spec():
    se = torch_impl.SqueezeExcite(64)
    with pytest.raises(ValueError) as ours:
        se(torch.zeros(2, 32, 8, 8))
    with pytest.raises(ValueError) as spec:
        SEConfig(channels=64).validate_input((2, 32, 8, 8))
    assert str(ours.value) == str(spec.value)
    with pytest.raises(TypeError, match=r"floating-point input\. Received: dtype=int64"):
        se(torch.zeros(2, 64, 8, 8, dtype=torch.int64))
    cbam = torch_impl.CBAM(8).train()
    with pytest.raises(ValueError, match="more than one value per channel"):
        cbam(torch.zeros(1, 8, 1, 1))
    cbam.eval()(torch.zeros(1, 8, 1, 1))  # one value is fine in eval mode
    torch_impl.CBAM(8, spatial_norm=False).train()(torch.zeros(1, 8, 1, 1))  # and without BN


@pytest.mark.parametrize("module", MODULES)
def test_initialisation_follows_param_init(module):
    cfg = make_config(module, 48)
    torch.manual_seed(0)
    held = torch_impl.to_canonical(torch_impl.from_config(cfg))
    for name, init in param_init(cfg).items():
        if init.dist == "constant":
            assert (held[name] == init.value).all(), name
            continue
        assert -init.value <= held[name].min() and held[name].max() <= init.value, name
        if held[name].size >= 16:  # fills the range: not a [0, b) or a narrower draw
            assert held[name].min() < -init.value / 2 and init.value / 2 < held[name].max(), name


# ----------------------------------------------------------------------------- canonical weights


@pytest.mark.parametrize("variant", PRESET_VARIANTS)
def test_state_dict_keys_are_the_canonical_names(variant: Variant):
    m = torch_impl.from_config(variant.build(CHANNELS))
    assert list(m.state_dict()) == list(param_layout(m.config))
    torch_layout = to_framework(m.config, init_params(m.config), "torch")
    m.load_state_dict({k: torch.from_numpy(v) for k, v in torch_layout.items()})  # a plain dict, strict


@pytest.mark.parametrize("dtype", ["float64", "float32", "bfloat16"])
@pytest.mark.parametrize("variant", PRESET_VARIANTS)
def test_canonical_round_trip_is_bit_exact(variant: Variant, dtype: str):
    cfg = variant.build(CHANNELS)
    params = {k: round_to_dtype(v, dtype) for k, v in init_params(cfg, seed=1).items()}
    back = torch_impl.to_canonical(torch_impl.load_canonical(torch_impl.from_config(cfg, dtype=DTYPES[dtype]), params))
    assert list(back) == list(params)
    assert all(back[k].dtype == np.float64 and np.array_equal(back[k], params[k]) for k in params)


def test_eca_kernel_is_a_conv1d_in_torch_and_flat_in_the_canonical_layout():
    eca = torch_impl.ECA(64, kernel_size=5)
    torch_impl.load_canonical(eca, {"conv.weight": np.arange(5.0)})
    assert eca.conv.weight.shape == (1, 1, 5)
    assert eca.conv.weight.flatten().tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_load_canonical_lists_every_problem_at_once():
    cbam = torch_impl.CBAM(32, rd_channels=4)
    params = init_params(cbam.config)
    params.pop("channel.fc1.bias")
    params.pop("spatial.bn.running_var")
    params["spatial.conv.weight"] = np.zeros((1, 2, 5, 7))  # non-square: a transpose would not hide
    params["channel.fc2.weight"] = params["channel.fc2.weight"].T
    params["spatial.bn.num_batches_tracked"] = np.zeros(())
    with pytest.raises(KeyMismatchError) as e:
        torch_impl.load_canonical(cbam, params)
    assert e.value.missing == ["channel.fc1.bias", "spatial.bn.running_var"]
    assert e.value.unexpected == ["spatial.bn.num_batches_tracked"]
    assert [m.split(" ")[0] for m in e.value.misshaped] == ["channel.fc2.weight", "spatial.conv.weight"]
    before = torch_impl.to_canonical(cbam)
    assert all(np.array_equal(before[k], v) for k, v in torch_impl.to_canonical(cbam).items())  # nothing loaded


def test_load_canonical_non_strict_loads_a_subset_and_still_rejects_bad_keys():
    cbam = torch_impl.CBAM(32, rd_channels=4)
    before = torch_impl.to_canonical(cbam)
    torch_impl.load_canonical(cbam, {"spatial.bn.running_mean": np.array([0.25])}, strict=False)
    after = torch_impl.to_canonical(cbam)
    assert after["spatial.bn.running_mean"].tolist() == [0.25]
    assert all(np.array_equal(before[k], after[k]) for k in before if k != "spatial.bn.running_mean")
    with pytest.raises(KeyMismatchError, match=r"unexpected keys: spatial\.bn\.mean"):
        torch_impl.load_canonical(cbam, {"spatial.bn.mean": np.zeros(1)}, strict=False)
    with pytest.raises(KeyMismatchError, match=r"mis-shaped keys: spatial\.conv\.weight"):
        torch_impl.load_canonical(cbam, {"spatial.conv.weight": np.zeros((1, 2, 3, 3))}, strict=False)


def test_timm_checkpoint_weights_load_through_the_shared_tables():
    cfg = CBAMConfig.preset("timm", channels=64)
    params = init_params(cfg, seed=2)
    model_sd = export_state_dict(params, "timm", cfg, prefix="layer1.0.attn.", state_dict={"fc.weight": np.zeros(3)})
    cbam = torch_impl.load_canonical(
        torch_impl.CBAM(64, preset="timm", dtype=torch.float64),
        import_state_dict(model_sd, "timm", cfg, prefix="layer1.0.attn."),
    )
    back = torch_impl.to_canonical(cbam)
    assert all(np.array_equal(back[k], params[k]) for k in params)


# ----------------------------------------------------------------------------- memory formats and dtypes


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("variant", PRESET_VARIANTS)
def test_channels_last_memory_format_in_and_out(variant: Variant, dtype: str):
    case = make_case(variant.build(CHANNELS), seed=11, dtype=dtype, training=True)
    y, dx, grads, _ = _run(_loaded(case, dtype), case.x, case.dy, dtype, channels_last=True, training=True)
    assert y.is_contiguous(memory_format=torch.channels_last) and not y.is_contiguous()
    assert y.dtype == DTYPES[dtype] and dx.dtype == DTYPES[dtype]
    _assert_matches(case, y, dx, grads, dtype)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("variant", PRESET_VARIANTS)
def test_half_types_forward_in_both_memory_formats(variant: Variant, dtype: str):
    case = make_case(variant.build(CHANNELS), seed=9, dtype=dtype, shape=(3, CHANNELS, 16, 13))
    for channels_last in (False, True):
        y, *_ = _run(_loaded(case, dtype), case.x, None, dtype, channels_last=channels_last)
        assert y.dtype == DTYPES[dtype]
        assert y.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        _assert_matches(case, y, None, {}, dtype)


def test_half_reductions_accumulate_in_float32():
    """A mean over 4096 values of ~100 in bfloat16 arithmetic is off by far more than bf16's tolerance."""
    case = make_case(SEConfig(channels=4, rd_channels=2), seed=0, dtype="bfloat16")
    x = np.random.default_rng(0).uniform(100, 150, size=(2, 4, 64, 64))
    case = dataclasses.replace(case, x=round_to_dtype(x, "bfloat16"), dy=np.zeros_like(x))
    y, *_ = _run(_loaded(case, "bfloat16"), case.x, None, "bfloat16")
    _assert_matches(case, y, None, {}, "bfloat16")


# ----------------------------------------------------------------------------- ties, NaN, non-vacuity


def _tied_case(cfg, seed: int):
    """Small integers: many equal maxima over H, W and over C (including all-zero channel maxima)."""
    case = make_case(cfg, seed=seed, training=True)
    x = np.random.default_rng(seed).integers(-2, 3, size=case.x.shape).astype(np.float64)
    return dataclasses.replace(case, x=x)


@pytest.mark.parametrize(
    "cfg",
    [
        pytest.param(CBAMConfig(channels=CHANNELS), id="cbam-official"),
        pytest.param(CBAMConfig(channels=CHANNELS, pool_types=("max", "lp", "lse")), id="cbam-max-lp-lse"),
        pytest.param(CBAMConfig(channels=CHANNELS, gate="hard_sigmoid", spatial_norm=False), id="cbam-hard"),
    ],
)
def test_max_pool_ties_split_the_gradient_evenly(cfg):
    case = _tied_case(cfg, seed=4)
    x4 = case.x.reshape(*case.x.shape[:2], -1)
    assert ((x4 == x4.max(-1, keepdims=True)).sum(-1) > 1).any()  # the case does have ties
    y, dx, grads, _ = _run(_loaded(case), case.x, case.dy, "float64", training=True)
    _assert_matches(case, y, dx, grads, "float64")
    autograd_amax = torch.from_numpy(case.x).requires_grad_()
    autograd_amax.amax((2, 3)).sum().backward()
    ours = torch.from_numpy(case.x).requires_grad_()
    z, xp = torch_impl._ops.pool(ours, ("max",), (2, 3))
    torch_impl._ops.scale(xp, z * 0).sum().add(z.sum()).backward()
    assert torch.equal(ours.grad, autograd_amax.grad)  # the same even split as PyTorch's own amax


@pytest.mark.parametrize(
    "cfg",
    [
        pytest.param(CBAMConfig(channels=6, rd_channels=2, pool_types=("max",)), id="cbam-max"),
        pytest.param(CBAMConfig(channels=6, rd_channels=2, pool_types=("avg",)), id="cbam-avg"),
        pytest.param(SEConfig(channels=6, rd_channels=2), id="se"),
        pytest.param(ECAConfig(channels=6), id="eca"),
    ],
)
def test_nan_propagates_like_the_reference(cfg):
    case = make_case(cfg, seed=1, shape=(3, cfg.channels, 5, 4))
    x = case.x.copy()
    x[1, 2, 3, 1] = np.nan  # sample 1 only: samples 0 and 2 must stay finite
    case = dataclasses.replace(case, x=x)
    y, *_ = _run(_loaded(case), case.x, None, "float64")
    assert torch.isnan(y[1]).any() and not torch.isnan(y[[0, 2]]).any()
    _assert_matches(case, y, None, {}, "float64")


def test_nan_propagates_through_both_max_pools():
    x = torch.zeros(1, 3, 2, 2, dtype=torch.float64)
    x[0, 1, 1, 0] = float("nan")
    over_hw, _ = torch_impl._ops.pool(x, ("max",), (2, 3))
    over_c, _ = torch_impl._ops.pool(x, ("max",), (1,))
    assert torch.isnan(over_hw.flatten()).tolist() == [False, True, False]
    assert torch.isnan(over_c.flatten()).tolist() == [False, False, True, False]


@pytest.mark.parametrize("variant", [pytest.param(v, id=v.id) for v in PRESETS if v.name in ("official", "paper")])
def test_comparison_can_fail(variant: Variant):
    """Non-vacuity: the same check that passes above fails for a perturbed weight and a wrong knob."""
    case = make_case(variant.build(CHANNELS), seed=3, dtype="float32", training=True)
    want = reference_outputs(case, with_grads=False)
    module = _loaded(case, "float32")
    y, *_ = _run(module, case.x, None, "float32", training=True)
    assert compare("y", y.detach().numpy(), want.y, "float32").ok
    name = next(iter(case.params))
    perturbed = torch_impl.load_canonical(module, {name: case.params[name] * 1.01 + 0.01}, strict=False)
    y, *_ = _run(perturbed, case.x, None, "float32", training=True)
    assert not compare("y", y.detach().numpy(), want.y, "float32").ok
    if variant.module == "cbam":
        swapped = case.cfg.replace(spatial_pool_order=case.cfg.spatial_pool_order[::-1])
        module = torch_impl.load_canonical(torch_impl.from_config(swapped), case.params)
        y, *_ = _run(module, case.x, None, "float32", training=True)
        assert not compare("y", y.detach().numpy(), want.y, "float32").ok


# ----------------------------------------------------------------------------- batch norm


def test_sync_batchnorm_conversion_applies_to_the_spatial_bn():
    cbam = torch_impl.CBAM(16, dtype=torch.float64)
    assert isinstance(cbam.spatial.bn, torch.nn.BatchNorm2d)
    case = make_case(cbam.config, seed=2)
    torch_impl.load_canonical(cbam, case.params)
    converted = torch.nn.SyncBatchNorm.convert_sync_batchnorm(cbam)
    assert type(converted.spatial.bn) is torch.nn.SyncBatchNorm
    assert converted.spatial.bn.momentum == cbam.config.bn_momentum and converted.spatial.bn.eps == cbam.config.bn_eps
    assert list(torch_impl.to_canonical(converted)) == list(param_layout(cbam.config))  # num_batches_tracked dropped
    y, *_ = _run(converted, case.x, None, "float64")  # eval mode needs no process group
    _assert_matches(case, y, None, {}, "float64")


def test_running_statistics_follow_the_spec_over_several_steps():
    cfg = CBAMConfig(channels=8, rd_channels=2, bn_momentum=0.3)
    case = make_case(cfg, seed=6, training=True)
    module = _loaded(case)
    params = dict(case.params)
    for step in range(3):
        x = case.x * (1 + step)
        _run(module, x, None, "float64", training=True)
        params.update(forward(cfg, params, x, training=True)[2])
    ours = torch_impl.to_canonical(module)
    for k in ("spatial.bn.running_mean", "spatial.bn.running_var"):
        assert compare(k, ours[k], params[k], "float64").ok


# ----------------------------------------------------------------------------- other paths through the Functions


@pytest.mark.parametrize("variant", PRESET_VARIANTS)
def test_parameter_gradients_without_an_input_gradient(variant: Variant):
    """A first layer's input needs no gradient: the Functions skip dx and still give every parameter's."""
    case = make_case(variant.build(CHANNELS), seed=12, training=True)
    module = _loaded(case).train()
    y = module(torch.from_numpy(case.x))
    y.backward(torch.from_numpy(case.dy))
    grads = {k: v.grad.numpy().reshape(param_layout(case.cfg)[k].shape) for k, v in module.named_parameters()}
    want = reference_outputs(case)
    bad = [c.message for k, g in want.grads.items() if not (c := compare(k, grads[k], g, "float64")).ok]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("variant", PRESET_VARIANTS)
def test_no_grad_forward_is_the_same_and_leaves_the_input_alone(variant: Variant):
    case = make_case(variant.build(CHANNELS), seed=13)
    module = _loaded(case).eval()
    x = torch.from_numpy(case.x.copy())
    with torch.no_grad():
        y = module(x)
    assert torch.equal(y, module(x).detach())
    assert np.array_equal(x.numpy(), case.x)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("module", MODULES)
def test_half_types_backward_runs(module, dtype):
    """Half types are checked forward only (SPEC.md section 9); their backward must still run and stay finite."""
    m = CLASSES[module](CHANNELS, dtype=DTYPES[dtype]).train()
    x = torch.randn(3, CHANNELS, 6, 5, dtype=DTYPES[dtype], requires_grad=True)
    m(x).backward(torch.randn_like(x))
    assert x.grad.dtype == DTYPES[dtype] and torch.isfinite(x.grad).all()
    assert all(p.grad.dtype == DTYPES[dtype] and torch.isfinite(p.grad).all() for p in m.parameters())
