"""Framework adapters: one per implementation the conformance suite can check.

Frameworks are imported only when their adapter is used, so that listing adapters costs nothing.
"""

from __future__ import annotations

import importlib
import importlib.util

from reference_numpy import REQUIRES

from .base import Adapter, Outputs

__all__ = ["ADAPTERS", "Adapter", "Outputs", "get_adapter", "is_installed"]

# name (the reference, then ``reference_numpy.PORTS``) -> (module path, class name, top-level packages it needs)
ADAPTERS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "numpy": ("conformance.adapters.numpy_ref", "NumpyAdapter", ()),
    "torch": ("conformance.adapters.torch_adapter", "TorchAdapter", REQUIRES["torch"]),
    "flax.linen": ("conformance.adapters.flax_adapter", "LinenAdapter", REQUIRES["flax"]),
    "flax.nnx": ("conformance.adapters.flax_adapter", "NNXAdapter", REQUIRES["flax"]),
    "keras": ("conformance.adapters.keras_adapter", "KerasAdapter", REQUIRES["keras"]),
}


def _check_name(name: object) -> None:
    if not isinstance(name, str) or name not in ADAPTERS:
        raise ValueError(f"Unknown framework {name!r}. Expected one of {', '.join(map(repr, ADAPTERS))}")


def is_installed(name: str) -> bool:
    """Whether the packages adapter ``name`` needs are importable (without importing them)."""
    _check_name(name)
    return all(importlib.util.find_spec(p) is not None for p in ADAPTERS[name][2])


def get_adapter(name: str) -> Adapter:
    """Instantiate adapter ``name`` (imports its framework)."""
    _check_name(name)
    module, cls, needs = ADAPTERS[name]
    if not is_installed(name):
        raise ModuleNotFoundError(f"Framework {name!r} needs {', '.join(needs)}, which is not installed")
    return getattr(importlib.import_module(module), cls)()
