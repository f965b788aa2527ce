"""Every port against the reference on NaN/+Inf/-Inf inputs, weights and cotangents (SPEC.md section 1).

Where NaN, +Inf and -Inf appear in y, dx, every parameter gradient and the BN state must agree
exactly; finite entries agree within the bound SPEC.md 9.3 derives for them. Run one framework
with ``-k torch`` (or ``flax.linen``, ``flax.nnx``, ``keras``).
"""

from __future__ import annotations

import pytest

from conformance.adapters import get_adapter, is_installed
from conformance.cases import nonfinite_cases
from conformance.grid import KNOBS, PRESETS
from conformance.runner import check_against, reference_outputs

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

# every piecewise derivative, every pool, BN in both modes, both ECA paddings, the hard gate
VARIANTS = [v for v in PRESETS if v.name in ("official", "paper")] + [
    v
    for v in KNOBS
    if v.name
    in ("relu6-hard_sigmoid", "hard_swish-nearest8", "all-pools-mean-max", "no-norm-bias-k1", "k5-circular-bias")
]
FRAMEWORKS = ["torch", "flax.linen", "flax.nnx", "keras"]
MARKS = {
    "torch": pytest.mark.torch,
    "flax.linen": pytest.mark.flax,
    "flax.nnx": pytest.mark.flax,
    "keras": pytest.mark.keras,
}


@pytest.mark.parametrize("framework", [pytest.param(f, marks=MARKS[f], id=f) for f in FRAMEWORKS])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: f"{v.module}-{v.name}")
def test_non_finite_values_follow_the_rule(framework, dtype, variant):
    if not is_installed(framework):
        pytest.fail(f"{framework} is not installed")
    adapter = get_adapter(framework)
    cfg = variant.build(8)
    failures = []
    for training in (False, True) if cfg.has_batch_norm else (False,):
        for case in nonfinite_cases(cfg, dtype=dtype, training=training):
            report = check_against(adapter, case, reference_outputs(case))  # the bound of SPEC.md 9.3
            if not report.passed:
                failures.extend(report.failures())
    assert not failures, f"{len(failures)} case(s):\n" + "\n".join(failures[:40])
