"""The pieces of SPEC.md section 2 in PyTorch, shared by SE, CBAM and ECA.

Two autograd Functions carry every large tensor: :func:`pool` (reductions, with the input
passed through) and :func:`scale` (a broadcast product). Everything between them works on
small tensors (N x C or N x H x W) and is plain autograd, so ``nn.Linear``, ``nn.Conv2d`` and
``nn.BatchNorm2d`` (and their SyncBatchNorm conversion) stay ordinary submodules.

Why the pass-through: whatever depends on ``x`` after the pool consumes the pass-through
output, so the pool's backward receives x's gradient as a tensor that this module's own
backward allocated, and adds the pools' gradients to it in place instead of allocating another
tensor of x's size for the autograd engine to sum.

>>> import torch
>>> x = torch.tensor([[[[1.0, 3.0], [3.0, 0.0]]]], requires_grad=True)   # a tie in the max
>>> z, xp = pool(x, ("avg", "max"), (2, 3))
>>> z.flatten().tolist()
[1.75, 3.0]
>>> y = scale(xp, z[:, :, :1] / z[:, :, 1:])     # y = x * avg(x) / max(x)
>>> y.sum().backward()
>>> [round(v, 4) for v in x.grad.flatten().tolist()]   # the two maxima split the max's gradient
[1.1667, 0.4861, 0.4861, 1.1667]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

__all__ = ["ACTIVATIONS", "GATES", "POOLS", "ChannelMLP", "channel_attention", "mlp", "mlp_layers", "pool", "scale"]

Tensor = torch.Tensor

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": F.relu,
    "relu6": F.relu6,
    "silu": F.silu,
    "gelu": F.gelu,  # exact (erf) form, PyTorch's default
    "hard_swish": F.hardswish,
}


class _Sigmoid(torch.autograd.Function):
    """torch.sigmoid, with the derivative taken from the input as sigmoid(x) * sigmoid(-x).

    PyTorch's own backward uses y * (1 - y) from the output, which for y near 1 keeps only a
    few bits of 1 - y: a saturated gate's gradient then loses most of its precision in float32.
    """

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        return torch.sigmoid(x)

    @staticmethod
    def backward(ctx, dy: Tensor) -> Tensor:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return dy * torch.sigmoid(x) * torch.sigmoid(-x)


def _hard_sigmoid(x: Tensor) -> Tensor:
    # not F.hardsigmoid: its backward multiplies by 1/6 rounded to float32, even for float64 (PyTorch 2.13)
    return F.relu6(x + 3.0) / 6.0


GATES: dict[str, Callable[[Tensor], Tensor]] = {"sigmoid": _Sigmoid.apply, "hard_sigmoid": _hard_sigmoid}


def _accumulator(x: Tensor) -> torch.dtype | None:
    """float32 for half types (SPEC.md section 1: their reductions accumulate in float32), else x's own dtype."""
    return torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else None


# ----------------------------------------------------------------------------- pools
# Each pool: forward(x, dims) keeps the pooled dims (size 1); grad_(dx, x, y, dy, dims) ADDS its gradient into dx.


def _mean(x: Tensor, dims: tuple[int, ...]) -> Tensor:
    return x.mean(dims, keepdim=True, dtype=_accumulator(x)).to(x.dtype)


def _mean_grad_(dx: Tensor, x: Tensor, y: Tensor, dy: Tensor, dims: tuple[int, ...]) -> None:
    dx.add_(dy / math.prod([x.shape[d] for d in dims]))


def _max(x: Tensor, dims: tuple[int, ...]) -> Tensor:
    return x.amax(dims, keepdim=True)  # amax propagates NaN


def _max_grad_(dx: Tensor, x: Tensor, y: Tensor, dy: Tensor, dims: tuple[int, ...]) -> None:
    hit = (x == y).to(dx.dtype)  # ties share the gradient evenly
    dx.addcmul_(hit, dy / hit.sum(dims, keepdim=True, dtype=_accumulator(hit)).to(dx.dtype))


def _lse(x: Tensor, dims: tuple[int, ...]) -> Tensor:
    x32 = x.to(_accumulator(x) or x.dtype)
    m = x32.amax(dims, keepdim=True)
    return (m + (x32 - m).exp().sum(dims, keepdim=True).log()).to(x.dtype)  # SPEC's formula, infinities included


def _lse_grad_(dx: Tensor, x: Tensor, y: Tensor, dy: Tensor, dims: tuple[int, ...]) -> None:
    dx.addcmul_((x - y).exp(), dy)  # softmax weights


def _lp(x: Tensor, dims: tuple[int, ...]) -> Tensor:
    return torch.linalg.vector_norm(x, 2, dims, keepdim=True, dtype=_accumulator(x)).to(x.dtype)


def _lp_grad_(dx: Tensor, x: Tensor, y: Tensor, dy: Tensor, dims: tuple[int, ...]) -> None:
    dx.addcmul_(x, torch.where(y == 0, 0.0, dy / y))  # an all-zero window has gradient 0


POOLS: dict[str, tuple[Callable[..., Tensor], Callable[..., None]]] = {
    "avg": (_mean, _mean_grad_),
    "mean": (_mean, _mean_grad_),
    "max": (_max, _max_grad_),
    "lse": (_lse, _lse_grad_),
    "lp": (_lp, _lp_grad_),
}


def _writable(t: Tensor) -> bool:
    """Whether ``t`` is dense without overlap (not an expanded view), so that adding into it in place is safe."""
    return t.is_contiguous() or t.is_contiguous(memory_format=torch.channels_last)


class _Pool(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, kinds: tuple[str, ...], dims: tuple[int, ...]) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        y = torch.cat([POOLS[k][0](x, dims) for k in kinds], dim=dims[0])
        ctx.kinds, ctx.dims = kinds, dims
        ctx.save_for_backward(x, y)
        return y, x.view_as(x)

    @staticmethod
    @once_differentiable
    def backward(ctx, dy: Tensor, dx: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        x, y = ctx.saved_tensors
        if not _writable(dx):  # only when something other than `scale` consumed the pass-through
            dx = dx.clone(memory_format=torch.contiguous_format)
        for k, yk, dyk in zip(ctx.kinds, y.split(1, ctx.dims[0]), dy.split(1, ctx.dims[0]), strict=True):
            POOLS[k][1](dx, x, yk, dyk, ctx.dims)
        return dx, None, None


def pool(x: Tensor, kinds: Sequence[str], dims: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    """Pools of ``x`` over ``dims``, one per kind, concatenated along ``dims[0]``; and ``x`` passed through.

    Use the pass-through (not ``x``) for everything downstream: its gradient is where the
    pools add theirs. Over H, W (``dims=(2, 3)``) the result is ``(N, C, P, 1)``; over channels
    (``dims=(1,)``) it is ``(N, P, H, W)``.
    """
    return _Pool.apply(x, tuple(kinds), dims)


def _mul_into(buffer: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """``a * b`` written over ``buffer``, a tensor of the result's size that is no longer needed.

    Eager mode saves an allocation of x's size this way; under torch.compile the compiler plans
    memory itself (and Dynamo rejects a non-contiguous ``out=``), so it gets the plain product.
    """
    if torch.compiler.is_compiling():
        return a * b
    return torch.mul(a, b, out=buffer)


class _Scale(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, s: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, s)
        return x * s

    @staticmethod
    @once_differentiable
    def backward(ctx, dy: Tensor) -> tuple[Tensor | None, Tensor | None]:  # type: ignore[override]
        x, s = ctx.saved_tensors
        dx = ds = None
        if ctx.needs_input_grad[1]:
            dx = dy * x  # the buffer first holds dy * x for ds, then becomes dx
            dims = [i for i, n in enumerate(s.shape) if n == 1]
            ds = dx.sum(dims, keepdim=True, dtype=_accumulator(dx)).to(s.dtype)
        if ctx.needs_input_grad[0]:
            dx = dy * s if dx is None else _mul_into(dx, dy, s)
        return dx, ds


def scale(x: Tensor, s: Tensor) -> Tensor:
    """``x * s`` for ``s`` of shape ``(N, C, 1, 1)`` or ``(N, 1, H, W)``; one buffer of x's size in backward."""
    return _Scale.apply(x, s)


# ----------------------------------------------------------------------------- channel attention


def mlp_layers(
    channels: int, hidden: int, *, bias: bool, device: torch.device | str | None, dtype: torch.dtype | None
) -> tuple[nn.Linear, nn.Linear]:
    """``fc1`` (channels -> hidden) and ``fc2`` (hidden -> channels), canonical ``dense`` layout as is."""
    return (
        nn.Linear(channels, hidden, bias=bias, device=device, dtype=dtype),
        nn.Linear(hidden, channels, bias=bias, device=device, dtype=dtype),
    )


def mlp(z: Tensor, fc1: nn.Linear, fc2: nn.Linear, act: str) -> Tensor:
    """``fc2(act(fc1(z)))`` for descriptors ``z`` of shape ``(N, P, C)``, summed over the P pools -> ``(N, C)``."""
    return fc2(ACTIVATIONS[act](fc1(z))).sum(1)


class ChannelMLP(nn.Module):
    """CBAM's channel MLP, shared by all pools (SE holds the same two layers at top level)."""

    def __init__(
        self,
        channels: int,
        hidden: int,
        *,
        bias: bool,
        act: str,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.act = act
        self.fc1, self.fc2 = mlp_layers(channels, hidden, bias=bias, device=device, dtype=dtype)

    def forward(self, z: Tensor) -> Tensor:
        return mlp(z, self.fc1, self.fc2, self.act)


def channel_attention(x: Tensor, kinds: Sequence[str], logits: Callable[[Tensor], Tensor], gate: str) -> Tensor:
    """``x * gate(logits(z))`` with ``z`` the pools of ``x`` over H, W as ``(N, P, C)``; ``logits`` gives ``(N, C)``."""
    z, x = pool(x, kinds, (2, 3))
    g = GATES[gate](logits(z[..., 0].transpose(1, 2)))
    return scale(x, g[..., None, None])
