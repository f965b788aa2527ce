"""The conformance matrix behind ``python -m conformance``: run it, then render it.

:func:`run_matrix` checks every selected variant (grid.py) with every selected framework
in each dtype, mode and data format its adapter supports, the non-finite cases of SPEC.md
section 1 (NaN, +Inf and -Inf in x, in each weight and in dy, for ``grid.nonfinite_variants``),
plus one non-vacuity check per framework and module, and returns a :class:`Matrix` of plain
data. The renderers turn a matrix into text, Markdown or JSON; nothing here prints.

>>> m = run_matrix(["numpy"], modules=("eca",), progress=False)
>>> m.passed, [r.id for r in m.rows], m.rows[0].cells["numpy"].per_dtype
(True, ['eca/paper', 'eca/timm', 'eca/timm_ceca'], {'float64': 0.0})
>>> print(render_text(m).splitlines()[2])
module/variant   numpy
>>> m.nonfinite_agree("numpy"), [r.id for r in m.nonfinite]  # cases agreeing, cases run
((21, 21), ['eca/paper', 'eca/k5-circular-bias'])
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import json
import logging
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, NamedTuple, TextIO

import reference_numpy as ref
from reference_numpy import DATA_FORMATS, MODULES, PORTS

from .adapters import ADAPTERS, Adapter, get_adapter, is_installed
from .cases import Case, edge_cases, make_case, nonfinite_cases
from .grid import (
    CHANNELS,
    MODES,
    NONFINITE_DTYPES,
    Variant,
    nonfinite_modes,
    nonfinite_variants,
    variants,
)
from .runner import CaseReport, check_case, check_non_vacuity, exception_line, smallest_caught

__all__ = [
    "ALIASES",
    "EXTRAS",
    "FORMATS",
    "Cell",
    "Matrix",
    "Row",
    "install_hint",
    "quiet_framework_logs",
    "render",
    "render_json",
    "render_markdown",
    "render_text",
    "run_matrix",
    "verdict",
]

PASS, FAIL, ERROR, NOT_INSTALLED = "pass", "fail", "error", "not installed"
"""Cell statuses: every case passed / some case failed / the adapter could not be built / framework absent."""
NON_VACUITY_DTYPE = "float32"
"""Non-vacuity runs in float32 where the adapter has it (the dtype most users run), else its first dtype."""
SENSITIVITY_DTYPES = ("float64", "float32")
"""Dtypes in which the smallest caught weight perturbation is measured (runner.smallest_caught)."""
MAX_FAILURE_LINES = 20
"""Failure messages printed below a matrix; the rest are counted."""
ALIASES: dict[str, tuple[str, ...]] = {fw: ports for fw, ports in PORTS.items() if ports != (fw,)}
"""Names that stand for several ports (on the command line, and in "not tested" lists): ``reference_numpy.PORTS``."""
EXTRAS = {port: ref.EXTRAS[fw] for fw, ports in PORTS.items() for port in ports}
"""The pip extra of attnspec that installs each port's framework (``reference_numpy.EXTRAS``, by port)."""
PROGRESS_INTERVAL_S = 10.0
"""Seconds between two plain progress lines when the progress stream is not a terminal."""


@dataclasses.dataclass
class Cell:
    """One framework on one variant: aggregate verdict and worst error ratio (<= 1 passes).

    ``per_dtype`` holds the worst ratio per dtype; ``cases`` counts the cases run and
    ``failed`` those that did not pass. ``worst`` is ``inf`` when an implementation raised.
    """

    status: str
    worst: float = 0.0
    per_dtype: dict[str, float] = dataclasses.field(default_factory=dict)
    cases: int = 0
    failed: int = 0

    def add(self, report: CaseReport) -> None:
        self.cases += 1
        self.failed += not report.passed
        dtype = report.case.dtype
        self.worst = max(self.worst, report.worst)
        self.per_dtype[dtype] = max(self.per_dtype.get(dtype, 0.0), report.worst)
        if not report.passed:
            self.status = FAIL

    def add_unbuilt(self, dtype: str) -> None:
        """A case that could not even be generated: nothing was checked, so it fails."""
        self.cases += 1
        self.failed += 1
        self.worst = self.per_dtype[dtype] = math.inf
        self.status = FAIL


@dataclasses.dataclass
class Row:
    module: str
    variant: str
    cells: dict[str, Cell]

    @property
    def id(self) -> str:
        return f"{self.module}/{self.variant}"


@dataclasses.dataclass
class Matrix:
    """The whole run: one row per variant, the non-vacuity verdicts and every failure message.

    ``non_vacuity`` maps framework -> module -> ``"ok"`` or what went wrong (a mutation
    the comparison did not catch, or the error the check raised); frameworks that were not
    run (absent or broken) have no entry.
    """

    frameworks: list[str]
    rows: list[Row]
    non_vacuity: dict[str, dict[str, str]]
    failures: list[str]
    status: dict[str, str]
    seed: int
    full: bool
    elapsed_s: float = 0.0
    timings: dict[str, float] = dataclasses.field(default_factory=dict)
    """Wall seconds each framework took (adapter construction included), in its own process under ``jobs > 1``."""
    cpu: dict[str, float] = dataclasses.field(default_factory=dict)
    """CPU seconds (all threads of the process running it) each framework took."""
    sensitivity: dict[str, dict[str, dict[str, float | None]]] = dataclasses.field(default_factory=dict)
    """framework -> module -> dtype -> the smallest relative weight perturbation the comparison caught
    (``None``: not even the largest step of runner.LADDER)."""
    nonfinite: list[Row] = dataclasses.field(default_factory=list)
    """The non-finite table (SPEC.md section 1): one row per variant of ``grid.nonfinite_variants``, a
    cell per framework counting its non-finite cases (``cases``) and those that disagreed (``failed``)."""
    nonfinite_timings: dict[str, float] = dataclasses.field(default_factory=dict)
    """Wall seconds each framework's non-finite cases took (part of ``timings``)."""

    def smallest_caught(self, framework: str) -> dict[str, float | None]:
        """Per dtype, the worst (largest) over modules of the smallest perturbation caught."""
        out: dict[str, float | None] = {}
        for per_dtype in self.sensitivity.get(framework, {}).values():
            for d, v in per_dtype.items():
                prev = out.get(d, 0.0)
                out[d] = None if v is None or prev is None else max(prev, v)
        return out

    @property
    def tested(self) -> list[str]:
        """The frameworks that were run (an adapter that could not be built counts: it failed)."""
        return [f for f in self.frameworks if self.status[f] != NOT_INSTALLED]

    @property
    def not_installed(self) -> list[str]:
        """The frameworks that were asked for but not tested, because they are not installed."""
        return [f for f in self.frameworks if self.status[f] == NOT_INSTALLED]

    @property
    def passed(self) -> bool:
        """Nothing failed, and something was tested (a run that tested nothing is never a pass)."""
        return not self.failures and bool(self.tested)

    @property
    def cases(self) -> int:
        return sum(c.cases for r in self.rows for c in r.cells.values())

    @property
    def nonfinite_cases(self) -> int:
        return sum(c.cases for r in self.nonfinite for c in r.cells.values())

    def nonfinite_agree(self, framework: str) -> tuple[int, int]:
        """(cases agreeing, cases run) of ``framework``'s non-finite cases."""
        cells = [r.cells[framework] for r in self.nonfinite]
        total = sum(c.cases for c in cells)
        return total - sum(c.failed for c in cells), total

    @property
    def non_vacuity_checks(self) -> int:
        return sum(len(v) for v in self.non_vacuity.values())

    @property
    def checks(self) -> int:
        """Cases (of the grid and non-finite) plus non-vacuity checks: the count the progress counter runs to."""
        return self.cases + self.nonfinite_cases + self.non_vacuity_checks

    def non_vacuity_status(self, framework: str) -> str:
        """``ok``, ``FAIL`` or, when the framework was not run, its column status."""
        if framework not in self.non_vacuity:
            return self.status[framework]
        return "ok" if all(v == "ok" for v in self.non_vacuity[framework].values()) else "FAIL"


# ----------------------------------------------------------------------------- running


class _Unbuilt(NamedTuple):
    """A case the generator could not make (cases.make_case raised): reported as a failure."""

    id: str
    dtype: str
    error: str


def _make(case_id: str, dtype: str, build: Callable[[], Iterable[Case]]) -> Iterator[Case | _Unbuilt]:
    try:
        cases = list(build())
    except Exception as e:
        yield _Unbuilt(case_id, dtype, exception_line(e))
    else:
        yield from cases


def _cases(adapter: Adapter, variant: Variant, seed: int, full: bool) -> Iterator[Case | _Unbuilt]:
    """The default grid for one variant: adapter dtypes x modes x data formats (+ edge cases when ``full``)."""
    cfg = variant.build(CHANNELS)
    formats = [f for f in DATA_FORMATS if f in adapter.data_formats]

    def one(dtype: str, training: bool, fmt: str) -> list[Case]:
        return [make_case(cfg, seed=seed, dtype=dtype, training=training, data_format=fmt, name=variant.name)]

    def edges(dtype: str, training: bool) -> list[Case]:
        found = edge_cases(cfg, seed=seed, dtype=dtype, training=training, data_format=formats[0])
        return [dataclasses.replace(c, name=f"{variant.name}.{c.name}") for c in found]

    for dtype in adapter.dtypes:
        for training in MODES:
            for fmt in formats:
                layout = "nchw" if fmt == "channels_first" else "nhwc"
                case_id = f"{variant.id}-{dtype}-{'train' if training else 'eval'}-{layout}"
                yield from _make(case_id, dtype, functools.partial(one, dtype, training, fmt))
    if full:  # edge cases as the port tests run them: gradient dtypes, the adapter's first layout
        for dtype in adapter.grad_dtypes:
            for training in MODES:
                case_id = f"{variant.id}-edge-cases-{dtype}-{'train' if training else 'eval'}"
                yield from _make(case_id, dtype, functools.partial(edges, dtype, training))


def nonfinite_dtypes(adapter: Adapter | type[Adapter], full: bool) -> tuple[str, ...]:
    """The dtypes of the non-finite cases: :data:`grid.NONFINITE_DTYPES` (every gradient dtype when
    ``full``) among the adapter's gradient dtypes, else its first gradient dtype."""
    wanted = adapter.grad_dtypes if full else NONFINITE_DTYPES
    return tuple(d for d in wanted if d in adapter.grad_dtypes) or adapter.grad_dtypes[:1]


def nonfinite_formats(adapter: Adapter | type[Adapter], full: bool) -> tuple[str, ...]:
    """The data formats of the non-finite cases: the adapter's first (every one when ``full``)."""
    formats = tuple(f for f in DATA_FORMATS if f in adapter.data_formats)
    return formats if full else formats[:1]


def _nonfinite_cases(adapter: Adapter, variant: Variant, seed: int, full: bool) -> Iterator[Case | _Unbuilt]:
    """SPEC.md section 1's non-finite cases for one variant: NaN, +Inf, -Inf in x, each weight and dy."""
    cfg = variant.build(CHANNELS)

    def some(dtype: str, training: bool, fmt: str) -> list[Case]:
        found = nonfinite_cases(cfg, seed=seed, dtype=dtype, training=training, data_format=fmt)
        return [dataclasses.replace(c, name=f"{variant.name}.{c.name}") for c in found]

    for dtype in nonfinite_dtypes(adapter, full):
        for training in nonfinite_modes(variant):
            for fmt in nonfinite_formats(adapter, full):
                layout = "nchw" if fmt == "channels_first" else "nhwc"
                case_id = f"{variant.id}-nonfinite-{dtype}-{'train' if training else 'eval'}-{layout}"
                yield from _make(case_id, dtype, functools.partial(some, dtype, training, fmt))


def _nonfinite_count(adapter: Adapter | type[Adapter], variant: Variant, full: bool) -> int:
    """How many cases :func:`_nonfinite_cases` makes: 3 values x (x, dy and every canonical tensor)."""
    cfg = variant.build(CHANNELS)
    per_run = 3 * (2 + len(ref.param_layout(cfg)))
    return (
        per_run
        * len(nonfinite_modes(variant))
        * len(nonfinite_dtypes(adapter, full))
        * len(nonfinite_formats(adapter, full))
    )


def _check(adapter: Adapter, case: Case) -> CaseReport:
    """check_case, with anything that escapes it (e.g. a reference error) turned into a failed report."""
    try:
        return check_case(adapter, case)
    except Exception as e:
        return CaseReport(case, adapter.name, [], exception_line(e))


def _non_vacuity(adapter: Adapter, variant: Variant, seed: int) -> str:
    dtype = NON_VACUITY_DTYPE if NON_VACUITY_DTYPE in adapter.dtypes else adapter.dtypes[0]
    try:
        case = make_case(
            variant.build(CHANNELS), seed=seed, dtype=dtype, training=True, data_format=adapter.data_formats[0]
        )
        uncaught = check_non_vacuity(adapter, case)
    except Exception as e:
        return f"raised {exception_line(e)}"
    return "ok" if not uncaught else "not caught: " + ", ".join(uncaught)


def _sensitivity(adapter: Adapter, variant: Variant, seed: int) -> dict[str, float | None]:
    """The smallest relative weight perturbation caught, per dtype of SENSITIVITY_DTYPES the adapter runs."""
    out: dict[str, float | None] = {}
    for dtype in (d for d in SENSITIVITY_DTYPES if d in adapter.dtypes):
        try:
            case = make_case(
                variant.build(CHANNELS), seed=seed, dtype=dtype, training=True, data_format=adapter.data_formats[0]
            )
            out[dtype] = smallest_caught(adapter, case)
        except Exception:
            out[dtype] = None  # the non-vacuity verdict reports what raised
    return out


def _is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


class _Progress:
    """Progress of a run on ``stream`` (default: stderr); silent when not ``enabled``.

    On a terminal: a tqdm bar with the count, the rate, the time left and the full name of the
    check that just finished. Elsewhere (a file, a pipe, a CI log): a plain line every
    ``interval`` seconds and one at the end, never a carriage return, so that a redirected
    stream stays a readable log. ``total`` is the number of checks announced so far
    (:meth:`grow` corrects it as each framework tells its exact count).
    """

    def __init__(
        self,
        total: int,
        enabled: bool,
        stream: TextIO | None = None,
        *,
        interval: float | None = None,
        title: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.total, self.n, self.enabled = total, 0, enabled
        self.stream = stream or sys.stderr
        self.interval = PROGRESS_INTERVAL_S if interval is None else interval
        self.clock = clock
        self.start = self.last_line = clock()
        self.first: float | None = None  # when the first check finished: the rate leaves out start-up (imports)
        self.bar: Any = None
        if title is not None:
            self.note(title)
        if enabled and _is_terminal(self.stream):
            try:
                from tqdm import tqdm
            except ImportError:  # a plain line now and then still says how far the run is
                pass
            else:
                self.bar = tqdm(total=total, file=self.stream, unit="check", desc="conformance", dynamic_ncols=True)

    def note(self, text: str) -> None:
        """One line of text, above the bar on a terminal."""
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            self.stream.write(text + "\n")
            self.stream.flush()

    def grow(self, n: int) -> None:
        """``n`` more (or, negative, fewer) steps to come than announced so far."""
        self.total += n
        if self.bar is not None:
            self.bar.total = self.total
            self.bar.refresh()

    def step(self, what: str) -> None:
        self.n += 1
        if self.first is None:
            self.first = self.clock()
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_postfix_str(what, refresh=False)
            self.bar.update()
            return
        now = self.clock()
        if now - self.last_line >= self.interval:
            self.last_line = now
            self.note(f"conformance: {self._count()}, {self._times(now)}: {what}")

    def _count(self) -> str:
        pct = 100 * self.n // self.total if self.total else 100
        return f"{self.n}/{self.total} checks ({pct}%)"

    def _times(self, now: float) -> str:
        text = f"{_duration(now - self.start)} elapsed"
        if self.first is not None and 1 < self.n < self.total:
            text += f", about {_duration((now - self.first) * (self.total - self.n) / (self.n - 1))} left"
        return text

    def close(self) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str("", refresh=False)
            self.bar.close()
        elif self.enabled:
            self.note(f"conformance: {self.n}/{self.total} checks in {_duration(self.clock() - self.start)}")


@dataclasses.dataclass
class _Column:
    """One framework's results: a cell per variant, its non-vacuity verdicts and its failure messages."""

    name: str
    status: str
    cells: list[Cell]
    non_vacuity: dict[str, str] | None
    failures: list[str]
    elapsed_s: float
    cpu_s: float = 0.0
    sensitivity: dict[str, dict[str, float | None]] = dataclasses.field(default_factory=dict)
    nonfinite: list[Cell] = dataclasses.field(default_factory=list)
    """One cell per variant of ``nonfinite_variants``; empty when the framework did not run."""
    nonfinite_s: float = 0.0
    """Wall seconds the non-finite cases took (included in ``elapsed_s``)."""


def _chosen(modules: Sequence[str], full: bool) -> list[Variant]:
    return sorted(variants(tuple(modules), full=full), key=lambda v: MODULES.index(v.module))  # stable: by module


def _run_cases(
    name: str, adapter: Adapter, cases: list[Case | _Unbuilt], failures: list[str], step: Callable[[str], None]
) -> Cell:
    """Check ``cases`` (one variant's) with ``adapter``: their cell; failure messages go to ``failures``."""
    cell = Cell(PASS)
    for case in cases:
        if isinstance(case, _Unbuilt):
            cell.add_unbuilt(case.dtype)
            failures.append(f"{name} {case.id}: the case could not be generated: {case.error}")
        else:
            report = _check(adapter, case)
            cell.add(report)
            failures += report.failures()
        step(f"{name} {case.id}")
    return cell


def _run_framework(
    name: str,
    chosen: list[Variant],
    seed: int,
    full: bool,
    build: Callable[[str], Adapter],
    grow: Callable[[int], None],
    step: Callable[[str], None],
    nonfinite: bool = True,
) -> _Column:
    """Build the adapter, run every case of ``chosen``, the non-finite cases (unless not ``nonfinite``) and the
    non-vacuity checks; ``grow``/``step`` drive progress."""
    start, cpu = time.perf_counter(), time.process_time()
    try:
        adapter = build(name)
    except Exception as e:
        grow(0)  # none of the checks announced for it will run
        failure = f"{name}: the adapter could not be built: {exception_line(e)}"
        return _Column(name, ERROR, [Cell(ERROR, math.inf) for _ in chosen], None, [failure], 0.0)
    first_of_module: dict[str, Variant] = {}  # module -> its first variant: the non-vacuity case
    for v in chosen:
        first_of_module.setdefault(v.module, v)
    plan = [list(_cases(adapter, v, seed, full)) for v in chosen]
    nf_chosen = nonfinite_variants(_modules(chosen)) if nonfinite else []
    nf_plan = [list(_nonfinite_cases(adapter, v, seed, full)) for v in nf_chosen]
    grow(sum(len(cases) for cases in plan + nf_plan) + len(first_of_module))
    failures: list[str] = []
    cells = [_run_cases(name, adapter, cases, failures, step) for cases in plan]
    nf_start = time.perf_counter()
    nf_cells = [_run_cases(name, adapter, cases, failures, step) for cases in nf_plan]
    nf_s = time.perf_counter() - nf_start
    non_vacuity, sensitivity = {}, {}
    for module, variant in first_of_module.items():
        verdict = non_vacuity[module] = _non_vacuity(adapter, variant, seed)
        if verdict != "ok":
            failures.append(f"{name} non-vacuity {variant.id}: {verdict}")
        sensitivity[module] = _sensitivity(adapter, variant, seed)
        step(f"{name} non-vacuity {module}")
    status = FAIL if failures else PASS
    elapsed, cpu_s = time.perf_counter() - start, time.process_time() - cpu
    return _Column(name, status, cells, non_vacuity, failures, elapsed, cpu_s, sensitivity, nf_cells, nf_s)


def _modules(chosen: list[Variant]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v.module for v in chosen))


def _planned(name: str, chosen: list[Variant], full: bool, nonfinite: bool = True) -> int:
    """The number of checks ``name`` will run on ``chosen``, known before its framework is imported.

    An adapter declares its dtypes and data formats as class attributes; the ports keep the
    defaults of :class:`Adapter`, and an adapter needing no framework (numpy) is read directly.
    The framework corrects the count once built (``grow``), so this only has to be a good guess.
    """
    module, cls, needs = ADAPTERS[name]
    spec: Any = Adapter
    if not needs:
        try:
            spec = getattr(importlib.import_module(module), cls)
        except Exception:  # the run reports it; the default attributes do for a count
            spec = Adapter
    formats = [f for f in DATA_FORMATS if f in spec.data_formats]
    count = len(chosen) * len(spec.dtypes) * len(MODES) * len(formats)
    if full:  # edge_cases: n1, hw1 (not in train mode with batch norm), large, small, c1, c_below_ratio
        for v in chosen:
            bn = bool(getattr(v.build(CHANNELS), "has_batch_norm", False))
            count += sum(6 - (training and bn) for training in MODES) * len(spec.grad_dtypes)
    if nonfinite:
        count += sum(_nonfinite_count(spec, v, full) for v in nonfinite_variants(_modules(chosen)))
    return count + len({v.module for v in chosen})


COST = {"numpy": 0.0, "torch": 1.0, "keras": 2.0, "flax.linen": 4.0, "flax.nnx": 4.0}
"""Rough relative run time of each framework's default grid on CPU, used only to balance the worker
processes of ``jobs > 1``. JAX compiles every op on first use, and that cost is paid once per process."""


def _groups(names: Sequence[str], jobs: int) -> list[list[str]]:
    """Split ``names`` into at most ``jobs`` groups of similar cost.

    Frameworks built on the same packages (both Flax APIs) stay in one process, where they share
    the framework's import and compilation caches; units go largest first onto the lightest group.
    """
    units: dict[tuple[str, ...], list[str]] = {}
    for n in names:
        units.setdefault(ADAPTERS[n][2] or (n,), []).append(n)
    bins: list[list[str]] = [[] for _ in range(max(1, min(jobs, len(units))))]
    load = [0.0] * len(bins)
    for unit in sorted(units.values(), key=lambda u: -sum(COST.get(n, 1.0) for n in u)):
        i = load.index(min(load))
        bins[i] += unit
        load[i] += sum(COST.get(n, 1.0) for n in unit)
    return [[n for n in names if n in b] for b in bins if b]


QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "GRPC_VERBOSITY": "ERROR"}
"""Environment that asks TensorFlow's C++ logging (and gRPC's) for errors only; set before the import."""
QUIET_LOGGERS = ("absl", "tensorflow", "jax", "jax._src.xla_bridge")
"""Python loggers set to ERROR in a process that runs frameworks."""


def quiet_framework_logs() -> None:
    """Keep framework chatter (TensorFlow, absl, JAX) off the display; a variable the user set is kept.

    Must run before the framework is imported. TensorFlow >= 2.20 writes some C++ log lines
    (``oneDNN custom operations are on``) whatever ``TF_CPP_MIN_LOG_LEVEL`` says, which is why the
    worker processes also send their stderr to a log file (:func:`_worker_init`).
    """
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


_QUEUE: Any = None


def _worker_init(queue: Any, log_path: str | None) -> None:
    """Set up a worker: progress goes to ``queue``; its stderr (framework logging) goes to ``log_path``."""
    global _QUEUE
    _QUEUE = queue
    quiet_framework_logs()
    if log_path is not None:
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(fd, 2)  # the C++ side of the frameworks writes to file descriptor 2 directly
        os.close(fd)


def _worker(
    names: list[str],
    specs: dict[str, tuple[str, str, tuple[str, ...]]],
    modules: Sequence[str],
    seed: int,
    full: bool,
    nonfinite: bool = True,
) -> list[_Column]:
    """Run ``names`` in a worker process; progress goes to the parent through the queue.

    ``specs`` are the parent's ``ADAPTERS`` entries for ``names``, so that an adapter registered
    at run time in the parent is found here too.
    """
    ADAPTERS.update(specs)
    chosen = _chosen(modules, full)
    return [
        _run_framework(
            n,
            chosen,
            seed,
            full,
            get_adapter,
            functools.partial(lambda name, k: _QUEUE.put(("grow", (name, k))), n),
            lambda what: _QUEUE.put(("step", what)),
            nonfinite,
        )
        for n in names
    ]


def _last_line(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = [line.strip() for line in f.read()[-4000:].splitlines() if line.strip()]
    except OSError:
        return None
    return lines[-1] if lines else None


def _run_parallel(
    groups: list[list[str]],
    modules: Sequence[str],
    seed: int,
    full: bool,
    bar: _Progress,
    announce: Callable[[str, int], None],
    nonfinite: bool = True,
) -> dict[str, _Column]:
    import concurrent.futures
    import multiprocessing
    import queue as queue_module

    ctx = multiprocessing.get_context("spawn")  # never fork a process that may hold framework threads
    q = ctx.Queue()

    def pump(timeout: float) -> bool:
        try:
            kind, value = q.get(timeout=timeout)
        except queue_module.Empty:
            return False
        announce(*value) if kind == "grow" else bar.step(value)
        return True

    fd, log_path = tempfile.mkstemp(prefix="attnspec-conformance-", suffix=".log")
    os.close(fd)
    columns: dict[str, _Column] = {}
    try:
        with concurrent.futures.ProcessPoolExecutor(len(groups), ctx, _worker_init, (q, log_path)) as pool:
            futures = [
                pool.submit(_worker, g, {n: ADAPTERS[n] for n in g}, tuple(modules), seed, full, nonfinite)
                for g in groups
            ]
            while not all(f.done() for f in futures):
                pump(0.2)
            for group, f in zip(groups, futures, strict=True):
                try:
                    columns |= {c.name: c for c in f.result()}
                except Exception as e:  # the worker died (a framework crashed the interpreter): report, do not crash
                    last = _last_line(log_path)
                    for n in group:
                        failure = f"{n}: the worker process running {', '.join(group)} failed: {exception_line(e)}"
                        if last:
                            failure += f" (last line it wrote to stderr: {last})"
                        cells = [Cell(ERROR, math.inf) for _ in _chosen(modules, full)]
                        columns[n] = _Column(n, ERROR, cells, None, [failure], 0.0)
        while pump(0.05):  # the workers have exited, so whatever they queued has been flushed
            pass
    finally:
        with contextlib.suppress(OSError):
            os.remove(log_path)
    return columns


def run_matrix(
    frameworks: Sequence[str] | None = None,
    *,
    modules: Sequence[str] = MODULES,
    full: bool = False,
    seed: int = 0,
    progress: bool = True,
    jobs: int = 0,
    adapter_factory: Callable[[str], Adapter] | None = None,
    stream: TextIO | None = None,
    nonfinite: bool = True,
) -> Matrix:
    """Check ``frameworks`` (default: all) on the presets of ``modules`` (plus knobs and edge cases when ``full``).

    A framework that is not installed gets ``not installed`` cells and is never imported; one
    whose adapter raises on construction gets ``error`` cells and a failure message.
    With ``jobs >= 1`` the frameworks are split over at most that many worker processes (each
    imports only its own frameworks, and its stderr, where the frameworks log, goes to a file);
    with ``jobs=0``, with an ``adapter_factory`` (default :func:`conformance.get_adapter`, which
    builds an adapter from its name), or when no framework needs a package (numpy), everything
    runs in this process. ``progress`` draws on ``stream`` (default: stderr): see :class:`_Progress`.
    ``nonfinite`` runs SPEC.md section 1's non-finite cases (``grid.nonfinite_variants``; NaN, +Inf and
    -Inf in x, each weight and dy) into :attr:`Matrix.nonfinite`; their disagreements fail the run.
    """
    start = time.perf_counter()
    names = list(ADAPTERS) if frameworks is None else list(frameworks)
    for n in names:
        if n not in ADAPTERS:
            raise ValueError(f"Unknown framework {n!r}. Expected one of {', '.join(map(repr, ADAPTERS))}")
    chosen = _chosen(modules, full)
    installed = [n for n in names if is_installed(n)]
    planned = {n: _planned(n, chosen, full, nonfinite) for n in installed}
    in_process = jobs == 0 or adapter_factory is not None or not any(ADAPTERS[n][2] for n in installed)
    groups = [installed] if in_process else _groups(installed, jobs)
    missing = [n for n in names if n not in installed]
    where = "in this process" if in_process else f"in {len(groups)} worker process{'es' * (len(groups) > 1)}"
    plan = f"conformance: {sum(planned.values())} checks of {', '.join(installed)} {where}"
    if not installed:
        plan = "conformance: nothing to check"
    plan += f"; not installed: {', '.join(_collapse(missing))}" if missing else ""
    bar = _Progress(sum(planned.values()), progress, stream, title=plan)

    def announce(name: str, n: int) -> None:
        bar.grow(n - planned[name])

    try:
        if not in_process:
            columns = _run_parallel(groups, modules, seed, full, bar, announce, nonfinite)
        else:
            build = adapter_factory or get_adapter
            columns = {
                n: _run_framework(n, chosen, seed, full, build, functools.partial(announce, n), bar.step, nonfinite)
                for n in installed
            }
    finally:
        bar.close()
    for n in names:
        if n not in columns:
            columns[n] = _Column(n, NOT_INSTALLED, [Cell(NOT_INSTALLED) for _ in chosen], None, [], 0.0)
    rows = [Row(v.module, v.name, {n: columns[n].cells[i] for n in names}) for i, v in enumerate(chosen)]
    nf_chosen = nonfinite_variants(_modules(chosen)) if nonfinite else []

    def nf_cell(n: str, i: int) -> Cell:  # a framework that did not run: its column status, no cases
        c = columns[n]
        return c.nonfinite[i] if c.nonfinite else Cell(c.status, math.inf if c.status == ERROR else 0.0)

    nf_rows = [Row(v.module, v.name, {n: nf_cell(n, i) for n in names}) for i, v in enumerate(nf_chosen)]
    return Matrix(
        frameworks=names,
        rows=rows,
        non_vacuity={n: c.non_vacuity for n, c in columns.items() if c.non_vacuity is not None},
        failures=[f for n in names for f in columns[n].failures],
        status={n: columns[n].status for n in names},
        seed=seed,
        full=full,
        elapsed_s=time.perf_counter() - start,
        timings={n: round(columns[n].elapsed_s, 3) for n in names},
        cpu={n: round(columns[n].cpu_s, 3) for n in names},
        sensitivity={n: columns[n].sensitivity for n in names if columns[n].sensitivity},
        nonfinite=nf_rows,
        nonfinite_timings={n: round(columns[n].nonfinite_s, 3) for n in names},
    )


# ----------------------------------------------------------------------------- rendering


def _ratio(r: float) -> str:
    if r == 0:
        return "0"
    if math.isinf(r):
        return "inf"
    return f"{r:.2g}"


def _cell(cell: Cell) -> str:
    if cell.status in (ERROR, NOT_INSTALLED):
        return cell.status
    return f"{'pass' if cell.status == PASS else 'FAIL'} {_ratio(cell.worst)}"


_DTYPE_SHORT = {"float64": "f64", "float32": "f32", "bfloat16": "bf16", "float16": "f16"}


def _per_dtype(cell: Cell) -> str:
    if cell.status in (ERROR, NOT_INSTALLED):
        return cell.status
    return " · ".join(f"{_DTYPE_SHORT.get(d, d)} {_ratio(r)}" for d, r in cell.per_dtype.items())


def _title(m: Matrix) -> str:
    grid = "full grid (presets, knobs, edge cases)" if m.full else "default grid (presets)"
    nf = f", {m.nonfinite_cases} non-finite" if m.nonfinite_cases else ""
    count = f"{m.checks} checks ({m.cases} cases{nf}, {m.non_vacuity_checks} non-vacuity)"
    return f"attnspec conformance, spec {ref.SPEC_VERSION}, {grid}, seed {m.seed}: {count} in {m.elapsed_s:.1f} s"


LEGEND = (
    "cell: pass/FAIL and the worst error ratio over dtypes, modes and data formats "
    "(|got - reference| / tolerance of SPEC.md 9; <= 1 passes); smallest-caught: the smallest relative "
    "weight perturbation the comparison catches, worst module"
)


def _sensitivity_cell(m: Matrix, framework: str) -> str:
    found = m.smallest_caught(framework)
    if not found:
        return "-"
    return " ".join(f"{_DTYPE_SHORT.get(d, d)} {'none' if v is None else f'{v:.0e}'}" for d, v in found.items())


def _footer(m: Matrix) -> list[list[str]]:
    return [
        ["non-vacuity", *(m.non_vacuity_status(f) for f in m.frameworks)],
        ["smallest-caught", *(_sensitivity_cell(m, f) for f in m.frameworks)],
    ]


def _agree(cell: Cell) -> str:
    """A non-finite cell: cases agreeing / cases run, FAIL in front when some disagree."""
    if cell.status in (ERROR, NOT_INSTALLED):
        return cell.status
    text = f"{cell.cases - cell.failed}/{cell.cases}"
    return text if cell.status == PASS else f"FAIL {text}"


def _nonfinite_heading(m: Matrix) -> str:
    dtypes = sorted({d for r in m.nonfinite for c in r.cells.values() for d in c.per_dtype})
    short = ", ".join(_DTYPE_SHORT.get(d, d) for d in dtypes)
    return (
        f"non-finite values (SPEC.md 1): NaN, +Inf, -Inf in x, in each weight and in dy{f' ({short})' if short else ''}"
    )


NONFINITE_LEGEND = (
    "non-finite cell: cases agreeing / cases run; a case agrees when NaN, +Inf and -Inf sit exactly where the "
    "reference has them in the output, every gradient and the BN state, and every finite entry is within its "
    "bound (SPEC.md 9.3)"
)


def _nonfinite_table(m: Matrix) -> list[list[str]]:
    """The non-finite table: a row per variant, then ``all`` (the framework's total)."""
    if not m.nonfinite:
        return []
    lines = [["non-finite", *m.frameworks]]
    lines += [[r.id, *(_agree(r.cells[f]) for f in m.frameworks)] for r in m.nonfinite]
    total = []
    for f in m.frameworks:
        cells = [r.cells[f] for r in m.nonfinite]
        status = next((c.status for c in cells if c.status in (ERROR, NOT_INSTALLED)), None)
        agree, run = m.nonfinite_agree(f)
        total.append(status or _agree(Cell(PASS if agree == run else FAIL, cases=run, failed=run - agree)))
    return [*lines, ["all", *total]]


def _table(m: Matrix, fmt: Callable[[Cell], str]) -> list[list[str]]:
    lines = [["module/variant", *m.frameworks]]
    lines += [[r.id, *(fmt(r.cells[f]) for f in m.frameworks)] for r in m.rows]
    return lines


def _failure_lines(m: Matrix, limit: int = MAX_FAILURE_LINES) -> list[str]:
    if not m.failures:
        return []
    out = [f"{len(m.failures)} failure(s):", *m.failures[:limit]]
    if len(m.failures) > limit:
        out.append(f"... and {len(m.failures) - limit} more")
    return out


def _collapse(names: Sequence[str]) -> list[str]:
    """``names`` with every complete group of :data:`ALIASES` written as its alias (flax.linen, flax.nnx -> flax)."""
    out: list[str] = []
    for n in names:
        group = next((a for a, members in ALIASES.items() if n in members and set(members) <= set(names)), n)
        if group not in out:
            out.append(group)
    return out


def install_hint(names: Sequence[str]) -> str | None:
    """The pip command that installs the frameworks ``names`` (None when none has an extra)."""
    extras = list(dict.fromkeys(EXTRAS[n] for n in names if n in EXTRAS))
    return f'pip install "attnspec[{",".join(extras)}]"' if extras else None


def _verdict(m: Matrix) -> tuple[str, str]:
    missing = ", ".join(_collapse(m.not_installed))
    if not m.tested:
        return "NOTHING TESTED", f"{missing} — not installed" if missing else ""
    covered = ", ".join(m.tested) + (f"; not tested: {missing} — not installed" if missing else "")
    return "PASS" if m.passed else "FAIL", covered


def verdict(m: Matrix) -> str:
    """``PASS (numpy, torch; not tested: flax, keras — not installed)``: the verdict and what it covers.

    A run that tested nothing (every framework asked for is missing) is ``NOTHING TESTED``, never a pass.
    """
    word, covered = _verdict(m)
    return f"{word} ({covered})" if covered else word


def _not_tested(m: Matrix) -> list[str]:
    if not m.not_installed:
        return []
    hint = install_hint(m.not_installed)
    return [f"not tested: {', '.join(m.not_installed)} (not installed{f'; {hint} adds them' if hint else ''})"]


def render_text(m: Matrix) -> str:
    """A fixed-width table, the non-vacuity row, what was not tested, the verdict and the first failure messages."""
    table = [*_table(m, _cell), *_footer(m)]
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    out = [_title(m), ""]
    out += ["  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip() for line in table]
    nf = _nonfinite_table(m)
    if nf:
        widths = [max(len(line[i]) for line in nf) for i in range(len(nf[0]))]
        out += ["", _nonfinite_heading(m)]
        out += ["  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip() for line in nf]
    out += ["", LEGEND, *([NONFINITE_LEGEND] if nf else []), *_not_tested(m), f"result: {verdict(m)}"]
    if m.failures:
        out += ["", *_failure_lines(m)]
    return "\n".join(out) + "\n"


def _md_table(rows: list[list[str]]) -> list[str]:
    head, *body = rows
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return out + ["| " + " | ".join(r) + " |" for r in body]


def render_markdown(m: Matrix) -> str:
    """The matrix as a Markdown table, then the worst ratio per dtype, then the failures."""
    table = [*_table(m, _cell), *_footer(m)]
    word, covered = _verdict(m)
    out = [f"**{_title(m)}**", "", *_md_table(table), "", f"{LEGEND}."]
    nf = _nonfinite_table(m)
    if nf:
        out += ["", f"{_nonfinite_heading(m)[0].upper()}{_nonfinite_heading(m)[1:]}:", "", *_md_table(nf)]
        out += ["", f"{NONFINITE_LEGEND[0].upper()}{NONFINITE_LEGEND[1:]}."]
    out += [*(f"{line}." for line in _not_tested(m)), f"Result: **{word}**{f' ({covered})' if covered else ''}."]
    out += ["", "Worst error ratio per dtype:", "", *_md_table(_table(m, _per_dtype))]
    if m.failures:
        out += ["", "```", *_failure_lines(m), "```"]
    return "\n".join(out) + "\n"


def _finite(r: float) -> float | None:
    return r if math.isfinite(r) else None


def matrix_dict(m: Matrix) -> dict[str, Any]:
    """The matrix as JSON-ready data; non-finite ratios (an implementation raised) become ``null``."""
    return {
        "spec_version": ref.SPEC_VERSION,
        "seed": m.seed,
        "full": m.full,
        "passed": m.passed,
        "result": verdict(m),
        "tested": m.tested,
        "not_installed": m.not_installed,
        "checks": m.checks,
        "cases": m.cases,
        "non_vacuity_checks": m.non_vacuity_checks,
        "nonfinite_cases": m.nonfinite_cases,
        "elapsed_s": round(m.elapsed_s, 3),
        "frameworks": {
            f: {
                "status": m.status[f],
                "non_vacuity": m.non_vacuity.get(f),
                "smallest_caught": m.sensitivity.get(f),
                "elapsed_s": m.timings.get(f),
                "cpu_s": m.cpu.get(f),
                "nonfinite": _nonfinite_dict(m, f),
            }
            for f in m.frameworks
        },
        "rows": [
            {
                "module": r.module,
                "variant": r.variant,
                "cells": {
                    f: {
                        "status": c.status,
                        "worst": _finite(c.worst),
                        "per_dtype": {d: _finite(v) for d, v in c.per_dtype.items()},
                        "cases": c.cases,
                        "failed": c.failed,
                    }
                    for f, c in r.cells.items()
                },
            }
            for r in m.rows
        ],
        "nonfinite": [
            {
                "module": r.module,
                "variant": r.variant,
                "cells": {
                    f: {"status": c.status, "cases": c.cases, "agree": c.cases - c.failed, "dtypes": list(c.per_dtype)}
                    for f, c in r.cells.items()
                },
            }
            for r in m.nonfinite
        ],
        "failures": m.failures,
    }


def _nonfinite_dict(m: Matrix, framework: str) -> dict[str, Any] | None:
    """A framework's non-finite total (None when it did not run them): cases, agree, all_agree, elapsed_s."""
    agree, run = m.nonfinite_agree(framework)
    if m.status[framework] in (ERROR, NOT_INSTALLED) or not m.nonfinite:
        return None
    return {"cases": run, "agree": agree, "all_agree": agree == run, "elapsed_s": m.nonfinite_timings.get(framework)}


def render_json(m: Matrix) -> str:
    return json.dumps(matrix_dict(m), indent=2) + "\n"


FORMATS: dict[str, Callable[[Matrix], str]] = {"text": render_text, "markdown": render_markdown, "json": render_json}


def render(m: Matrix, fmt: str = "text") -> str:
    """Render ``m`` as ``text``, ``markdown`` or ``json``."""
    try:
        return FORMATS[fmt](m)
    except KeyError:
        raise ValueError(f"Unknown format {fmt!r}. Expected one of {', '.join(map(repr, FORMATS))}") from None
