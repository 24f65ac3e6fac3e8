"""The native PyTorch port of Feedback Alignment.

- `fa_linear` (functional) and `LinearFA` (module), the FA counterparts of
  ``torch.nn.functional.linear`` and ``torch.nn.Linear``;
- `convert` swaps every ``nn.Linear`` of a model for a ``LinearFA`` with the same weights;
- `mlp_from_params` / `params_from_mlp` / `mlp_gradients` cross to and from `pyfa.network`'s numpy form.
"""

from pyfa.torch.functional import FALinearFunction, fa_linear, feedback_matrix
from pyfa.torch.modules import LinearFA, convert
from pyfa.torch.network import fa_layers, mlp_from_params, mlp_gradients, params_from_mlp

__all__ = [
    "FALinearFunction", "fa_linear", "feedback_matrix", "LinearFA", "convert",
    "mlp_from_params", "params_from_mlp", "mlp_gradients", "fa_layers",
]
