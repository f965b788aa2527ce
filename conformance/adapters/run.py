"""The one "run forward and gradients" layer every framework runner shares: this project's adapters
(:mod:`conformance.adapters`) and third-party targets (:mod:`conformance.verify`).

Each function takes a callable and the framework's tensors, and returns the output, the
input's gradient and the gradients of the given parameters, by autodiff, for an output
cotangent ``dy`` (or the output alone when ``dy`` is None). Frameworks are imported inside
the functions, so importing this module imports none.

>>> import numpy as np
>>> as_single_array(np.ones((2, 3)), "its forward").shape
(2, 3)
>>> as_single_array((np.ones(2), np.ones(2)), "its forward")
Traceback (most recent call last):
...
TypeError: its forward returned a tuple, expected one array with the input's shape
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

__all__ = ["as_single_array", "jax_vjp", "tf_vjp", "torch_vjp", "x64"]


@contextlib.contextmanager
def x64(dtype: str) -> Iterator[None]:
    """JAX's 64-bit mode exactly while a float64 run lasts (and off for other dtypes), restored on exit,
    so it never leaks into other code in the process."""
    import jax

    with jax.enable_x64(dtype == "float64"):  # type: ignore[attr-defined]
        yield


def as_single_array(y: Any, what: str) -> np.ndarray:
    """``y`` as a NumPy array; a tuple, list or dict (a forward returning several things) is a TypeError."""
    if isinstance(y, (tuple, list, dict)):
        raise TypeError(f"{what} returned a {type(y).__name__}, expected one array with the input's shape")
    if hasattr(y, "detach"):
        y = y.detach().cpu()
    return np.asarray(y)


def torch_vjp(fn: Callable[[Any], Any], x: Any, dy: Any | None, params: Sequence[Any]) -> tuple[Any, Any, list[Any]]:
    """``y = fn(x)``; with ``dy``, ``(y, dx, [d param])`` by ``torch.autograd.grad`` (None for a parameter
    the output does not depend on); without, ``(y, None, [])``. ``x`` must require grad when ``dy`` is given."""
    import torch

    y = fn(x)
    if dy is None:
        return y, None, []
    if not isinstance(y, torch.Tensor):
        return y, None, []  # the caller reports what it returned
    dx, *grads = torch.autograd.grad(y, [x, *params], grad_outputs=dy, allow_unused=True)
    return y, dx, grads


def tf_vjp(fn: Callable[[Any], Any], x: Any, dy: Any | None, variables: Sequence[Any]) -> tuple[Any, Any, list[Any]]:
    """``y = fn(x)`` under a ``tf.GradientTape``; with ``dy``, ``(y, dx, [d variable])`` (None where unused)."""
    import tensorflow as tf

    if dy is None:
        return fn(x), None, []
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = fn(x)
    if isinstance(y, (tuple, list, dict)):
        return y, None, []
    dx, *grads = tape.gradient(y, [x, *variables], output_gradients=dy)
    return y, dx, grads


def jax_vjp(f: Callable[[Any, Any, Any], tuple[Any, Any]], params: Any, other: Any, x: Any, dy: Any | None) -> Any:
    """``f(params, other, x) -> (y, aux)``; with ``dy``, ``(y, dx, dparams, aux)`` by ``jax.vjp``, else
    ``(y, None, None, aux)``. ``other`` is differentiated too (its cotangent dropped): NNX variables made
    from a value closed over from an outer trace cannot be updated inside the VJP's trace."""
    import jax

    if dy is None:
        y, aux = f(params, other, x)
        return y, None, None, aux
    y, pullback, aux = jax.vjp(lambda p, xx, o: f(p, o, xx), params, x, other, has_aux=True)
    dp, dx, _ = pullback(dy)
    return y, dx, dp, aux
