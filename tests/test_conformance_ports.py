"""Every port against the reference through the conformance core (SPEC.md section 9).

Output, input gradient, every parameter gradient and, in train mode, the BN running
statistics; presets in every dtype (half types forward only), the knob grid and the edge
cases in float64 and float32, both modes and both data formats; and, next to them, the
non-vacuity checks showing that these comparisons can fail.
"""

from __future__ import annotations

import pytest

from conformance import check_case, check_non_vacuity, edge_cases, make_case
from conformance.grid import CHANNELS, KNOBS, PRESETS, Variant
from reference_numpy import DATA_FORMATS
from tests.conftest import adapter_or_skip, port_params

FORMATS = [pytest.param(f, id="nchw" if f == "channels_first" else "nhwc") for f in DATA_FORMATS]
MODES = [pytest.param(False, id="eval"), pytest.param(True, id="train")]


def _variants(vs: list[Variant]) -> list:
    return [pytest.param(v, id=v.id) for v in vs]


def _check(framework: str, variant: Variant, dtype: str, training: bool, data_format: str, seed: int) -> None:
    adapter = adapter_or_skip(framework)
    case = make_case(variant.build(CHANNELS), seed=seed, dtype=dtype, training=training, data_format=data_format)
    report = check_case(adapter, case)
    assert report.passed, "\n".join(report.failures())


@pytest.mark.parametrize("data_format", FORMATS)
@pytest.mark.parametrize("training", MODES)
@pytest.mark.parametrize("dtype", ["float64", "float32", "bfloat16", "float16"])
@pytest.mark.parametrize("variant", _variants(PRESETS))
@pytest.mark.parametrize("framework", port_params())
def test_presets(framework: str, variant: Variant, dtype: str, training: bool, data_format: str) -> None:
    _check(framework, variant, dtype, training, data_format, seed=11)


@pytest.mark.parametrize("data_format", FORMATS)
@pytest.mark.parametrize("training", MODES)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("variant", _variants(KNOBS))
@pytest.mark.parametrize("framework", port_params())
def test_knobs(framework: str, variant: Variant, dtype: str, training: bool, data_format: str) -> None:
    _check(framework, variant, dtype, training, data_format, seed=23)


@pytest.mark.parametrize("training", MODES)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("variant", _variants(PRESETS))
@pytest.mark.parametrize("framework", port_params())
def test_edge_cases(framework: str, variant: Variant, dtype: str, training: bool) -> None:
    adapter = adapter_or_skip(framework)
    data_format = adapter.data_formats[0]
    failures = []
    for case in edge_cases(variant.build(CHANNELS), seed=5, dtype=dtype, training=training, data_format=data_format):
        failures += check_case(adapter, case).failures()
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("variant", _variants([v for v in PRESETS if v.name in ("official", "paper")]))
@pytest.mark.parametrize("framework", port_params())
def test_non_vacuity(framework: str, variant: Variant) -> None:
    """A perturbed weight and (CBAM) a swapped spatial_pool_order must make the comparison FAIL."""
    adapter = adapter_or_skip(framework)
    case = make_case(variant.build(CHANNELS), seed=3, dtype="float32", training=True)
    assert check_non_vacuity(adapter, case) == []
