"""The Flax port's docstring examples run as tests (they print the parameter trees the docs promise)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

pytestmark = pytest.mark.flax
pytest.importorskip("jax")
pytest.importorskip("flax")

import flax_impl  # noqa: E402

MODULES = ["flax_impl", *sorted(info.name for info in pkgutil.walk_packages(flax_impl.__path__, "flax_impl."))]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS, report=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
