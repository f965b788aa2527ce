"""Shared timing harness: every figure is a ratio to an elementwise pass measured in the same run.

Absolute times on shared 2-core machines are noise; a ratio to ``x * s`` over the same tensor,
timed alternately with the module, is what the targets in the issues are stated in.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import NamedTuple

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
