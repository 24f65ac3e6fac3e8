"""A chain of dense layers: forward, and loss + gradients in every mode (the layer modes and DFA)."""

from __future__ import annotations

import numpy as np

from pyfa.network import DenseParams, Gradients, check_input, check_network
from pyfa.reference.activations import activation_derivative
from pyfa.reference.dense import dense_backward, dense_forward
from pyfa.reference.dfa import dfa_gradients
from pyfa.reference.feedback import check_mode
from pyfa.reference.losses import check_target, loss_and_grad


def chain_forward(layers: list[DenseParams], x: np.ndarray) -> np.ndarray:
    """The network's output for x of shape (batch, in)."""
    for p in layers:
        x = dense_forward(p, x)[1]
    return x


def chain_gradients(
    layers: list[DenseParams],
    x: np.ndarray,
    y: np.ndarray,
    mode: str = "fa",
    rng: np.random.Generator | None = None,
    *,
    loss: str = "mse",
) -> Gradients:
    """Loss and gradients of loss(chain(x), y) with every layer sending its error back through B.

    ``mode="bp"`` gives the true gradient; any other layer mode changes only what reaches each
    layer's input (and so every layer below the top one, and dL/dx). ``kp`` is ``fa`` plus a
    ``"feedback"`` gradient equal to the weight's in every layer. ``dfa`` is the network-level rule of
    `dfa_gradients`. ``loss`` is ``"mse"`` (the default) or ``"ce"`` (softmax cross-entropy on the
    output taken as logits; see `pyfa.reference.losses`). ``rng`` is used by ``brsf`` only.
    """
    check_network(layers)
    check_input(layers, x)
    check_mode(mode)
    check_target(loss, y, (x.shape[0], layers[-1].out_features))
    if mode == "dfa":
        return dfa_gradients(layers, x, y, loss=loss)
    inputs, pre = [], []
    h = x
    for p in layers:
        inputs.append(h)
        z, h = dense_forward(p, h)
        pre.append(z)
    value, g = loss_and_grad(loss, h, y)
    grads: list[dict[str, np.ndarray]] = [{} for _ in layers]
    for i in reversed(range(len(layers))):
        p = layers[i]
        delta = g * activation_derivative(p.activation, pre[i])
        grads[i], g = dense_backward(p, inputs[i], delta, mode, rng)
    return Gradients(
        loss=value, layers=grads, input=g, meta={"backend": "reference", "mode": mode, "loss": loss}
    )
