"""The skeleton every port shares, from the spec: its class registry, its constructors' signature
and the checks behind ``load_canonical``.

Each port (``torch_impl``, ``flax_impl.linen``, ``flax_impl.nnx``, ``tf_impl``) has one base
class, whose subclasses are the spec's modules, and the same names around it:

- a subclass sets ``module`` (one of :data:`~reference_numpy.MODULES`); the base's
  ``__init_subclass__`` adds it to the port's :class:`Registry`, which the port's
  ``class_for(module)`` and ``from_config(cfg)`` read;
- ``_build`` creates the module's parameters (``framework_layout`` and ``param_init``), and
  ``_attend`` computes the attention of an input that the spec has checked;
- the constructor takes ``channels``, every knob of the module's config (keyword-only, listed
  with the spec's defaults by :func:`constructor_signature` and :func:`show_constructor`),
  ``preset`` and the framework's own options;
- ``load_canonical(module, params, strict=True)`` checks and converts everything with
  :func:`staged_canonical` before it assigns anything, and returns the module it loaded into;
  ``to_canonical(module)`` reads the weights back.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import numpy as np

from .config import CONFIG_TYPES, Config, check_module, param_layout
from .convert import to_framework_array
from .params import canonical_arrays

__all__ = [
    "PORT_API",
    "Registry",
    "check_strict",
    "constructor_signature",
    "show_constructor",
    "staged_canonical",
    "with_doc",
]

T = TypeVar("T")

PORT_API = ("SqueezeExcite", "CBAM", "ECA", "class_for", "from_config", "load_canonical", "to_canonical")
"""What every port's package exports, each port adding its base class and its own tools to its ``__all__``."""


class Registry(dict[str, T]):
    """Module name -> a port's class of that module, filled by the port's base class from ``__init_subclass__``.

    >>> classes = Registry("example_port")
    >>> class Base:
    ...     def __init_subclass__(cls, **kwargs):
    ...         super().__init_subclass__(**kwargs)
    ...         classes.register(cls)
    >>> class SE(Base):
    ...     module = "se"
    >>> class MySE(SE):  # declares no module of its own: SE stays the port's class
    ...     pass
    >>> classes.class_for("se").__name__
    'SE'
    >>> classes.class_for("eca")
    Traceback (most recent call last):
    ...
    LookupError: example_port has no class of module 'eca'. It has: se
    """

    def __init__(self, port: str) -> None:
        super().__init__()
        self.port = port

    def register(self, cls: Any) -> None:
        """Add ``cls`` under the ``module`` it declares itself, unless the port has a class of that module already."""
        if "module" in vars(cls):
            self.setdefault(check_module(cls.module), cls)

    def class_for(self, module: str) -> T:
        """The port's class of spec module ``module`` (``"se"``, ``"cbam"`` or ``"eca"``).

        Every port publishes this as its ``class_for``. A name that is not a module of the spec
        is a ValueError; a module the port has no class of (yet), a LookupError.
        """
        if check_module(module) not in self:
            raise LookupError(f"{self.port} has no class of module {module!r}. It has: {', '.join(self)}")
        return self[module]


def constructor_signature(
    module: str, options: Iterable[inspect.Parameter] = (), *, self_parameter: bool = False
) -> inspect.Signature:
    """``(channels, *, <every knob of module's config, with the spec's default>, preset=None, <options>)``.

    What ``help()`` and ``inspect.signature`` show for a port's constructor. The constructor
    itself takes the knobs as ``**knobs`` and passes on only those given, so that a default
    never overrides a preset; ``options`` are its other parameters (the framework's own), in order.

    >>> import inspect
    >>> print(constructor_signature("eca", [inspect.Parameter("dtype", inspect.Parameter.KEYWORD_ONLY, default=None)]))
    (channels: int, *, kernel_size=None, gamma=2, beta=1, padding='zeros', bias=False, gate='sigmoid', preset=None, dtype=None)
    """
    kw = inspect.Parameter.KEYWORD_ONLY
    params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)] if self_parameter else []
    params.append(inspect.Parameter("channels", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=int))
    params += [
        inspect.Parameter(f.name, kw, default=f.default)
        for f in dataclasses.fields(CONFIG_TYPES[check_module(module)])
        if f.name != "channels"
    ]
    params.append(inspect.Parameter("preset", kw, default=None))
    return inspect.Signature([*params, *options])


class _ClassSignature:
    """A class's ``__signature__`` that its instances do not inherit (theirs is their ``__call__``'s)."""

    def __init__(self, signature: inspect.Signature) -> None:
        self.signature = signature

    def __get__(self, obj: Any, owner: type | None = None) -> inspect.Signature:
        if obj is not None:
            raise AttributeError("__signature__")
        return self.signature


def show_constructor(cls: type, options: Iterable[inspect.Parameter] = ()) -> None:
    """Make ``inspect.signature(cls)`` and ``help(cls)`` show :func:`constructor_signature` of ``cls.module``.

    A port's ``__init_subclass__`` calls it; instances keep the signature of their ``__call__``
    (``tf.function(layer)`` and the like inspect it).

    >>> class SE:
    ...     module = "se"
    ...     def __init__(self, channels, *, preset=None, **knobs): ...
    ...     def __call__(self, x): ...
    >>> show_constructor(SE)
    >>> import inspect
    >>> list(inspect.signature(SE).parameters)[:3], str(inspect.signature(SE(8)))
    (['channels', 'rd_ratio', 'rd_channels'], '(x)')
    """
    cls.__signature__ = _ClassSignature(constructor_signature(cls.module, options))  # type: ignore[attr-defined]


F = TypeVar("F", bound=Callable[..., Any])


def with_doc(template: str, **words: str) -> Callable[[F], F]:
    """Give a function the docstring ``template`` with ``words`` filled in: text every port shares, written once.

    >>> @with_doc("Load into {model}.", model="the NNX ``module``")
    ... def load(module): ...
    >>> load.__doc__
    'Load into the NNX ``module``.'
    """

    def decorate(f: F) -> F:
        f.__doc__ = template.format(**words)
        return f

    return decorate


def check_strict(strict: Any) -> bool:
    """``strict`` if it is a bool, else a TypeError: a truthy string must not mean "strict"."""
    if not isinstance(strict, bool):
        raise TypeError(f"`strict` must be a bool. Received: strict={strict!r} of type {type(strict).__name__}")
    return strict


def staged_canonical(
    cfg: Config, params: Mapping[str, Any], framework: str, *, strict: bool, dtypes: Mapping[str, Any] | Any
) -> dict[str, np.ndarray]:
    """``params`` checked completely and converted to ``framework``'s layouts: what a port's ``load_canonical`` assigns.

    ``strict=True`` needs every canonical name of ``cfg``; ``strict=False`` takes any subset
    of them (the names left out keep their values in the module). Either way an unexpected or
    mis-shaped key is an error: all of them in one ``KeyMismatchError``; values that are not real
    numbers in one ``TypeError``; finite values that would overflow the dtype they are assigned
    to (``dtypes``: one dtype, or canonical name -> dtype) in one ``ValueError``
    (:func:`~reference_numpy.canonical_arrays`). A port assigns only after this returns, so that
    nothing is changed when anything is wrong.

    >>> from reference_numpy import ECAConfig
    >>> staged = staged_canonical(ECAConfig(16, kernel_size=3), {"conv.weight": [1, 2, 3]}, "keras", strict=True, dtypes="float32")
    >>> staged["conv.weight"].shape  # Keras's Conv1D layout, (k, 1, 1)
    (3, 1, 1)
    >>> staged_canonical(ECAConfig(16, kernel_size=3), {}, "keras", strict="no", dtypes="float32")
    Traceback (most recent call last):
    ...
    TypeError: `strict` must be a bool. Received: strict='no' of type str
    """
    check_strict(strict)
    arrays = canonical_arrays(cfg, params, what="canonical params", strict=strict, dtypes=dtypes)
    layout = param_layout(cfg)
    return {name: to_framework_array(layout[name].kind, a, framework) for name, a in arrays.items()}
