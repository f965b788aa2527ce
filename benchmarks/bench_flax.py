"""Speed and memory of flax_impl's SE, CBAM and ECA on CPU, as ratios to one elementwise pass.

    python benchmarks/bench_flax.py [--quick] [--modules SE CBAM ECA]

Per module and shape, float32, NHWC (Flax's default layout), Linen modules in their default
configuration (the authors' code), in training mode, everything under ``jax.jit``:

- forward: ``model.apply(variables, x, training=True, mutable=["batch_stats"])``, over the
  time of the jitted ``x * s`` (``s`` of shape (N, 1, 1, C)) on the same tensor, the two timed
  alternately in the same run (``benchmarks.harness.ratios``), each call blocking on its result;
- forward+backward: the gradient of ``sum(y * dy)`` with respect to ``x`` and every weight
  (the VJP with cotangent ``dy``), over the same baseline;
- peak memory: what XLA's buffer assignment reserves for the compiled forward+backward
  beyond its arguments (temporaries plus outputs, ``Compiled.memory_analysis()``), over x's
  size.

NNX modules run the same ``flax_impl._ops`` code, so they compile to the same XLA program.
XLA's CPU backend uses every core by default; this machine has two. Targets (issue 4):
SE and ECA forward+backward <= 4x, CBAM <= 8x.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from collections.abc import Callable

import jax
import jax.numpy as jnp

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import flax_impl.linen as fl
from benchmarks import harness
from benchmarks.harness import Row, format_table, ratios

TARGETS = {"SE": (None, 4.0), "ECA": (None, 4.0), "CBAM": (None, 8.0)}
MODULES: dict[str, Callable[..., fl.Attention]] = {
    "SE": fl.SqueezeExcite.create,
    "ECA": fl.ECA.create,
    "CBAM": fl.CBAM.create,
}


def _ready(fn: Callable[..., object], *args: object) -> Callable[[], object]:
    return lambda: jax.block_until_ready(fn(*args))


def bench(name: str, shape_nchw: tuple[int, int, int, int], repeats: int) -> Row:
    n, c, h, w = shape_nchw
    kx, ks, kdy, kinit = jax.random.split(jax.random.key(0), 4)
    x = jax.random.normal(kx, (n, h, w, c))
    s = jax.random.uniform(ks, (n, 1, 1, c))
    dy = jax.random.normal(kdy, x.shape)
    model = MODULES[name](c)
    variables = model.init(kinit, x)
    params, stats = variables["params"], {k: v for k, v in variables.items() if k != "params"}

    def forward(params, x):
        return model.apply({"params": params, **stats}, x, training=True, mutable=["batch_stats"])

    def forward_backward(params, x, dy):
        loss = lambda x, params: jnp.sum(forward(params, x)[0] * dy)  # noqa: E731
        return jax.grad(loss, argnums=(0, 1))(x, params)

    scale = jax.jit(lambda x, s: x * s)
    fwd, fwd_bwd = jax.jit(forward), jax.jit(forward_backward)
    memory = fwd_bwd.lower(params, x, dy).compile().memory_analysis()
    mem_ratio = None
    if memory is not None:
        mem_ratio = (memory.temp_size_in_bytes + memory.output_size_in_bytes) / x.nbytes
    r_fwd, r_fwd_bwd = ratios(
        _ready(scale, x, s), _ready(fwd, params, x), _ready(fwd_bwd, params, x, dy), repeats=repeats
    )
    return Row("flax", name, (n, h, w, c), r_fwd, r_fwd_bwd, mem_ratio, *TARGETS[name])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 timed repeats instead of 9")
    parser.add_argument("--modules", nargs="+", default=list(MODULES), choices=list(MODULES))
    harness.add_options(parser)
    args = parser.parse_args(argv)
    rows = [bench(m, shape, 3 if args.quick else 9) for shape in harness.shapes(args.batch) for m in args.modules]
    print(f"jax {jax.__version__}, {jax.devices()[0].platform} x{jax.local_device_count()}, float32, NHWC, jit")
    print(format_table(rows))
    harness.save_rows(args.save, rows, layout="NHWC", versions={"jax": jax.__version__}, jit=True)


if __name__ == "__main__":
    main()
