"""Draw the benchmark ratios of every port and module as one PNG (matplotlib, the ``dev`` extra).

    python -m benchmarks.bench_torch --batch 16 --save docs/benchmarks/torch.json
    python -m benchmarks.bench_flax  --batch 16 --save docs/benchmarks/flax.json
    python -m benchmarks.bench_keras --batch 16 --save docs/benchmarks/keras.json
    python -m benchmarks.plot [FILE.json ...] [--out docs/benchmarks.png]

Without files it reads every ``docs/benchmarks/*.json``. Two panels, forward and
forward+backward; per module and shape one bar per port, the ratio of its time to one
elementwise ``x * s`` pass over the same tensor (``benchmarks.harness``), with the port's
target (where it has one) as a black tick. The sizes, dates and machine load of the runs are
written under the chart.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from benchmarks.harness import Row, load_rows

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "benchmarks"
OUT = ROOT / "docs" / "benchmarks.png"
COLOURS = {"torch": "#ee4c2c", "flax": "#4285f4", "keras": "#7b3294"}
MODULE_ORDER = ("SE", "ECA", "CBAM")


def _port(framework: str) -> str:
    return framework.split()[0]  # "keras (tf, xla)" -> "keras"


def _chw(row: Row, layout: str) -> tuple[int, int, int]:
    _, a, b, c = row.shape
    return (a, b, c) if layout == "NCHW" else (c, a, b)


def _describe(meta: dict[str, Any], rows: list[Row]) -> str:
    port = _port(rows[0].framework) if rows else "?"
    batches = sorted({r.shape[0] for r in rows})
    versions = ", ".join(f"{k} {v}" for k, v in (meta.get("versions") or {}).items())
    load = meta.get("load_average")
    load_text = f", load average {load[0]:.1f} at its end on {meta.get('cpus')} CPUs" if load else ""
    command = meta.get("command", "")
    return (
        f"{port}: batch {'/'.join(map(str, batches))}, {meta.get('date', '?')[:16]} UTC{load_text}"
        + (f" ({versions})" if versions else "")
        + (f": {command}" if command else "")
    )


def draw(files: list[Path], out: Path) -> Path:
    """Draw ``files`` (written by ``benchmarks.harness.save_rows``) into ``out``; returns ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [load_rows(f) for f in files]
    if not runs:
        raise SystemExit(f"no benchmark results to draw (expected JSON files under {RESULTS})")
    # (module, (C, H, W)) -> port -> row
    table: dict[tuple[str, tuple[int, int, int]], dict[str, Row]] = {}
    for meta, rows in runs:
        for r in rows:
            table.setdefault((r.module.upper(), _chw(r, meta["layout"])), {})[_port(r.framework)] = r
    groups = sorted(table, key=lambda k: (k[1][0], MODULE_ORDER.index(k[0]) if k[0] in MODULE_ORDER else 9))
    ports = [p for p in COLOURS if any(p in table[g] for g in groups)]
    width = 0.8 / len(ports)

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), layout="constrained")
    for ax, (field, target, title) in zip(
        axes,
        (("fwd_ratio", "fwd_target", "forward"), ("fwd_bwd_ratio", "fwd_bwd_target", "forward + backward")),
        strict=True,
    ):
        for i, port in enumerate(ports):
            xs = [g + (i - (len(ports) - 1) / 2) * width for g in range(len(groups))]
            vals = [getattr(table[g][port], field) if port in table[g] else float("nan") for g in groups]
            bars = ax.bar(xs, vals, width, color=COLOURS[port], label=port)
            ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=1)
            for x, g in zip(xs, groups, strict=True):
                t = getattr(table[g][port], target) if port in table[g] else None
                if t is not None:
                    ax.plot([x - width / 2, x + width / 2], [t, t], color="black", lw=1.5)
        ax.set_xticks(range(len(groups)), [f"{m}\n{'x'.join(map(str, chw))}" for m, chw in groups], fontsize=8)
        ax.set_yscale("log")
        ax.axhline(1.0, color="grey", lw=0.8, ls=":")
        ax.set_title(title)
        ax.set_ylabel("time / time of one x * s pass")
        ax.margins(y=0.12)
    axes[0].legend(title="port (black tick: target)", fontsize=8, title_fontsize=8)
    notes = "\n".join(_describe(meta, rows) for meta, rows in runs)
    fig.suptitle("attnspec on CPU: each module's time over one elementwise x * s pass (float32, lower is better)")
    fig.text(0.01, -0.01, notes, fontsize=7, va="top", family="monospace")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path, help=f"results of the bench scripts (default: {RESULTS}/*.json)")
    parser.add_argument("--out", type=Path, default=OUT, help=f"the PNG to write (default: {OUT})")
    args = parser.parse_args(argv)
    files = args.files or sorted(RESULTS.glob("*.json"))
    print(f"{len(files)} result files -> {draw(files, args.out)}")


if __name__ == "__main__":
    main()
