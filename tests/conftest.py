"""Shared test fixtures. Frameworks are imported lazily, inside the tests that need them."""

from __future__ import annotations

import functools

import pytest

from conformance import ADAPTERS, Adapter, get_adapter

PORTS = [name for name in ADAPTERS if name != "numpy"]


@functools.cache
def _adapter(name: str) -> Adapter:
    return get_adapter(name)


def adapter_or_skip(name: str) -> Adapter:
    """The adapter for ``name``; skips (naming the missing package) only when its framework is absent."""
    for package in ADAPTERS[name][2]:
        pytest.importorskip(package)
    return _adapter(name)


def port_params(*names: str) -> list:
    """pytest params for ports, each marked with its framework (``-m torch`` selects PyTorch)."""
    marks = {"torch": "torch", "flax.linen": "flax", "flax.nnx": "flax", "keras": "keras"}
    return [pytest.param(n, id=n, marks=getattr(pytest.mark, marks[n])) for n in (names or PORTS)]
