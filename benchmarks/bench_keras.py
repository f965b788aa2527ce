"""Speed of the Keras 3 port on the TensorFlow backend under XLA, as ratios to an elementwise pass.

Every module runs channels-last float32 inside ``tf.function(jit_compile=True)``: the forward
pass in inference mode, and forward + backward (``tf.GradientTape`` w.r.t. the input and every
trainable weight, BN in training mode) as in a training step. Both are divided by the time of
``x * s`` (s of shape (N, 1, 1, C), also XLA-compiled) over the same tensor, timed alternately
in the same run (``benchmarks.harness.ratios``).

    python -m benchmarks.bench_keras            # the shapes of benchmarks.harness.SHAPES
    python -m benchmarks.bench_keras --quick    # batch 4, fewer repeats: a smoke run
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence

import numpy as np

from benchmarks import harness
from benchmarks.harness import Row, format_table, ratios

MODULES = (("se", "SqueezeExcite", 5.0), ("cbam", "CBAM", 10.0), ("eca", "ECA", 5.0))
"""(module, layer class, forward+backward target as a multiple of x * s)."""


def _timed(shape_nchw: tuple[int, int, int, int], module: str, cls: str) -> tuple[Callable[[], object], ...]:
    """(baseline, forward, forward+backward), each a blocking call of an XLA-compiled function."""
    import tensorflow as tf

    import tf_impl

    n, c, h, w = shape_nchw
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(n, h, w, c)).astype("float32"))
    s = tf.constant(rng.uniform(size=(n, 1, 1, c)).astype("float32"))
    dy = tf.constant(rng.normal(size=(n, h, w, c)).astype("float32"))
    layer = getattr(tf_impl, cls)(c, data_format="channels_last")
    layer.build(x.shape)

    @tf.function(jit_compile=True)
    def scale(x: tf.Tensor) -> tf.Tensor:
        return x * s

    @tf.function(jit_compile=True)
    def forward(x: tf.Tensor) -> tf.Tensor:
        return layer(x, training=False)

    @tf.function(jit_compile=True)
    def forward_backward(x: tf.Tensor) -> list[tf.Tensor]:
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
        return tape.gradient(y, [x, *layer.trainable_variables], output_gradients=dy)

    return (lambda: scale(x)), (lambda: forward(x)), (lambda: forward_backward(x))


def run(shapes: Sequence[tuple[int, int, int, int]], repeats: int) -> list[Row]:
    rows = []
    for shape in shapes:
        for module, cls, target in MODULES:
            baseline, fwd, fwd_bwd = _timed(shape, module, cls)
            fwd_ratio, fwd_bwd_ratio = ratios(baseline, fwd, fwd_bwd, repeats=repeats)
            n, c, h, w = shape
            rows.append(Row("keras (tf, xla)", module, (n, h, w, c), fwd_ratio, fwd_bwd_ratio, None, None, target))
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="batch 4 and 3 repeats instead of batch 32 and 7")
    harness.add_options(parser)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    shapes = harness.shapes(4 if args.quick and args.batch is None else args.batch)
    rows = run(shapes, repeats=3 if args.quick else 7)
    print(format_table(rows))
    harness.save_rows(args.save, rows, layout="NHWC", backend="tensorflow", jit=True)


if __name__ == "__main__":
    main()
