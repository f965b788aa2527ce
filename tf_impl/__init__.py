"""attnspec's Keras 3 port: SE, CBAM and ECA layers that run on the TensorFlow, JAX and PyTorch backends.

Every layer is built from a :mod:`reference_numpy` spec config and exchanges weights in the
canonical layout (``to_canonical`` / ``load_canonical``), so weights move between this port,
the PyTorch and Flax ports and the reference without renaming or transposing by hand.

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

from ._base import AttentionLayer, from_config, load_canonical, to_canonical
from .cbam import CBAM
from .eca import ECA
from .se import SqueezeExcite

__all__ = ["CBAM", "ECA", "AttentionLayer", "SqueezeExcite", "from_config", "load_canonical", "to_canonical"]
