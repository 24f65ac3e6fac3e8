"""The modes, and the matrix B through which a layer sends its error to its input.

The same function serves dense weights (out, in) and conv weights (out_ch, in_ch/groups, kh, kw):
B always has the weight's shape.
"""

from __future__ import annotations

import numpy as np

from pyfa.network import ALL_MODES, MODES, NETWORK_MODES, glorot_std  # noqa: F401  (the oracle's too)


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight: (in, out) for (out, in); for a conv weight (O, C/g, kh, kw)
    (C/g · kh · kw, O · kh · kw), as torch.nn.init computes them."""
    receptive = int(np.prod(shape[2:], dtype=np.int64)) if len(shape) > 2 else 1
    return int(shape[1]) * receptive, int(shape[0]) * receptive


def check_mode(mode: str, allowed: tuple[str, ...] = ALL_MODES) -> None:
    if mode not in allowed:
        raise ValueError(f"unknown mode {mode!r}; expected one of {allowed}")


def feedback_matrix(
    mode: str, weight: np.ndarray, feedback: np.ndarray, rng: np.random.Generator | None = None
) -> np.ndarray:
    """The matrix B, shaped like W, through which a layer sends the error to its input.

    With s = sqrt(2 / (fan_in + fan_out)) the Glorot standard deviation of W's shape (`fans`;
    for a dense layer s = sqrt(2 / (in + out))):

    - ``fa``:   B = feedback (fixed random; Lillicrap et al. 2016)
    - ``bp``:   B = W (exact backprop)
    - ``usf``:  B = sign(W) · s (uniform sign-concordant feedback, Liao et al. 2016, scaled to the
      Glorot standard deviation so the signal keeps FA's scale)
    - ``frsf``: ``B = |R| ⊙ sign(W)``, R = feedback, fixed (Moskovitz et al. 2018)
    - ``brsf``: ``B = |R| ⊙ sign(W)``, R ~ N(0, s²) redrawn on every call (needs ``rng``)
    - ``kp``:   B = feedback, as ``fa``; B is trained (Kolen-Pollack: ∂B = ∂W, see `sgd_step`)
    """
    if mode in ("fa", "kp"):
        return feedback
    if mode == "bp":
        return weight
    if mode == "usf":
        return np.sign(weight) * np.asarray(glorot_std(*fans(weight.shape)), dtype=weight.dtype)
    if mode == "frsf":
        return np.abs(feedback) * np.sign(weight)
    if mode == "brsf":
        if rng is None:
            raise ValueError("mode 'brsf' redraws R on every backward pass: pass an rng")
        r = rng.normal(0.0, glorot_std(*fans(weight.shape)), size=weight.shape).astype(weight.dtype)
        return np.abs(r) * np.sign(weight)
    if mode in NETWORK_MODES:
        raise ValueError(f"mode {mode!r} is network-level, not a layer's: use chain_gradients/cnn_gradients")
    raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
