"""``python -m conformance`` (also ``attnspec-conformance``): the conformance matrix and golden vectors.

    python -m conformance [report] [--frameworks torch,keras] [--modules cbam] [--full] [--format json]
    python -m conformance vectors export DIR [--modules ...] [--dtypes ...] [--seed N]
    python -m conformance vectors check [DIR] --framework torch
    python -m conformance verify ...
    python -m conformance audit TARGET --framework torch [--input-shape N,C,H,W] [--format json]
    python -m conformance spec [SECTION]

``--framework`` and ``--frameworks`` are the same option wherever one is accepted, and ``flax``
stands for both Flax APIs (flax.linen, flax.nnx).
Exit status: 0 when everything checked passed, 1 on any failure (or when nothing could be
tested), 2 on a usage error. The matrix goes to stdout and the progress to stderr, so
``--format json`` pipes cleanly: a bar on a terminal, a plain line every 10 s elsewhere.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from reference_numpy import DATA_FORMATS, MODULES

from ._cli import Parser
from ._cli import seed as _seed
from .adapters import ADAPTERS, get_adapter, is_installed
from .report import ALIASES, install_hint, quiet_framework_logs
from .tolerances import DTYPES

SUBCOMMANDS = ("report", "vectors", "verify", "audit", "spec")


def _choices(
    kind: str, allowed: Sequence[str], aliases: dict[str, tuple[str, ...]] | None = None
) -> Callable[[str], tuple[str, ...]]:
    """An argparse type for a comma-separated list drawn from ``allowed`` (order kept, duplicates dropped)."""

    def parse(text: str) -> tuple[str, ...]:
        out: list[str] = []
        for item in (s.strip() for s in text.split(",") if s.strip()):
            expanded = (aliases or {}).get(item, (item,))
            for name in expanded:
                if name not in allowed:
                    raise argparse.ArgumentTypeError(
                        f"unknown {kind} {item!r}; expected a comma-separated list of {', '.join(allowed)}"
                    )
                if name not in out:
                    out.append(name)
        if not out:
            raise argparse.ArgumentTypeError(f"expected at least one {kind}")
        return tuple(out)

    return parse


def _jobs(text: str) -> int:
    """An argparse type: a worker-process count, 0 or more."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of worker processes, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected 0 (run in this process) or more worker processes, got {v}")
    return v


FRAMEWORKS_HELP = f"comma-separated, from {', '.join(ADAPTERS)} ('flax' means both Flax APIs)"


def _parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="python -m conformance",
        description="Check SE/CBAM/ECA implementations against attnspec's reference (SPEC.md section 9).",
    )
    sub = p.add_subparsers(dest="command", metavar="{" + ",".join(SUBCOMMANDS) + "}")

    r = sub.add_parser("report", help="run the conformance matrix over the installed frameworks (the default)")
    r.add_argument(
        "--frameworks",
        "--framework",
        dest="frameworks",
        type=_choices("framework", list(ADAPTERS), ALIASES),
        default=tuple(ADAPTERS),
        help=f"{FRAMEWORKS_HELP}; default: all, and those not installed are listed as not tested",
    )
    r.add_argument(
        "--modules",
        type=_choices("module", MODULES),
        default=MODULES,
        help=f"comma-separated, from {', '.join(MODULES)} (default: all)",
    )
    r.add_argument("--full", action="store_true", help="add the knob grid and the edge cases to the presets")
    r.add_argument("--format", choices=("text", "markdown", "json"), default="text", help="output format")
    r.add_argument("--seed", type=_seed, default=0, help="seed of the generated cases (default: 0)")
    r.add_argument(
        "--jobs",
        type=_jobs,
        default=min(2, os.cpu_count() or 1),
        help="worker processes, each running some of the frameworks, their log output kept off the display "
        "(default: min(2, CPU count); 0 runs everything in this process)",
    )
    r.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress on stderr (by default a bar on a terminal, else a plain line every 10 s)",
    )

    v = sub.add_parser("vectors", help="export golden vectors, or check an implementation against them")
    vsub = v.add_subparsers(dest="action", metavar="{export,check}", required=True)
    e = vsub.add_parser("export", help="write one safetensors file per case, computed by the reference")
    e.add_argument("directory", help="output directory (created if needed)")
    e.add_argument("--modules", type=_choices("module", MODULES), default=MODULES, help="comma-separated modules")
    e.add_argument("--dtypes", type=_choices("dtype", DTYPES), default=("float64",), help="comma-separated dtypes")
    e.add_argument(
        "--data-formats",
        type=_choices("data format", DATA_FORMATS),
        default=DATA_FORMATS,
        help="comma-separated data formats",
    )
    e.add_argument("--seed", type=_seed, default=0, help="seed of the cases (default: 0, the shipped set)")
    c = vsub.add_parser("check", help="check frameworks against vector files, without running the reference")
    c.add_argument("directory", nargs="?", default=None, help="directory of vector files (default: the shipped set)")
    c.add_argument(
        "--framework",
        "--frameworks",
        dest="frameworks",
        required=True,
        type=_choices("framework", list(ADAPTERS), ALIASES),
        help=f"the implementations to check: {FRAMEWORKS_HELP}",
    )
    c.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="output format (json: one object per framework; a list of them when several are checked)",
    )

    sub.add_parser(
        "verify", help="verify an implementation (see `python -m conformance verify --help`)", add_help=False
    )
    sub.add_parser(
        "audit",
        help="find and verify every block in a network (see `python -m conformance audit --help`)",
        add_help=False,
    )
    s = sub.add_parser("spec", help="print SPEC.md, the spec this package implements, or one section of it")
    s.add_argument(
        "section",
        nargs="*",
        help="a section number (9, 9.5) or words of a heading (tolerance, hidden width); default: the whole document",
    )
    s.add_argument("--list", action="store_true", help="list the numbered sections and exit")
    return p


def _verify(argv: list[str]) -> int:
    # --frameworks is --framework here too (verify checks one target in one framework)
    argv = ["--framework" + a[len("--frameworks") :] if a.split("=")[0] == "--frameworks" else a for a in argv]
    try:
        verify = importlib.import_module("conformance.verify")
    except ModuleNotFoundError as e:
        if e.name != "conformance.verify":
            raise
        print(
            "error: `verify` is not available: conformance/verify.py is not part of this installation", file=sys.stderr
        )
        return 2
    return int(verify.main(argv))


def _report(args: argparse.Namespace) -> int:
    from .report import render, run_matrix

    quiet_framework_logs()
    matrix = run_matrix(
        args.frameworks,
        modules=args.modules,
        full=args.full,
        seed=args.seed,
        progress=not args.no_progress,
        jobs=args.jobs,
    )
    sys.stdout.write(render(matrix, args.format))
    return 0 if matrix.passed else 1


def _vectors_export(args: argparse.Namespace) -> int:
    from .vectors import default_cases, export_vectors

    if os.path.exists(args.directory) and not os.path.isdir(args.directory):
        print(f"error: {args.directory!r} is an existing file, not a directory", file=sys.stderr)
        return 2
    cases = default_cases(seed=args.seed, modules=args.modules, dtypes=args.dtypes, data_formats=args.data_formats)
    try:
        paths = export_vectors(args.directory, cases)
    except (OSError, ValueError) as e:
        print(f"error: could not write vector files to {args.directory!r}: {e}", file=sys.stderr)
        return 2
    size = sum(p.stat().st_size for p in paths)
    print(f"wrote {len(paths)} vector files ({size / 1024:.0f} KiB) to {args.directory}")
    return 0


def _vectors_check(args: argparse.Namespace) -> int:
    from .vectors import SHIPPED, vector_files

    directory = SHIPPED if args.directory is None else args.directory
    if not os.path.isdir(directory):
        print(f"error: {str(directory)!r} is not a directory", file=sys.stderr)
        return 2
    missing = [f for f in args.frameworks if not is_installed(f)]
    if missing:
        hint = install_hint(missing)
        names = ", ".join(map(repr, missing))
        print(
            f"error: {names} {'is' if len(missing) == 1 else 'are'} not installed{f': {hint}' if hint else ''}",
            file=sys.stderr,
        )
        return 2
    quiet_framework_logs()
    files = vector_files(directory)
    results = [_check_vectors_with(name, directory, files) for name in args.frameworks]
    if args.format == "json":
        docs = [doc for doc, _ in results]
        print(json.dumps(docs[0] if len(docs) == 1 else docs, indent=2))
    else:
        for _, lines in results:
            print("\n".join(lines))
    return 0 if all(doc["passed"] for doc, _ in results) else 1


def _check_vectors_with(
    name: str, directory: str | os.PathLike[str], files: list[Path]
) -> tuple[dict[str, Any], list[str]]:
    """Check ``files`` with framework ``name``: the JSON document and the text lines of its result."""
    from .vectors import VectorError, check_vector_file

    try:
        adapter = get_adapter(name)
    except Exception as e:
        failure = f"{name}: the adapter could not be built: {type(e).__name__}: {e}"
        doc = {"framework": name, "directory": str(directory), "files": len(files), "checked": 0, "skipped": 0}
        return {**doc, "passed": False, "cases": {}, "failures": [failure]}, [failure]
    reports, failures, skipped = [], [], 0
    for path in files:
        try:
            report = check_vector_file(path, adapter)
        except VectorError as e:
            failures.append(f"{name} {path.name}: {e}")
            continue
        if report is None:
            skipped += 1
        else:
            reports.append(report)
            failures += report.failures()
    if not reports:  # nothing was checked: that is never a pass
        reason = (
            f"no *.safetensors vector files in {str(directory)!r}"
            if not files
            else f"none of the {len(files)} vector files in {str(directory)!r} could be checked with "
            f"{name} (dtype or data format not supported, or unreadable)"
        )
        failures.insert(0, f"{name}: nothing checked: {reason}")
    doc = {
        "framework": name,
        "directory": str(directory),
        "files": len(files),
        "checked": len(reports),
        "skipped": skipped,
        "passed": not failures,
        "cases": {
            r.case.id: {"passed": r.passed, "worst": r.worst if r.worst != float("inf") else None} for r in reports
        },
        "failures": failures,
    }
    worst = max((r.worst for r in reports), default=0.0)
    summary = (
        f"{name}: {len(reports) - sum(not r.passed for r in reports)}/{len(reports)} vector files pass"
        f" (worst error ratio {worst:.2g}; {skipped} skipped: dtype or data format not supported;"
        f" {len(files) - len(reports) - skipped} unreadable) in {directory}"
    )
    return doc, [summary, *failures]


def _spec(args: argparse.Namespace) -> int:
    from reference_numpy.spec_doc import spec_sections, spec_text

    def listing() -> str:
        return "\n".join(f"  {n:<4} {title}" for n, title in spec_sections().items())

    if args.list:
        if args.section:
            print(f"error: --list takes no section. Received: {' '.join(args.section)!r}", file=sys.stderr)
            return 2
        print(listing())
        return 0
    section = " ".join(args.section) or None
    try:
        text = spec_text(section)
    except ValueError as e:
        print(f"error: {e}\nsections of SPEC.md:\n{listing()}", file=sys.stderr)
        return 2
    sys.stdout.write(text)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m conformance`` and ``attnspec-conformance``; returns the exit status.

    0 when everything checked passed, 1 on a failure, 2 on a usage mistake; an unexpected error is
    one line on stderr (exit 1), with its traceback only under ``--debug``.
    """
    args_list = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args_list
    if debug and (not args_list or args_list[0] not in ("verify", "audit")):
        args_list.remove("--debug")
    try:
        return _main(args_list)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 1
    except BrokenPipeError:  # the reader went away (`... spec | head`): stop quietly
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as e:
        if debug:
            traceback.print_exc()
        lines = str(e).strip().splitlines()
        print(f"error: {type(e).__name__}: {lines[0][:500] if lines else ''}", file=sys.stderr)
        return 1


def _main(args_list: list[str]) -> int:
    if args_list and args_list[0] == "verify":
        return _verify(args_list[1:])
    if args_list and args_list[0] == "audit":
        from .audit import main as audit_main

        rest = args_list[1:]  # --frameworks is --framework here too (an audit walks one framework's network)
        rest = ["--framework" + a[len("--frameworks") :] if a.split("=")[0] == "--frameworks" else a for a in rest]
        return int(audit_main(rest))
    if not args_list or args_list[0] not in (*SUBCOMMANDS, "-h", "--help"):
        args_list = ["report", *args_list]
    args = _parser().parse_args(args_list)
    if args.command == "report":
        return _report(args)
    if args.command == "spec":
        return _spec(args)
    return _vectors_export(args) if args.action == "export" else _vectors_check(args)


if __name__ == "__main__":
    sys.exit(main())
