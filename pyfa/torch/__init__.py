"""The native PyTorch port of Feedback Alignment.

- `fa_linear` / `LinearFA` and `conv2d_fa` / `Conv2dFA` (functional / module), the FA counterparts
  of ``F.linear`` / ``nn.Linear`` and ``F.conv2d`` / ``nn.Conv2d``;
- `DFASequential`, an MLP trained with Direct Feedback Alignment (a network-level rule);
- `convert` swaps every ``nn.Linear`` and ``nn.Conv2d`` of a model for its FA counterpart, holding
  the same Parameters;
- `mlp_from_params` / `params_from_mlp` / `mlp_gradients` cross to and from `pyfa.network`'s numpy form.

Importing it registers `SAFE_GLOBALS` with ``torch.serialization.add_safe_globals``, so that
``torch.load`` reads a whole saved pyfa model with its default ``weights_only=True``.
"""

import torch as _torch

from pyfa.torch.dfa import DFASequential
from pyfa.torch.feedback import MODES, brsf_noise, feedback_matrix
from pyfa.torch.functional import Conv2dFAFunction, FALinearFunction, conv2d_fa, fa_linear
from pyfa.torch.modules import Conv2dFA, LinearFA, convert
from pyfa.torch.network import (
    ACTIVATION_MODULES,
    fa_layers,
    mlp_from_params,
    mlp_gradients,
    params_from_mlp,
)

#: What ``torch.load(path)`` (``weights_only=True``, torch's default) needs to read a whole saved
#: pyfa model: the FA layers and the containers, activations and pooling `mlp_from_params` and
#: `cnn_from_params` build.
SAFE_GLOBALS = [LinearFA, Conv2dFA, DFASequential, _torch.nn.Sequential, _torch.nn.Identity,
                _torch.nn.Flatten, _torch.nn.AvgPool2d, _torch.nn.MaxPool2d, *ACTIVATION_MODULES.values()]
_torch.serialization.add_safe_globals(SAFE_GLOBALS)

__all__ = [
    "MODES", "FALinearFunction", "Conv2dFAFunction", "fa_linear", "conv2d_fa", "feedback_matrix",
    "brsf_noise", "LinearFA", "Conv2dFA", "DFASequential", "convert",
    "mlp_from_params", "params_from_mlp", "mlp_gradients", "fa_layers", "SAFE_GLOBALS",
]
