"""Canonical checkpoints (SPEC.md section 8): bit-exact round trips, metadata, and every way a file can be wrong.

Every bad file gives a :class:`CheckpointError` (a ValueError) whose message says what is wrong;
never another exception type.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import save_file

import reference_numpy as ref
from reference_numpy import CBAMConfig, CheckpointError, ECAConfig, SEConfig, load_checkpoint, save_checkpoint

CONFIGS = [
    pytest.param(SEConfig(16, rd_channels=4), id="se"),
    pytest.param(SEConfig(16, rd_channels=4, bias=False, act="gelu"), id="se-nobias"),
    pytest.param(CBAMConfig(16), id="cbam"),
    pytest.param(CBAMConfig(16, spatial_bias=True, spatial_kernel_size=3, pool_types=("lp", "max")), id="cbam-bias"),
    pytest.param(CBAMConfig(16, spatial=False), id="cbam-nospatial"),
    pytest.param(CBAMConfig.preset("timm", channels=24), id="cbam-timm"),
    pytest.param(ECAConfig(16), id="eca"),
    pytest.param(ECAConfig.preset("timm_ceca", channels=16, bias=True), id="eca-ceca-bias"),
]


def _random_params(cfg, seed=0):
    rng = np.random.default_rng(seed)
    return {k: rng.normal(size=s.shape) for k, s in ref.param_layout(cfg).items()}


def _metadata(cfg):
    return {"format": "attnspec", "format_version": "1", "module": cfg.module, "config": cfg.to_json()}


@pytest.mark.parametrize("cfg", CONFIGS)
def test_round_trip_is_bit_exact(cfg, tmp_path):
    params = _random_params(cfg)
    path = tmp_path / "ckpt.safetensors"
    save_checkpoint(path, cfg, params)
    for expected in (None, cfg):
        got_cfg, got = load_checkpoint(path, expected=expected)
        assert got_cfg == cfg and type(got_cfg) is type(cfg)
        assert sorted(got) == sorted(params)
        for k, v in params.items():
            assert got[k].dtype == np.float64
            assert got[k].shape == v.shape
            np.testing.assert_array_equal(got[k].view(np.uint64), v.view(np.uint64))  # bit for bit


@pytest.mark.parametrize("cfg", CONFIGS)
def test_metadata_fields(cfg, tmp_path):
    path = tmp_path / "ckpt.safetensors"
    save_checkpoint(str(path), cfg, _random_params(cfg))
    with safe_open(str(path), framework="numpy") as f:
        metadata = f.metadata()
        keys = set(f.keys())
    assert set(metadata) == {"format", "format_version", "module", "config"}
    assert metadata["format"] == "attnspec"
    assert metadata["format_version"] == "1"
    assert metadata["module"] == cfg.module
    assert json.loads(metadata["config"]) == cfg.to_dict()
    assert ref.config_from_dict(json.loads(metadata["config"])) == cfg
    assert keys == set(ref.param_layout(cfg))


def test_float32_params_load_as_float64_unchanged(tmp_path):
    cfg = ECAConfig(16, kernel_size=5)
    params = {"conv.weight": np.array([0.1, -0.2, 0.3, 1e-30, 3e38], dtype=np.float32)}
    save_checkpoint(tmp_path / "c", cfg, params)
    _, got = load_checkpoint(tmp_path / "c")
    assert got["conv.weight"].dtype == np.float64
    np.testing.assert_array_equal(got["conv.weight"], params["conv.weight"].astype(np.float64))


def test_save_refuses_params_that_do_not_match(tmp_path):
    cfg = SEConfig(16, rd_channels=4)
    params = _random_params(cfg)
    del params["fc2.bias"]
    with pytest.raises(ValueError, match=r"missing keys: fc2\.bias"):
        save_checkpoint(tmp_path / "c", cfg, params)
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize(
    ("saved", "expected"),
    [
        pytest.param(CBAMConfig(16), CBAMConfig(16, spatial_pool_order=("mean", "max")), id="cbam-order"),
        pytest.param(CBAMConfig(16), CBAMConfig(24), id="cbam-channels"),
        pytest.param(ECAConfig(16), ECAConfig(16, kernel_size=3), id="eca-explicit-vs-adaptive"),
        pytest.param(SEConfig(16), ECAConfig(16), id="other-module"),
        pytest.param(SEConfig(16, rd_channels=4), SEConfig(16, rd_channels=4, act="silu"), id="se-act"),
    ],
)
def test_expected_config_mismatch(saved, expected, tmp_path):
    path = tmp_path / "c"
    save_checkpoint(path, saved, _random_params(saved))
    match = rf"holds a checkpoint for {saved.__class__.__name__}\(channels={saved.channels}.*, expected {expected.__class__.__name__}\(channels={expected.channels}"
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(path, expected=expected)


# ----------------------------------------------------------------------------- unreadable files


@pytest.fixture
def good_bytes(tmp_path) -> bytes:
    cfg = CBAMConfig(16)
    save_checkpoint(tmp_path / "good", cfg, _random_params(cfg))
    return (tmp_path / "good").read_bytes()


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda good: good[:-7], id="truncated_data"),
        pytest.param(lambda good: good[: len(good) // 2], id="truncated_half"),
        pytest.param(lambda good: good[:20], id="truncated_header"),
        pytest.param(lambda good: good[:5], id="truncated_length"),
        pytest.param(lambda good: np.random.default_rng(0).bytes(300), id="random_bytes"),
        pytest.param(lambda good: b"", id="empty"),
        pytest.param(lambda good: b'{"not": "safetensors"}', id="json"),
        pytest.param(lambda good: good[:8] + b"\x00" * (len(good) - 8), id="zeroed_header"),
    ],
)
def test_unreadable_file(make, good_bytes, tmp_path):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(make(good_bytes))
    with pytest.raises(CheckpointError, match=rf"^{str(path)!r} is not a readable safetensors file: \S"):
        load_checkpoint(path)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.safetensors"
    with pytest.raises(CheckpointError, match=rf"^{str(path)!r} is not a readable safetensors file: .*No such file"):
        load_checkpoint(path)


def test_directory(tmp_path):
    with pytest.raises(CheckpointError, match=r"is not a readable safetensors file"):
        load_checkpoint(tmp_path)


# ----------------------------------------------------------------------------- readable, but not ours


@pytest.mark.parametrize(
    ("metadata", "match"),
    [
        pytest.param(
            None, r"is not an attnspec checkpoint: metadata format=None, expected 'attnspec'", id="no_metadata"
        ),
        pytest.param(
            {"format": "pt"},
            r"is not an attnspec checkpoint: metadata format='pt', expected 'attnspec'",
            id="other_format",
        ),
        pytest.param(
            {"format": "attnspec", "format_version": "2", "module": "eca", "config": ECAConfig(16).to_json()},
            r"has format_version='2'; this attnspec reads '1'",
            id="future_version",
        ),
        pytest.param(
            {"format": "attnspec", "format_version": "1", "module": "eca"},
            r"has an invalid config in its metadata: ",
            id="no_config",
        ),
        pytest.param(
            {"format": "attnspec", "format_version": "1", "module": "eca", "config": "{not json"},
            r"has an invalid config in its metadata: ",
            id="config_not_json",
        ),
        pytest.param(
            {"format": "attnspec", "format_version": "1", "module": "eca", "config": '{"module": "eca"}'},
            r"has an invalid config in its metadata: .*channels",
            id="config_without_channels",
        ),
        pytest.param(
            {
                "format": "attnspec",
                "format_version": "1",
                "module": "eca",
                "config": '{"module": "eca", "channels": 16, "kernel_size": 4}',
            },
            r"has an invalid config in its metadata: `kernel_size` must be an odd int >= 1\. Received: kernel_size=4",
            id="config_invalid_value",
        ),
        pytest.param(
            {
                "format": "attnspec",
                "format_version": "1",
                "module": "eca",
                "config": '{"module": "eca", "channels": 16, "k": 3}',
            },
            r"has an invalid config in its metadata: ECAConfig\.from_dict got unknown keys \['k'\]",
            id="config_unknown_key",
        ),
        pytest.param(
            {"format": "attnspec", "format_version": "1", "module": "se", "config": ECAConfig(16).to_json()},
            r"says module='se' but its config is for 'eca'",
            id="module_disagrees",
        ),
        pytest.param(
            {"format": "attnspec", "format_version": "1", "module": "eca", "config": "[16, 3]"},
            r"has an invalid config in its metadata: ",
            id="config_json_list",
        ),
        pytest.param(
            {"format": "attnspec", "format_version": "1", "module": "eca", "config": "16"},
            r"has an invalid config in its metadata: ",
            id="config_json_number",
        ),
    ],
)
def test_metadata_problems(metadata, match, tmp_path):
    path = tmp_path / "c.safetensors"
    save_file({"conv.weight": np.zeros(3)}, str(path), metadata=metadata)
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(path)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        pytest.param(
            lambda t: t.pop("channel.fc2.bias"),
            r"does not match the expected layout; missing keys: channel\.fc2\.bias\.$",
            id="missing",
        ),
        pytest.param(
            lambda t: t.update({"spatial.bn.num_batches_tracked": np.zeros(())}),
            r"does not match the expected layout; unexpected keys: spatial\.bn\.num_batches_tracked\.$",
            id="extra",
        ),
        pytest.param(
            lambda t: t.update({"spatial.conv.weight": np.zeros((1, 2, 3, 3))}),
            r"mis-shaped keys: spatial\.conv\.weight \(expected shape \(1, 2, 7, 7\), received \(1, 2, 3, 3\)\)\.$",
            id="misshaped",
        ),
        pytest.param(
            lambda t: (
                t.pop("channel.fc1.weight"),
                t.pop("spatial.bn.running_var"),
                t.update(
                    {
                        "zzz": np.zeros(1),
                        "aaa": np.zeros(2),
                        "channel.fc2.weight": np.zeros((1, 16)),
                        "spatial.bn.bias": np.zeros(2),
                    }
                ),
            ),
            r"^checkpoint '.*' does not match the expected layout; "
            r"missing keys: channel\.fc1\.weight, spatial\.bn\.running_var; "
            r"unexpected keys: aaa, zzz; "
            r"mis-shaped keys: channel\.fc2\.weight \(expected shape \(16, 1\), received \(1, 16\)\), "
            r"spatial\.bn\.bias \(expected shape \(1,\), received \(2,\)\)\.$",
            id="all_at_once",
        ),
    ],
)
def test_tensor_problems_are_named_all_at_once(change, match, tmp_path):
    cfg = CBAMConfig(16)
    tensors = _random_params(cfg)
    change(tensors)
    path = tmp_path / "c.safetensors"
    save_file(tensors, str(path), metadata=_metadata(cfg))
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(path, expected=cfg)


def test_checkpoint_error_is_a_value_error():
    assert issubclass(CheckpointError, ValueError)


# ----------------------------------------------------------------------------- issue #14


def _with_config(tmp_path, config_text, name="c"):
    cfg = ECAConfig(16, kernel_size=3)
    path = tmp_path / name
    save_file(
        {"conv.weight": np.zeros(3)},
        str(path),
        metadata={"format": "attnspec", "format_version": "1", "module": "eca", "config": config_text},
    )
    return cfg, str(path)


@pytest.mark.parametrize(
    ("config_text", "match"),
    [
        pytest.param(json.dumps({"module": "eca", "channels": 16, "gamma": 5e-324}), "`gamma`", id="overflow_gamma"),
        pytest.param('{"module": "eca", "channels": 1' + "0" * 400 + "}", "`channels`", id="huge_int"),
        pytest.param('{"module": "eca", "channels": 16, "beta": 1e999}', "`beta` must be finite", id="inf_literal"),
        pytest.param("[" * 100_000 + "]" * 100_000, "nested too deeply", id="recursion"),
        pytest.param('{"module": ["eca"], "channels": 16}', "`module`", id="module_list"),
        pytest.param('{"module": "eca", "channels": "16"}', "`channels` must be an int", id="wrong_type"),
    ],
)
def test_every_config_failure_is_a_checkpoint_error_naming_the_file(tmp_path, config_text, match):
    _, path = _with_config(tmp_path, config_text)
    with pytest.raises(CheckpointError, match=match) as info:
        load_checkpoint(path)
    assert repr(path) in str(info.value)


@pytest.mark.parametrize(("dtype", "what"), [(bool, "bools"), (np.complex64, "complex numbers")])
def test_tensors_that_are_not_real_numbers_are_refused(tmp_path, dtype, what):
    cfg = ECAConfig(16, kernel_size=3)
    path = tmp_path / "c"
    save_file({"conv.weight": np.ones(3, dtype)}, str(path), metadata=_metadata(cfg))
    with pytest.raises(CheckpointError, match=rf"conv\.weight \(an array of {what}"):
        load_checkpoint(path)


def test_save_failures_are_os_errors_naming_the_file(tmp_path):
    cfg = ECAConfig(16, kernel_size=3)
    target = tmp_path / "missing_dir" / "c.safetensors"
    with pytest.raises(OSError, match="Could not write the checkpoint") as info:
        save_checkpoint(target, cfg, {"conv.weight": np.zeros(3)})
    assert repr(str(target)) in str(info.value)
    with pytest.raises(TypeError, match=r"`path` must be a str or os\.PathLike"):
        save_checkpoint(None, cfg, {"conv.weight": np.zeros(3)})


def test_save_refuses_none_values_by_key(tmp_path):
    cfg = ECAConfig(16, kernel_size=3)
    with pytest.raises(TypeError, match=r"conv\.weight \(an array of Python objects"):
        save_checkpoint(tmp_path / "c", cfg, {"conv.weight": np.full(3, None)})
    assert not (tmp_path / "c").exists()
