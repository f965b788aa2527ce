"""Speed and memory of torch_impl's SE, CBAM and ECA on CPU, as ratios to one elementwise pass.

    python benchmarks/bench_torch.py [--quick] [--threads 2]

Per module and shape, float32, contiguous NCHW, ``torch.set_num_threads(2)``:

- forward: ``module(x)`` under ``torch.no_grad()``, over the time of ``x * s`` (``s`` of shape
  (N, C, 1, 1)) on the same tensor, the two timed alternately in the same run
  (``benchmarks.harness.ratios``);
- forward+backward: ``module(x).backward(dy)`` with ``x`` and the parameters requiring grad,
  over the same baseline;
- peak memory: the most bytes that malloc held at once during forward+backward, above what
  it held before (x and dy already allocated), over x's size. It is read from glibc's
  ``mallinfo2`` after every ATen op (a ``TorchDispatchMode``), so it counts everything the ops
  allocate (saved tensors, output, gradients, temporaries), not just the saved tensors.

Modules run in training mode with their default configuration (the authors' code).
Targets (issue 3): SE and ECA forward <= 1.5x and forward+backward <= 5x; CBAM <= 4x and <= 10x.
"""

from __future__ import annotations

import argparse
import ctypes
import pathlib
import sys
from collections.abc import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import torch_impl
from benchmarks import harness
from benchmarks.harness import Row, format_table, ratios

TARGETS = {"SE": (1.5, 5.0), "ECA": (1.5, 5.0), "CBAM": (4.0, 10.0)}
MODULES: dict[str, Callable[[int], torch.nn.Module]] = {
    "SE": torch_impl.SqueezeExcite,
    "ECA": torch_impl.ECA,
    "CBAM": torch_impl.CBAM,
}


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks")
    ] + [("keepcost", ctypes.c_size_t)]


def _malloc_in_use() -> Callable[[], int] | None:
    """Bytes malloc holds for the program (heap + mmapped), or None off glibc >= 2.33."""
    try:
        mallinfo2 = ctypes.CDLL("libc.so.6").mallinfo2
    except (OSError, AttributeError):
        return None
    mallinfo2.restype = _MallInfo2

    def in_use() -> int:
        info = mallinfo2()
        return info.uordblks + info.hblkhd

    return in_use


class _PeakMemory(TorchDispatchMode):
    def __init__(self, in_use: Callable[[], int]) -> None:
        super().__init__()
        self.in_use, self.start, self.peak = in_use, in_use(), 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        out = func(*args, **(kwargs or {}))
        self.peak = max(self.peak, self.in_use() - self.start)
        return out


def peak_memory_ratio(module: torch.nn.Module, x: torch.Tensor, dy: torch.Tensor) -> float | None:
    in_use = _malloc_in_use()
    if in_use is None:
        return None
    x = x.detach().requires_grad_()
    with _PeakMemory(in_use) as mode:
        module(x).backward(dy)
    module.zero_grad(set_to_none=True)
    return mode.peak / (x.numel() * x.element_size())


def bench(name: str, shape: tuple[int, ...], repeats: int) -> Row:
    torch.manual_seed(0)
    n, c = shape[:2]
    module = MODULES[name](c).train()
    x = torch.randn(shape)
    s = torch.rand(n, c, 1, 1)
    dy = torch.randn(shape)
    xg = x.clone().requires_grad_()

    def forward() -> None:
        with torch.no_grad():
            module(x)

    def forward_backward() -> None:
        xg.grad = None
        module.zero_grad(set_to_none=True)
        module(xg).backward(dy)

    fwd, fwd_bwd = ratios(lambda: x * s, forward, forward_backward, repeats=repeats)
    return Row("torch", name, shape, fwd, fwd_bwd, peak_memory_ratio(module, x, dy), *TARGETS[name])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 timed repeats instead of 9")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--modules", nargs="+", default=list(MODULES), choices=list(MODULES))
    harness.add_options(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = [bench(m, shape, 3 if args.quick else 9) for shape in harness.shapes(args.batch) for m in args.modules]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32, contiguous NCHW")
    print(format_table(rows))
    harness.save_rows(args.save, rows, layout="NCHW", versions={"torch": torch.__version__}, threads=args.threads)


if __name__ == "__main__":
    main()
