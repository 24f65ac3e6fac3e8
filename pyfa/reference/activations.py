"""Elementwise activations σ and their derivatives σ', as every backend computes them."""

from __future__ import annotations

import numpy as np


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
