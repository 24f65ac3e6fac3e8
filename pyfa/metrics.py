"""Alignment metrics and accuracy, on backend-neutral numpy `DenseParams` (any backend's weights).

FA's signature result (Lillicrap et al. 2016): although B is fixed and random, training makes the
forward weights *align* with it, so the error signal FA sends down becomes a useful descent
direction. Two angles measure it, per layer, in degrees (0° = same direction, 90° = unrelated,
180° = opposite):

- `weight_feedback_angle`: between vec(W) and vec(B), B the matrix the mode sends the error through
  (`pyfa.reference.feedback_matrix`; for ``fa`` the fixed feedback matrix). Starts near 90° for FA
  (W and B drawn independently) and falls as W aligns with B; 0° for ``bp`` (B = W).
- `update_angles`: between the mode's weight gradient and the true (backprop) weight gradient on the
  same batch, both from the numpy oracle `pyfa.reference.chain_gradients`. The top layer gets the
  true gradient under every mode (0°); the angle grows towards the input, the first layer differing
  most.
  Under 90° means the mode's update still descends the loss.
"""

from __future__ import annotations

import numpy as np

from pyfa import reference
from pyfa.network import DenseParams


def angle(a: np.ndarray, b: np.ndarray) -> float:
    """Angle in degrees between the flattened arrays `a` and `b` (float64 arithmetic).

    NaN if either is all zeros (no direction), and a ValueError if their sizes differ.
    """
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"angle: arrays have {a.size} and {b.size} elements")
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        return float("nan")
    # Kahan's formula, 2 atan2(|â - b̂|, |â + b̂|): accurate near 0° and 180°, where arccos of the
    # cosine loses half the digits (1e-6 degrees instead of 0 for parallel vectors).
    ua, ub = a / na, b / nb
    return float(np.degrees(2 * np.arctan2(np.linalg.norm(ua - ub), np.linalg.norm(ua + ub))))


def weight_feedback_angle(
    p: DenseParams, mode: str = "fa", rng: np.random.Generator | None = None
) -> float:
    """Angle (degrees) between vec(W) and vec(B_mode) of one layer.

    ``mode="fa"``: B is the layer's feedback matrix. ``"bp"`` gives 0. ``"brsf"`` draws its random
    magnitudes from `rng` (default: a fixed Generator(0), so the metric is reproducible).
    """
    if mode == "brsf" and rng is None:
        rng = np.random.default_rng(0)
    return angle(p.weight, reference.feedback_matrix(mode, p.weight, p.feedback, rng))


def weight_feedback_angles(
    layers: list[DenseParams], mode: str = "fa", rng: np.random.Generator | None = None
) -> list[float]:
    """`weight_feedback_angle` of every layer, input layer first."""
    if mode == "brsf" and rng is None:
        rng = np.random.default_rng(0)
    return [weight_feedback_angle(p, mode, rng) for p in layers]


def update_angles(
    layers: list[DenseParams],
    x: np.ndarray,
    y: np.ndarray,
    mode: str = "fa",
    rng: np.random.Generator | None = None,
) -> list[float]:
    """Per layer, the angle (degrees) between the mode's and backprop's weight gradient on (x, y).

    Both gradients come from `pyfa.reference.chain_gradients` with the MSE loss, so the numbers do
    not depend on the backend that trained `layers`. Weight gradients only (not biases). The last
    layer's angle is 0 for every mode; NaN where a gradient is exactly zero.
    """
    x = np.asarray(x)
    y = np.asarray(y, dtype=x.dtype)
    if mode == "brsf" and rng is None:
        rng = np.random.default_rng(0)
    g_mode = reference.chain_gradients(layers, x, y, mode=mode, rng=rng)
    g_bp = reference.chain_gradients(layers, x, y, mode="bp")
    pairs = zip(g_mode.layers, g_bp.layers, strict=True)
    return [angle(gm["weight"], gb["weight"]) for gm, gb in pairs]


def accuracy(outputs: np.ndarray, targets: np.ndarray) -> float:
    """Fraction of rows whose argmax output equals the target class.

    `targets` are integer labels (n,) or one-hot rows (n, classes).
    """
    outputs = np.asarray(outputs)
    targets = np.asarray(targets)
    if outputs.ndim != 2:
        raise ValueError(f"accuracy: outputs must be (n, classes), got shape {outputs.shape}")
    labels = targets.argmax(axis=1) if targets.ndim == 2 else targets
    if labels.shape != (outputs.shape[0],):
        raise ValueError(
            f"accuracy: outputs have shape {outputs.shape} but targets have shape {targets.shape}"
        )
    return float(np.mean(outputs.argmax(axis=1) == labels))


__all__ = ["angle", "weight_feedback_angle", "weight_feedback_angles", "update_angles", "accuracy"]
