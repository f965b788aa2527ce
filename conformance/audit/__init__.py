"""Audit a whole network: find every SE, CBAM and ECA block in it and verify each where it sits.

    python -m conformance audit TARGET [--framework torch|keras|flax] [--input-shape N,C,H,W]
        [--format text|json] [--timeout S] [--seed N]

``TARGET`` is ``package.module:factory`` (a function or class building the network, or a
network instance held by the module; for a Flax linen network, a function returning
``(module, variables)``). :func:`audit` takes the network itself too.

What it does, in order (:mod:`.walk`, then :mod:`.api`):

1. walks the network's submodules (PyTorch ``named_modules``, Keras sublayers, NNX attributes;
   linen submodules as the network calls them) and keeps those whose class is named like a
   block or whose weights have a block's shapes;
2. runs the network once, in eval mode, on a sample input, keeping the input each candidate
   receives; a block that raises, returns a tuple, the wrong shape or NaN there is a failed
   block (called as the identity for the rest of that run), one that hangs is stopped after
   the time limit;
3. verifies each block with :func:`conformance.verify`, with the network's own weights and the
   input it received; blocks of the same class and configuration are identified once, and the
   others are checked against the configuration found (with their own weights and input).

Exit status of the command: 0 when at least one block was found and every one conforms, 1 when
some block does not (or none was found, or the network could not be built), 2 for a mistake in
the command itself.

``conformance.audit`` is this package, and calling it calls :func:`audit` (as ``conformance.verify``
is callable):

>>> import conformance, conformance.audit as m
>>> m is conformance.audit and callable(m) and m.audit is conformance.audit.audit
True
"""

from __future__ import annotations

import sys
import types
from typing import Any

from .api import DEFAULT_SPATIAL, audit
from .cli import main
from .report import AuditReport, BlockReport

__all__ = ["DEFAULT_SPATIAL", "AuditReport", "BlockReport", "audit", "main"]


class _CallablePackage(types.ModuleType):
    """The package, callable as :func:`audit`."""

    def __call__(self, model: Any, **kwargs: Any) -> AuditReport:
        return audit(model, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
