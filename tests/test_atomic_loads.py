"""Weight loads are atomic (issue #14): a bad value in the LAST canonical key leaves every port unchanged.

Each port's load converts and checks every tensor (``reference_numpy.canonical_arrays``) before it
assigns any; the tests below put the bad value last, after keys that would already have been
copied by a load that converts one tensor at a time, and compare every weight bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest

import reference_numpy as ref
from reference_numpy import CBAMConfig, KeyMismatchError

CFG = CBAMConfig(6, rd_channels=2, spatial_kernel_size=3)  # last canonical key: spatial.bn.running_var
LAST = list(ref.param_layout(CFG))[-1]
SHAPE = ref.param_layout(CFG)[LAST].shape


def _meta_tensor():
    torch = pytest.importorskip("torch")
    return torch.empty(SHAPE, device="meta")


# name -> (a bad value for the last key, the error type, a fragment of the message)
BAD_VALUES = {
    "none": (lambda: None, TypeError, f"{LAST} (None)"),
    "full_none": (lambda: np.full(SHAPE, None), TypeError, f"{LAST} (an array of Python objects"),
    "strings": (lambda: np.full(SHAPE, "1.0"), TypeError, f"{LAST} (an array of strings"),
    "bools": (lambda: np.ones(SHAPE, bool), TypeError, f"{LAST} (an array of bools"),
    "complex": (lambda: np.ones(SHAPE, complex), TypeError, f"{LAST} (an array of complex numbers"),
    "ragged": (lambda: [[1.0], [1.0, 2.0]], TypeError, f"{LAST} (a value that is not an array of numbers"),
    "misshaped": (lambda: np.ones((2, 2)), KeyMismatchError, f"{LAST} (expected shape (1,), received (2, 2))"),
    "overflow": (lambda: np.full(SHAPE, 1e300), ValueError, f"{LAST} (float32; largest magnitude 1e+300)"),
    "meta": (_meta_tensor, TypeError, f"{LAST} (a tensor on the meta device"),
}


def _bad_params(kind: str) -> dict:
    params = {k: v + 1.0 for k, v in ref.init_params(CFG, seed=3).items()}  # differs from any init everywhere
    params[LAST] = BAD_VALUES[kind][0]()
    assert list(params)[-1] == LAST
    return params


def _assert_unchanged(before: dict, after: dict) -> None:
    assert sorted(before) == sorted(after)
    for k in before:
        np.testing.assert_array_equal(np.asarray(after[k]).view(np.uint32), np.asarray(before[k]).view(np.uint32))


def _torch_port():
    torch_impl = pytest.importorskip("torch_impl")
    module = torch_impl.from_config(CFG)
    return module, lambda p: torch_impl.load_canonical(module, p), lambda: torch_impl.to_canonical(module)


def _nnx_port():
    pytest.importorskip("flax")
    from flax import nnx

    from flax_impl import nnx as fnnx

    module = fnnx.from_config(CFG, rngs=nnx.Rngs(0))
    return module, lambda p: fnnx.load_canonical(module, p), lambda: fnnx.to_canonical(module)


def _keras_port():
    pytest.importorskip("keras")
    import tf_impl

    layer = tf_impl.from_config(CFG, data_format="channels_first")
    layer.build((None, 6, 4, 5))
    return layer, lambda p: tf_impl.load_canonical(layer, p), lambda: tf_impl.to_canonical(layer)


PORTS = {
    "torch": pytest.param(_torch_port, id="torch", marks=pytest.mark.torch),
    "flax.nnx": pytest.param(_nnx_port, id="flax.nnx", marks=pytest.mark.flax),
    "keras": pytest.param(_keras_port, id="keras", marks=pytest.mark.keras),
}


@pytest.mark.parametrize("port", PORTS.values())
@pytest.mark.parametrize("kind", BAD_VALUES)
def test_bad_last_key_changes_nothing(port, kind):
    _, load, read = port()
    before = read()
    params = _bad_params(kind)
    error, fragment = BAD_VALUES[kind][1:]
    with pytest.raises(error) as info:
        load(params)
    assert fragment in str(info.value)
    _assert_unchanged(before, read())


@pytest.mark.parametrize("port", PORTS.values())
def test_good_load_changes_everything_and_returns_the_module(port):
    """The control: the same params with a good last key load completely (so the test above can fail)."""
    module, load, read = port()
    params = _bad_params("none")
    params[LAST] = np.full(SHAPE, 2.5)
    assert load(params) is module
    got = read()
    for k, v in params.items():
        np.testing.assert_array_equal(got[k], v.astype(np.float32))


@pytest.mark.flax
@pytest.mark.parametrize("kind", BAD_VALUES)
def test_linen_from_canonical_refuses_before_building(kind):
    pytest.importorskip("flax")
    from flax_impl import linen

    error, fragment = BAD_VALUES[kind][1:]
    with pytest.raises(error) as info:
        linen.from_canonical(CFG, _bad_params(kind))
    assert fragment in str(info.value)


@pytest.mark.parametrize("kind", [k for k in BAD_VALUES if k != "overflow"])
def test_reference_forward_and_checkpoints_refuse_the_same_values(kind, tmp_path):
    """The reference's own loads: forward (float64, so no overflow) and save_checkpoint."""
    params = _bad_params(kind)
    error, fragment = BAD_VALUES[kind][1:]
    with pytest.raises(error, match=None) as info:
        ref.forward(CFG, params, np.ones((2, 6, 4, 5)))
    assert fragment in str(info.value)
    with pytest.raises(error) as info:
        ref.save_checkpoint(tmp_path / "c.safetensors", CFG, params)
    assert fragment in str(info.value)
    assert not (tmp_path / "c.safetensors").exists()


def test_non_finite_weights_are_values():
    """SPEC.md section 8: NaN and +/-Inf load unchanged (they are what the spec propagates)."""
    params = ref.init_params(CFG)
    params[LAST] = np.array([np.nan])
    params["channel.fc1.weight"][0, 0] = -np.inf
    out = ref.canonical_arrays(CFG, params, dtypes="float16")
    assert np.isnan(out[LAST]).all() and out["channel.fc1.weight"][0, 0] == -np.inf


@pytest.mark.parametrize(
    ("dtype", "largest_ok", "smallest_overflow"),
    [
        ("float16", 65519.99, 65520.0),
        ("float32", float(np.float32(3.4028235e38)), 3.4028235677973366e38),
        ("bfloat16", 3.3895313892515355e38, 3.3961775292304683e38),
    ],
)
def test_overflow_threshold_is_round_to_nearest(dtype, largest_ok, smallest_overflow):
    ref.check_fits({"w": np.array([largest_ok, -largest_ok])}, dtype)
    with pytest.raises(ValueError, match=rf"w \({dtype}; largest magnitude"):
        ref.check_fits({"w": np.array([-smallest_overflow])}, dtype)
    torch = pytest.importorskip("torch")  # the thresholds are the frameworks' own rounding
    as_torch = getattr(torch, dtype)
    assert torch.isfinite(torch.tensor([largest_ok], dtype=torch.float64).to(as_torch)).all()
    assert torch.isinf(torch.tensor([smallest_overflow], dtype=torch.float64).to(as_torch)).all()


def test_strict_false_loads_a_subset_and_must_be_a_bool():
    torch_impl = pytest.importorskip("torch_impl")
    module = torch_impl.from_config(CFG)
    before = torch_impl.to_canonical(module)
    torch_impl.load_canonical(module, {LAST: np.array([4.0])}, strict=False)
    after = torch_impl.to_canonical(module)
    assert after[LAST][0] == 4.0
    assert all(np.array_equal(after[k], before[k]) for k in before if k != LAST)
    with pytest.raises(TypeError, match=r"`strict` must be a bool\. Received: strict='no'"):
        torch_impl.load_canonical(module, {LAST: np.array([4.0])}, strict="no")
