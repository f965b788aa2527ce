"""Canonical parameter dicts: creation, and the one check every weight load goes through.

:func:`canonical_arrays` checks a whole parameter dict (keys, shapes and every value) and
returns it converted, so that a port can stage everything before it changes anything
(SPEC.md section 8, "Loading weights").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .config import Config, param_init, param_layout

__all__ = [
    "KeyMismatchError",
    "canonical_arrays",
    "check_fits",
    "check_params",
    "dtype_name",
    "init_params",
    "real_arrays",
]


class KeyMismatchError(ValueError):
    """A parameter dict that does not match a layout; lists every problem at once."""

    def __init__(self, what: str, missing: list[str], unexpected: list[str], misshaped: list[str]):
        self.missing, self.unexpected, self.misshaped = missing, unexpected, misshaped
        parts = []
        if missing:
            parts.append(f"missing keys: {', '.join(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {', '.join(unexpected)}")
        if misshaped:
            parts.append(f"mis-shaped keys: {', '.join(misshaped)}")
        super().__init__(f"{what} does not match the expected layout; " + "; ".join(parts) + ".")


def match_keys(
    what: str,
    got: Mapping[str, Any],
    expected: Mapping[str, tuple[int, ...]],
) -> None:
    """Raise :class:`KeyMismatchError` naming every missing, unexpected and mis-shaped key.

    ``expected`` maps names to shapes; values of ``got`` need only a ``shape`` attribute.
    """
    missing = [k for k in expected if k not in got]
    unexpected = sorted(str(k) for k in got if k not in expected)
    misshaped = []
    for k, shape in expected.items():
        if k in got:
            try:
                received = tuple(np.shape(got[k]))
            except (ValueError, TypeError):  # a ragged nested list
                misshaped.append(f"{k} (expected shape {tuple(shape)}, received a value with no shape)")
                continue
            if received != tuple(shape):
                misshaped.append(f"{k} (expected shape {tuple(shape)}, received {received})")
    if missing or unexpected or misshaped:
        raise KeyMismatchError(what, missing, unexpected, misshaped)


# ----------------------------------------------------------------------------- values

_NUMPY_FLOATS = ("torch.float16", "torch.float32", "torch.float64")
# dtype name -> (largest exponent, significand bits): its overflow threshold is (2 - 2**-bits) * 2**exponent,
# the midpoint between the largest finite value and the next power of two (round to nearest overflows there).
_FLOAT_FORMATS = {"float16": (15, 11), "bfloat16": (127, 8), "float32": (127, 24)}
_NO_OVERFLOW = ("float64", "longdouble", "float128")


def dtype_name(dtype: Any) -> str:
    """The plain name of a NumPy, JAX, PyTorch, TensorFlow or Keras dtype (``torch.float32`` -> ``"float32"``).

    >>> dtype_name(np.float16), dtype_name("bfloat16")
    ('float16', 'bfloat16')
    """
    if isinstance(dtype, str):
        return dtype
    text = str(dtype)
    if text.startswith("torch."):
        return text[len("torch.") :]
    try:
        return np.dtype(dtype).name
    except TypeError:
        name = getattr(dtype, "name", None)  # TensorFlow's DType
        return name if isinstance(name, str) else text


def _real_array(value: Any) -> np.ndarray | str:
    """``value`` as a NumPy array of a real floating dtype (integers become float64), or what is wrong with it."""
    if value is None:
        return "None"
    if getattr(value, "is_meta", False):
        return "a tensor on the meta device, which holds no values"
    if hasattr(value, "detach") and hasattr(value, "is_floating_point"):  # a torch tensor, without importing torch
        try:
            t = value.detach()
            if t.is_floating_point() and str(t.dtype) not in _NUMPY_FLOATS:
                t = t.float()  # bfloat16, float8: exact in float32, which NumPy has
            value = t.cpu().numpy()
        except (RuntimeError, TypeError, ValueError, NotImplementedError) as e:
            return f"a tensor that cannot be read ({type(e).__name__}: {e})"
    try:
        a = np.asarray(value)
    except (ValueError, TypeError, RuntimeError, OverflowError) as e:
        return f"a value that is not an array of numbers ({type(e).__name__}: {e})"
    kind = a.dtype.kind
    if kind == "f" or (kind == "V" and a.dtype.name.startswith(("bfloat", "float"))):  # ml_dtypes' bfloat16, float8
        return a
    if kind in "iu":
        return a.astype(np.float64)
    if kind == "O":
        return "an array of Python objects such as None (dtype object)"
    described = {"U": "strings", "S": "bytes", "b": "bools", "c": "complex numbers"}.get(kind, "other values")
    return f"an array of {described} (dtype {a.dtype.name})"


def real_arrays(values: Mapping[str, Any], *, what: str = "params") -> dict[str, np.ndarray]:
    """Every value of ``values`` as a NumPy array of real numbers, or one TypeError naming every bad key.

    Accepted: NumPy arrays, lists, and any framework's tensors or variables of a floating or
    integer dtype (integers become float64; floating arrays keep their dtype, PyTorch's
    bfloat16 becomes float32, exactly). Refused: None, object and string arrays, bool and
    complex dtypes, and tensors without values (PyTorch's meta device).

    >>> real_arrays({"a": [1, 2], "b": np.full(2, None), "c": "0.5"})
    Traceback (most recent call last):
    ...
    TypeError: params has values that are not arrays of real numbers: b (an array of Python objects such as None (dtype object)), c (an array of strings (dtype str96)). Expected floating or integer arrays or tensors.
    """
    if not isinstance(values, Mapping):
        raise TypeError(f"`values` must be a mapping of names to arrays. Received: {type(values).__name__}")
    out: dict[str, np.ndarray] = {}
    problems = []
    for key, value in values.items():
        a = _real_array(value)
        if isinstance(a, str):
            problems.append(f"{key} ({a})")
        else:
            out[key] = a
    if problems:
        raise TypeError(
            f"{what} has values that are not arrays of real numbers: {', '.join(problems)}. "
            "Expected floating or integer arrays or tensors."
        )
    return out


def check_fits(arrays: Mapping[str, np.ndarray], dtypes: Mapping[str, Any] | Any, *, what: str = "params") -> None:
    """Refuse finite values that would become +/-Inf in their target dtype (one ValueError naming every key).

    ``dtypes`` is one dtype for all, or a mapping key -> dtype (NumPy, JAX, PyTorch or Keras).
    NaN and +/-Inf themselves are values like any other and pass (SPEC.md section 8).

    >>> check_fits({"w": np.array([1.0, 1e39, np.inf])}, "float32")
    Traceback (most recent call last):
    ...
    ValueError: params has finite values too large for their target dtype: w (float32; largest magnitude 1e+39). Such values would load as inf.
    """
    if not isinstance(arrays, Mapping):
        raise TypeError(f"`arrays` must be a mapping of names to NumPy arrays. Received: {type(arrays).__name__}")
    problems = []
    for key, a in arrays.items():
        name = dtype_name(dtypes[key] if isinstance(dtypes, Mapping) else dtypes)
        if name in _NO_OVERFLOW or name == a.dtype.name:
            continue
        if name not in _FLOAT_FORMATS:
            raise TypeError(
                f"Weights can be loaded into float16, bfloat16, float32 or float64 variables. "
                f"Received: {key} of dtype {name}"
            )
        exponent, bits = _FLOAT_FORMATS[name]
        a64 = np.abs(a.astype(np.float64, copy=False))
        largest = float(np.max(a64, initial=0.0, where=np.isfinite(a64)))
        if largest >= (2 - 2.0**-bits) * 2.0**exponent:
            problems.append(f"{key} ({name}; largest magnitude {largest:.4g})")
    if problems:
        raise ValueError(
            f"{what} has finite values too large for their target dtype: {', '.join(problems)}. "
            "Such values would load as inf."
        )


def canonical_arrays(
    cfg: Config,
    params: Mapping[str, Any],
    *,
    what: str = "params",
    strict: bool = True,
    dtypes: Mapping[str, Any] | Any = None,
) -> dict[str, np.ndarray]:
    """Check a canonical parameter dict completely and return it as NumPy arrays, in layout order.

    The one check behind every weight load (``load_canonical`` in every port, Linen's
    ``from_canonical``, checkpoints, the reference's forward): keys and shapes
    (:class:`KeyMismatchError`, every problem at once), every value (:func:`real_arrays`),
    and with ``dtypes`` (one dtype or name -> dtype) that no finite value overflows there
    (:func:`check_fits`). A port converts what this returns, then assigns: nothing is changed
    when anything is wrong. With ``strict=False`` a subset of the canonical names is allowed.

    >>> from reference_numpy import ECAConfig
    >>> canonical_arrays(ECAConfig(16, kernel_size=3), {"conv.weight": [1, 2, 3]})
    {'conv.weight': array([1., 2., 3.])}
    """
    if not isinstance(params, Mapping):
        raise TypeError(f"`{what}` must be a mapping of canonical names to arrays. Received: {type(params).__name__}")
    if not isinstance(strict, bool):
        raise TypeError(f"`strict` must be a bool. Received: strict={strict!r}")
    layout = param_layout(cfg)
    present = [k for k in layout if k in params]
    arrays = real_arrays({k: params[k] for k in present}, what=what)
    match_keys(
        what,
        {**{k: v for k, v in params.items() if k not in arrays}, **arrays},
        {k: s.shape for k, s in layout.items() if strict or k in params},
    )
    if dtypes is not None:
        check_fits(arrays, dtypes, what=what)
    return arrays


def check_params(cfg: Config, params: Mapping[str, Any], *, what: str = "params") -> None:
    """Check that ``params`` has exactly the canonical keys and shapes of ``cfg``, and real-number values.

    >>> from reference_numpy import SEConfig
    >>> check_params(SEConfig(channels=8, rd_channels=2), {"fc1.weight": np.zeros((2, 4))})
    Traceback (most recent call last):
    ...
    reference_numpy.params.KeyMismatchError: params does not match the expected layout; missing keys: fc1.bias, fc2.weight, fc2.bias; mis-shaped keys: fc1.weight (expected shape (2, 8), received (2, 4)).
    """
    canonical_arrays(cfg, params, what=what)


def init_params(cfg: Config, seed: int = 0) -> dict[str, np.ndarray]:
    """Fresh float64 canonical parameters (PyTorch's default initialisation), seeded.

    >>> from reference_numpy import ECAConfig
    >>> p = init_params(ECAConfig(channels=64), seed=0)
    >>> {k: v.shape for k, v in p.items()}
    {'conv.weight': (3,)}
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise TypeError(f"`seed` must be an int >= 0. Received: seed={seed!r} of type {type(seed).__name__}")
    rng = np.random.default_rng(seed)
    layout = param_layout(cfg)
    out = {}
    for name, init in param_init(cfg).items():
        shape = layout[name].shape
        if init.dist == "constant":
            out[name] = np.full(shape, init.value, dtype=np.float64)
        else:
            out[name] = rng.uniform(-init.value, init.value, size=shape)
    return out
