"""Plain SGD with decoupled weight decay, the update under which Kolen-Pollack's law is stated.

For every parametrised layer, with learning rate η and weight decay λ::

    W ← W − η (∂W + λ W)
    B ← B − η (∂B + λ B)      only when the gradients carry ``"feedback"`` (mode kp, where ∂B = ∂W)
    b ← b − η ∂b              (no decay on biases)

In mode ``kp`` ∂B = ∂W, so W − B ← (1 − ηλ)(W − B): after k steps W − B = (1 − ηλ)^k (W − B)_0 and,
for ηλ > 0, B comes to align with W (Kolen & Pollack 1994; Akrout et al. 2019). In every other mode
B has no gradient and stays as it is.
"""

from __future__ import annotations

import math

import numpy as np

from pyfa.network import Gradients

_PARAMS = ("weight", "feedback", "bias")


def sgd_step(layers: list, grads, lr: float, *, weight_decay: float = 0.0) -> list:
    """New layers after one SGD step (see the module docstring); ``layers`` is left unchanged.

    ``layers``: a list of `DenseParams`, or a CNN spec (`ConvParams`, `Pool2d`, `Flatten`,
    `DenseParams`); ``grads``: the `Gradients` of that network, or its ``.layers`` list. A layer
    whose gradient dict is empty (pooling, flatten) is returned as it is.
    """
    per_layer = grads.layers if isinstance(grads, Gradients) else grads
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
    if not (isinstance(weight_decay, (int, float)) and math.isfinite(weight_decay) and weight_decay >= 0):
        raise ValueError(f"weight_decay must be a finite number >= 0, got {weight_decay!r}")
    if len(per_layer) != len(layers):
        raise ValueError(f"gradients for {len(per_layer)} layers, the network has {len(layers)}")
    for i, (p, g) in enumerate(zip(layers, per_layer, strict=True)):
        if g and "weight" not in g:
            raise ValueError(f"layer {i}: gradients {sorted(g)} lack 'weight'")
        for k, v in g.items():
            if k not in _PARAMS or getattr(p, k, None) is None:
                raise ValueError(f"layer {i}: gradient {k!r} but the layer has no such parameter")
            if np.shape(v) != getattr(p, k).shape:
                raise ValueError(
                    f"layer {i}: {k} gradient has shape {np.shape(v)}, the {k} {getattr(p, k).shape}"
                )
    out = []
    for p, g in zip(layers, per_layer, strict=True):
        if not g:
            out.append(p)
            continue
        q = p.copy()
        q.weight = p.weight - lr * (g["weight"] + weight_decay * p.weight)
        if "feedback" in g:
            q.feedback = p.feedback - lr * (g["feedback"] + weight_decay * p.feedback)
        if "bias" in g:
            q.bias = p.bias - lr * g["bias"]
        out.append(q)
    return out
