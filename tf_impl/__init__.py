"""attnspec's Keras 3 port: SE, CBAM and ECA layers that run on the TensorFlow, JAX and PyTorch backends.

Every layer is built from a :mod:`reference_numpy` spec config and exchanges weights in the
canonical layout (``to_canonical`` / ``load_canonical``), so weights move between this port,
the PyTorch and Flax ports and the reference without renaming or transposing by hand.

A layer computes in its dtype on every backend; on JAX, float64 needs JAX's 64-bit mode
(``jax.config.update("jax_enable_x64", True)``) before the layer is built, and a float64 layer
raises without it rather than let JAX compute in float32.

>>> import numpy as np
>>> from reference_numpy import CBAMConfig, init_params
>>> import tf_impl
>>> cfg = CBAMConfig.preset("timm", channels=32)
>>> layer = tf_impl.from_config(cfg, data_format="channels_first")
>>> layer.build((None, 32, 8, 8))
>>> params = {k: v.astype("float32") for k, v in init_params(cfg, seed=0).items()}
>>> _ = tf_impl.load_canonical(layer, params)
>>> all(np.array_equal(v, params[k]) for k, v in tf_impl.to_canonical(layer).items())
True
>>> [key for key, w in layer.keras_weights.items() if not w.trainable]
['spatial.bn.moving_mean', 'spatial.bn.moving_variance']
"""

try:
    import keras  # noqa: F401  (the port's framework: say how to install it when it is missing)
except ModuleNotFoundError as e:
    import importlib.util

    _top = (e.name or "").split(".")[0]
    try:
        _installed = importlib.util.find_spec(_top) is not None
    except (ImportError, ValueError):  # hidden by an import hook, or a None in sys.modules
        _installed = False
    if _top not in ("keras", "tensorflow") or _installed:  # another backend's, or a broken install
        raise
    raise ModuleNotFoundError(
        f'tf_impl needs Keras 3 and TensorFlow ({_top} is not installed): pip install "attnspec[tf]"', name=_top
    ) from e

from ._base import AttentionLayer, class_for, from_config, load_canonical, to_canonical, to_numpy
from .cbam import CBAM
from .eca import ECA
from .porting import load_torch_state_dict, to_torch_state_dict
from .se import SqueezeExcite

__all__ = [
    "CBAM",
    "ECA",
    "AttentionLayer",
    "SqueezeExcite",
    "class_for",
    "from_config",
    "load_canonical",
    "load_torch_state_dict",
    "to_canonical",
    "to_numpy",
    "to_torch_state_dict",
]
