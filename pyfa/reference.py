"""The numpy oracle: FA and BP for a chain of dense layers, written as plainly as the math.

This is the specification both backends (PyTorch, Julia) are tested against. Shapes follow the
Python side's convention: ``x`` is (batch, in), ``weight`` and ``feedback`` are (out, in).

For one layer, with pre-activation ``z = x Wᵀ + b`` and output ``y = act(z)``, and upstream
``g = ∂L/∂y``::

    δ      = g ⊙ act'(z)          (∂L/∂z, shape (batch, out))
    ∂L/∂W  = δᵀ x                 (summed over the batch, shape (out, in))
    ∂L/∂b  = Σ_batch δ
    ∂L/∂x  = δ B                  B = feedback_matrix(mode, W, feedback); BP would use δ W

The loss is the mean squared error over every element, ``L = mean((ŷ - y)²)`` (Flux.mse and
torch's MSELoss with reduction="mean"), so ``∂L/∂ŷ = 2 (ŷ - y) / ŷ.size``.
"""

from __future__ import annotations

import numpy as np

from pyfa.network import MODES, DenseParams, Gradients, check_input, check_network, glorot_std


def activate(name: str, z: np.ndarray) -> np.ndarray:
    """act(z) for act in identity, relu, tanh, sigmoid."""
    if name == "identity":
        return z
    if name == "relu":
        return np.maximum(z, 0)
    if name == "tanh":
        return np.tanh(z)
    if name == "sigmoid":
        return 1 / (1 + np.exp(-z))
    raise ValueError(f"unknown activation {name!r}")


def activation_derivative(name: str, z: np.ndarray) -> np.ndarray:
    """act'(z), elementwise. relu'(0) is taken as 0, as PyTorch and Flux do."""
    if name == "identity":
        return np.ones_like(z)
    if name == "relu":
        return (z > 0).astype(z.dtype)
    if name == "tanh":
        return 1 - np.tanh(z) ** 2
    if name == "sigmoid":
        s = 1 / (1 + np.exp(-z))
        return s * (1 - s)
    raise ValueError(f"unknown activation {name!r}")


def feedback_matrix(
    mode: str, weight: np.ndarray, feedback: np.ndarray, rng: np.random.Generator | None = None
) -> np.ndarray:
    """The matrix B, shaped like W, through which a layer sends the error to its input.

    - ``fa``:   B = feedback (fixed random; Lillicrap et al. 2016)
    - ``bp``:   B = W (exact backprop)
    - ``usf``:  B = sign(W) · s, with s = sqrt(2 / (in + out)) (uniform sign-concordant feedback,
      Liao et al. 2016, scaled to the Glorot standard deviation so the signal keeps FA's scale)
    - ``frsf``: B = |R| ⊙ sign(W), R = feedback, fixed (Moskovitz et al. 2018)
    - ``brsf``: B = |R| ⊙ sign(W), R ~ N(0, s²) redrawn on every call (needs ``rng``)
    """
    if mode == "fa":
        return feedback
    if mode == "bp":
        return weight
    if mode == "usf":
        out, n_in = weight.shape
        return np.sign(weight) * np.asarray(glorot_std(n_in, out), dtype=weight.dtype)
    if mode == "frsf":
        return np.abs(feedback) * np.sign(weight)
    if mode == "brsf":
        if rng is None:
            raise ValueError("mode 'brsf' redraws R on every backward pass: pass an rng")
        out, n_in = weight.shape
        r = rng.normal(0.0, glorot_std(n_in, out), size=weight.shape).astype(weight.dtype)
        return np.abs(r) * np.sign(weight)
    raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")


def dense_forward(p: DenseParams, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(z, y) with z = x Wᵀ + b and y = act(z)."""
    z = x @ p.weight.T
    if p.bias is not None:
        z = z + p.bias
    return z, activate(p.activation, z)


def chain_forward(layers: list[DenseParams], x: np.ndarray) -> np.ndarray:
    """The network's output for x of shape (batch, in)."""
    for p in layers:
        x = dense_forward(p, x)[1]
    return x


def mse(yhat: np.ndarray, y: np.ndarray) -> float:
    """mean((ŷ - y)²) over every element."""
    return float(np.mean((yhat - y) ** 2))


def chain_gradients(
    layers: list[DenseParams],
    x: np.ndarray,
    y: np.ndarray,
    mode: str = "fa",
    rng: np.random.Generator | None = None,
) -> Gradients:
    """Loss and gradients of MSE(chain(x), y) with every layer sending its error back through B.

    ``mode="bp"`` gives the true gradient; any other mode changes only what reaches each layer's
    input (and so every layer below the top one, and dL/dx).
    """
    check_network(layers)
    check_input(layers, x)
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
    if y.shape != (x.shape[0], layers[-1].out_features):
        raise ValueError(
            f"target y has shape {y.shape}; the network gives ({x.shape[0]}, {layers[-1].out_features})"
        )
    inputs, pre = [], []
    h = x
    for p in layers:
        inputs.append(h)
        z, h = dense_forward(p, h)
        pre.append(z)
    loss = mse(h, y)
    g = 2 * (h - y) / h.size
    grads: list[dict[str, np.ndarray]] = [{} for _ in layers]
    for i in reversed(range(len(layers))):
        p = layers[i]
        delta = g * activation_derivative(p.activation, pre[i])
        grads[i]["weight"] = delta.T @ inputs[i]
        if p.bias is not None:
            grads[i]["bias"] = delta.sum(axis=0)
        g = delta @ feedback_matrix(mode, p.weight, p.feedback, rng)
    return Gradients(loss=loss, layers=grads, input=g, meta={"backend": "reference", "mode": mode})
