"""Alignment metrics and accuracy, on backend-neutral numpy networks (any backend's weights).

A network here is what the numpy oracle takes: a list of `DenseParams` (an MLP), or a CNN spec of
`pyfa.reference.ConvParams`, `Pool2d`, `Flatten` and `DenseParams` (e.g. LeNet-5 read back from
torch by `pyfa.train.models.spec_from_torch`). Every metric is reported per *parametrised* layer
(conv or dense, input side first); pooling and flatten have none.

FA's signature result (Lillicrap et al. 2016): although B is fixed and random, training makes the
forward weights *align* with it, so the error signal FA sends down becomes a useful descent
direction. Three numbers measure it, per layer (angles in degrees: 0° = same direction, 90° =
unrelated, 180° = opposite):

- `weight_feedback_angles`: between vec(W) and vec(B), B the matrix the mode sends the error
  through (`pyfa.reference.feedback_matrix`: for ``fa`` and ``kp`` the feedback matrix, which kp
  trains). Starts near 90° for FA (W and B drawn independently) and falls as W aligns with B; 0° for
  ``bp`` (B = W); falls towards 0° in kp as B learns.
- `feedback_norm_ratios`: ‖B‖ / ‖W‖ (Frobenius norms) of the same pair: how loud the feedback path
  is compared with backprop's.
- `update_angles`: between the mode's weight gradient and the true (backprop) weight gradient on
  the same batch, both from the numpy oracle (`pyfa.reference.chain_gradients` for an MLP,
  `cnn_gradients` for a CNN spec): the "shadow BP pass". The top layer gets the true gradient under
  every mode (0°); the angle grows towards the input. Under 90° means the mode's update still
  descends the loss. These are the raw gradients, before the optimiser (Adam's per-weight scaling
  would change the step's direction the same way for both).

**DFA** (network level, dense chains): hidden layer l's feedback matrix B_l is (C, h_l), C the
output width: it sends the *output* error straight to layer l, where backprop would send it through
every layer above. Its W–B pair is therefore (B_l, P_l) with P_l = W_L ⋯ W_{l+1}, the product of the
forward weights from layer l's output to the network's output (C, h_l): the matrix backprop's error
path would use if the activations above were linear. The angle between them is how well the direct
feedback agrees with the forward path (Nøkland 2016 reports the same alignment), and ‖B_l‖ / ‖P_l‖
compares their scales. The top layer gets its true gradient and uses no feedback matrix: NaN for
both (no such pair). Its update angle is 0°, like every mode's. In a CNN (LeNet in mode dfa) the
forward path from a hidden layer to the output runs through pooling and convolutions, no single
matrix: the W–B angle and norm ratio are NaN for every layer, and the update angles (which need
no such pair) are what tells how DFA's updates relate to backprop's.
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


def norm_ratio(b: np.ndarray, w: np.ndarray) -> float:
    """‖b‖ / ‖w‖ (Frobenius norms, float64); NaN if ‖w‖ is 0."""
    nw = np.linalg.norm(np.asarray(w, dtype=np.float64))
    return float(np.linalg.norm(np.asarray(b, dtype=np.float64)) / nw) if nw else float("nan")


def parametrised(layers: list) -> list:
    """The conv and dense layers of a network (those with a weight), in order."""
    return [p for p in layers if hasattr(p, "weight")]


def weight_feedback_angle(
    p, mode: str = "fa", rng: np.random.Generator | None = None
) -> float:
    """Angle (degrees) between vec(W) and vec(B_mode) of one dense or conv layer.

    ``mode="fa"`` (or ``"kp"``): B is the layer's feedback matrix. ``"bp"`` gives 0. ``"brsf"`` draws
    its random magnitudes from `rng` (default: a fixed Generator(0), so the metric is reproducible).
    ``"dfa"`` is a network-level rule: use `weight_feedback_angles` on the whole network.
    """
    if mode in reference.NETWORK_MODES:
        raise ValueError(f"mode {mode!r} is network-level: its feedback of layer l depends on the "
                         "layers above; use weight_feedback_angles(layers, mode)")
    if mode == "brsf" and rng is None:
        rng = np.random.default_rng(0)
    return angle(p.weight, reference.feedback_matrix(mode, p.weight, p.feedback, rng))


def feedback_pairs(layers: list, mode: str = "fa", rng: np.random.Generator | None = None
                   ) -> list[tuple[np.ndarray, np.ndarray] | None]:
    """Per parametrised layer, (B, F): the matrix the mode sends the error through, and its
    forward counterpart (W for a layer mode; P_l = W_L ⋯ W_{l+1} for a DFA hidden layer, see the
    module docstring), or None where the layer uses no feedback (DFA's top layer).

    ``brsf`` draws its random magnitudes from `rng`, default a fixed Generator(0).
    """
    params = parametrised(layers)
    if mode == "dfa":
        return _dfa_pairs(layers)
    if mode == "brsf" and rng is None:
        rng = np.random.default_rng(0)
    return [(reference.feedback_matrix(mode, p.weight, p.feedback, rng), p.weight) for p in params]


def _dfa_pairs(layers: list) -> list[tuple[np.ndarray, np.ndarray] | None]:
    if not all(isinstance(p, DenseParams) for p in layers):
        return [None] * len(parametrised(layers))  # a CNN's forward path is no single matrix
    reference.check_dfa_network(layers)
    pairs: list = [None] * len(layers)
    path = np.eye(layers[-1].out_features)  # W_L ⋯ W_{l+1}, built from the top down
    for i in range(len(layers) - 1, 0, -1):
        path = path @ layers[i].weight.astype(np.float64)
        pairs[i - 1] = (layers[i - 1].direct_feedback, path)
    return pairs


def weight_feedback_angles(
    layers: list, mode: str = "fa", rng: np.random.Generator | None = None
) -> list[float]:
    """`weight_feedback_angle` of every parametrised layer, input side first; for ``dfa`` the angle
    between B_l and P_l (module docstring), NaN on the top layer."""
    return [float("nan") if pair is None else angle(pair[1], pair[0])
            for pair in feedback_pairs(layers, mode, rng)]


def feedback_norm_ratios(
    layers: list, mode: str = "fa", rng: np.random.Generator | None = None
) -> list[float]:
    """‖B‖ / ‖W‖ of every parametrised layer (‖B_l‖ / ‖P_l‖ for ``dfa``, NaN on its top layer).

    1 for ``bp``; about 1 for ``fa`` at the start (W and B drawn from the same distribution).
    """
    return [float("nan") if pair is None else norm_ratio(pair[0], pair[1])
            for pair in feedback_pairs(layers, mode, rng)]


def update_angles(
    layers: list,
    x: np.ndarray,
    y: np.ndarray,
    mode: str = "fa",
    rng: np.random.Generator | None = None,
    *,
    loss: str = "mse",
) -> list[float]:
    """Per parametrised layer, the angle (degrees) between the mode's and backprop's weight gradient
    on (x, y): the mode's update against a shadow backprop pass on the same weights and batch.

    Both gradients come from the numpy oracle (`pyfa.reference.chain_gradients` for a list of
    `DenseParams`, `cnn_gradients` for a CNN spec, whose `x` is (N, C, H, W)) with `loss` (``mse``
    or ``ce``), so the numbers do not depend on the backend that trained `layers`. Weight gradients
    only (not biases). The last layer's angle is 0 for every mode; NaN where a gradient is exactly
    zero. Cost: two forward and backward passes of the oracle on (x, y).
    """
    x = np.asarray(x)
    y = np.asarray(y, dtype=x.dtype)
    if mode == "brsf" and rng is None:
        rng = np.random.default_rng(0)
    dense = all(isinstance(p, DenseParams) for p in layers)
    gradients = reference.chain_gradients if dense else reference.cnn_gradients
    g_mode = gradients(layers, x, y, mode=mode, rng=rng, loss=loss)
    g_bp = gradients(layers, x, y, mode="bp", loss=loss)
    pairs = [(gm, gb) for gm, gb in zip(g_mode.layers, g_bp.layers, strict=True) if "weight" in gb]
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


__all__ = ["angle", "norm_ratio", "parametrised", "weight_feedback_angle", "weight_feedback_angles",
           "feedback_pairs", "feedback_norm_ratios", "update_angles", "accuracy"]
