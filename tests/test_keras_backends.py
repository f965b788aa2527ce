"""The Keras port on every Keras backend: a small conformance set, run once per backend.

Keras picks its backend once per process (``KERAS_BACKEND``), so the session runs the
``active_backend`` tests on its own backend (TensorFlow by default) and spawns one pytest
per other backend to run the same tests there; the adapter's VJP dispatches on the backend
(``tf.GradientTape``, ``jax.vjp`` of ``stateless_call``, ``torch.autograd``).

The non-finite rule (SPEC.md section 1) runs here on each backend's compiled or default path:
TensorFlow under XLA (``tf.function(jit_compile=True)``; eager TensorFlow is
tests/test_nonfinite_ports.py), JAX under ``jax.jit``, PyTorch eager.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conformance import check_case, check_non_vacuity, make_case
from conformance.cases import nonfinite_cases
from conformance.grid import CHANNELS, PRESETS, Variant
from conformance.runner import check_against, reference_outputs
from tests.conftest import adapter_or_skip
from tests.test_nonfinite_ports import VARIANTS as NONFINITE_VARIANTS

pytestmark = pytest.mark.keras

BACKENDS = ("tensorflow", "jax", "torch")
# float32, channels last: train mode for every preset; eval mode only where it differs (CBAM's batch norm).
CASES = [pytest.param(v, True, "float32", "channels_last", id=f"{v.id}-train") for v in PRESETS] + [
    pytest.param(v, False, "float32", "channels_last", id=f"{v.id}-eval") for v in PRESETS if v.module == "cbam"
]
# float64, channels first (SPEC.md 9.3's tight bound: the backends that once computed float64 in float32 fail it):
# per module, the forward, the input and parameter gradients, and CBAM's BN state in train mode and its eval path.
F64 = {"se-timm": (True,), "cbam-official": (True, False), "eca-timm_ceca": (True,)}
CASES += [
    pytest.param(v, training, "float64", "channels_first", id=f"{v.id}-float64-{'train' if training else 'eval'}")
    for v in PRESETS
    for training in F64.get(v.id, ())
]
# The JAX adapter compiles each case once; for these tiny shapes XLA's optimisations cost more than they save.
FAST_COMPILE = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"


def test_active_backend_is_the_requested_one() -> None:
    keras = pytest.importorskip("keras")
    assert keras.backend.backend() == os.environ.get("KERAS_BACKEND", "tensorflow")


@pytest.mark.parametrize(("variant", "training", "dtype", "data_format"), CASES)
def test_conformance_on_active_backend(variant: Variant, training: bool, dtype: str, data_format: str) -> None:
    adapter = adapter_or_skip("keras")
    case = make_case(variant.build(CHANNELS), seed=17, dtype=dtype, training=training, data_format=data_format)
    report = check_case(adapter, case)
    assert report.passed, "\n".join(report.failures())
    assert {c.name for c in report.comparisons} >= {"y", "dx"} | (
        {"state[spatial.bn.running_mean]"} if training and variant.module == "cbam" else set()
    )


def test_float64_is_float64_or_refused_on_active_backend() -> None:
    """A float64 layer computes in float64; on JAX that needs its 64-bit mode, and without it the layer refuses."""
    keras = pytest.importorskip("keras")
    import numpy as np

    import tf_impl

    x = np.random.default_rng(0).normal(size=(2, 5, 4, CHANNELS))
    if keras.backend.backend() == "jax":
        import jax

        with jax.enable_x64(False), pytest.raises(ValueError, match="needs JAX's 64-bit mode"):
            tf_impl.CBAM(CHANNELS, dtype="float64").build(x.shape)
        with jax.enable_x64(True):
            layer = tf_impl.CBAM(CHANNELS, dtype="float64")
            y = layer(x, training=True)
    else:
        layer = tf_impl.CBAM(CHANNELS, dtype="float64")
        y = layer(x, training=True)
    assert keras.backend.standardize_dtype(y.dtype) == "float64"
    assert {v.dtype for v in layer.weights} == {"float64"}


def test_non_vacuity_on_active_backend() -> None:
    """A perturbed weight and a swapped spatial_pool_order must FAIL (CBAM has both mutations)."""
    adapter = adapter_or_skip("keras")
    cbam = next(v for v in PRESETS if v.id == "cbam-official")
    case = make_case(cbam.build(CHANNELS), seed=3, dtype="float32", training=True, data_format="channels_last")
    assert check_non_vacuity(adapter, case) == []


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # Inf * 0 = NaN is the rule here
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("variant", NONFINITE_VARIANTS, ids=lambda v: f"{v.module}-{v.name}")
def test_non_finite_rule_on_active_backend(variant: Variant, dtype: str) -> None:
    """SPEC.md section 1 on NaN/+Inf/-Inf in x, each weight and dy: TensorFlow under XLA, JAX jitted, PyTorch.

    As tests/test_nonfinite_ports.py: non-finite entries exactly, finite ones under SPEC.md 9.3's bound.
    """
    import keras

    from conformance.adapters.keras_adapter import KerasAdapter

    adapter_or_skip("keras")
    adapter = KerasAdapter(jit_compile=keras.backend.backend() == "tensorflow")
    cfg = variant.build(8)
    failures = []
    for training in (False, True) if cfg.has_batch_norm else (False,):
        for case in nonfinite_cases(cfg, dtype=dtype, training=training):
            failures += check_against(adapter, case, reference_outputs(case)).failures()
    assert not failures, f"{len(failures)} mismatch(es):\n" + "\n".join(failures[:40])


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
    outputs = {backend: run.communicate(timeout=900)[0] for backend, run in runs.items()}
    for backend, run in runs.items():
        out = outputs[backend]
        assert run.returncode == 0, f"{backend} backend:\n{out[-6000:]}"
        assert "passed" in out and "skipped" not in out, f"{backend} backend:\n{out[-2000:]}"
