"""examples/port_weights.py: a trained PyTorch ResNet with SE, CBAM and ECA blocks, ported to Flax and Keras.

The logits of every framework must agree with float64 PyTorch within SPEC.md's float32
tolerance; next to that, a weight ported the wrong way round must make them disagree.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pytest

pytest.importorskip("torch")

from examples import port_weights


@functools.cache
def _result() -> port_weights.PortResult:
    return port_weights.port(steps=5, seed=0)


@pytest.mark.torch
def test_export_is_complete_and_batch_norm_statistics_are_trained() -> None:
    weights = _result().weights
    assert set(weights.attention) == {"block1.attn", "block2.attn", "block3.attn"}
    assert [weights.attention[p].module for p in sorted(weights.attention)] == ["se", "cbam", "eca"]
    assert weights.kinds["stem.conv.weight"] == "conv2d" and weights.kinds["head.weight"] == "dense"
    for name, v in weights.params.items():
        if name.endswith("running_var"):
            assert not np.allclose(v, 1.0), f"{name} still at its initial value"


@pytest.mark.torch
def test_torch_float32_matches_torch_float64() -> None:
    assert _result().comparisons["torch"].ok, _result().comparisons["torch"].message


@pytest.mark.parametrize(
    "framework",
    [pytest.param("flax", marks=pytest.mark.flax), pytest.param("keras", marks=pytest.mark.keras)],
)
def test_ported_logits_match_within_float32_tolerance(framework: str) -> None:
    for package in port_weights.FRAMEWORKS[framework][0]:
        pytest.importorskip(package)
    result = _result()
    comparison = result.comparisons[framework]
    assert comparison.dtype == "float32"
    assert comparison.ok, comparison.message
    assert result.max_difference(framework) < 1e-5


@pytest.mark.flax
def test_a_weight_ported_the_wrong_way_round_is_caught() -> None:
    """Non-vacuity: CBAM's spatial kernel with its two input maps swapped (the pool-order mistake)."""
    pytest.importorskip("flax")
    result = _result()
    params = dict(result.weights.params)
    params["block2.attn.spatial.conv.weight"] = params["block2.attn.spatial.conv.weight"][:, ::-1].copy()
    wrong = dataclasses.replace(result.weights, params=params)
    logits = port_weights.flax_logits(wrong, result.x.transpose(0, 2, 3, 1))
    assert not port_weights.compare("logits", logits, result.reference, "float32").ok
