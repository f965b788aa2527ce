"""Canonical checkpoints (SPEC.md section 8): safetensors with the config in the metadata."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from .config import Config, check_config, config_from_dict
from .params import canonical_arrays

FORMAT = "attnspec"
FORMAT_VERSION = "1"

__all__ = ["FORMAT", "FORMAT_VERSION", "CheckpointError", "load_checkpoint", "save_checkpoint"]


class CheckpointError(ValueError):
    """A file that is not a readable attnspec checkpoint, or not the one expected."""


def save_checkpoint(path: str | os.PathLike[str], cfg: Config, params: Mapping[str, Any]) -> None:
    """Write ``params`` (checked against ``cfg``'s layout) and ``cfg`` to a safetensors file.

    >>> import tempfile, os
    >>> from reference_numpy import ECAConfig, init_params
    >>> cfg = ECAConfig(channels=32)
    >>> path = os.path.join(tempfile.mkdtemp(), "eca.safetensors")
    >>> save_checkpoint(path, cfg, init_params(cfg))
    >>> load_checkpoint(path)[0] == cfg
    True
    """
    from safetensors import SafetensorError
    from safetensors.numpy import save_file

    path = _check_path(path)
    check_config(cfg)
    # float arrays keep their dtype (bit-exact round trip); integers become float64; NumPy-less
    # floats (ml_dtypes' bfloat16, float8) become float32, exactly
    tensors = {
        k: np.ascontiguousarray(v if v.dtype.kind == "f" else v.astype(np.float32))
        for k, v in canonical_arrays(cfg, params).items()
    }
    metadata = {"format": FORMAT, "format_version": FORMAT_VERSION, "module": cfg.module, "config": cfg.to_json()}
    try:
        save_file(tensors, path, metadata=metadata)
    except (SafetensorError, OSError) as e:
        raise OSError(f"Could not write the checkpoint {path!r}: {e}") from e


def _check_path(path: Any) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"`path` must be a str or os.PathLike. Received: path={path!r} of type {type(path).__name__}")
    text = os.fspath(path)
    if not isinstance(text, str):
        raise TypeError(f"`path` must be a str or os.PathLike of str. Received: path={path!r}")
    return text


def load_checkpoint(
    path: str | os.PathLike[str], expected: Config | None = None
) -> tuple[Config, dict[str, np.ndarray]]:
    """Read a checkpoint; with ``expected``, also require that exact config.

    Every failure (not a file, not safetensors, truncated, another format or module or
    config, an invalid or absurd config, missing/unexpected/mis-shaped keys, tensors that are
    not real numbers) is a :class:`CheckpointError` naming the file and saying what was
    expected; nothing is returned half-loaded. ``save_checkpoint`` refuses bad params with the
    errors of :func:`reference_numpy.canonical_arrays` and a failed write with an ``OSError``
    naming the file.
    """
    from safetensors import SafetensorError, safe_open

    path = _check_path(path)
    try:
        with safe_open(path, framework="numpy") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, TypeError, OverflowError, MemoryError) as e:
        raise CheckpointError(f"{path!r} is not a readable safetensors file: {e}") from e
    if metadata.get("format") != FORMAT:
        raise CheckpointError(
            f"{path!r} is not an attnspec checkpoint: metadata format={metadata.get('format')!r}, expected {FORMAT!r}"
        )
    if metadata.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path!r} has format_version={metadata.get('format_version')!r}; this attnspec reads {FORMAT_VERSION!r}"
        )
    try:
        cfg = config_from_dict(json.loads(metadata.get("config", "")))
    except (ValueError, TypeError, OverflowError) as e:
        raise CheckpointError(f"{path!r} has an invalid config in its metadata: {e}") from e
    except RecursionError as e:
        raise CheckpointError(f"{path!r} has an invalid config in its metadata: JSON nested too deeply") from e
    if metadata.get("module") != cfg.module:
        raise CheckpointError(f"{path!r} says module={metadata.get('module')!r} but its config is for {cfg.module!r}")
    if expected is not None and cfg != check_config(expected):
        raise CheckpointError(f"{path!r} holds a checkpoint for {cfg}, expected {expected}")
    try:
        arrays = canonical_arrays(cfg, tensors, what=f"checkpoint {path!r}")
    except (ValueError, TypeError) as e:
        raise CheckpointError(str(e)) from e
    return cfg, {k: v.astype(np.float64, copy=False) for k, v in arrays.items()}
