"""The pieces of SPEC.md section 2 in PyTorch, shared by SE, CBAM and ECA.

Autograd Functions carry every tensor of the input's size: :func:`pool` (reductions, with the
input passed through), :func:`scale` (a broadcast product) and, for CBAM, :func:`scale_and_pool`
(the channel scale and the pools over channels). Everything between them works on small
tensors (N x C or N x H x W) and is plain autograd, so ``nn.Linear``, ``nn.Conv2d`` and
``nn.BatchNorm2d`` (and their SyncBatchNorm conversion) stay ordinary submodules. The backward
passes save only small tensors besides their inputs, reuse one buffer of x's size for each
product they need, and write the max pools' masks into float scratch buffers.

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

import contextlib
import functools
import math
from collections.abc import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ACTIVATIONS",
    "GATES",
    "POOLS",
    "ChannelMLP",
    "channel_attention",
    "channel_gate",
    "composable",
    "composite",
    "gate",
    "mlp",
    "mlp_layers",
    "pool",
    "scale",
    "scale_and_pool",
]

Tensor = torch.Tensor

# SPEC.md section 1's non-finite rule: a piecewise function's derivative SELECTS, where(cond, g * slope, 0),
# with cond an IEEE comparison (false at NaN). PyTorch's relu, relu6 and hardswish backwards pass g at a NaN
# input instead, so these are written as selects between branches: ``torch.where``'s derivative is exactly
# that selection, in reverse mode, forward mode and at every order. The values are the native ops' bit for
# bit (hard_swish above 3 is x itself, where PyTorch rounds x * 6 / 6), and a branch that may be non-finite
# where it is not selected takes x detached, so no 0 * Inf product from it reaches the gradient.


def _relu(x: Tensor) -> Tensor:
    return torch.where(x > 0, x, F.relu(x.detach()))  # F.relu(x) is 0 or NaN where x > 0 is false


def _relu6(x: Tensor) -> Tensor:
    return torch.where((x > 0) & (x < 6), x, F.relu6(x.detach()))


def _hard_swish(x: Tensor) -> Tensor:
    """``x * relu6(x + 3) / 6``; derivative ``g`` above 3, ``g * (x / 3 + 1 / 2)`` on [-3, 3], else 0.

    On [-3, 3] the value is the native one and the gradient comes from ``(x + 3/2)**2 / 6``, whose
    derivative is that slope as ONE product (the product rule on ``x * (x + 3) / 6`` would add two
    terms, Inf - Inf at an infinite ``g``); its second derivative, 1/3, is right too.
    """
    mid = (x >= -3) & (x <= 3)
    shaped = (torch.where(mid, x, 0.0) + 1.5).square() / 6  # finite everywhere: a zero gradient stays 0
    value = F.hardswish(x.detach())
    return torch.where(x > 3, x, torch.where(mid, value + (shaped - shaped.detach()), value))


ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": _relu,
    "relu6": _relu6,
    "silu": F.silu,  # smooth: their derivatives multiply (IEEE), as PyTorch's own do
    "gelu": F.gelu,  # exact (erf) form, PyTorch's default
    "hard_swish": _hard_swish,
}


class _Sigmoid(torch.autograd.Function):
    """torch.sigmoid, with the derivative taken from the input as sigmoid(x) * sigmoid(-x).

    PyTorch's own backward uses y * (1 - y) from the output, which for y near 1 keeps only a
    few bits of 1 - y: a saturated gate's gradient then loses most of its precision in float32.
    It is the reference's form (SPEC.md section 1, on where it rounds to 0).
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
    """``relu6(x + 3) / 6``, derivative ``g / 6`` strictly inside (-3, 3) and an exact 0 elsewhere (NaN included).

    Not F.hardsigmoid: its backward multiplies by 1/6 rounded to float32, even for float64 (PyTorch 2.13).
    """
    return torch.where((x > -3) & (x < 3), (x + 3) / 6, F.relu6(x.detach() + 3) / 6)


GATES: dict[str, Callable[[Tensor], Tensor]] = {"sigmoid": _Sigmoid.apply, "hard_sigmoid": _hard_sigmoid}
PLAIN_GATES: dict[str, Callable[[Tensor], Tensor]] = {"sigmoid": torch.sigmoid, "hard_sigmoid": _hard_sigmoid}
"""The gates on the composite path: ``torch.sigmoid``'s derivative is ``y * (1 - y)``, the same function."""


def gate(t: Tensor, kind: str, *, plain: bool = False) -> Tensor:
    """The gate ``kind`` of ``t``; with ``plain=True`` in ops every tool can trace and transform."""
    return (PLAIN_GATES if plain else GATES)[kind](t)


def _accumulator(x: Tensor) -> torch.dtype | None:
    """float32 for half types (SPEC.md section 1: their reductions accumulate in float32), else x's own dtype."""
    return torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else None


# ----------------------------------------------------------------------------- pools
# Each pool: forward(x, dims) keeps the pooled dims (size 1); grad_(dx, x, y, dy, dims, scratch) ADDS its gradient
# into dx, using `scratch` (a tensor like x whose contents do not matter) where it needs a temporary of x's size.


def _into(buffer: Tensor | None, op: Callable[..., Tensor], *args: Tensor) -> Tensor:
    """``op(*args)`` written over ``buffer`` (a tensor of the result's size that is no longer needed).

    Eager mode saves an allocation of x's size this way; under torch.compile the compiler plans
    memory itself (and Dynamo rejects a non-contiguous ``out=``), so it gets the plain result.
    """
    if buffer is None or torch.compiler.is_compiling():
        return op(*args).to(args[0].dtype)
    return op(*args, out=buffer)


def _sum(t: Tensor, dims: tuple[int, ...]) -> Tensor:
    """``t`` summed over ``dims`` (kept as size 1), in float32 for half types.

    Over the channels of a float32/float64 tensor it is a batched matrix-vector product with
    ones, which PyTorch runs up to twice as fast as ``sum(1)`` on NCHW data.
    """
    if dims == (1,) and t.dtype in (torch.float32, torch.float64):
        n, c, h, w = t.shape
        return torch.bmm(t.new_ones(n, 1, c), t.flatten(2)).view(n, 1, h, w)
    return t.sum(dims, keepdim=True, dtype=_accumulator(t))


def _mean(x: Tensor, dims: tuple[int, ...]) -> Tensor:
    return (_sum(x, dims) / math.prod([x.shape[d] for d in dims])).to(x.dtype)


def _mean_grad_(dx: Tensor, x: Tensor, y: Tensor, dy: Tensor, dims: tuple[int, ...], scratch: Tensor | None) -> None:
    dx.add_(dy / math.prod([x.shape[d] for d in dims]))


def _max(x: Tensor, dims: tuple[int, ...]) -> Tensor:
    return x.amax(dims, keepdim=True)  # amax propagates NaN


def _max_grad_(dx: Tensor, x: Tensor, y: Tensor, dy: Tensor, dims: tuple[int, ...], scratch: Tensor | None) -> None:
    """``dx += where(x == y, dy / count, 0)``: ties share the gradient evenly, a NaN max is equal to nothing.

    The selection as a product ``hit * v`` (one pass, and float masks are much faster than bool
    ones on CPU) is exact wherever ``v`` is finite; the windows without a maximum (a NaN max,
    ``count == 0``) get ``v = 0``. Only a non-finite cotangent (Inf or NaN, where ``0 * v`` is
    NaN) needs the ``torch.where``; on CPU the check costs nothing, elsewhere it would
    synchronise, so there the select always runs.
    """
    hit = _into(scratch, torch.eq, x, y)  # 1.0 at every maximum
    count = _sum(hit, dims)
    v = torch.where(count > 0, dy / count, 0.0).to(dx.dtype)
    if v.device.type == "cpu" and bool(v.isfinite().all()):
        dx.addcmul_(hit, v)
    else:
        dx.add_(torch.where(hit != 0, v, 0.0))


def _lse(x: Tensor, dims: tuple[int, ...]) -> Tensor:
    x32 = x.to(_accumulator(x) or x.dtype)
    m = _lse_shift(x32, dims)
    return (m + (x32 - m).exp().sum(dims, keepdim=True).log()).to(x.dtype)  # SPEC's formula, infinities included


def _lse_shift(x: Tensor, dims: tuple[int, ...]) -> Tensor:
    """The window's max where finite, else 0 (SPEC.md section 2): a +Inf window pools to +Inf, an all -Inf one to -Inf."""
    m = x.amax(dims, keepdim=True)
    return torch.where(m.isfinite(), m, 0.0)


def _lse_grad_(dx: Tensor, x: Tensor, y: Tensor, dy: Tensor, dims: tuple[int, ...], scratch: Tensor | None) -> None:
    dx.addcmul_(_into(scratch, torch.sub, x, y).exp_(), dy)  # softmax weights


def _lp(x: Tensor, dims: tuple[int, ...]) -> Tensor:
    return torch.linalg.vector_norm(x, 2, dims, keepdim=True, dtype=_accumulator(x)).to(x.dtype)


def _lp_grad_(dx: Tensor, x: Tensor, y: Tensor, dy: Tensor, dims: tuple[int, ...], scratch: Tensor | None) -> None:
    dx.addcmul_(x, torch.where(y == 0, 0.0, dy / y))  # an all-zero window has gradient 0


POOLS: dict[str, tuple[Callable[..., Tensor], Callable[..., None]]] = {
    "avg": (_mean, _mean_grad_),
    "mean": (_mean, _mean_grad_),
    "max": (_max, _max_grad_),
    "lse": (_lse, _lse_grad_),
    "lp": (_lp, _lp_grad_),
}
_NEED_SCRATCH = ("max", "lse")


def _pools(x: Tensor, kinds: tuple[str, ...], dims: tuple[int, ...]) -> Tensor:
    pooled = [POOLS[k][0](x, dims) for k in kinds]
    return pooled[0] if len(pooled) == 1 else torch.cat(pooled, dim=dims[0])


def _pool_grads_(
    dx: Tensor, x: Tensor, y: Tensor, dy: Tensor, kinds: tuple[str, ...], dims: tuple[int, ...], scratch: Tensor | None
) -> None:
    """Add into ``dx`` the gradients of the pools ``y = _pools(x, kinds, dims)`` for their cotangent ``dy``."""
    if scratch is None and any(k in _NEED_SCRATCH for k in kinds):
        scratch = torch.empty_like(x)
    for k, yk, dyk in zip(kinds, y.split(1, dims[0]), dy.split(1, dims[0]), strict=True):
        POOLS[k][1](dx, x, yk, dyk, dims, scratch)


# ----------------------------------------------------------------------------- the composite path
# The same functions in plain differentiable ops, for the tools the fast Functions cannot serve.

_forced_composite = False


@contextlib.contextmanager
def composite(enabled: bool = True) -> Iterator[None]:
    """Run every attnspec layer on its composite path (``enabled=True``) inside the block.

    The composite path is the same function in plain differentiable PyTorch ops; the layers
    switch to it by themselves under tracing, export, ``torch.compile`` and ``torch.func``
    transforms (:func:`composable`). ``composite(False)`` restores the automatic choice.

    >>> import torch, torch_impl
    >>> se = torch_impl.SqueezeExcite(8)
    >>> x = torch.randn(2, 8, 3, 3)
    >>> with torch_impl.composite():
    ...     y = se(x)
    >>> torch.allclose(y, se(x))
    True
    """
    global _forced_composite
    if not isinstance(enabled, bool):
        raise TypeError(f"`enabled` must be a bool. Received: enabled={enabled!r} of type {type(enabled).__name__}")
    before, _forced_composite = _forced_composite, enabled
    try:
        yield
    finally:
        _forced_composite = before


def composable(x: Tensor) -> bool:
    """Whether the layers take the composite path for input ``x`` now.

    True inside :func:`composite`, for an ``fx`` proxy, under ``torch.jit.trace`` (and so the
    TorchScript ONNX exporter), under ``torch.compile`` and ``torch.export`` (and so the dynamo
    ONNX exporter), and inside ``torch.func`` transforms (``grad``, ``vmap``, ``jacrev``,
    ``jacfwd``; ``torch._C._are_functorch_transforms_active``, the test ``autograd.Function``
    itself applies), and inside ``torch.autograd.forward_ad.dual_level()`` (forward-mode AD).
    Double backward needs no switch: the fast backwards record the composite's derivative when
    asked for a graph.
    """
    return (
        _forced_composite
        or isinstance(x, torch.fx.Proxy)
        or torch.jit.is_tracing()
        or torch.compiler.is_compiling()
        or torch._C._are_functorch_transforms_active()
        or _forward_ad_level() >= 0
    )


def _forward_ad_level() -> int:
    """The innermost ``torch.autograd.forward_ad.dual_level`` open now, -1 outside (its module's own counter)."""
    return getattr(torch.autograd.forward_ad, "_current_level", -1)


def _widened(x: Tensor) -> Tensor:
    """``x`` in its reductions' dtype (see :func:`_accumulator`), also for an fx proxy, whose dtype is unknown.

    A proxy gets a float32 zero of one element added: by type promotion that is float32 for
    half types and x's own dtype otherwise.
    """
    if isinstance(x, torch.fx.Proxy):
        return x + x.new_zeros(1, dtype=torch.float32)
    acc = _accumulator(x)
    return x if acc is None else x.to(acc)


def _plain_mean(x: Tensor, dims: tuple[int, ...]) -> Tensor:
    return _widened(x).mean(dims, keepdim=True).type_as(x)


def _plain_lse(x: Tensor, dims: tuple[int, ...]) -> Tensor:
    x32 = _widened(x)
    m = _lse_shift(x32, dims).detach()  # any constant gives the same function; the max keeps exp finite
    return (m + (x32 - m).exp().sum(dims, keepdim=True).log()).type_as(x)


def _plain_max(x: Tensor, dims: tuple[int, ...]) -> Tensor:
    """The max over ``dims`` (NaN propagates), its derivative the selection ``where(x == max, g / count, 0)``.

    ``amax``'s own derivative multiplies by the indicator (``0 * Inf`` is NaN) and divides by a
    count of 0 in a NaN window. Here the gradient flows through ``q``, the sum of the maxima
    each divided by their count (a ``torch.where``: an exact 0 elsewhere), whose value is the max
    again up to rounding: the output is the max itself plus ``q - q`` (exactly 0 where the max is
    finite), or ``q`` where the max is infinite (``q`` is that infinity).
    """
    m = x.amax(dims, keepdim=True).detach()
    hit = x == m  # no entry equals a NaN max
    count = hit.sum(dims, keepdim=True, dtype=x.dtype).clamp(min=1)
    q = torch.where(hit, x / count, 0.0).sum(dims, keepdim=True)
    return torch.where(m.isinf(), q, m + (q - q.detach()))


def _plain_lp(x: Tensor, dims: tuple[int, ...]) -> Tensor:
    return torch.linalg.vector_norm(_widened(x), 2, dims, keepdim=True).type_as(x)


_PLAIN_POOLS: dict[str, Callable[[Tensor, tuple[int, ...]], Tensor]] = {
    "avg": _plain_mean,
    "mean": _plain_mean,
    "max": _plain_max,
    "lse": _plain_lse,
    "lp": _plain_lp,
}


def _plain_pools(x: Tensor, kinds: tuple[str, ...], dims: tuple[int, ...]) -> Tensor:
    pooled = [_PLAIN_POOLS[k](x, dims) for k in kinds]
    return pooled[0] if len(pooled) == 1 else torch.cat(pooled, dim=dims[0])


def _owned(dx: Tensor) -> Tensor:
    """``dx`` if adding into it in place is safe (dense, not an expanded view), else a copy.

    The gradients these Functions receive come from this module's own backward (``scale``), so
    the copy only happens when something else consumed the pass-through.
    """
    if dx.is_contiguous() or dx.is_contiguous(memory_format=torch.channels_last):
        return dx
    return dx.clone(memory_format=torch.contiguous_format)


def _sum_to(t: Tensor, like: Tensor) -> Tensor:
    """``t`` summed over the dims where ``like`` has size 1, in float32 for half types, in ``like``'s dtype."""
    dims = [i for i, n in enumerate(like.shape) if n == 1]
    return _sum(t, tuple(dims)).to(like.dtype)


def _differentiable_vjp(
    fn: Callable[..., tuple[Tensor, ...]],
    inputs: tuple[Tensor, ...],
    needs: tuple[bool, ...],
    cotangents: tuple[Tensor, ...],
) -> tuple[Tensor | None, ...]:
    """The vector-Jacobian product of the composite ``fn`` at ``inputs``, recorded for a further backward.

    The fast backwards call this when autograd asks for a graph of the gradient
    (``create_graph=True``: grad mode is on inside ``backward``), so double backward runs
    through the plain ops of the composite path, the same function by construction.
    """
    create_graph = torch.is_grad_enabled()  # off for a vectorised backward (see _composite_backward)
    with torch.enable_grad():
        wanted = [t for t, need in zip(inputs, needs, strict=True) if need]
        outs = fn(*inputs)
        # retain_graph: a batched backward may take this local graph more than once (it is freed on return anyway)
        grads = iter(
            torch.autograd.grad(
                outs, wanted, cotangents, create_graph=create_graph, retain_graph=True, allow_unused=True
            )
        )
    return tuple((next(grads) if need else None) for need in needs)


_is_legacy_batched: Callable[[Tensor], bool] = getattr(torch._C._functorch, "is_legacy_batchedtensor", lambda t: False)


def _composite_backward(*cotangents: Tensor) -> bool:
    """Whether a fast backward must hand back the composite's VJP instead of its in-place one.

    Under ``create_graph=True`` autograd runs backwards in grad mode: the gradient must be a
    graph for the next derivative. Under a vectorised backward (``is_grads_batched``,
    ``torch.autograd.functional.jacobian(vectorize=True)``) the cotangents are batched by
    PyTorch's older vmap (``torch._C._functorch.is_legacy_batchedtensor``), which in-place and
    ``out=`` ops cannot take.
    """
    return (
        torch.is_grad_enabled()
        or torch._C._are_functorch_transforms_active()
        or any(_is_legacy_batched(t) for t in cotangents)
    )


class _Pool(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, kinds: tuple[str, ...], dims: tuple[int, ...]) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        y = _pools(x, kinds, dims)
        ctx.kinds, ctx.dims = kinds, dims
        ctx.save_for_backward(x, y)
        return y, x.view_as(x)

    @staticmethod
    def backward(ctx, dy: Tensor, dx: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        x, y = ctx.saved_tensors
        if _composite_backward(dy, dx):  # create_graph: differentiable ops, nothing in place
            (dp,) = _differentiable_vjp(lambda t: (_plain_pools(t, ctx.kinds, ctx.dims),), (x,), (True,), (dy,))
            return dx + dp, None, None
        dx = _owned(dx)
        _pool_grads_(dx, x, y, dy, ctx.kinds, ctx.dims, None)
        return dx, None, None


def pool(x: Tensor, kinds: Sequence[str], dims: tuple[int, ...], *, plain: bool = False) -> tuple[Tensor, Tensor]:
    """Pools of ``x`` over ``dims``, one per kind, concatenated along ``dims[0]``; and ``x`` passed through.

    Use the pass-through (not ``x``) for everything downstream: its gradient is where the
    pools add theirs. Over H, W (``dims=(2, 3)``) the result is ``(N, C, P, 1)``; over channels
    (``dims=(1,)``) it is ``(N, P, H, W)``. With ``plain=True`` it is the composite of plain
    differentiable ops (see :func:`composable`).
    """
    if plain:
        return _plain_pools(x, tuple(kinds), dims), x
    return _Pool.apply(x, tuple(kinds), dims)


class _Scale(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, s: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, s)
        return x * s

    @staticmethod
    def backward(ctx, dy: Tensor) -> tuple[Tensor | None, Tensor | None]:  # type: ignore[override]
        x, s = ctx.saved_tensors
        if _composite_backward(dy):  # create_graph: x * s's own derivative, in differentiable ops
            return _differentiable_vjp(torch.mul, (x, s), ctx.needs_input_grad, (dy,))
        dx = ds = None
        if ctx.needs_input_grad[1]:
            dx = dy * x  # the buffer first holds dy * x for ds, then becomes dx
            ds = _sum_to(dx, s)
        if ctx.needs_input_grad[0]:
            dx = _into(dx, torch.mul, dy, s)
        return dx, ds


def scale(x: Tensor, s: Tensor, *, temporary: bool = False, plain: bool = False) -> Tensor:
    """``x * s`` for ``s`` of shape ``(N, C, 1, 1)`` or ``(N, 1, H, W)``; one tensor of x's size in backward.

    With ``temporary=True`` (``x`` is an intermediate nobody else holds) and no gradient to
    record, ``x`` is multiplied in place: inference allocates nothing more. With ``plain=True``
    it is the plain product.
    """
    if plain:
        return x * s
    if temporary and not (x.requires_grad or s.requires_grad):
        return x.mul_(s)
    return _Scale.apply(x, s)


def _plain_scale_and_pool(x: Tensor, g: Tensor, kinds: tuple[str, ...]) -> tuple[Tensor, Tensor]:
    x1 = x * g
    return _plain_pools(x1, kinds, (1,)), x1


class _ScalePool(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, g: Tensor, kinds: tuple[str, ...]) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        x1 = x * g
        d = _pools(x1, kinds, (1,))
        ctx.kinds = kinds
        ctx.save_for_backward(x, g, x1, d)
        return d, x1

    @staticmethod
    def backward(ctx, dd: Tensor, dx1: Tensor) -> tuple[Tensor | None, Tensor | None, None]:  # type: ignore[override]
        x, g, x1, d = ctx.saved_tensors
        if _composite_backward(dd, dx1):  # create_graph: differentiable ops, nothing in place
            fn = functools.partial(_plain_scale_and_pool, kinds=ctx.kinds)
            dx, dg = _differentiable_vjp(fn, (x, g), ctx.needs_input_grad[:2], (dd, dx1))
            return dx, dg, None
        dx1 = _owned(dx1)
        scratch = torch.empty_like(x)
        _pool_grads_(dx1, x1, d, dd, ctx.kinds, (1,), scratch)
        dg = _sum_to(_into(scratch, torch.mul, dx1, x), g) if ctx.needs_input_grad[1] else None
        return (dx1.mul_(g) if ctx.needs_input_grad[0] else None), dg, None


def scale_and_pool(x: Tensor, g: Tensor, kinds: Sequence[str], *, plain: bool = False) -> tuple[Tensor, Tensor]:
    """``x1 = x * g`` (``g`` of shape ``(N, C, 1, 1)``) and the pools of ``x1`` over channels, ``(N, P, H, W)``.

    Returns ``(pools, x1)``. The backward reuses the gradient arriving for ``x1`` as x's gradient.
    """
    if plain:
        return _plain_scale_and_pool(x, g, tuple(kinds))
    return _ScalePool.apply(x, g, tuple(kinds))


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
    return fc2(ACTIVATIONS[act](fc1(z))).sum(1)  # over one pool the sum is that pool's row, exactly


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


def channel_gate(
    x: Tensor, kinds: Sequence[str], logits: Callable[[Tensor], Tensor], kind: str, *, plain: bool = False
) -> tuple[Tensor, Tensor]:
    """``gate(logits(z))`` as ``(N, C, 1, 1)``, ``z`` the pools of ``x`` over H, W as ``(N, P, C)``; and x passed through.

    ``logits`` maps ``(N, P, C)`` to ``(N, C)``; use the returned x downstream (see :func:`pool`).
    """
    z, x = pool(x, kinds, (2, 3), plain=plain)
    return gate(logits(z[..., 0].transpose(1, 2)), kind, plain=plain)[..., None, None], x


def channel_attention(
    x: Tensor, kinds: Sequence[str], logits: Callable[[Tensor], Tensor], kind: str, *, plain: bool = False
) -> Tensor:
    """``x * gate(logits(z))``: SE, ECA, and CBAM without its spatial branch."""
    g, x = channel_gate(x, kinds, logits, kind, plain=plain)
    return scale(x, g, plain=plain)
