"""The audit report: one row per block found in the network, and the verdict on the whole."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from reference_numpy import Config

from ..verify.binding import _NAMES
from ..verify.report import VerifyReport


@dataclasses.dataclass
class BlockReport:
    """The verdict on one block of the network.

    ``path``: where it is (``layer3.2.se``; the empty string for the network itself). ``module``:
    the module kind it was checked as (``se``, ``cbam``, ``eca``; None when none fits).
    ``class_name``: its class. ``found_by``: ``class``, ``shape`` or ``class and shape``.
    ``passed``, ``identified``, ``config`` (the :mod:`reference_numpy` configuration it conforms
    to, or None), ``precision`` and ``diagnosis`` as in :class:`conformance.verify.VerifyReport`.
    ``input_shape``: the shape of the input it receives in the network (None when the network did
    not call it). ``shared_with``: the path of the block of the same class and configuration whose
    identification it reuses (None when it was identified itself). ``verify``: the full report of
    verify, when verify ran on it.
    """

    path: str
    module: str | None
    class_name: str
    found_by: str
    passed: bool
    identified: str | None
    config: Config | None
    precision: str | None
    diagnosis: list[str]
    input_shape: tuple[int, ...] | None = None
    shared_with: str | None = None
    verify: VerifyReport | None = dataclasses.field(default=None, repr=False)

    @property
    def verdict(self) -> str:
        return "PASS" if self.passed else "FAIL"

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "module": self.module,
            "class": self.class_name,
            "found_by": self.found_by,
            "passed": self.passed,
            "precision": self.precision,
            "identified": self.identified,
            "config": None if self.config is None else self.config.to_dict(),
            "input_shape": None if self.input_shape is None else list(self.input_shape),
            "shared_with": self.shared_with,
            "diagnosis": list(self.diagnosis),
        }


@dataclasses.dataclass
class AuditReport:
    """The verdict on a network: ``passed`` when at least one block was found, every found block
    conforms and the audit was complete. ``blocks`` in the order the network calls them; ``skipped``:
    (path, reason) for submodules that look like a block but are not one; ``notes``: what the audit did
    that a reader should know (the sample input, the network's own errors, time limits); ``incomplete``:
    why the audit could not check the whole network (the network's forward raised on the sample, the
    network could not be built, the audit stopped), empty when it could."""

    target: str
    framework: str
    input_shape: tuple[int, ...] | None
    blocks: list[BlockReport]
    notes: list[str] = dataclasses.field(default_factory=list)
    skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    seconds: float = 0.0
    incomplete: list[str] = dataclasses.field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.blocks) and all(b.passed for b in self.blocks) and not self.incomplete

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "framework": self.framework,
            "input_shape": None if self.input_shape is None else list(self.input_shape),
            "passed": self.passed,
            "blocks": [b.to_dict() for b in self.blocks],
            "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
            "notes": list(self.notes),
            "incomplete": list(self.incomplete),
            "seconds": round(self.seconds, 2),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_text(self) -> str:
        n_ok = sum(b.passed for b in self.blocks)
        head = "PASS" if self.passed else "FAIL"
        shape = f", input {self.input_shape}" if self.input_shape else ""
        lines = [
            f"{head}: {self.target} ({self.framework}{shape}): {_count(len(self.blocks), 'block')} found, {n_ok} conform, "
            f"{len(self.blocks) - n_ok} do not ({self.seconds:.1f} s)"
        ]
        rows = [
            (
                b.verdict,
                b.path or "<the model>",
                b.class_name,
                _NAMES.get(b.module or "", "?"),
                b.precision or "-",
                b.identified or "nothing",
            )
            for b in self.blocks
        ]
        if rows:
            header = ("verdict", "path", "class", "kind", "precision", "identified")
            widths = [max(len(r[i]) for r in [header, *rows]) for i in range(5)]
            lines.append("  ".join(h.ljust(w) for h, w in zip(header, [*widths, 0], strict=False)).rstrip())
            for b, r in zip(self.blocks, rows, strict=True):
                lines.append("  ".join(v.ljust(w) for v, w in zip(r, [*widths, 0], strict=False)).rstrip())
                said = b.diagnosis if not b.passed else b.diagnosis[-1:]
                lines += [f"    - {d}" for d in said]
        for path, reason in self.skipped:
            lines.append(f"not a block: {path or '<the model>'}: {reason}")
        lines += [f"note: {n}" for n in self.notes]
        lines += [f"incomplete: {n}" for n in self.incomplete]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_text()


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
