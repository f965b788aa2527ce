"""``python -m conformance``: the matrix, its renderings, filtering and exit status.

Runs ``main`` in-process on the numpy adapter (plus deliberately wrong test adapters
registered below), so that the whole file stays fast; the ports themselves are covered by
test_conformance_ports.py. One subprocess test proves the entry point.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import conformance.report
from conformance import ADAPTERS, Outputs, get_adapter, make_case
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
from reference_numpy import ECAConfig
from reference_numpy.spec_doc import spec_sections

ROOT = Path(__file__).resolve().parents[1]
QUIET = ["--no-progress", "--jobs", "0"]  # in this process, so that monkeypatches apply


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


class NoisyAdapter(NumpyAdapter):
    """The reference, starting up the way TensorFlow does: C++ log lines on file descriptor 2, absl warnings."""

    name = "noisy"

    def __init__(self) -> None:
        super().__init__()
        os.write(2, b"I0000 00:00:1796172813.703313 6932 port.cc:153] oneDNN custom operations are on.\n")
        logging.getLogger("absl").warning("noisy absl warning")


class CrashingAdapter(NumpyAdapter):
    """A framework that takes its interpreter down after saying why on stderr."""

    name = "crashing"

    def __init__(self) -> None:
        os.write(2, b"F0000 fatal: out of device memory\n")
        os._exit(1)


@pytest.fixture(autouse=True)
def _restore_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The report asks frameworks for quiet through the environment: undo that after each test."""
    for key in conformance.report.QUIET_ENV:
        monkeypatch.delenv(key, raising=False)


@pytest.fixture
def register(monkeypatch: pytest.MonkeyPatch):
    """Register a test adapter class of this module under its ``name``.

    ``needs`` are the packages it claims to need: with any, the report runs it in a worker process.
    """

    def add(cls: type, needs: tuple[str, ...] = ()) -> str:
        monkeypatch.setitem(ADAPTERS, cls.name, (__name__, cls.__name__, needs))
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
    main_table = lines[3 : lines.index("", 3)]
    rows = {line.split()[0]: line.split()[1:] for line in main_table}
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
    nonfinite = lines[lines.index("", 3) + 2 : lines.index("", lines.index("", 3) + 1)]
    assert nonfinite[0].split() == ["non-finite", "numpy"]
    assert [line.split() for line in nonfinite[1:]] == [
        ["se/official", "18/18"],
        ["se/relu6-hard_sigmoid", "18/18"],
        ["se/hard_swish-nearest8", "18/18"],
        ["eca/paper", "9/9"],
        ["eca/k5-circular-bias", "12/12"],
        ["all", "75/75"],
    ]


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
    assert main(["--frameworks", "numpy", "--modules", "eca", "--format", "json", "--jobs", "0"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["passed"] is True  # stdout is pure JSON although progress was shown
    assert captured.err.startswith("conformance: 34 checks of numpy in this process\n")  # 21 non-finite


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_progress_bar_on_a_terminal() -> None:
    """tqdm draws the bar: count, time left and the full name of the last check, redrawn in place."""
    stream = Terminal()
    m = run_matrix(["numpy"], modules=("eca",), stream=stream)
    text = stream.getvalue()
    assert text.startswith("conformance: 34 checks of numpy in this process\n")  # 21 non-finite
    assert "\r" in text and "34/34" in text and m.checks == 34
    assert re.search(r"\[\d\d:\d\d<\d\d:\d\d", text)  # [elapsed<left]: the ETA

    stream = Terminal()
    bar = _Progress(2, True, stream)
    bar.bar.mininterval = 0  # draw on every step (tqdm redraws at most every 0.1 s)
    bar.step("flax.linen cbam-all-pools-mean-max.c_below_ratio-float32-train-nchw")
    assert stream.getvalue().endswith("flax.linen cbam-all-pools-mean-max.c_below_ratio-float32-train-nchw]")


@pytest.mark.parametrize("tqdm_installed", [True, False], ids=["tqdm", "no-tqdm"])
def test_plain_lines_when_not_a_terminal(
    tqdm_installed: bool, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Elsewhere (a file, a pipe; or a terminal without tqdm): whole lines, full names, one consistent count."""
    monkeypatch.setattr(conformance.report, "PROGRESS_INTERVAL_S", 0.0)  # a line per check
    stream: io.StringIO = io.StringIO()
    if not tqdm_installed:
        monkeypatch.setitem(sys.modules, "tqdm", None)  # makes `from tqdm import tqdm` raise ImportError
        stream = Terminal()
    monkeypatch.setattr(sys, "stderr", stream)
    assert main(["--frameworks", "numpy", "--modules", "eca", "--full", "--jobs", "0"]) == 0
    err, out = stream.getvalue(), capsys.readouterr().out
    assert "\r" not in err and "\r" not in out
    lines = err.splitlines()
    header = out.splitlines()[0]
    total = int(re.search(r": (\d+) checks \((\d+) cases, (\d+) non-finite, (\d+) non-vacuity\)", header)[1])
    # 6 variants, 4 cases and 12 edge cases each, 1 non-vacuity check; (9 + 12) non-finite in 2 layouts
    assert total == 3 * 2 * (4 + 2 * 6) + 1 + 2 * 21
    assert lines[0] == f"conformance: {total} checks of numpy in this process"
    counted = [int(re.match(r"conformance: (\d+)/(\d+) checks", line)[1]) for line in lines[1:]]
    assert counted[:-1] == list(range(1, total + 1)) and counted[-1] == total
    assert all(f"/{total} checks" in line for line in lines[1:])  # the total never changed
    assert "numpy eca-hard_sigmoid-gamma.c_below_ratio-float64-train-nchw" in err  # longer than 40 characters
    assert re.fullmatch(rf"conformance: {total}/{total} checks in \d+ s", lines[-1])


def test_plain_lines_show_the_time_left() -> None:
    ticks = iter(range(0, 1000, 4))  # every reading of the clock: 4 s later
    stream = io.StringIO()
    bar = _Progress(5, True, stream, interval=10.0, title="conformance: 5 checks", clock=lambda: float(next(ticks)))
    for i in range(5):
        bar.step(f"check {i}")
    bar.close()
    assert stream.getvalue().splitlines() == [
        "conformance: 5 checks",
        "conformance: 2/5 checks (40%), 12 s elapsed, about 24 s left: check 1",  # 8 s from the 1st to the 2nd
        "conformance: 5/5 checks (100%), 24 s elapsed: check 4",
        "conformance: 5/5 checks in 28 s",
    ]


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
    assert bar.total == bar.n == 3 * 4 + 21 + 1  # every case (21 non-finite) and the non-vacuity check reported back
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


@pytest.mark.parametrize("option", ["--frameworks", "--framework"])
def test_frameworks_option(option: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(conformance.report, "is_installed", lambda name: name == "numpy")
    code, out = run(capsys, "report", option, "flax,numpy", "--modules", "eca", "--format", "json")
    assert code == 0
    doc = json.loads(out)
    assert list(doc["frameworks"]) == ["flax.linen", "flax.nnx", "numpy"]
    assert doc["tested"] == ["numpy"] and doc["not_installed"] == ["flax.linen", "flax.nnx"]
    assert doc["result"] == "PASS (numpy; not tested: flax — not installed)"


@pytest.mark.parametrize("option", ["--frameworks", "--framework"])
def test_vectors_check_takes_the_same_framework_option(
    option: str, tmp_path, register, capsys: pytest.CaptureFixture[str]
) -> None:
    """``vectors check`` takes --framework or --frameworks, a list, and the flax alias, like the report."""
    from conformance.vectors import export_vectors

    export_vectors(tmp_path, [make_case(ECAConfig(channels=8), name="tiny")])
    name = register(PerturbedAdapter)
    assert main(["vectors", "check", str(tmp_path), option, f"numpy,{name}"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("numpy: 1/1 vector files pass") and lines[1].startswith(f"{name}: 0/1 vector files")
    assert main(["vectors", "check", str(tmp_path), option, f"numpy,{name}", "--format", "json"]) == 1
    docs = json.loads(capsys.readouterr().out)
    assert [(d["framework"], d["passed"]) for d in docs] == [("numpy", True), (name, False)]


def test_vectors_check_flax_alias(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """``--framework flax`` means both Flax APIs; when they are missing, the error says what to install."""
    monkeypatch.setattr(sys.modules["conformance.__main__"], "is_installed", lambda name: name == "numpy")
    assert main(["vectors", "check", "--framework", "flax"]) == 2
    err = capsys.readouterr().err
    assert err == "error: 'flax.linen', 'flax.nnx' are not installed: pip install \"attnspec[flax]\"\n"


def test_verify_takes_frameworks_too(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []
    fake = types.ModuleType("conformance.verify")
    fake.main = lambda argv: seen.append(argv) or 0  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "conformance.verify", fake)
    assert main(["verify", "pkg:Cls", "--frameworks", "torch"]) == 0
    assert main(["verify", "pkg:Cls", "--frameworks=flax"]) == 0
    assert seen == [["pkg:Cls", "--framework", "torch"], ["pkg:Cls", "--framework=flax"]]


# ----------------------------------------------------------------------------- missing frameworks, framework logs

WITHOUT_FRAMEWORKS = """
import sys
sys.modules.update(dict.fromkeys(("torch", "jax", "flax", "keras", "tensorflow")))  # as if none were installed
from conformance.__main__ import main
for argv in (["--modules", "eca"], ["--frameworks", "torch,flax", "--modules", "eca"]):
    code = main(argv)
    print("exit", code, flush=True)
    print("---", file=sys.stderr, flush=True)
"""


def test_missing_frameworks_are_named_in_the_output_and_the_result_line() -> None:
    """A run says what it did not test, and one that tested nothing is never a pass (redirected: no \\r)."""
    proc = subprocess.run(
        [sys.executable, "-c", WITHOUT_FRAMEWORKS], capture_output=True, text=True, timeout=120, check=True, cwd=ROOT
    )
    assert "\r" not in proc.stdout and "\r" not in proc.stderr
    some, none, _ = proc.stdout.split("exit ")
    some_err, none_err, _ = proc.stderr.split("---\n")
    lines = some.splitlines()
    assert lines[2].split() == ["module/variant", "numpy", "torch", "flax.linen", "flax.nnx", "keras"]
    assert lines[-2:] == [
        'not tested: torch, flax.linen, flax.nnx, keras (not installed; pip install "attnspec[torch,flax,tf]" adds them)',
        "result: PASS (numpy; not tested: torch, flax, keras — not installed)",
    ]
    assert (
        some_err.splitlines()[0] == "conformance: 34 checks of numpy in this process; not installed: torch, flax, keras"
    )
    assert none.startswith("0\n")  # the exit status of the first run
    assert none.splitlines()[-1] == "result: NOTHING TESTED (torch, flax — not installed)"
    assert proc.stdout.endswith("exit 1\n")
    assert none_err.splitlines() == [
        "conformance: nothing to check; not installed: torch, flax",
        "conformance: 0/0 checks in 0 s",
    ]
    assert "result: PASS\n" not in proc.stdout


def test_framework_logging_stays_off_the_display(register, capfd: pytest.CaptureFixture[str]) -> None:
    """A worker process sends what the framework writes to stderr (C++ logs, absl) to a log file."""
    name = register(NoisyAdapter, needs=("numpy",))  # needs a package: runs in a worker process
    assert main(["--frameworks", name, "--modules", "eca", "--jobs", "1", "--no-progress"]) == 0
    out, err = capfd.readouterr()
    assert "result: PASS (noisy)" in out
    assert "oneDNN" not in err and "absl" not in err and err == ""
    # the same adapter in this process (--jobs 0): the noise is there, so the check above can fail
    assert main(["--frameworks", name, "--modules", "eca", "--jobs", "0", "--no-progress"]) == 0
    assert "oneDNN custom operations are on" in capfd.readouterr().err


def test_a_crashed_worker_is_a_failure_that_quotes_its_stderr(register, capfd: pytest.CaptureFixture[str]) -> None:
    name = register(CrashingAdapter, needs=("numpy",))
    assert main(["--frameworks", name, "--modules", "eca", "--jobs", "1", "--no-progress"]) == 1
    out, err = capfd.readouterr()
    assert "result: FAIL (crashing)" in out and err == ""
    assert f"{name}: the worker process running {name} failed: " in out
    assert "(last line it wrote to stderr: F0000 fatal: out of device memory)" in out


@pytest.mark.keras
def test_tensorflow_logging_and_carriage_returns_stay_out_of_a_redirected_run(tmp_path) -> None:
    """``python -m conformance > out.txt 2> err.txt`` with Keras: no \\r, and nothing but progress lines on stderr."""
    for package in ADAPTERS["keras"][2]:
        pytest.importorskip(package)
    with open(tmp_path / "out.txt", "w") as out, open(tmp_path / "err.txt", "w") as err:
        code = subprocess.run(
            [sys.executable, "-m", "conformance", "--frameworks", "keras", "--modules", "eca"],
            stdout=out,
            stderr=err,
            cwd=ROOT,
            timeout=300,
            check=False,
        ).returncode
    out_text, err_text = (tmp_path / "out.txt").read_text(), (tmp_path / "err.txt").read_text()
    assert code == 0, out_text + err_text
    assert "\r" not in out_text and "\r" not in err_text
    assert "result: PASS (keras)" in out_text
    assert all(line.startswith("conformance: ") for line in err_text.splitlines()), err_text
    checks = re.search(r": (\d+) checks \(", out_text)[1]
    assert err_text.splitlines()[-1].startswith(f"conformance: {checks}/{checks} checks in ")


# ----------------------------------------------------------------------------- spec


def test_spec_prints_the_shipped_document(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["spec"]) == 0
    assert capsys.readouterr().out == (ROOT / "SPEC.md").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("argv", "heading"),
    [
        (["9"], "## 9. Conformance rules"),
        (["9.5"], "### 9.5 Precision of a third-party target (`conformance.verify`)"),
        (["tolerance"], "### 9.3 Tolerance: an error bound derived from the computation"),
        (["conformance", "rules"], "## 9. Conformance rules"),
        (["CBAM"], '## 4. CBAM (Woo et al., "CBAM: Convolutional Block Attention Module", ECCV 2018)'),
        (["hidden width"], "### Hidden width of an MLP (SE and CBAM's channel gate)"),
    ],
    ids=["number", "subsection", "title-word", "title-words", "title-start-wins", "unnumbered"],
)
def test_spec_prints_one_section(argv: list[str], heading: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["spec", *argv]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == heading
    assert out in (ROOT / "SPEC.md").read_text(encoding="utf-8")
    level = heading.split()[0]
    assert not any(line.startswith(("## ", level + " ")) for line in out.splitlines()[1:])  # ends at the next one


def test_section_9_holds_its_subsections(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["spec", "9"]) == 0
    headings = [line for line in capsys.readouterr().out.splitlines() if line.startswith("#")]
    assert headings[0] == "## 9. Conformance rules" and [h.split()[1] for h in headings[1:]] == [
        "9.1",
        "9.2",
        "9.3",
        "9.4",
        "9.5",
    ]


@pytest.mark.parametrize(
    "section", ["12", "9.9", "nonsense", "pools"], ids=["number", "subsection", "words", "ambiguous"]
)
def test_spec_unknown_section_exits_2_with_the_sections(section: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["spec", section]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert lines[0].startswith("error: `section` must") and f"Received: section={section!r}" in lines[0]
    assert lines[1] == "sections of SPEC.md:" and "  9.5  Precision of a third-party target" in captured.err
    assert len(lines) == 2 + len(spec_sections())


def test_spec_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["spec", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "  1    Tensors" and len(lines) == len(spec_sections())


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
        cwd=ROOT,
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
