"""Golden vectors: export, load, check without the reference, and the set shipped in the package."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open

import conformance.runner
import conformance.vectors
import reference_numpy as ref
from conformance import compare, get_adapter, make_case
from conformance.__main__ import main
from conformance.grid import CHANNELS
from conformance.vectors import (
    FORMAT,
    FORMAT_VERSION,
    NONFINITE_VECTORS,
    SHIPPED,
    VectorError,
    check_vectors,
    default_cases,
    export_vectors,
    load_vector,
    vector_files,
    write_safetensors,
)
from tests.conftest import adapter_or_skip

INPUTS = ("x", "dy", "params.")
"""Tensors drawn from the seeded generator: these must match a fresh export bit for bit."""


def _read(path: Path) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    with safe_open(str(path), framework="numpy") as f:
        return dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}


def _rewrite(path: Path, **changes: np.ndarray) -> None:
    meta, tensors = _read(path)
    write_safetensors(path, {**tensors, **changes}, meta)


@pytest.fixture(scope="module")
def cbam_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("vectors")
    export_vectors(d, default_cases(modules=("cbam",), nonfinite=False))
    return d


def test_file_layout(cbam_dir: Path) -> None:
    names = [p.name for p in vector_files(cbam_dir)]
    assert len(names) == 2 * 2 * 2 and "cbam-timm-float64-train-nhwc.safetensors" in names
    meta, tensors = _read(cbam_dir / "cbam-official-float64-train-nchw.safetensors")
    cfg = ref.CBAMConfig.preset("official", channels=CHANNELS)
    assert meta == {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "spec_version": ref.SPEC_VERSION,
        "module": "cbam",
        "config": cfg.to_json(),
        "case": "official",
        "dtype": "float64",
        "training": "true",
        "data_format": "channels_first",
        "seed": "0",
    }
    layout = ref.param_layout(cfg)
    trainable = [k for k, s in layout.items() if s.trainable]
    state = [k for k, s in layout.items() if not s.trainable]
    expected = ["y", "dx"] + [f"grads.{k}" for k in trainable] + [f"state.{k}" for k in state]
    assert sorted(tensors) == sorted(
        ["x", "dy", *expected, *(f"bounds.{k}" for k in expected), *(f"params.{k}" for k in layout)]
    )
    assert all(t.dtype == (np.float32 if k.startswith("bounds.") else np.float64) for k, t in tensors.items())
    for k in expected:  # the stored bound is the reference's, rounded up
        assert tensors[f"bounds.{k}"].shape == tensors[k].shape and (tensors[f"bounds.{k}"] >= 0).all()
    assert tensors["params.spatial.conv.weight"].shape == (1, 2, 7, 7)


def test_files_are_deterministic_bytes(tmp_path: Path) -> None:
    """Sorted header, sorted tensors: exporting twice gives identical files (safetensors' writer does not)."""
    case = make_case(ref.SEConfig(channels=8, rd_channels=3), seed=1, training=True)
    (a,) = export_vectors(tmp_path / "a", [case])
    (b,) = export_vectors(tmp_path / "b", [case])
    assert a.read_bytes() == b.read_bytes()
    n = struct.unpack("<Q", a.read_bytes()[:8])[0]
    assert n % 8 == 0 and next(iter(json.loads(a.read_bytes()[8 : 8 + n]))) == "__metadata__"


def test_load_vector_round_trip(cbam_dir: Path) -> None:
    case, expected = load_vector(cbam_dir / "cbam-timm-float64-train-nhwc.safetensors")
    fresh = make_case(
        ref.CBAMConfig.preset("timm", channels=CHANNELS), training=True, data_format="channels_last", name="timm"
    )
    assert case.id == fresh.id and case.cfg == fresh.cfg and case.seed == 0
    np.testing.assert_array_equal(case.x, fresh.x)
    np.testing.assert_array_equal(case.dy, fresh.dy)
    assert case.params.keys() == fresh.params.keys()
    for k in fresh.params:
        np.testing.assert_array_equal(case.params[k], fresh.params[k])
    assert sorted(expected.state) == ["spatial.bn.running_mean", "spatial.bn.running_var"]
    assert expected.dx is not None and expected.dx.shape == fresh.x.shape


def test_check_does_not_run_the_reference(cbam_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: object, **kw: object) -> None:
        raise AssertionError("check_vectors ran the reference")

    monkeypatch.setattr(conformance.runner, "reference_outputs", forbidden)
    monkeypatch.setattr(conformance.vectors, "reference_outputs", forbidden)
    reports = check_vectors(cbam_dir, get_adapter("numpy"))
    assert len(reports) == 8 and all(r.passed for r in reports)
    assert all(r.worst == 0 for r in reports)


@pytest.mark.parametrize(
    ("tensor", "name"),
    [
        ("y", "y"),
        ("dx", "dx"),
        ("grads.channel.fc1.weight", "grad[channel.fc1.weight]"),
        ("state.spatial.bn.running_var", "state[spatial.bn.running_var]"),
    ],
)
def test_perturbed_stored_tensor_fails(tensor: str, name: str, tmp_path: Path) -> None:
    """Non-vacuity: a wrong expectation in a file must make the check FAIL, naming the tensor."""
    export_vectors(tmp_path, default_cases(modules=("cbam",), data_formats=("channels_first",))[:4])
    path = tmp_path / "cbam-official-float64-train-nchw.safetensors"
    _, tensors = _read(path)
    _rewrite(path, **{tensor: tensors[tensor] * (1 + 1e-7)})
    reports = {r.case.id: r for r in check_vectors(tmp_path, get_adapter("numpy"))}
    assert not reports["cbam-official-float64-train-nchw"].passed
    assert sum(r.passed for r in reports.values()) == len(reports) - 1
    (failure,) = reports["cbam-official-float64-train-nchw"].failures()
    assert f"{name} (float64, seed 0): MISMATCH" in failure


def test_missing_stored_tensor_is_a_load_error(tmp_path: Path) -> None:
    (path,) = export_vectors(tmp_path, [make_case(ref.ECAConfig(channels=8))])
    meta, tensors = _read(path)
    del tensors["params.conv.weight"]
    write_safetensors(path, tensors, meta)
    with pytest.raises(VectorError, match=r"missing keys: conv\.weight"):
        load_vector(path)


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("format", "attnspec", "not an attnspec vector file"),
        ("format_version", "99", "format_version='99'"),
        ("module", "se", "its config is for 'eca'"),
        ("training", "yes", "training=.yes."),
    ],
)
def test_bad_metadata(key: str, value: str, match: str, tmp_path: Path) -> None:
    (path,) = export_vectors(tmp_path, [make_case(ref.ECAConfig(channels=8))])
    meta, tensors = _read(path)
    write_safetensors(path, tensors, {**meta, key: value})
    with pytest.raises(VectorError, match=match):
        load_vector(path)


def test_not_a_safetensors_file(tmp_path: Path) -> None:
    (tmp_path / "junk.safetensors").write_bytes(b"not a file")
    with pytest.raises(VectorError, match="not a readable safetensors file"):
        check_vectors(tmp_path, get_adapter("numpy"))


def test_shipped_set_is_a_fresh_export(tmp_path: Path) -> None:
    """The vectors in the package are exactly what `vectors export` writes today.

    Same files, same metadata, same tensor names, shapes and dtypes, and the inputs (x, dy,
    params, all from the seeded generator) bit for bit. The reference's outputs must agree to
    float64 tolerance: BLAS and libm may round the last bit differently on another CPU.
    Regenerate with: python -m conformance vectors export conformance/vectors
    """
    fresh = export_vectors(tmp_path, default_cases())
    shipped = vector_files(SHIPPED)
    assert [p.name for p in shipped] == sorted(p.name for p in fresh)
    for path in shipped:
        meta, want = _read(tmp_path / path.name)
        got_meta, got = _read(path)
        assert got_meta == meta, path.name
        assert sorted(got) == sorted(want), path.name
        for k, v in want.items():
            assert got[k].dtype == v.dtype and got[k].shape == v.shape, f"{path.name}: {k}"
            if k.startswith(INPUTS):
                assert np.array_equal(got[k], v, equal_nan=True), f"{path.name}: {k} differs"
            else:
                assert compare(k, got[k], v, "float64").ok, f"{path.name}: {compare(k, got[k], v, 'float64')}"


def test_shipped_set_is_small_and_complete() -> None:
    files = vector_files(SHIPPED)
    assert sum(p.stat().st_size for p in files) < 2 * 1024 * 1024
    cases = [load_vector(p)[0] for p in files]
    assert {(c.cfg.module, c.name) for c in cases} == {
        ("se", "official"),
        ("se", "timm"),
        ("se", "torchvision"),
        ("cbam", "official"),
        ("cbam", "timm"),
        ("eca", "paper"),
        ("eca", "timm"),
        ("eca", "timm_ceca"),
    } | {(vid.split("-")[0], f"{vid.split('-', 1)[1]}.{name}") for vid, name in NONFINITE_VECTORS}
    nonfinite = [c for c in cases if ".nonfinite-" in c.name]
    values = [np.concatenate([c.x.ravel(), c.dy.ravel(), *(w.ravel() for w in c.params.values())]) for c in nonfinite]
    assert len(nonfinite) == 6 and all(not np.isfinite(v).all() for v in values)
    assert {(c.training, c.data_format) for c in cases} == {
        (t, f) for t in (False, True) for f in ("channels_first", "channels_last")
    }


# ----------------------------------------------------------------------------- CLI


def test_cli_export_then_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["vectors", "export", str(tmp_path), "--modules", "eca", "--dtypes", "float64,float32"]) == 0
    assert "wrote 26 vector files" in capsys.readouterr().out  # 24, and eca/paper's non-finite one in 2 dtypes
    assert main(["vectors", "check", str(tmp_path), "--framework", "numpy"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("numpy: 13/13 vector files pass") and "13 skipped" in out  # numpy runs float64 only


def test_cli_check_failure_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (path,) = export_vectors(tmp_path, [make_case(ref.ECAConfig(channels=8), name="tiny")])
    _, tensors = _read(path)
    _rewrite(path, y=tensors["y"] + 1e-3)
    assert main(["vectors", "check", str(tmp_path), "--framework", "numpy", "--format", "json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["passed"] is False and doc["checked"] == 1
    assert doc["failures"][0].startswith("numpy eca-tiny-float64-eval-nchw: y (float64, seed 0): MISMATCH")


def test_cli_check_shipped_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["vectors", "check", "--framework", "numpy"]) == 0
    assert capsys.readouterr().out.startswith("numpy: 38/38 vector files pass")


def test_cli_check_empty_directory_is_a_failure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["vectors", "check", str(tmp_path), "--framework", "numpy"]) == 1
    out = capsys.readouterr().out
    assert "nothing checked: no *.safetensors vector files" in out


def test_cli_check_nothing_supported_is_a_failure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """numpy runs float64 only: a directory of float32 files checks nothing, and that is not a pass."""
    export_vectors(tmp_path, [make_case(ref.ECAConfig(channels=8), dtype="float32")])
    assert main(["vectors", "check", str(tmp_path), "--framework", "numpy"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("numpy: 0/0 vector files pass") and "nothing checked: none of the 1 vector files" in out


def test_cli_check_missing_directory_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["vectors", "check", str(tmp_path / "absent"), "--framework", "numpy"]) == 2
    assert "is not a directory" in capsys.readouterr().err


def _one(tmp_path: Path, **kw: object) -> Path:
    (path,) = export_vectors(tmp_path, [make_case(ref.CBAMConfig(channels=8, rd_channels=2), training=True, **kw)])
    return path


@pytest.mark.parametrize("tensor", ["grads.channel.fc1.weight", "state.spatial.bn.running_var", "dx"])
def test_stripped_file_is_a_failure_naming_what_is_missing(
    tensor: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _one(tmp_path)
    meta, tensors = _read(path)
    del tensors[tensor], tensors[f"bounds.{tensor}"]
    write_safetensors(path, tensors, meta)
    with pytest.raises(VectorError, match=rf"lacks tensors its metadata implies: {tensor}"):
        load_vector(path)
    assert main(["vectors", "check", str(tmp_path), "--framework", "numpy"]) == 1
    out = capsys.readouterr().out
    assert f"{path.name}: " in out and f"lacks tensors its metadata implies: {tensor}" in out


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (
            "missing",
            "tensor 'bounds.grads.spatial.bn.bias' \\(the error bound of 'grads.spatial.bn.bias'\\) is missing",
        ),
        ("negative", "tensor 'bounds.grads.spatial.bn.bias' is negative"),
        ("nan", "tensor 'bounds.grads.spatial.bn.bias' is malformed: it holds NaN"),
        ("shape", "tensor 'bounds.grads.spatial.bn.bias' is malformed: shape \\(2,\\), expected \\(1,\\)"),
        ("orphan", "tensor 'bounds.grads.nothing' bounds no tensor"),
    ],
)
def test_bad_bound_is_refused_naming_file_and_tensor(change: str, match: str, tmp_path: Path) -> None:
    path = _one(tmp_path)
    meta, tensors = _read(path)
    key = "bounds.grads.spatial.bn.bias"
    if change == "missing":
        del tensors[key]
    elif change == "negative":
        tensors[key] = -tensors[key]
    elif change == "nan":
        tensors[key] = np.full_like(tensors[key], np.nan)
    elif change == "shape":
        tensors[key] = np.ones(2, np.float32)
    else:
        tensors["bounds.grads.nothing"] = np.ones(1, np.float32)
    write_safetensors(path, tensors, meta)
    with pytest.raises(VectorError, match=match) as info:
        load_vector(path)
    assert str(path) in str(info.value)


def test_version_1_files_still_load_and_check(tmp_path: Path) -> None:
    """A version-1 file (no bounds) is checked with the relative rule, and still catches a wrong value."""
    path = _one(tmp_path)
    meta, tensors = _read(path)
    v1 = {k: v for k, v in tensors.items() if not k.startswith("bounds.")}
    write_safetensors(path, v1, {**meta, "format_version": "1"})
    _, expected = load_vector(path)
    assert expected.bound is None and expected.dx is not None
    (report,) = check_vectors(tmp_path, get_adapter("numpy"))
    assert report.passed and all(c.rule == "relative" for c in report.comparisons)
    write_safetensors(path, {**v1, "y": v1["y"] * (1 + 1e-6)}, {**meta, "format_version": "1"})
    (report,) = check_vectors(tmp_path, get_adapter("numpy"))
    assert not report.passed


def test_version_2_files_use_the_stored_bound(tmp_path: Path) -> None:
    path = _one(tmp_path)
    (report,) = check_vectors(tmp_path, get_adapter("numpy"))
    assert report.passed and all(c.rule == "derived" for c in report.comparisons)
    meta, tensors = _read(path)  # a zero bound demands bit-exact agreement; a 1-ulp change then fails
    write_safetensors(path, {**tensors, "bounds.y": np.zeros_like(tensors["bounds.y"])}, meta)
    _rewrite(path, y=np.nextafter(tensors["y"], np.inf))
    (report,) = check_vectors(tmp_path, get_adapter("numpy"))
    assert [c.name for c in report.comparisons if not c.ok] == ["y"]


def test_config_overflow_is_a_per_file_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _one(tmp_path)
    meta, tensors = _read(path)
    cfg = json.loads(meta["config"])
    cfg["channels"] = 10**400
    write_safetensors(path, tensors, {**meta, "config": json.dumps(cfg)})
    with pytest.raises(VectorError, match="not a valid attnspec vector file") as info:
        load_vector(path)
    assert str(path) in str(info.value)
    assert main(["vectors", "check", str(tmp_path), "--framework", "numpy"]) == 1
    assert path.name in capsys.readouterr().out


def test_cli_export_onto_a_file_or_negative_seed_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    assert main(["vectors", "export", str(target), "--modules", "eca"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "existing file" in err
    assert main(["vectors", "export", str(tmp_path / "d"), "--seed", "-1"]) == 2
    err = capsys.readouterr().err  # argparse's usage line, then the error
    assert "error: argument --seed: a seed must be in [0, 2**32), got -1" in err and "Traceback" not in err


@pytest.mark.torch
def test_torch_against_shipped_vectors() -> None:
    adapter = adapter_or_skip("torch")
    reports = check_vectors(SHIPPED, adapter)
    assert len(reports) == len(vector_files(SHIPPED))
    failures = [line for r in reports for line in r.failures()]
    assert not failures, "\n".join(failures)
