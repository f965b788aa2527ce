"""``python -m conformance verify``: the command line.

Exit status: 0 when the target conforms, 1 when it does not (or anything about the target
itself went wrong: it raised, hung, exited or crashed), 2 for a mistake in the command.
Every error is one line on stderr; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from collections.abc import Sequence
from typing import Any

from reference_numpy import FRAMEWORKS, MODULES

from .._cli import Parser
from .._cli import first_line as _line
from .._cli import seconds as _seconds
from .._cli import seed as _seed
from .api import verify
from .worker import DEFAULT_TIMEOUT

PROG = "python -m conformance verify"


def _parser() -> argparse.ArgumentParser:
    p = Parser(
        prog=PROG,
        description="Check a third-party SE/CBAM/ECA implementation against the spec and identify its variant.",
    )
    p.add_argument("target", help="package.module:Factory (a class, or a function returning the layer)")
    p.add_argument(
        "--module", default=None, choices=MODULES, help="the module it claims to be (default: found from its structure)"
    )
    p.add_argument("--framework", required=True, choices=FRAMEWORKS)
    p.add_argument(
        "--init-kwargs",
        default="{}",
        help='JSON object of the factory\'s keyword arguments; a dotted path names a class or function: {"act_layer": "torch.nn.SiLU"}',
    )
    p.add_argument(
        "--map", default="auto", dest="mapping", help="auto, a PyTorch dialect (timm, official, ...) or a JSON map file"
    )
    p.add_argument(
        "--expect",
        default=None,
        help="the preset it claims to be, or a JSON object of knobs (strict check; sizes a preset leaves open come "
        "from its weights)",
    )
    p.add_argument(
        "--channels", type=int, default=None, help="channel count, only when neither its weights nor arguments tell it"
    )
    p.add_argument("--data-format", choices=("channels_first", "channels_last"), default=None)
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument(
        "--timeout",
        type=_seconds,
        default=DEFAULT_TIMEOUT,
        help=f"seconds each call into the target may take in its worker process (default: {DEFAULT_TIMEOUT:g})",
    )
    p.add_argument(
        "--in-process", action="store_true", help="run the target in this process (no worker, no time limit)"
    )
    p.add_argument("--debug", action="store_true", help="print tracebacks of unexpected errors")
    return p


def _json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError) as e:
        raise ValueError(f"{what} must be valid JSON: {str(e)[:200] or type(e).__name__}") from None


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns 0 when the target conforms, 1 when not, 2 on a usage error."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0) if isinstance(e.code, int) else 2
    try:
        init_kwargs = _json(args.init_kwargs, "--init-kwargs")
        if not isinstance(init_kwargs, dict):
            raise ValueError("--init-kwargs must be a JSON object")
        expect: Any = args.expect
        if expect is not None and expect.lstrip().startswith("{"):
            expect = _json(expect, "--expect")
        report = verify(
            args.target,
            module=args.module,
            framework=args.framework,
            init_kwargs=init_kwargs,
            mapping=args.mapping,
            seed=args.seed,
            channels=args.channels,
            expect=expect,
            data_format=args.data_format,
            timeout=args.timeout,
            isolate=not args.in_process,
        )
    except (ValueError, TypeError, KeyError, RecursionError) as e:
        if args.debug:
            traceback.print_exc()
            print(getattr(e, "worker_traceback", ""), file=sys.stderr, end="")
        print(f"{PROG}: error: {_line(e)}", file=sys.stderr)
        return 2
    except Exception as e:  # anything else is a failure of the check, said in one line
        if args.debug:
            traceback.print_exc()
            print(getattr(e, "worker_traceback", ""), file=sys.stderr, end="")
        print(f"{PROG}: failed: {type(e).__name__}: {_line(e)}", file=sys.stderr)
        return 1
    print(report.to_json() if args.format == "json" else report.to_text())
    return 0 if report.passed else 1
