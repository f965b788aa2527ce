"""The NumPy reference as an adapter: the first implementation the suite checks (against itself)."""

from __future__ import annotations

from typing import Any

import numpy as np

import reference_numpy as ref
from reference_numpy import Config

from .base import Adapter, Outputs


class NumpyAdapter(Adapter):
    name = "numpy"
    dtypes = ("float64",)
    grad_dtypes = ("float64",)

    def build(self, cfg: Config, dtype: str) -> Any:
        return {"cfg": cfg}

    def load(self, module: Any, cfg: Config, params: dict[str, np.ndarray], dtype: str) -> Any:
        ref.check_params(cfg, params)
        return {**module, "params": {k: np.array(v, dtype=np.float64) for k, v in params.items()}}

    def evaluate(
        self, module: Any, x: np.ndarray, dy: np.ndarray | None, *, training: bool, data_format: str, dtype: str
    ) -> Outputs:
        cfg = module["cfg"]
        y, cache, state = ref.forward(cfg, module["params"], x, training=training, data_format=data_format)
        if dy is None:
            return Outputs(y, state=state)
        dx, grads = ref.backward(cfg, dy, cache)
        return Outputs(y, dx, grads, state)
