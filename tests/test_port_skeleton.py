"""One skeleton across the ports (issue #13 item 7): registry, hooks, constructors, weight loads, vocabulary.

A reader who knows one port knows the others: every port looks its classes up with
``class_for``, builds parameters in ``_build`` and computes in ``_attend``, lists every knob of the
spec in its constructor's signature, and loads weights with ``load_canonical(module, params,
strict=True)``, which returns the module loaded into. The expectations come from
``reference_numpy`` (the config dataclasses, ``MODULES``, ``PORTS``), never from a port.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import pathlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import reference_numpy as ref
from reference_numpy import CONFIG_TYPES, DATA_FORMATS, EXTRAS, FRAMEWORKS, MODULES, PORTS, REQUIRES, KeyMismatchError

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = {"torch": "torch_impl", "flax.linen": "flax_impl.linen", "flax.nnx": "flax_impl.nnx", "keras": "tf_impl"}
"""Each port's Python package."""
MARKS = {"torch": pytest.mark.torch, "flax": pytest.mark.flax, "keras": pytest.mark.keras}
PORT_PARAMS = [pytest.param(port, id=port, marks=MARKS[fw]) for fw, ports in PORTS.items() for port in ports]
CFG = ref.CBAMConfig(6, rd_channels=2, spatial_kernel_size=3)


def _package(port: str) -> Any:
    fw = next(fw for fw, ports in PORTS.items() if port in ports)
    for name in REQUIRES[fw]:
        pytest.importorskip(name)
    import importlib

    return importlib.import_module(PACKAGES[port])


def _base(port: str) -> type:
    pkg = _package(port)
    return next(c for c in inspect.getmro(pkg.class_for("se")) if c.__module__.endswith("._base"))


# ----------------------------------------------------------------------------- vocabulary


def test_vocabulary_is_declared_once_in_the_spec() -> None:
    from conformance import ADAPTERS
    from conformance.report import ALIASES
    from conformance.report import EXTRAS as PORT_EXTRAS

    assert MODULES == tuple(CONFIG_TYPES) == ("se", "cbam", "eca")
    assert all(CONFIG_TYPES[m].module == m for m in MODULES)
    assert DATA_FORMATS == ("channels_first", "channels_last")
    assert tuple(PORTS) == tuple(EXTRAS) == tuple(REQUIRES) == FRAMEWORKS
    for fw in FRAMEWORKS:  # every framework of the vocabulary has a weight layout
        assert ref.framework_layout(CFG, fw)
    all_ports = [p for ports in PORTS.values() for p in ports]
    assert list(ADAPTERS) == ["numpy", *all_ports] and set(PACKAGES) == set(all_ports)
    assert ALIASES == {"flax": ("flax.linen", "flax.nnx")}
    assert PORT_EXTRAS == {"torch": "torch", "flax.linen": "flax", "flax.nnx": "flax", "keras": "tf"}


def _imports(path: pathlib.Path) -> list[str]:
    """Every module ``path`` imports from, absolute (``from .x import`` as the package's ``x``)."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            out.append(".".join(p for p in (base, node.module or "") if p))
        elif isinstance(node, ast.Import):
            out += [a.name for a in node.names]
    return out


SKELETON_FILES = [
    *(f"torch_impl/{f}.py" for f in ("__init__", "_base", "se", "cbam", "eca")),
    *(f"flax_impl/{f}.py" for f in ("__init__", "_layout")),
    *(
        f"flax_impl/{api}/{f}.py"
        for api in ("linen", "nnx")
        for f in ("__init__", "_base", "se", "cbam", "eca", "weights")
    ),
    *(f"tf_impl/{f}.py" for f in ("__init__", "_base", "se", "cbam", "eca")),
]


@pytest.mark.parametrize("path", SKELETON_FILES)
def test_ports_take_the_spec_from_its_public_package(path: str) -> None:
    internal = [m for m in _imports(ROOT / path) if m.startswith("reference_numpy.")]
    assert not internal, f"{path} imports {internal}: what a port needs is exported by reference_numpy"


@pytest.mark.parametrize("path", sorted((ROOT / "conformance" / "adapters").glob("*.py")), ids=lambda p: p.name)
def test_adapters_use_only_what_the_ports_publish(path: pathlib.Path) -> None:
    private = [
        m
        for m in _imports(path)
        if m.split(".")[0] in ("torch_impl", "flax_impl", "tf_impl") and any(p.startswith("_") for p in m.split("."))
    ]
    assert not private, f"{path.name} imports {private}"


# ----------------------------------------------------------------------------- registry and hooks


@pytest.mark.parametrize("port", PORT_PARAMS)
def test_every_port_exports_the_same_api(port: str) -> None:
    pkg = _package(port)
    assert set(ref.PORT_API) <= set(pkg.__all__)
    assert [pkg.class_for(m).__name__ for m in MODULES] == ["SqueezeExcite", "CBAM", "ECA"]
    assert all(getattr(pkg, name) is pkg.class_for(m) for name, m in zip(ref.PORT_API[:3], MODULES, strict=True))


@pytest.mark.parametrize("port", PORT_PARAMS)
def test_one_registry_idiom(port: str) -> None:
    pkg = _package(port)
    for module in MODULES:
        cls = pkg.class_for(module)
        assert cls.module == module and cls.__module__ == f"{PACKAGES[port]}.{module}"
    with pytest.raises(ValueError, match=r"`module` must be one of 'se', 'cbam', 'eca'\. Received: module='bam'"):
        pkg.class_for("bam")


@pytest.mark.parametrize("port", PORT_PARAMS)
def test_the_same_hook_names(port: str) -> None:
    base = _base(port)
    assert {"_build", "_attend"} <= set(vars(base)), base
    named = {n for c in (base, *(_package(port).class_for(m) for m in MODULES)) for n in vars(c)}
    assert not named & {"attend", "_run", "spec_module"}


# ----------------------------------------------------------------------------- constructors


def _constructor(port: str, module: str) -> Callable[..., Any]:
    cls = _package(port).class_for(module)
    return cls.create if port == "flax.linen" else cls  # Linen modules are dataclasses of a config: create takes knobs


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("port", PORT_PARAMS)
def test_every_constructor_lists_every_knob(port: str, module: str) -> None:
    """The knobs, with the spec's defaults, are the config dataclass's fields: one source of truth."""
    params = inspect.signature(_constructor(port, module)).parameters
    fields = [f for f in dataclasses.fields(CONFIG_TYPES[module]) if f.name != "channels"]
    assert list(params)[: len(fields) + 2] == ["channels", *(f.name for f in fields), "preset"]
    for f in fields:
        assert params[f.name].kind is inspect.Parameter.KEYWORD_ONLY and params[f.name].default == f.default
    var_keyword = [p.name for p in params.values() if p.kind is inspect.Parameter.VAR_KEYWORD]
    assert var_keyword == (["kwargs"] if port == "keras" else [])  # Keras's own layer arguments, nothing else


@pytest.mark.keras
def test_keras_layers_share_one_text_for_the_common_arguments() -> None:
    tf_impl = _package("keras")
    for module in MODULES:
        doc = tf_impl.class_for(module).__doc__
        assert "{" not in doc.split("Example:")[0], doc
        assert "data_format:" in doc and "\n    Input shape:\n" in doc and "\n    Output shape:\n" in doc
        args = " ".join(doc.split("Args:")[1].split("Input shape:")[0].split())
        assert all(f"{k}," in args or f"{k}:" in args for k in ref.knob_names(module)), args
        assert all(f'``"{p}"``' in args for p in CONFIG_TYPES[module].presets), args


@pytest.mark.keras
def test_keras_instances_keep_the_signature_of_call() -> None:
    """The class shows the constructor; an instance (what ``tf.function(layer)`` inspects) its own call."""
    tf_impl = _package("keras")
    layer = tf_impl.ECA(8)
    assert "kernel_size" in inspect.signature(tf_impl.ECA).parameters
    assert "kernel_size" not in inspect.signature(layer).parameters


# ----------------------------------------------------------------------------- load_canonical


def _built(port: str) -> Any:
    """A module of CFG holding weights: for Linen, bound to its variables."""
    pkg = _package(port)
    if port == "torch":
        return pkg.from_config(CFG)
    if port == "flax.nnx":
        from flax import nnx

        return pkg.from_config(CFG, rngs=nnx.Rngs(0), data_format="channels_first")
    if port == "flax.linen":
        import jax

        module = pkg.from_config(CFG, data_format="channels_first")
        return module.bind(module.init(jax.random.key(0), np.ones((2, 6, 4, 5), np.float32)))
    layer = pkg.from_config(CFG, data_format="channels_first")
    layer.build((None, 6, 4, 5))
    return layer


def _assert_holds(pkg: Any, module: Any, want: dict[str, np.ndarray]) -> None:
    """``module`` holds exactly ``want`` (in float32), read back through the port's ``to_canonical``."""
    got = pkg.to_canonical(module)
    assert sorted(got) == sorted(want)
    for k, v in want.items():
        np.testing.assert_array_equal(got[k], v.astype(np.float32))


@pytest.mark.parametrize("port", PORT_PARAMS)
def test_load_canonical_has_one_signature(port: str) -> None:
    params = inspect.signature(_package(port).load_canonical).parameters
    assert list(params) == ["module", "params", "strict"] and params["strict"].default is True


def _loaded(port: str) -> tuple[Any, Any, Any, dict[str, np.ndarray]]:
    """(the port's package, a module holding weights, what loading params into it returned, the params)."""
    pkg, module = _package(port), _built(port)
    params = {k: v + 1.0 for k, v in ref.init_params(CFG, seed=3).items()}  # differs from any initialisation
    return pkg, module, pkg.load_canonical(module, params), params


@pytest.mark.parametrize("port", PORT_PARAMS)
def test_load_canonical_returns_the_module_loaded_into(port: str) -> None:
    pkg, module, loaded, params = _loaded(port)
    if port == "flax.linen":  # no state in the module: the same module, bound to the loaded variables
        assert type(loaded) is type(module) and loaded.config == module.config and loaded is not module
    else:
        assert loaded is module
    _assert_holds(pkg, loaded, params)


@pytest.mark.parametrize("port", PORT_PARAMS)
def test_strict_false_means_the_same_everywhere(port: str) -> None:
    """A subset is loaded, the other names keep their values; unexpected and mis-shaped keys still fail."""
    pkg, _, module, first = _loaded(port)
    subset = {"spatial.conv.weight": np.full((1, 2, 3, 3), 0.5), "spatial.bn.running_var": np.array([2.0])}
    module = pkg.load_canonical(module, subset, strict=False)
    _assert_holds(pkg, module, {**first, **subset})
    assert not np.array_equal(first["spatial.conv.weight"], subset["spatial.conv.weight"])  # the load changed it
    with pytest.raises(KeyMismatchError, match=r"missing keys: channel\.fc1\.weight"):
        pkg.load_canonical(module, subset)
    with pytest.raises(KeyMismatchError, match=r"unexpected keys: spatial\.conv\.bias"):
        pkg.load_canonical(module, {"spatial.conv.bias": np.zeros(1)}, strict=False)
    with pytest.raises(KeyMismatchError, match=r"mis-shaped keys: spatial\.bn\.running_var"):
        pkg.load_canonical(module, {"spatial.bn.running_var": np.zeros(2)}, strict=False)
    _assert_holds(pkg, module, {**first, **subset})  # the failed loads changed nothing
    with pytest.raises(TypeError, match=r"`strict` must be a bool\. Received: strict='no' of type str"):
        pkg.load_canonical(module, subset, strict="no")


@pytest.mark.flax
def test_linen_strict_false_needs_variables_to_keep() -> None:
    linen = _package("flax.linen")
    module = linen.from_config(CFG)
    with pytest.raises(ValueError, match=r"strict=False\) loads a subset into the variables of a bound module"):
        linen.load_canonical(module, {"spatial.bn.running_var": np.array([2.0])}, strict=False)
    variables = linen.load_canonical(module, ref.init_params(CFG)).variables
    np.testing.assert_array_equal(
        linen.to_canonical(module, variables)["spatial.bn.running_var"], np.ones(1, np.float32)
    )
