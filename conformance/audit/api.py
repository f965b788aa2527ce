"""The audit pipeline: find the blocks, capture their inputs, verify each (identifying each configuration once)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from reference_numpy import FRAMEWORKS

from ..runner import check_case
from ..runner import exception_line as _last_line
from ..verify import worker
from ..verify.api import TargetImportError, check_seed, load_target, verify
from ..verify.binding import _structure
from ..verify.check import ThirdPartyAdapter, own_weights_case
from ..verify.report import VerifyReport
from ..verify.targets import framework_of, make_backend
from ..verify.worker import DEFAULT_TIMEOUT, TargetDied, calling, cannot_fork, notify, run_isolated
from .report import AuditReport, BlockReport
from .walk import (
    ALARM,
    IN_NETWORK,
    Candidate,
    Overtime,
    Walker,
    _LinenWalker,
    alarm,
    capture,
    find_candidates,
    linen_capture,
    on_cpu,
    one_line,
    torch_device,
    walker_for,
)

__all__ = ["DEFAULT_SPATIAL", "audit"]

MAX_SAMPLE = 2**28
"""The most values a sample input ``input_shape`` may ask for (1 GiB in float32)."""

DEFAULT_SPATIAL = 64
"""Height and width of the default sample input: a ResNet's fifth stage still sees 2 x 2 maps."""


def audit(
    model: Any,
    *,
    framework: str | None = None,
    input_shape: tuple[int, ...] | None = None,
    sample: Any = None,
    variables: Any = None,
    seed: int = 0,
    timeout: float = DEFAULT_TIMEOUT,
    isolate: bool = True,
) -> AuditReport:
    """Find every SE, CBAM and ECA block in the network ``model`` and verify each where it sits.

    ``model``: a network instance (a PyTorch ``nn.Module``, a Keras model or layer, a Flax NNX
    module, or a Flax linen module with its ``variables``), a function building one (a linen one returns
    ``(module, variables)``), or ``"package.module:factory"``. ``framework``: ``torch``,
    ``keras`` or ``flax`` (told by an instance's class when None). A block is found by its class
    name or by its weights' shapes (see :mod:`conformance.audit.walk`); the network runs once, in
    eval mode, on ``sample`` (an input it takes, in its data format) or on a standard normal input
    of ``input_shape`` (default: batch 2, the first convolution's input channels, 64 x 64), and each
    block is verified by :func:`conformance.verify` with its own weights and the input it received.
    Blocks of the same class and configuration are identified once; the others are checked with
    their own weights and input against the configuration found.

    ``timeout``: seconds each call into the network or a block may take (the network and its blocks
    run in a worker process). A process that has started JAX or TensorFlow cannot fork one: there they
    run here, each call into a block (in the network and in its check) limited to ``timeout`` by an
    alarm signal (main thread, POSIX; it cannot stop a call stuck in compiled code), and the report
    says so; ``isolate=False`` runs here without limits. A block that raises, hangs, returns a
    tuple, the wrong shape or NaN is a failed block with its reason. Mistakes in the arguments raise
    ``ValueError`` or ``TypeError``.
    """
    started = time.monotonic()
    instance_fw = None if isinstance(model, str) or isinstance(model, type) else framework_of(model)
    if framework is None:
        if instance_fw is None:
            raise ValueError("`framework` must be given for a model that is not a module instance. Received: None")
        framework = instance_fw
    if framework not in FRAMEWORKS:
        raise ValueError(f"`framework` must be one of {', '.join(map(repr, FRAMEWORKS))}. Received: {framework!r}")
    if instance_fw is not None and instance_fw != framework:
        raise ValueError(f"`framework` is {framework!r}, but the model is a {instance_fw} module")
    if not isinstance(model, str) and instance_fw is None and not callable(model):
        raise TypeError(
            "`model` must be a network instance, a function building one or 'package.module:factory'. "
            f"Received: {type(model).__name__}"
        )
    if not (isinstance(timeout, (int, float)) and not isinstance(timeout, bool) and timeout > 0):
        raise ValueError(f"`timeout` must be a number of seconds > 0. Received: timeout={timeout!r}")
    check_seed(seed)
    if not isinstance(isolate, bool):
        raise TypeError(f"`isolate` must be a bool. Received: isolate={isolate!r}")
    if input_shape is not None:
        if not isinstance(input_shape, (tuple, list)):
            raise TypeError(f"`input_shape` must be a tuple of ints >= 1. Received: input_shape={input_shape!r}")
        input_shape = tuple(input_shape)
        if not input_shape or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in input_shape):
            raise ValueError(f"`input_shape` must be a tuple of ints >= 1. Received: input_shape={input_shape!r}")
        if math.prod(input_shape) > MAX_SAMPLE:
            raise ValueError(
                f"`input_shape` asks for a sample of more than the {MAX_SAMPLE} values an audit draws. "
                f"Received: input_shape={input_shape!r}"
            )
    if sample is not None:
        sample = np.asarray(sample.detach().cpu() if hasattr(sample, "detach") else sample)
        if not np.issubdtype(sample.dtype, np.floating):
            raise ValueError(f"`sample` must be a floating array. Received: dtype {sample.dtype}")
    name = model if isinstance(model, str) else _label(model)
    if instance_fw == "flax":
        from flax import linen

        if isinstance(model, linen.Module):
            if variables is None:
                raise ValueError(
                    "A Flax linen network holds no weights: pass its variables with it (variables={'params': ...})"
                )
            model = (model, variables)
    elif variables is not None:
        raise ValueError("`variables` is for a Flax linen network only")

    rows: dict[str, BlockReport] = {}
    meta: dict[str, Any] = {}
    current: list[dict[str, Any] | None] = [None]

    def on_partial(message: tuple[str, Any]) -> None:
        kind, payload = message
        if kind == "meta":
            meta.update(payload)
        elif kind == "block":
            current[0] = payload
        elif kind == "row":
            rows[payload.path] = payload
            current[0] = None

    kwargs: dict[str, Any] = dict(framework=framework, input_shape=input_shape, sample=sample, seed=seed)
    notes: list[str] = []
    incomplete: list[str] = []  # why the audit could not check the whole network
    unsafe = cannot_fork(framework) if isolate else "isolate=False"
    device = torch_device(model) if framework == "torch" else None
    if device is not None:
        notes.append(f"the network is on {device}: its blocks are verified on CPU copies")
        if unsafe is None and isolate:
            unsafe = f"PyTorch on {device}"
    if unsafe is not None:
        if isolate:
            notes.append(
                f"run in this process: this process has started {unsafe}, which a forked worker cannot run; each "
                f"call into a block (in the network and in its check) is limited to {timeout:g} s by an alarm "
                "signal, which cannot stop a call stuck inside compiled code (the command line, which starts no framework "
                "itself, always isolates the network)"
            )
        ALARM["seconds"] = timeout if isolate else None
        worker.IN_PROCESS_LIMIT = alarm if isolate else None
        try:
            _session(model, done=set(), stubs={}, sink=on_partial, **kwargs)
        except TargetImportError as e:
            notes.append(str(e))
            incomplete.append(str(e))
        finally:
            ALARM["seconds"], worker.IN_PROCESS_LIMIT = None, None
    else:
        stubs: dict[str, str] = {}
        for _ in range(64):  # one more run per block that hangs or kills its worker
            try:
                run_isolated(
                    _session,
                    (model,),
                    {**kwargs, "done": set(rows), "stubs": dict(stubs)},
                    timeout=timeout,
                    on_partial=on_partial,
                )
                break
            except TargetImportError as e:
                notes.append(str(e))
                incomplete.append(str(e))
                break
            except TargetDied as e:
                block = current[0]
                during = e.during or ""
                if block is not None:
                    rows[block["path"]] = BlockReport(
                        **block, passed=False, identified=None, config=None, precision=None, diagnosis=[str(e)]
                    )
                    current[0] = None
                elif during.endswith(IN_NETWORK) and during[: -len(IN_NETWORK)] not in stubs:
                    path, message = during[: -len(IN_NETWORK)], str(e)
                    stubs["" if path == "the model" else path] = (
                        f"in the network, its forward {message.removeprefix(f'{during} ')}"
                        if message.startswith(during)
                        else f"when the network called it, {message}"
                    )
                else:
                    notes.append(f"the audit stopped: {e}")
                    incomplete.append(f"the audit stopped: {e}")
                    break
    order = meta.get("order", [])
    blocks = [rows[p] for p in order if p in rows]
    notes = [*meta.get("notes", []), *notes]
    incomplete = [*meta.get("incomplete", []), *incomplete]
    missing = [p or "<the model>" for p in order if p not in rows]
    if missing:
        incomplete.append(f"blocks found but not checked: {', '.join(missing)}")
    if not blocks and not incomplete:
        notes.append("no SE, CBAM or ECA block was found: nothing was checked, which is not a pass")
    return AuditReport(
        name,
        framework,
        meta.get("input_shape"),
        blocks,
        notes,
        meta.get("skipped", []),
        seconds=time.monotonic() - started,
        incomplete=incomplete,
    )


def _label(model: Any) -> str:
    if framework_of(model) is not None:
        return f"{type(model).__qualname__} instance"
    return getattr(model, "__qualname__", type(model).__qualname__)


def _emit(sink: Callable[[Any], None] | None, kind: str, payload: Any) -> None:
    if not notify("partial", (kind, payload)) and sink is not None:
        sink((kind, payload))


def _is_linen_pair(obj: Any) -> bool:
    return isinstance(obj, tuple) and len(obj) == 2 and framework_of(obj[0]) == "flax"


def _materialise(model: Any, framework: str) -> Any:
    if isinstance(model, str):
        model = load_target(model)
    if framework_of(model) is not None or _is_linen_pair(model):
        return model
    with calling("building the network", at_least=DEFAULT_TIMEOUT):
        built = model()
    if framework_of(built) is None and not _is_linen_pair(built):
        raise TypeError(f"the factory returned a {type(built).__name__}, not a {framework} module")
    return built


def _sample(
    walker: Walker, model: Any, input_shape: tuple[int, ...] | None, sample: np.ndarray | None, seed: int
) -> tuple[np.ndarray, list[str]]:
    if sample is not None:
        return sample, [f"sample input: the one given, shape {tuple(sample.shape)}"]
    how = "given"
    if input_shape is None:
        how = "default"
        declared = _declared_shape(walker, model)
        if declared is not None:
            input_shape, how = declared, "the network's declared input shape"
        else:
            c = walker.first_input_channels(model)
            if c is None:
                raise ValueError(
                    "`input_shape` must be given: the network has no 2-D convolution whose input channels tell it"
                )
            s = DEFAULT_SPATIAL
            input_shape = (2, c, s, s) if walker.data_format == "channels_first" else (2, s, s, c)
    x = np.random.default_rng(seed).normal(size=input_shape).astype(np.float32)
    return x, [f"sample input: standard normal, shape {input_shape} ({how}; seed {seed}), the network in eval mode"]


def _declared_shape(walker: Walker, model: Any) -> tuple[int, ...] | None:
    if walker.framework != "keras":
        return None
    try:
        shape = tuple(model.inputs[0].shape)
    except Exception:
        return None
    return tuple(2 if i == 0 and d is None else (DEFAULT_SPATIAL if d is None else int(d)) for i, d in enumerate(shape))


def _session(
    model: Any,
    *,
    framework: str,
    input_shape: tuple[int, ...] | None,
    sample: np.ndarray | None,
    seed: int,
    done: set[str],
    stubs: dict[str, str],
    sink: Callable[[Any], None] | None = None,
) -> None:
    """Build (or take) the network, capture its blocks' inputs, verify each block; results go out as they
    come (:func:`conformance.verify.worker.notify`, or ``sink`` in this process)."""
    if isinstance(model, str):
        model = load_target(model)  # a module that does not exist: ValueError, a usage mistake
    try:
        net = _materialise(model, framework)
    except Exception as e:
        said = f"building the network raised {_last_line(e)}"
        _emit(sink, "meta", {"notes": [said], "order": [], "incomplete": [said]})
        return
    walker = walker_for(framework, net[0] if _is_linen_pair(net) else net)
    x, notes = _sample(walker, net, input_shape, sample, seed)
    if isinstance(walker, _LinenWalker):  # its submodules exist only while it runs: found as they are called
        candidates, cap = linen_capture(walker, net, x, stubs)
    else:
        warm = walker.warm_up(net, x, stubs)  # layers that make their weights on the first call (Keras) make them now
        if warm is not None:
            notes.append(warm)
        candidates = find_candidates(walker, net)
        cap = capture(walker, net, x, candidates, stubs)
    if cap.error is not None:
        notes.append(
            "blocks the network's forward did not reach on the sample input are checked on generated inputs, "
            "and those found by their shapes alone cannot be told from other layers (pass input_shape / "
            "--input-shape if the sample's shape is wrong)"
        )
    failed = [c.path for c in candidates if c.failure is not None or c.path in stubs]
    if failed:
        notes.append(
            f"in the run that captured the inputs, the failing blocks ({', '.join(failed)}) were called as the "
            "identity, so that the blocks after them still received an input"
        )
    blocks, skipped = _select(walker, candidates, network_failed=cap.error is not None)
    notes += [
        f"{path or 'the model'} is no block, but {stubs[path].replace('its forward', 'its call')}: it was called "
        "as the identity"
        for path in stubs
        if path not in {c.path for c in blocks}
    ]
    _emit(
        sink,
        "meta",
        {
            "notes": notes,
            "order": [c.path for c in blocks],
            "skipped": skipped,
            "input_shape": tuple(int(d) for d in x.shape),
            "incomplete": []
            if cap.error is None
            else [f"the network's forward raised {cap.error} on the sample input"],
        },
    )
    groups: dict[str, tuple[str, VerifyReport]] = {}
    for cand in blocks:
        if cand.path in done:
            continue
        info: dict[str, Any] = {
            "path": cand.path,
            "module": cand.kind,
            "class_name": cand.class_name,
            "found_by": _found_by(cand),
            "input_shape": cand.input_shape,
        }
        _emit(sink, "block", info)
        try:
            row = _check_block(walker, cand, info, groups, stubs, seed)
        except Overtime as e:  # a call of verify's into it, in this process
            row = BlockReport(**info, passed=False, identified=None, config=None, precision=None, diagnosis=[str(e)])
        _emit(sink, "row", row)


def _found_by(cand: Candidate) -> str:
    if cand.by_class and cand.structure is not None:
        return "class and shape"
    return "class" if cand.by_class else "shape"


def _is_below(inner: str, outer: str, sep: str) -> bool:
    return inner != outer and (outer == "" or inner.startswith(outer + sep))


def _select(
    walker: Walker, candidates: list[Candidate], *, network_failed: bool = False
) -> tuple[list[Candidate], list[tuple[str, str]]]:
    """The candidates that are blocks (nested ones reduced to one), and (path, reason) for the others."""
    c_axis = 1 if walker.data_format == "channels_first" else -1
    kept, skipped = [], []
    for cand in candidates:
        shape = cand.input_shape
        if shape is not None and len(shape) != 4:
            skipped.append((cand.path, f"it receives a {len(shape)}-D input {shape}; the blocks take 4-D feature maps"))
            continue
        if cand.by_class is None:
            if cand.calls == 0:
                why = (
                    "the network's forward raised before reaching it, so whether it computes on a pooled "
                    "descriptor is unknown"
                    if network_failed
                    else "the network never calls it"
                )
                skipped.append((cand.path, f"its weights have a block's shapes, but {why}"))
                continue
            pooled = cand.pooled(c_axis)
            if pooled is False:
                skipped.append(
                    (
                        cand.path,
                        f"its weights have a block's shapes, but its layers run on the whole feature map {shape}, "
                        "not on a pooled descriptor",
                    )
                )
                continue
            if pooled is None and cand.failure is None:
                skipped.append((cand.path, "its weights have a block's shapes, but its layers never ran"))
                continue
        kept.append(cand)
    sep = "/" if walker.framework == "keras" else "."
    dropped: set[int] = set()
    for a in kept:
        for b in kept:
            if not _is_below(b.path, a.path, sep):
                continue
            if a.structure is None or a.tensor_ids == b.tensor_ids:
                dropped.add(id(a))  # a container named like a block, or a wrapper: the inner one is the block
                if a.tensor_ids == b.tensor_ids and b.failure is None:
                    b.failure = a.failure  # the wrapper's call was the one judged
            else:
                dropped.add(id(b))  # a part of a bigger block (CBAM's channel gate)
    blocks = [c for c in kept if id(c) not in dropped]
    blocks.sort(key=lambda c: (c.order is None, c.order or 0))  # the order the network calls them (stable)
    skipped = [(p, r) for p, r in skipped if not any(_is_below(p, b.path, sep) for b in blocks)]
    return blocks, skipped


def _check_block(
    walker: Walker,
    cand: Candidate,
    info: dict[str, Any],
    groups: dict[str, tuple[str, VerifyReport]],
    stubs: dict[str, str],
    seed: int,
) -> BlockReport:
    said: list[str] = []
    if cand.calls == 0:
        said.append("the network did not call it on the sample input: checked on generated inputs only")
    elif cand.calls > 1:
        said.append(f"the network calls it {cand.calls} times: checked on the input of its first call")
    if cand.hung:
        stubs = {**stubs, cand.path: cand.failure or ""}
        cand.failure = None
    if cand.path in stubs:
        return BlockReport(
            **info,
            passed=False,
            identified=None,
            config=None,
            precision=None,
            diagnosis=[*said, f"{stubs[cand.path]}: not verified further"],
        )
    if cand.failure is not None:
        said.append(cand.failure)
    try:
        key: str | None = None
        if cand.failure is None:
            key = walker.linen_signature(cand) if isinstance(walker, _LinenWalker) else walker.signature(cand.module)
    except Exception:
        key = None
    if key is not None and key in groups:
        first_path, first = groups[key]
        if not first.passed:
            return BlockReport(
                **info,
                passed=False,
                identified=first.identified,
                config=None,
                precision=first.precision,
                diagnosis=[
                    *said,
                    f"same class and configuration as {first_path or '<the model>'}, which does not conform: "
                    "not identified again",
                    *first.diagnosis,
                ],
                shared_with=first_path,
            )
        ok, why = _recheck(walker, cand, first, seed)
        if ok:
            return BlockReport(
                **info,
                passed=True,
                identified=first.identified,
                config=first.config,
                precision=first.precision,
                diagnosis=[
                    *said,
                    f"same class and configuration as {first_path or '<the model>'}, identified there; with its own "
                    f"weights on the input it receives here it computes what the reference computes ({why})",
                ],
                shared_with=first_path,
            )
        said.append(
            f"same class and configuration as {first_path or '<the model>'}, but its check against that "
            f"configuration fails ({why}): identified on its own"
        )
    # the module it is checked as: what its class name says when its weights do not bind, else what they say
    # (verify finds it), except a CBAM class with the MLP alone: CBAM's channel half (no_spatial)
    kind = cand.by_class if cand.structure is None else None
    if cand.by_class == "cbam" and cand.structure is not None and cand.structure.kind == "mlp":
        kind = "cbam"
    try:
        report = verify(
            on_cpu(cand.module),
            framework=walker.framework,
            module=kind,
            sample=cand.input,
            seed=seed,
            variables=cand.variables,
            isolate=False,
        )
    except Exception as e:  # nothing tells its channel count, or its input was not one verify takes
        return BlockReport(
            **info,
            passed=False,
            identified=None,
            config=None,
            precision=None,
            diagnosis=[*said, f"it could not be verified: {_last_line(e)}"],
        )
    if key is not None and key not in groups:
        groups[key] = (cand.path, report)
    return BlockReport(
        **{**info, "module": report.module or info["module"]},
        passed=report.passed and cand.failure is None,
        identified=report.identified,
        config=report.config if report.passed and cand.failure is None else None,
        precision=report.precision,
        diagnosis=[*said, *(one_line(d) if "\n" in d else d for d in report.diagnosis)],
        verify=report,
    )


def _recheck(walker: Walker, cand: Candidate, first: VerifyReport, seed: int) -> tuple[bool, str]:
    """``cand`` with its own weights and captured input against ``first``'s configuration (forward, and the
    gradients when there is no captured input), at the precision ``first`` was judged at."""
    assert first.config is not None and first.module is not None
    backend = make_backend(walker.framework, None, {}, instance=on_cpu(cand.module), variables=cand.variables)
    dtype = first.precision or "float64"
    try:
        obj = backend.own()
        tensors, ignored = backend.tensors(obj)
        s = _structure(tensors, ignored, walker.framework, first.mapping, first.module, first.channels)
        if s.problems:
            return False, s.problems[0]
        adapter = ThirdPartyAdapter(backend, s.bindings, cand.class_name, [dtype])
        case = own_weights_case(backend, obj, s, first.config, seed, cand.input, dtype)
        if case is None:
            return False, "its tensors do not cover the configuration's"
        r = check_case(adapter, case, with_grads=cand.input is None and dtype == "float64")
    except Exception as e:
        return False, _last_line(e)
    finally:
        backend.restore()
    if r.error:
        return False, r.error
    if not r.passed:
        return False, "; ".join(c.message for c in r.comparisons if not c.ok)
    worst = max(r.comparisons, key=lambda c: c.error_ratio)
    return True, f"{dtype}, worst {worst.name} at {worst.error_ratio:.2g}x the tolerance"
