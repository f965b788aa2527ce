"""Port a trained PyTorch ResNet to Flax and Keras through the canonical layout, and compare the logits.

    python -m examples.port_weights [--steps 5] [--seed 0]

1. Train the PyTorch model (:mod:`examples.resnet_torch`) a few SGD steps, so that every batch
   norm has non-trivial running statistics, then switch it to eval mode.
2. Export one flat canonical dict: each attention block through ``torch_impl.to_canonical``
   under its module path (``block2.attn.spatial.conv.weight``), every ordinary tensor under its
   PyTorch name with its kind (``conv2d``, ``dense``, ``bias``, ``bn_*``; :data:`KINDS`).
   PyTorch's layout is the canonical one, so ordinary tensors are copied as they are.
3. Import it: into Flax linen variables (attention blocks through
   ``flax_impl.linen.from_canonical``, ordinary tensors through
   ``reference_numpy.convert.to_framework_array`` and ``framework_leaf``), and into the Keras
   model (``tf_impl.load_canonical`` and the same two functions).
4. Compare the float32 logits of all three with the float64 PyTorch logits under SPEC.md's
   float32 tolerance (:func:`conformance.compare`), and print the largest difference from
   the float32 PyTorch logits.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import importlib.util
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import torch_impl
from conformance import Comparison, compare
from reference_numpy import Config, flatten, nest, param_layout, to_framework_array
from reference_numpy.convert import framework_leaf

from .architecture import CLASSES, IMAGE_SIZE, IN_CHANNELS
from .resnet_torch import ResNet

KINDS: dict[type[nn.Module], dict[str, str]] = {
    nn.Conv2d: {"weight": "conv2d", "bias": "bias"},
    nn.Linear: {"weight": "dense", "bias": "bias"},
    nn.BatchNorm2d: {"weight": "bn_weight", "bias": "bn_bias", "running_mean": "bn_mean", "running_var": "bn_var"},
}
"""The canonical kind of each tensor of an ordinary PyTorch layer; the conversion tables are keyed by kind."""


@dataclasses.dataclass
class Canonical:
    """A whole model's weights in the canonical layout.

    ``params``: name -> float64 array; ``kinds``: name -> kind, for every tensor outside an
    attention block; ``attention``: module path -> spec config of each attention block, whose
    tensors are ``params[f"{path}.{canonical name}"]``.
    """

    params: dict[str, np.ndarray]
    kinds: dict[str, str]
    attention: dict[str, Config]

    def block(self, path: str) -> dict[str, np.ndarray]:
        """The canonical params of the attention block at ``path``, under their own names."""
        return {k[len(path) + 1 :]: v for k, v in self.params.items() if k.startswith(path + ".")}


def train_torch(steps: int = 5, seed: int = 0, batch: int = 16) -> ResNet:
    """The PyTorch ResNet after ``steps`` of SGD on random data (seeded), in eval mode."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = ResNet()
    rng = np.random.default_rng(seed)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    for _ in range(steps):
        x = torch.tensor(rng.normal(size=(batch, IN_CHANNELS, IMAGE_SIZE, IMAGE_SIZE)), dtype=torch.float32)
        labels = torch.tensor(rng.integers(0, CLASSES, size=batch))
        loss = F.cross_entropy(model(x), labels)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return model.eval()


def export_canonical(model: nn.Module) -> Canonical:
    """Every tensor of ``model`` in the canonical layout (attention blocks by their port, the rest by kind)."""
    params: dict[str, np.ndarray] = {}
    kinds: dict[str, str] = {}
    attention: dict[str, Config] = {}
    for path, module in model.named_modules():
        if any(path.startswith(p + ".") for p in attention):
            continue  # inside an attention block: its port exported it
        if isinstance(module, torch_impl.AttentionModule):
            attention[path] = module.config
            params.update({f"{path}.{k}": v for k, v in torch_impl.to_canonical(module).items()})
        elif type(module) in KINDS:
            for leaf, kind in KINDS[type(module)].items():
                tensor = getattr(module, leaf)
                if tensor is not None:
                    params[f"{path}.{leaf}"] = tensor.detach().cpu().double().numpy()
                    kinds[f"{path}.{leaf}"] = kind
    held = {k for k in model.state_dict() if not k.endswith("num_batches_tracked")}
    if held != set(params):  # a layer type KINDS does not know would be lost silently
        raise ValueError(f"export missed {sorted(held - set(params))} and invented {sorted(set(params) - held)}")
    return Canonical(params, kinds, attention)


def to_flax_variables(weights: Canonical, dtype: Any = np.float32) -> dict[str, Any]:
    """Linen variables (``params``, ``batch_stats``) for :class:`examples.resnet_flax.ResNet`."""
    from flax_impl import linen

    flat: dict[str, Any] = {}
    for path, cfg in weights.attention.items():
        block = linen.from_canonical(cfg, weights.block(path), param_dtype=dtype)
        for key, value in flatten(block).items():
            collection, rest = key.split(".", 1)
            flat[f"{collection}.{path}.{rest}"] = value
    for name, kind in weights.kinds.items():
        path, _ = name.rsplit(".", 1)
        collection, leaf = framework_leaf(kind, "flax")
        flat[f"{collection}.{path}.{leaf}"] = to_framework_array(kind, weights.params[name], "flax").astype(dtype)
    return nest(flat)


def load_keras(model: Any, weights: Canonical) -> Any:
    """Assign ``weights`` to a built :class:`examples.resnet_keras.ResNet`; returns it."""
    import tf_impl

    def layer(path: str) -> Any:
        out = model
        for part in path.split("."):
            out = getattr(out, part)
        return out

    for path in weights.attention:
        tf_impl.load_canonical(layer(path), weights.block(path))
    for name, kind in weights.kinds.items():
        path, _ = name.rsplit(".", 1)
        variable = getattr(layer(path), framework_leaf(kind, "keras")[1])
        variable.assign(to_framework_array(kind, weights.params[name], "keras").astype(variable.dtype))
    return model


def _torch_logits(model: nn.Module, x: np.ndarray, dtype: torch.dtype) -> np.ndarray:
    with torch.no_grad():
        return model.to(dtype)(torch.tensor(x, dtype=dtype)).double().numpy()


def flax_logits(weights: Canonical, x_nhwc: np.ndarray) -> np.ndarray:
    from .resnet_flax import ResNet as FlaxResNet

    return np.asarray(FlaxResNet().apply(to_flax_variables(weights), x_nhwc, training=False), dtype=np.float64)


def keras_logits(weights: Canonical, x_nhwc: np.ndarray) -> np.ndarray:
    from .resnet_keras import ResNet as KerasResNet

    model = KerasResNet()
    model(x_nhwc[:1])  # build
    return np.asarray(load_keras(model, weights)(x_nhwc, training=False), dtype=np.float64)


@dataclasses.dataclass
class PortResult:
    """Logits of every framework on the same input, and their comparisons with float64 PyTorch."""

    weights: Canonical
    x: np.ndarray  # the NCHW float32 input every framework saw
    reference: np.ndarray
    logits: dict[str, np.ndarray]
    comparisons: dict[str, Comparison]
    skipped: dict[str, str]

    @property
    def passed(self) -> bool:
        return all(c.ok for c in self.comparisons.values())

    def max_difference(self, framework: str) -> float:
        """Largest |logit difference| from the float32 PyTorch logits."""
        return float(np.abs(self.logits[framework] - self.logits["torch"]).max())


FRAMEWORKS: Mapping[str, tuple[tuple[str, ...], Any]] = {
    "flax": (("jax", "flax"), flax_logits),
    "keras": (("keras", "tensorflow"), keras_logits),
}


def port(steps: int = 5, seed: int = 0, frameworks: Sequence[str] = tuple(FRAMEWORKS)) -> PortResult:
    """Train, export, import into every installed framework in ``frameworks``, compare the logits."""
    model = train_torch(steps, seed)
    weights = export_canonical(model)
    x = np.random.default_rng(seed + 1).normal(size=(4, IN_CHANNELS, IMAGE_SIZE, IMAGE_SIZE)).astype(np.float32)
    reference = _torch_logits(copy.deepcopy(model), x, torch.float64)
    logits = {"torch": _torch_logits(model, x, torch.float32)}
    skipped = {}
    for name in frameworks:
        packages, run = FRAMEWORKS[name]
        missing = [p for p in packages if importlib.util.find_spec(p) is None]
        if missing:
            skipped[name] = f"needs {', '.join(missing)}"
            continue
        logits[name] = run(weights, x.transpose(0, 2, 3, 1))
    comparisons = {fw: compare(f"logits[{fw}]", v, reference, "float32", seed=seed) for fw, v in logits.items()}
    return PortResult(weights, x, reference, logits, comparisons, skipped)


def summary(result: PortResult) -> str:
    """What was ported and how close each framework's logits are."""
    w = result.weights
    spread = max(float(np.abs(v - 1).max()) for k, v in w.params.items() if k.endswith("running_var"))
    lines = [
        f"{len(w.params)} canonical tensors; attention blocks: "
        + ", ".join(
            f"{path} ({cfg.module.upper()}, {len(param_layout(cfg))} tensors)" for path, cfg in w.attention.items()
        ),
        f"batch-norm running variances moved from 1 by up to {spread:.3g} in training",
    ]
    for fw, comparison in result.comparisons.items():
        diff = "" if fw == "torch" else f"max |logit - torch float32 logit| = {result.max_difference(fw):.3g}; "
        lines.append(f"{fw:>6}: {diff}{comparison.message}")
    lines += [f"{fw:>6}: skipped ({why})" for fw, why in result.skipped.items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.port_weights", description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5, help="SGD steps before exporting (default: 5)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    result = port(args.steps, args.seed)
    print(summary(result))
    return 0 if result.passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
