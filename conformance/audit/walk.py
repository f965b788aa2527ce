"""Walking a network: its submodules, which of them are SE, CBAM or ECA blocks, and what each receives.

PyTorch modules are walked by ``named_modules``, Keras layers by their sublayers, Flax NNX
modules by their attributes (``nnx.iter_graph``); a Flax linen network's submodules exist only
while it runs (``@compact``), so they are found during the capture, by intercepting every module
call (``flax.linen.intercept_methods``), each with its own variables.

A submodule is a candidate block when its class is named like one (``SEModule``, ``EcaLayer``,
``SqueezeExcitation``, ``CBAM``: its CamelCase words hold ``SE``, ``ECA`` or ``CBAM``, or
``Squeeze`` and ``Excit...``) and its weights could be one (no k x k convolution with more than two
output maps, at most six layers), or when its tensors alone bind to a spec module by their shapes
(:func:`conformance.verify.binding._structure` with ``auto``: two fully connected layers or 1x1
convolutions ``C -> h -> C``, optionally CBAM's ``(1, 2, k, k)`` convolution and batch norm, or one
1-channel 1-D convolution).

The network then runs once on a sample input, in eval mode, with every candidate's call wrapped:
the wrapper keeps the input the block receives, times the call (:func:`conformance.verify.worker.notify`),
and turns what would stop the network (the block raises, returns a tuple, the wrong shape, or NaN
on a finite input) into a failure of that block, returning its input unchanged so that the blocks
after it still receive an input. A candidate found by its shapes alone is a block only when its
fully connected layers (or its 1-D convolution) ran on a pooled descriptor, one value per channel
and sample; a pointwise MLP on the whole feature map has the same weights and is not one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import math
import re
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from ..runner import exception_line
from ..verify.binding import Structure, Tensor, _structure
from ..verify.targets import _flatten, _LinenBackend, _mode_kwargs, make_backend
from ..verify.worker import notify

__all__ = ["Candidate", "Capture", "Walker", "class_kind", "one_line", "walker_for"]

NETWORK_CALL = "the network's forward"
IN_NETWORK = "'s forward in the network"
"""How a call into a block (or layer) during the network's run is named to the worker's parent: ``PATH`` + this."""


class Overtime(BaseException):
    """A call into the network outlived its time limit in this process (:func:`alarm`). A BaseException, so
    that no ``except Exception`` in the code it interrupts takes it for the target's own error."""


ALARM: dict[str, float | None] = {"seconds": None}
"""The time limit :func:`alarm` enforces in this process (None: none); set by the audit when it cannot fork."""


@contextlib.contextmanager
def alarm(what: str) -> Iterator[None]:
    """In this process, interrupt the body with :class:`Overtime` after ``ALARM["seconds"]`` (a SIGALRM timer:
    the main thread only, on POSIX; it cannot stop a call stuck inside compiled code). Does nothing in a
    worker (the parent times calls there), without a limit, or where the signal cannot be used."""
    seconds = ALARM["seconds"]
    usable = (
        seconds is not None
        and hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
        and signal.getitimer(signal.ITIMER_REAL)[0] == 0  # no timer running already (an enclosing alarm)
    )
    if not usable:
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise Overtime(
            f"{what} did not return within {seconds:g} s (the time limit per call, by an alarm in this process)"
        )

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def one_line(text: str) -> str:
    """An error message on one line: Keras wraps the cause in "Exception encountered when calling X.call()",
    blank lines, terminal colours and the arguments; the cause is what matters.

    >>> one_line("RuntimeError: Exception encountered when calling L.call().\\n\\n\\x1b[1mboom\\x1b[0m\\n\\nArguments")
    'RuntimeError: boom (in L.call())'
    """
    lines = [line.strip() for line in _ANSI.sub("", text).splitlines() if line.strip()]
    if not lines:
        return text
    head = lines[0]
    m = re.search(r"(\w+(?:\.\w+)*): Exception encountered when calling (.+?)\.?$", head)
    if m and len(lines) > 1:
        return f"{head[: m.start()]}{m.group(1)}: {lines[1]} (in {m.group(2)})"
    return head if len(lines) == 1 else "; ".join(lines[:2])


def _words(name: str) -> list[str]:
    return [w.lower() for w in re.findall(r"[A-Z]+(?=[A-Z][a-z]|\d|_|$)|[A-Z]?[a-z]+|[A-Z]+|\d+", name)]


def class_kind(name: str) -> str | None:
    """The module a class name says it is (``se``, ``cbam``, ``eca``), by its words.

    >>> [class_kind(n) for n in ("SEModule", "EcaLayer", "CBAMBlock", "SqueezeExcitation", "SingleFCSE")]
    ['se', 'eca', 'cbam', 'se', 'se']
    >>> [class_kind(n) for n in ("Sequential", "SELU", "Base", "Research")]
    [None, None, None, None]
    """
    words = _words(name)
    acronyms = [w.lower() for w in re.findall(r"[A-Z]{3,}(?=[A-Z][a-z]|\d|_|$)", name)]
    for kind in ("cbam", "eca", "se"):
        if kind in words or any(a.endswith(kind) for a in acronyms):  # FCSE, ConvECA
            return kind
    if "squeeze" in words and any(w.startswith("excit") for w in words):
        return "se"
    return None


@dataclasses.dataclass
class Candidate:
    """A submodule that may be a block: where it is, what it is, how it was found."""

    path: str
    module: Any
    class_name: str
    by_class: str | None  # the kind its class name says
    structure: Structure | None  # its tensors bound by shape, when they bind cleanly
    tensor_ids: frozenset[str]
    variables: Any = None  # a Flax linen block's own variables (its module is an unbound copy)
    # filled by the capture
    calls: int = 0
    order: int | None = None  # when the network first called it, among the candidates
    input: np.ndarray | None = None
    input_shape: tuple[int, ...] | None = None
    failure: str | None = None
    layer_inputs: dict[str, tuple[int, ...]] = dataclasses.field(default_factory=dict)
    hung: bool = False  # its call in the network outlived the time limit (in this process)

    def record_call(self, a: Any, counter: Any) -> None:
        """Count a call on array ``a``; the first one fixes its order among the candidates and its input."""
        self.calls += 1
        if self.calls == 1:
            self.order = next(counter)
            self.input_shape = tuple(a.shape)
            if a.ndim == 4 and np.issubdtype(a.dtype, np.floating):
                self.input = np.array(a)

    @property
    def kind(self) -> str | None:
        if self.structure is not None:
            return {"mlp": "se", "cbam": "cbam", "eca": "eca"}[self.structure.kind or ""]
        return self.by_class

    def pooled(self, channels_axis: int) -> bool | None:
        """Whether its MLP layers (or ECA's convolution) ran on one value per channel and sample:
        None when they did not run (the block failed before them, or was never called)."""
        s = self.structure
        if s is None:
            return None
        expected: dict[str, tuple[int, int]] = {}  # layer -> (fewest, most) values per sample it may see
        for role in ("fc1.weight", "fc2.weight"):
            if role in s.bindings:
                expected[s.bindings[role].name] = (s.shape(role)[1], s.shape(role)[1])
        if "conv.weight" in s.bindings and self.input_shape is not None and len(self.input_shape) == 4:
            c, k = self.input_shape[channels_axis], s.shape("conv.weight")[0]
            expected[s.bindings["conv.weight"].name] = (c, c + k - 1)  # padded by hand (circular ECA) or not
        seen = [(self.layer_inputs[n], size) for n, size in expected.items() if n in self.layer_inputs]
        if not seen:
            return None
        return all(lo <= math.prod(shape[1:]) <= hi for shape, (lo, hi) in seen)


@dataclasses.dataclass
class Capture:
    """What one run of the network on the sample showed."""

    error: str | None = None  # the network's own forward failed (outside the blocks)


class Walker:
    """One framework's way to walk a network, name its parts and wrap their calls."""

    framework = ""
    data_format = "channels_first"

    def modules(self, model: Any) -> list[tuple[str, Any]]:
        raise NotImplementedError

    def tensors(self, module: Any) -> tuple[list[Tensor], list[str]]:
        backend = make_backend(self.framework, None, {}, instance=module)
        return backend.tensors(module)  # type: ignore[no-any-return]

    def owners(self, module: Any, names: list[str]) -> dict[str, Any]:
        """tensor name (as :meth:`tensors` names it) -> the layer holding it."""
        raise NotImplementedError

    def wrap(self, module: Any, fn: Callable[..., Any]) -> Callable[[], None]:
        """Make ``module``'s calls go through ``fn(original, *args, **kwargs)``; returns the undo."""
        raise NotImplementedError

    def first_input_channels(self, model: Any) -> int | None:
        raise NotImplementedError

    def warm_up(self, model: Any, x: np.ndarray, stubs: dict[str, str]) -> str | None:
        """Run a network whose layers make their weights on the first call once, so that they exist before
        the walk (layers in ``stubs``, which hung before, called as the identity); a sentence when that run
        failed."""
        return None

    def run(self, model: Any, x: np.ndarray) -> Any:
        raise NotImplementedError

    def as_array(self, t: Any) -> np.ndarray | None:
        """A framework tensor as NumPy (None when it is not one)."""
        try:
            a = np.asarray(t.detach().cpu() if hasattr(t, "detach") else t)
        except Exception:
            return None
        return a if a.dtype != object else None

    def signature(self, module: Any) -> str:
        """What makes two blocks the same code with the same configuration: the class, the settings of
        it and its sublayers, and the tensors' names and shapes (never their values)."""
        tensors, _ = self.tensors(module)
        return "|".join(
            [_qualname(type(module)), self._settings(module), ",".join(f"{t.name}{t.shape}" for t in tensors)]
        )

    def _settings(self, module: Any) -> str:
        return _plain_attributes(module)

    def kernel_plausible(self, tensors: list[Tensor]) -> bool:
        """Could these weights be a block's (no k x k convolution with more than two output maps, <= 6 layers)?"""
        layers = {t.name.replace("/", ".").rsplit(".", 1)[0] for t in tensors}
        if len(layers) > 6:
            return False
        for t in tensors:
            if len(t.shape) == 4:
                out, kh, kw = (
                    (t.shape[0], t.shape[2], t.shape[3])
                    if self.framework == "torch"
                    else (t.shape[3], t.shape[0], t.shape[1])
                )
                if (kh, kw) != (1, 1) and out > 2:
                    return False
        return True


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _plain(v: Any) -> str | None:
    if v is None or isinstance(v, (bool, int, float, str)):
        return repr(v)
    if isinstance(v, (tuple, list)) and all(_plain(e) is not None for e in v):
        return repr(tuple(_plain(e) for e in v))
    if isinstance(v, type):
        return _qualname(v)
    if callable(v) and hasattr(v, "__qualname__"):
        return f"{getattr(v, '__module__', '')}.{v.__qualname__}"
    return None


def _plain_attributes(obj: Any, depth: int = 0) -> str:
    """The simple settings an object holds (numbers, strings, classes, functions), and those of objects it
    holds, recursively (a few levels): what a constructor's arguments become."""
    if depth > 4:
        return ""
    items = []
    for k, v in sorted(getattr(obj, "__dict__", {}).items()):
        if k.startswith("__") or k in ("training", "_forward_hooks", "_forward_pre_hooks"):
            continue
        p = _plain(v)
        if p is not None:
            items.append(f"{k}={p}")
        elif isinstance(v, dict) and k.startswith("_") and not k.startswith(("_parameters", "_buffers")):
            continue
        elif hasattr(v, "__dict__") and not isinstance(v, np.ndarray) and not k.startswith("_"):
            items.append(f"{k}:{type(v).__qualname__}({_plain_attributes(v, depth + 1)})")
    return ",".join(items)


# ----------------------------------------------------------------------------- PyTorch


class _TorchWalker(Walker):
    framework = "torch"
    data_format = "channels_first"

    def modules(self, model: Any) -> list[tuple[str, Any]]:
        return list(model.named_modules(remove_duplicate=True))

    def owners(self, module: Any, names: list[str]) -> dict[str, Any]:
        out = {}
        for n in names:
            try:
                out[n] = module.get_submodule(n.rsplit(".", 1)[0]) if "." in n else module
            except AttributeError:
                continue
        return out

    def wrap(self, module: Any, fn: Callable[..., Any]) -> Callable[[], None]:
        had = "forward" in module.__dict__
        old = module.__dict__.get("forward")
        original = module.forward

        def forward(*args: Any, **kwargs: Any) -> Any:
            return fn(original, *args, **kwargs)

        module.forward = forward

        def undo() -> None:
            if had:
                module.forward = old
            else:
                del module.forward

        return undo

    def first_input_channels(self, model: Any) -> int | None:
        for _, p in model.named_parameters():
            if p.ndim == 4:
                return int(p.shape[1])
        return None

    def run(self, model: Any, x: np.ndarray) -> Any:
        import torch

        was = model.training
        model.eval()
        try:
            with torch.no_grad():
                p = next(iter(model.parameters()), None)
                dtype = p.dtype if p is not None and p.is_floating_point() else torch.float32
                device = p.device if p is not None else None
                return model(torch.as_tensor(x, dtype=dtype, device=device))
        finally:
            model.train(was)

    def _settings(self, module: Any) -> str:
        return repr(module) + "|" + ";".join(_plain_attributes(m) for m in module.modules())


# ----------------------------------------------------------------------------- Keras


class _KerasWalker(Walker):
    framework = "keras"
    data_format = "channels_last"

    def modules(self, model: Any) -> list[tuple[str, Any]]:
        out: list[tuple[str, Any]] = []
        seen: set[int] = set()

        def visit(path: str, layer: Any) -> None:
            if id(layer) in seen:
                return
            seen.add(id(layer))
            out.append((path, layer))
            for child in layer._flatten_layers(include_self=False, recursive=False):
                visit(f"{path}/{child.name}" if path else child.name, child)

        visit("", model)
        return out

    def owners(self, module: Any, names: list[str]) -> dict[str, Any]:
        owner: dict[str, Any] = {}
        for _, layer in self.modules(module):  # outer first: the innermost layer holding a tensor wins
            for w in layer.weights:
                owner[w.path] = layer
        return {n: owner[n] for n in names if n in owner}

    def wrap(self, module: Any, fn: Callable[..., Any]) -> Callable[[], None]:
        original = module.call
        had = "call" in module.__dict__

        def call(*args: Any, **kwargs: Any) -> Any:
            return fn(original, *args, **kwargs)

        object.__setattr__(module, "call", call)

        def undo() -> None:
            if had:
                object.__setattr__(module, "call", original)
            else:
                object.__delattr__(module, "call")

        return undo

    def first_input_channels(self, model: Any) -> int | None:
        for w in model.weights:
            if len(w.shape) == 4:
                return int(w.shape[2])
        return None

    def run(self, model: Any, x: np.ndarray) -> Any:
        return model(np.asarray(x, "float32"), training=False)

    def warm_up(self, model: Any, x: np.ndarray, stubs: dict[str, str]) -> str | None:
        layers = self.modules(model)
        if all(layer.built for _, layer in layers):
            return None
        undo = [self.wrap(layer, _labelled(path, path in stubs)) for path, layer in layers if path]
        notify("begin", (NETWORK_CALL, 0.0))
        try:
            self.run(model, x)
        except Exception as e:
            return (
                f"the network's first call, which builds its layers, raised {one_line(exception_line(e))}: layers "
                "it did not reach have no weights, and are found only by their class names"
            )
        finally:
            notify("end", NETWORK_CALL)
            for u in reversed(undo):
                u()
        return None

    def signature(self, module: Any) -> str:
        # Keras names every variable after its layer's unique name (dense_se_a/dense/kernel): shapes only
        tensors, _ = self.tensors(module)
        return "|".join([_qualname(type(module)), self._settings(module), ",".join(str(t.shape) for t in tensors)])

    def _settings(self, module: Any) -> str:
        parts = []
        for _, layer in self.modules(module):
            try:
                cfg = {k: v for k, v in layer.get_config().items() if k != "name"}
            except Exception:
                cfg = {}
            parts.append(f"{_qualname(type(layer))}{sorted((k, repr(v)) for k, v in cfg.items())}")
        return ";".join(parts)


def _raised(e: BaseException) -> str:
    """What a call into the network did: ``raised ValueError: ...``, or ``raised SystemExit (it called
    sys.exit(0))``: a SystemExit from the network is its failure, like any error, never an exit of the audit."""
    if isinstance(e, SystemExit):
        return f"raised SystemExit (it called sys.exit({e.code!r}))"
    return f"raised {one_line(exception_line(e))}"


_LABELS: list[str] = []  # the labelled calls running (innermost last)


def _labelled(path: str, stubbed: bool) -> Callable[..., Any]:
    """A pass-through call timed under its layer's name (the identity for a layer that hung before)."""

    def call(original: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if stubbed and args and len(getattr(args[0], "shape", ())) == 4:
            return args[0]
        label = f"{path}{IN_NETWORK}"
        _LABELS.append(label)
        notify("begin", (label, 0.0))
        try:
            return original(*args, **kwargs)
        finally:
            _LABELS.pop()
            notify("begin", (_LABELS[-1] if _LABELS else NETWORK_CALL, 0.0))

    return call


# ----------------------------------------------------------------------------- Flax NNX


class _NNXWalker(Walker):
    framework = "flax"
    data_format = "channels_last"

    def modules(self, model: Any) -> list[tuple[str, Any]]:
        from flax import nnx

        out = []
        for path, m in nnx.iter_graph(model):
            if isinstance(m, nnx.Module):
                out.append((".".join(map(str, path)), m))
        out.sort(key=lambda pm: pm[0].count(".") if pm[0] else -1)  # parents before children
        return out

    def owners(self, module: Any, names: list[str]) -> dict[str, Any]:
        out = {}
        for n in names:
            obj = module
            try:
                for part in n.split(".")[:-1]:
                    obj = obj[int(part)] if part.isdigit() and not hasattr(obj, part) else getattr(obj, part)
            except (AttributeError, IndexError, KeyError, TypeError):
                continue
            out[n] = obj
        return out

    def wrap(self, module: Any, fn: Callable[..., Any]) -> Callable[[], None]:
        cls = type(module)
        original = cls.__call__

        def __call__(self: Any, *args: Any, **kwargs: Any) -> Any:
            return fn(lambda *a, **k: original(self, *a, **k), *args, **kwargs)

        wrapped = type(cls.__name__, (cls,), {"__call__": __call__, "__module__": cls.__module__})
        object.__setattr__(module, "__class__", wrapped)

        def undo() -> None:
            object.__setattr__(module, "__class__", cls)

        return undo

    def first_input_channels(self, model: Any) -> int | None:
        from flax import nnx

        for _, v in nnx.to_flat_state(nnx.state(model, nnx.Param)):
            a = np.asarray(v.get_value() if hasattr(v, "get_value") else v)
            if a.ndim == 4:
                return int(a.shape[2])
        return None

    def run(self, model: Any, x: np.ndarray) -> Any:
        model.eval()
        return model(np.asarray(x, "float32"))

    def signature(self, module: Any) -> str:
        tensors, _ = self.tensors(module)
        parts = [
            f"{_qualname(type(m))}({_plain_attributes_nnx(m)})"
            for _, m in self.modules(module)  # type: ignore[arg-type]
        ]
        return "|".join([";".join(parts), ",".join(f"{t.name}{t.shape}" for t in tensors)])


def _plain_attributes_nnx(m: Any) -> str:
    items = []
    for k, v in sorted(vars(m).items()):
        if k.startswith("_"):
            continue
        p = _plain(v)
        if p is not None:
            items.append(f"{k}={p}")
    return ",".join(items)


def torch_device(model: Any) -> str | None:
    """The device of a PyTorch module's tensors when it is not the CPU (None on the CPU, or for anything else)."""
    if not hasattr(model, "parameters") or not hasattr(model, "buffers"):
        return None
    for t in [*model.parameters(), *model.buffers()]:
        if t.device.type != "cpu":
            return str(t.device)
    return None


def on_cpu(module: Any) -> Any:
    """``module`` itself on the CPU, or a CPU copy of a PyTorch module held elsewhere (verify runs on the CPU)."""
    if torch_device(module) is None:
        return module
    import copy

    return copy.deepcopy(module).cpu()


def walker_for(framework: str, model: Any) -> Walker:
    """The walker for ``model`` (``framework`` as :func:`conformance.verify` names them)."""
    if framework == "torch":
        return _TorchWalker()
    if framework == "keras":
        return _KerasWalker()
    from flax import linen, nnx

    if isinstance(model, nnx.Module):
        return _NNXWalker()
    if isinstance(model, linen.Module):
        return _LinenWalker()
    raise TypeError(f"`model` must be a Flax NNX or linen module. Received: {type(model).__name__}")


# ----------------------------------------------------------------------------- Flax linen


class _LinenWalker(Walker):
    """A linen network's submodules exist only while it runs (``@compact``): they are found during the capture,
    by intercepting every module call (``flax.linen.intercept_methods``), each with its own variables."""

    framework = "flax"
    data_format = "channels_last"

    def tensors_of(self, variables: Any) -> tuple[list[Tensor], list[str]]:
        flat = {k: np.asarray(v) for k, v in _flatten(variables).items()}
        return _LinenBackend(None, {}).tensors((None, flat))

    def first_input_channels(self, model: Any) -> int | None:
        variables = model[1]
        from reference_numpy import flatten

        for k, v in flatten(_unfreeze(variables)).items():
            if k.startswith("params.") and np.ndim(v) == 4:
                return int(np.shape(v)[2])
        return None

    def run(self, model: Any, x: np.ndarray) -> Any:
        net, variables = model
        return net.apply(variables, np.asarray(x, "float32"), **_mode_kwargs(net.__call__, False))

    def linen_signature(self, cand: Candidate) -> str:
        tensors, _ = self.tensors_of(cand.variables)
        return "|".join(
            [_qualname(type(cand.module)), repr(cand.module), ",".join(f"{t.name}{t.shape}" for t in tensors)]
        )


def _unfreeze(tree: Any) -> Any:
    return tree.unfreeze() if hasattr(tree, "unfreeze") else tree


def linen_capture(
    walker: _LinenWalker, model: Any, x: np.ndarray, stubs: dict[str, str]
) -> tuple[list[Candidate], Capture]:
    """Run a linen network once with every module call intercepted: the candidates (found from each called
    module's class and variables) with their inputs, judged as :func:`capture` judges them."""
    from flax import linen

    from reference_numpy import flatten

    found: dict[str, Candidate] = {}
    rejected: set[str] = set()
    inputs: dict[tuple[str, ...], tuple[int, ...]] = {}
    counter = itertools.count()
    active: list[str] = []

    def candidate(m: Any, path: str) -> Candidate | None:
        if path in found:
            return found[path]
        if path in rejected:
            return None
        variables = _unfreeze(m.variables) if m.scope is not None else {}
        tensors, ignored = walker.tensors_of(variables) if variables else ([], [])
        by_class = class_kind(type(m).__name__)
        if by_class is not None and not (tensors and walker.kernel_plausible(tensors)):
            by_class = None
        s = None
        if tensors:
            try:
                s = _structure(tensors, ignored, "flax", "auto", by_class or "se", None)
            except Exception:
                s = None
            if s is not None and (s.kind is None or s.problems or (s.channels is None and s.kind != "eca")):
                s = None
        if by_class is None and s is None:
            rejected.add(path)
            return None
        ids = frozenset(f"{path}.{k}" for k in flatten(variables))
        cand = Candidate(path, m.clone(parent=None), type(m).__name__, by_class, s, ids, variables=variables)
        found[path] = cand
        return cand

    def intercept(next_fun: Callable[..., Any], args: Any, kwargs: Any, context: Any) -> Any:
        if context.method_name != "__call__" or not args:
            return next_fun(*args, **kwargs)
        m = context.module
        key = tuple(str(p) for p in m.scope.path) if m.scope is not None else ()
        inp = args[0]
        a = walker.as_array(inp)
        if a is not None and key not in inputs:
            inputs[key] = tuple(a.shape)
        cand = candidate(m, ".".join(key)) if a is not None else None
        if cand is None:
            return next_fun(*args, **kwargs)
        assert a is not None
        cand.record_call(a, counter)
        judged = a.ndim == 4 and not active
        if judged and (cand.path in stubs or cand.failure is not None):
            return inp
        active.append(cand.path)
        if judged:
            notify("begin", (f"{cand.path or 'the model'}{IN_NETWORK}", 0.0))
        try:
            with alarm("its forward") if judged else contextlib.nullcontext():
                out = next_fun(*args, **kwargs)
        except Overtime as e:
            cand.failure, cand.hung = f"in the network, {e}", True
            return inp
        except (Exception, SystemExit) as e:
            if not judged:
                raise
            cand.failure = f"in the network, its forward {_raised(e)}"
            return inp
        finally:
            active.pop()
            if judged:
                notify("begin", (NETWORK_CALL, 0.0))
        if not judged:
            return out
        failure = _judge(walker, a, out)
        if failure is not None:
            cand.failure = failure
            return inp
        return out

    notify("begin", (NETWORK_CALL, 0.0))
    try:
        with linen.intercept_methods(intercept):
            walker.run(model, x)
        cap = Capture()
    except (Exception, SystemExit) as e:
        cap = Capture(error=_raised(e).removeprefix("raised "))
    finally:
        notify("end", NETWORK_CALL)
    for cand in found.values():  # what its MLP layers (or ECA's convolution) received
        if cand.structure is None:
            continue
        base = tuple(cand.path.split(".")) if cand.path else ()
        for b in cand.structure.bindings.values():
            rel = b.name.split(".")[1:-1]  # params.fc1.kernel -> fc1
            shape = inputs.get(base + tuple(rel))
            if shape is not None:
                cand.layer_inputs[b.name] = shape
    return sorted(found.values(), key=lambda c: c.path.count(".")), cap


def _judge(walker: Walker, a: np.ndarray, out: Any) -> str | None:
    """Why a block's output on the input ``a`` is not one (None when it may be)."""
    if isinstance(out, (tuple, list, dict)):
        return f"in the network it returns a {type(out).__name__} instead of one tensor with its input's shape"
    y = walker.as_array(out)
    if y is None:
        return None
    if y.shape != a.shape:
        return (
            f"in the network, on its input of shape {a.shape}, it returns shape {y.shape}: the output "
            "must keep the input's shape"
        )
    if np.issubdtype(y.dtype, np.floating) and not np.all(np.isfinite(y)) and np.all(np.isfinite(a)):
        return f"in the network it returns NaN or infinity on a finite input of shape {a.shape}"
    return None


# ----------------------------------------------------------------------------- finding and capturing


def find_candidates(walker: Walker, model: Any) -> list[Candidate]:
    """Every submodule that may be a block, parents before children."""
    out = []
    for path, m in walker.modules(model):
        try:
            tensors, ignored = walker.tensors(m)
        except Exception:
            continue
        if not tensors:
            continue
        by_class = class_kind(type(m).__name__)
        if by_class is not None and not walker.kernel_plausible(tensors):
            by_class = None
        try:
            s: Structure | None = _structure(tensors, ignored, walker.framework, "auto", by_class or "se", None)
        except Exception:
            s = None
        if s is not None and (s.kind is None or s.problems or (s.channels is None and s.kind != "eca")):
            s = None
        if by_class is None and s is None:
            continue
        ids = frozenset(_tensor_ids(walker, m))
        out.append(Candidate(path, m, type(m).__name__, by_class, s, ids))
    return out


def _tensor_ids(walker: Walker, m: Any) -> Iterator[str]:
    if walker.framework == "torch":
        for t in [*m.parameters(), *m.buffers()]:
            yield str(id(t))
    elif walker.framework == "keras":
        for w in m.weights:
            yield str(id(w))
    else:
        from flax import nnx

        for _, v in nnx.to_flat_state(nnx.state(m)):
            yield str(id(v))


def capture(walker: Walker, model: Any, x: np.ndarray, candidates: list[Candidate], stubs: dict[str, str]) -> Capture:
    """Run the network once on ``x`` with every candidate's call wrapped (see the module docstring).
    ``stubs``: paths of blocks that hung before, called as the identity this time."""
    undo: list[Callable[[], None]] = []
    counter = itertools.count()
    active: list[str] = []  # the candidates whose call is running

    def block_call(cand: Candidate) -> Callable[..., Any]:
        def call(original: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
            inp = args[0] if args else next(iter(kwargs.values()), None)
            a = walker.as_array(inp)
            if a is None:  # a symbolic call (Keras builds layers so) or no tensor: not a call to judge
                return original(*args, **kwargs)
            cand.record_call(a, counter)
            # only an outermost candidate's 4-D call is judged and, when it fails, replaced by the identity; a
            # call inside another candidate (CBAM's channel half) or on anything else runs as it is
            judged = a.ndim == 4 and not active
            if judged and (cand.path in stubs or cand.failure is not None):
                return inp
            if not judged:
                active.append(cand.path)
                try:
                    return original(*args, **kwargs)
                finally:
                    active.pop()
            notify("begin", (f"{cand.path or 'the model'}{IN_NETWORK}", 0.0))
            active.append(cand.path)
            try:
                with alarm("its forward"):
                    out = original(*args, **kwargs)
            except Overtime as e:
                cand.failure, cand.hung = f"in the network, {e}", True
                return inp
            except (Exception, SystemExit) as e:
                cand.failure = f"in the network, its forward {_raised(e)}"
                return inp
            finally:
                active.pop()
                notify("begin", (NETWORK_CALL, 0.0))
            failure = _judge(walker, a, out)
            if failure is not None:
                cand.failure = failure
                return inp
            return out

        return call

    def layer_call(cand: Candidate, name: str) -> Callable[..., Any]:
        def call(original: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
            inp = args[0] if args else next(iter(kwargs.values()), None)
            shape = getattr(inp, "shape", None)
            if shape is not None and name not in cand.layer_inputs:
                cand.layer_inputs[name] = tuple(int(d) for d in shape)
            return original(*args, **kwargs)

        return call

    try:
        paths = {c.path for c in candidates}
        for path, layer in walker.modules(model) if set(stubs) - paths else ():
            if path in stubs and path not in paths:  # a layer that hung before and is no candidate
                undo.append(walker.wrap(layer, _labelled(path, True)))
        for cand in candidates:
            if cand.structure is not None:
                names = [b.name for b in cand.structure.bindings.values() if b.role in _POOLED_ROLES]
                for name, layer in walker.owners(cand.module, names).items():
                    if layer is not cand.module:
                        undo.append(walker.wrap(layer, layer_call(cand, name)))
            undo.append(walker.wrap(cand.module, block_call(cand)))
        notify("begin", (NETWORK_CALL, 0.0))
        try:
            walker.run(model, x)
        except (Exception, SystemExit) as e:
            return Capture(error=_raised(e).removeprefix("raised "))
        finally:
            notify("end", NETWORK_CALL)
        return Capture()
    finally:
        for u in reversed(undo):
            u()


_POOLED_ROLES = ("fc1.weight", "fc2.weight", "conv.weight")
