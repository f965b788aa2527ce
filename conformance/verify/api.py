"""The verify pipeline: instantiate, bind, run, identify, check; and :func:`verify`, its entry point."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from reference_numpy import (
    CONFIG_TYPES,
    DATA_FORMATS,
    FRAMEWORKS,
    MODULES,
    THIRD_PARTY,
    Config,
    describe,
    differences,
    equivalent,
    knob_names,
    make_config,
)

from ..runner import check_case
from ..runner import exception_line as _last_line
from .binding import Structure, _canonical, _structure
from .check import ThirdPartyAdapter, _cases, _full_check_failures, _probe, own_weights_case, precision_sentences
from .diagnosis import _why_not, structural_findings
from .identify import _identify, off_spec_findings
from .report import VerifyReport
from .targets import framework_of, make_backend
from .worker import DEFAULT_TIMEOUT, TargetDied, calling, cannot_fork, run_isolated

__all__ = ["DEFAULT_TIMEOUT", "TargetImportError", "check_seed", "load_target", "resolve_kwargs", "verify"]


class TargetImportError(Exception):
    """The target's module exists but raised while it was imported: a failure of the target, not a usage mistake."""


def load_target(target: str) -> Callable[..., Any]:
    """``package.module:Factory`` (the attribute may be dotted) -> the factory.

    A module that does not exist is a ``ValueError`` (a usage mistake); a module that raises
    while it is imported is a :class:`TargetImportError` (a failure of the target).
    """
    if not isinstance(target, str) or target.count(":") != 1:
        raise ValueError(f"`target` must be 'package.module:Factory'. Received: {target!r}")
    module_name, attr = target.split(":")
    try:
        with calling(f"importing {module_name}", at_least=DEFAULT_TIMEOUT):
            obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name is not None and (module_name == e.name or module_name.startswith(e.name + ".")):
            raise ValueError(f"Could not import {module_name!r} for target {target!r}: {_last_line(e)}") from None
        raise TargetImportError(f"importing {module_name} raised {_last_line(e)}") from None
    except Exception as e:
        raise TargetImportError(f"importing {module_name} raised {_last_line(e)}") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"{module_name!r} has no attribute {attr!r} (target {target!r})")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"Target {target!r} is a {type(obj).__name__}, not a class or function")
    return obj  # type: ignore[no-any-return]


def resolve_kwargs(init_kwargs: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Constructor arguments with dotted paths to a class or function resolved: ``{"act_layer": "torch.nn.SiLU"}``
    gives the class ``torch.nn.SiLU``. A string is resolved only when it has a dot, its module imports and the
    attribute exists and is callable; otherwise it stays a string. Returns (kwargs, sentences saying what was resolved).

    >>> resolve_kwargs({"act": "relu", "pool": "collections.OrderedDict"})[0]["pool"].__name__
    'OrderedDict'
    """
    out, said = {}, []
    for k, v in init_kwargs.items():
        out[k] = v
        if isinstance(v, str) and "." in v.strip(".") and " " not in v:
            module_name, _, attr = v.rpartition(".")
            try:
                obj = getattr(importlib.import_module(module_name), attr)
            except Exception:  # not a dotted path to anything: a string argument
                continue
            if callable(obj):
                out[k] = obj
                said.append(f"{k}={v!r} taken as {getattr(obj, '__qualname__', attr)} from {module_name}")
    return out, said


def check_seed(seed: Any) -> int:
    """``seed`` as the checks take it: an int in [0, 2**32) (``ValueError`` otherwise, naming it)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
        raise ValueError(f"`seed` must be an int in [0, 2**32). Received: seed={seed!r}")
    return int(seed)


def _check_expect(expect: Any, module: str | None) -> None:
    """``expect``'s type, preset name and knob names, before any target runs (their values need the channel count)."""
    if expect is None:
        return
    if not isinstance(expect, (str, Mapping)):
        raise TypeError(
            f"`expect` must be a preset name or a mapping of knobs. Received: expect of type {type(expect).__name__}"
        )
    modules = [module] if module is not None else list(MODULES)
    knobs: dict[str, Any] = {"preset": expect} if isinstance(expect, str) else dict(expect)
    preset = knobs.pop("preset", None)
    presets = {p for m in modules for p in CONFIG_TYPES[m].presets}
    if preset is not None and preset not in presets:
        raise ValueError(
            f"`expect` names no preset of {' or '.join(modules)}: {preset!r}. Expected one of {sorted(presets)}"
        )
    names = {k for m in modules for k in knob_names(m)}
    unknown = [k for k in knobs if k not in names]
    if unknown:
        raise ValueError(
            f"`expect` has knobs {' or '.join(modules)} does not have: {unknown}. Expected some of {sorted(names)}"
        )


def _expected_config(
    module: str, s: Structure, expect: str | Mapping[str, Any] | None
) -> tuple[Config | None, list[str]]:
    """The configuration ``expect`` names, with the sizes a preset leaves open taken from the target's shapes."""
    if expect is None:
        return None, []
    assert s.channels is not None
    knobs: dict[str, Any] = {"preset": expect} if isinstance(expect, str) else dict(expect)
    preset = knobs.pop("preset", None)
    knobs = {k: tuple(v) if isinstance(v, list) else v for k, v in knobs.items()}
    said = []
    sizes = {"rd_ratio", "rd_channels", "rd_divisor", "rd_round", "kernel_size", "gamma", "beta"}
    if preset is not None and not sizes & set(knobs):
        if module in ("se", "cbam") and "fc1.weight" in s.bindings:
            hidden = s.shape("fc1.weight")[0]
            try:
                make_config(module, s.channels, preset=preset, **knobs)
            except ValueError:  # the preset takes the width explicitly (torchvision): the weights give it
                if hidden >= 1:
                    knobs["rd_channels"] = hidden
                    said.append(
                        f"the squeeze width {hidden} the preset {preset!r} leaves open is taken from its weights"
                    )
        if module == "eca" and "conv.weight" in s.bindings:
            # every ECA preset fixes the kernel size by its rule (SPEC.md sections 5-6): a different size
            # is a failure against that preset, stated with the way to expect it explicitly
            k = s.shape("conv.weight")[0]
            cfg = make_config(module, s.channels, preset=preset, **knobs)
            if cfg.effective_kernel_size != k:  # type: ignore[union-attr]
                said.append(
                    f"its kernel size is {k} where the preset's rule gives {cfg.effective_kernel_size} at "  # type: ignore[union-attr]
                    f"{s.channels} channels; if it takes the size as an argument (as the authors' code does), "
                    f"expect {{'preset': {preset!r}, 'kernel_size': {k}}}"
                )
    return make_config(module, s.channels, preset=preset, **knobs), said


def verify(
    target: Any,
    *,
    module: str | None = None,
    framework: str | None = None,
    init_kwargs: Mapping[str, Any] | None = None,
    mapping: str = "auto",
    seed: int = 0,
    channels: int | None = None,
    expect: str | Mapping[str, Any] | None = None,
    data_format: str | None = None,
    variables: Any = None,
    sample: Any = None,
    timeout: float = DEFAULT_TIMEOUT,
    isolate: bool = True,
) -> VerifyReport:
    """Check the implementation ``target`` against the spec and identify its variant.

    ``target``: ``"package.module:Factory"``, a factory (a class, or a function returning the
    layer, called with ``init_kwargs``; string values naming a class or function by dotted path,
    ``{"act_layer": "torch.nn.SiLU"}``, are resolved), or an instance with its own weights (a
    PyTorch ``nn.Module``, a Keras layer, a Flax linen module with ``variables``, an NNX
    module); an instance is never changed. ``module``: ``se``, ``cbam`` or ``eca``, or None to
    find which one it is from its structure. ``framework``: ``torch``, ``flax`` or ``keras``
    (told by an instance's class when None). ``mapping``: ``auto``, a PyTorch dialect of
    :data:`reference_numpy.THIRD_PARTY` or a JSON map file. ``channels``: only when nothing else
    tells it (the weights, ``sample``, an argument named like ``channels``); when nothing does,
    ``ValueError``. ``expect``: the configuration it claims (a preset name, or knobs with an
    optional ``"preset"``; sizes a preset leaves open come from the weights): a strict check.
    ``data_format``: the layout its forward takes (default: the framework's). ``sample``: an
    input it really receives (in its data format): the instance is checked with its own weights
    on this input too. ``timeout``: seconds each call into the target may take in the worker
    process (``isolate=False`` runs it in this process, without limits).

    Mistakes in these arguments raise ``ValueError`` (``TypeError`` for wrong types); anything
    wrong with the target itself (it raises, hangs, exits, crashes, returns the wrong thing) is
    a failed report.
    """
    instance_fw = None if isinstance(target, (str, type)) else framework_of(target)
    if framework is None:
        if instance_fw is None:
            raise ValueError(
                "`framework` must be given for a target that is not a module instance. Received: framework=None"
            )
        framework = instance_fw
    if framework not in FRAMEWORKS:
        raise ValueError(
            f"`framework` must be one of {', '.join(map(repr, FRAMEWORKS))}. Received: framework={framework!r}"
        )
    if module is not None and module not in MODULES:
        raise ValueError(
            f"`module` must be one of {', '.join(map(repr, MODULES))} or None. Received: module={module!r}"
        )
    if instance_fw is not None and instance_fw != framework:
        raise ValueError(f"`framework` is {framework!r}, but the target is a {instance_fw} module")
    if not isinstance(target, str) and instance_fw is None and not callable(target):
        raise TypeError(
            "`target` must be 'package.module:Factory', a class or function, or a module instance. "
            f"Received: {type(target).__name__}"
        )
    if init_kwargs is not None and not isinstance(init_kwargs, Mapping):
        raise TypeError(f"`init_kwargs` must be a mapping. Received: {type(init_kwargs).__name__}")
    if not (isinstance(timeout, (int, float)) and not isinstance(timeout, bool) and timeout > 0):
        raise ValueError(f"`timeout` must be a number of seconds > 0. Received: timeout={timeout!r}")
    if channels is not None and (not isinstance(channels, int) or isinstance(channels, bool) or channels < 1):
        raise ValueError(f"`channels` must be an int >= 1. Received: channels={channels!r}")
    check_seed(seed)
    if isinstance(mapping, os.PathLike):
        mapping = os.fspath(mapping)
    if not isinstance(mapping, str) or not mapping:
        raise TypeError(f"`mapping` must be 'auto', a dialect name or a JSON map file's path. Received: {mapping!r}")
    _check_expect(expect, module)
    if data_format is not None and data_format not in DATA_FORMATS:
        raise ValueError(
            f"`data_format` must be None or one of {', '.join(map(repr, DATA_FORMATS))}. Received: {data_format!r}"
        )
    if not isinstance(isolate, bool):
        raise TypeError(f"`isolate` must be a bool. Received: isolate={isolate!r}")
    if variables is not None and framework != "flax":
        raise ValueError(
            f"`variables` is for a Flax linen target only. Received: variables with framework={framework!r}"
        )
    if sample is not None:
        sample = np.asarray(sample.detach().cpu() if hasattr(sample, "detach") else sample)
        if sample.ndim != 4 or not np.issubdtype(sample.dtype, np.floating) or 0 in sample.shape:
            raise ValueError(
                f"`sample` must be a floating 4-D input (N, C, H, W) or (N, H, W, C). Received: shape {sample.shape}, "
                f"dtype {sample.dtype}"
            )
        if not np.isfinite(sample).all():
            raise ValueError("`sample` must be finite. Received: an input holding NaN or infinite values")
    kwargs: dict[str, Any] = dict(
        module=module,
        framework=framework,
        init_kwargs=dict(init_kwargs or {}),
        mapping=mapping,
        seed=seed,
        channels=channels,
        expect=expect,
        data_format=data_format,
        variables=variables,
        sample=sample,
    )
    name = target if isinstance(target, str) else _label(target)
    if not isolate:
        return _verify_here(target, **kwargs)
    unsafe = cannot_fork(framework)
    if unsafe is not None:
        report = _verify_here(target, **kwargs)
        report.diagnosis.insert(
            0,
            f"checked in this process, without a time limit: this process has started {unsafe}, which a forked "
            "worker cannot run (the command line, which starts no framework itself, always isolates the target)",
        )
        return report
    try:
        return run_isolated(_verify_here, (target,), kwargs, timeout=timeout)  # type: ignore[no-any-return]
    except (TargetDied, TargetImportError) as e:
        return VerifyReport(name, module, framework, False, None, None, [str(e)], [], mapping=mapping)


def _label(target: Any) -> str:
    if isinstance(target, type) or (callable(target) and not hasattr(target, "__dict__")):
        return getattr(target, "__qualname__", repr(target))
    if framework_of(target) is not None:
        return f"{type(target).__qualname__} instance"
    return getattr(target, "__qualname__", type(target).__qualname__)


def _verify_here(
    target: Any,
    *,
    module: str | None,
    framework: str,
    init_kwargs: dict[str, Any],
    mapping: str,
    seed: int,
    channels: int | None,
    expect: str | Mapping[str, Any] | None,
    data_format: str | None,
    variables: Any,
    sample: np.ndarray | None,
) -> VerifyReport:
    """The pipeline, in the process that runs the target."""
    name = target if isinstance(target, str) else _label(target)
    diagnosis: list[str] = []
    is_instance = not isinstance(target, str) and framework_of(target) is not None
    if isinstance(target, str):
        try:
            factory: Any = load_target(target)
        except TargetImportError as e:
            return VerifyReport(name, module, framework, False, None, None, [str(e)], [], mapping=mapping)
    else:
        factory = None if is_instance else target
    if factory is not None:
        init_kwargs, said = resolve_kwargs(init_kwargs)
        diagnosis += said
    label = _label(target) if factory is None else getattr(factory, "__name__", name)

    def fail(sentence: str) -> VerifyReport:
        return VerifyReport(name, module, framework, False, None, None, [*diagnosis, sentence], [], mapping=mapping)

    # 1. instantiate (or copy) and read its tensors
    try:
        backend = make_backend(
            framework, factory, init_kwargs, instance=target if is_instance else None, variables=variables
        )
    except Exception as e:
        return fail(f"could not tell what kind of module {label} builds: {_last_line(e)}")
    backend.data_format = data_format or backend.data_format
    if sample is not None:
        sample_c = sample.shape[1] if backend.data_format == "channels_first" else sample.shape[3]
        if channels is not None and channels != sample_c:
            raise ValueError(f"`channels` is {channels}, but the sample has {sample_c} channels")
        channels = sample_c
    backend.channels = channels
    try:
        obj = backend.own()
    except ValueError as e:
        if type(e).__name__ == "ChannelsUnknown" or "variables" in str(e):
            raise
        kwargs_text = ", ".join(f"{k}={v!r}" for k, v in init_kwargs.items())
        return fail(f"instantiating {label}({kwargs_text}) raised {_last_line(e)}")
    except Exception as e:
        kwargs_text = ", ".join(f"{k}={v!r}" for k, v in init_kwargs.items())
        return fail(f"instantiating {label}({kwargs_text}) raised {_last_line(e)}")
    try:
        return _check(backend, obj, name, label, module, framework, mapping, seed, channels, expect, sample, diagnosis)
    finally:
        backend.restore()


def _check(
    backend: Any,
    obj: Any,
    name: str,
    label: str,
    module: str | None,
    framework: str,
    mapping: str,
    seed: int,
    channels: int | None,
    expect: Any,
    sample: np.ndarray | None,
    diagnosis: list[str],
) -> VerifyReport:
    tensors, ignored = backend.tensors(obj)

    # 2. bind them to canonical tensors; the weights tell the channel count before any argument does
    hint = channels or backend.channels or backend.channels_from_arguments(obj)
    as_module = module or "se"
    s = _structure(tensors, ignored, backend.framework, mapping, as_module, hint)
    layout_ok = not (mapping != "auto" and s.problems)
    if not layout_ok:
        by_shape = _structure(tensors, ignored, backend.framework, "auto", as_module, hint)
        diagnosis += [*s.problems, f"its tensors do not fit the mapping {mapping!r}"]
        if not by_shape.problems:
            diagnosis.append("bound by their shapes instead, to say what it is; the mapping it was given is wrong")
            s = by_shape
    if s.channels is None:
        s.channels = backend.channels_from_arguments(obj)
    early = structural_findings(s, module or "se")
    if early:  # structure before knobs: what its tensors say it is, in plain words
        return VerifyReport(
            name, module, framework, False, None, None, [*diagnosis, *early], [], mapping=mapping, channels=s.channels
        )
    if s.channels is None:
        if s.kind == "eca" and not s.problems:
            # ECA's weights and computation do not depend on the channel count once its kernel is fixed
            s.channels = 16
            diagnosis.append(
                "nothing tells its channel count (ECA's kernel does not depend on it): checked at 16 channels, "
                "with its kernel size as an explicit size"
            )
        else:
            from .targets import ChannelsUnknown

            raise ChannelsUnknown(
                f"`channels` must be given: neither the weights of {label} nor its arguments tell its channel count"
            )
    c = backend.channels = s.channels
    if module is None:
        module = {"mlp": "se", "cbam": "cbam", "eca": "eca"}.get(s.kind or "", None)
        if module is None:
            return VerifyReport(
                name,
                None,
                framework,
                False,
                None,
                None,
                [*diagnosis, *_why_not("se", s)],
                [],
                mapping=mapping,
                channels=c,
            )
        diagnosis.append(f"its structure is {module.upper()}'s: checked as {module.upper()}")
    bindings = {b.name: _canonical(b.role, module) for b in s.bindings.values()}
    bindings.update({n: "(ignored: no canonical counterpart)" for n in s.ignored})
    bindings.update({t.name: f"(unbound) {t.shape}" for t in tensors if t.name not in bindings})
    common: dict[str, Any] = dict(bindings=bindings, mapping=mapping, channels=c)

    # 4. does its forward run at all, and in which precision?
    dtypes, sentences = _probe(backend, obj, c, seed, sample)
    probe_said = [t for t in sentences if "float64" not in t and "precision" not in t]
    diagnosis += sentences + s.notes
    dialect = (module, mapping) if layout_ok and (module, mapping) in THIRD_PARTY else None
    adapter = ThirdPartyAdapter(backend, s.bindings, f"{label} ({framework})", dtypes, dialect)

    # 5. which configuration is it?
    why_not = _why_not(module, s)
    diagnosis += why_not
    found, sentences, judged = _identify(module, s, adapter, dtypes[0], seed, requested_possible=not why_not)
    if found is not None and not found[1] and not probe_said:
        # no configuration matches although the structure fits: an off-spec computation, said in plain words,
        # before any "closest configuration"
        said, identified = off_spec_findings(module, s, adapter, dtypes[0], seed, judged)
        if said:
            return VerifyReport(name, module, framework, False, identified, None, [*diagnosis, *said], [], **common)
    if found is not None and not found[1] and probe_said:  # broken on its own: no "closest" to offer
        sentences = [t.split("; the closest is")[0] for t in sentences]
        found = None
    diagnosis += sentences
    if found is None:
        return VerifyReport(name, module, framework, False, None, None, diagnosis, [], **common)
    cfg, matched = found

    # 6. the full check of that configuration: output, input gradient, parameter gradients, state
    reports = [
        check_case(adapter, case)
        for dtype in dtypes
        for case in _cases(cfg, seed, dtype, backend.data_format, big_batch=dtype == dtypes[0])
    ]
    own = own_weights_case(backend, obj, s, cfg, seed, sample, dtypes[0]) if matched else None
    if own is not None:
        # its own weights are not drawn to keep every step well-conditioned: gradients (sums over the whole
        # input) are compared only in float64, forward outputs in every precision
        reports.append(check_case(adapter, own, with_grads=sample is None and own.dtype == "float64"))
    precision, extra, passed_at = precision_sentences(adapter, reports, dtypes, seed, judged)
    comparisons = [cmp for r in reports for cmp in r.comparisons]
    full_ok = passed_at is not None
    if matched and not full_ok:
        diagnosis += _full_check_failures(reports)
    diagnosis += extra
    passed = matched and full_ok and cfg.module == module and layout_ok
    expected, said = _expected_config(module, s, expect) if cfg.module == module else (None, [])
    diagnosis += said
    if expected is not None and not equivalent(cfg, expected):
        passed = False
        diffs = ", ".join(differences(cfg, expected))
        diagnosis.append(f"it was expected to be {describe(expected)}, but differs from it in {diffs}")
    if passed:
        what = (
            ", every parameter gradient and the running statistics"
            if cfg.has_batch_norm
            else " and every parameter gradient"
        )
        diagnosis.append(f"output, input gradient{what} agree at {passed_at} precision ({len(reports)} cases)")
    identified = describe(cfg) if matched else None
    return VerifyReport(
        name, module, framework, passed, identified, cfg, diagnosis, comparisons, reports, precision=precision, **common
    )
