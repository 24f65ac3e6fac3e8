"""The numpy oracle: every FA-family rule written as plainly as the math.

This is the specification both backends (PyTorch, Julia) are tested against. Shapes follow the
Python side's convention: dense ``x`` is (batch, in), ``weight`` and ``feedback`` are (out, in);
conv ``x`` is (N, C, H, W), ``weight`` and ``feedback`` are (out_ch, in_ch/groups, kh, kw).

For one dense layer, with pre-activation ``z = x Wᵀ + b`` and output ``y = act(z)``, and upstream
``g = ∂L/∂y``::

    δ      = g ⊙ act'(z)          (∂L/∂z, shape (batch, out))
    ∂L/∂W  = δᵀ x                 (summed over the batch, shape (out, in))
    ∂L/∂b  = Σ_batch δ
    ∂L/∂x  = δ B                  B = feedback_matrix(mode, W, feedback); BP would use δ W

Losses (`pyfa.reference.losses`): ``mse`` (the default), L = mean((ŷ − y)²) over every element, so
``∂L/∂ŷ = 2 (ŷ − y) / ŷ.size``; ``ce``, softmax cross-entropy averaged over the batch,
``∂L/∂ŷ = (softmax(ŷ) − y) / N``.

Modes: the layer modes `MODES` (`pyfa.MODES`; ``kp``, Kolen-Pollack, reports ∂feedback = ∂weight,
trained with `sgd_step`) and the network-level `NETWORK_MODES` (``dfa``: `dfa_gradients`).
Modules: ``activations``, ``losses``, ``feedback`` (modes, B), ``dense``, ``chain`` (dense networks),
``dfa``, ``sgd``, ``conv``, ``pool`` (pooling, flatten), ``cnn`` (CNN specs).
"""

from pyfa.reference.activations import activate, activation_derivative
from pyfa.reference.chain import chain_forward, chain_gradients
from pyfa.reference.cnn import check_cnn, cnn_forward, cnn_gradients, init_small_cnn
from pyfa.reference.conv import (
    ConvParams,
    check_conv_input,
    check_conv_layer,
    conv2d,
    conv2d_input_grad,
    conv2d_weight_grad,
    conv_backward,
    conv_forward,
    conv_param_grads,
    init_conv,
)
from pyfa.reference.dense import dense_backward, dense_forward, dense_param_grads
from pyfa.reference.dfa import check_dfa_network, dfa_gradients
from pyfa.reference.feedback import ALL_MODES, MODES, NETWORK_MODES, fans, feedback_matrix
from pyfa.reference.losses import (
    LOSSES,
    check_target,
    cross_entropy,
    log_softmax,
    loss_and_grad,
    mse,
    one_hot,
    softmax,
)
from pyfa.reference.pool import (
    POOL_KINDS,
    Flatten,
    Pool2d,
    flatten_backward,
    flatten_forward,
    pool_backward,
    pool_forward,
)
from pyfa.reference.sgd import sgd_step

__all__ = [
    "ALL_MODES",
    "LOSSES",
    "MODES",
    "NETWORK_MODES",
    "POOL_KINDS",
    "ConvParams",
    "Flatten",
    "Pool2d",
    "activate",
    "activation_derivative",
    "chain_forward",
    "chain_gradients",
    "check_cnn",
    "check_conv_input",
    "check_conv_layer",
    "check_dfa_network",
    "check_target",
    "cnn_forward",
    "cnn_gradients",
    "conv2d",
    "conv2d_input_grad",
    "conv2d_weight_grad",
    "conv_backward",
    "conv_forward",
    "conv_param_grads",
    "cross_entropy",
    "dense_backward",
    "dense_forward",
    "dense_param_grads",
    "dfa_gradients",
    "fans",
    "feedback_matrix",
    "flatten_backward",
    "flatten_forward",
    "init_conv",
    "init_small_cnn",
    "log_softmax",
    "loss_and_grad",
    "mse",
    "one_hot",
    "pool_backward",
    "pool_forward",
    "sgd_step",
    "softmax",
]
