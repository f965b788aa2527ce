"""References to SPEC.md name sections that exist; the spec's version and its packaged copy agree.

Every "SPEC.md section 4", "SPEC.md sections 2, 5 and 6", "SPEC.md (sections 2-7)",
"SPEC.md 9", "SPEC section 1", "SPEC.md §4" in the code and the README must name a section
``## N. Title`` of the root SPEC.md, and every quoted heading (``SPEC.md, "Hidden width"``) a
heading that exists.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import reference_numpy

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "SPEC.md"
PACKAGES = ("reference_numpy", "torch_impl", "flax_impl", "tf_impl", "conformance", "examples", "benchmarks", "tests")

_NUMBERS = r"\d+(?:\s*(?:,|and|or|to|-|–)\s*\d+)*"  # 4 | 2-5 | 2, 5 and 6 | 3 to 5
_GAP = r"[\s#*]*"  # a reference may wrap onto the next line of a comment or docstring
_NUMBERED = re.compile(
    rf"SPEC(?:\.md)?(?:'s)?{_GAP}[(,]?{_GAP}(?:(?:sections?|§){_GAP}({_NUMBERS})|({_NUMBERS})\b(?!\.\d))", re.IGNORECASE
)
_QUOTED = re.compile(rf"SPEC(?:\.md)?(?:'s)?{_GAP},?{_GAP}\"([A-Za-z0-9][^\"\n]*)\"")  # a heading starts with a word


def spec_sections(text: str) -> dict[int, str]:
    return {int(m[1]): m[2] for m in re.finditer(r"^## (\d+)\. (.+)$", text, re.MULTILINE)}


def spec_headings(text: str) -> list[str]:
    return [m[1] for m in re.finditer(r"^#{2,4} (?:\d+\. )?(.+)$", text, re.MULTILINE)]


def numbers(group: str) -> list[int]:
    """Section numbers as written: "2, 5 and 6" -> [2, 5, 6]; "2-5" and "3 to 5" -> the whole range."""
    out: list[int] = []
    for part in re.split(r"\s*(?:,|and|or)\s*", group):
        ends = [int(v) for v in re.split(r"\s*(?:-|–|to)\s*", part)]
        out += list(range(ends[0], ends[-1] + 1)) if len(ends) == 2 else ends
    return out


def references(text: str) -> Iterator[tuple[int, str, list[int] | str]]:
    """(line, the reference as written, section numbers or a quoted heading)."""
    for pattern in (_NUMBERED, _QUOTED):
        for m in pattern.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            written = " ".join(m[0].split())
            if pattern is _QUOTED:
                yield line, written, m[1]
            else:
                yield line, written, numbers(m[1] or m[2])


def _sources() -> list[Path]:
    files = [p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py")) if p != Path(__file__).resolve()]
    return [*files, ROOT / "README.md"]


def _problems(text: str, sections: dict[int, str], headings: list[str]) -> list[str]:
    out = []
    for line, written, target in references(text):
        if isinstance(target, str):
            if not any(h.lower().startswith(target.lower()) for h in headings):
                out.append(f"{line}: {written!r} names no heading of SPEC.md")
        else:
            missing = [n for n in target if n not in sections]
            if missing:
                out.append(f"{line}: {written!r} names section {missing}, which SPEC.md lacks")
    return out


def test_the_parser_reads_every_style_in_use() -> None:
    sample = """SPEC.md section 4; SPEC.md sections 2, 5 and 6; SPEC.md (sections 2-7); SPEC.md 9.
    SPEC section 1; SPEC.md §3; (SPEC.md
        section 8) SPEC.md, "Hidden width"; SPEC.md sections 3 to 5; SPEC.md version 1.0"""
    got = [t for _, _, t in references(sample)]
    assert sorted(map(str, got)) == sorted(
        map(str, [[4], [2, 5, 6], [2, 3, 4, 5, 6, 7], [9], [1], [3], [8], [3, 4, 5], "Hidden width"])
    )
    sections = {n: "x" for n in range(1, 10)}
    assert _problems('see SPEC.md section 12 and SPEC.md, "Nope"', sections, ["Hidden width"]) == [
        "1: 'SPEC.md section 12' names section [12], which SPEC.md lacks",
        "1: 'SPEC.md, \"Nope\"' names no heading of SPEC.md",
    ]


def test_every_spec_reference_names_an_existing_section() -> None:
    text = SPEC.read_text(encoding="utf-8")
    sections, headings = spec_sections(text), spec_headings(text)
    assert len(sections) >= 9 and sorted(sections) == list(range(1, len(sections) + 1))
    found, problems = 0, []
    for path in _sources():
        source = path.read_text(encoding="utf-8")
        found += sum(1 for _ in references(source))
        problems += [f"{path.relative_to(ROOT)}:{p}" for p in _problems(source, sections, headings)]
    assert found >= 50, f"only {found} references found: the patterns no longer match the styles in use"
    assert not problems, "\n".join(problems)


def test_the_spec_version_is_the_reference_version() -> None:
    m = re.search(r"^Spec version: (\S+)", SPEC.read_text(encoding="utf-8"), re.MULTILINE)
    assert m is not None, "SPEC.md has no 'Spec version: X' line"
    assert m[1] == reference_numpy.SPEC_VERSION


def test_the_packaged_spec_is_the_root_spec() -> None:
    packaged = Path(reference_numpy.__file__).parent / "SPEC.md"
    if not packaged.exists():
        pytest.fail("reference_numpy/SPEC.md (shipped as package data) is missing")
    assert packaged.read_bytes() == SPEC.read_bytes()


def test_the_wheel_ships_the_spec_and_the_license() -> None:
    """SPEC.md travels as package data of reference_numpy (what `python -m conformance spec` prints), LICENSE as license file."""
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "SPEC.md" in project["tool"]["setuptools"]["package-data"]["reference_numpy"]
    assert "LICENSE" in project["project"]["license-files"] and (ROOT / "LICENSE").is_file()


def test_spec_doc_reads_the_sections_this_test_reads() -> None:
    from reference_numpy.spec_doc import spec_sections as shipped_sections

    text = SPEC.read_text(encoding="utf-8")
    shipped = shipped_sections()
    assert {int(n): t for n, t in shipped.items() if "." not in n} == spec_sections(text)
    sub = [n for n in shipped if "." in n]
    assert sub and all(n.split(".")[0] in shipped for n in sub)  # every subsection sits in a section
