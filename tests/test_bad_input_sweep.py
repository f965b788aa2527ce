"""The bad-input sweep of issue #14, as a test: every public call given what a hostile user would give it.

Each row is one attempt: a call, the exception type that is the clear answer, and fragments
its message must contain (the argument's or key's name, or the file's path). An attempt is

- **clear**: it raised that type (or a subclass) and the message names what was wrong;
- **other**: anything else (another exception type, a message that names nothing, or silent
  success of bad input).

Some calls refuse by returning, not raising: ``verify`` / ``audit`` give a failed report, a
command line gives an exit status with one line on stderr. Their rows carry ``refused``, which
turns the returned value into (refused?, its text); the text must name the same fragments.
Command-line rows call ``main`` in this process (a few run ``python -m conformance`` to prove
the real entry point) and require the exit status, the number of lines on stderr and no
traceback anywhere. A row for a bug that can only be fixed in a file another branch owns is
a strict xfail (``xfail="why"``): counted apart, and it fails the section once it is clear.

"other" must be zero. Each section prints its counts (run with ``-s`` to see them). A few rows
are *undetectable by design* and are counted apart, never as clear: a bit flip inside the
JSON of a checkpoint's header that leaves a valid, different checkpoint (safetensors has no
checksum). Those rows must still load a fully valid checkpoint.

Adding rows: write a function returning a list of :class:`Row` and add it to ``SECTIONS``.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import json
import math
import os
import struct
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import reference_numpy as ref
from reference_numpy import CBAMConfig, CheckpointError, ECAConfig, SEConfig

# ----------------------------------------------------------------------------- the machinery


@dataclass(frozen=True)
class Row:
    """One attempt: ``call()`` must raise ``error`` with every fragment of ``names`` in its message."""

    id: str
    call: Callable[[], Any]
    error: type[BaseException] | tuple[type[BaseException], ...]
    names: tuple[str, ...]
    valid_if_accepted: Callable[[Any], bool] | None = None  # for undetectable-by-design rows only
    refused: Callable[[Any], tuple[bool, str]] | None = None  # a refusal by return value: (refused?, its text)
    xfail: str | None = None  # a known bug in a file another branch owns: why, and where the fix goes


def classify(row: Row) -> tuple[str, str]:
    """``("clear" | "undetectable" | "other", detail)``."""
    try:
        result = row.call()
    except row.error as e:
        message = str(e)
        missing = [n for n in row.names if n not in message]
        if missing:
            return "other", f"{type(e).__name__} does not name {missing}: {message[:300]}"
        return "clear", ""
    except Exception as e:  # the point: anything unexpected is counted, not raised
        return "other", f"{type(e).__name__}: {str(e)[:300]}"
    except SystemExit as e:  # a library call must never end the caller's process
        return "other", f"SystemExit({e.code!r})"
    if row.refused is not None:
        refused, text = row.refused(result)
        if not refused:
            return "other", text[:400]
        missing = [n for n in row.names if n not in text]
        if missing:
            return "other", f"the refusal does not name {missing}: {text[:300]}"
        return "clear", ""
    if row.valid_if_accepted is not None and row.valid_if_accepted(result):
        return "undetectable", ""
    return "other", f"accepted silently, returned {type(result).__name__}"


def run_section(name: str, rows: list[Row], *, show: bool = True) -> None:
    counts = {"clear": 0, "undetectable": 0, "other": 0, "xfail": 0}
    others, fixed = [], []
    for row in rows:
        outcome, detail = classify(row)
        if row.xfail is not None:
            if outcome == "other":
                outcome = "xfail"
            else:
                fixed.append(f"{row.id}: now {outcome}; remove its xfail ({row.xfail})")
        counts[outcome] += 1
        if outcome == "other":
            others.append(f"{row.id}: {detail}")
    if show:
        print(
            f"\nsweep[{name}]: tried {len(rows)}, clear {counts['clear']}, other {counts['other']}"
            + (f", undetectable by design {counts['undetectable']}" if counts["undetectable"] else "")
            + (f", known bugs (strict xfail) {counts['xfail']}" if counts["xfail"] else "")
        )
    assert len(rows) == sum(counts.values())
    assert not others, f"{len(others)} of {len(rows)} attempts gave no clear error:\n" + "\n".join(others)
    assert not fixed, "strict xfail rows that no longer fail:\n" + "\n".join(fixed)


def _raises(row_id: str, call: Callable[[], Any], error: Any, *names: str) -> Row:
    return Row(row_id, call, error, names)


def _xfail(row: Row, why: str) -> Row:
    return Row(row.id, row.call, row.error, row.names, row.valid_if_accepted, row.refused, why)


def _failed_report(row_id: str, call: Callable[[], Any], *names: str) -> Row:
    """A call that must return a failed report (verify, audit, CaseReport, Comparison) whose text names ``names``."""

    def refused(report: Any) -> tuple[bool, str]:
        if hasattr(report, "to_text"):  # a verify or audit report
            text = report.to_text()
        elif hasattr(report, "failures"):  # a CaseReport
            text = "\n".join(report.failures())
        else:
            text = str(report)
        if report.passed if hasattr(report, "passed") else report.ok:  # Comparison says ok
            return False, f"{type(report).__name__} PASSED: {text[:300]}"
        return True, text

    return Row(row_id, call, (), names, refused=refused)


@dataclass(frozen=True)
class Ran:
    """What a command line did: its exit status and what it wrote."""

    code: int
    out: str
    err: str


ROOT = Path(__file__).resolve().parents[1]


def _in_process(argv: Sequence[str]) -> Ran:
    from conformance.__main__ import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return Ran(code, out.getvalue(), err.getvalue())


def _subprocess(argv: Sequence[str]) -> Ran:
    proc = subprocess.run(
        [sys.executable, "-m", "conformance", *argv], capture_output=True, text=True, timeout=120, cwd=ROOT, check=False
    )
    return Ran(proc.returncode, proc.stdout, proc.stderr)


def _cli(row_id: str, argv: Sequence[str], code: int, *names: str, err_lines: int = 1, real: bool = False) -> Row:
    """``python -m conformance ARGV`` must exit ``code`` with ``err_lines`` lines on stderr (a failure may instead
    say why on stdout, with nothing on stderr) and no traceback; ``names`` must appear in what it wrote."""

    def refused(ran: Ran) -> tuple[bool, str]:
        text = ran.err + ran.out
        if "Traceback" in text:
            return False, f"exit {ran.code} with a traceback: {text[-400:]}"
        if ran.code != code:
            return False, f"exit {ran.code}, expected {code}: {text[:400]}"
        lines = ran.err.splitlines()
        if (code == 2 or lines) and len(lines) != err_lines:
            return False, f"{len(lines)} lines on stderr, expected {err_lines}: {ran.err[:400]}"
        return True, text

    run = _subprocess if real else _in_process
    return Row(row_id, lambda: run(argv), (), names, refused=refused)


BAD = (TypeError, ValueError)

# ----------------------------------------------------------------------------- configs

_INT_BAD = ["8", 8.0, None, True, [8], 0, -1, 10**400, 2**31, float("nan")]
_NUMBER_BAD = ["0.5", None, True, [0.5], float("nan"), float("inf"), -float("inf"), 10**400]
_CHOICE_BAD = ["nope", None, 1, ["relu"], "", "RELU"]
_BOOL_BAD = ["yes", "no", 1, 0, None, 0.0, [True]]
_POOLS_BAD = ["avg", ("avg", "avg"), (), ("max", 1), ("avg", None), 5, None, {"avg"}, ("mean", "max")]
_ORDER_BAD = ["max", ("max", 1), ("max",), ("max", "max"), ("max", "mean", "max"), 5, None, ("avg", "max")]

_KNOB_BAD: dict[str, list[Any]] = {
    "channels": _INT_BAD,
    "rd_ratio": [*_NUMBER_BAD, 0, -0.5, 1.5, 5e-324 * 0],
    "rd_channels": [x for x in _INT_BAD if x is not None],
    "rd_divisor": _INT_BAD,
    "rd_round": _CHOICE_BAD,
    "bias": _BOOL_BAD,
    "mlp_bias": _BOOL_BAD,
    "act": _CHOICE_BAD,
    "gate": _CHOICE_BAD,
    "pool_types": _POOLS_BAD,
    "spatial": _BOOL_BAD,
    "spatial_kernel_size": [*_INT_BAD, 4],
    "spatial_pool_order": _ORDER_BAD,
    "spatial_bias": _BOOL_BAD,
    "spatial_norm": _BOOL_BAD,
    "bn_eps": [*_NUMBER_BAD, 0, -1e-5],
    "bn_momentum": [*_NUMBER_BAD, -0.1, 1.5],
    "kernel_size": [x for x in _INT_BAD if x is not None] + [4],
    "gamma": [*_NUMBER_BAD, 0, 5e-324, 1e-300],
    "beta": [*_NUMBER_BAD, 1e308],
    "padding": _CHOICE_BAD,
}


def config_rows() -> list[Row]:
    rows = []
    for cls in (SEConfig, CBAMConfig, ECAConfig):
        for knob in ("channels", *ref.knob_names(cls.module)):
            for i, value in enumerate(_KNOB_BAD[knob]):
                kwargs = {"channels": 16, knob: value}
                # beta=1e308 only fails through gamma's division; it names both
                names = ("`gamma`", "`beta`") if knob == "beta" and value == 1e308 else (f"`{knob}`",)
                rows.append(_raises(f"{cls.module}.{knob}[{i}]", lambda c=cls, k=kwargs: c(**k), BAD, *names))
    # derived sizes
    rows += [
        _raises(
            "se.hidden_overflow",
            lambda: SEConfig(2**31 - 1, rd_ratio=1, rd_divisor=2, rd_round="nearest"),
            BAD,
            "hidden width",
        ),
        _raises("eca.adaptive_gamma_tiny", lambda: ECAConfig(channels=16, gamma=5e-324), BAD, "`gamma`", "`beta`"),
        _raises("eca.adaptive_kernel_given", lambda: ECAConfig(16, kernel_size=3, gamma=1e-320), BAD, "`gamma`"),
        _raises("make_config.module", lambda: ref.make_config("bam", 8), BAD, "`module`"),
        _raises("make_config.module_none", lambda: ref.make_config(None, 8), BAD, "`module`"),
        _raises("make_config.knob", lambda: ref.make_config("se", 8, ratio=0.5), BAD, "'ratio'"),
        _raises("preset.unknown", lambda: SEConfig.preset("nope", channels=8), BAD, "'nope'"),
        _raises("preset.torchvision", lambda: SEConfig.preset("torchvision", channels=8), BAD, "rd_channels"),
        _raises("replace.bad", lambda: CBAMConfig(8).replace(spatial_kernel_size=2), BAD, "`spatial_kernel_size`"),
        _raises("from_dict.not_mapping", lambda: ref.config_from_dict([("module", "se")]), BAD, "mapping"),
        _raises(
            "from_dict.module_list", lambda: ref.config_from_dict({"module": ["se"], "channels": 8}), BAD, "`module`"
        ),
        _raises("from_dict.int_keys", lambda: SEConfig.from_dict({1: 2, "channels": 8}), BAD, "keys"),
        _raises("from_dict.unknown", lambda: SEConfig.from_dict({"channels": 8, "x": 1}), BAD, "'x'"),
        _raises(
            "from_dict.nested",
            lambda: ref.config_from_dict({"module": "se", "channels": {"a": [1]}}),
            BAD,
            "`channels`",
        ),
        _raises("as_config.str", lambda: ref.as_config("se"), BAD, "`cfg`"),
        _raises("layout.str", lambda: ref.param_layout("se"), BAD, "`cfg`"),
        _raises("init_params.seed_str", lambda: ref.init_params(SEConfig(8), seed="x"), BAD, "`seed`"),
        _raises("init_params.seed_neg", lambda: ref.init_params(SEConfig(8), seed=-1), BAD, "`seed`"),
    ]
    return rows


# ----------------------------------------------------------------------------- the reference's calls

_CFGS = {
    "se": SEConfig(6, rd_channels=2),
    "cbam": CBAMConfig(6, rd_channels=2, spatial_kernel_size=3),
    "eca": ECAConfig(6, kernel_size=3, bias=True),
}
_X = np.random.default_rng(0).normal(size=(2, 6, 4, 5))


def _bad_values(layout_shape: tuple[int, ...]) -> dict[str, Any]:
    return {
        "none": None,
        "full_none": np.full(layout_shape, None),
        "strings": np.full(layout_shape, "x"),
        "bools": np.ones(layout_shape, bool),
        "complex": np.ones(layout_shape, complex),
        "ragged": [[1.0], [1.0, 2.0]],
        "misshaped": np.ones((*layout_shape, 2)),
        "dict": {"a": 1},
    }


def _params_with(cfg: Any, key: str, value: Any) -> dict[str, Any]:
    p: dict[str, Any] = ref.init_params(cfg)
    p[key] = value
    return p


def _reference_rows_for(m: str, cfg: Any) -> list[Row]:
    """Rows for one config (a function, so that every lambda binds this config's values)."""
    rows = []
    p = ref.init_params(cfg)
    fwd = lambda x=_X, c=cfg, p=p, **kw: ref.forward(c, p, x, **kw)  # noqa: E731
    for dtype in ("int32", "uint8", "bool", "complex128", "object", "<U3"):
        x = np.zeros(_X.shape, dtype=dtype)
        rows.append(_raises(f"{m}.forward.x_{dtype}", lambda f=fwd, x=x: f(x), TypeError, "dtype"))
    for i, x in enumerate([None, "x", np.zeros((6, 4, 5)), np.zeros((2, 5, 4, 5)), np.zeros((0, 6, 4, 5))]):
        rows.append(_raises(f"{m}.forward.x[{i}]", lambda f=fwd, x=x: f(x), BAD, "input"))
    for i, t in enumerate(["no", "", 1, 0, None, 0.5, [True], np.array([True, False])]):
        rows.append(_raises(f"{m}.forward.training[{i}]", lambda f=fwd, t=t: f(training=t), TypeError, "`training`"))
    for i, d in enumerate(["NCHW", None, 1, "channels-last"]):
        rows.append(_raises(f"{m}.forward.data_format[{i}]", lambda f=fwd, d=d: f(data_format=d), BAD, "`data_format`"))
    for i, cfg_bad in enumerate(["se", None, cfg.to_dict()]):
        rows.append(_raises(f"{m}.forward.cfg[{i}]", lambda c=cfg_bad: ref.forward(c, p, _X), TypeError, "`cfg`"))
    for i, params in enumerate([None, [("a", 1)], np.zeros(3)]):
        rows.append(_raises(f"{m}.forward.params[{i}]", lambda q=params: ref.forward(cfg, q, _X), TypeError, "params"))
    last = list(p)[-1]
    for kind, value in _bad_values(p[last].shape).items():
        error = ref.KeyMismatchError if kind in ("misshaped",) else BAD
        bad = _params_with(cfg, last, value)
        rows.append(
            _raises(
                f"{m}.forward.param_{kind}",
                lambda q=bad: ref.forward(cfg, q, _X),
                error,
                last,
            )
        )
    rows.append(_raises(f"{m}.forward.param_extra", lambda: ref.forward(cfg, {**p, "zz": 1.0}, _X), BAD, "zz"))
    y, cache, _ = ref.forward(cfg, p, _X)
    for i, dy in enumerate([None, "x", np.zeros((2, 6)), np.full(y.shape, None), np.ones(y.shape, complex)]):
        rows.append(_raises(f"{m}.backward.dy[{i}]", lambda dy=dy, c=cache: ref.backward(cfg, dy, c), BAD, "`dy`"))
    rows.append(_raises(f"{m}.backward.cache_none", lambda: ref.backward(cfg, y, None), TypeError, "`cache`"))
    other = SEConfig(6, rd_channels=3)
    rows.append(_raises(f"{m}.backward.cache_other", lambda c=cache: ref.backward(other, y, c), ValueError, "`cache`"))
    # conversions and third-party state dicts
    rows.append(_raises(f"{m}.to_framework.name", lambda: ref.to_framework(cfg, p, "jax"), ValueError, "`framework`"))
    rows.append(
        _raises(
            f"{m}.to_framework.none",
            lambda q=_params_with(cfg, last, None): ref.to_framework(cfg, q, "flax"),  # noqa: B008 (bound once, here)
            TypeError,
            last,
        )
    )
    rows.append(
        _raises(f"{m}.from_framework.missing", lambda: ref.from_framework(cfg, {}, "keras"), ValueError, "missing")
    )
    rows.append(_raises(f"{m}.import.source", lambda: ref.import_state_dict({}, "nope", cfg), ValueError, "'nope'"))
    rows.append(_raises(f"{m}.export.source", lambda: ref.export_state_dict(p, "nope", cfg), ValueError, "'nope'"))
    return rows


def reference_rows() -> list[Row]:
    rows = [row for m, cfg in _CFGS.items() for row in _reference_rows_for(m, cfg)]
    timm = SEConfig.preset("timm", channels=16)
    sd = ref.export_state_dict(ref.init_params(timm), "timm", timm)
    rows.append(
        _raises(
            "se.import.none_value",
            lambda: ref.import_state_dict({**sd, "fc2.bias": np.full(16, None)}, "timm", timm),
            TypeError,
            "fc2.bias",
        )
    )
    rows.append(
        _raises("framework_leaf.kind", lambda: ref.convert.framework_leaf("dense2", "torch"), ValueError, "`kind`")
    )
    return rows


# ----------------------------------------------------------------------------- checkpoints


def _write(path: str, data: bytes) -> str:
    with open(path, "wb") as f:
        f.write(data)
    return path


def _file(tmp: str, name: str, tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> str:
    from safetensors.numpy import save_file

    path = os.path.join(tmp, name)
    save_file(tensors, path, metadata=metadata)
    return path


def _valid_checkpoint(result: Any) -> bool:
    """A load that succeeded after a bit flip must still be a complete, consistent checkpoint."""
    cfg, params = result
    ref.check_params(cfg, params)
    return all(v.dtype == np.float64 for v in params.values())


def checkpoint_rows(tmp: str) -> list[Row]:
    cfg = _CFGS["cbam"]
    params = ref.init_params(cfg)
    good = os.path.join(tmp, "good.safetensors")
    ref.save_checkpoint(good, cfg, params)
    data = open(good, "rb").read()
    header_len = struct.unpack("<Q", data[:8])[0]
    meta = {"format": "attnspec", "format_version": "1", "module": "cbam", "config": cfg.to_json()}
    load = ref.load_checkpoint
    rows: list[Row] = []

    def file_row(row_id: str, path: str, *names: str, expected: Any = None) -> Row:
        return _raises(row_id, lambda: load(path, expected=expected), CheckpointError, repr(path), *names)

    # truncated
    for n in sorted({0, 1, 7, 8, 9, 8 + header_len // 2, 8 + header_len - 1, 8 + header_len, len(data) - 1}):
        rows.append(file_row(f"truncated[{n}]", _write(os.path.join(tmp, f"trunc{n}"), data[:n])))
    # every bit of the length prefix, and a deterministic sample of header bits
    rng = np.random.default_rng(14)
    header_bits = rng.choice(header_len * 8, size=min(600, header_len * 8), replace=False)
    for bit in [*range(64), *(64 + int(b) for b in header_bits)]:
        flipped = bytearray(data)
        flipped[bit // 8] ^= 1 << (bit % 8)
        path = _write(os.path.join(tmp, f"flip{bit}"), bytes(flipped))
        row = file_row(f"bitflip[{bit}]", path)
        rows.append(Row(row.id, row.call, row.error, row.names, valid_if_accepted=_valid_checkpoint))
    # garbage and wrong kinds of files
    rows.append(file_row("garbage", _write(os.path.join(tmp, "garbage"), b"\x00" * 64)))
    rows.append(file_row("huge_header_len", _write(os.path.join(tmp, "hugelen"), struct.pack("<Q", 2**63) + b"{}")))
    rows.append(file_row("json_not_object", _write(os.path.join(tmp, "arr"), struct.pack("<Q", 2) + b"[]")))
    rows.append(file_row("directory", tmp))
    rows.append(file_row("missing_file", os.path.join(tmp, "nope.safetensors")))
    rows.append(_raises("path_int", lambda: load(5), TypeError, "`path`"))
    rows.append(_raises("path_none", lambda: load(None), TypeError, "`path`"))
    # metadata
    for key, value, needle in [
        ("format", "other", "format"),
        ("format_version", "2", "format_version"),
        ("module", "se", "module"),
        ("config", "not json", "config"),
        ("config", "[]", "config"),
        ("config", "[" * 100_000 + "]" * 100_000, "nested"),
        ("config", '{"module": "cbam", "channels": 1' + "0" * 400 + "}", "`channels`"),
        ("config", json.dumps({**cfg.to_dict(), "bn_eps": 1e400}), "`bn_eps`"),
        ("config", '{"module": "cbam", "channels": 6, "bn_eps": 1e999}', "`bn_eps`"),
        ("config", json.dumps({**cfg.to_dict(), "channels": "6"}), "`channels`"),
        ("config", json.dumps({**cfg.to_dict(), "spatial_pool_order": ["max", 1]}), "`spatial_pool_order`"),
        ("config", json.dumps({**cfg.to_dict(), "extra": 1}), "extra"),
        ("config", json.dumps({"module": "eca", "channels": 16, "gamma": 5e-324}), "`gamma`"),
    ]:
        path = _file(tmp, f"meta_{len(rows)}", params, {**meta, key: value})
        rows.append(file_row(f"metadata.{key}={value[:20]!r}", path, needle))
    no_meta = _file(tmp, "no_meta", params, {})
    rows.append(file_row("metadata.none", no_meta, "format"))
    # tensors
    last = list(params)[-1]
    for name, tensors in {
        "missing": {k: v for k, v in params.items() if k != last},
        "extra": {**params, "zz": np.zeros(1)},
        "misshaped": {**params, last: np.zeros((2,))},
        "bool": {**params, last: np.ones(1, bool)},
        "complex": {**params, last: np.ones(1, np.complex64)},
    }.items():
        rows.append(
            file_row(f"tensors.{name}", _file(tmp, f"t_{name}", tensors, meta), last if name != "extra" else "zz")
        )
    rows.append(file_row("expected_other", good, "expected", expected=SEConfig(6, rd_channels=2)))
    rows.append(_raises("expected_not_config", lambda: load(good, expected="cbam"), TypeError, "`cfg`"))
    # saving
    rows.append(_raises("save.directory", lambda: ref.save_checkpoint(tmp, cfg, params), OSError, repr(tmp)))
    no_dir = os.path.join(tmp, "no", "dir.safetensors")
    rows.append(_raises("save.no_dir", lambda: ref.save_checkpoint(no_dir, cfg, params), OSError, repr(no_dir)))
    rows.append(_raises("save.path_none", lambda: ref.save_checkpoint(None, cfg, params), TypeError, "`path`"))
    rows.append(_raises("save.cfg", lambda: ref.save_checkpoint(good, "cbam", params), TypeError, "`cfg`"))
    for kind, value in _bad_values((1,)).items():
        q = _params_with(cfg, last, value)
        out = os.path.join(tmp, f"save_{kind}")
        rows.append(_raises(f"save.param_{kind}", lambda q=q, out=out: ref.save_checkpoint(out, cfg, q), BAD, last))
    return rows


# ----------------------------------------------------------------------------- ports: shared load rows


def _load_rows(port: str, load: Callable[[Any], Any], cfg: Any, overflow: bool = True) -> list[Row]:
    """Bad canonical dicts for a port's load; the module must also be unchanged (tests/test_atomic_loads.py)."""
    p = ref.init_params(cfg)
    last = list(p)[-1]
    rows = [
        _raises(f"{port}.load.params_none", lambda: load(None), TypeError, "params"),
        _raises(f"{port}.load.params_list", lambda: load(list(p.items())), TypeError, "params"),
        _raises(f"{port}.load.missing", lambda: load({k: v for k, v in p.items() if k != last}), ValueError, last),
        _raises(f"{port}.load.extra", lambda: load({**p, "zz": np.zeros(1)}), ValueError, "zz"),
    ]
    for kind, value in _bad_values(p[last].shape).items():
        bad = _params_with(cfg, last, value)
        rows.append(_raises(f"{port}.load.{kind}", lambda q=bad: load(q), BAD, last))
    if overflow:
        rows.append(
            _raises(
                f"{port}.load.overflow",
                lambda: load(_params_with(cfg, last, np.full(p[last].shape, 1e300))),
                ValueError,
                last,
            )
        )
    return rows


# ----------------------------------------------------------------------------- PyTorch


def torch_rows() -> list[Row]:
    torch = pytest.importorskip("torch")
    import torch_impl

    cfg = _CFGS["cbam"]
    m = torch_impl.from_config(cfg)
    x = torch.randn(2, 6, 4, 5)

    def forward_with_training(value: Any) -> Any:
        module = torch_impl.from_config(cfg)
        module.training = value  # bypassing .train(): the spec check still refuses it
        return module(x)

    rows = [
        _raises("torch.ctor.channels", lambda: torch_impl.CBAM("8"), TypeError, "`channels`"),
        _raises("torch.ctor.knob", lambda: torch_impl.CBAM(8, ratio=0.5), TypeError, "'ratio'"),
        _raises("torch.ctor.range", lambda: torch_impl.ECA(16, gamma=5e-324), ValueError, "`gamma`"),
        _raises(
            "torch.ctor.order",
            lambda: torch_impl.CBAM(16, spatial_pool_order=("max", 1)),
            ValueError,
            "`spatial_pool_order`",
        ),
        _raises("torch.ctor.preset", lambda: torch_impl.SqueezeExcite(8, preset="nope"), ValueError, "'nope'"),
        _raises("torch.train_str", lambda: torch_impl.from_config(cfg).train("no"), ValueError, "training"),
        _raises("torch.training_attr_str", lambda: forward_with_training("no"), TypeError, "`training`"),
        _raises("torch.training_attr_int", lambda: forward_with_training(1), TypeError, "`training`"),
        _raises("torch.from_config.str", lambda: torch_impl.from_config("cbam"), TypeError, "`cfg`"),
        _raises(
            "torch.load.strict",
            lambda: torch_impl.load_canonical(m, ref.init_params(cfg), strict="no"),
            TypeError,
            "`strict`",
        ),
        _raises(
            "torch.load.not_module", lambda: torch_impl.load_canonical(torch.nn.Linear(2, 2), {}), TypeError, "`module`"
        ),
        _raises(
            "torch.load.meta",
            lambda: torch_impl.load_canonical(
                m, _params_with(cfg, "spatial.bn.running_var", torch.empty(1, device="meta"))
            ),
            TypeError,
            "spatial.bn.running_var",
        ),
    ]
    # PyTorch input type/dtype rows (float64 into float32, NumPy arrays, float8) belong to the
    # `torch` branch of issue #14 (item 8); add them here when that lands.
    return rows + _load_rows("torch", lambda q: torch_impl.load_canonical(m, q), cfg)


# ----------------------------------------------------------------------------- Flax


def flax_rows() -> list[Row]:
    pytest.importorskip("flax")
    import jax.numpy as jnp
    from flax import nnx

    from flax_impl import linen
    from flax_impl import nnx as fnnx

    cfg = _CFGS["cbam"]
    x = jnp.ones((2, 4, 5, 6))
    lin = linen.from_config(cfg)
    variables = lin.init(__import__("jax").random.key(0), x)
    mod = fnnx.from_config(cfg, rngs=nnx.Rngs(0))
    rows = [
        _raises("linen.data_format", lambda: linen.CBAM.create(6, data_format="NCHW"), ValueError, "`data_format`"),
        _raises("linen.dtype", lambda: linen.CBAM.create(6, dtype="int8"), TypeError, "`dtype`"),
        _raises("linen.dtype_garbage", lambda: linen.CBAM.create(6, dtype="x"), TypeError, "`dtype`"),
        _raises("linen.param_dtype_none", lambda: linen.CBAM.create(6, param_dtype=None), TypeError, "`param_dtype`"),
        _raises(
            "linen.knob",
            lambda: linen.CBAM.create(6, spatial_pool_order=("max", 1)),
            ValueError,
            "`spatial_pool_order`",
        ),
        _raises("linen.from_config.str", lambda: linen.from_config("cbam"), TypeError, "`cfg`"),
        _raises(
            "linen.from_config.bad_dict",
            lambda: linen.from_config({"module": "cbam", "channels": -1}),
            ValueError,
            "`channels`",
        ),
        _raises(
            "linen.training_str",
            lambda: lin.apply(variables, x, training="no", mutable=["batch_stats"]),
            TypeError,
            "`training`",
        ),
        _raises(
            "linen.training_int",
            lambda: lin.apply(variables, x, training=1, mutable=["batch_stats"]),
            TypeError,
            "`training`",
        ),
        _raises(
            "linen.from_canonical.param_dtype",
            lambda: linen.from_canonical(cfg, ref.init_params(cfg), param_dtype="int32"),
            TypeError,
            "`param_dtype`",
        ),
        _raises(
            "nnx.data_format", lambda: fnnx.CBAM(6, data_format="NHWC", rngs=nnx.Rngs(0)), ValueError, "`data_format`"
        ),
        _raises("nnx.dtype", lambda: fnnx.CBAM(6, dtype=jnp.int32, rngs=nnx.Rngs(0)), TypeError, "`dtype`"),
        _raises(
            "nnx.use_running_average_ctor",
            lambda: fnnx.CBAM(6, use_running_average="no", rngs=nnx.Rngs(0)),
            TypeError,
            "`use_running_average`",
        ),
        _raises(
            "nnx.use_running_average_call", lambda: mod(x, use_running_average=1), TypeError, "`use_running_average`"
        ),
        _raises("nnx.from_config.str", lambda: fnnx.from_config("cbam", rngs=nnx.Rngs(0)), TypeError, "`cfg`"),
        _raises(
            "nnx.load.strict", lambda: fnnx.load_canonical(mod, ref.init_params(cfg), strict=1), TypeError, "`strict`"
        ),
        _raises(
            "nnx.load.not_module", lambda: fnnx.load_canonical("cbam", ref.init_params(cfg)), TypeError, "`module`"
        ),
    ]
    rows += _load_rows("linen", lambda q: linen.from_canonical(cfg, q), cfg)
    return rows + _load_rows("nnx", lambda q: fnnx.load_canonical(mod, q), cfg)


# ----------------------------------------------------------------------------- Keras


def keras_rows() -> list[Row]:
    pytest.importorskip("keras")
    import tf_impl

    cfg = _CFGS["cbam"]
    layer = tf_impl.from_config(cfg, data_format="channels_first")
    layer.build((None, 6, 4, 5))
    x = np.ones((2, 6, 4, 5), np.float32)
    rows = [
        _raises("keras.ctor.knob", lambda: tf_impl.CBAM(6, ratio=2), TypeError, "'ratio'"),
        _raises("keras.ctor.range", lambda: tf_impl.SqueezeExcite(10**400), ValueError, "`channels`"),
        _raises("keras.ctor.data_format", lambda: tf_impl.CBAM(6, data_format="NCHW"), ValueError, "`data_format`"),
        _raises("keras.training_str", lambda: layer(x, training="no"), TypeError, "`training`"),
        _raises("keras.training_int", lambda: layer(x, training=1), TypeError, "`training`"),
        _raises("keras.from_config.str", lambda: tf_impl.from_config("cbam"), TypeError, "`cfg`"),
        _raises(
            "keras.load.unbuilt",
            lambda: tf_impl.load_canonical(tf_impl.from_config(cfg), ref.init_params(cfg)),
            ValueError,
            "build",
        ),
        _raises(
            "keras.load.not_layer", lambda: tf_impl.load_canonical("cbam", ref.init_params(cfg)), TypeError, "layer"
        ),
        _raises(
            "keras.load.strict",
            lambda: tf_impl.load_canonical(layer, ref.init_params(cfg), strict="no"),
            TypeError,
            "`strict`",
        ),
    ]
    return rows + _load_rows("keras", lambda q: tf_impl.load_canonical(layer, q), cfg)


# ----------------------------------------------------------------------------- golden vectors


def _safetensors(path: str, tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> str:
    """Written by safetensors itself, so that any dtype can be stored (the vectors' writer stores only floats)."""
    from safetensors.numpy import save_file

    save_file(tensors, path, metadata=metadata)
    return path


def _valid_vector(result: Any) -> bool:
    """A vector file that loaded after a bit flip must still be a complete, consistent case."""
    case, out = result
    ref.check_params(case.cfg, case.params)
    return out.y.shape == case.x.shape == case.dy.shape and out.dx is not None and out.bound is not None


def vectors_rows(tmp: str) -> list[Row]:
    from safetensors import safe_open

    from conformance import get_adapter, make_case
    from conformance.vectors import (
        METADATA,
        VectorError,
        check_vector_file,
        check_vectors,
        default_cases,
        export_vectors,
        load_vector,
        vector_files,
        write_safetensors,
    )

    numpy = get_adapter("numpy")
    cfg = CBAMConfig(4, rd_channels=2, spatial_kernel_size=3, spatial_norm=True)  # every kind of tensor
    case = make_case(cfg, training=True, shape=(2, 4, 3, 3), name="sweep")
    good_dir, bad_dir = os.path.join(tmp, "vectors"), os.path.join(tmp, "bad_vectors")
    (good,) = export_vectors(good_dir, [case])
    os.makedirs(bad_dir)
    good = str(good)
    with safe_open(good, framework="numpy") as f:
        meta, t = dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}
    data = open(good, "rb").read()
    header_len = struct.unpack("<Q", data[:8])[0]
    rows: list[Row] = []
    n = [0]

    def path(stem: str) -> str:
        n[0] += 1
        return os.path.join(bad_dir, f"{n[0]:03d}-{stem}.safetensors")

    def file_row(row_id: str, p: str, *names: str, error: Any = VectorError) -> Row:
        return _raises(row_id, lambda: load_vector(p), error, repr(p), *names)

    def rewritten(row_id: str, *names: str, meta_: dict[str, str] | None = None, **tensors: Any) -> Row:
        t2 = {k: v for k, v in {**t, **tensors}.items() if v is not None}
        p = path(row_id)
        write_safetensors(p, t2, meta if meta_ is None else meta_)
        return file_row(row_id, p, *names)

    # truncated, bit-flipped, garbage
    for cut in sorted({0, 1, 7, 8, 9, 8 + header_len // 2, 8 + header_len - 1, 8 + header_len, len(data) - 1}):
        rows.append(file_row(f"truncated[{cut}]", _write(path(f"trunc{cut}"), data[:cut])))
    rng = np.random.default_rng(1414)
    for bit in [*range(0, 64, 3), *(64 + int(b) for b in rng.choice(header_len * 8, size=160, replace=False))]:
        flipped = bytearray(data)
        flipped[bit // 8] ^= 1 << (bit % 8)
        row = file_row(f"bitflip[{bit}]", _write(path(f"flip{bit}"), bytes(flipped)))
        rows.append(Row(row.id, row.call, row.error, row.names, valid_if_accepted=_valid_vector))
    rows.append(file_row("garbage", _write(path("garbage"), os.urandom(64))))
    rows.append(file_row("a_checkpoint", _write(path("ckpt"), _checkpoint_bytes(tmp)), "format"))
    rows.append(file_row("directory", good_dir))
    rows.append(file_row("missing_file", os.path.join(tmp, "nope.safetensors")))
    # metadata
    for key, value, needle in [
        ("format", "attnspec", "format"),
        ("format_version", "3", "format_version"),
        ("module", "se", "module"),
        ("config", "not json", "config"),
        ("config", "[]", "config"),
        ("config", "[" * 100_000 + "]" * 100_000, "config"),
        ("config", json.dumps({**cfg.to_dict(), "channels": 10**400}), "`channels`"),
        ("config", json.dumps({**cfg.to_dict(), "channels": 8}), "channels"),
        ("config", json.dumps({**cfg.to_dict(), "extra": 1}), "extra"),
        ("config", json.dumps({**cfg.to_dict(), "spatial_norm": False}), "spatial.bn"),
        ("dtype", "int8", "dtype"),
        ("dtype", "", "dtype"),
        ("data_format", "NCHW", "data_format"),
        ("training", "yes", "training"),
        ("seed", "-1", "seed"),
        ("seed", "1e3", "seed"),
        ("seed", "9" * 5000, "seed"),
        ("case", "", "case"),
        ("spec_version", "1,1", "spec_version"),
    ]:
        rows.append(rewritten(f"metadata.{key}={value[:12]!r}", needle, meta_={**meta, key: value}))
    for key in METADATA:
        rows.append(rewritten(f"metadata.missing_{key}", key, meta_={k: v for k, v in meta.items() if k != key}))
    # tensors: stripped, extra, wrong dtype, shape or values
    grad, state, param = "grads.channel.fc1.weight", "state.spatial.bn.running_var", "params.spatial.bn.weight"
    for name in ("x", "dy", "y", "dx", grad, state, "bounds.y", f"bounds.{grad}", param):
        rows.append(rewritten(f"tensors.missing_{name}", name.removeprefix("params."), **{name: None}))
    rows += [
        rewritten("tensors.extra", "zz", zz=np.zeros(1)),
        rewritten("tensors.extra_grad", "grads.zz", **{"grads.zz": np.zeros(1)}),
        rewritten("tensors.extra_param", "zz", **{"params.zz": np.zeros(1)}),
        rewritten("tensors.orphan_bound", "bounds.zz", **{"bounds.zz": np.zeros(1, np.float32)}),
        rewritten("tensors.x_float32", "'x'", "float32", x=t["x"].astype(np.float32)),
        rewritten("tensors.x_3d", "'x'", x=t["x"][0]),
        rewritten("tensors.x_empty", "'x'", x=t["x"][:0]),
        rewritten("tensors.x_channels", "channels", x=t["x"][:, :3]),
        rewritten("tensors.dy_shape", "'dy'", dy=t["dy"][:1]),
        rewritten("tensors.y_shape", "'y'", y=t["y"][:1]),
        rewritten("tensors.grad_shape", grad, **{grad: t[grad].T}),
        rewritten("tensors.state_shape", state, **{state: np.zeros(2)}),
        rewritten("tensors.param_shape", "spatial.bn.weight", **{param: np.zeros(2)}),
        rewritten("tensors.bound_negative", "bounds.y", **{"bounds.y": -np.ones(t["y"].shape, np.float32)}),
        rewritten("tensors.bound_shape", "bounds.y", **{"bounds.y": np.ones(3, np.float32)}),
        rewritten("tensors.bound_nan", "bounds.dx", **{"bounds.dx": np.full(t["dx"].shape, np.nan, np.float32)}),
    ]
    for name, value in {
        "x": t["x"].astype(np.int64),
        "y": (t["y"] > 0),
        "bounds.y": np.ones(t["y"].shape, np.int32),
    }.items():
        p = _safetensors(path(f"dtype_{name}"), {**t, name: value}, meta)
        rows.append(file_row(f"tensors.{name}_{value.dtype}", p, f"'{name}'", str(value.dtype)))
    # a readable file whose expected output is not what the reference computes: a failed check, not an error
    wrong = path("wrong_y")
    write_safetensors(wrong, {**t, "y": t["y"] * (1 + 1e-6)}, meta)
    rows.append(_failed_report("check.wrong_y", lambda: check_vector_file(wrong, numpy), "y", "MISMATCH"))
    rows.append(_raises("check_vectors.bad_file", lambda: check_vectors(bad_dir, numpy), VectorError, bad_dir))
    # wrong types and values of every argument
    no_dir = os.path.join(tmp, "no_such_dir")
    rows += [
        _raises("load.path_int", lambda: load_vector(5), TypeError, "`path`"),
        _raises("load.path_none", lambda: load_vector(None), TypeError, "`path`"),
        _raises("check_file.adapter_str", lambda: check_vector_file(good, "numpy"), TypeError, "`adapter`"),
        _raises("check_file.adapter_none", lambda: check_vector_file(good, None), TypeError, "`adapter`"),
        _raises("check_file.path_none", lambda: check_vector_file(None, numpy), TypeError, "`path`"),
        _raises("check_vectors.missing_dir", lambda: check_vectors(no_dir, numpy), ValueError, "`directory`", no_dir),
        _raises("check_vectors.a_file", lambda: check_vectors(good, numpy), ValueError, "`directory`", good),
        _raises("check_vectors.dir_int", lambda: check_vectors(5, numpy), TypeError, "`directory`"),
        _raises("check_vectors.adapter", lambda: check_vectors(good_dir, "numpy"), TypeError, "`adapter`"),
        _raises("vector_files.int", lambda: vector_files(5), TypeError, "`directory`"),
        _raises("vector_files.missing", lambda: vector_files(no_dir), ValueError, "`directory`", no_dir),
        _raises("export.dir_none", lambda: export_vectors(None, [case]), TypeError, "`directory`"),
        _raises("export.onto_a_file", lambda: export_vectors(good, [case]), ValueError, "`directory`", good),
        _raises("export.under_a_file", lambda: export_vectors(good + "/sub", [case]), OSError, good),
        _raises("export.cases_int", lambda: export_vectors(os.path.join(tmp, "e1"), 5), TypeError, "`cases`"),
        _raises("export.cases_str", lambda: export_vectors(os.path.join(tmp, "e2"), "se"), TypeError, "`cases`"),
        _raises("export.cases_item", lambda: export_vectors(os.path.join(tmp, "e3"), [case, 5]), TypeError, "`cases`"),
        _raises("export.case_alone", lambda: export_vectors(os.path.join(tmp, "e4"), case), TypeError, "`cases`"),
        _raises("export.duplicate", lambda: export_vectors(os.path.join(tmp, "e5"), [case, case]), ValueError, "id"),
    ]
    for kw, name in [
        ({"seed": -1}, "seed"),
        ({"seed": "0"}, "seed"),
        ({"seed": True}, "seed"),
        ({"modules": "se"}, "modules"),
        ({"modules": ("bam",)}, "modules"),
        ({"modules": ()}, "modules"),
        ({"dtypes": "float64"}, "dtypes"),
        ({"dtypes": ("int8",)}, "dtypes"),
        ({"data_formats": ("NCHW",)}, "data_formats"),
        ({"data_formats": None}, "data_formats"),
    ]:
        rows.append(_raises(f"default_cases.{name}={kw[name]!r}", lambda kw=kw: default_cases(**kw), BAD, f"`{name}`"))
    return rows


def _checkpoint_bytes(tmp: str) -> bytes:
    """A valid attnspec checkpoint: a safetensors file, but not a vector file."""
    p = os.path.join(tmp, "a_checkpoint.safetensors")
    ref.save_checkpoint(p, _CFGS["eca"], ref.init_params(_CFGS["eca"]))
    return open(p, "rb").read()


# ----------------------------------------------------------------------------- python -m conformance

WILD = "tests.third_party_fixtures.torch_wild:"
SWEEP = "tests.third_party_fixtures.sweep_targets:"
NETS = "tests.third_party_fixtures.audit_nets:"


def cli_rows(tmp: str) -> list[Row]:
    from conformance import make_case
    from conformance.vectors import export_vectors
    from reference_numpy.spec_doc import spec_sections

    a_file = os.path.join(tmp, "a_file.txt")
    _write(a_file, b"")
    vectors, empty, corrupt = (os.path.join(tmp, d) for d in ("vectors", "empty", "corrupt"))
    export_vectors(vectors, [make_case(ECAConfig(4), shape=(1, 4, 2, 3), name="tiny")])
    os.makedirs(empty)
    os.makedirs(corrupt)
    _write(os.path.join(corrupt, "broken.safetensors"), b"\x08" + b"\x00" * 7 + b"{not json")
    out = os.path.join(tmp, "out")
    maps = {
        "bad_json": "{bad",
        "deep": "[" * 100_000 + "]" * 100_000,
        "list": "[1]",
        "int_entry": json.dumps({"reduce.weight": 3}),
        "unknown_name": json.dumps({"reduce.weight": "nope.weight"}),
        "bad_layout": json.dumps({"reduce.weight": {"canonical": "fc1.weight", "layout": "jax"}}),
        "binary": "\x00\xff",
    }
    map_files = {k: _write(os.path.join(tmp, f"{k}.json"), v.encode("latin-1")) for k, v in maps.items()}
    has_torch = importlib.util.find_spec("torch") is not None
    if has_torch:  # imported here once: each verify/audit row's forked worker inherits it instead of importing it
        importlib.import_module("torch")
    verify = ["verify", WILD + "UnfamiliarSE", "--framework", "torch", "--module", "se", "--init-kwargs", '{"c1": 64}']
    audit = ["audit", NETS + "plain_net", "--framework", "torch", "--input-shape", "1,3,4,4"]
    R = _cli
    rows = [
        # report
        R("report.framework", ["report", "--frameworks", "jax"], 2, "'jax'"),
        R("report.framework_empty", ["report", "--frameworks", ","], 2, "at least one framework"),
        R("report.framework_missing_value", ["report", "--frameworks"], 2, "--frameworks"),
        R("report.module", ["--modules", "bam"], 2, "'bam'"),
        R("report.format", ["report", "--format", "html"], 2, "'html'"),
        R("report.seed_negative", ["report", "--seed", "-1"], 2, "seed"),
        R("report.seed_text", ["report", "--seed", "x"], 2, "seed"),
        R("report.seed_huge", ["report", "--seed", str(2**32)], 2, "seed"),
        R("report.jobs_negative", ["report", "--jobs", "-1"], 2, "--jobs"),
        R("report.jobs_text", ["report", "--jobs", "two"], 2, "--jobs"),
        R("report.unknown_flag", ["report", "--bogus"], 2, "--bogus"),
        R("unknown_subcommand", ["bogus"], 2, "bogus"),
        # vectors export / check
        R("vectors.no_action", ["vectors"], 2, "export,check"),
        R("vectors.bad_action", ["vectors", "bogus"], 2, "bogus"),
        R("export.no_directory", ["vectors", "export"], 2, "directory"),
        R("export.onto_a_file", ["vectors", "export", a_file], 2, a_file),
        R("export.under_a_file", ["vectors", "export", a_file + "/sub"], 2, a_file),
        R("export.seed_negative", ["vectors", "export", out, "--seed", "-1"], 2, "seed"),
        R("export.dtype", ["vectors", "export", out, "--dtypes", "int8"], 2, "'int8'"),
        R("export.data_format", ["vectors", "export", out, "--data-formats", "NCHW"], 2, "'NCHW'"),
        R("export.modules_empty", ["vectors", "export", out, "--modules", ""], 2, "at least one module"),
        R("check.no_framework", ["vectors", "check", vectors], 2, "--framework"),
        R("check.framework", ["vectors", "check", vectors, "--framework", "jax"], 2, "'jax'"),
        R("check.format", ["vectors", "check", vectors, "--framework", "numpy", "--format", "xml"], 2, "'xml'"),
        R("check.missing_dir", ["vectors", "check", out + "/nope", "--framework", "numpy"], 2, "nope"),
        R("check.a_file", ["vectors", "check", a_file, "--framework", "numpy"], 2, a_file),
        R("check.empty_dir", ["vectors", "check", empty, "--framework", "numpy"], 1, "nothing checked", empty),
        R("check.corrupt_file", ["vectors", "check", corrupt, "--framework", "numpy"], 1, "broken.safetensors"),
        # verify: the command, not the target
        R("verify.no_target", ["verify", "--framework", "torch"], 2, "target"),
        R("verify.no_framework", ["verify", WILD + "UnfamiliarSE"], 2, "--framework"),
        R("verify.target_no_colon", ["verify", "nocolon", "--framework", "torch"], 2, "nocolon"),
        R("verify.target_two_colons", ["verify", "a:b:c", "--framework", "torch"], 2, "a:b:c"),
        R("verify.no_such_module", ["verify", "no_such_module_x:X", "--framework", "torch"], 2, "no_such_module_x"),
        R("verify.no_such_attr", ["verify", SWEEP + "Nope", "--framework", "torch"], 2, "'Nope'"),
        R("verify.not_callable", ["verify", SWEEP + "NOT_CALLABLE", "--framework", "torch"], 2, "NOT_CALLABLE"),
        R("verify.framework", [*verify[:2], "--framework", "jax"], 2, "'jax'"),
        R("verify.module", [*verify, "--module", "bam"], 2, "'bam'"),
        R("verify.init_kwargs_list", [*verify, "--init-kwargs", "[1]"], 2, "--init-kwargs"),
        R("verify.init_kwargs_bad", [*verify, "--init-kwargs", "{c1: 64}"], 2, "--init-kwargs"),
        R("verify.init_kwargs_deep", [*verify, "--init-kwargs", "[" * 100_000 + "]" * 100_000], 2, "--init-kwargs"),
        R("verify.expect_deep", [*verify, "--expect", "{" + '"a":{' * 50_000 + "}" * 50_001], 2, "--expect"),
        R("verify.expect_preset", [*verify, "--expect", "nope"], 2, "'nope'"),
        R("verify.expect_knob", [*verify, "--expect", '{"ratio": 2}'], 2, "ratio"),
        R("verify.channels_zero", [*verify, "--channels", "0"], 2, "`channels`"),
        R("verify.channels_text", [*verify, "--channels", "x"], 2, "--channels"),
        R("verify.seed_negative", [*verify, "--seed", "-1"], 2, "seed"),
        R("verify.timeout_zero", [*verify, "--timeout", "0"], 2, "--timeout"),
        R("verify.timeout_nan", [*verify, "--timeout", "nan"], 2, "--timeout"),
        R("verify.data_format", [*verify, "--data-format", "NCHW"], 2, "'NCHW'"),
        R("verify.format", [*verify, "--format", "xml"], 2, "'xml'"),
        R("verify.map_dialect", [*verify, "--map", "nodialect"], 2, "nodialect"),
        R("verify.map_missing", [*verify, "--map", os.path.join(tmp, "missing.json")], 2, "missing.json"),
        R("verify.map_directory", [*verify, "--map", tmp], 2, tmp),
        *(R(f"verify.map_{k}", [*verify, "--map", v], 2, "map file") for k, v in map_files.items()),
        # verify: targets that misbehave (exit 1, the reason on stdout)
        R(
            "verify.raises_on_import",
            ["verify", "tests.third_party_fixtures.raises_on_import:X", "--framework", "torch"],
            1,
            "importing tests.third_party_fixtures.raises_on_import raised RuntimeError",
        ),
        R(
            "verify.segfault",
            ["verify", SWEEP + "SegfaultSE", "--framework", "torch", "--module", "se", "--timeout", "5"],
            1,
            "killed by SIGSEGV",
        ),
        R(
            "verify.hang",
            ["verify", WILD + "SleepSE", "--framework", "torch", "--module", "se", "--timeout", "0.5"],
            1,
            "did not return within 0.5 s",
        ),
        # audit
        R("audit.no_target", ["audit", "--framework", "torch"], 2, "target"),
        R("audit.target_no_colon", ["audit", "nocolon", "--framework", "torch"], 2, "nocolon"),
        R("audit.no_such_module", ["audit", "no_such_module_x:net", "--framework", "torch"], 2, "no_such_module_x"),
        R("audit.no_such_attr", ["audit", NETS + "nothing_here", "--framework", "torch"], 2, "'nothing_here'"),
        R("audit.framework", [*audit[:2], "--framework", "jax"], 2, "'jax'"),
        R("audit.input_shape_zero", [*audit, "--input-shape", "0,3,4,4"], 2, "--input-shape"),
        R("audit.input_shape_text", [*audit, "--input-shape", "a,b"], 2, "--input-shape"),
        R("audit.input_shape_empty", [*audit, "--input-shape", ""], 2, "--input-shape"),
        R("audit.input_shape_huge", [*audit, "--input-shape", f"2,3,{10**400},1"], 2, "`input_shape`"),
        R("audit.timeout_negative", [*audit, "--timeout", "-1"], 2, "--timeout"),
        R("audit.seed_negative", [*audit, "--seed", "-1"], 2, "seed"),
        R("audit.format", [*audit, "--format", "xml"], 2, "'xml'"),
        R("audit.nothing_found", audit, 1, "no SE, CBAM or ECA block was found"),
        R("audit.broken_build", ["audit", NETS + "broken_build", "--framework", "torch"], 1, "constructor fails"),
        R(
            "audit.exit_in_forward",
            ["audit", SWEEP + "exit_net", "--framework", "torch", "--input-shape", "1,3,4,4"],
            1,
            "sys.exit(0)",
        ),
        # spec: the error line, then the sections it knows
        R("spec.unknown", ["spec", "99"], 2, "`section`", "99", err_lines=2 + len(spec_sections())),
        R("spec.unknown_flag", ["spec", "--bogus"], 2, "--bogus"),
        R("spec.list_and_section", ["spec", "--list", "9"], 2, "--list"),
        # the real entry point, in a process of its own
        R("subprocess.usage", ["report", "--frameworks", "jax"], 2, "'jax'", real=True),
        R("subprocess.corrupt_vectors", ["vectors", "check", corrupt, "--framework", "numpy"], 1, "broken", real=True),
        R(
            "subprocess.exits_on_import",
            ["verify", "tests.third_party_fixtures.exits_on_import:X", "--framework", "torch"],
            1,
            "sys.exit(0)",
            real=True,
        ),
    ]
    if has_torch:
        return rows
    # without PyTorch only the rows whose target is never imported keep their meaning
    kept = (
        "verify.no_",
        "verify.target_",
        "verify.raises_on_import",
        "audit.no_target",
        "audit.target_",
        "audit.no_such_m",
    )
    return [r for r in rows if not r.id.startswith(("verify.", "audit.")) or r.id.startswith(kept)]


# ----------------------------------------------------------------------------- verify and audit


def targets_rows(tmp: str) -> list[Row]:
    pytest.importorskip("torch")
    from conformance.audit import audit
    from conformance.verify import verify

    def v(target: str, **kw: Any) -> Callable[[], Any]:
        return lambda: verify(target, **{"framework": "torch", "module": "se", "timeout": 5, **kw})

    def a(target: Any, **kw: Any) -> Callable[[], Any]:
        return lambda: audit(target, **{"framework": "torch", "input_shape": (1, 3, 4, 4), "timeout": 5, **kw})

    F = _failed_report
    rows = [
        # targets that misbehave: a failed report with the reason
        F("verify.raises_on_import", v("tests.third_party_fixtures.raises_on_import:X"), "raised RuntimeError"),
        F("verify.exits_on_import", v("tests.third_party_fixtures.exits_on_import:X"), "called sys.exit(0)"),
        F("verify.ctor_raises", v(SWEEP + "RaisingCtorSE"), "constructor always raises"),
        F("verify.ctor_exits", v(SWEEP + "ExitCtorSE"), "its constructor called sys.exit(0)"),
        F("verify.ctor_hangs", v(SWEEP + "SleepCtorSE", timeout=0.5), "its constructor did not return within 0.5 s"),
        F("verify.factory_not_a_module", v(SWEEP + "not_a_module"), "not a torch.nn.Module"),
        F("verify.forward_sys_exit", v(WILD + "ExitSE"), "its forward called sys.exit(0)"),
        F("verify.forward_os_exit", v(WILD + "HardExitSE"), "exited with status 0 during its forward"),
        F("verify.forward_abort", v(WILD + "AbortSE"), "killed by SIGABRT during its forward"),
        F("verify.forward_segfault", v(SWEEP + "SegfaultSE"), "killed by SIGSEGV during its forward"),
        F("verify.forward_hangs", v(WILD + "SleepSE", timeout=0.5), "its forward did not return within 0.5 s"),
        F("verify.forward_interrupt", v(SWEEP + "InterruptSE"), "KeyboardInterrupt"),
        F("verify.returns_tuple", v(WILD + "TupleSE"), "returned a tuple"),
        F("verify.returns_none", v(SWEEP + "NoneSE"), "the output must keep the input's shape"),
        F("verify.returns_numpy", v(SWEEP + "NumpySE"), "ndarray"),
        F("verify.returns_int", v(SWEEP + "IntSE"), "int64"),
        F("verify.wrong_shape", v(WILD + "ShapeSE"), "the output must keep the input's shape"),
        F("verify.nan", v(WILD + "NaNSE"), "it returns NaN or infinity"),
        F("verify.inf", v(SWEEP + "InfSE"), "it returns NaN or infinity"),
        F("audit.build_raises", a(NETS + "broken_build"), "constructor fails"),
        F("audit.build_exits", a(SWEEP + "exiting_build"), "building the network called sys.exit(0)"),
        F("audit.builds_an_int", a(SWEEP + "builds_an_int"), "not a torch module"),
        F("audit.nothing_found", a(NETS + "plain_net"), "nothing was checked"),
        F("audit.forward_raises", a(SWEEP + "raising_net"), "the network's forward raised RuntimeError"),
        F("audit.block_exits", a(SWEEP + "exit_net"), "its forward raised SystemExit (it called sys.exit(0))"),
        F("audit.block_segfaults", a(SWEEP + "segfault_net"), "killed by SIGSEGV"),
        F("audit.block_hangs", a(SWEEP + "hanging_net", timeout=0.5), "did not return within 0.5 s"),
        F("audit.input_2d", a(NETS + "plain_net", input_shape=(1, 3)), "the network's forward raised"),
    ]
    # wrong types and values of every argument: a usage error before any target runs
    se = WILD + "UnfamiliarSE"
    for kw, error, name in [
        ({"target": 5}, TypeError, "`target`"),
        ({"target": None}, TypeError, "`target`"),
        ({"target": "nocolon"}, ValueError, "`target`"),
        ({"target": "no_such_module_x:X"}, ValueError, "no_such_module_x"),
        ({"target": SWEEP + "NOT_CALLABLE"}, ValueError, "not a class or function"),
        ({"framework": "jax"}, ValueError, "`framework`"),
        ({"framework": None}, ValueError, "`framework`"),
        ({"framework": ["torch"]}, ValueError, "`framework`"),
        ({"module": "bam"}, ValueError, "`module`"),
        ({"module": 5}, ValueError, "`module`"),
        ({"init_kwargs": [("c1", 8)]}, TypeError, "`init_kwargs`"),
        ({"timeout": 0}, ValueError, "`timeout`"),
        ({"timeout": float("nan")}, ValueError, "`timeout`"),
        ({"timeout": "5"}, ValueError, "`timeout`"),
        ({"timeout": True}, ValueError, "`timeout`"),
        ({"channels": 0}, ValueError, "`channels`"),
        ({"channels": "8"}, ValueError, "`channels`"),
        ({"channels": True}, ValueError, "`channels`"),
        ({"seed": -1}, ValueError, "`seed`"),
        ({"seed": "0"}, ValueError, "`seed`"),
        ({"seed": 2**64}, ValueError, "`seed`"),
        ({"mapping": 5}, TypeError, "`mapping`"),
        ({"mapping": None}, TypeError, "`mapping`"),
        ({"mapping": "nodialect"}, ValueError, "`mapping`"),
        ({"expect": 5}, TypeError, "`expect`"),
        ({"expect": "nope"}, ValueError, "'nope'"),
        ({"expect": {"ratio": 2}}, ValueError, "ratio"),
        ({"data_format": "NCHW"}, ValueError, "`data_format`"),
        ({"isolate": "no"}, TypeError, "`isolate`"),
        ({"variables": {"params": {}}}, ValueError, "`variables`"),
        ({"sample": "x"}, ValueError, "`sample`"),
        ({"sample": np.ones((1, 8, 2))}, ValueError, "`sample`"),
        ({"sample": np.ones((1, 8, 2, 2), int)}, ValueError, "`sample`"),
        ({"sample": np.full((1, 8, 2, 2), np.nan)}, ValueError, "`sample`"),
    ]:
        target = kw.pop("target", se)
        key = next(iter(kw), "target")
        value = kw.get(key, target)
        kw = {"init_kwargs": {"c1": 64}, **kw}
        rows.append(_raises(f"verify.{key}={str(value)[:16]!r}", v(target, **kw), error, name))
    for kw, error, name in [
        ({"model": 5}, TypeError, "`model`"),
        ({"model": None}, TypeError, "`model`"),
        ({"model": "nocolon"}, ValueError, "`target`"),
        ({"framework": "jax"}, ValueError, "`framework`"),
        ({"framework": None}, ValueError, "`framework`"),
        ({"timeout": -1}, ValueError, "`timeout`"),
        ({"timeout": float("inf") * 0}, ValueError, "`timeout`"),
        ({"seed": -1}, ValueError, "`seed`"),
        ({"seed": "x"}, ValueError, "`seed`"),
        ({"input_shape": 5}, TypeError, "`input_shape`"),
        ({"input_shape": "1,3,4,4"}, TypeError, "`input_shape`"),
        ({"input_shape": (1, 0, 4, 4)}, ValueError, "`input_shape`"),
        ({"input_shape": (1, 3.0, 4, 4)}, ValueError, "`input_shape`"),
        ({"input_shape": (2, 3, 10**6, 10**6)}, ValueError, "`input_shape`"),
        ({"sample": "x"}, ValueError, "`sample`"),
        ({"isolate": 1}, TypeError, "`isolate`"),
        ({"variables": {}}, ValueError, "`variables`"),
    ]:
        model = kw.pop("model", NETS + "plain_net")
        key = next(iter(kw), "model")
        value = kw.get(key, model)
        rows.append(_raises(f"audit.{key}={str(value)[:16]!r}", a(model, **kw), error, name))
    return rows


# ----------------------------------------------------------------------------- public functions not covered above


def api_rows() -> list[Row]:
    """Every name in the packages' ``__all__`` that the sections above do not call, given wrong types and values."""
    import conformance as C
    from reference_numpy.convert import flatten, nest

    cfg = _CFGS["cbam"]
    p = ref.init_params(cfg)
    y, cache, _ = ref.forward(cfg, p, _X)
    se = SEConfig(6, rd_channels=2)
    se_y, se_cache, _ = ref.forward(se, ref.init_params(se), _X)
    timm = SEConfig.preset("timm", channels=16)
    sd = ref.export_state_dict(ref.init_params(timm), "timm", timm)
    deep: dict[str, Any] = {}
    for _ in range(50_000):
        deep = {"a": deep}
    numpy = C.get_adapter("numpy")
    case = C.make_case(ECAConfig(8), shape=(1, 8, 2, 3))
    rows = [
        # reference: per-module functions, checks, descriptions
        _raises("se_forward.cbam_cfg", lambda: ref.se_forward(_X, p, cfg), TypeError, "`cfg`", "SEConfig"),
        _raises("cbam_forward.se_cfg", lambda: ref.cbam_forward(_X, p, se), TypeError, "`cfg`", "CBAMConfig"),
        _raises("eca_forward.str_cfg", lambda: ref.eca_forward(_X, p, "eca"), TypeError, "`cfg`"),
        _raises("cbam_backward.cache_none", lambda: ref.cbam_backward(y, None), TypeError, "`cache`"),
        _raises("se_backward.cbam_cache", lambda: ref.se_backward(y, cache), TypeError, "`cache`"),
        _raises("eca_backward.se_cache", lambda: ref.eca_backward(se_y, se_cache), TypeError, "`cache`"),
        _raises("cbam_backward.dy_str", lambda: ref.cbam_backward("x", cache), BAD, "`dy`"),
        _raises("canonical_arrays.cfg", lambda: ref.canonical_arrays("se", p), TypeError, "`cfg`"),
        _raises("canonical_arrays.strict", lambda: ref.canonical_arrays(cfg, p, strict="no"), TypeError, "`strict`"),
        _raises("canonical_arrays.dtypes", lambda: ref.canonical_arrays(cfg, p, dtypes="int8"), TypeError, "int8"),
        _raises("check_fits.arrays", lambda: ref.check_fits(None, "float32"), TypeError, "`arrays`"),
        _raises("check_fits.overflow", lambda: ref.check_fits({"a": np.array([1e300])}, "float32"), ValueError, "a"),
        _raises("check_params.params", lambda: ref.check_params(cfg, None), TypeError, "params"),
        _raises("real_arrays.none", lambda: ref.real_arrays(None), TypeError, "`values`"),
        _raises("check_training.str", lambda: ref.check_training("yes"), TypeError, "`training`"),
        _raises("describe.str", lambda: ref.describe("se"), TypeError, "`cfg`"),
        _raises("differences.other", lambda: ref.differences(cfg, "se"), TypeError, "`other`"),
        _raises("differences.cfg", lambda: ref.differences(None, cfg), TypeError, "`cfg`"),
        _raises("effective_knobs.dict", lambda: ref.effective_knobs({"module": "se"}), TypeError, "`cfg`"),
        _raises("equivalent.b", lambda: ref.equivalent(cfg, None), TypeError, "`b`"),
        _raises("equivalent.a", lambda: ref.equivalent("cbam", cfg), TypeError, "`a`"),
        _raises("nearest_preset.str", lambda: ref.nearest_preset("se"), TypeError, "`cfg`"),
        _raises("preset_configs.none", lambda: ref.preset_configs(None), TypeError, "`cfg`"),
        _raises("param_init.str", lambda: ref.param_init("se"), TypeError, "`cfg`"),
        _raises("knob_names.module", lambda: ref.knob_names("bam"), ValueError, "`module`"),
        _raises("knob_names.none", lambda: ref.knob_names(None), ValueError, "`module`"),
        _raises("width_knobs.channels_zero", lambda: ref.width_knobs(0, 1), ValueError, "`channels`"),
        _raises("width_knobs.channels_str", lambda: ref.width_knobs("8", 2), TypeError, "`channels`"),
        _raises("width_knobs.hidden_zero", lambda: ref.width_knobs(8, 0), ValueError, "`hidden`"),
        _raises("width_knobs.hidden_float", lambda: ref.width_knobs(8, 2.5), TypeError, "`hidden`"),
        _raises("error_bounds.cfg", lambda: ref.error_bounds("se", cache), TypeError, "`cfg`"),
        _raises("error_bounds.cache", lambda: ref.error_bounds(cfg, None), TypeError, "`cache`"),
        _raises("error_bounds.other_cache", lambda: ref.error_bounds(se, cache), ValueError, "`cache`"),
        _raises("error_bounds.dy_str", lambda: ref.error_bounds(cfg, cache, dy="x"), BAD, "`dy`"),
        _raises("error_bounds.dy_shape", lambda: ref.error_bounds(cfg, cache, dy=np.zeros(3)), ValueError, "`dy`"),
        # reference: conversion tables and trees
        _raises("flatten.none", lambda: flatten(None), TypeError, "`tree`"),
        _raises("flatten.list", lambda: flatten([1, 2]), TypeError, "`tree`"),
        _raises("flatten.sep", lambda: flatten({"a": {"b": 1}}, sep=5), BAD, "`sep`"),
        _raises("flatten.deep", lambda: flatten(deep), ValueError, "`tree`"),
        _raises("nest.none", lambda: nest(None), TypeError, "`flat`"),
        _raises("nest.conflict", lambda: nest({"a": 1, "a.b": 2}), ValueError, "'a.b'"),
        _raises("nest.sep", lambda: nest({"a.b": 1}, sep=""), ValueError, "`sep`"),
        _raises("nest.int_key", lambda: nest({1: 2}), TypeError, "1"),
        _raises("framework_layout.fw", lambda: ref.framework_layout(cfg, "jax"), ValueError, "`framework`"),
        _raises(
            "from_array.kind",
            lambda: ref.from_framework_array("dense2", np.zeros((2, 2)), "torch"),
            ValueError,
            "`kind`",
        ),
        _raises(
            "from_array.fw",
            lambda: ref.from_framework_array("dense", np.zeros((2, 2)), "jax"),
            ValueError,
            "`framework`",
        ),
        _raises("from_array.str", lambda: ref.from_framework_array("dense", "x", "torch"), TypeError, "`a`"),
        _raises("from_array.ndim", lambda: ref.from_framework_array("dense", np.zeros(3), "keras"), ValueError, "`a`"),
        _raises("to_array.kind", lambda: ref.to_framework_array(None, np.zeros((2, 2)), "torch"), ValueError, "`kind`"),
        _raises("to_array.ndim", lambda: ref.to_framework_array("conv2d", np.zeros(3), "keras"), ValueError, "`a`"),
        _raises("to_array.none", lambda: ref.to_framework_array("dense", None, "keras"), TypeError, "`a`"),
        _raises("from_framework.tensors", lambda: ref.from_framework(cfg, None, "torch"), TypeError, "`tensors`"),
        _raises("import_state_dict.none", lambda: ref.import_state_dict(None, "timm", timm), TypeError, "`state_dict`"),
        _raises(
            "import_state_dict.prefix", lambda: ref.import_state_dict(sd, "timm", timm, prefix=5), TypeError, "`prefix`"
        ),
        _raises(
            "export_state_dict.state_dict",
            lambda: ref.export_state_dict(ref.init_params(timm), "timm", timm, state_dict=5),
            TypeError,
            "`state_dict`",
        ),
        _raises(
            "export_state_dict.prefix",
            lambda: ref.export_state_dict(ref.init_params(timm), "timm", timm, prefix=None),
            TypeError,
            "`prefix`",
        ),
        # conformance
        _raises("get_adapter.unknown", lambda: C.get_adapter("jax"), ValueError, "'jax'"),
        _raises("get_adapter.list", lambda: C.get_adapter(["numpy"]), ValueError, "['numpy']"),
        _raises("is_installed.unknown", lambda: C.is_installed("jax"), ValueError, "'jax'"),
        _raises("tolerance.dtype", lambda: C.tolerance("int8"), ValueError, "'int8'"),
        _raises("compare.dtype", lambda: C.compare("y", np.zeros(3), np.zeros(3), "int8"), ValueError, "'int8'"),
        _raises(
            "compare.bound",
            lambda: C.compare("y", np.zeros(3), np.zeros(3), "float64", bound=-np.ones(3)),
            ValueError,
            "`bound`",
        ),
        _failed_report("compare.shape", lambda: C.compare("y", np.zeros(3), np.zeros(4), "float64"), "shape"),
        _failed_report("compare.strings", lambda: C.compare("y", "x", np.zeros(3), "float64"), "could not be read"),
        _failed_report("compare.none", lambda: C.compare("y", None, np.zeros(3), "float64"), "shape"),
        _raises("check_case.adapter", lambda: C.check_case("numpy", case), TypeError, "`adapter`"),
        _raises("check_case.case", lambda: C.check_case(numpy, "case"), TypeError, "`case`"),
        _raises("check_case.with_grads", lambda: C.check_case(numpy, case, with_grads="no"), TypeError, "`with_grads`"),
        _raises("check_non_vacuity.adapter", lambda: C.check_non_vacuity("numpy", case), TypeError, "`adapter`"),
        _raises("check_non_vacuity.case", lambda: C.check_non_vacuity(numpy, None), TypeError, "`case`"),
        _raises("reference_outputs.case", lambda: C.reference_outputs("case"), TypeError, "`case`"),
        _raises(
            "reference_outputs.with_grads",
            lambda: C.reference_outputs(case, with_grads="no"),
            TypeError,
            "`with_grads`",
        ),
        _raises("make_case.dtype", lambda: C.make_case(ECAConfig(8), dtype="int8"), ValueError, "'int8'"),
        _raises("round_to_dtype.dtype", lambda: C.round_to_dtype(np.zeros(3), "int8"), ValueError, "'int8'"),
    ]
    known = [
        _raises("make_case.cfg", lambda: C.make_case("eca"), TypeError, "`cfg`"),
        _raises("make_case.seed", lambda: C.make_case(ECAConfig(8), seed=-1), ValueError, "`seed`"),
        _raises("make_case.training", lambda: C.make_case(ECAConfig(8), training="no"), TypeError, "`training`"),
        _raises(
            "make_case.data_format", lambda: C.make_case(ECAConfig(8), data_format="NCHW"), ValueError, "`data_format`"
        ),
        _raises(
            "make_case.shape_channels", lambda: C.make_case(ECAConfig(8), shape=(2, 4, 4, 4)), ValueError, "`shape`"
        ),
        _raises("make_case.shape_3d", lambda: C.make_case(ECAConfig(8), shape=(2, 8, 4)), ValueError, "`shape`"),
        _raises(
            "make_case.magnitude", lambda: C.make_case(ECAConfig(8), magnitude=float("nan")), ValueError, "`magnitude`"
        ),
        _raises("make_case.name", lambda: C.make_case(ECAConfig(8), name=5), TypeError, "`name`"),
        _raises(
            "edge_cases.data_format",
            lambda: list(C.edge_cases(ECAConfig(8), data_format="x")),
            ValueError,
            "`data_format`",
        ),
        _raises("round_to_dtype.none", lambda: C.round_to_dtype(None, "float32"), TypeError, "`a`"),
    ]
    rows += known
    rows.append(
        _raises("compare.scale", lambda: C.compare("y", np.zeros(3), np.zeros(3), "float64", scale="x"), BAD, "`scale`")
    )
    return rows


def ports_api_rows() -> list[Row]:
    """The ports' exported functions the port sections above do not call (each skipped without its framework)."""
    rows: list[Row] = []
    cfg = _CFGS["cbam"]
    base = "(owned by the skeleton-refactor branch)"
    if importlib.util.find_spec("torch") is not None:
        import torch

        import torch_impl

        m = torch_impl.from_config(cfg)
        rows += [
            _xfail(
                _raises(
                    "torch.composite.enabled", lambda: torch_impl.composite("no").__enter__(), TypeError, "`enabled`"
                ),
                "torch_impl/_ops.py (owned by another branch): composite() takes any value as a bool",
            ),
            _raises("torch.to_canonical.str", lambda: torch_impl.to_canonical("x"), TypeError, "`module`"),
            _raises("torch.from_config.device", lambda: torch_impl.from_config(cfg, device="nope"), BAD, "`device`"),
            _raises("torch.from_config.dtype", lambda: torch_impl.from_config(cfg, dtype=torch.int32), BAD, "`dtype`"),
            _raises("torch.attention_maps.str", lambda: m.attention_maps("x"), TypeError, "torch.Tensor"),
            _raises("torch.attention_maps.3d", lambda: m.attention_maps(torch.ones(6, 4, 5)), ValueError, "4-D"),
        ]
    if importlib.util.find_spec("flax") is not None:
        import jax
        import jax.numpy as jnp
        from flax import nnx

        from flax_impl import linen
        from flax_impl import nnx as fnnx

        lin = linen.from_config(cfg)
        variables = lin.init(jax.random.key(0), jnp.ones((2, 4, 5, 6)))
        mod = fnnx.from_config(cfg, rngs=nnx.Rngs(0))
        rows += [
            _raises("linen.to_canonical.cfg", lambda: linen.to_canonical("cbam", variables), TypeError, "`cfg`"),
            _raises("linen.to_canonical.none", lambda: linen.to_canonical(cfg, None), TypeError, "`variables`"),
            _raises("linen.to_canonical.empty", lambda: linen.to_canonical(cfg, {}), ValueError, "missing"),
            _raises("linen.attention_configs.int", lambda: linen.attention_configs(5), TypeError, "`module`"),
            _raises(
                "linen.load_torch.variables", lambda: linen.load_torch_state_dict(None, {}), TypeError, "`variables`"
            ),
            _raises(
                "linen.load_torch.state_dict",
                lambda: linen.load_torch_state_dict(variables, None),
                TypeError,
                "`state_dict`",
            ),
            _raises(
                "linen.load_torch.strict",
                lambda: linen.load_torch_state_dict(variables, {}, strict="no"),
                TypeError,
                "`strict`",
            ),
            _raises(
                "linen.load_torch.configs",
                lambda: linen.load_torch_state_dict(variables, {}, configs=5),
                TypeError,
                "`configs`",
            ),
            _raises(
                "linen.to_torch.dialect",
                lambda: linen.to_torch_state_dict(variables, dialect="nope"),
                ValueError,
                "'nope'",
            ),
            _raises("linen.to_torch.variables", lambda: linen.to_torch_state_dict("x"), TypeError, "`variables`"),
            _raises("nnx.to_canonical.str", lambda: fnnx.to_canonical("x"), TypeError, "`module`"),
            _raises("nnx.load_torch.module", lambda: fnnx.load_torch_state_dict("x", {}), TypeError, "`module`"),
            _raises(
                "nnx.load_torch.state_dict", lambda: fnnx.load_torch_state_dict(mod, None), TypeError, "`state_dict`"
            ),
            _raises(
                "nnx.load_torch.strict", lambda: fnnx.load_torch_state_dict(mod, {}, strict="no"), TypeError, "`strict`"
            ),
            _raises(
                "nnx.to_torch.dialect", lambda: fnnx.to_torch_state_dict(mod, dialect="nope"), ValueError, "'nope'"
            ),
            _raises("nnx.to_torch.module", lambda: fnnx.to_torch_state_dict(5), TypeError, "`module`"),
            _xfail(
                _raises("nnx.rngs", lambda: fnnx.CBAM(6, rngs="x"), TypeError, "`rngs`"),
                f"flax_impl/nnx/_base.py {base}: rngs is used unchecked",
            ),
        ]
    if importlib.util.find_spec("keras") is not None:
        import tf_impl

        layer = tf_impl.from_config(cfg, data_format="channels_first")
        layer.build((None, 6, 4, 5))
        rows += [
            _raises("keras.to_canonical.str", lambda: tf_impl.to_canonical("x"), TypeError, "Keras layer"),
            _raises(
                "keras.to_canonical.unbuilt",
                lambda: tf_impl.to_canonical(tf_impl.from_config(cfg)),
                ValueError,
                "build",
            ),
            _raises("keras.load_torch.model", lambda: tf_impl.load_torch_state_dict("x", {}), TypeError, "`model`"),
            _raises(
                "keras.load_torch.state_dict",
                lambda: tf_impl.load_torch_state_dict(layer, None),
                TypeError,
                "`state_dict`",
            ),
            _raises(
                "keras.load_torch.strict",
                lambda: tf_impl.load_torch_state_dict(layer, {}, strict="no"),
                TypeError,
                "`strict`",
            ),
            _raises("keras.to_torch.model", lambda: tf_impl.to_torch_state_dict(5), TypeError, "`model`"),
            _xfail(
                _raises("keras.attention_maps.str", lambda: layer.attention_maps("x"), TypeError, "dtype"),
                f"tf_impl/_base.py {base}: attention_maps casts its input before any check",
            ),
        ]
    return rows


# ----------------------------------------------------------------------------- the sections

SECTIONS: dict[str, Any] = {
    "configs": pytest.param(lambda tmp: config_rows(), id="configs"),
    "reference": pytest.param(lambda tmp: reference_rows(), id="reference"),
    "checkpoints": pytest.param(checkpoint_rows, id="checkpoints"),
    "torch": pytest.param(lambda tmp: torch_rows(), id="torch", marks=pytest.mark.torch),
    "flax": pytest.param(lambda tmp: flax_rows(), id="flax", marks=pytest.mark.flax),
    "keras": pytest.param(lambda tmp: keras_rows(), id="keras", marks=pytest.mark.keras),
    "vectors": pytest.param(vectors_rows, id="vectors"),
    "cli": pytest.param(cli_rows, id="cli"),
    "targets": pytest.param(targets_rows, id="targets", marks=pytest.mark.torch),
    "api": pytest.param(lambda tmp: api_rows(), id="api"),
    "ports_api": pytest.param(lambda tmp: ports_api_rows(), id="ports_api"),
}


@pytest.mark.parametrize("build", SECTIONS.values())
def test_bad_inputs_give_clear_errors(build, tmp_path, request):
    run_section(request.node.callspec.id, build(str(tmp_path)))


def test_the_classifier_can_fail():
    """Non-vacuity: silent success, a wrong type and a message naming nothing are each 'other'."""
    assert classify(_raises("ok", lambda: 1, ValueError, "x"))[0] == "other"
    assert classify(_raises("type", lambda: ref.param_layout("se"), ValueError, "cfg"))[0] == "other"
    assert classify(_raises("name", lambda: SEConfig(0), ValueError, "`rd_ratio`"))[0] == "other"
    assert classify(_raises("math", lambda: math.log(-1), ValueError, "domain"))[0] == "clear"
    assert classify(_raises("exit", lambda: sys.exit(0), ValueError, "x"))[0] == "other"  # never ends the run


def test_the_refusal_rows_can_fail():
    """Non-vacuity of the rows that refuse by returning: a wrong exit status, a second line on stderr, a
    traceback, a passing report, and a strict xfail that became clear are each caught."""
    assert classify(_cli("exit0", ["spec", "--list"], 2))[0] == "other"
    assert classify(_cli("lines", ["spec", "99"], 2, "99"))[0] == "other"  # the listing follows its error line
    assert classify(_cli("ok", ["spec", "99"], 2, "99", err_lines=3))[0] == "other"
    traceback = Row(
        "tb", lambda: Ran(2, "", "Traceback (most recent call last):\n"), (), (), refused=_cli("", [], 2).refused
    )
    assert classify(traceback)[0] == "other"

    class Report:
        passed = True

        def to_text(self) -> str:
            return "PASS: it conforms"

    assert classify(_failed_report("passed", Report, "conforms"))[0] == "other"
    Report.passed = False
    assert classify(_failed_report("failed", Report, "conforms"))[0] == "clear"
    assert classify(_failed_report("unnamed", Report, "the reason"))[0] == "other"
    with pytest.raises(AssertionError, match="no longer fail"):
        run_section("xfail", [_xfail(_raises("fixed", lambda: math.log(-1), ValueError, "domain"), "why")], show=False)
