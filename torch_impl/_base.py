"""What SE, CBAM and ECA share in PyTorch: the spec config, initialisation, input checks and canonical weights.

Everything a module knows about itself comes from ``reference_numpy``: the config (built by
``make_config``, so every framework accepts and rejects the same arguments), derived sizes,
``param_init`` and the conversion tables. ``state_dict()`` keys are the canonical names.
"""

from __future__ import annotations

import dataclasses
import inspect
import warnings
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from reference_numpy import (
    Config,
    Registry,
    check_config,
    framework_layout,
    from_framework,
    make_config,
    param_init,
    show_constructor,
    staged_canonical,
)

from ._ops import composable

__all__ = ["AttentionModule", "class_for", "from_config", "load_canonical", "to_canonical"]

_NOT_CANONICAL = "num_batches_tracked"
"""PyTorch BN's batch counter, present after SyncBatchNorm conversion; dropped on export (SPEC.md section 7)."""


_OPTIONS = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=None) for n in ("device", "dtype")]

_CLASSES: Registry[type[AttentionModule]] = Registry("torch_impl")


class AttentionModule(nn.Module):
    """Base of :class:`SqueezeExcite`, :class:`CBAM` and :class:`ECA` (the skeleton: ``reference_numpy.ports``).

    Subclasses set ``module`` (the spec's name, which registers them for :func:`class_for`),
    create their layers in ``_build`` and compute in ``_attend``; ``forward`` checks the input
    against the spec first.
    """

    module: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _CLASSES.register(cls)
        # help() and inspect.signature() list every knob with the spec's default; the
        # constructor itself forwards only the knobs given, so that a preset is not overridden.
        show_constructor(cls, _OPTIONS)

    def __init__(
        self,
        channels: int,
        *,
        preset: str | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        **knobs: Any,
    ) -> None:
        super().__init__()
        self._config = make_config(self.module, channels, preset=preset, **knobs)
        self._build(self._config, device=_check_device(device), dtype=_check_dtype(dtype))
        self.reset_parameters()

    @property
    def config(self) -> Config:
        """The spec config (``reference_numpy``) this module implements."""
        return self._config

    def _build(self, cfg: Any, *, device: torch.device | str | None, dtype: torch.dtype | None) -> None:
        raise NotImplementedError

    def _attend(self, x: torch.Tensor, *, plain: bool) -> torch.Tensor:
        """The module's function of a checked input; ``plain=True``: on the composite path."""
        raise NotImplementedError

    def reset_parameters(self) -> None:
        """Draw every tensor from ``reference_numpy.param_init`` (PyTorch's default bounds; BN at 1, 0, 0, 1)."""
        tensors = _tensors(self)
        with torch.no_grad():
            for name, init in param_init(self._config).items():
                if init.dist == "uniform":
                    tensors[name].uniform_(-init.value, init.value)
                else:
                    tensors[name].fill_(init.value)
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.num_batches_tracked is not None:
                    m.num_batches_tracked.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(x, torch.fx.Proxy):  # symbolic_trace: check the real input when the graph runs
            return self._attend(_checked_input(x, self._config, self._dtype_witness(), self.training), plain=True)
        _check_input(x, self._config, self._dtype_witness(), self.training)
        return self._attend(x, plain=composable(x))

    def _dtype_witness(self) -> torch.Tensor:
        """A parameter, whose dtype the input must have (outside autocast)."""
        return next(iter(self.parameters()))

    def attention_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The gates this module multiplies ``x`` by: ``{"channel": (N, C)}``, and CBAM's ``"spatial": (N, 1, H, W)``.

        In the module's mode (CBAM's batch norm: batch statistics in training mode, running
        ones in eval mode); no running statistic is updated. See :mod:`torch_impl.maps`.
        """
        from .maps import attention_maps

        return attention_maps(self, x)

    def extra_repr(self) -> str:
        cfg = self._config
        defaults = type(cfg)(channels=cfg.channels)
        changed = [
            f"{f.name}={getattr(cfg, f.name)!r}"
            for f in dataclasses.fields(cfg)
            if f.name != "channels" and getattr(cfg, f.name) != getattr(defaults, f.name)
        ]
        return ", ".join([f"channels={cfg.channels}", *changed])


# ----------------------------------------------------------------------------- input checks


def _check_input(x: Any, cfg: Config, witness: torch.Tensor, training: bool) -> None:
    """The spec's input checks (``validate_input``, ``validate_input_dtype``), and that ``x`` is a tensor.

    Under ``torch.compile`` and ``torch.export`` the sizes that are symbolic are checked with
    ``torch._check`` (a runtime assertion in the graph) rather than in Python, which would
    fix them to the example's values.
    """
    if not isinstance(x, torch.Tensor):
        kind = type(x)
        raise TypeError(
            f"{cfg.module.upper()}(channels={cfg.channels}) expects a torch.Tensor. "
            f"Received: {kind.__module__}.{kind.__qualname__}"
        )
    if torch.jit.is_tracing():  # sizes are traced tensors; reading them for a check changes no graph
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            shape = tuple(int(s) for s in x.shape)
    else:
        shape = tuple(s if isinstance(s, int) else -1 for s in x.shape)  # -1: symbolic, checked below
    cfg.validate_input(shape, x.dtype, data_format="channels_first", training=training)
    cfg.validate_input_dtype(x.dtype, None if torch.is_autocast_enabled(x.device.type) else witness.dtype)
    if -1 in shape:
        n, _, h, w = x.shape
        msg = f"{cfg.module.upper()}(channels={cfg.channels}) expects N, H, W >= 1"
        for size in (n, h, w):
            torch._check(size >= 1, lambda: msg)
        if training and cfg.has_batch_norm:
            torch._check(n * h * w > 1, lambda: msg + " and N * H * W > 1 in training mode (batch norm)")


@torch.fx.wrap
def _checked_input(x: torch.Tensor, cfg: Config, witness: torch.Tensor, training: bool) -> torch.Tensor:
    """:func:`_check_input`, then ``x``: a leaf of ``torch.fx.symbolic_trace``, run on the real input."""
    _check_input(x, cfg, witness, training)
    return x


# ----------------------------------------------------------------------------- config and canonical weights


class_for = _CLASSES.class_for  # the class of a spec module: class_for("cbam") is CBAM


def _check_device(device: Any) -> torch.device | None:
    if device is None:
        return None
    try:
        return torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(
            f"`device` must be a torch.device, a device string such as 'cpu' or 'cuda:0', or None. Received: device={device!r}"
        ) from None


def _check_dtype(dtype: Any) -> torch.dtype | None:
    if dtype is None or (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        return dtype
    raise TypeError(f"`dtype` must be a floating torch.dtype (e.g. torch.float32) or None. Received: dtype={dtype!r}")


def from_config(
    cfg: Config, *, device: torch.device | str | None = None, dtype: torch.dtype | None = None
) -> AttentionModule:
    """The module a spec config describes: ``SqueezeExcite``, ``CBAM`` or ``ECA``.

    >>> from reference_numpy import CBAMConfig
    >>> import torch_impl
    >>> m = torch_impl.from_config(CBAMConfig.preset("timm", channels=64), dtype=torch.float64)
    >>> type(m).__name__, m.config.spatial_pool_order, m.spatial.conv.weight.dtype
    ('CBAM', ('mean', 'max'), torch.float64)
    """
    cfg = check_config(cfg)
    knobs = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name != "channels"}
    return class_for(cfg.module)(cfg.channels, device=device, dtype=dtype, **knobs)


def _tensors(module: AttentionModule) -> dict[str, torch.Tensor]:
    """Canonical name -> the module's own parameter or buffer (not a copy)."""
    held = module.state_dict(keep_vars=True)
    return {name: held[p.key] for name, p in framework_layout(module.config, "torch").items()}


def to_canonical(module: AttentionModule) -> dict[str, np.ndarray]:
    """The module's parameters and BN statistics as canonical float64 arrays (``reference_numpy`` layout).

    >>> import torch_impl
    >>> sd = torch_impl.to_canonical(torch_impl.ECA(64, kernel_size=5))
    >>> {k: (v.shape, v.dtype.name) for k, v in sd.items()}
    {'conv.weight': ((5,), 'float64')}
    """
    if not isinstance(module, AttentionModule):
        raise TypeError(
            f"`module` must be a torch_impl module (SqueezeExcite, CBAM or ECA). Received: {type(module).__name__}"
        )
    held = {k: v for k, v in module.state_dict().items() if not k.endswith(_NOT_CANONICAL)}
    return {k: v.astype(np.float64) for k, v in from_framework(module.config, held, "torch").items()}


def load_canonical(module: AttentionModule, params: Mapping[str, Any], strict: bool = True) -> AttentionModule:
    """Copy canonical arrays (NumPy or tensors, any float or integer dtype) into ``module``; returns ``module``.

    Everything is checked and converted before anything is copied (``reference_numpy.staged_canonical``):
    every missing (when ``strict``), unexpected and mis-shaped key in one ``KeyMismatchError``;
    None, object, string, bool and complex values and meta-device tensors in one ``TypeError``;
    finite values that would overflow the module's dtype in one ``ValueError``. On any error
    the module is unchanged. With ``strict=False`` any subset of the canonical names is loaded
    and the others keep their values.

    >>> import numpy as np, torch_impl
    >>> se = torch_impl.SqueezeExcite(32, rd_channels=4)
    >>> torch_impl.load_canonical(se, {"fc1.weight": np.zeros((4, 32)), "fc9.bias": np.zeros(4)})
    Traceback (most recent call last):
    ...
    reference_numpy.params.KeyMismatchError: canonical params does not match the expected layout; missing keys: fc1.bias, fc2.weight, fc2.bias; unexpected keys: fc9.bias.
    """
    if not isinstance(module, AttentionModule):
        raise TypeError(f"`module` must be an attnspec PyTorch module. Received: {type(module).__name__}")
    tensors = _tensors(module)
    arrays = staged_canonical(
        module.config, params, "torch", strict=strict, dtypes={k: t.dtype for k, t in tensors.items()}
    )
    staged = {name: torch.from_numpy(np.ascontiguousarray(a)).to(tensors[name].dtype) for name, a in arrays.items()}
    with torch.no_grad():
        for name, value in staged.items():
            tensors[name].copy_(value)
    return module
