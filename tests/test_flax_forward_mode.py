"""Forward mode through the Flax port: ``jax.jvp``, ``jax.jacfwd``, ``jax.jacrev`` and ``jax.hessian``.

Everything runs in float64 (x64 switched on inside each test only) and is held to the NumPy
reference: first derivatives to its hand-written backward (the Jacobian, one backward pass per
output element, exact up to float64 rounding), second derivatives to central differences of that backward.
A module is seen as a function of one flat vector ``theta = [x, trainable weights]`` in the
reference's canonical order, mapped into the port's variable trees inside the traced function,
so the Jacobians of port and reference have the same columns. ``jax.jacfwd``, ``jax.jacrev`` and
``jax.hessian`` act on ``theta`` restricted to ``K`` random directions (``theta0 + B @ a``): the
same transforms at a batch size of ``K``, which keeps them cheap, and a random ``B`` mixes every
input into every column.

Cost: each case is one ``jax.jit`` compiled with XLA's cheapest backend settings (``_COMPILE``);
the jitted function takes the arrays as arguments, so it is compiled once per case.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import pytest

pytestmark = pytest.mark.flax
jax = pytest.importorskip("jax")
pytest.importorskip("flax")

import jax.numpy as jnp  # noqa: E402
from jax.flatten_util import ravel_pytree  # noqa: E402

import reference_numpy as ref  # noqa: E402
from conformance import compare, make_case  # noqa: E402
from conformance.cases import Case  # noqa: E402
from conformance.grid import KNOBS, PRESETS  # noqa: E402
from reference_numpy import CBAMConfig, Config, ECAConfig, SEConfig  # noqa: E402
from tests._fd import fd_error  # noqa: E402
from tests._flax_helpers import functional  # noqa: E402

SHAPE = (2, 6, 3, 5)  # (N, C, H, W): small, every dim distinct
K = 3  # random directions of the restricted Jacobians and Hessians
FD_STEP = 1e-5
MAX_FD_ERROR = 1e-6
"""Central differences of the reference's float64 backward: truncation ~ step**2 and rounding
~ 1e-16 / step, both near 1e-10 relative at this step; a wrong second derivative is off by O(1)."""
_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
"""Compile time dominates these tests; results are still held to the float64 tolerance."""


# ----------------------------------------------------------------------------- the module as f(theta)


class Problem(NamedTuple):
    """A case of a port as a function of ``theta`` (canonical order), with the reference's side."""

    case: Case
    theta: np.ndarray  # [x.ravel(), trainable canonical weights raveled, in param_layout order]
    nx: int  # x's size
    apply: Callable[[jax.Array], jax.Array]  # theta -> y, traceable
    apply_weights: Callable[[jax.Array], jax.Array]  # theta -> y with x held at the case's (a constant)

    def unflatten(self, theta: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """``theta`` -> (x, every canonical param); the running statistics are the case's."""
        params, off = dict(self.case.params), self.nx
        for k in _trainable(self.case.cfg):
            n = params[k].size
            params[k] = theta[off : off + n].reshape(params[k].shape)
            off += n
        return theta[: self.nx].reshape(self.case.x.shape), params

    def reference(self, theta: np.ndarray) -> tuple[np.ndarray, Any]:
        x, params = self.unflatten(theta)
        c = self.case
        y, cache, _ = ref.forward(c.cfg, params, x, training=c.training, data_format=c.data_format)
        return y, cache

    def reference_gradient(self, theta: np.ndarray, dy: np.ndarray) -> np.ndarray:
        """The reference's gradient of ``sum(dy * y)`` with respect to ``theta``."""
        _, cache = self.reference(theta)
        dx, grads = ref.backward(self.case.cfg, dy, cache)
        return np.concatenate([dx.ravel()] + [grads[k].ravel() for k in _trainable(self.case.cfg)])

    def reference_hessian(self, directions: np.ndarray, dy: np.ndarray) -> np.ndarray:
        """``directions.T @ H @ directions`` of ``sum(dy * y)``, ``H @ directions`` by central
        differences of the reference's gradient along each direction."""
        columns = [
            (
                self.reference_gradient(self.theta + FD_STEP * d, dy)
                - self.reference_gradient(self.theta - FD_STEP * d, dy)
            )
            / (2 * FD_STEP)
            for d in directions.T
        ]
        return directions.T @ np.stack(columns, axis=1)

    def reference_jacobian(self) -> np.ndarray:
        """(y.size, theta.size), one backward pass per output element."""
        y, cache = self.reference(self.theta)
        rows = []
        for i in range(y.size):
            e = np.zeros(y.size)
            e[i] = 1.0
            dx, grads = ref.backward(self.case.cfg, e.reshape(y.shape), cache)
            rows.append(np.concatenate([dx.ravel()] + [grads[k].ravel() for k in _trainable(self.case.cfg)]))
        return np.stack(rows)


def _trainable(cfg: Config) -> list[str]:
    return [k for k, s in ref.param_layout(cfg).items() if s.trainable]


def _problem(namespace: str, cfg: Config, *, training: bool, data_format: str, seed: int) -> Problem:
    """Call inside ``jax.enable_x64(True)``."""
    case = make_case(cfg, seed=seed, dtype="float64", training=training, data_format=data_format, shape=SHAPE)
    nx = case.x.size
    # where each entry of the port's flat weights sits in theta: load the indices as weights
    index, off = dict(case.params), nx
    for k in _trainable(cfg):
        index[k] = np.arange(off, off + case.params[k].size, dtype=np.float64).reshape(case.params[k].shape)
        off += case.params[k].size
    positions, _ = ravel_pytree(functional(namespace, cfg, index, data_format, param_dtype=jnp.float64).weights)
    take = np.asarray(positions).astype(np.int64)
    assert sorted(take.tolist()) == list(range(nx, off)), "the weights do not map one to one"
    f = functional(namespace, cfg, case.params, data_format, param_dtype=jnp.float64)
    _, unravel = ravel_pytree(f.weights)
    theta = np.concatenate([case.x.ravel()] + [case.params[k].ravel() for k in _trainable(cfg)])

    def apply(t: jax.Array) -> jax.Array:
        return f.apply(t[:nx].reshape(case.x.shape), unravel(t[take]), f.stats, training)[0]

    def apply_weights(t: jax.Array) -> jax.Array:
        return f.apply(jnp.asarray(case.x), unravel(t[take]), f.stats, training)[0]

    return Problem(case, theta, nx, apply, apply_weights)


def _failures(got: dict[str, Any], want: dict[str, Any], seed: int) -> list[str]:
    out = []
    for k, v in want.items():
        c = compare(k, got[k], v, "float64", seed=seed)
        if not c.ok:
            out.append(c.message)
    return out


# ----------------------------------------------------------------------------- jvp, every variant


def _variant_params() -> list:
    """Every preset and knob variant of the conformance grid; mode, namespace and layout rotate."""
    out = []
    for i, v in enumerate(PRESETS + KNOBS):
        namespace = ("linen", "nnx")[i % 2]
        training = bool((i // 2) % 2)
        data_format = ("channels_last", "channels_first")[(i // 4) % 2]
        mode = "train" if training else "eval"
        out.append(pytest.param(v, namespace, training, data_format, id=f"{v.id}-{namespace}-{mode}-{data_format}"))
    return out


@pytest.mark.parametrize(("variant", "namespace", "training", "data_format"), _variant_params())
def test_jvp_is_the_reference_jacobian_times_the_tangent(variant, namespace, training, data_format) -> None:
    """``jax.jvp`` with a tangent on the input and every weight, against ``J_ref @ v``; and with a
    tangent on the weights only (the input a constant, so its tangent is a symbolic zero)."""
    with jax.enable_x64(True):
        p = _problem(namespace, variant.build(SHAPE[1]), training=training, data_format=data_format, seed=11)
        rng = np.random.default_rng(5)
        v = rng.normal(size=p.theta.shape)
        vw = np.concatenate([np.zeros(p.nx), v[p.nx :]])

        @functools.partial(jax.jit, compiler_options=_COMPILE)
        def tangents(theta, v, vw):
            y, ty = jax.jvp(p.apply, (theta,), (v,))
            return y, ty, jax.jvp(p.apply_weights, (theta,), (vw,))[1]

        y, ty, tyw = tangents(p.theta, v, vw)
        jac = p.reference_jacobian()
        shape = p.case.x.shape
        got = {"y": y, "jvp": ty, "jvp_weights": tyw}
        want = {"y": p.reference(p.theta)[0], "jvp": (jac @ v).reshape(shape), "jvp_weights": (jac @ vw).reshape(shape)}
        assert not _failures(got, want, p.case.seed)
        # non-vacuity: the input's tangent matters, and the comparison sees it
        assert _failures({"jvp": tyw}, {"jvp": want["jvp"]}, p.case.seed)


# ----------------------------------------------------------------------------- every transform, selected cases

CBAM_ALL = CBAMConfig(
    channels=SHAPE[1],
    rd_channels=4,
    pool_types=("max", "lp", "avg", "lse"),
    spatial_pool_order=("mean", "max"),
    spatial_bias=True,
    spatial_kernel_size=3,
    act="silu",
)
CBAM_PLAIN = CBAMConfig(
    channels=SHAPE[1], rd_channels=4, spatial_norm=False, spatial_bias=True, act="gelu", gate="hard_sigmoid"
)
CBAM_NO_SPATIAL = CBAMConfig(channels=SHAPE[1], rd_channels=4, spatial=False, pool_types=("lse", "max"))
SE = SEConfig(channels=SHAPE[1], rd_channels=4, act="gelu")
ECA = ECAConfig(channels=SHAPE[1], kernel_size=3, padding="circular", bias=True)

TRANSFORM_CASES = [
    pytest.param("linen", CBAM_ALL, True, "channels_last", id="cbam-all-pools-linen-train-nhwc"),
    pytest.param("nnx", CBAM_ALL, False, "channels_first", id="cbam-all-pools-nnx-eval-nchw"),
    pytest.param("linen", CBAM_PLAIN, False, "channels_first", id="cbam-no-norm-linen-eval-nchw"),
    pytest.param("nnx", CBAM_NO_SPATIAL, True, "channels_last", id="cbam-no-spatial-nnx-train-nhwc"),
    pytest.param("nnx", SE, True, "channels_last", id="se-nnx-train-nhwc"),
    pytest.param("linen", SE, False, "channels_first", id="se-linen-eval-nchw"),
    pytest.param("linen", ECA, True, "channels_first", id="eca-linen-train-nchw"),
    pytest.param("nnx", ECA, False, "channels_last", id="eca-nnx-eval-nhwc"),
]


def _transforms(p: Problem, directions: np.ndarray, dy: np.ndarray) -> dict[str, jax.Array]:
    """jacfwd, jacrev and hessian of ``p`` restricted to ``theta + directions @ a``, at ``a = 0``,
    plus reverse mode with respect to the weights only (symbolic zero input tangent)."""

    @functools.partial(jax.jit, compiler_options=_COMPILE)
    def run(theta, directions, dy):
        def along(a):
            return p.apply(theta + directions @ a)

        def loss(a):
            return jnp.sum(dy * along(a))

        def loss_weights(t):
            return jnp.sum(dy * p.apply_weights(t))

        a = jnp.zeros(directions.shape[1])
        return {
            "jacfwd": jax.jacfwd(along)(a),
            "jacrev": jax.jacrev(along)(a),
            "hessian": jax.hessian(loss)(a),
            "grad_weights": jax.grad(loss_weights)(theta),
        }

    return run(p.theta, directions, dy)


@pytest.mark.parametrize(("namespace", "cfg", "training", "data_format"), TRANSFORM_CASES)
def test_jacfwd_jacrev_and_hessian_match_the_reference(namespace, cfg, training, data_format) -> None:
    with jax.enable_x64(True):
        p = _problem(namespace, cfg, training=training, data_format=data_format, seed=13)
        rng = np.random.default_rng(6)
        directions = rng.normal(size=(p.theta.size, K))
        dy = p.case.dy
        got = _transforms(p, directions, dy)
        jac = p.reference_jacobian() @ directions  # (y.size, K)
        grad = p.reference_gradient(p.theta, dy)
        failures = _failures(
            {k: np.asarray(got[k]).reshape(-1, K) for k in ("jacfwd", "jacrev")}
            | {"grad_weights": np.asarray(got["grad_weights"])[p.nx :]},
            {"jacfwd": jac, "jacrev": jac, "grad_weights": grad[p.nx :]},
            p.case.seed,
        )
        hessian = np.asarray(got["hessian"])
        failures += _failures(
            {"jacrev_vs_jacfwd": got["jacrev"], "hessian_symmetric": hessian},
            {"jacrev_vs_jacfwd": got["jacfwd"], "hessian_symmetric": hessian.T},
            p.case.seed,
        )
        numeric = p.reference_hessian(directions, dy)
        error = fd_error({"hessian": hessian}, {"hessian": numeric})["hessian"]
        assert error <= MAX_FD_ERROR, f"hessian: FD error {error:.3g}; {hessian} vs {numeric}"
        assert not failures, "\n".join(failures)

        # non-vacuity: the reference a small step away (1e-3 per entry) fails both comparisons
        moved = p._replace(theta=p.theta + 1e-3 * rng.normal(size=p.theta.shape))
        assert _failures(
            {"jacfwd": np.asarray(got["jacfwd"]).reshape(-1, K)}, {"jacfwd": moved.reference_jacobian() @ directions}, 0
        )
        moved_numeric = moved.reference_hessian(directions, dy)
        assert fd_error({"hessian": hessian}, {"hessian": moved_numeric})["hessian"] > MAX_FD_ERROR
