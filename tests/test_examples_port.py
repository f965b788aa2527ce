"""examples/: the ResNets have the published models' names and sizes, and ``python -m examples.port_weights`` runs.

The counts below are the published models' (torchvision's ``resnet18``/``34``/``50``, timm's
``seresnet50``): parameters, and state-dict entries with ``num_batches_tracked``.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from examples.architecture import attention_config, blocks  # noqa: E402
from examples.resnet_torch import resnet  # noqa: E402

pytestmark = pytest.mark.torch

PUBLISHED = [
    pytest.param(18, None, 11_689_512, 122, id="resnet18"),
    pytest.param(34, None, 21_797_672, 218, id="resnet34"),
    pytest.param(50, None, 25_557_032, 320, id="resnet50"),
    pytest.param(50, "se", 28_088_024, 384, id="seresnet50"),
]


@pytest.mark.parametrize(("depth", "attn", "parameters", "entries"), PUBLISHED)
def test_the_published_sizes(depth: int, attn: str | None, parameters: int, entries: int) -> None:
    model = resnet(depth, attn)
    assert sum(p.numel() for p in model.parameters()) == parameters
    assert len(model.state_dict()) == entries


def test_names_of_a_bottleneck_and_a_basic_block() -> None:
    sd50 = resnet(50, "cbam").state_dict()
    for key, shape in {
        "conv1.weight": (64, 3, 7, 7),
        "layer1.0.conv3.weight": (256, 64, 1, 1),
        "layer1.0.downsample.0.weight": (256, 64, 1, 1),
        "layer2.0.conv2.weight": (128, 128, 3, 3),
        "layer2.0.downsample.1.running_var": (512,),
        "layer3.5.se.channel.fc1.weight": (64, 1024, 1, 1),
        "layer3.5.se.spatial.conv.conv.weight": (1, 2, 7, 7),
        "layer3.5.se.spatial.conv.bn.num_batches_tracked": (),
        "fc.weight": (1000, 2048),
    }.items():
        assert tuple(sd50[key].shape) == shape, key
    sd18 = resnet(18, "ceca", num_classes=7).state_dict()
    assert "layer1.0.downsample.0.weight" not in sd18 and "layer2.0.downsample.0.weight" in sd18
    assert tuple(sd18["layer4.1.se.conv.weight"].shape) == (1, 1, attention_config("ceca", 512).effective_kernel_size)
    assert tuple(sd18["fc.weight"].shape) == (7, 512)


def test_attention_runs_after_the_last_batch_norm_before_the_sum() -> None:
    model = resnet(18, "se").eval()
    calls: list[str] = []
    for name, module in model.layer2[0].named_children():
        module.register_forward_hook(lambda *_, name=name: calls.append(name))
    with torch.no_grad():
        model(torch.zeros(1, 3, 32, 32))
    assert calls == ["conv1", "bn1", "conv2", "bn2", "se", "downsample"]


def test_block_table() -> None:
    assert [len([b for b in blocks(d) if b.stage == "layer3"]) for d in (18, 34, 50)] == [2, 6, 6]
    assert [b.stride for b in blocks(18) if b.index == 0] == [1, 2, 2, 2]
    with pytest.raises(ValueError, match="`depth` must be one of 18, 34, 50"):
        blocks(101)
    with pytest.raises(ValueError, match="`attn` must be None or one of"):
        attention_config("gc", 64)


@pytest.mark.keras
@pytest.mark.flax
def test_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("keras")
    pytest.importorskip("flax")
    from examples import port_weights

    code = port_weights.main(["--attn", "eca", "--num-classes", "3", "--image-size", "32", "--steps", "1"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "resnet18  | eca   | keras " in out and "round trip exact" in out and "flax " in out
