"""``python -m conformance audit``: the command line.

Exit status: 0 when at least one block was found and every one conforms, 1 when some block
does not (or none was found, or the network could not be built or run), 2 for a mistake in the
command itself. Errors are one line on stderr; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence

from reference_numpy import FRAMEWORKS

from .._cli import Parser
from .._cli import first_line as _line
from .._cli import seconds as _seconds
from .._cli import seed as _seed
from ..verify.worker import DEFAULT_TIMEOUT
from .api import DEFAULT_SPATIAL, audit

PROG = "python -m conformance audit"


def _shape(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(d) for d in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated ints like 2,3,64,64, got {text!r}") from None
    if not dims or any(d < 1 for d in dims):
        raise argparse.ArgumentTypeError(f"expected dimensions >= 1, got {text!r}")
    return dims


def _parser() -> argparse.ArgumentParser:
    p = Parser(prog=PROG, description="Find every SE, CBAM and ECA block in a network and verify each where it sits.")
    p.add_argument(
        "target",
        help="package.module:factory (a function or class building the network, or a network; for Flax linen, "
        "a function returning (module, variables))",
    )
    p.add_argument("--framework", required=True, choices=FRAMEWORKS)
    p.add_argument(
        "--input-shape",
        type=_shape,
        default=None,
        help="shape of the sample input, in the network's data format, e.g. 2,3,224,224 (default: the network's "
        f"declared input, else batch 2, the first convolution's input channels, {DEFAULT_SPATIAL} x {DEFAULT_SPATIAL})",
    )
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("--seed", type=_seed, default=0, help="seed of the sample input and the checks (default: 0)")
    p.add_argument(
        "--timeout",
        type=_seconds,
        default=DEFAULT_TIMEOUT,
        help=f"seconds each call into the network or a block may take (default: {DEFAULT_TIMEOUT:g})",
    )
    p.add_argument("--in-process", action="store_true", help="run the network in this process (no time limit)")
    p.add_argument("--debug", action="store_true", help="print tracebacks of unexpected errors")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns 0 when every found block conforms, 1 when not, 2 on a usage error."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0) if isinstance(e.code, int) else 2
    if ":" not in args.target or args.target.count(":") != 1:
        print(f"{PROG}: error: TARGET must be 'package.module:factory'. Received: {args.target!r}", file=sys.stderr)
        return 2
    try:
        report = audit(
            args.target,
            framework=args.framework,
            input_shape=args.input_shape,
            seed=args.seed,
            timeout=args.timeout,
            isolate=not args.in_process,
        )
    except (ValueError, TypeError) as e:
        if args.debug:
            traceback.print_exc()
        print(f"{PROG}: error: {_line(e)}", file=sys.stderr)
        return 2
    except Exception as e:  # anything else is a failure of the audit, said in one line
        if args.debug:
            traceback.print_exc()
        print(f"{PROG}: failed: {type(e).__name__}: {_line(e)}", file=sys.stderr)
        return 1
    print(report.to_json() if args.format == "json" else report.to_text())
    return 0 if report.passed else 1
