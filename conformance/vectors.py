"""Golden vectors: conformance cases and the reference's answers, frozen in safetensors files.

A vector file holds one case (inputs, canonical weights, cotangent) and everything the
reference computes for it (output, input gradient, parameter gradients, updated BN
state), so that an implementation in any language can be checked from the files alone,
without running the reference. The layout is documented in README.md ("Golden vectors").

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

import json
import os
import struct
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

import reference_numpy as ref

from .adapters.base import Adapter, Outputs
from .cases import Case, make_case
from .grid import CHANNELS, DATA_FORMATS, MODES, MODULES, variants
from .runner import CaseReport, check_against, reference_outputs

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "SHIPPED",
    "VectorError",
    "check_vectors",
    "default_cases",
    "export_vectors",
    "load_vector",
    "vector_files",
]

FORMAT = "attnspec-vectors"
FORMAT_VERSION = "1"
SHIPPED = Path(__file__).with_name("vectors")
"""The vectors that ship inside the package: :func:`default_cases` with seed 0."""
SUFFIX = ".safetensors"


class VectorError(ValueError):
    """A file that is not a readable attnspec vector file."""


def default_cases(
    *,
    seed: int = 0,
    modules: Sequence[str] = MODULES,
    dtypes: Sequence[str] = ("float64",),
    data_formats: Sequence[str] = DATA_FORMATS,
) -> list[Case]:
    """Every preset of ``modules`` in each of ``dtypes``, eval and train, each of ``data_formats``.

    With the defaults this is the shipped set. Each case is named after its preset.
    """
    return [
        make_case(v.build(CHANNELS), seed=seed, dtype=dtype, training=training, data_format=fmt, name=v.name)
        for v in variants(tuple(modules))
        for dtype in dtypes
        for training in MODES
        for fmt in data_formats
    ]


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


def _tensors(case: Case, expected: Outputs) -> dict[str, np.ndarray]:
    t = {"x": case.x, "dy": case.dy, "y": expected.y}
    if expected.dx is not None:
        t["dx"] = expected.dx
    t |= {f"params.{k}": v for k, v in case.params.items()}
    t |= {f"grads.{k}": v for k, v in expected.grads.items()}
    t |= {f"state.{k}": v for k, v in expected.state.items()}
    return t


def write_safetensors(
    path: str | os.PathLike[str], tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str]
) -> None:
    """A safetensors file whose bytes depend only on its contents: float64 little-endian data,
    tensors and metadata keys sorted by name, compact JSON header padded with spaces to 8 bytes.

    (safetensors' own writer orders the metadata at random, so re-exporting would change every file.)
    """
    header: dict[str, object] = {"__metadata__": {k: metadata[k] for k in sorted(metadata)}}
    blobs, offset = [], 0
    for name in sorted(tensors):
        data = np.ascontiguousarray(tensors[name], dtype="<f8").tobytes()
        header[name] = {
            "dtype": "F64",
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

    The reference computes the expected tensors; gradients are always included.
    """
    out = Path(directory)
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
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(os.fspath(path), framework="numpy") as f:
            return dict(f.metadata() or {}), {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise VectorError(f"{str(path)!r} is not a readable safetensors file: {e}") from e


def load_vector(path: str | os.PathLike[str]) -> tuple[Case, Outputs]:
    """Read a vector file back into the case it was made from and the reference's outputs.

    Raises :class:`VectorError` for another format or version, a bad config or a tensor
    set that does not match the config's canonical layout.
    """
    path = Path(path)
    meta, t = _read(path)
    where = repr(str(path))
    if meta.get("format") != FORMAT:
        raise VectorError(f"{where} is not an attnspec vector file: format={meta.get('format')!r}, expected {FORMAT!r}")
    if meta.get("format_version") != FORMAT_VERSION:
        raise VectorError(
            f"{where} has format_version={meta.get('format_version')!r}; this attnspec reads {FORMAT_VERSION!r}"
        )
    try:
        cfg = ref.config_from_dict(json.loads(meta["config"]))
        if meta["module"] != cfg.module:
            raise ValueError(f"module={meta['module']!r} but its config is for {cfg.module!r}")
        training = {"true": True, "false": False}[meta["training"]]
        case = Case(
            name=meta["case"],
            cfg=cfg,
            x=t["x"].astype(np.float64),
            params={k[len("params.") :]: v.astype(np.float64) for k, v in t.items() if k.startswith("params.")},
            dy=t["dy"].astype(np.float64),
            training=training,
            data_format=meta["data_format"],
            dtype=meta["dtype"],
            seed=int(meta["seed"]),
        )
        ref.check_params(cfg, case.params, what=f"{where} params")
        expected = Outputs(
            y=t["y"].astype(np.float64),
            dx=t["dx"].astype(np.float64) if "dx" in t else None,
            grads={k[len("grads.") :]: v.astype(np.float64) for k, v in t.items() if k.startswith("grads.")},
            state={k[len("state.") :]: v.astype(np.float64) for k, v in t.items() if k.startswith("state.")},
        )
    except (KeyError, ValueError, TypeError) as e:
        raise VectorError(f"{where} is not a valid attnspec vector file: {type(e).__name__}: {e}") from e
    return case, expected


def vector_files(directory: str | os.PathLike[str] = SHIPPED) -> list[Path]:
    """The ``*.safetensors`` files of ``directory``, sorted by name."""
    return sorted(Path(directory).glob(f"*{SUFFIX}"))


def check_vectors(directory: str | os.PathLike[str], adapter: Adapter) -> list[CaseReport]:
    """Check ``adapter`` against every vector file in ``directory``, without running the reference.

    Files whose dtype or data format the adapter does not support are skipped; gradients are
    compared for the adapter's ``grad_dtypes`` only, as :func:`conformance.check_case` does.
    An implementation that raises gives a failed report; an unreadable file raises :class:`VectorError`.
    """
    reports = []
    for path in vector_files(directory):
        case, expected = load_vector(path)
        if case.dtype not in adapter.dtypes or case.data_format not in adapter.data_formats:
            continue
        if case.dtype not in adapter.grad_dtypes:
            expected = Outputs(expected.y, state=expected.state)
        reports.append(check_against(adapter, case, expected))
    return reports
