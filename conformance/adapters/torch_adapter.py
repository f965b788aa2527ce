"""The PyTorch port (``torch_impl``) as a conformance adapter.

``channels_last`` data (NHWC arrays) runs as NCHW tensors in ``torch.channels_last`` memory
format, the way PyTorch takes channels-last data; the adapter checks that the output keeps it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

import torch_impl
from reference_numpy import Config, framework_layout, from_framework_array, param_layout

from .base import Adapter, Outputs
from .run import torch_vjp

_TO_NCHW, _TO_NHWC = (0, 3, 1, 2), (0, 2, 3, 1)


def _tensor(a: np.ndarray, dtype: str, data_format: str) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64)).to(getattr(torch, dtype))
    return t.permute(*_TO_NCHW) if data_format == "channels_last" else t


def _numpy(t: torch.Tensor, data_format: str | None = None) -> np.ndarray:
    t = t.detach().to(torch.float64)
    return (t.permute(*_TO_NHWC) if data_format == "channels_last" else t).numpy().copy()


class TorchAdapter(Adapter):
    name = "torch"

    def build(self, cfg: Config, dtype: str) -> Any:
        return torch_impl.from_config(cfg, dtype=getattr(torch, dtype))

    def load(self, module: Any, cfg: Config, params: dict[str, np.ndarray], dtype: str) -> Any:
        return torch_impl.load_canonical(module, params)

    def evaluate(
        self, module: Any, x: np.ndarray, dy: np.ndarray | None, *, training: bool, data_format: str, dtype: str
    ) -> Outputs:
        module.train(training)
        xt = _tensor(x, dtype, data_format).requires_grad_(dy is not None)
        held = dict(module.named_parameters())
        trainable = [
            (name, p.key)
            for name, p in framework_layout(module.config, "torch").items()
            if param_layout(module.config)[name].trainable
        ]
        y, dxt, gts = torch_vjp(
            module, xt, None if dy is None else _tensor(dy, dtype, data_format), [held[k] for _, k in trainable]
        )
        fmt = torch.channels_last if data_format == "channels_last" else torch.contiguous_format
        if y.dim() == 4 and y.numel() > y.shape[1] and not y.is_contiguous(memory_format=fmt):
            raise AssertionError(f"output lost the input's memory format {fmt}: strides {y.stride()}")
        state = (
            {k: v for k, v in torch_impl.to_canonical(module).items() if not param_layout(module.config)[k].trainable}
            if training
            else {}
        )
        if dy is None:
            return Outputs(_numpy(y, data_format), state=state)
        grads = {
            name: from_framework_array(framework_layout(module.config, "torch")[name].kind, _numpy(g), "torch")
            for (name, _), g in zip(trainable, gts, strict=True)
            if g is not None
        }  # a parameter without a gradient is reported missing by the comparison
        dx = None if dxt is None else _numpy(dxt, data_format)
        return Outputs(_numpy(y, data_format), dx, grads, state)
