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


def test_active_backend_is_the_requested_one() -> None:
    keras = pytest.importorskip("keras")
    assert keras.backend.backend() == os.environ.get("KERAS_BACKEND", "tensorflow")


@pytest.mark.parametrize(("variant", "training"), CASES)
def test_conformance_on_active_backend(variant: Variant, training: bool) -> None:
    adapter = adapter_or_skip("keras")
    case = make_case(variant.build(CHANNELS), seed=17, dtype="float32", training=training, data_format="channels_last")
    report = check_case(adapter, case)
    assert report.passed, "\n".join(report.failures())


def test_non_vacuity_on_active_backend() -> None:
    """A perturbed weight and a swapped spatial_pool_order must FAIL (CBAM has both mutations)."""
    adapter = adapter_or_skip("keras")
    cbam = next(v for v in PRESETS if v.id == "cbam-official")
    case = make_case(cbam.build(CHANNELS), seed=3, dtype="float32", training=True, data_format="channels_last")
    assert check_non_vacuity(adapter, case) == []


def test_other_backends() -> None:
    """Runs this file's ``active_backend`` tests in a fresh process per other backend, concurrently."""
    pytest.importorskip("keras")
    if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":
        pytest.skip("spawned from the TensorFlow session only")
    backends = [b for b in BACKENDS if b != "tensorflow"]
    for backend in backends:
        pytest.importorskip(backend)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "KERAS_"))}
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
    runs = {}
    for backend in backends:
        env = {**base, "KERAS_BACKEND": backend}
        if backend == "jax":
            env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {FAST_COMPILE}".strip()
        runs[backend] = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    outputs = {backend: run.communicate(timeout=300)[0] for backend, run in runs.items()}
    for backend, run in runs.items():
        out = outputs[backend]
        assert run.returncode == 0, f"{backend} backend:\n{out[-6000:]}"
        assert "passed" in out and "skipped" not in out, f"{backend} backend:\n{out[-2000:]}"
