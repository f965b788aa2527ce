"""The report: a target's verdict, identified variant, diagnosis and every comparison."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

from reference_numpy import Config, describe

from ..compare import Comparison
from ..runner import CaseReport
from .binding import _NAMES

# ----------------------------------------------------------------------------- the report


@dataclasses.dataclass
class VerifyReport:
    """The verdict on one target.

    ``passed``: the target matches a configuration of the requested module (the expected one,
    when ``expect`` was given) in output, input gradient, every parameter gradient and running
    statistics, at ``precision`` (the precision it computes in). ``module``: the module it was
    checked as (found from its structure when none was requested; None when none fits). ``identified``: a description of the configuration it matches (of whatever
    module), or None. ``config``: that configuration. ``diagnosis``: sentences.
    ``comparisons``: every per-tensor comparison of the final check (``case_reports`` groups
    them by case).
    """

    target: str
    module: str | None
    framework: str
    passed: bool
    identified: str | None
    config: Config | None
    diagnosis: list[str]
    comparisons: list[Comparison]
    case_reports: list[CaseReport] = dataclasses.field(default_factory=list)
    bindings: dict[str, str] = dataclasses.field(default_factory=dict)  # their name -> canonical name
    mapping: str = "auto"
    channels: int | None = None
    precision: str | None = None
    """The precision it was judged at: ``float64``, or ``float32`` for a target that computes in float32
    (wholly, or in some step of its float64 path); None when it was not checked."""

    def to_dict(self) -> dict[str, Any]:
        def num(v: Any) -> Any:
            return None if isinstance(v, float) and not math.isfinite(v) else v

        return {
            "target": self.target,
            "module": self.module,
            "framework": self.framework,
            "mapping": self.mapping,
            "channels": self.channels,
            "passed": self.passed,
            "precision": self.precision,
            "identified": self.identified,
            "config": None if self.config is None else self.config.to_dict(),
            "diagnosis": self.diagnosis,
            "bindings": self.bindings,
            "cases": [
                {
                    "case": r.case.id,
                    "passed": r.passed,
                    "error": r.error,
                    "comparisons": [
                        {**{k: num(v) for k, v in dataclasses.asdict(c).items()}, "message": c.message}
                        for c in r.comparisons
                    ],
                }
                for r in self.case_reports
            ],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_text(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        verdict += f" at {self.precision} precision" if self.passed and self.precision == "float32" else ""
        as_what = _NAMES[self.module] if self.module else "SE, CBAM or ECA"
        head = f"{verdict}: {self.target} as {as_what} ({self.framework}"
        head += f", {self.channels} channels)" if self.channels else ")"
        lines = [head, f"identified: {self.identified or 'nothing'}"]
        if self.bindings:
            lines.append(f"parameters (mapping {self.mapping!r}):")
            width = max(map(len, self.bindings))
            lines += [f"  {k:<{width}}  ->  {v}" for k, v in self.bindings.items()]
        lines.append("diagnosis:")
        lines += [f"  - {d}" for d in self.diagnosis]
        if self.case_reports:
            lines.append(f"checks (as {describe(self.config)}):" if self.config is not None else "checks:")
            for r in self.case_reports:
                if r.error:
                    lines.append(f"  {r.case.id}: raised {r.error}")
                    continue
                worst = max(r.comparisons, key=lambda c: c.error_ratio)
                status = "ok" if r.passed else "FAIL"
                lines.append(
                    f"  {r.case.id}: {status}, {len(r.comparisons)} tensors, worst {worst.name} at "
                    f"{worst.error_ratio:.3g}x the tolerance"
                )
                lines += [f"    {c.message}" for c in r.comparisons if not c.ok]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_text()
