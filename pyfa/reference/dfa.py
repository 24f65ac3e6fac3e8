"""Direct feedback alignment (Nøkland 2016) for a chain of dense layers: a network-level rule.

With the output error e = ∂L/∂z_top (batch, C), the pre-activation error of the top layer::

    top layer:           δ_top = e                       (its true gradient)
    hidden layer l:      δ_l   = (e B_l) ⊙ act_l'(z_l)   B_l = layers[l].direct_feedback, (C, h_l), fixed
    every layer:         ∂L/∂W_l = δ_lᵀ x_l,  ∂L/∂b_l = Σ_batch δ_l   (x_l: the layer's input)
    the network's input: ∂L/∂x := δ_0 F_0              F_0 = layers[0].feedback: layer 0's own FA rule

Nothing travels from layer to layer: each hidden layer hears the output error directly. The input
gradient is defined by the ordinary FA rule at layer 0 (DFA itself sends nothing below the first
layer): it needs no extra matrix, differs from BP's, and with it a two-layer DFA network whose B_0
is the top layer's feedback is *exactly* the FA network, input gradient included (tests prove it).
"""

from __future__ import annotations

import numpy as np

from pyfa.network import DenseParams, Gradients, check_input, check_network
from pyfa.reference.activations import activation_derivative
from pyfa.reference.dense import dense_forward, dense_param_grads
from pyfa.reference.losses import check_target, loss_and_grad


def check_dfa_network(layers: list[DenseParams]) -> None:
    """Raise a ValueError unless every hidden layer carries its DFA matrix (see `init_direct_feedback`)."""
    check_network(layers)
    missing = [i for i, p in enumerate(layers[:-1]) if p.direct_feedback is None]
    if missing:
        raise ValueError(
            f"mode 'dfa' needs a direct_feedback matrix (C, out) on every hidden layer; layers {missing} "
            "have none: build the network with init_mlp(..., direct_feedback=True) or "
            "pyfa.network.init_direct_feedback(layers)"
        )


def dfa_gradients(layers: list[DenseParams], x: np.ndarray, y: np.ndarray, *, loss: str = "mse") -> Gradients:
    """Loss and DFA gradients of loss(chain(x), y); the formulas are in this module's docstring."""
    check_dfa_network(layers)
    check_input(layers, x)
    check_target(loss, y, (x.shape[0], layers[-1].out_features))
    inputs, pre = [], []
    h = x
    for p in layers:
        inputs.append(h)
        z, h = dense_forward(p, h)
        pre.append(z)
    value, g = loss_and_grad(loss, h, y)
    top = len(layers) - 1
    e = g * activation_derivative(layers[top].activation, pre[top])
    grads: list[dict[str, np.ndarray]] = [{} for _ in layers]
    deltas = {top: e}
    for i in range(top):
        deltas[i] = (e @ layers[i].direct_feedback) * activation_derivative(layers[i].activation, pre[i])
    for i, p in enumerate(layers):
        grads[i] = dense_param_grads(p, inputs[i], deltas[i])
    dx = deltas[0] @ layers[0].feedback
    return Gradients(
        loss=value, layers=grads, input=dx, meta={"backend": "reference", "mode": "dfa", "loss": loss}
    )
