"""Attention maps in PyTorch: the gates a module multiplies its input by, without the output.

``module.attention_maps(x)`` (every port has it, with the same keys and shapes) returns
``{"channel": (N, C)}``, plus ``"spatial": (N, 1, H, W)`` for a CBAM with its spatial branch:
the channel gate ``g`` and the spatial gate ``s`` of SPEC.md sections 3 to 5
(``y = x * g`` for SE and ECA, ``y = (x * g) * s`` for CBAM). It follows the module's mode
(``module.training``: CBAM's batch norm uses the batch statistics in training mode, the
running ones in eval mode) but never updates the running statistics. It is computed from the
module's canonical tensors with the formulas of ``reference_numpy``, independently of the
fused forward path, and is differentiable (autograd sees ordinary ops).

>>> import torch, torch_impl
>>> cbam = torch_impl.CBAM(32).eval()
>>> x = torch.randn(2, 32, 7, 5)
>>> maps = cbam.attention_maps(x)
>>> {k: tuple(v.shape) for k, v in maps.items()}
{'channel': (2, 32), 'spatial': (2, 1, 7, 5)}
>>> torch.allclose(cbam(x), x * maps["channel"][:, :, None, None] * maps["spatial"])
True
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from reference_numpy import framework_layout
from reference_numpy.ops import pad_index

from ._ops import ACTIVATIONS, GATES

__all__ = ["attention_maps"]

Tensor = torch.Tensor


def _space_pool(kind: str, x: Tensor, acc: torch.dtype) -> Tensor:
    """A pool over H, W of SPEC.md section 2: (N, C, H, W) -> (N, C), in ``acc``."""
    if kind == "avg":
        return x.mean((2, 3), dtype=acc)
    if kind == "max":
        return x.amax((2, 3)).to(acc)
    if kind == "lse":
        return torch.logsumexp(x.to(acc), (2, 3))
    s = x.to(acc).square().sum((2, 3))  # lp: an all-zero window gives 0 (value and gradient)
    return torch.where(s > 0, torch.where(s > 0, s, 1.0).sqrt(), 0.0)


def _channel_pool(kind: str, x: Tensor, acc: torch.dtype) -> Tensor:
    """CBAM's pools over C: (N, C, H, W) -> (N, 1, H, W), in ``acc``."""
    return x.mean(1, keepdim=True, dtype=acc) if kind == "mean" else x.amax(1, keepdim=True).to(acc)


def _mlp(z: Tensor, t: dict[str, Tensor], prefix: str, act: str) -> Tensor:
    """``fc2(act(fc1(z)))`` on descriptors (P, N, C), summed over the P pools -> (N, C)."""
    h = ACTIVATIONS[act](F.linear(z, t[f"{prefix}fc1.weight"], t.get(f"{prefix}fc1.bias")))
    return F.linear(h, t[f"{prefix}fc2.weight"], t.get(f"{prefix}fc2.bias")).sum(0)


def attention_maps(module: Any, x: Tensor) -> dict[str, Tensor]:
    """The attention maps of an attnspec PyTorch module on the NCHW input ``x`` (see the module docstring)."""
    cfg = module.config
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{type(module).__name__}.attention_maps expects a torch.Tensor. Received: {type(x).__name__}")
    cfg.validate_input(x.shape, x.dtype, data_format="channels_first", training=module.training)
    acc = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
    held = module.state_dict(keep_vars=True)
    t = {name: held[p.key].to(acc) for name, p in framework_layout(cfg, "torch").items()}
    gate = GATES[cfg.gate]
    if cfg.module == "se":
        return {"channel": gate(_mlp(_space_pool("avg", x, acc)[None], t, "", cfg.act)).to(x.dtype)}
    if cfg.module == "eca":
        z = _space_pool("avg", x, acc)
        w = t["conv.weight"].reshape(-1)
        idx, valid = pad_index(z.shape[1], w.shape[0] // 2, cfg.padding)
        padded = z[:, torch.from_numpy(idx).to(x.device)] * torch.from_numpy(valid).to(device=x.device, dtype=acc)
        u = padded.unfold(1, w.shape[0], 1) @ w
        if "conv.bias" in t:
            u = u + t["conv.bias"]
        return {"channel": gate(u).to(x.dtype)}
    pooled = torch.stack([_space_pool(kind, x, acc) for kind in cfg.pool_types])  # (P, N, C)
    g = gate(_mlp(pooled, t, "channel.", cfg.act)).to(x.dtype)
    maps = {"channel": g}
    if not cfg.spatial:
        return maps
    x1 = x * g[:, :, None, None]
    d = torch.cat([_channel_pool(q, x1, acc) for q in cfg.spatial_pool_order], dim=1)
    w = t["spatial.conv.weight"]
    z = F.conv2d(d, w, t.get("spatial.conv.bias"), padding=w.shape[-1] // 2)
    if cfg.spatial_norm:
        running = not module.training  # training: batch statistics, and the running ones are left alone
        z = F.batch_norm(
            z,
            t["spatial.bn.running_mean"] if running else None,
            t["spatial.bn.running_var"] if running else None,
            t["spatial.bn.weight"],
            t["spatial.bn.bias"],
            training=not running,
            eps=cfg.bn_eps,
        )
    maps["spatial"] = gate(z).to(x.dtype)
    return maps
