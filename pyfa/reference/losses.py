"""The losses, their values and their gradients with respect to the network's output ŷ.

- ``mse``: L = mean((ŷ − y)²) over every element (Flux.mse, torch's ``mse_loss``), so
  ∂L/∂ŷ = 2 (ŷ − y) / size(ŷ).
- ``ce``: softmax cross-entropy averaged over the batch (torch's ``cross_entropy`` with probability
  targets, Flux's ``logitcrossentropy``): with ŷ of shape (N, C) taken as logits and targets y whose
  rows are probabilities (one-hot for class labels),
  L = −(1/N) Σ_n Σ_c y_nc log softmax(ŷ_n)_c, and ∂L/∂ŷ = (softmax(ŷ) − y) / N.
  log softmax is computed stably: log softmax(z)_c = (z_c − m) − log Σ_k exp(z_k − m), m = max_k z_k.
"""

from __future__ import annotations

import numpy as np

#: The losses every computation of the oracle accepts (``loss=`` argument).
LOSSES = ("mse", "ce")


def softmax(z: np.ndarray) -> np.ndarray:
    """softmax over the last axis, exp(z − m) / Σ exp(z − m) with m the row's maximum (no overflow)."""
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def log_softmax(z: np.ndarray) -> np.ndarray:
    """log softmax over the last axis by log-sum-exp: (z − m) − log Σ exp(z − m); finite for finite z."""
    s = z - z.max(axis=-1, keepdims=True)
    return s - np.log(np.exp(s).sum(axis=-1, keepdims=True))


def mse(yhat: np.ndarray, y: np.ndarray) -> float:
    """mean((ŷ - y)²) over every element."""
    return float(np.mean((yhat - y) ** 2))


def cross_entropy(logits: np.ndarray, y: np.ndarray) -> float:
    """−(1/N) Σ_n Σ_c y_nc log softmax(logits_n)_c for logits and probability targets of shape (N, C)."""
    return float(-np.sum(y * log_softmax(logits)) / logits.shape[0])


def one_hot(labels, num_classes: int, dtype=np.float32) -> np.ndarray:
    """(N, num_classes) targets with a 1 at each integer label, 0 elsewhere."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be a 1-d integer array, got shape {labels.shape} dtype {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}), got [{labels.min()}, {labels.max()}]")
    out = np.zeros((labels.size, num_classes), dtype=dtype)
    out[np.arange(labels.size), labels] = 1
    return out


def check_target(loss: str, y, expected_shape: tuple[int, ...]) -> None:
    """Raise a ValueError unless ``y`` is a target for ``loss`` and an output of ``expected_shape``.

    ``ce`` also needs ``y`` (N, C) with rows of non-negative numbers summing to 1 (to 1e-5).
    """
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; expected one of {LOSSES}")
    shape = getattr(y, "shape", None)
    if not isinstance(y, np.ndarray) or shape != tuple(expected_shape):
        raise ValueError(f"target y has shape {shape}; the network gives {tuple(expected_shape)}")
    if loss == "ce":
        if y.ndim != 2:
            raise ValueError(f"loss 'ce' needs 2-d targets (batch, classes), got shape {y.shape}")
        sums = y.sum(axis=1)
        bad = np.flatnonzero((np.abs(sums - 1) > 1e-5) | (y < 0).any(axis=1))
        if bad.size:
            i = int(bad[0])
            raise ValueError(
                "loss 'ce' needs probability targets: every row of y non-negative and summing to 1 "
                f"(one-hot for class labels; see one_hot); row {i} is {y[i].tolist()}"
            )


def loss_and_grad(loss: str, yhat: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """(L, ∂L/∂ŷ) for ``loss`` in `LOSSES`; see the module docstring for the formulas."""
    if loss == "mse":
        return mse(yhat, y), 2 * (yhat - y) / yhat.size
    if loss == "ce":
        return cross_entropy(yhat, y), (softmax(yhat) - y) / yhat.shape[0]
    raise ValueError(f"unknown loss {loss!r}; expected one of {LOSSES}")
