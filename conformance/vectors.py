"""Golden vectors: conformance cases and the reference's answers, frozen in safetensors files.

A vector file holds one case (inputs, canonical weights, cotangent), everything the
reference computes for it (output, input gradient, parameter gradients, updated BN
state) and, since format version 2, each of those tensors' rounding-error bound ``M``
(``bounds.<name>``, units of u; SPEC.md 9.3), so that an implementation in any language
can be checked from the files alone, with the same test, without running the reference.
Version-1 files (no bounds) still load and are checked with the relative rule. The layout
is documented in README.md ("Golden vectors").

>>> import tempfile
>>> from reference_numpy import ECAConfig
>>> from conformance import get_adapter, make_case
>>> d = tempfile.mkdtemp()
>>> [p.name for p in export_vectors(d, [make_case(ECAConfig(channels=8), name="small")])]
['eca-small-float64-eval-nchw.safetensors']
>>> [r.passed for r in check_vectors(d, get_adapter("numpy"))]
[True]
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import struct
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

import reference_numpy as ref
from reference_numpy import DATA_FORMATS, MODULES

from .adapters.base import Adapter, Outputs
from .cases import Case, make_case, nonfinite_cases
from .grid import CHANNELS, KNOBS, MODES, PRESETS, variants
from .runner import CaseReport, check_against, reference_outputs
from .tolerances import DTYPES

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "NONFINITE_VECTORS",
    "READABLE_VERSIONS",
    "SHIPPED",
    "VectorError",
    "check_vector_file",
    "check_vectors",
    "default_cases",
    "export_vectors",
    "load_vector",
    "vector_files",
]

FORMAT = "attnspec-vectors"
FORMAT_VERSION = "2"
READABLE_VERSIONS = ("1", "2")
BOUND_PREFIX = "bounds."
"""Version 2: ``bounds.<tensor>`` holds the error bound M of each expected tensor (y, dx, grads.*, state.*)."""
SHIPPED = Path(__file__).with_name("vectors")
"""The vectors that ship inside the package: :func:`default_cases` with seed 0."""
SUFFIX = ".safetensors"


class VectorError(ValueError):
    """A file that is not a readable attnspec vector file."""


METADATA = ("format", "format_version", "module", "config", "case", "dtype", "training", "data_format", "seed")
"""The metadata keys a vector file must have (``spec_version`` is informative)."""


def _path(value: object, name: str) -> Path:
    if isinstance(value, bool) or not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"`{name}` must be a path (str or os.PathLike). Received: {name}={value!r}")
    return Path(value)


def _names(value: object, name: str, allowed: Sequence[str]) -> tuple[str, ...]:
    """A non-empty sequence drawn from ``allowed`` (a bare string is a mistake, not a sequence of characters)."""
    items = tuple(value) if isinstance(value, (list, tuple)) else None
    if not items or any(not isinstance(v, str) or v not in allowed for v in items):
        raise ValueError(
            f"`{name}` must be a non-empty list or tuple drawn from {', '.join(map(repr, allowed))}. "
            f"Received: {name}={value!r}"
        )
    return items


NONFINITE_VECTORS: tuple[tuple[str, str], ...] = (
    ("se-official", "nonfinite-x-nan"),  # relu's derivative selects at NaN; sigmoid's multiplies
    ("se-relu6-hard_sigmoid", "nonfinite-dy-inf"),  # an Inf cotangent meets selections, not masks
    ("cbam-official", "nonfinite-x-nan"),  # a NaN max-pool window, over space and over channels
    ("cbam-official", "nonfinite-spatial.conv.weight-nan"),  # the spatial conv's padded zeros are values
    ("cbam-all-pools-mean-max", "nonfinite-x-inf"),  # lse and lp of a +Inf window
    ("eca-paper", "nonfinite-conv.weight-nan"),  # ECA's padded zeros are values
)
"""(variant id, non-finite case name) of the vectors that pin down SPEC.md section 1's non-finite rule
(cases of :func:`conformance.cases.nonfinite_cases`, eval mode)."""


def default_cases(
    *,
    seed: int = 0,
    modules: Sequence[str] = MODULES,
    dtypes: Sequence[str] = ("float64",),
    data_formats: Sequence[str] = DATA_FORMATS,
    nonfinite: bool = True,
) -> list[Case]:
    """Every preset of ``modules`` in each of ``dtypes``, eval and train, each of ``data_formats``; then,
    when ``nonfinite``, the :data:`NONFINITE_VECTORS` of ``modules`` in each of ``dtypes``, eval mode, the
    first of ``data_formats``.

    With the defaults this is the shipped set. Each case is named after its preset (a non-finite one
    ``<variant>.<case>``, e.g. ``official.nonfinite-x-nan``).
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"`seed` must be an int >= 0. Received: seed={seed!r}")
    modules = _names(modules, "modules", MODULES)
    dtypes = _names(dtypes, "dtypes", DTYPES)
    data_formats = _names(data_formats, "data_formats", DATA_FORMATS)
    cases = [
        make_case(v.build(CHANNELS), seed=seed, dtype=dtype, training=training, data_format=fmt, name=v.name)
        for v in variants(tuple(modules))
        for dtype in dtypes
        for training in MODES
        for fmt in data_formats
    ]
    if nonfinite:
        by_id = {v.id: v for v in PRESETS + KNOBS}
        for vid, name in NONFINITE_VECTORS:
            v = by_id[vid]
            if v.module not in modules:
                continue
            for dtype in dtypes:
                found = nonfinite_cases(v.build(CHANNELS), seed=seed, dtype=dtype, data_format=data_formats[0])
                case = next(c for c in found if c.name == name)
                cases.append(dataclasses.replace(case, name=f"{v.name}.{case.name}"))
    return cases


def _metadata(case: Case) -> dict[str, str]:
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "spec_version": ref.SPEC_VERSION,
        "module": case.cfg.module,
        "config": case.cfg.to_json(),
        "case": case.name,
        "dtype": case.dtype,
        "training": "true" if case.training else "false",
        "data_format": case.data_format,
        "seed": str(case.seed),
    }


def _expected(out: Outputs) -> dict[str, np.ndarray]:
    t = {"y": out.y}
    if out.dx is not None:
        t["dx"] = out.dx
    t |= {f"grads.{k}": v for k, v in out.grads.items()}
    t |= {f"state.{k}": v for k, v in out.state.items()}
    return t


def _round_up_float32(m: np.ndarray) -> np.ndarray:
    """``m`` as float32, rounded up (a bound must not shrink when stored)."""
    m32 = np.asarray(m, dtype=np.float64).astype(np.float32)
    return np.where(m32.astype(np.float64) < m, np.nextafter(m32, np.float32(np.inf)), m32)


def _tensors(case: Case, expected: Outputs) -> dict[str, np.ndarray]:
    t = {"x": case.x, "dy": case.dy, **_expected(expected)}
    t |= {f"params.{k}": v for k, v in case.params.items()}
    if expected.bound is not None:
        t |= {BOUND_PREFIX + k: _round_up_float32(v) for k, v in _expected(expected.bound).items()}
    return t


def write_safetensors(
    path: str | os.PathLike[str], tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str]
) -> None:
    """A safetensors file whose bytes depend only on its contents: little-endian float32 data for
    float32 arrays (the bounds) and float64 for everything else, tensors and metadata keys sorted
    by name, compact JSON header padded with spaces to 8 bytes.

    (safetensors' own writer orders the metadata at random, so re-exporting would change every file.)
    """
    header: dict[str, object] = {"__metadata__": {k: metadata[k] for k in sorted(metadata)}}
    blobs, offset = [], 0
    for name in sorted(tensors):
        f32 = np.asarray(tensors[name]).dtype == np.float32
        data = np.ascontiguousarray(tensors[name], dtype="<f4" if f32 else "<f8").tobytes()
        header[name] = {
            "dtype": "F32" if f32 else "F64",
            "shape": list(np.shape(tensors[name])),
            "data_offsets": [offset, offset + len(data)],
        }
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    Path(path).write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def export_vectors(directory: str | os.PathLike[str], cases: Iterable[Case]) -> list[Path]:
    """Write one ``<case.id>.safetensors`` per case into ``directory`` (created if needed); returns the paths.

    The reference computes the expected tensors and their bounds; gradients are always included.
    ``directory`` must not be an existing file (``ValueError``); ``cases`` must be
    :class:`~conformance.Case` objects (``TypeError``); a directory that cannot be made is an ``OSError``.
    """
    out = _path(directory, "directory")
    if isinstance(cases, (str, bytes, Case)) or not isinstance(cases, Iterable):
        raise TypeError(f"`cases` must be an iterable of conformance Case objects. Received: {type(cases).__name__}")
    cases = list(cases)
    for i, case in enumerate(cases):
        if not isinstance(case, Case):
            raise TypeError(f"`cases` must hold conformance Case objects. Received: {type(case).__name__} at index {i}")
    if out.exists() and not out.is_dir():
        raise ValueError(f"`directory` must be a directory. Received: {str(out)!r}, an existing file")
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for case in cases:
        path = out / f"{case.id}{SUFFIX}"
        if path in paths:
            raise ValueError(f"Two cases share the id {case.id!r}; give them distinct names")
        write_safetensors(path, _tensors(case, reference_outputs(case)), _metadata(case))
        paths.append(path)
    return paths


def _read(path: Path) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    from safetensors import safe_open

    try:
        with safe_open(os.fspath(path), framework="numpy") as f:
            return dict(f.metadata() or {}), {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # SafetensorError, OSError, ValueError, or whatever a corrupt header raises
        raise VectorError(f"{str(path)!r} is not a readable safetensors file: {e}") from e


def _bounds(where: str, t: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The version-2 bound of every expected tensor, validated: present, same shape, finite, >= 0."""
    out = {}
    for name, value in expected.items():
        key = BOUND_PREFIX + name
        if key not in t:
            raise VectorError(f"{where}: tensor {key!r} (the error bound of {name!r}) is missing")
        m = np.asarray(t[key], dtype=np.float64)
        if m.shape != value.shape:
            raise VectorError(f"{where}: tensor {key!r} is malformed: shape {m.shape}, expected {value.shape}")
        if not np.isfinite(m).all():
            raise VectorError(f"{where}: tensor {key!r} is malformed: it holds NaN or infinite values")
        if (m < 0).any():
            raise VectorError(f"{where}: tensor {key!r} is negative (min {float(m.min())!r}); a bound is >= 0")
        out[name] = m
    for key in t:
        if key.startswith(BOUND_PREFIX) and key[len(BOUND_PREFIX) :] not in expected:
            raise VectorError(f"{where}: tensor {key!r} bounds no tensor of the file")
    return out


def _implied(cfg: ref.Config, training: bool) -> list[str]:
    """The expected tensors a file's metadata implies: y, dx, every gradient, the BN state in train mode."""
    names = ["y", "dx"]
    for k, spec in ref.param_layout(cfg).items():
        if spec.trainable:
            names.append(f"grads.{k}")
        elif training:
            names.append(f"state.{k}")
    return names


def _check_metadata(where: str, meta: dict[str, str]) -> None:
    """Every metadata key present, and the closed-set values (dtype, data format, mode, seed, case name) valid."""
    missing = [k for k in METADATA if k not in meta]
    if missing:
        raise VectorError(f"{where} lacks metadata {', '.join(map(repr, missing))}")
    for key, allowed in (("dtype", DTYPES), ("data_format", DATA_FORMATS), ("training", ("true", "false"))):
        if meta[key] not in allowed:
            raise VectorError(
                f"{where} has metadata {key}={meta[key]!r}; expected one of {', '.join(map(repr, allowed))}"
            )
    if not (meta["seed"].isascii() and meta["seed"].isdigit() and len(meta["seed"]) <= 20):
        raise VectorError(f"{where} has metadata seed={meta['seed']!r}; expected an integer >= 0")
    if "spec_version" in meta and not re.fullmatch(r"[0-9]+(\.[0-9]+)*", meta["spec_version"]):
        raise VectorError(f"{where} has metadata spec_version={meta['spec_version']!r}; expected a version like '1.1'")
    if not meta["case"].strip():
        raise VectorError(f"{where} has metadata case={meta['case']!r}; expected the case's name")


def _check_tensors(where: str, cfg: ref.Config, t: dict[str, np.ndarray], implied: list[str], data_format: str) -> None:
    """Tensor names, dtypes and shapes: what the config and the stored input imply. NaN and +-Inf are values
    (SPEC.md section 1, non-finite values): a case may hold them."""
    known = {"x", "dy", *implied}
    unknown = [k for k in t if k not in known and not k.startswith(("params.", "grads.", "state.", BOUND_PREFIX))]
    if unknown:
        raise VectorError(f"{where} has tensors a vector file does not have: {', '.join(unknown)}")
    for k, v in t.items():
        allowed = (np.float32, np.float64) if k.startswith(BOUND_PREFIX) else (np.float64,)
        if v.dtype not in allowed:
            want = " or ".join(np.dtype(a).name for a in allowed)
            raise VectorError(f"{where}: tensor {k!r} has dtype {v.dtype}, expected {want}")
    for k in ("x", "dy"):
        if k not in t:
            raise VectorError(f"{where} lacks the input tensor {k!r}")
    x = t["x"]
    if x.ndim != 4 or 0 in x.shape:
        raise VectorError(f"{where}: tensor 'x' must be a non-empty 4-D input. Received: shape {x.shape}")
    channels = x.shape[1 if data_format == "channels_first" else 3]
    if channels != cfg.channels:
        raise VectorError(
            f"{where}: tensor 'x' of shape {x.shape} has {channels} channels ({data_format}); its config has "
            f"{cfg.channels}"
        )
    layout = ref.param_layout(cfg)
    for k in implied:
        if k not in t:
            continue  # said below, with every other missing one
        shape = tuple(x.shape if k in ("y", "dx") else layout[k.split(".", 1)[1]].shape)
        if t[k].shape != shape:
            raise VectorError(f"{where}: tensor {k!r} has shape {t[k].shape}, expected {shape}")
    if t["dy"].shape != x.shape:
        raise VectorError(f"{where}: tensor 'dy' has shape {t['dy'].shape}, expected the input's {x.shape}")


def load_vector(path: str | os.PathLike[str]) -> tuple[Case, Outputs]:
    """Read a vector file back into the case it was made from and the reference's outputs.

    For a version-2 file the outputs carry their bounds (``Outputs.bound``); a version-1 file
    has none (it is then compared with the relative rule). Raises :class:`VectorError`, naming
    the file, for another format or version, missing metadata, a dtype, data format, mode or
    seed outside the spec's sets, a bad config, a tensor set that does not match the config's
    canonical layout, a tensor of another dtype or shape than the format's, a
    gradient or BN-state tensor the metadata implies but the file lacks, and a missing, malformed
    or negative bound. ``path`` not being a path is a ``TypeError``.
    """
    path = _path(path, "path")
    meta, t = _read(path)
    where = repr(str(path))
    if meta.get("format") != FORMAT:
        raise VectorError(f"{where} is not an attnspec vector file: format={meta.get('format')!r}, expected {FORMAT!r}")
    version = meta.get("format_version")
    if version not in READABLE_VERSIONS:
        raise VectorError(
            f"{where} has format_version={version!r}; this attnspec reads {', '.join(map(repr, READABLE_VERSIONS))}"
        )
    _check_metadata(where, meta)
    try:
        cfg = ref.config_from_dict(json.loads(meta["config"]))
        if meta["module"] != cfg.module:
            raise ValueError(f"module={meta['module']!r} but its config is for {cfg.module!r}")
        training = meta["training"] == "true"
        implied = _implied(cfg, training)
    except Exception as e:  # any config failure (ValueError, OverflowError, RecursionError, ...) names the file
        raise VectorError(f"{where} is not a valid attnspec vector file: {type(e).__name__}: {e}") from e
    _check_tensors(where, cfg, t, implied, meta["data_format"])
    t = {k: v.astype(np.float64) for k, v in t.items()}  # writable copies
    params = {k[len("params.") :]: v for k, v in t.items() if k.startswith("params.")}
    try:
        ref.check_params(cfg, params, what=f"{where} params")
    except Exception as e:
        raise VectorError(f"{where} is not a valid attnspec vector file: {type(e).__name__}: {e}") from e
    case = Case(
        name=meta["case"],
        cfg=cfg,
        x=t["x"],
        params=params,
        dy=t["dy"],
        training=training,
        data_format=meta["data_format"],
        dtype=meta["dtype"],
        seed=int(meta["seed"]),
    )
    missing = [k for k in implied if k not in t]
    if missing:
        raise VectorError(f"{where} lacks tensors its metadata implies: {', '.join(missing)}")
    extra = [k for k in t if k.startswith(("grads.", "state.")) and k not in implied]
    if extra:
        raise VectorError(f"{where} has tensors its config does not have: {', '.join(extra)}")
    expected = {k: t[k] for k in implied}
    bound = None
    if version != "1":
        b = _bounds(where, t, expected)
        bound = Outputs(b["y"], b["dx"], _strip(b, "grads."), _strip(b, "state."))
    out = Outputs(expected["y"], expected["dx"], _strip(expected, "grads."), _strip(expected, "state."), bound)
    return case, out


def _strip(t: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {k[len(prefix) :]: v for k, v in t.items() if k.startswith(prefix)}


def vector_files(directory: str | os.PathLike[str] = SHIPPED) -> list[Path]:
    """The ``*.safetensors`` files of ``directory``, sorted by name; ``directory`` must be an existing directory."""
    d = _path(directory, "directory")
    if not d.is_dir():
        what = "an existing file" if d.exists() else "not found"
        raise ValueError(f"`directory` must be an existing directory. Received: {str(d)!r}, {what}")
    return sorted(d.glob(f"*{SUFFIX}"))


def check_vector_file(path: str | os.PathLike[str], adapter: Adapter) -> CaseReport | None:
    """Check ``adapter`` against one vector file; ``None`` when its dtype or data format is not supported.

    Gradients are compared for the adapter's ``grad_dtypes`` only, as :func:`conformance.check_case`
    does. An implementation that raises gives a failed report; an unreadable file raises :class:`VectorError`.
    """
    if not isinstance(adapter, Adapter):
        raise TypeError(
            f"`adapter` must be a conformance Adapter (conformance.get_adapter(name)). Received: {type(adapter).__name__}"
        )
    case, expected = load_vector(path)
    if case.dtype not in adapter.dtypes or case.data_format not in adapter.data_formats:
        return None
    if case.dtype not in adapter.grad_dtypes:
        b = expected.bound
        expected = Outputs(expected.y, state=expected.state, bound=b and Outputs(b.y, state=b.state))
    return check_against(adapter, case, expected)


def check_vectors(directory: str | os.PathLike[str], adapter: Adapter) -> list[CaseReport]:
    """Check ``adapter`` against every vector file in ``directory``, without running the reference.

    Files whose dtype or data format the adapter does not support are skipped (see
    :func:`check_vector_file`); an unreadable file raises :class:`VectorError`.
    """
    if not isinstance(adapter, Adapter):
        raise TypeError(
            f"`adapter` must be a conformance Adapter (conformance.get_adapter(name)). Received: {type(adapter).__name__}"
        )
    reports = []
    for path in vector_files(directory):
        report = check_vector_file(path, adapter)
        if report is not None:
            reports.append(report)
    return reports
