"""The PyTorch classes work as timm's ``attn_layer=`` (issue #13, item 8), tested with a stand-in.

timm is not a dependency (nor installable here). What the stand-in reproduces, as read from
timm's source (``timm/layers/create_attn.py``, ``timm/models/resnet.py``): a model takes
``block_args=dict(attn_layer=...)``; each ResNet block builds its attention with
``create_attn(attn_layer, outplanes)``, where ``get_attn`` maps a string to timm's own class,
``True`` to SE, and passes anything else (a class, a ``functools.partial``) through, and
``create_attn`` calls it with the channel count as the first positional argument, plus any
keyword arguments the caller gives. The block applies it after its last batch norm, before the
residual sum, when it is not None.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch_impl = pytest.importorskip("torch_impl")
from torch import nn  # noqa: E402

from reference_numpy import CBAMConfig, ECAConfig, SEConfig, make_config  # noqa: E402

pytestmark = pytest.mark.torch


def get_attn(attn_layer: Any) -> Any:
    """timm's rule for everything but its own string names: None/False is none, else the callable itself."""
    if attn_layer is None or attn_layer is False:
        return None
    if isinstance(attn_layer, str) or attn_layer is True:
        raise NotImplementedError("the stand-in has none of timm's own attention classes")
    return attn_layer


def create_attn(attn_layer: Any, channels: int, **kwargs: Any) -> nn.Module | None:
    cls = get_attn(attn_layer)
    return None if cls is None else cls(channels, **kwargs)  # channels positional, as timm does


class Bottleneck(nn.Module):
    """A ResNet bottleneck block in timm's shape (expansion 4), attention on the residual branch."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, attn_layer: Any = None):
        super().__init__()
        outplanes = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, outplanes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(outplanes)
        self.se = create_attn(attn_layer, outplanes)
        self.downsample = None if inplanes == outplanes else nn.Conv2d(inplanes, outplanes, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        y = torch.relu(self.bn1(self.conv1(x)))
        y = torch.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        if self.se is not None:
            y = self.se(y)
        return torch.relu(y + shortcut)


def make_stage(inplanes: int, planes: int, blocks: int, block_args: dict[str, Any]) -> nn.Sequential:
    """How timm's ResNet hands ``block_args`` to every block of a stage."""
    layers = [Bottleneck(inplanes if i == 0 else planes * 4, planes, **block_args) for i in range(blocks)]
    return nn.Sequential(*layers)


ATTN_LAYERS = [
    pytest.param(torch_impl.SqueezeExcite, SEConfig(channels=32), id="SqueezeExcite"),
    pytest.param(torch_impl.ECA, ECAConfig(channels=32), id="ECA"),
    pytest.param(torch_impl.CBAM, CBAMConfig(channels=32), id="CBAM"),
    pytest.param(
        functools.partial(torch_impl.SqueezeExcite, preset="timm"), SEConfig.preset("timm", channels=32), id="SE-timm"
    ),
    pytest.param(
        functools.partial(torch_impl.CBAM, preset="timm", spatial_kernel_size=5),
        CBAMConfig.preset("timm", channels=32, spatial_kernel_size=5),
        id="CBAM-timm-k5",
    ),
    pytest.param(functools.partial(torch_impl.ECA, kernel_size=5), ECAConfig(channels=32, kernel_size=5), id="ECA-k5"),
]


@pytest.mark.parametrize(("attn_layer", "expected"), ATTN_LAYERS)
def test_a_timm_style_stage_builds_and_trains_with_it(attn_layer: Any, expected: Any) -> None:
    torch.manual_seed(0)
    stage = make_stage(16, 8, 2, dict(attn_layer=attn_layer))  # 32 output channels per block
    for block in stage:
        assert isinstance(block.se, torch_impl.AttentionModule)
        assert block.se.config == expected  # built for the block's output channels, with the partial's knobs
    x = torch.randn(2, 16, 6, 5, requires_grad=True)
    stage.train()
    y = stage(x)
    assert y.shape == (2, 32, 6, 5)
    y.square().sum().backward()
    assert x.grad is not None and all(p.grad is not None for p in stage[0].se.parameters())
    stage.eval()
    assert stage(x).shape == (2, 32, 6, 5)
    # its weights keep the canonical names under the block's prefix, as in any timm model's state dict
    keys = {k.removeprefix("0.se.") for k in stage.state_dict() if k.startswith("0.se.")}
    assert keys == set(torch_impl.to_canonical(stage[0].se))


def test_the_attention_in_the_block_is_the_spec_module() -> None:
    """The stand-in changes nothing: the block's attention computes what the reference computes."""
    from reference_numpy import forward, init_params

    block = Bottleneck(16, 8, attn_layer=functools.partial(torch_impl.CBAM, preset="timm")).double().eval()
    cfg = make_config("cbam", 32, preset="timm")
    params = init_params(cfg, seed=1)
    torch_impl.load_canonical(block.se, params)
    x = np.random.default_rng(0).normal(size=(2, 32, 5, 4))
    got = block.se(torch.from_numpy(x)).detach().numpy()
    want = forward(cfg, params, x)
    want = want[0] if isinstance(want, tuple) else want
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_no_attention_and_the_extra_kwargs_path() -> None:
    assert Bottleneck(16, 8).se is None and Bottleneck(16, 8, attn_layer=False).se is None
    se = create_attn(torch_impl.SqueezeExcite, 64, rd_ratio=0.25)  # create_attn's **kwargs reach the class
    assert se is not None and se.config.hidden == 16
