"""The adapter interface every framework implements for the conformance suite."""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, ClassVar

import numpy as np

from reference_numpy import DATA_FORMATS, Config


@dataclasses.dataclass
class Outputs:
    """What one run of an implementation gives, as float64 NumPy in canonical naming.

    ``dx`` is in the input's layout; ``grads`` has one entry per trainable canonical name;
    ``state`` holds the updated BN running statistics after a train-mode call (else empty).
    ``bound`` (reference outputs only): the same structure holding each tensor's rounding-error
    bound ``M`` in units of u (SPEC.md 9.3), used by the comparison; ``None`` elsewhere.
    """

    y: np.ndarray
    dx: np.ndarray | None = None
    grads: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    state: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    bound: Outputs | None = None


class Adapter(abc.ABC):
    """Build a module from a spec config, load canonical params, run forward and VJP.

    ``dtypes`` are the dtypes the implementation runs in; ``grad_dtypes`` those whose
    gradients are checked (half types are checked forward only); ``data_formats`` those
    the implementation accepts.
    """

    name: ClassVar[str]
    dtypes: ClassVar[tuple[str, ...]] = ("float64", "float32", "bfloat16", "float16")
    grad_dtypes: ClassVar[tuple[str, ...]] = ("float64", "float32")
    data_formats: ClassVar[tuple[str, ...]] = DATA_FORMATS

    @abc.abstractmethod
    def build(self, cfg: Config, dtype: str) -> Any:
        """A fresh module for ``cfg`` computing in ``dtype``."""

    @abc.abstractmethod
    def load(self, module: Any, cfg: Config, params: dict[str, np.ndarray], dtype: str) -> Any:
        """Load canonical float64 ``params`` (exactly representable in ``dtype``); returns the loaded module."""

    @abc.abstractmethod
    def evaluate(
        self,
        module: Any,
        x: np.ndarray,
        dy: np.ndarray | None,
        *,
        training: bool,
        data_format: str,
        dtype: str,
    ) -> Outputs:
        """Forward (and, with ``dy``, the VJP w.r.t. the input and every trainable parameter)."""

    def run(
        self,
        cfg: Config,
        params: dict[str, np.ndarray],
        x: np.ndarray,
        dy: np.ndarray | None,
        *,
        training: bool,
        data_format: str,
        dtype: str,
    ) -> Outputs:
        """build + load + evaluate."""
        module = self.load(self.build(cfg, dtype), cfg, params, dtype)
        return self.evaluate(module, x, dy, training=training, data_format=data_format, dtype=dtype)
