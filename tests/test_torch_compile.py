"""torch_impl under torch.compile(fullgraph=True) with Inductor, and torch.export.

Under both the layers take their composite path (plain differentiable ops); the other tools,
every module and mode, are in tests/test_torch_tools.py.

One small case per module, in float64 so that the comparison with the reference is strict.
Compiling on CPU takes a few seconds per module (more on a busy machine): marked slow, still run.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import torch_impl  # noqa: E402
from conformance import compare, make_case, reference_outputs  # noqa: E402
from reference_numpy import CBAMConfig, ECAConfig, SEConfig  # noqa: E402

pytestmark = pytest.mark.torch

CONFIGS = [
    pytest.param(SEConfig(channels=12, rd_channels=3, act="silu"), id="se"),
    pytest.param(CBAMConfig(channels=12, rd_channels=3, pool_types=("avg", "max", "lp")), id="cbam"),
    pytest.param(ECAConfig.preset("timm_ceca", channels=12), id="eca"),
]


def _check(got: dict[str, np.ndarray], case) -> None:
    want = reference_outputs(case)
    expected = {"y": want.y, "dx": want.dx, **{f"grad[{k}]": v for k, v in want.grads.items()}}
    bad = [c.message for k, v in expected.items() if not (c := compare(k, got[k], v, "float64")).ok]
    assert not bad, "\n".join(bad)


@pytest.mark.slow
@pytest.mark.parametrize("cfg", CONFIGS)
def test_compile_fullgraph_matches_the_reference(cfg):
    case = make_case(cfg, seed=2, training=True, shape=(3, cfg.channels, 6, 5))
    module = torch_impl.load_canonical(torch_impl.from_config(cfg, dtype=torch.float64), case.params).train()
    compiled = torch.compile(module, fullgraph=True)
    x = torch.from_numpy(case.x).contiguous(memory_format=torch.channels_last).requires_grad_()
    y = compiled(x)
    y.backward(torch.from_numpy(case.dy))
    got = {"y": y.detach().numpy(), "dx": x.grad.numpy()}
    got.update({f"grad[{k}]": p.grad.numpy().reshape(case.params[k].shape) for k, p in module.named_parameters()})
    _check(got, case)
    state = torch_impl.to_canonical(module)
    _, _, new_state = __import__("reference_numpy").forward(cfg, case.params, case.x, training=True)
    assert all(compare(k, state[k], v, "float64").ok for k, v in new_state.items())


@pytest.mark.parametrize("cfg", CONFIGS)
def test_export_matches_eager(cfg):
    case = make_case(cfg, seed=3, dtype="float32", shape=(2, cfg.channels, 6, 5))
    module = torch_impl.load_canonical(torch_impl.from_config(cfg), case.params).eval()
    x = torch.from_numpy(case.x).float()
    program = torch.export.export(module, (x,))
    with torch.no_grad():
        y = program.module()(x)  # the composite path (tests/test_torch_tools.py: dynamic sizes, train mode)
    assert compare("y", y.numpy(), reference_outputs(case, False).y, "float32").ok
