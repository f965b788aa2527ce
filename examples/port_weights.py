"""Port trained PyTorch ResNets with SE, ECA, CECA and CBAM blocks to Keras and Flax, and compare the logits.

    python -m examples.port_weights [--depths 18 34 50] [--attn se cbam] [--num-classes 10]
                                    [--image-size 64] [--steps 3] [--seed 0]

For every depth and attention kind (all five, None included, by default):

1. Train the PyTorch model (:mod:`examples.resnet_torch`: timm's ``resnet{depth}`` with
   ``block_args={"attn_layer": attn}``, its tensor names and layouts) a few SGD steps on random
   data, so that every batch norm holds trained statistics; switch it to eval mode.
2. Port its ``state_dict()`` as it is (torch tensors, timm's layouts, ``num_batches_tracked``
   included) with ``tf_impl.load_torch_state_dict`` into :mod:`examples.resnet_keras` and with
   ``flax_impl.linen.load_torch_state_dict`` into the variables of :mod:`examples.resnet_flax`.
3. Compare the float32 eval logits: the largest ``|logit - PyTorch logit|`` over the largest
   ``|PyTorch logit|`` must be at most :data:`MAX_RELATIVE_DIFFERENCE`; and
   ``to_torch_state_dict`` must give back every tensor bit for bit under the same keys.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .architecture import ATTNS, DEPTHS
from .resnet_torch import resnet

MAX_RELATIVE_DIFFERENCE = 1e-5
"""Issue #12's bar for float32 eval logits: max |logit - PyTorch logit| / max |PyTorch logit|."""

FRAMEWORKS: Mapping[str, tuple[str, ...]] = {"keras": ("keras", "tensorflow"), "flax": ("jax", "flax")}


def train_torch(
    depth: int,
    attn: str | None,
    num_classes: int,
    *,
    steps: int = 3,
    seed: int = 0,
    batch: int = 8,
    image_size: int = 64,
) -> torch.nn.Module:
    """The PyTorch model after ``steps`` of SGD on random data (seeded), in eval mode."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = resnet(depth, attn, num_classes)
    rng = np.random.default_rng(seed)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    model.train()
    for _ in range(steps):
        x = torch.tensor(rng.normal(size=(batch, 3, image_size, image_size)), dtype=torch.float32)
        labels = torch.tensor(rng.integers(0, num_classes, size=batch))
        loss = F.cross_entropy(model(x), labels)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return model.eval()


def relative_difference(logits: np.ndarray, reference: np.ndarray) -> float:
    """max |logits - reference| / max |reference|."""
    return float(np.abs(logits.astype(np.float64) - reference).max() / np.abs(reference).max())


@dataclasses.dataclass
class Ported:
    """One framework's port of one model."""

    logits: np.ndarray
    seconds: float  # the load_torch_state_dict call alone
    loaded: int  # tensors loaded
    round_trip: bool  # to_torch_state_dict gave back every tensor bit for bit, same keys


def _same(state_dict: Mapping[str, torch.Tensor], back: Mapping[str, np.ndarray]) -> bool:
    held = {k: v.numpy() for k, v in state_dict.items() if not k.endswith("num_batches_tracked")}
    return set(held) == set(back) and all(np.array_equal(held[k], back[k]) for k in held)


def port_keras(state_dict: Mapping[str, Any], depth: int, attn: str | None, num_classes: int, x: np.ndarray) -> Ported:
    import tf_impl

    from .resnet_keras import resnet as keras_resnet

    model = keras_resnet(depth, attn, num_classes)
    model(x[:1])  # build
    start = time.perf_counter()
    report = tf_impl.load_torch_state_dict(model, state_dict)
    seconds = time.perf_counter() - start
    logits = np.asarray(model(x, training=False))
    return Ported(logits, seconds, len(report.loaded), _same(state_dict, tf_impl.to_torch_state_dict(model)))


def port_flax(state_dict: Mapping[str, Any], depth: int, attn: str | None, num_classes: int, x: np.ndarray) -> Ported:
    import jax

    from flax_impl import linen

    from .resnet_flax import resnet as flax_resnet

    model = flax_resnet(depth, attn, num_classes)
    variables = jax.eval_shape(model.init, jax.random.key(0), x[:1])  # shapes and dtypes only
    variables = jax.tree_util.tree_map(lambda s: np.zeros(s.shape, s.dtype), variables)
    start = time.perf_counter()
    variables = linen.load_torch_state_dict(variables, state_dict)
    seconds = time.perf_counter() - start
    logits = np.asarray(model.apply(variables, x, training=False))
    n = len([k for k in state_dict if not k.endswith("num_batches_tracked")])
    return Ported(logits, seconds, n, _same(state_dict, linen.to_torch_state_dict(variables)))


PORTERS = {"keras": port_keras, "flax": port_flax}


@dataclasses.dataclass
class Result:
    depth: int
    attn: str | None
    reference: np.ndarray  # float32 PyTorch logits
    ported: dict[str, Ported]
    skipped: dict[str, str]

    def relative(self, framework: str) -> float:
        return relative_difference(self.ported[framework].logits, self.reference)

    @property
    def passed(self) -> bool:
        return all(self.relative(fw) <= MAX_RELATIVE_DIFFERENCE and p.round_trip for fw, p in self.ported.items())


def port(
    depth: int = 18,
    attn: str | None = "se",
    num_classes: int = 10,
    *,
    steps: int = 3,
    seed: int = 0,
    batch: int = 8,
    image_size: int = 64,
    frameworks: Sequence[str] = tuple(PORTERS),
) -> Result:
    """Train one PyTorch model, port it to every installed framework of ``frameworks``, compare the logits."""
    model = train_torch(depth, attn, num_classes, steps=steps, seed=seed, batch=batch, image_size=image_size)
    x = np.random.default_rng(seed + 1).normal(size=(2, 3, image_size, image_size)).astype(np.float32)
    with torch.no_grad():
        reference = model(torch.from_numpy(x)).numpy()
    state_dict = model.state_dict()
    ported, skipped = {}, {}
    for fw in frameworks:
        missing = [p for p in FRAMEWORKS[fw] if importlib.util.find_spec(p) is None]
        if missing:
            skipped[fw] = f"needs {', '.join(missing)}"
            continue
        ported[fw] = PORTERS[fw](state_dict, depth, attn, num_classes, np.ascontiguousarray(x.transpose(0, 2, 3, 1)))
    return Result(depth, attn, reference, ported, skipped)


def row(r: Result) -> str:
    cells = [f"resnet{r.depth:<3}", f"{r.attn!s:<5}"]
    for fw, p in r.ported.items():
        cells.append(
            f"{fw} {r.relative(fw):.2e} (port {p.seconds:.2f} s, {p.loaded} tensors, "
            f"round trip {'exact' if p.round_trip else 'DIFFERS'})"
        )
    cells += [f"{fw} skipped ({why})" for fw, why in r.skipped.items()]
    return " | ".join(cells)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.port_weights", description=__doc__.splitlines()[0])
    parser.add_argument("--depths", type=int, nargs="+", default=[18], choices=sorted(DEPTHS))
    parser.add_argument("--attn", nargs="+", default=[str(a) for a in ATTNS], choices=[str(a) for a in ATTNS])
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=3, help="SGD steps before porting (default: 3)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(f"max |logit - PyTorch logit| / max |PyTorch logit| (float32, eval; bar {MAX_RELATIVE_DIFFERENCE:g})")
    passed = True
    for depth in args.depths:
        for attn in args.attn:
            r = port(
                depth,
                None if attn == "None" else attn,
                args.num_classes,
                steps=args.steps,
                seed=args.seed,
                image_size=args.image_size,
            )
            print(row(r), flush=True)
            passed &= r.passed
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
