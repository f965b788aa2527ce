"""``conformance.audit``: every SE, CBAM and ECA block of a network found and verified where it sits (issue #10.2).

The networks are in ``tests/third_party_fixtures/audit_*.py``, written here: conforming blocks
(this project's classes and hand-written ones found only by their shapes), off-spec ones, and
blocks that raise, hang, return a tuple, the wrong shape or NaN.
"""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest

import conformance
from conformance.audit import main
from reference_numpy import CBAMConfig, ECAConfig, SEConfig, equivalent

NETS = "tests.third_party_fixtures.audit_nets:"
SMALL = (2, 3, 16, 16)  # a small sample keeps the captures cheap


def _says(block, *fragments: str) -> None:
    text = "\n".join(block.diagnosis)
    for fragment in fragments:
        assert fragment in text, f"{fragment!r} not in the diagnosis of {block.path}:\n{text}"


@pytest.fixture(scope="module")
def nets():
    pytest.importorskip("torch")
    from tests.third_party_fixtures import audit_nets

    return audit_nets


@pytest.fixture(scope="module")
def mixed(nets):
    return conformance.audit(nets.mixed_net(), input_shape=SMALL, timeout=60)


def test_the_package_is_callable_as_audit() -> None:
    import conformance.audit as m

    assert m is conformance.audit and m.audit is conformance.audit.audit and callable(m)


# ----------------------------------------------------------------------------- PyTorch


@pytest.mark.torch
def test_a_mixed_network_one_row_per_block(mixed) -> None:
    rows = {b.path: b for b in mixed.blocks}
    assert list(rows) == [f"features.{i}.attn" for i in (0, 1, 2, 4, 5, 6, 7, 8)], mixed.to_text()
    verdicts = {p: b.passed for p, b in rows.items()}
    assert verdicts == {
        "features.0.attn": True,  # torch_impl.SqueezeExcite
        "features.1.attn": True,  # a hand-written SE of nn.Linear, found by its shapes
        "features.2.attn": True,  # the same class and configuration: only checked
        "features.4.attn": True,  # torch_impl.CBAM (its channel half is part of it, not a block)
        "features.5.attn": False,  # x + SE(x)
        "features.6.attn": False,  # raises
        "features.7.attn": False,  # NaN
        "features.8.attn": True,  # torch_impl.ECA
    }
    assert not mixed.passed
    assert mixed.input_shape == SMALL
    # the pointwise MLP has SE's weights but is not SE: said, not checked
    assert [p for p, _ in mixed.skipped] == ["features.3.attn"]
    assert "pooled descriptor" in mixed.skipped[0][1]


@pytest.mark.torch
def test_found_by_class_or_by_shape_and_configs_from_the_reference(mixed) -> None:
    rows = {b.path: b for b in mixed.blocks}
    assert rows["features.0.attn"].found_by == "class and shape"
    assert rows["features.1.attn"].found_by == "shape" and rows["features.1.attn"].class_name == "Recalibrate"
    assert rows["features.6.attn"].found_by == "class and shape"
    assert equivalent(rows["features.0.attn"].config, SEConfig(channels=16))
    assert equivalent(rows["features.1.attn"].config, SEConfig(channels=16, rd_ratio=0.25))
    assert equivalent(rows["features.4.attn"].config, CBAMConfig(channels=32, rd_ratio=1 / 8))
    assert equivalent(rows["features.8.attn"].config, ECAConfig(channels=32))
    for b in mixed.blocks:
        assert (b.config is not None) == b.passed
        assert b.module in ("se", "cbam", "eca")
        assert b.precision in (None, "float64")
    assert rows["features.4.attn"].module == "cbam" and rows["features.8.attn"].module == "eca"
    # each block is checked on the input it receives in the network
    assert rows["features.0.attn"].input_shape == (2, 16, 16, 16)
    assert rows["features.8.attn"].input_shape == (2, 32, 16, 16)
    assert any(r.case.name == "sample" for r in rows["features.0.attn"].verify.case_reports)


@pytest.mark.torch
def test_same_class_and_configuration_identified_once(mixed) -> None:
    first, second = (b for b in mixed.blocks if b.class_name == "Recalibrate")
    assert first.shared_with is None and first.verify is not None
    assert second.shared_with == first.path and second.verify is None
    assert second.identified == first.identified and second.config == first.config
    _says(second, "same class and configuration as features.1.attn", "with its own weights on the input")


@pytest.mark.torch
def test_broken_blocks_are_failed_rows_with_reasons(mixed) -> None:
    rows = {b.path: b for b in mixed.blocks}
    _says(rows["features.5.attn"], "a residual connection inside the block")
    assert rows["features.5.attn"].identified == "x + (SE preset 'timm')"
    _says(rows["features.6.attn"], "in the network, its forward raised RuntimeError: this block always raises")
    _says(
        rows["features.7.attn"], "in the network it returns NaN or infinity on a finite input of shape (2, 32, 16, 16)"
    )
    for path in ("features.6.attn", "features.7.attn"):
        assert rows[path].identified is None and rows[path].config is None
    # the blocks after a failing one still got an input: the failing one was called as the identity
    assert rows["features.8.attn"].input_shape == (2, 32, 16, 16)
    assert any("called as the identity" in n for n in mixed.notes)


@pytest.mark.torch
def test_the_blocks_of_issue_10_inside_a_network(nets) -> None:
    """Each block of ``torch_wild`` gets, inside a network, the verdict verify gives it alone."""
    report = conformance.audit(nets.wild_net(), input_shape=(2, 3, 12, 12))
    rows = {b.class_name: b for b in report.blocks}
    assert [b.path for b in report.blocks] == [f"features.{i}.attn" for i in range(11)] + ["features.11.attn.0"]
    passing = {"SqueezeExcitationTV", "ActLayerSE", "UnfamiliarSE", "UnfamiliarCBAM", "UnfamiliarECA", "Recalibrate"}
    assert {n for n, b in rows.items() if b.passed} == passing, report.to_text()
    assert equivalent(rows["ActLayerSE"].config, SEConfig(channels=32, rd_ratio=0.25, act="silu"))
    assert rows["UnfamiliarCBAM"].module == "cbam" and rows["UnfamiliarECA"].module == "eca"
    _says(rows["ResidualCBAM"], "a residual connection inside the block")
    _says(rows["UngatedSpatialCBAM"], "its spatial attention map has no gate")
    _says(rows["ZeroWidthSE"], "its MLP has width 0")
    _says(rows["BlendPoolSE"], "a blend of pools")
    _says(rows["BatchNormSE"], "a normalisation inside its MLP")
    _says(rows["GroupedConvECA"], "a grouped, per-channel 1-D convolution")
    # CBAM's channel half is part of the CBAM, never a block of its own, and never changed during the capture
    assert not any(".channel" in b.path for b in report.blocks) and not report.notes[1:]


@pytest.mark.torch
def test_a_hanging_or_crashing_block_is_a_failed_row(nets) -> None:
    report = conformance.audit(nets.hanging_net(), input_shape=SMALL, timeout=6)
    rows = {b.path: b for b in report.blocks}
    assert [b.passed for b in report.blocks] == [True, False, False, True], report.to_text()
    _says(
        rows["features.1.attn"],
        "in the network, its forward did not return within 6 s (the time limit per call): not verified further",
    )
    _says(rows["features.2.attn"], "when the network called it, the worker process running it was killed by SIGABRT")
    assert rows["features.3.attn"].input_shape == (2, 32, 16, 16)  # captured with the hanging block skipped


@pytest.mark.torch
def test_tuple_and_wrong_shape_blocks(nets) -> None:
    report = conformance.audit(nets.tuple_shape_net(), input_shape=SMALL)
    rows = {b.path: b for b in report.blocks}
    _says(rows["features.0.attn"], "in the network it returns a tuple instead of one tensor")
    _says(rows["features.1.attn"], "it returns shape (2, 16, 15, 16): the output must keep the input's shape")
    _says(rows["features.3.attn"], "a single fully connected layer", "effective SE")
    assert rows["features.3.attn"].found_by == "class"  # one layer is not SE's shape: its name says it is one
    assert [b.passed for b in report.blocks] == [False, False, True, False]


@pytest.mark.torch
def test_a_shared_signature_that_hides_a_difference_is_identified_again(nets) -> None:
    """Non-vacuity of the shared check: two blocks whose class, settings and shapes agree but whose gates differ
    (a ``functools.partial`` says nothing of what it wraps) must not pass on the first one's identification."""
    import torch
    import torch.nn.functional as F

    class Gated(nets.Recalibrate):
        def __init__(self, c: int, gate) -> None:
            super().__init__(c)
            self.gate = gate

        def forward(self, x):
            return x * self.gate(self.expand(F.relu(self.squeeze(x.mean((2, 3))))))[:, :, None, None]

    torch.manual_seed(0)
    net = nets.Net(
        [(16, Gated(16, functools.partial(torch.sigmoid))), (16, Gated(16, functools.partial(F.hardsigmoid)))]
    )
    first, second = conformance.audit(net, input_shape=SMALL).blocks
    assert first.passed and first.config.gate == "sigmoid"
    assert second.shared_with is None
    _says(second, "same class and configuration as features.0.attn, but its check against that configuration fails")
    assert second.passed and second.config.gate == "hard_sigmoid", second.diagnosis


@pytest.mark.torch
def test_the_network_is_never_changed(nets) -> None:
    import torch

    net = nets.conforming_net()
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    sample = torch.randn(2, 3, 10, 12)
    report = conformance.audit(net, sample=sample, isolate=False)  # a sample the caller gives, in this process
    assert report.passed and len(report.blocks) == 3
    assert report.input_shape == (2, 3, 10, 12) and report.blocks[2].input_shape == (2, 32, 10, 12)
    assert net.training and all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert all("forward" not in m.__dict__ for m in net.modules())  # the wrappers are gone


@pytest.mark.torch
def test_a_network_that_fails_on_the_sample_is_not_a_pass(nets) -> None:
    """Blocks it did not reach are checked on generated inputs (class-found ones) or cannot be told from other
    layers (shape-found ones): the audit is incomplete, whatever the rows say."""
    report = conformance.audit(nets.conforming_net(), input_shape=(2, 4, 16, 16))  # the stem takes 3 channels
    assert [(b.path, b.passed) for b in report.blocks] == [("features.2.attn", True)]
    assert [p for p, _ in report.skipped] == ["features.0.attn", "features.1.attn"]
    assert "raised before reaching it" in report.skipped[0][1]
    assert not report.passed and "the network's forward raised RuntimeError" in report.incomplete[0]
    assert report.to_text().startswith("FAIL: ") and json.loads(report.to_json())["incomplete"] == report.incomplete


@pytest.mark.torch
def test_nothing_found_is_not_a_pass(nets) -> None:
    report = conformance.audit(nets.plain_net(), input_shape=SMALL)
    assert report.blocks == [] and not report.passed and report.incomplete == []
    assert any("nothing was checked" in n for n in report.notes)


@pytest.mark.torch
def test_resnet18_sized_network_one_identification_per_configuration(nets) -> None:
    report = conformance.audit(nets.resnet(18, "se"))
    assert report.passed and len(report.blocks) == 8, report.to_text()
    assert report.input_shape == (2, 3, 64, 64)  # the default sample: the first convolution's 3 channels
    identified = [b for b in report.blocks if b.shared_with is None]
    assert [b.config.channels for b in identified] == [64, 128, 256, 512]


# ----------------------------------------------------------------------------- the command line


@pytest.mark.torch
def test_cli_exit_0_and_json(capsys, nets) -> None:
    assert (
        main([NETS + "conforming_net", "--framework", "torch", "--input-shape", "2,3,16,16", "--format", "json"]) == 0
    )
    doc = json.loads(capsys.readouterr().out)
    assert doc["passed"] is True and doc["input_shape"] == [2, 3, 16, 16]
    assert [b["path"] for b in doc["blocks"]] == ["features.0.attn", "features.1.attn", "features.2.attn"]
    assert doc["blocks"][0]["config"] == SEConfig(channels=16, rd_ratio=0.25).to_dict()
    assert doc["blocks"][1]["shared_with"] == "features.0.attn"
    assert set(doc["blocks"][0]) >= {"path", "module", "class", "passed", "precision", "identified", "diagnosis"}


@pytest.mark.torch
@pytest.mark.parametrize(
    ("target", "status", "said"),
    [
        ("tuple_shape_net", 1, "FAIL: "),
        ("plain_net", 1, "no SE, CBAM or ECA block was found"),
        ("broken_build", 1, "building the network raised RuntimeError: the network's constructor fails"),
    ],
)
def test_cli_exit_1(capsys, nets, target: str, status: int, said: str) -> None:
    assert main([NETS + target, "--framework", "torch", "--input-shape", "2,3,16,16"]) == status
    assert said in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        ([NETS + "nothing_here", "--framework", "torch"], "has no attribute 'nothing_here'"),
        (["tests.no_such_module:net", "--framework", "torch"], "Could not import"),
        ([NETS + "mixed_net"], "--framework"),
        ([NETS + "mixed_net", "--framework", "torch", "--input-shape", "2,x"], "--input-shape"),
        ([NETS + "mixed_net", "--framework", "torch", "--timeout", "0"], "--timeout"),
        (["no_colon", "--framework", "torch"], "TARGET must be 'package.module:factory'"),
    ],
)
def test_cli_exit_2_for_mistakes_in_the_command(capsys, argv: list[str], said: str) -> None:
    if argv[-1] == "torch" and "nothing_here" in argv[0]:
        pytest.importorskip("torch")
    assert main(argv) == 2
    assert said in capsys.readouterr().err


@pytest.mark.torch
def test_python_m_conformance_audit(capsys, nets) -> None:
    from conformance.__main__ import main as top

    assert top(["audit", NETS + "conforming_net", "--framework", "torch", "--input-shape", "2,3,16,16"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("PASS: ") and "features.1.attn" in out


def test_api_argument_mistakes() -> None:
    with pytest.raises(ValueError, match="`framework` must be given"):
        conformance.audit(NETS + "mixed_net")
    with pytest.raises(ValueError, match="`timeout`"):
        conformance.audit(NETS + "mixed_net", framework="torch", timeout=-1)
    with pytest.raises(ValueError, match="`input_shape`"):
        conformance.audit(NETS + "mixed_net", framework="torch", input_shape=(2, 0, 3))
    with pytest.raises(TypeError, match="`model` must be"):
        conformance.audit(np.zeros(3), framework="torch")


# ----------------------------------------------------------------------------- Keras and Flax


@pytest.mark.keras
def test_a_keras_model_walked_by_its_layers() -> None:
    pytest.importorskip("keras")
    from tests.third_party_fixtures import audit_keras

    report = conformance.audit(audit_keras.mixed_model(), input_shape=(2, 16, 16, 3))
    rows = {b.path: b for b in report.blocks}
    assert list(rows) == ["se1", "reweight_a", "reweight_b", "eca", "raising", "nan"], report.to_text()
    assert [b.passed for b in report.blocks] == [True, True, True, True, False, False]
    assert rows["reweight_a"].found_by == "shape" and rows["se1"].found_by == "class and shape"
    assert rows["reweight_b"].shared_with == "reweight_a"
    # Keras layers compute in float32 under the default policy: judged at that precision
    assert all(b.precision == "float32" for b in report.blocks if b.passed)
    assert equivalent(rows["reweight_a"].config, SEConfig(channels=16, rd_ratio=0.25))
    assert equivalent(rows["eca"].config, ECAConfig(channels=16))
    _says(rows["raising"], "in the network, its forward raised RuntimeError: this block always raises")
    _says(rows["nan"], "in the network it returns NaN or infinity")
    assert rows["eca"].input_shape == (2, 16, 16, 16)  # channels_last, as the network gives it
    # layers built on the first call (the convolutions) were built before the walk; the raising block stopped it
    assert any("builds its layers, raised RuntimeError: this block always raises" in n for n in report.notes)


@pytest.mark.flax
def test_an_nnx_module_walked_by_its_attributes() -> None:
    pytest.importorskip("flax")
    from tests.third_party_fixtures import audit_flax

    report = conformance.audit(audit_flax.small_net(), input_shape=(2, 8, 8, 3))
    rows = {b.path: b for b in report.blocks}
    assert list(rows) == ["first", "second", "raising", "eca"], report.to_text()
    assert [b.passed for b in report.blocks] == [True, True, False, True]
    assert rows["first"].found_by == "shape" and rows["eca"].found_by == "class and shape"
    assert rows["second"].shared_with == "first"
    assert equivalent(rows["first"].config, SEConfig(channels=16, rd_ratio=0.25))
    assert equivalent(rows["eca"].config, ECAConfig(channels=16))
    _says(rows["raising"], "in the network, its forward raised RuntimeError: this block always raises")
    assert type(audit_flax.small_net().first).__name__ == "ChannelReweight"  # the wrappers are undone


@pytest.mark.flax
def test_a_hanging_block_where_the_audit_cannot_fork() -> None:
    """This process has started JAX: the audit runs here, and an alarm stops the hanging call."""
    pytest.importorskip("flax")
    from tests.third_party_fixtures import audit_flax

    audit_flax.small_net()  # JAX has started (whichever test runs first)
    report = conformance.audit(audit_flax.hanging_net(), input_shape=(2, 8, 8, 3), timeout=8)
    rows = {b.path: b for b in report.blocks}
    assert [(p, b.passed) for p, b in rows.items()] == [("first", True), ("hanging", False)], report.to_text()
    _says(
        rows["hanging"], "its forward did not return within 8 s (the time limit per call, by an alarm", "not verified"
    )
    assert any("limited to 8 s by an alarm signal" in n for n in report.notes)
    from conformance.verify import worker

    assert worker.IN_PROCESS_LIMIT is None  # nothing left behind


@pytest.mark.flax
def test_a_linen_network_with_its_variables() -> None:
    """Linen submodules made inside ``@compact`` calls exist only while the network runs: found as they are called."""
    pytest.importorskip("flax")
    from tests.third_party_fixtures import audit_linen

    net, variables = audit_linen.linen_net()
    report = conformance.audit(net, variables=variables, input_shape=(2, 8, 8, 3))
    rows = {b.path: b for b in report.blocks}
    assert list(rows) == ["first", "second", "eca", "raising"], report.to_text()
    assert [b.passed for b in report.blocks] == [True, True, True, False]
    assert rows["first"].found_by == "shape" and rows["second"].shared_with == "first"
    assert equivalent(rows["first"].config, SEConfig(channels=16, rd_ratio=0.25))
    assert equivalent(rows["eca"].config, ECAConfig(channels=16))
    assert rows["eca"].input_shape == (2, 8, 8, 16)
    _says(rows["raising"], "in the network, its forward raised RuntimeError: this block always raises")
    with pytest.raises(ValueError, match="pass its variables"):
        conformance.audit(net)
