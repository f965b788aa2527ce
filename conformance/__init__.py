"""attnspec's conformance suite: compare any SE/CBAM/ECA implementation with the reference.

>>> from reference_numpy import CBAMConfig
>>> from conformance import check_case, get_adapter, make_case
>>> report = check_case(get_adapter("numpy"), make_case(CBAMConfig(channels=16), seed=3, training=True))
>>> report.passed, [c.name for c in report.comparisons][:3]
(True, ['y', 'dx', 'grad[channel.fc1.weight]'])
"""

from . import audit as audit  # the package, callable as audit.audit (like verify)
from . import verify as verify  # the package, callable as verify.verify (see its docstring)
from .adapters import ADAPTERS, Adapter, Outputs, get_adapter, is_installed
from .audit import AuditReport, BlockReport
from .cases import Case, edge_cases, make_case, round_to_dtype
from .compare import Comparison, compare
from .runner import CaseReport, check_case, check_non_vacuity, reference_outputs
from .tolerances import DTYPES, TOLERANCES, Tolerance, tolerance

__all__ = [
    "ADAPTERS",
    "DTYPES",
    "TOLERANCES",
    "Adapter",
    "AuditReport",
    "BlockReport",
    "Case",
    "CaseReport",
    "Comparison",
    "Outputs",
    "Tolerance",
    "check_case",
    "check_non_vacuity",
    "compare",
    "edge_cases",
    "get_adapter",
    "is_installed",
    "make_case",
    "reference_outputs",
    "round_to_dtype",
    "tolerance",
]
