"""One dense layer, forward and backward, in the oracle's convention.

For pre-activation ``z = x Wᵀ + b``, output ``y = act(z)`` and upstream ``g = ∂L/∂y``::

    δ      = g ⊙ act'(z)          (∂L/∂z, shape (batch, out))
    ∂L/∂W  = δᵀ x                 (summed over the batch, shape (out, in))
    ∂L/∂b  = Σ_batch δ
    ∂L/∂x  = δ B                  B = feedback_matrix(mode, W, feedback); BP would use δ W
"""

from __future__ import annotations

import numpy as np

from pyfa.network import DenseParams
from pyfa.reference.activations import activate
from pyfa.reference.feedback import feedback_matrix


def dense_forward(p: DenseParams, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(z, y) with z = x Wᵀ + b and y = act(z)."""
    z = x @ p.weight.T
    if p.bias is not None:
        z = z + p.bias
    return z, activate(p.activation, z)


def dense_param_grads(p: DenseParams, x: np.ndarray, delta: np.ndarray, mode: str = "fa") -> dict:
    """The true parameter gradients for δ = ∂L/∂z: ``weight`` δᵀx, ``bias`` Σ δ (when the layer has
    one), and in mode ``kp`` ``feedback`` = the weight's gradient (a copy)."""
    grads = {"weight": delta.T @ x}
    if p.bias is not None:
        grads["bias"] = delta.sum(axis=0)
    if mode == "kp":
        grads["feedback"] = grads["weight"].copy()
    return grads


def dense_backward(
    p: DenseParams, x: np.ndarray, delta: np.ndarray, mode: str = "fa", rng: np.random.Generator | None = None
) -> tuple[dict, np.ndarray]:
    """(parameter gradients, ∂L/∂x := δ B) of one layer for δ = ∂L/∂z, its input x and the mode."""
    return dense_param_grads(p, x, delta, mode), delta @ feedback_matrix(mode, p.weight, p.feedback, rng)
