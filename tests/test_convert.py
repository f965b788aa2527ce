"""Weight layouts (SPEC.md section 7): framework tables and third-party state dicts, built by hand here."""

from __future__ import annotations

import re

import numpy as np
import pytest

from reference_numpy import (
    CBAMConfig,
    ECAConfig,
    SEConfig,
    export_state_dict,
    flatten,
    framework_layout,
    from_framework,
    import_state_dict,
    init_params,
    nest,
    to_framework,
    to_framework_array,
)
from reference_numpy.convert import from_framework_array

C, HIDDEN = 12, 5  # C != hidden, so a wrong transpose of a dense kernel changes the shape
SE = SEConfig(channels=C, rd_channels=HIDDEN)
CBAM = CBAMConfig(channels=C, rd_channels=HIDDEN, spatial_kernel_size=3)
CONFIGS = [pytest.param(SE, id="se"), pytest.param(CBAM, id="cbam"), pytest.param(ECAConfig(channels=C), id="eca")]


def _distinct(shape: tuple[int, ...], offset: float = 0.0) -> np.ndarray:
    """Values that identify their position, so a transposed or flipped array cannot pass."""
    return np.arange(np.prod(shape), dtype=np.float64).reshape(shape) + offset


# ----------------------------------------------------------------------------- framework layouts


def test_conv2d_transposes_not_flips() -> None:
    w = _distinct((1, 2, 3, 3))
    for fw in ("flax", "keras"):
        k = to_framework_array("conv2d", w, fw)
        assert k.shape == (3, 3, 2, 1)
        # kernel[kh, kw, I, O] == weight[O, I, kh, kw]: a cross-correlation kernel moves, it is never flipped
        assert k[0, 2, 1, 0] == w[0, 1, 0, 2]
        np.testing.assert_array_equal(from_framework_array("conv2d", k, fw), w)


def test_general_conv_and_dense_any_shape() -> None:
    w = _distinct((8, 3, 5, 4))  # non-square kernel, O != I
    k = to_framework_array("conv2d", w, "keras")
    assert k.shape == (5, 4, 3, 8) and k[4, 1, 2, 7] == w[7, 2, 4, 1]
    d = _distinct((HIDDEN, C))
    assert to_framework_array("dense", d, "flax").shape == (C, HIDDEN)
    np.testing.assert_array_equal(to_framework_array("dense", d, "torch"), d)


@pytest.mark.parametrize("framework", ["torch", "flax", "keras"])
@pytest.mark.parametrize("cfg", CONFIGS)
def test_framework_round_trip_bit_exact(cfg, framework: str) -> None:
    params = init_params(cfg, seed=4)
    tensors = to_framework(cfg, params, framework)
    back = from_framework(cfg, tensors, framework)
    assert list(back) == list(params)
    for k in params:
        assert back[k].tobytes() == params[k].tobytes()
    assert {p.key: p.shape for p in framework_layout(cfg, framework).values()} == {
        k: v.shape for k, v in tensors.items()
    }


def test_framework_names() -> None:
    flax = framework_layout(CBAM, "flax")
    assert flax["channel.fc1.weight"].key == "params.channel.fc1.kernel"
    assert flax["channel.fc1.weight"].shape == (C, HIDDEN)
    assert flax["spatial.bn.running_var"].key == "batch_stats.spatial.bn.var"
    keras = framework_layout(CBAM, "keras")
    assert [keras[f"spatial.bn.{n}"].key for n in ("weight", "bias", "running_mean", "running_var")] == [
        "spatial.bn.gamma",
        "spatial.bn.beta",
        "spatial.bn.moving_mean",
        "spatial.bn.moving_variance",
    ]
    assert framework_layout(ECAConfig(channels=C, kernel_size=5), "torch")["conv.weight"].shape == (1, 1, 5)
    assert framework_layout(ECAConfig(channels=C, kernel_size=5), "keras")["conv.weight"].shape == (5, 1, 1)


def test_from_framework_lists_every_problem() -> None:
    tensors = to_framework(SE, init_params(SE), "flax")
    del tensors["params.fc2.bias"]
    tensors["params.fc1.kernel"] = tensors["params.fc1.kernel"].T  # the wrong transpose
    tensors["params.fc3.kernel"] = np.zeros(3)
    with pytest.raises(ValueError) as e:
        from_framework(SE, tensors, "flax")
    msg = str(e.value)
    assert "missing keys: params.fc2.bias" in msg
    assert "unexpected keys: params.fc3.kernel" in msg
    assert f"params.fc1.kernel (expected shape ({C}, {HIDDEN}), received ({HIDDEN}, {C}))" in msg


def test_unknown_framework() -> None:
    with pytest.raises(
        ValueError, match=re.escape("`framework` must be one of 'torch', 'flax', 'keras'. Received: 'mxnet'")
    ):
        to_framework(SE, init_params(SE), "mxnet")


def test_nest_flatten_inverse() -> None:
    flat = to_framework(CBAM, init_params(CBAM), "flax")
    tree = nest(flat)
    assert set(tree) == {"params", "batch_stats"}
    assert tree["batch_stats"]["spatial"]["bn"]["mean"] is flat["batch_stats.spatial.bn.mean"]
    assert flatten(tree) == flat


# ----------------------------------------------------------------------------- third-party state dicts
# Each layout is written out here by hand from SPEC.md section 7, not derived from the tables.


def _timm_se(prefix: str = "") -> dict[str, np.ndarray]:
    return {
        f"{prefix}fc1.weight": _distinct((8, 64, 1, 1)),
        f"{prefix}fc1.bias": _distinct((8,), 1),
        f"{prefix}fc2.weight": _distinct((64, 8, 1, 1), 2),
        f"{prefix}fc2.bias": _distinct((64,), 3),
    }


def _senet() -> dict[str, np.ndarray]:
    return {"fc.0.weight": _distinct((4, 64)), "fc.2.weight": _distinct((64, 4), 1)}


def _official_cbam() -> dict[str, np.ndarray]:
    return {
        "ChannelGate.mlp.1.weight": _distinct((4, 64)),
        "ChannelGate.mlp.1.bias": _distinct((4,), 1),
        "ChannelGate.mlp.3.weight": _distinct((64, 4), 2),
        "ChannelGate.mlp.3.bias": _distinct((64,), 3),
        "SpatialGate.spatial.conv.weight": _distinct((1, 2, 7, 7), 4),
        "SpatialGate.spatial.bn.weight": np.array([1.5]),
        "SpatialGate.spatial.bn.bias": np.array([0.25]),
        "SpatialGate.spatial.bn.running_mean": np.array([0.125]),
        "SpatialGate.spatial.bn.running_var": np.array([2.0]),
        "SpatialGate.spatial.bn.num_batches_tracked": np.array(7, dtype=np.int64),
    }


def _timm_cbam() -> dict[str, np.ndarray]:
    return {
        "channel.fc1.weight": _distinct((4, 64, 1, 1)),
        "channel.fc2.weight": _distinct((64, 4, 1, 1), 1),
        "spatial.conv.conv.weight": _distinct((1, 2, 7, 7), 2),
        "spatial.conv.bn.weight": np.array([1.5]),
        "spatial.conv.bn.bias": np.array([0.25]),
        "spatial.conv.bn.running_mean": np.array([0.125]),
        "spatial.conv.bn.running_var": np.array([2.0]),
        "spatial.conv.bn.num_batches_tracked": np.array(3, dtype=np.int64),
    }


def _eca(k: int) -> dict[str, np.ndarray]:
    return {"conv.weight": _distinct((1, 1, k))}


LAYOUTS = [
    pytest.param(_timm_se(), "timm", SEConfig.preset("timm", channels=64), id="se-timm"),
    pytest.param(
        _timm_se(), "torchvision", SEConfig.preset("torchvision", channels=64, rd_channels=8), id="se-torchvision"
    ),
    pytest.param(_senet(), "senet_pytorch", SEConfig(channels=64, bias=False), id="se-senet_pytorch"),
    pytest.param(_official_cbam(), "official", CBAMConfig(channels=64), id="cbam-official"),
    pytest.param(_timm_cbam(), "timm", CBAMConfig.preset("timm", channels=64), id="cbam-timm"),
    pytest.param(_eca(5), "official", ECAConfig(channels=256), id="eca-official"),
    pytest.param(_eca(5), "timm", ECAConfig.preset("timm", channels=256), id="eca-timm"),
    pytest.param(_eca(3), "timm", ECAConfig.preset("timm_ceca", channels=16), id="eca-timm_ceca"),
]


@pytest.mark.parametrize(("sd", "source", "cfg"), LAYOUTS)
def test_import_export_round_trip_bit_exact(sd, source, cfg) -> None:
    params = import_state_dict(sd, source, cfg)
    assert set(params) == set(init_params(cfg))
    back = export_state_dict(params, source, cfg)
    assert set(back) == set(sd)
    for k, v in sd.items():
        if k.endswith("num_batches_tracked"):
            assert back[k].dtype == np.int64 and back[k] == 0  # no canonical counterpart: written as 0
        else:
            assert back[k].tobytes() == v.astype(np.float64).tobytes(), k


def test_import_maps_names_and_layouts() -> None:
    p = import_state_dict(_official_cbam(), "official", CBAMConfig(channels=64))
    np.testing.assert_array_equal(p["channel.fc2.weight"], _distinct((64, 4), 2))
    np.testing.assert_array_equal(p["spatial.bn.running_var"], [2.0])
    p = import_state_dict(_timm_cbam(), "timm", CBAMConfig.preset("timm", channels=64))
    np.testing.assert_array_equal(p["channel.fc1.weight"], _distinct((4, 64)))
    np.testing.assert_array_equal(p["spatial.conv.weight"], _distinct((1, 2, 7, 7), 2))
    p = import_state_dict(_eca(5), "official", ECAConfig(channels=256))
    np.testing.assert_array_equal(p["conv.weight"], [0, 1, 2, 3, 4])
    p = import_state_dict(_senet(), "senet_pytorch", SEConfig(channels=64, bias=False))
    np.testing.assert_array_equal(p["fc1.weight"], _distinct((4, 64)))


def test_whole_model_state_dict_with_prefix() -> None:
    cfg = SEConfig.preset("timm", channels=64)
    other = {"conv1.weight": _distinct((64, 3, 7, 7)), "layer1.0.bn1.running_mean": np.zeros(64)}
    sd = {**other, **_timm_se("layer1.0.se."), **_timm_se("layer1.1.se.")}
    params = import_state_dict(sd, "timm", cfg, prefix="layer1.0.se.")
    np.testing.assert_array_equal(params["fc1.weight"], _distinct((8, 64)))
    new = {k: v + 100 for k, v in params.items()}
    out = export_state_dict(new, "timm", cfg, prefix="layer1.0.se.", state_dict=sd)
    assert set(out) == set(sd)
    for k in sd:
        if k.startswith("layer1.0.se."):
            assert not np.array_equal(out[k], sd[k])
        else:
            assert out[k] is sd[k]  # every other key left alone


def test_torch_tensors_accepted() -> None:
    torch = pytest.importorskip("torch")
    sd = {k: torch.from_numpy(v).float() for k, v in _timm_cbam().items()}
    params = import_state_dict(sd, "timm", CBAMConfig.preset("timm", channels=64))
    np.testing.assert_array_equal(params["spatial.conv.weight"], _distinct((1, 2, 7, 7), 2))


def test_import_lists_every_problem() -> None:
    sd = _timm_se("blk.")
    del sd["blk.fc2.bias"]
    sd["blk.fc1.weight"] = sd["blk.fc1.weight"][:, :, 0, 0]  # a Linear where a 1x1 conv belongs
    sd["blk.fc3.weight"] = np.zeros(1)
    with pytest.raises(ValueError) as e:
        import_state_dict(sd, "timm", SEConfig.preset("timm", channels=64), prefix="blk.")
    msg = str(e.value)
    assert "'timm' state dict under prefix 'blk.'" in msg
    assert "missing keys: blk.fc2.bias" in msg
    assert "unexpected keys: blk.fc3.weight" in msg
    assert "blk.fc1.weight (expected shape (8, 64, 1, 1), received (8, 64))" in msg


def test_layout_that_cannot_hold_the_config() -> None:
    with pytest.raises(ValueError, match=r"'senet_pytorch' layout .* has no place for fc1.bias, fc2.bias"):
        import_state_dict(_senet(), "senet_pytorch", SEConfig(channels=64))


def test_unknown_layout() -> None:
    with pytest.raises(
        ValueError, match=re.escape("No ECA state-dict layout named 'torchvision'. Expected one of 'official', 'timm'")
    ):
        import_state_dict({}, "torchvision", ECAConfig(channels=8))


def test_non_vacuity_wrong_layout_is_caught() -> None:
    """Importing an official CBAM state dict as timm's must fail, not load garbage."""
    with pytest.raises(ValueError, match="missing keys"):
        import_state_dict(_official_cbam(), "timm", CBAMConfig.preset("timm", channels=64))
