"""The Discourse post's DenseFA layer, run in Julia twice: as posted (bug) and fixed.

``forum_bug.jl`` is the post's layer with its rule written ``function rrule(...)`` after ``using
ChainRulesCore``: a new function Zygote never calls, so the gradients are plain backprop.
``forum_fix.jl`` differs only in that line (``function ChainRulesCore.rrule(...)``, with its
arguments typed ``AbstractMatrix``) and the comments saying so: FA gradients.
Each file is included into a fresh module (``juliacall.newmodule``) and given the same weights,
feedback matrices and data from numpy, so both can be compared with the numpy oracle
(`pyfa.reference.chain_gradients` in modes "fa" and "bp").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pyfa.network import DenseParams, Gradients, check_input, check_network, init_mlp

HERE = Path(__file__).resolve().parent
SNIPPETS = {"bug": HERE / "forum_bug.jl", "fix": HERE / "forum_fix.jl"}
#: The post's network, Chain(DenseFA(50, 60), DenseFA(60, 40), DenseFA(40, 2)), and its batch.
POST_SIZES = (50, 60, 40, 2)
POST_BATCH = 64


def post_problem(seed: int = 0) -> tuple[list[DenseParams], np.ndarray, np.ndarray]:
    """The post's problem, seeded: no biases, no activations (its layer had neither),
    Glorot-uniform weights and feedback, x (64, 50) and y (64, 2) uniform on [0, 1) like the
    post's ``rand(Float32, ...)``."""
    layers = init_mlp(POST_SIZES, activation="identity", out_activation="identity", seed=seed,
                      dtype=np.float32, bias=False)
    rng = np.random.default_rng([seed, 1])
    x = rng.random((POST_BATCH, POST_SIZES[0]), dtype=np.float32)
    y = rng.random((POST_BATCH, POST_SIZES[-1]), dtype=np.float32)
    return layers, x, y


def run_forum(
    layers: list[DenseParams] | None = None,
    x: np.ndarray | None = None,
    y: np.ndarray | None = None,
    *,
    seed: int = 0,
) -> dict:
    """Gradients of ``mse(chain(x), y)`` from both snippets, in Float32.

    Without arguments the problem is `post_problem(seed)`; otherwise `layers`, `x` (batch, in) and
    `y` (batch, out) (any activations of `pyfa.network.ACTIVATIONS`, biases optional). Returns
    ``{"bug": Gradients, "fix": Gradients, "layers": ..., "x": ..., "y": ...}``; each Gradients'
    ``meta["rrule_calls"]`` counts how often the snippet's rule ran (0 for the bug: never seen).
    Raises JuliaUnavailableError without Julia.
    """
    from pyfa.julia import load

    if layers is None:
        if x is not None or y is not None:
            raise ValueError("give layers, x and y together, or none of them")
        layers, x, y = post_problem(seed)
    check_network(layers)
    check_input(layers, x)
    want = (x.shape[0], layers[-1].out_features)
    if not isinstance(y, np.ndarray) or y.shape != want:
        got = getattr(y, "shape", None)
        raise ValueError(f"target y has shape {got}; the network gives {want}")

    bridge = load().PyFABridge  # starts Julia (or raises) before juliacall is imported here
    import juliacall

    f32 = [p.astype(np.float32) for p in layers]
    xs = np.ascontiguousarray(x, dtype=np.float32)
    ys = np.ascontiguousarray(y, dtype=np.float32)
    flat = [a for p in f32 for a in (p.weight, p.feedback, p.bias)]
    activations = ",".join(p.activation for p in f32)
    out: dict = {"layers": layers, "x": x, "y": y}
    for name, path in SNIPPETS.items():
        module = juliacall.newmodule(f"PyFAForum_{name}")
        module.include(str(path))
        loss, ws, bs, gx, calls = bridge.forum_gradients(
            module.DenseFA, module.RRULE_CALLS, xs.T, ys.T, activations, *flat
        )
        grads = []
        for p, w, b in zip(f32, ws, bs, strict=True):
            g = {"weight": _copy(w, p.weight)}
            if p.bias is not None:
                g["bias"] = _copy(b, p.bias)
            grads.append(g)
        out[name] = Gradients(
            loss=float(loss),
            layers=grads,
            input=np.array(np.asarray(gx).T, dtype=np.float32, order="C", copy=True),
            meta={"backend": f"julia forum {name}", "snippet": path.name,
                  "rrule_calls": int(calls)},
        )
    return out


def _copy(a, like: np.ndarray) -> np.ndarray:
    """A C-order numpy copy of a Julia gradient (zeros where Zygote gave `nothing`)."""
    if a is None:
        return np.zeros_like(like)
    return np.array(np.asarray(a), dtype=np.float32, order="C", copy=True)
