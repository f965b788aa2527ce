"""attnspec's executable specification: SE, CBAM and ECA in float64 NumPy, forward and backward.

>>> import numpy as np
>>> from reference_numpy import CBAMConfig, init_params, forward, backward
>>> cfg = CBAMConfig(channels=32)
>>> params = init_params(cfg, seed=0)
>>> x = np.random.default_rng(0).normal(size=(2, 32, 6, 5))
>>> y, cache, state = forward(cfg, params, x, training=True)
>>> dx, grads = backward(cfg, np.ones_like(y), cache)
>>> sorted(state), dx.shape, grads["spatial.conv.weight"].shape
(['spatial.bn.running_mean', 'spatial.bn.running_var'], (2, 32, 6, 5), (1, 2, 7, 7))
"""

from .api import backward, forward
from .bounds import Bounds, error_bounds
from .cbam import cbam_backward, cbam_forward
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import (
    CONFIG_TYPES,
    DATA_FORMATS,
    EXTRAS,
    FRAMEWORKS,
    MODULES,
    PORTS,
    REQUIRES,
    CBAMConfig,
    Config,
    ECAConfig,
    InitSpec,
    ParamSpec,
    SEConfig,
    as_config,
    check_config,
    check_data_format,
    check_module,
    check_training,
    config_from_dict,
    knob_names,
    make_config,
    param_init,
    param_layout,
)
from .convert import (
    THIRD_PARTY,
    FrameworkParam,
    export_state_dict,
    flatten,
    framework_layout,
    from_framework,
    from_framework_array,
    import_state_dict,
    nest,
    to_framework,
    to_framework_array,
)
from .describe import (
    describe,
    differences,
    effective_knobs,
    equivalent,
    nearest_preset,
    preset_configs,
    width_knobs,
)
from .eca import eca_backward, eca_forward
from .params import KeyMismatchError, canonical_arrays, check_fits, check_params, init_params, real_arrays
from .porting import PortError, PortReport
from .ports import PORT_API, Registry, check_strict, constructor_signature, show_constructor, staged_canonical, with_doc
from .se import se_backward, se_forward

SPEC_VERSION = "1.2"

__all__ = [
    "CONFIG_TYPES",
    "DATA_FORMATS",
    "EXTRAS",
    "FRAMEWORKS",
    "MODULES",
    "PORTS",
    "PORT_API",
    "REQUIRES",
    "SPEC_VERSION",
    "THIRD_PARTY",
    "Bounds",
    "CBAMConfig",
    "CheckpointError",
    "Config",
    "ECAConfig",
    "FrameworkParam",
    "InitSpec",
    "KeyMismatchError",
    "ParamSpec",
    "PortError",
    "PortReport",
    "Registry",
    "SEConfig",
    "as_config",
    "backward",
    "canonical_arrays",
    "cbam_backward",
    "cbam_forward",
    "check_config",
    "check_data_format",
    "check_fits",
    "check_module",
    "check_params",
    "check_strict",
    "check_training",
    "config_from_dict",
    "constructor_signature",
    "describe",
    "differences",
    "eca_backward",
    "eca_forward",
    "effective_knobs",
    "equivalent",
    "error_bounds",
    "export_state_dict",
    "flatten",
    "forward",
    "framework_layout",
    "from_framework",
    "from_framework_array",
    "import_state_dict",
    "init_params",
    "knob_names",
    "load_checkpoint",
    "make_config",
    "nearest_preset",
    "nest",
    "param_init",
    "param_layout",
    "preset_configs",
    "real_arrays",
    "save_checkpoint",
    "se_backward",
    "se_forward",
    "show_constructor",
    "staged_canonical",
    "to_framework",
    "to_framework_array",
    "width_knobs",
    "with_doc",
]
