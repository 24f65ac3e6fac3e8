"""The backend-neutral description of an FA network: numpy parameters, seeded initialisation, gradients.

Every backend (the numpy oracle, PyTorch, Julia) builds its model from a list of `DenseParams` and
reports its gradients as a `Gradients`, so that the cross-check compares like with like.

Conventions (see docs/conventions.md): a dense layer computes ``y = act(x @ weight.T + bias)`` on
``x`` of shape ``(batch, in)``; ``weight`` and ``feedback`` both have shape ``(out, in)``; the FA
input-gradient is ``delta @ feedback`` where backprop would use ``delta @ weight``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

ACTIVATIONS = ("identity", "relu", "tanh", "sigmoid")
#: The hidden activation when none is named: `init_mlp`'s, `pyfa.train.train`'s and ``pyfa train``'s.
DEFAULT_ACTIVATION = "relu"
#: Layer modes shared by every backend (the oracle, PyTorch, Julia): they differ in the matrix the
#: input-gradient goes through, and in kp (Kolen-Pollack) that matrix is trained too.
MODES = ("fa", "bp", "usf", "brsf", "frsf", "kp")
#: Network-level modes: dfa (direct feedback alignment) sends the output error to every hidden layer
#: through its own matrix; it is a rule of the whole network, not of one layer.
NETWORK_MODES = ("dfa",)
#: Every rule a network can be trained with.
ALL_MODES = MODES + NETWORK_MODES
FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


@dataclass
class DenseParams:
    """One dense FA layer as plain numpy arrays.

    ``weight`` and ``feedback`` have shape ``(out, in)``; ``bias`` has shape ``(out,)`` or is None.

    ``direct_feedback`` is used by direct feedback alignment (DFA) only: on a hidden layer of a DFA
    network it is the fixed matrix ``B_l`` of shape ``(C, out)``, ``C`` the network's output width,
    through which the output error ``e`` (batch, C) reaches this layer: ``δ_l = (e @ B_l) ⊙ act'(z_l)``.
    It is None on the top layer and in every non-DFA network (see `init_direct_feedback`).
    """

    weight: np.ndarray
    feedback: np.ndarray
    bias: np.ndarray | None
    activation: str = "identity"
    direct_feedback: np.ndarray | None = None

    def __post_init__(self) -> None:
        check_layer(self)

    @property
    def in_features(self) -> int:
        return int(self.weight.shape[1])

    @property
    def out_features(self) -> int:
        return int(self.weight.shape[0])

    def copy(self) -> DenseParams:
        return DenseParams(
            self.weight.copy(),
            self.feedback.copy(),
            None if self.bias is None else self.bias.copy(),
            self.activation,
            None if self.direct_feedback is None else self.direct_feedback.copy(),
        )

    def astype(self, dtype) -> DenseParams:
        dt = np.dtype(dtype)
        return DenseParams(
            self.weight.astype(dt),
            self.feedback.astype(dt),
            None if self.bias is None else self.bias.astype(dt),
            self.activation,
            None if self.direct_feedback is None else self.direct_feedback.astype(dt),
        )


def check_layer(p: DenseParams, index: int | None = None) -> None:
    """Raise a ValueError/TypeError naming the layer if `p` breaks the conventions."""
    name = "layer" if index is None else f"layer {index}"
    if p.activation not in ACTIVATIONS:
        raise ValueError(f"{name}: unknown activation {p.activation!r}; expected one of {ACTIVATIONS}")
    for attr in ("weight", "feedback"):
        a = getattr(p, attr)
        if not isinstance(a, np.ndarray) or a.ndim != 2:
            raise ValueError(f"{name}: {attr} must be a 2-d numpy array (out, in), got {_desc(a)}")
        if a.dtype not in FLOAT_DTYPES:
            raise TypeError(f"{name}: {attr} must be float32 or float64, got dtype {a.dtype}")
    if p.feedback.shape != p.weight.shape:
        raise ValueError(
            f"{name}: feedback must have the weight's shape (out, in) = {p.weight.shape}, "
            f"got {p.feedback.shape}"
        )
    if p.feedback.dtype != p.weight.dtype:
        raise TypeError(f"{name}: feedback dtype {p.feedback.dtype} != weight dtype {p.weight.dtype}")
    if p.bias is not None:
        if not isinstance(p.bias, np.ndarray) or p.bias.shape != (p.weight.shape[0],):
            raise ValueError(
                f"{name}: bias must have shape ({p.weight.shape[0]},), got {_desc(p.bias)}"
            )
        if p.bias.dtype != p.weight.dtype:
            raise TypeError(f"{name}: bias dtype {p.bias.dtype} != weight dtype {p.weight.dtype}")
    d = p.direct_feedback
    if d is not None:
        if not isinstance(d, np.ndarray) or d.ndim != 2 or d.shape[1] != p.weight.shape[0]:
            raise ValueError(
                f"{name}: direct_feedback must be a 2-d array (C, out) = (C, {p.weight.shape[0]}) with C the "
                f"network's output width, got {_desc(d)}"
            )
        if d.dtype != p.weight.dtype:
            raise TypeError(f"{name}: direct_feedback dtype {d.dtype} != weight dtype {p.weight.dtype}")


def check_network(layers: list[DenseParams]) -> None:
    """Check every layer and that consecutive layers' sizes chain."""
    if not layers:
        raise ValueError("a network needs at least one layer")
    for i, p in enumerate(layers):
        check_layer(p, i)
        if i and p.in_features != layers[i - 1].out_features:
            raise ValueError(
                f"layer {i}: takes {p.in_features} inputs but layer {i - 1} gives "
                f"{layers[i - 1].out_features} (weights {layers[i - 1].weight.shape} -> {p.weight.shape})"
            )
    dtypes = {p.weight.dtype for p in layers}
    if len(dtypes) > 1:
        raise TypeError(f"all layers must share one dtype, got {sorted(map(str, dtypes))}")
    _check_direct_feedback(layers)


def _check_direct_feedback(layers: list[DenseParams]) -> None:
    """DFA matrices: on every hidden layer or on none, (C, out) with C the top layer's width, none on top."""
    top = len(layers) - 1
    if layers[top].direct_feedback is not None:
        raise ValueError(
            f"layer {top}: the top layer gets its true gradient under DFA; its direct_feedback must be None, "
            f"got {_desc(layers[top].direct_feedback)}"
        )
    have = [i for i in range(top) if layers[i].direct_feedback is not None]
    if have and len(have) != top:
        lack = [i for i in range(top) if layers[i].direct_feedback is None]
        raise ValueError(
            f"direct_feedback must be set on every hidden layer or on none: layers {have} have it, "
            f"layers {lack} do not"
        )
    n_out = layers[top].out_features
    for i in have:
        c = layers[i].direct_feedback.shape[0]
        if c != n_out:
            raise ValueError(
                f"layer {i}: direct_feedback has shape {layers[i].direct_feedback.shape} but must be "
                f"(C, out) = ({n_out}, {layers[i].out_features}): the network gives {n_out} outputs"
            )


def check_input(layers: list[DenseParams], x: np.ndarray, what: str = "x") -> None:
    if not isinstance(x, np.ndarray) or x.ndim != 2:
        raise ValueError(f"{what} must be a 2-d array (batch, in), got {_desc(x)}")
    if x.shape[1] != layers[0].in_features:
        raise ValueError(
            f"layer 0: {what} has {x.shape[1]} features (shape {x.shape}) but the layer takes "
            f"{layers[0].in_features} (weight {layers[0].weight.shape})"
        )


def glorot_std(fan_in: int, fan_out: int) -> float:
    """Standard deviation of Glorot/Xavier initialisation: sqrt(2 / (fan_in + fan_out))."""
    return float(np.sqrt(2.0 / (fan_in + fan_out)))


def init_mlp(
    sizes: list[int] | tuple[int, ...],
    activation: str = DEFAULT_ACTIVATION,
    out_activation: str = "identity",
    *,
    seed: int = 0,
    dtype=np.float32,
    bias: bool = True,
    direct_feedback: bool = False,
) -> list[DenseParams]:
    """Seeded Glorot-uniform weights and feedback for an MLP with layer sizes ``sizes``.

    Hidden layers use `activation` (default `DEFAULT_ACTIVATION`, relu, as in `pyfa.train.train`, so
    ``init_mlp(sizes, seed=s)`` is the network ``train(seed=s)`` starts from), the last layer
    `out_activation`.

    ``weight`` and ``feedback`` are drawn independently from U(-a, a), a = sqrt(6 / (in + out));
    biases start at zero. The same seed gives the same arrays on every platform (numpy's PCG64), and
    every backend built from them starts from the same weights AND the same feedback matrices.
    ``direct_feedback=True`` adds the DFA matrices of `init_direct_feedback` (same seed, a separate
    stream: weights and feedback are the same arrays as without it).
    """
    sizes = [int(s) for s in sizes]
    if len(sizes) < 2 or any(s < 1 for s in sizes):
        raise ValueError(f"sizes must list at least input and output width, all >= 1; got {sizes}")
    rng = np.random.default_rng(seed)
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        a = np.sqrt(6.0 / (n_in + n_out))
        w = rng.uniform(-a, a, size=(n_out, n_in)).astype(dtype)
        b = rng.uniform(-a, a, size=(n_out, n_in)).astype(dtype)
        act = out_activation if i == len(sizes) - 2 else activation
        layers.append(DenseParams(w, b, np.zeros(n_out, dtype=dtype) if bias else None, act))
    if direct_feedback:
        layers = init_direct_feedback(layers, seed=seed)
    return layers


#: Second entropy word of the DFA matrices' seed: ``default_rng([seed, DFA_STREAM])`` is a stream
#: independent of ``default_rng(seed)``, which draws the weights and feedback.
DFA_STREAM = 0xDFA


def init_direct_feedback(layers: list[DenseParams], *, seed: int = 0) -> list[DenseParams]:
    """Copies of ``layers`` with a seeded DFA matrix ``B_l`` on each hidden layer (none on the top).

    ``B_l`` has shape ``(C, h_l)``, ``C`` the top layer's output width and ``h_l`` layer l's, and is
    drawn, layer by layer from the bottom, from Glorot uniform U(-a, a), a = sqrt(6 / (C + h_l)), with
    ``numpy.random.default_rng([seed, DFA_STREAM])``: a stream of its own, so adding DFA matrices
    changes no weight or feedback matrix drawn by `init_mlp` with the same seed.

    The scale is the Glorot scale of a layer from h_l to C, the same distribution as the feedback of
    such a layer under FA (and BioTorch's DFA matrices, xavier-uniform): a two-layer DFA network then
    has the same statistics as the FA network, for which it is the same rule (docs/conventions.md).
    Existing DFA matrices are replaced; ``layers`` is left unchanged.
    """
    check_network(layers)
    rng = np.random.default_rng([seed, DFA_STREAM])
    n_out = layers[-1].out_features
    out = []
    for i, p in enumerate(layers):
        q = p.copy()
        if i < len(layers) - 1:
            a = np.sqrt(6.0 / (n_out + p.out_features))
            q.direct_feedback = rng.uniform(-a, a, size=(n_out, p.out_features)).astype(p.weight.dtype)
        else:
            q.direct_feedback = None
        out.append(q)
    return out


@dataclass
class Gradients:
    """What one backward pass gives: the loss, per-layer parameter gradients, and dL/dx.

    ``layers[i]`` maps ``"weight"`` (out, in) and ``"bias"`` (out,) to arrays (bias absent when the
    layer has none); in mode ``kp`` also ``"feedback"`` (= the weight's gradient, Kolen-Pollack), and
    a layer without parameters (pooling, flatten in `pyfa.reference.cnn_gradients`) maps nothing.
    ``input`` is dL/dx with x's shape (batch, in): with FA it is computed through the first layer's
    feedback matrix, so it is where FA and BP differ first.
    """

    loss: float
    layers: list[dict[str, np.ndarray]]
    input: np.ndarray
    meta: dict = field(default_factory=dict)


def _desc(a) -> str:
    if isinstance(a, np.ndarray):
        return f"array of shape {a.shape} dtype {a.dtype}"
    return type(a).__name__
