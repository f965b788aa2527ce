"""Shared timing harness: every figure is a ratio to an elementwise pass measured in the same run.

Absolute times on shared 2-core machines are noise; a ratio to ``x * s`` over the same tensor,
timed alternately with the module, is what the targets in the issues are stated in.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

SHAPES = ((32, 256, 56, 56), (32, 1024, 14, 14))


class Row(NamedTuple):
    framework: str
    module: str
    shape: tuple[int, ...]
    fwd_ratio: float
    fwd_bwd_ratio: float
    mem_ratio: float | None  # peak memory of forward+backward / input size, where measurable
    fwd_target: float | None
    fwd_bwd_target: float | None


def median_time(fn: Callable[[], object], *, repeats: int = 7, warmup: int = 2) -> float:
    """Median wall time of ``fn()`` (which must block until its result is ready)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def ratios(baseline: Callable[[], object], *fns: Callable[[], object], repeats: int = 7) -> list[float]:
    """Each ``fn``'s median time over the baseline's, both measured interleaved in this run."""
    for f in (baseline, *fns):
        median_time(f, repeats=1, warmup=2)
    base, outs = [], [[] for _ in fns]
    for _ in range(repeats):
        base.append(median_time(baseline, repeats=1, warmup=0))
        for o, f in zip(outs, fns, strict=True):
            o.append(median_time(f, repeats=1, warmup=0))
    b = statistics.median(base)
    return [statistics.median(o) / b for o in outs]


def _mark(value: float | None, target: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.2f}x" + ("" if target is None else (" ok" if value <= target else f" MISS (>{target}x)"))


def format_table(rows: list[Row]) -> str:
    """A Markdown table of the rows, with each ratio checked against its target."""
    lines = [
        "| framework | module | shape | forward | forward+backward | peak memory / input |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        mem = "n/a" if r.mem_ratio is None else f"{r.mem_ratio:.2f}x"
        shape = "x".join(map(str, r.shape))
        lines.append(
            f"| {r.framework} | {r.module} | {shape} | {_mark(r.fwd_ratio, r.fwd_target)} | "
            f"{_mark(r.fwd_bwd_ratio, r.fwd_bwd_target)} | {mem} |"
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------- command line and saved results


def add_options(parser: argparse.ArgumentParser) -> None:
    """The options every bench script shares: ``--batch N`` (smaller runs) and ``--save PATH.json``."""
    parser.add_argument(
        "--batch", type=int, default=None, help=f"batch size of every shape (default: {SHAPES[0][0]}, as SHAPES)"
    )
    parser.add_argument(
        "--save",
        type=Path,
        default=None,
        metavar="PATH.json",
        help="also write the ratios as JSON (for benchmarks.plot)",
    )


def shapes(batch: int | None) -> list[tuple[int, int, int, int]]:
    """:data:`SHAPES` (NCHW), with the batch size replaced when ``batch`` is given."""
    if batch is not None and batch < 1:
        raise ValueError(f"`batch` must be >= 1. Received: batch={batch}")
    return [s if batch is None else (batch, *s[1:]) for s in SHAPES]  # type: ignore[misc]


def save_rows(path: Path | str | None, rows: list[Row], *, layout: str, **meta: Any) -> None:
    """Write ``rows`` as JSON to ``path`` (nothing when ``path`` is None), read back by ``benchmarks.plot``.

    ``layout`` is how the rows' shapes are ordered (``"NCHW"`` or ``"NHWC"``); ``meta`` holds
    whatever else the run should record (versions, threads, repeats). The machine's load
    average and CPU count at the time of writing are added.
    """
    if path is None:
        return
    doc = {
        "format": "attnspec-bench",
        "version": 1,
        "layout": layout,
        "command": " ".join(["python", "-m", f"benchmarks.{Path(sys.argv[0]).stem}", *sys.argv[1:]]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "load_average": [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        **meta,
        "rows": [{**r._asdict(), "shape": list(r.shape)} for r in rows],
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")


def load_rows(path: Path | str) -> tuple[dict[str, Any], list[Row]]:
    """``(meta, rows)`` of a file :func:`save_rows` wrote."""
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    if doc.get("format") != "attnspec-bench":
        raise ValueError(f"{path} is not a benchmark result written by benchmarks.harness.save_rows")
    rows = [Row(**{**r, "shape": tuple(r["shape"])}) for r in doc.pop("rows")]
    return doc, rows
