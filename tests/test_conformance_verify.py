"""``conformance.verify``: third-party implementations checked against the spec, and their variant named.

The targets live in ``tests/third_party_fixtures``: correct implementations in other
parameter layouts (timm-style, official-style, Flax, Keras) and broken ones, each written
from SPEC.md's facts. Every broken target sits next to the correct ones it must be told from.
"""

from __future__ import annotations

import json

import pytest

from conformance import Comparison
from conformance.verify import main, verify

TORCH = "tests.third_party_fixtures.torch_impls:"


def _verify(name: str, module: str, mapping: str = "auto", **init_kwargs: object):
    pytest.importorskip("torch")
    return verify(TORCH + name, module=module, framework="torch", init_kwargs=init_kwargs, mapping=mapping)


def _says(report, *fragments: str) -> None:
    text = "\n".join(report.diagnosis)
    for fragment in fragments:
        assert fragment in text, f"{fragment!r} not in the diagnosis:\n{text}"


# ----------------------------------------------------------------------------- correct, other layouts

CORRECT = [
    # (fixture, module, init kwargs, mapping, identified, diagnosis fragments)
    ("TimmStyleSE", "se", {"channels": 32}, "auto", "SE preset 'timm'", ["hidden width 8", "rd_divisor=8"]),
    ("TimmStyleSE", "se", {"channels": 32}, "timm", "SE preset 'timm'", []),
    (
        "OfficialStyleCBAM",
        "cbam",
        {"gate_channels": 24},
        "auto",
        "CBAM preset 'official'",
        ["exactly the CBAM defaults"],
    ),
    ("OfficialStyleCBAM", "cbam", {"gate_channels": 24}, "official", "CBAM preset 'official'", []),
    (
        "TimmStyleCBAM",
        "cbam",
        {"channels": 24},
        "auto",
        "CBAM preset 'timm'",
        ["mlp_bias=False", "spatial_pool_order=('mean', 'max')", "bn_momentum=0.1", "hidden width 2"],
    ),
    ("TimmStyleCBAM", "cbam", {"channels": 24}, "timm", "CBAM preset 'timm'", []),
    ("OfficialStyleECA", "eca", {"channel": 32}, "auto", "ECA preset 'paper'", []),
    ("OfficialStyleECA", "eca", {"channel": 32}, "official", "ECA preset 'paper'", []),
    ("OfficialStyleECA", "eca", {"channel": 32, "k_size": 5}, "auto", "ECA preset 'paper' with kernel_size=5", []),
    ("HardSigmoidSE", "se", {"channel": 32}, "auto", "gate='hard_sigmoid'", ["bias=False"]),
    ("HardSigmoidSE", "se", {"channel": 32}, "senet_pytorch", "gate='hard_sigmoid'", []),
]


@pytest.mark.torch
@pytest.mark.parametrize(
    ("name", "module", "kwargs", "mapping", "identified", "fragments"),
    [pytest.param(*c, id=f"{c[0]}-{c[3]}") for c in CORRECT],
)
def test_correct_torch_targets_pass_and_are_named(name, module, kwargs, mapping, identified, fragments) -> None:
    report = _verify(name, module, mapping, **kwargs)
    assert report.passed, report.to_text()
    assert identified in report.identified
    _says(report, *fragments)
    assert report.comparisons and all(isinstance(c, Comparison) and c.ok for c in report.comparisons)
    names = {c.name for c in report.comparisons}
    assert {"y", "dx"} <= names and any(n.startswith("grad[") for n in names)
    assert {c.dtype for c in report.comparisons} == {"float64", "float32"}


@pytest.mark.torch
def test_batch_norm_targets_are_checked_in_both_modes_with_running_statistics() -> None:
    report = _verify("OfficialStyleCBAM", "cbam", gate_channels=24)
    modes = {r.case.training for r in report.case_reports}
    assert modes == {False, True}
    assert {"state[spatial.bn.running_mean]", "state[spatial.bn.running_var]"} <= {c.name for c in report.comparisons}
    assert report.bindings["SpatialGate.spatial.bn.num_batches_tracked"].startswith("(ignored")


# ----------------------------------------------------------------------------- broken


@pytest.mark.torch
def test_unpadded_single_map_spatial_conv_is_a_reported_failure() -> None:
    report = _verify("NoPadMaxOnlyCBAM", "cbam", gate_channels=24)
    assert not report.passed and report.identified is None
    _says(
        report,
        "the spatial conv kernel has shape (1, 1, 7, 7): CBAM's takes 2 input maps (max and mean), this one takes 1",
        "raised RuntimeError: Calculated padded input size",  # its forward's error, last line, no crash
        "must match the size of tensor b",  # and on a larger input, the shrunken map
    )


@pytest.mark.torch
def test_an_eca_that_is_really_se_is_identified_as_se() -> None:
    report = _verify("SEClaimingECA", "eca", channel=32)
    assert not report.passed
    assert report.identified == "SE preset 'official'"
    _says(report, "this is SE, not ECA: it has two fully connected layers and no 1-D convolution")


@pytest.mark.torch
def test_swapped_spatial_pool_order_is_identified_as_the_other_order() -> None:
    claimed = _verify("SwappedOrderCBAM", "cbam", gate_channels=24)
    assert "spatial_pool_order=('mean', 'max')" in claimed.identified
    assert claimed.passed  # a CBAM configuration matches; it just is not the one it claims:
    strict = verify(
        TORCH + "SwappedOrderCBAM",
        module="cbam",
        framework="torch",
        init_kwargs={"gate_channels": 24},
        mapping="official",
        expect="official",
    )
    assert not strict.passed
    assert "spatial_pool_order=('mean', 'max')" in strict.identified
    _says(
        strict, "expected to be CBAM preset 'official'", "spatial_pool_order=('mean', 'max') instead of ('max', 'mean')"
    )
    # non-vacuity: the right order passes the same strict check
    assert verify(
        TORCH + "OfficialStyleCBAM",
        module="cbam",
        framework="torch",
        init_kwargs={"gate_channels": 24},
        expect="official",
    ).passed


@pytest.mark.torch
def test_right_forward_wrong_gradient_fails_the_full_check() -> None:
    report = _verify("DetachedSE", "se", channels=32)
    assert not report.passed
    assert report.identified == "SE preset 'official'"  # the forward alone matches
    _says(report, "full check fails on dx", "its gradients are wrong")
    assert {c.name for c in report.comparisons if not c.ok} == {"dx"}


@pytest.mark.torch
def test_native_hardsigmoid_conforms_at_float32_precision_and_says_why() -> None:
    """PyTorch's Hardsigmoid backward multiplies by a float32 1/6, even in float64: judged at float32."""
    report = _verify("HardSigmoidSE", "se", channel=32, native_gate=True)
    assert report.passed and report.precision == "float32" and "gate='hard_sigmoid'" in report.identified
    _says(report, "it conforms at float32 precision: in float64, dx", "Hardsigmoid backward")
    assert report.to_text().startswith("PASS at float32 precision:")
    # non-vacuity: the same module with the spec's gate written out conforms at float64
    assert _verify("HardSigmoidSE", "se", channel=32).precision == "float64"


@pytest.mark.torch
def test_nothing_matches_and_the_closest_is_named() -> None:
    report = _verify("LeakySE", "se", channels=32)
    assert not report.passed and report.identified is None
    _says(report, "no SE configuration matches", "the closest is SE preset 'official'", "on y")
    assert report.config is not None and report.config.module == "se"


@pytest.mark.torch
@pytest.mark.parametrize(
    ("name", "module", "kwargs", "sentence", "identified"),
    [
        pytest.param(
            "TimmStyleCBAM", "se", {"channels": 24}, "this is CBAM, not SE", "CBAM preset 'timm'", id="cbam-as-se"
        ),
        pytest.param(
            "OfficialStyleECA", "cbam", {"channel": 32}, "this is ECA, not CBAM", "ECA preset 'paper'", id="eca-as-cbam"
        ),
    ],
)
def test_the_wrong_module_fails_and_names_the_right_one(name, module, kwargs, sentence, identified) -> None:
    report = _verify(name, module, **kwargs)
    assert not report.passed and report.identified == identified
    _says(report, sentence)


@pytest.mark.torch
def test_se_verified_as_cbam_matches_its_channel_half_and_says_it_is_se() -> None:
    report = _verify("TimmStyleSE", "cbam", channels=32)
    assert report.passed and "spatial=False" in report.identified and "pool_types=('avg',)" in report.identified
    _says(report, "verifies as SE too")


@pytest.mark.torch
def test_a_dialect_that_does_not_fit_fails_but_still_identifies() -> None:
    report = _verify("OfficialStyleCBAM", "cbam", "timm", gate_channels=24)
    assert not report.passed
    assert report.identified == "CBAM preset 'official'"
    _says(report, "have no place in the 'timm' layout", "bound by their shapes instead")


# ----------------------------------------------------------------------------- map files


@pytest.mark.torch
def test_a_json_map_file_binds_names(tmp_path) -> None:
    names = {
        "channel.fc1.weight": "channel.fc1.weight",
        "channel.fc2.weight": "channel.fc2.weight",
        "spatial.conv.conv.weight": "spatial.conv.weight",
        **{f"spatial.conv.bn.{k}": f"spatial.bn.{k}" for k in ("weight", "bias", "running_mean", "running_var")},
    }
    good = tmp_path / "timm_cbam.json"
    good.write_text(json.dumps(names))
    report = _verify("TimmStyleCBAM", "cbam", str(good), channels=24)
    assert report.passed and report.identified == "CBAM preset 'timm'"
    # a map that swaps the two layers cannot be loaded: shapes say so, and nothing passes
    bad = tmp_path / "swapped.json"
    bad.write_text(json.dumps({**names, "channel.fc1.weight": "fc2.weight", "channel.fc2.weight": "fc1.weight"}))
    report = _verify("TimmStyleCBAM", "cbam", str(bad), channels=24)
    assert not report.passed
    _says(report, "fc1 maps 2 -> 24 features and fc2 maps 24 -> 2")


# ----------------------------------------------------------------------------- other frameworks


@pytest.mark.flax
def test_a_flax_linen_target() -> None:
    pytest.importorskip("flax")
    report = verify(
        "tests.third_party_fixtures.flax_impls:LinenSE", module="se", framework="flax", init_kwargs={"channels": 16}
    )
    assert report.passed, report.to_text()
    assert report.identified == "SE preset 'official' with hidden width 4 (rd_ratio=0.25) instead of 1"
    assert report.bindings["params.squeeze.kernel"] == "fc1.weight"  # a (in, out) kernel, transposed on the way in
    assert {c.dtype for c in report.comparisons} == {"float64", "float32"}


@pytest.mark.flax
def test_a_flax_nnx_target() -> None:
    pytest.importorskip("flax")
    report = verify(
        "tests.third_party_fixtures.flax_impls:NNXECA", module="eca", framework="flax", init_kwargs={"channels": 32}
    )
    assert report.passed, report.to_text()
    assert report.identified == "ECA preset 'paper'"


@pytest.mark.keras
@pytest.mark.parametrize(
    ("name", "module", "identified"),
    [
        pytest.param("KerasECA", "eca", "ECA preset 'paper'", id="eca"),
        pytest.param("KerasSE", "se", "SE preset 'official' with gate='hard_sigmoid'", id="se"),
    ],
)
def test_keras_targets(name: str, module: str, identified: str) -> None:
    pytest.importorskip("keras")
    pytest.importorskip("tensorflow")
    report = verify(
        f"tests.third_party_fixtures.keras_impls:{name}",
        module=module,
        framework="keras",
        init_kwargs={"channels": 32 if module == "eca" else 16},
    )
    assert report.passed, report.to_text()
    assert report.identified.startswith(identified)
    assert {c.dtype for c in report.comparisons} == {"float64", "float32"}


# ----------------------------------------------------------------------------- CLI


@pytest.mark.torch
def test_cli_text_and_exit_status(capsys) -> None:
    pytest.importorskip("torch")
    args = ["--module", "cbam", "--framework", "torch", "--init-kwargs", '{"gate_channels": 24}']
    assert main([TORCH + "OfficialStyleCBAM", *args]) == 0
    out = capsys.readouterr().out
    assert out.startswith("PASS:") and "identified: CBAM preset 'official'" in out
    assert main([TORCH + "NoPadMaxOnlyCBAM", *args]) == 1
    out = capsys.readouterr().out
    assert out.startswith("FAIL:") and "takes 2 input maps (max and mean), this one takes 1" in out


@pytest.mark.torch
def test_cli_json(capsys) -> None:
    pytest.importorskip("torch")
    argv = [TORCH + "TimmStyleSE", "--module", "se", "--framework", "torch", "--init-kwargs", '{"channels": 32}']
    code = main([*argv, "--map", "timm", "--format", "json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["passed"] and report["identified"] == "SE preset 'timm'"
    assert report["config"]["rd_divisor"] == 8 and report["bindings"]["fc1.weight"] == "fc1.weight"
    assert all(c["ok"] for case in report["cases"] for c in case["comparisons"])


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["nocolon", "--module", "se", "--framework", "torch"], id="bad-target"),
        pytest.param(["tests.nope:X", "--module", "se", "--framework", "torch"], id="no-module"),
        pytest.param([TORCH + "TimmStyleSE", "--module", "se", "--framework", "torch", "--map", "nope"], id="bad-map"),
        pytest.param([TORCH + "TimmStyleSE", "--module", "senet", "--framework", "torch"], id="bad-module"),
    ],
)
def test_cli_usage_errors_exit_2(argv: list[str], capsys) -> None:
    if "TimmStyleSE" in argv[0]:
        pytest.importorskip("torch")
    assert main([*argv, "--init-kwargs", '{"channels": 32}']) == 2
    assert "error" in capsys.readouterr().err


# ----------------------------------------------------------------------------- this project's own port


@pytest.mark.torch
def test_the_torch_port_verifies_as_what_it_was_built_as() -> None:
    pytest.importorskip("torch")
    pytest.importorskip("torch_impl")
    report = verify(
        "torch_impl:CBAM",
        module="cbam",
        framework="torch",
        init_kwargs={"channels": 24, "preset": "timm"},
        expect="timm",
    )
    assert report.passed, report.to_text()
    assert report.identified == "CBAM preset 'timm'"
    assert report.bindings["spatial.conv.weight"] == "spatial.conv.weight"  # canonical names map to themselves
