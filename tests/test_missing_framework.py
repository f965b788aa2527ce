"""Importing a port without its framework says which extra to install (issue #13, item 6).

A missing framework is simulated in a fresh interpreter, two ways: ``sys.modules[name] = None``
(what ``import`` treats as "not installed"), and an import hook that refuses the package and
its submodules, as an uninstalled package would be.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

NONE = "sys.modules.update(dict.fromkeys({names!r}))"
HOOK = """
class _Uninstalled:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {names!r} or name in {names!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, _Uninstalled())
"""
PROBE = """
import sys
{block}
try:
    {statement}
except ImportError as e:
    cause = type(e.__cause__).__name__ if e.__cause__ is not None else None
    print(type(e).__name__, e.name, cause, str(e), sep="|")
else:
    print("imported")
print("frameworks imported:", sorted(m for m in ("torch", "jax", "flax", "keras", "tensorflow") if sys.modules.get(m)))
"""


def _import_without(package: str, names: tuple[str, ...], how: str, statement: str | None = None) -> tuple[str, str]:
    """Run ``statement`` (default: ``import package``) in a fresh interpreter where ``names`` are not installed."""
    block = (NONE if how == "none" else HOOK).format(names=names)
    statement = statement or f"import {package}"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    }
    env["KERAS_BACKEND"] = "tensorflow"
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(block=block, statement=statement)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
        check=True,
    ).stdout.splitlines()
    return out[0], out[-1]


@pytest.mark.parametrize(
    ("package", "missing", "extra"),
    [
        pytest.param("torch_impl", ("torch",), "torch", id="torch_impl"),
        pytest.param("flax_impl", ("jax",), "flax", id="flax_impl-no-jax"),
        pytest.param("flax_impl", ("flax",), "flax", id="flax_impl-no-flax"),
        pytest.param("tf_impl", ("keras",), "tf", id="tf_impl"),
    ],
)
@pytest.mark.parametrize("how", ["none", "hook"])
def test_a_missing_framework_names_the_extra(package: str, missing: tuple[str, ...], extra: str, how: str) -> None:
    result, _ = _import_without(package, missing, how)
    kind, name, cause, message = result.split("|", 3)
    assert kind == "ModuleNotFoundError" and name == missing[0]
    assert f'pip install "attnspec[{extra}]"' in message and missing[0] in message.lower()
    # chained to the original error where there was one (find_spec just answers None for sys.modules[...] = None)
    assert cause == ("None" if package == "flax_impl" and how == "none" else "ModuleNotFoundError")


def test_flax_impl_checks_without_importing_jax() -> None:
    result, imported = _import_without("flax_impl", (), "none")
    assert result == "imported" and imported == "frameworks imported: []"


@pytest.mark.skipif(importlib.util.find_spec("keras") is None, reason="needs keras installed")
def test_keras_without_tensorflow_names_the_tf_extra() -> None:
    result, _ = _import_without("tf_impl", ("tensorflow",), "hook")
    kind, name, _, message = result.split("|", 3)
    assert kind == "ModuleNotFoundError" and name == "tensorflow"
    assert 'pip install "attnspec[tf]"' in message


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="needs torch installed")
def test_a_broken_framework_keeps_its_own_error() -> None:
    """Only the missing framework is caught: a broken install (here torch without torch._C) is not disguised."""
    result, _ = _import_without("torch_impl", ("torch._C",), "hook")
    assert result != "imported"
    assert "attnspec[" not in result and "torch._C" in result


@pytest.mark.parametrize(
    ("statement", "missing", "extra"),
    [
        pytest.param("import torch_impl.se", "torch", "torch", id="torch_impl.se"),
        pytest.param("from torch_impl import CBAM", "torch", "torch", id="from-torch_impl"),
        pytest.param("from flax_impl.nnx import CBAM", "flax", "flax", id="flax_impl.nnx"),
        pytest.param("from flax_impl import linen", "jax", "flax", id="from-flax_impl"),
        pytest.param("from tf_impl.se import SqueezeExcite", "keras", "tf", id="tf_impl.se"),
    ],
)
def test_importing_a_submodule_names_the_extra_too(statement: str, missing: str, extra: str) -> None:
    """The package's ``__init__`` runs first, so a submodule or a name from it says the same."""
    result, _ = _import_without("", (missing,), "hook", statement)
    kind, name, _, message = result.split("|", 3)
    assert kind == "ModuleNotFoundError" and name == missing
    assert f'pip install "attnspec[{extra}]"' in message


def _extras() -> dict[str, set[str]]:
    """pyproject.toml's extras -> the top-level distributions each installs (self-references expanded)."""
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]

    def names(extra: str) -> set[str]:
        out: set[str] = set()
        for req in extras[extra]:
            head = re.split(r"[\s;<>=!~]", req, maxsplit=1)[0]
            if head.startswith("attnspec["):
                for inner in head[len("attnspec[") : -1].split(","):
                    out |= names(inner)
            else:
                out.add(head.split("[")[0].lower())
        return out

    return {extra: names(extra) for extra in extras}


DISTRIBUTIONS = {"torch": {"torch"}, "jax": {"jax"}, "flax": {"flax"}, "keras": {"keras"}}
DISTRIBUTIONS["tensorflow"] = {"tensorflow", "tensorflow-cpu"}
"""Import name -> the distributions that provide it."""


@pytest.mark.parametrize(
    ("extra", "packages"),
    [("torch", ("torch",)), ("flax", ("jax", "flax")), ("tf", ("keras", "tensorflow"))],
)
def test_the_extras_the_messages_name_install_the_framework(extra: str, packages: tuple[str, ...]) -> None:
    installs = _extras()[extra]
    for package in packages:
        assert installs & DISTRIBUTIONS[package], f"attnspec[{extra}] does not install {package}: {sorted(installs)}"
    assert _extras()["all"] >= installs


def test_the_report_names_the_same_extras() -> None:
    """``python -m conformance`` tells how to install a missing framework with the extras of pyproject.toml."""
    from conformance import ADAPTERS
    from conformance.report import EXTRAS, install_hint

    extras = _extras()
    for framework, (_, _, packages) in ADAPTERS.items():
        if not packages:
            continue  # numpy: always there
        installs = extras[EXTRAS[framework]]
        assert all(installs & DISTRIBUTIONS[p] for p in packages), (framework, EXTRAS[framework])
    assert install_hint(["torch", "flax.linen", "flax.nnx", "keras"]) == 'pip install "attnspec[torch,flax,tf]"'
