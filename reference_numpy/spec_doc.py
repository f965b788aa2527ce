"""The spec document (SPEC.md) that ships inside the package, and its numbered sections.

>>> from reference_numpy.spec_doc import spec_sections, spec_text
>>> sections = spec_sections()
>>> sections[3]
'SE (Hu et al., "Squeeze-and-Excitation Networks", CVPR 2018)'
>>> spec_text(3).splitlines()[0]
'## 3. SE (Hu et al., "Squeeze-and-Excitation Networks", CVPR 2018)'
"""

from __future__ import annotations

import re
from importlib import resources

__all__ = ["spec_sections", "spec_text"]

_HEADING = re.compile(r"^## (\d+)\. (.+)$", re.MULTILINE)


def _document() -> str:
    return resources.files("reference_numpy").joinpath("SPEC.md").read_text(encoding="utf-8")


def spec_sections() -> dict[int, str]:
    """Section number -> title, in document order."""
    return {int(m.group(1)): m.group(2).strip() for m in _HEADING.finditer(_document())}


def spec_text(section: int | str | None = None) -> str:
    """The whole document, or one numbered section (its heading down to the next ``## `` heading).

    ``section`` may be a number (``4``, ``"4"``) or a word of a section title (``"cbam"``,
    case-insensitive) that matches exactly one section.
    """
    doc = _document()
    if section is None:
        return doc
    matches = list(_HEADING.finditer(doc))
    titles = {int(m.group(1)): m for m in matches}
    key = str(section).strip()
    if key.isdigit():
        chosen = titles.get(int(key))
    else:
        found = [m for m in matches if key.lower() in m.group(2).lower()]
        chosen = found[0] if len(found) == 1 else None
        if len(found) > 1:
            names = ", ".join(f"{m.group(1)} ({m.group(2)})" for m in found)
            raise ValueError(f"`section` {section!r} matches several sections of SPEC.md: {names}")
    if chosen is None:
        listing = ", ".join(f"{n} ({t.group(2)})" for n, t in titles.items())
        raise ValueError(f"`section` must name a section of SPEC.md: one of {listing}. Received: section={section!r}")
    end = next((m.start() for m in matches if m.start() > chosen.start()), len(doc))
    return doc[chosen.start() : end].rstrip() + "\n"
