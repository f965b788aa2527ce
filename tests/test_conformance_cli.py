"""``python -m conformance``: the matrix, its renderings, filtering and exit status.

Runs ``main`` in-process on the numpy adapter (plus deliberately wrong test adapters
registered below), so that the whole file stays fast; the ports themselves are covered by
test_conformance_ports.py. One subprocess test proves the entry point.
"""

from __future__ import annotations

import json
import subprocess
import sys
import types
from typing import Any

import numpy as np
import pytest

import conformance.report
from conformance import ADAPTERS, Outputs, get_adapter
from conformance.__main__ import main
from conformance.adapters.numpy_ref import NumpyAdapter
from conformance.report import (
    MAX_FAILURE_LINES,
    _chosen,
    _groups,
    _Progress,
    _run_framework,
    _run_parallel,
    render_json,
    render_markdown,
    render_text,
    run_matrix,
)

QUIET = ["--no-progress", "--jobs", "1"]  # in-process: the test adapters below exist only in this process


class PerturbedAdapter(NumpyAdapter):
    """The reference with every returned tensor off by 1e-6 relative: far outside the float64 tolerance."""

    name = "perturbed"

    def evaluate(self, module: Any, x: np.ndarray, dy: np.ndarray | None, **kw: Any) -> Outputs:
        out = super().evaluate(module, x, dy, **kw)
        bump = 1 + 1e-6
        return Outputs(
            out.y * bump,
            None if out.dx is None else out.dx * bump,
            {k: v * bump for k, v in out.grads.items()},
            {k: v * bump for k, v in out.state.items()},
        )


class RaisingAdapter(NumpyAdapter):
    """An implementation that raises on every call."""

    name = "raising"

    def evaluate(self, module: Any, x: np.ndarray, dy: np.ndarray | None, **kw: Any) -> Outputs:
        raise RuntimeError("kernel exploded")


class BrokenAdapter(NumpyAdapter):
    """A framework whose import or setup fails: the adapter cannot even be constructed."""

    name = "broken"

    def __init__(self) -> None:
        raise RuntimeError("framework broken")


@pytest.fixture
def register(monkeypatch: pytest.MonkeyPatch):
    """Register a test adapter class of this module under its ``name``."""

    def add(cls: type) -> str:
        monkeypatch.setitem(ADAPTERS, cls.name, (__name__, cls.__name__, ()))
        return cls.name

    return add


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main([*argv, *QUIET])
    return code, capsys.readouterr().out


# ----------------------------------------------------------------------------- renderings


def test_text_matrix(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "--frameworks", "numpy", "--modules", "se,eca")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("attnspec conformance, spec ")
    assert lines[2].split() == ["module/variant", "numpy"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[3:] if line and not line.startswith(("cell", "result"))}
    assert list(rows) == [
        "se/official",
        "se/timm",
        "se/torchvision",
        "eca/paper",
        "eca/timm",
        "eca/timm_ceca",
        "non-vacuity",
        "smallest-caught",
    ]
    assert all(v == ["pass", "0"] for k, v in rows.items() if k not in ("non-vacuity", "smallest-caught"))
    assert rows["non-vacuity"] == ["ok"]
    assert rows["smallest-caught"][0] == "f64" and float(rows["smallest-caught"][1]) <= 1e-7
    assert "result: PASS" in out and "cbam" not in out


def test_markdown_matrix(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "--frameworks", "numpy", "--modules", "cbam", "--format", "markdown")
    assert code == 0
    tables = [line for line in out.splitlines() if line.startswith("|")]
    assert tables[0] == "| module/variant | numpy |"
    assert "| cbam/official | pass 0 |" in tables
    assert "| non-vacuity | ok |" in tables
    assert "| cbam/timm | f64 0 |" in tables  # the per-dtype detail table


def test_json_matrix(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "--frameworks", "numpy", "--modules", "eca", "--format", "json", "--seed", "7")
    assert code == 0
    doc = json.loads(out)
    assert doc["passed"] is True and doc["seed"] == 7 and doc["full"] is False
    assert [(r["module"], r["variant"]) for r in doc["rows"]] == [
        ("eca", "paper"),
        ("eca", "timm"),
        ("eca", "timm_ceca"),
    ]
    cell = doc["rows"][0]["cells"]["numpy"]
    assert cell == {"status": "pass", "worst": 0.0, "per_dtype": {"float64": 0.0}, "cases": 4, "failed": 0}
    assert doc["frameworks"]["numpy"]["status"] == "pass"
    assert doc["frameworks"]["numpy"]["non_vacuity"] == {"eca": "ok"}
    assert doc["frameworks"]["numpy"]["smallest_caught"]["eca"]["float64"] <= 1e-7
    assert doc["cases"] == 12 and doc["failures"] == []


def test_full_adds_knobs_and_edge_cases(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "--frameworks", "numpy", "--modules", "eca", "--full", "--format", "json")
    doc = json.loads(out)
    assert code == 0 and doc["full"] is True
    variants = [r["variant"] for r in doc["rows"]]
    assert variants[:3] == ["paper", "timm", "timm_ceca"] and "k5-circular-bias" in variants
    # 4 default cases + edge cases (n1, hw1, large, small, c1, c_below_ratio) in both modes
    assert doc["rows"][0]["cells"]["numpy"]["cases"] == 4 + 2 * 6


def test_progress_goes_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--frameworks", "numpy", "--modules", "eca", "--format", "json", "--jobs", "1"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["passed"] is True  # stdout is pure JSON although a bar was drawn
    assert captured.err


def test_progress_without_tqdm(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "tqdm", None)  # makes `from tqdm import tqdm` raise ImportError
    assert main(["--frameworks", "numpy", "--modules", "eca", "--jobs", "1"]) == 0
    err = capsys.readouterr().err
    assert "[13/13]" in err  # 12 cases + 1 non-vacuity check


def test_renderers_agree() -> None:
    m = run_matrix(["numpy"], modules=("se",), progress=False)
    assert m.passed and m.cases == 12
    assert "se/torchvision" in render_text(m) and "se/torchvision" in render_markdown(m)
    assert json.loads(render_json(m))["rows"][2]["variant"] == "torchvision"


def test_worker_groups_keep_a_framework_family_together() -> None:
    everything = list(ADAPTERS)
    assert _groups(everything, 1) == [everything]
    assert _groups(everything, 2) == [["flax.linen", "flax.nnx"], ["numpy", "torch", "keras"]]
    assert _groups(["flax.nnx", "flax.linen"], 2) == [["flax.nnx", "flax.linen"]]
    assert _groups([], 2) == []


def test_worker_process_matches_in_process_run() -> None:
    """The ``jobs > 1`` path: a spawned worker runs the framework and streams its progress back."""
    chosen = _chosen(("eca",), False)
    bar = _Progress(0, enabled=False)
    (worker,) = _run_parallel([["numpy"]], ("eca",), 3, False, bar, lambda name, n: bar.grow(n)).values()
    here = _run_framework("numpy", chosen, 3, False, get_adapter, lambda n: None, lambda what: None)
    assert bar.total == bar.n == 3 * 4 + 1  # every case and the non-vacuity check reported back
    assert (worker.status, worker.cells, worker.non_vacuity) == (here.status, here.cells, here.non_vacuity)
    assert worker.status == "pass" and [c.cases for c in worker.cells] == [4, 4, 4]


# ----------------------------------------------------------------------------- failures


def test_failing_implementation_exits_1(capsys: pytest.CaptureFixture[str], register) -> None:
    name = register(PerturbedAdapter)
    code, out = run(capsys, "--frameworks", f"numpy,{name}", "--modules", "se")
    assert code == 1
    header = next(line for line in out.splitlines() if line.startswith("module/variant"))
    assert header.split() == ["module/variant", "numpy", "perturbed"]
    row = next(line for line in out.splitlines() if line.startswith("se/official"))
    assert row.split()[:3] == ["se/official", "pass", "0"] and row.split()[3] == "FAIL"
    assert float(row.split()[4]) > 1
    assert "result: FAIL" in out
    assert "perturbed se-official-float64-eval-nchw: y (float64, seed 0): MISMATCH, worst at index" in out


def test_failure_messages_are_capped(capsys: pytest.CaptureFixture[str], register) -> None:
    name = register(PerturbedAdapter)
    code, out = run(capsys, "--frameworks", name, "--modules", "se,cbam")
    assert code == 1
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.endswith("failure(s):"))
    total = int(lines[start].split()[0])
    assert total > MAX_FAILURE_LINES
    assert len(lines[start + 1 :]) == MAX_FAILURE_LINES + 1
    assert lines[-1] == f"... and {total - MAX_FAILURE_LINES} more"


def test_failures_in_json(capsys: pytest.CaptureFixture[str], register) -> None:
    name = register(RaisingAdapter)
    code, out = run(capsys, "--frameworks", name, "--modules", "eca", "--format", "json")
    doc = json.loads(out)  # strict JSON: no Infinity
    assert code == 1 and doc["passed"] is False
    cell = doc["rows"][0]["cells"][name]
    assert cell["status"] == "fail" and cell["worst"] is None and cell["failed"] == cell["cases"] == 4
    assert "raising eca-paper-float64-eval-nchw: raised RuntimeError: kernel exploded" in doc["failures"]
    assert doc["frameworks"][name]["non_vacuity"]["eca"] == "raised RuntimeError: kernel exploded"


def test_broken_adapter_is_a_failure_not_a_crash(capsys: pytest.CaptureFixture[str], register) -> None:
    name = register(BrokenAdapter)
    code, out = run(capsys, "--frameworks", f"numpy,{name}", "--modules", "eca")
    assert code == 1
    row = next(line for line in out.splitlines() if line.startswith("eca/paper"))
    assert row.split() == ["eca/paper", "pass", "0", "error"]
    assert "broken: the adapter could not be built: RuntimeError: framework broken" in out


def test_non_vacuity_failure(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(conformance.report, "check_non_vacuity", lambda adapter, case: ["perturbed fc1.weight"])
    code, out = run(capsys, "--frameworks", "numpy", "--modules", "se")
    assert code == 1
    assert next(line for line in out.splitlines() if line.startswith("non-vacuity")).split() == ["non-vacuity", "FAIL"]
    assert "numpy non-vacuity se-official: not caught: perturbed fc1.weight" in out


def test_not_installed_is_shown_and_never_imported(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    built = []
    real = conformance.report.get_adapter
    monkeypatch.setattr(conformance.report, "is_installed", lambda name: name == "numpy")
    monkeypatch.setattr(conformance.report, "get_adapter", lambda name: built.append(name) or real(name))
    code, out = run(capsys, "--modules", "eca")  # every framework by default
    assert code == 0 and built == ["numpy"]
    lines = out.splitlines()
    assert lines[2].split() == ["module/variant", "numpy", "torch", "flax.linen", "flax.nnx", "keras"]
    row = next(line for line in lines if line.startswith("eca/timm "))
    assert row.split("  ")[0] == "eca/timm" and row.count("not installed") == 4
    nv = next(line for line in lines if line.startswith("non-vacuity"))
    assert nv.split()[1] == "ok" and nv.count("not installed") == 4


# ----------------------------------------------------------------------------- arguments


def test_frameworks_option(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(conformance.report, "is_installed", lambda name: name == "numpy")
    code, out = run(capsys, "report", "--frameworks", "flax,numpy", "--modules", "eca", "--format", "json")
    assert code == 0
    assert list(json.loads(out)["frameworks"]) == ["flax.linen", "flax.nnx", "numpy"]


@pytest.mark.parametrize(
    "argv",
    [["--frameworks", "jax"], ["--modules", "bam"], ["--format", "html"], ["vectors"], ["vectors", "check"]],
    ids=["framework", "module", "format", "vectors-action", "check-framework"],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2  # main returns the exit code; only `python -m conformance` exits
    assert "error" in capsys.readouterr().err


def test_verify_is_dispatched(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []
    fake = types.ModuleType("conformance.verify")
    fake.main = lambda argv: seen.append(argv) or 3  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "conformance.verify", fake)
    assert main(["verify", "--framework", "torch", "--full"]) == 3
    assert seen == [["--framework", "torch", "--full"]]


def test_verify_missing(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "conformance.verify", None)  # imports then fail as if the file did not exist
    assert main(["verify", "anything"]) == 2
    assert "`verify` is not available" in capsys.readouterr().err


def test_entry_point_subprocess() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "conformance", "--frameworks", "numpy", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["passed"] is True and len(doc["rows"]) == 8
    assert {c for r in doc["rows"] for c in r["cells"]} == {"numpy"}


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["vectors", "export", "FILE"], id="export-onto-a-file"),
        pytest.param(["vectors", "export", "DIR", "--seed", "-1"], id="negative-seed"),
        pytest.param(["report", "--seed", "x"], id="seed-not-a-number"),
    ],
)
def test_usage_mistakes_are_one_line_and_exit_2(argv: list[str], tmp_path, capsys) -> None:
    target = tmp_path / "file.txt"
    target.write_text("")
    argv = [str(target) if a == "FILE" else str(tmp_path / "out") if a == "DIR" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "error" in err


def test_an_unexpected_error_is_one_line_exit_1_and_a_traceback_only_with_debug(monkeypatch, capsys) -> None:
    def boom(args: Any) -> int:
        raise RuntimeError("something nobody expected\nsecond line")

    monkeypatch.setattr(sys.modules["conformance.__main__"], "_report", boom)
    assert main(["report", "--frameworks", "numpy"]) == 1
    err = capsys.readouterr().err
    assert err == "error: RuntimeError: something nobody expected\n"
    assert main(["report", "--frameworks", "numpy", "--debug"]) == 1
    assert "Traceback" in capsys.readouterr().err
