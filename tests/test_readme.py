"""Every Python block of README.md runs on its own, as a newcomer would paste it.

Each block runs in a fresh interpreter in an empty temporary directory, so a block that
needs a file (a checkpoint, a state dict) has to make it first.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_FENCE = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)

# What a block imports -> (pytest marker, module that must be installed)
_NEEDS = {
    "torch": ("torch", "torch"),
    "flax": ("flax", "flax"),
    "jax": ("flax", "jax"),
    "keras": ("keras", "keras"),
    "tensorflow": ("keras", "tensorflow"),
    "tf_impl": ("keras", "keras"),
    "flax_impl": ("flax", "flax"),
    "torch_impl": ("torch", "torch"),
}
_IMPORT = re.compile(r"^\s*(?:from|import)\s+([A-Za-z_][\w]*)", re.MULTILINE)


def readme_blocks(text: str) -> list[tuple[int, str]]:
    """(line number, source) of every ```python block."""
    return [(text.count("\n", 0, m.start()) + 1, m.group(1)) for m in _FENCE.finditer(text)]


def _params() -> list:
    out = []
    for line, src in readme_blocks((ROOT / "README.md").read_text(encoding="utf-8")):
        needs = sorted({_NEEDS[m] for m in _IMPORT.findall(src) if m in _NEEDS})
        marks = [getattr(pytest.mark, marker) for marker, _ in needs]
        out.append(pytest.param(src, [mod for _, mod in needs], id=f"README.md:{line}", marks=marks))
    return out


def _readme() -> str:
    return (ROOT / "README.md").read_text(encoding="utf-8")


def test_readme_has_blocks() -> None:
    assert len(readme_blocks(_readme())) >= 5


def test_ci_reads_the_test_command() -> None:
    """``.ci/run`` runs the line after ``# the tests:``; it must stay this exact command."""
    lines = _readme().splitlines()
    i = lines.index("# the tests: install everything, then run the suite")
    assert lines[i + 1] == 'pip install torch==2.13.0 && pip install -e ".[all,test]" && python -m pytest -n 2'


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation but '-' and '_' dropped, spaces to '-'."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_links_and_pictures_exist() -> None:
    """Every relative link or picture names a file of the repository, every #anchor a heading."""
    text = _FENCE.sub("", re.sub(r"^```.*?^```", "", _readme(), flags=re.MULTILINE | re.DOTALL))
    seen: dict[str, int] = {}
    anchors = set()
    for heading in re.findall(r"^#{1,6} (.+)$", text, flags=re.MULTILINE):
        slug = _slug(heading)
        anchors.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
        seen[slug] = seen.get(slug, 0) + 1
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    assert any(t.endswith(".png") for t in targets)
    for target in targets:
        if target.startswith(("http://", "https://")):
            continue
        if target.startswith("#"):
            assert target[1:] in anchors, f"no heading for {target}"
        else:
            assert (ROOT / target).is_file(), f"{target} does not exist"


@pytest.mark.parametrize(("source", "modules"), _params())
def test_readme_block_runs(source: str, modules: list[str], tmp_path: Path) -> None:
    for mod in modules:
        if importlib.util.find_spec(mod) is None:
            pytest.skip(f"{mod} is not installed")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    proc = subprocess.run(
        [sys.executable, "-c", source], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, f"block failed with exit {proc.returncode}:\n{proc.stderr[-4000:]}"
    printed, expected = proc.stdout.splitlines(), expected_output(source)
    assert len(printed) == len(expected), f"{len(expected)} print calls, output:\n{proc.stdout}"
    for got, want in zip(printed, expected, strict=True):
        same = got == want or (want is not None and want.endswith("...") and got.startswith(want[:-3]))
        assert want is None or same, f"printed {got!r}, the README says {want!r}"


_PRINT = re.compile(r"^print\(.*?\)(?:\s+#\s(?P<inline>.+))?$")


def expected_output(source: str) -> list[str | None]:
    """One entry per top-level ``print(...)`` line: the output the README shows for it, if any.

    The README shows it as a comment at the end of the line (``print(y.shape)  # (8, 32)``) or
    as a comment line right below (``# torch.Size([8, 64])``); one ending in ``...`` shows how the
    output starts.
    """
    lines = source.splitlines()
    out: list[str | None] = []
    for i, line in enumerate(lines):
        m = _PRINT.match(line)
        if m is None:
            continue
        below = lines[i + 1] if i + 1 < len(lines) else ""
        out.append(m["inline"] or (below[2:] if below.startswith("# ") else None))
    return out


def test_expected_output_reads_both_forms() -> None:
    src = "x = 1\nprint(x)  # 1\nprint(x)\n# 1\nprint(x)\nprint(x)  # noqa-like text is compared too\n"
    assert expected_output(src) == ["1", "1", None, "noqa-like text is compared too"]
    assert expected_output("print(f(x), y.shape)  # (1, (2, 3)) (4,)\nprint(f(x))\n") == ["(1, (2, 3)) (4,)", None]


def test_license_is_in_the_repository_and_the_wheel_metadata() -> None:
    """README's last section: Apache-2.0, the LICENSE file, shipped through pyproject's license-files."""
    lines = (ROOT / "pyproject.toml").read_text(encoding="utf-8").splitlines()  # no tomllib on Python 3.10
    assert 'license = "Apache-2.0"' in lines and 'license-files = ["LICENSE"]' in lines
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text


def test_benchmark_results_round_trip_and_draw(tmp_path: Path) -> None:
    """README's Benchmarks section: ``--save`` writes what ``python -m benchmarks.plot`` draws.

    The committed results under docs/benchmarks/ load and draw; a file written by
    ``harness.save_rows`` loads back to the same rows; a file of another kind is refused.
    """
    pytest.importorskip("matplotlib")
    from benchmarks import harness, plot

    committed = sorted((ROOT / "docs" / "benchmarks").glob("*.json"))
    assert {p.stem for p in committed} == {"torch", "flax", "keras"}
    rows = [harness.Row("torch", "SE", (2, 8, 4, 4), 1.25, 3.5, 2.0, 1.5, 5.0)]
    harness.save_rows(tmp_path / "r.json", rows, layout="NCHW", threads=2)
    meta, back = harness.load_rows(tmp_path / "r.json")
    assert back == rows and meta["layout"] == "NCHW" and meta["threads"] == 2
    out = plot.draw([*committed, tmp_path / "r.json"], tmp_path / "chart.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "other.json").write_text('{"rows": []}', encoding="utf-8")
    with pytest.raises(ValueError, match="not a benchmark result"):
        harness.load_rows(tmp_path / "other.json")
    assert harness.shapes(4) == [(4, *s[1:]) for s in harness.SHAPES]
    with pytest.raises(ValueError, match="batch"):
        harness.shapes(0)
