"""The Keras port on every Keras backend: a small conformance set, run once per backend.

Keras picks its backend once per process (``KERAS_BACKEND``), so the session runs the
``active_backend`` tests on its own backend (TensorFlow by default) and spawns one pytest
per other backend to run the same tests there; the adapter's VJP dispatches on the backend
(``tf.GradientTape``, ``jax.vjp`` of ``stateless_call``, ``torch.autograd``).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conformance import check_case, check_non_vacuity, make_case
from conformance.grid import CHANNELS, PRESETS, Variant
from tests.conftest import adapter_or_skip

pytestmark = pytest.mark.keras

BACKENDS = ("tensorflow", "jax", "torch")
# Train mode for every preset; eval mode only where it differs (CBAM's batch norm).
CASES = [pytest.param(v, True, id=f"{v.id}-train") for v in PRESETS] + [
    pytest.param(v, False, id=f"{v.id}-eval") for v in PRESETS if v.module == "cbam"
]
# The JAX adapter compiles each case once; for these tiny shapes XLA's optimisations cost more than they save.
FAST_COMPILE = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"


def _ids(vs: list[Variant]) -> list:
    return [pytest.param(v, id=v.id) for v in vs]


def test_active_backend_is_the_requested_one() -> None:
    keras = pytest.importorskip("keras")
    assert keras.backend.backend() == os.environ.get("KERAS_BACKEND", "tensorflow")


@pytest.mark.parametrize(("variant", "training"), CASES)
def test_conformance_on_active_backend(variant: Variant, training: bool) -> None:
    adapter = adapter_or_skip("keras")
    case = make_case(variant.build(CHANNELS), seed=17, dtype="float32", training=training, data_format="channels_last")
    report = check_case(adapter, case)
    assert report.passed, "\n".join(report.failures())


@pytest.mark.parametrize("variant", _ids([v for v in PRESETS if v.name in ("official", "paper")]))
def test_non_vacuity_on_active_backend(variant: Variant) -> None:
    adapter = adapter_or_skip("keras")
    case = make_case(variant.build(CHANNELS), seed=3, dtype="float32", training=True, data_format="channels_last")
    assert check_non_vacuity(adapter, case) == []


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "tensorflow"])
def test_other_backend(backend: str) -> None:
    """Runs this file's ``active_backend`` tests in a fresh process on ``backend``."""
    pytest.importorskip("keras")
    pytest.importorskip(backend)
    if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":
        pytest.skip("spawned from the TensorFlow session only")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "KERAS_"))}
    env["KERAS_BACKEND"] = backend
    if backend == "jax":
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {FAST_COMPILE}".strip()
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:xdist",
        "-p",
        "no:randomly",
        __file__,
        "-k",
        "active_backend",
    ]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{backend} backend:\n{result.stdout[-6000:]}\n{result.stderr[-2000:]}"
    assert "passed" in result.stdout and "skipped" not in result.stdout, result.stdout[-2000:]
