"""verify's saturating case (SPEC.md section 9.5) drives every clamp past its corner, off every kink."""

from __future__ import annotations

import numpy as np
import pytest

from conformance.cases import make_case, saturating_case
from reference_numpy import CBAMConfig, ECAConfig, SEConfig, forward

CONFIGS = [
    *(
        SEConfig(channels=32, act=a, gate=g)
        for a in ("relu", "relu6", "hard_swish")
        for g in ("sigmoid", "hard_sigmoid")
    ),
    *(CBAMConfig(channels=32, gate=g, spatial_norm=n) for g in ("sigmoid", "hard_sigmoid") for n in (False, True)),
    ECAConfig(channels=32, gate="hard_sigmoid"),
    ECAConfig(channels=32),
]


def _gate_inputs(cfg, cache) -> list[np.ndarray]:  # type: ignore[no-untyped-def]
    if isinstance(cfg, CBAMConfig):
        return [cache.a, cache.spatial.zs] if cfg.spatial else [cache.a]
    return [cache.u]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"{c.module}-{getattr(c, 'act', '')}-{c.gate}")
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clamps_are_driven_past_their_corners_off_every_kink(cfg, seed: int) -> None:  # type: ignore[no-untyped-def]
    case = saturating_case(cfg, seed=seed)
    assert case is not None and case.dtype == "float64" and not case.training
    _, cache, _ = forward(cfg, case.params, case.x)
    if not isinstance(cfg, ECAConfig):
        h = cache.mlp[1]
        assert (h > 6).any() and ((h > 0) & (h < 6)).any() and (h < 0).any()
        assert np.min(np.abs(h[..., None] - np.array([-3.0, 0.0, 3.0, 6.0]))) > 1e-3
    default = forward(cfg, make_case(cfg, seed=seed, shape=case.x.shape).params, case.x)[1]
    for u, u0 in zip(_gate_inputs(cfg, cache), _gate_inputs(cfg, default), strict=True):
        if cfg.gate == "hard_sigmoid":
            assert (np.abs(u) > 3).any() and (np.abs(u) < 3).any()
            assert np.min(np.abs(np.abs(u) - 3.0)) > 1e-3
        else:  # a sigmoid gate keeps its inputs' scale
            np.testing.assert_allclose(np.abs(u).max(), np.abs(u0).max(), rtol=1e-12)


def test_channels_last_is_the_same_case_transposed() -> None:
    cfg = CBAMConfig(channels=16, gate="hard_sigmoid")
    first, last = saturating_case(cfg, seed=4), saturating_case(cfg, seed=4, data_format="channels_last")
    assert first is not None and last is not None
    np.testing.assert_array_equal(last.x, first.x.transpose(0, 2, 3, 1))
    assert all(np.array_equal(first.params[k], last.params[k]) for k in first.params)


@pytest.mark.parametrize("cfg", CONFIGS[:8:3], ids=lambda c: f"{c.module}-{c.gate}")
def test_a_float32_case_holds_float32_values_with_the_clamps_still_past_their_corners(cfg) -> None:  # type: ignore[no-untyped-def]
    case = saturating_case(cfg, seed=1, dtype="float32")
    assert case is not None and case.dtype == "float32"
    for a in (case.x, case.dy, *case.params.values()):
        np.testing.assert_array_equal(a, a.astype(np.float32))
    _, cache, _ = forward(cfg, case.params, case.x)
    if not isinstance(cfg, ECAConfig):
        assert (cache.mlp[1] > 6).any()
    if cfg.gate == "hard_sigmoid":
        assert (np.abs(_gate_inputs(cfg, cache)[0]) > 3).any()
