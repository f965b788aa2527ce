"""The spec document (SPEC.md) that ships inside the package, and its sections.

Sections are the numbered headings (``## 9. Conformance rules``, ``### 9.5 Precision ...``);
the unnumbered ``###`` headings inside them can be looked up by their title words.

>>> from reference_numpy.spec_doc import spec_sections, spec_text
>>> sections = spec_sections()
>>> sections["3"]
'SE (Hu et al., "Squeeze-and-Excitation Networks", CVPR 2018)'
>>> spec_text("3").splitlines()[0]
'## 3. SE (Hu et al., "Squeeze-and-Excitation Networks", CVPR 2018)'
>>> spec_text("9.5").splitlines()[0]
'### 9.5 Precision of a third-party target (`conformance.verify`)'
>>> spec_text("case generator").splitlines()[0]
'### 9.2 Case generator (`conformance.make_case`, `edge_cases`)'
"""

from __future__ import annotations

import re
from importlib import resources
from typing import NamedTuple

__all__ = ["Heading", "spec_headings", "spec_sections", "spec_text"]

_HEADING = re.compile(r"^(#{2,3}) (?:(\d+(?:\.\d+)*)\.? )?(.+?)\s*$", re.MULTILINE)
_NUMBER = re.compile(r"^\d+(?:\.\d+)*\.?$")


class Heading(NamedTuple):
    """A ``##`` or ``###`` heading of SPEC.md: ``number`` is ``"9.5"`` (``None`` when unnumbered)."""

    level: int
    number: str | None
    title: str
    start: int
    end: int
    """Offsets of the section in the document: its heading down to the next heading of the same or a higher level."""


def _document() -> str:
    return resources.files("reference_numpy").joinpath("SPEC.md").read_text(encoding="utf-8")


def spec_headings(doc: str | None = None) -> list[Heading]:
    """Every ``##`` and ``###`` heading of ``doc`` (default: the shipped SPEC.md), in document order."""
    doc = _document() if doc is None else doc
    found = list(_HEADING.finditer(doc))
    out = []
    for i, m in enumerate(found):
        level = len(m.group(1))
        end = next((n.start() for n in found[i + 1 :] if len(n.group(1)) <= level), len(doc))
        out.append(Heading(level, m.group(2), m.group(3), m.start(), end))
    return out


def spec_sections(doc: str | None = None) -> dict[str, str]:
    """Section number (``"1"``, ``"9.5"``) -> title, for the numbered headings, in document order."""
    return {h.number: h.title for h in spec_headings(doc) if h.number is not None}


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def _find(headings: list[Heading], section: str) -> Heading:
    key = section.strip()
    if _NUMBER.match(key):
        chosen = [h for h in headings if h.number == key.rstrip(".")]
    else:
        wanted = _words(key)
        chosen = [h for h in headings if wanted and all(w in _words(h.title) for w in wanted)]
        if len(chosen) > 1:  # "cbam" is section 4, not every heading that mentions CBAM
            starts = [h for h in chosen if _words(h.title)[: len(wanted)] == wanted]
            chosen = starts or chosen
    if len(chosen) == 1:
        return chosen[0]
    if chosen:
        names = "; ".join(f"{h.number or h.level * '#'} {h.title}" for h in chosen)
        raise ValueError(
            f"`section` must name one section of SPEC.md; {section!r} matches several: {names}. "
            f"Received: section={section!r}"
        )
    raise ValueError(
        "`section` must be a section number of SPEC.md (such as 9 or 9.5) or words of one of its headings. "
        f"Received: section={section!r}"
    )


def spec_text(section: int | str | None = None, doc: str | None = None) -> str:
    """The whole document, or one section: its heading down to the next heading of the same or a higher level.

    ``section`` is a number (``9``, ``"9.5"``) or words of a heading (``"tolerance"``,
    ``"hidden width"``; case-insensitive, whole words, in any order) that pick out one heading;
    a heading that starts with the words wins over headings that merely mention them. Raises
    ``ValueError`` when no heading, or more than one, matches.
    """
    doc = _document() if doc is None else doc
    if section is None:
        return doc
    h = _find(spec_headings(doc), str(section))
    return doc[h.start : h.end].rstrip() + "\n"
