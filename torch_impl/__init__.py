"""attnspec's PyTorch port: SE, CBAM and ECA as ``nn.Module``s that conform to SPEC.md.

Configs, derived sizes, initialisation and weight layouts come from ``reference_numpy``;
``state_dict()`` keys are the canonical names.

Eager calls take a fast path (autograd Functions with hand-written backwards). Under
``torch.fx.symbolic_trace``, ``torch.jit.trace``, ``torch.export``, ``torch.compile`` and
``torch.func`` transforms the layers switch by themselves to a composite path computing the
same function in plain differentiable ops; ``with torch_impl.composite():`` forces it. Double
backward works on both (the fast backwards record the composite's derivative under
``create_graph=True``).

>>> import torch, torch_impl
>>> from reference_numpy import init_params
>>> cbam = torch_impl.CBAM(32, preset="timm")
>>> params = init_params(cbam.config, seed=0)
>>> _ = torch_impl.load_canonical(cbam, params)
>>> back = torch_impl.to_canonical(cbam)
>>> all((back[k] == params[k].astype("float32")).all() for k in params)
True
"""

try:
    import torch  # noqa: F401  (the port's framework: say how to install it when it is missing)
except ModuleNotFoundError as e:
    if e.name != "torch":  # torch is there but broken: its own error says more
        raise
    raise ModuleNotFoundError(
        'torch_impl needs PyTorch, which is not installed: pip install "attnspec[torch]"', name="torch"
    ) from e

from ._base import AttentionModule, class_for, from_config, load_canonical, to_canonical
from ._ops import composite
from .cbam import CBAM
from .eca import ECA
from .se import SqueezeExcite

__all__ = [
    "CBAM",
    "ECA",
    "AttentionModule",
    "SqueezeExcite",
    "class_for",
    "composite",
    "from_config",
    "load_canonical",
    "to_canonical",
]
