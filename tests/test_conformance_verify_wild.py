"""``conformance.verify`` on code as it arrives in the wild (issue #10) and on misbehaving targets (issue #14.4).

Every target is in ``tests/third_party_fixtures/*_wild.py``, written here from the behaviour the
issue describes; each test asserts the verdict a careful reader of its source would give.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import conformance
from conformance.verify import main, verify

WILD = "tests.third_party_fixtures.torch_wild:"


def _says(report, *fragments: str) -> None:
    text = "\n".join(report.diagnosis)
    for fragment in fragments:
        assert fragment in text, f"{fragment!r} not in the diagnosis:\n{text}"


@pytest.fixture(scope="module")
def wild():
    pytest.importorskip("torch")
    from tests.third_party_fixtures import torch_wild

    return torch_wild


def test_the_package_is_callable_as_verify() -> None:
    import conformance.verify as m

    assert m is conformance.verify and m.verify is conformance.verify.verify and callable(m)


# ----------------------------------------------------------------------------- instances


@pytest.mark.torch
def test_an_instance_inside_a_network_with_its_own_weights(wild) -> None:
    import torch

    net = wild.TinyNet(16)
    se = net.layer3[2].se
    before = {k: v.clone() for k, v in se.state_dict().items()}
    sample = net.layer3[1](net.stem(torch.randn(2, 3, 6, 5)))  # what layer3[2] really receives
    report = verify(se, sample=sample)  # framework and module from the instance and its structure
    assert report.passed and report.module == "se" and report.framework == "torch", report.to_text()
    assert report.identified == "SE preset 'official' with hidden width 4 (rd_ratio=0.25) instead of 1"
    assert any(r.case.name == "sample" for r in report.case_reports)
    assert all(torch.equal(before[k], v) for k, v in se.state_dict().items())  # never changed


@pytest.mark.torch
@pytest.mark.parametrize(
    ("name", "args", "module", "identified"),
    [
        pytest.param("UnfamiliarSE", (64,), "se", "SE preset 'official' with bias=False", id="c1"),
        pytest.param("UnfamiliarCBAM", (64,), "cbam", "CBAM preset 'official'", id="gate_channel"),
    ],
)
def test_channels_come_from_the_weights_not_from_argument_names(wild, name, args, module, identified) -> None:
    report = verify(getattr(wild, name)(*args), module=module)
    assert report.passed and report.channels == 64 and report.identified.startswith(identified), report.to_text()


@pytest.mark.torch
def test_an_eca_whose_argument_is_unfamiliar_says_how_it_was_checked(wild) -> None:
    report = verify(wild.UnfamiliarECA(64), module="eca")
    assert report.passed
    _says(report, "nothing tells its channel count (ECA's kernel does not depend on it)")


@pytest.mark.torch
def test_a_class_argument_by_dotted_path(capsys) -> None:
    pytest.importorskip("torch")
    argv = [WILD + "ActLayerSE", "--framework", "torch", "--module", "se"]
    assert main([*argv, "--init-kwargs", '{"channels": 32, "act_layer": "torch.nn.SiLU"}']) == 0
    out = capsys.readouterr().out
    assert "act='silu'" in out and "act_layer='torch.nn.SiLU' taken as SiLU from torch.nn" in out


@pytest.mark.torch
def test_expect_torchvision_takes_the_squeeze_width_from_the_weights(wild) -> None:
    report = verify(wild.SqueezeExcitationTV(32, 6), module="se", expect="torchvision")
    assert report.passed, report.to_text()
    _says(report, "the squeeze width 6 the preset 'torchvision' leaves open is taken from its weights")
    assert not verify(wild.SqueezeExcitationTV(32, 6), module="se", expect="timm").passed  # non-vacuity


@pytest.mark.torch
def test_a_dialect_that_does_not_fit_is_the_stated_reason() -> None:
    pytest.importorskip("torch")
    report = verify(WILD + "UnfamiliarSE", framework="torch", module="se", init_kwargs={"c1": 64}, mapping="timm")
    assert not report.passed
    _says(report, "its tensors do not fit the mapping 'timm'", "the mapping it was given is wrong")


# ----------------------------------------------------------------------------- structure before knobs


@pytest.mark.torch
@pytest.mark.parametrize(
    ("name", "args", "module", "fragment"),
    [
        pytest.param("ZeroWidthSE", (8,), "se", "its MLP has width 0", id="width-0"),
        pytest.param("ResidualCBAM", (64,), "cbam", "it returns x + CBAM(x): a residual connection", id="residual"),
        pytest.param("BlendPoolSE", (32,), "se", "a blend of pools, 0.5 * average + 0.5 * maximum", id="blend"),
        pytest.param("UngatedSpatialCBAM", (64,), "cbam", "its spatial attention map has no gate", id="no-gate"),
        pytest.param("BatchNormSE", (32,), "se", "it has a normalisation inside its MLP", id="bn-in-mlp"),
        pytest.param("GroupedConvECA", (16,), "eca", "grouped, per-channel 1-D convolution", id="grouped-conv1d"),
        pytest.param("SingleFCSE", (16,), "se", "a single fully connected layer", id="effective-se"),
    ],
)
def test_off_spec_structure_is_named_in_plain_words(wild, name, args, module, fragment) -> None:
    report = verify(getattr(wild, name)(*args), module=module)
    assert not report.passed
    _says(report, fragment)
    assert not any("the closest is" in d for d in report.diagnosis)


@pytest.mark.torch
def test_width_0_is_a_verdict_on_the_command_line_too(capsys) -> None:
    pytest.importorskip("torch")
    argv = [WILD + "ZeroWidthSE", "--framework", "torch", "--module", "se", "--init-kwargs", '{"channel": 8}']
    assert main(argv) == 1
    assert "its MLP has width 0" in capsys.readouterr().out


# ----------------------------------------------------------------------------- misbehaving targets


@pytest.mark.torch
@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        pytest.param("ExitSE", "its forward called sys.exit(0)", id="sys.exit"),
        pytest.param("HardExitSE", "exited with status 0 during its forward", id="os._exit"),
        pytest.param("AbortSE", "was killed by SIGABRT during its forward", id="abort"),
        pytest.param("SleepSE", "its forward did not return within 2 s", id="hang"),
        pytest.param("TupleSE", "returned a tuple", id="tuple"),
        pytest.param("ShapeSE", "the output must keep the input's shape", id="shape"),
        pytest.param("NaNSE", "it returns NaN or infinity", id="nan"),
    ],
)
def test_a_misbehaving_target_is_a_failed_check_with_the_reason(name, fragment) -> None:
    pytest.importorskip("torch")
    report = verify(WILD + name, framework="torch", module="se", timeout=2)
    assert not report.passed
    _says(report, fragment)


def test_a_target_module_raising_on_import_is_a_failure_not_a_usage_error(capsys) -> None:
    target = "tests.third_party_fixtures.raises_on_import:X"
    assert main([target, "--framework", "torch", "--module", "se"]) == 1
    captured = capsys.readouterr()
    assert "importing tests.third_party_fixtures.raises_on_import raised RuntimeError" in captured.out
    assert "Traceback" not in captured.out + captured.err


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param(["--init-kwargs", "[" * 100_000 + "]" * 100_000], id="deep-json"),
        pytest.param(["--expect", "{" + '"a":{' * 50_000 + "}" * 50_001], id="deep-expect"),
        pytest.param(["--timeout", "-1"], id="bad-timeout"),
        pytest.param(["--channels", "0"], id="bad-channels"),
    ],
)
def test_cli_usage_mistakes_are_one_line_exit_2(extra, capsys) -> None:
    assert main([WILD + "UnfamiliarSE", "--framework", "torch", "--module", "se", *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_a_map_file_with_a_non_string_entry_is_a_usage_error(tmp_path, capsys) -> None:
    pytest.importorskip("torch")
    bad = tmp_path / "map.json"
    bad.write_text(json.dumps({"reduce.weight": 3}))
    argv = [WILD + "UnfamiliarSE", "--framework", "torch", "--module", "se", "--init-kwargs", '{"c1": 64}']
    assert main([*argv, "--map", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "map file" in err and "Traceback" not in err


# ----------------------------------------------------------------------------- other frameworks


@pytest.mark.flax
def test_a_float32_flax_module_conforms_at_float32_precision() -> None:
    jax = pytest.importorskip("jax")
    from tests.third_party_fixtures import flax_wild

    m = flax_wild.Float32SE()
    variables = m.init(jax.random.PRNGKey(0), np.zeros((2, 5, 3, 16), np.float32))
    report = verify(m, variables=variables, module="se")
    assert report.passed and report.precision == "float32", report.to_text()
    _says(report, "it computes in float32", "conforms at float32 precision")
    with pytest.raises(ValueError, match="`channels` must be given"):  # a linen module made on first call
        verify("tests.third_party_fixtures.flax_wild:LazySE", framework="flax", module="se")


@pytest.mark.flax
def test_an_nnx_block_inside_a_network() -> None:
    nnx = pytest.importorskip("flax.nnx")
    from tests.third_party_fixtures import flax_wild

    report = verify(flax_wild.NNXNet(16, rngs=nnx.Rngs(0)).blocks[1].se)
    assert report.passed and report.module == "se", report.to_text()


@pytest.mark.keras
def test_a_keras_layer_inside_a_model_built_on_first_call() -> None:
    pytest.importorskip("tensorflow")
    from tests.third_party_fixtures import keras_wild

    layer = keras_wild.tiny_model(16).get_layer("se_2")
    before = [w.numpy().copy() for w in layer.weights]
    report = verify(layer)
    assert report.passed and report.channels == 16 and report.precision == "float32", report.to_text()
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(before, layer.weights, strict=True))
    with pytest.raises(ValueError, match="`channels` must be given"):
        verify(keras_wild.LazySE(), module="se")
