"""Verify somebody else's SE / CBAM / ECA implementation against the spec, and say which variant it is.

    python -m conformance verify TARGET --module {se,cbam,eca} --framework {torch,flax,keras}
        [--init-kwargs JSON] [--map auto|DIALECT|FILE.json] [--expect PRESET|JSON]
        [--channels N] [--data-format channels_first|channels_last] [--seed N] [--format text|json]

``TARGET`` is ``package.module:Factory``: a class, or a function returning a layer (a PyTorch
``nn.Module``, a Flax linen or NNX module, a Keras layer), called with ``--init-kwargs``.

What it does, in order:

1. instantiates the target and reads its tensors (PyTorch parameters and floating buffers,
   a linen module's initialised variables, an NNX module's state, a Keras layer's weights
   after calling it once);
2. binds every tensor to a canonical one: by a named PyTorch dialect (the ``THIRD_PARTY``
   tables of :mod:`reference_numpy.convert`), by a JSON map file
   (``{"their.name": "canonical.name"}``, or ``{"their.name": {"canonical": ..., "layout":
   "torch"|"flax"|"keras"}}`` to give a tensor's layout convention), or ``auto``: layers are
   recognised by their shapes (two fully connected layers ``C -> hidden -> C`` (``Linear``,
   ``Dense`` or 1x1 convolutions), a ``(1, 2, k, k)`` spatial convolution, a 1-channel 1-D
   convolution, a batch norm by its statistics' names); what cannot be bound, or could be
   bound two ways, is said in a sentence;
3. calls it once on a sample input with its own weights (a shape error in its forward is a
   reported failure, never a crash);
4. identifies the variant: the configuration that the parameter shapes imply (hidden width,
   biases, kernel sizes, batch norm), with the defaults and then every preset for the
   remaining knobs, then a coordinate search over the discrete knobs (gate, activation, the
   pool types, the spatial pool order, ECA padding, BN momentum and eps), float64 forward
   only, a few dozen candidates at most; when the structure says it is another module (an
   "ECA" with two fully connected layers), that module is identified instead;
5. checks the identified (or closest) configuration in full with :func:`conformance.check_case`:
   output, input gradient, every parameter gradient and, in train mode, the running
   statistics, in float64 (where the target computes in float64) and float32, eval and, when
   it has batch norm, train.

Pass/fail policy: the target passes when it matches SOME configuration of the requested
module (any preset, any knob setting); ``identified`` names it and the diagnosis says how it
differs from the module's defaults. ``expect`` (a preset name, or knobs as a mapping/JSON
with an optional ``"preset"`` key) makes it strict: then only a configuration equivalent to
the expected one passes. Equivalent means the same computation: rounding knobs that give the
same hidden width, or an explicit ECA kernel equal to the adaptive one, are not differences.

Identified configurations are named by their nearest preset (:func:`reference_numpy.describe`).

The package's parts, in the order a target goes through them: :mod:`.targets` (instantiate, read,
load and run a target in its framework, through the shared run layer
:mod:`conformance.adapters.run`), :mod:`.binding` (their tensors -> canonical ones),
:mod:`.diagnosis` (what the structure is, in plain words), :mod:`.identify` (the knob search),
:mod:`.check` (the target as a conformance adapter; the cases and the full check),
:mod:`.report`, :mod:`.api` (the pipeline), :mod:`.worker` (the isolated process) and :mod:`.cli`.

``conformance.verify`` is this package, and calling it calls :func:`verify`: every way of
reaching the name (``import conformance.verify as m``, ``from conformance import verify``,
``conformance.verify``) gives the same object, which is both the package and the function.

>>> import conformance, conformance.verify as m
>>> m is conformance.verify and callable(m) and m.verify is conformance.verify.verify
True
"""

from __future__ import annotations

import sys
import types
from typing import Any

from .api import load_target, verify
from .binding import Binding
from .check import ThirdPartyAdapter
from .cli import main
from .report import VerifyReport

__all__ = ["Binding", "ThirdPartyAdapter", "VerifyReport", "load_target", "main", "verify"]


class _CallablePackage(types.ModuleType):
    """The package, callable as :func:`verify` (see the module docstring)."""

    def __call__(self, target: Any, **kwargs: Any) -> VerifyReport:
        return verify(target, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
