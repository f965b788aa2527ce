"""Finite-difference helpers and perturbed parameters for the reference's tests (framework-free).

The loss whose gradients are checked is ``L = sum(dy * forward(x, params))``, so that
``backward(dy)`` is exactly ``dL/dx, dL/dparams``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

import reference_numpy as ref
from conformance.cases import move_from_init
from reference_numpy import Config

__all__ = ["fd_error", "numeric_grads", "perturbed_params"]


def perturbed_params(cfg: Config, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """``init_params`` moved away from the init: weights scaled, biases and BN values shifted, running_var in 0.5..2."""
    return move_from_init(cfg, ref.init_params(cfg, seed=int(rng.integers(2**31))), rng)


def _output(cfg: Config, params: Mapping[str, np.ndarray], x: np.ndarray, training: bool, data_format: str):
    return ref.forward(cfg, params, x, training=training, data_format=data_format)[0]


def numeric_grads(
    cfg: Config,
    params: Mapping[str, np.ndarray],
    x: np.ndarray,
    dy: np.ndarray,
    *,
    training: bool,
    data_format: str,
    eps: float = 1e-6,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Central differences of ``sum(dy * y)``, one element at a time, w.r.t. x and every trainable parameter.

    ``sum(dy * (y+ - y-))`` is formed from the output difference, which keeps cancellation small.
    """

    def directional(perturb) -> float:
        plus = _output(cfg, *perturb(eps), training, data_format)
        minus = _output(cfg, *perturb(-eps), training, data_format)
        return float(np.sum(dy * (plus - minus)) / (2 * eps))

    dx = np.zeros_like(x)
    for i in np.ndindex(x.shape):

        def shift_x(h: float, i=i) -> tuple:
            xs = x.copy()
            xs[i] += h
            return params, xs

        dx[i] = directional(shift_x)
    grads = {}
    for name, spec in ref.param_layout(cfg).items():
        if not spec.trainable:
            continue
        g = np.zeros(spec.shape)
        for i in np.ndindex(spec.shape):

            def shift_p(h: float, name=name, i=i) -> tuple:
                p = {k: v.copy() for k, v in params.items()}
                p[name][i] += h
                return p, x

            g[i] = directional(shift_p)
        grads[name] = g
    return dx, grads


def fd_error(analytic: Mapping[str, np.ndarray], numeric: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Per tensor: ``max|a - n| / max(max|n|, max|a|, 1e-3 * S)``, S the largest ``|n|`` over all tensors.

    A gradient that is zero analytically (e.g. a conv bias feeding train-mode BN) is thus
    measured on the case's scale rather than on its own rounding noise.
    """
    assert set(analytic) == set(numeric), (sorted(analytic), sorted(numeric))
    scale = max(float(np.abs(n).max()) for n in numeric.values())
    out = {}
    for k, n in numeric.items():
        a = np.asarray(analytic[k], dtype=np.float64)
        assert a.shape == n.shape, (k, a.shape, n.shape)
        denom = max(float(np.abs(n).max()), float(np.abs(a).max()), 1e-3 * scale)
        out[k] = float(np.abs(a - n).max()) / denom if denom > 0 else float(np.abs(a - n).max())
    return out
