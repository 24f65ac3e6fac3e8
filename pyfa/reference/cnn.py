"""A small CNN as a list of layer specs: loss and gradients in every mode, for the cross-check.

A spec is a list of `ConvParams`, `Pool2d`, `Flatten` and `DenseParams`, applied in order to x of
shape (N, C, H, W) (or (N, features) when it starts with a dense layer), e.g. conv-relu-pool-conv-
relu-pool-flatten-dense (`init_small_cnn`). Parametrised layers follow their own rules (`conv.py`,
`dense.py`): true ∂W and ∂b, and the error sent to the input through B of the mode. Pooling and
flatten pass the error back exactly (`pool.py`).

Mode ``dfa`` (network level), with e = ∂L/∂z of the last layer (which must be conv or dense),
flattened to (N, C), C its number of output units (the classes for a dense top): every
parametrised layer l below it gets δ_l = reshape(e · B_l) ⊙ act_l'(z_l), B_l = its
``direct_feedback`` of shape (C, *z_l.shape[1:]) — (C, out) for dense, (C, out_ch, H_out, W_out) for
conv — flattened to (C, units) for the product; the top layer gets its true gradient; the input
gradient is the first parametrised layer's FA rule (δ through its ``feedback``), passed back through
any pooling/flatten before it. This is `dfa_gradients` for a chain of dense layers.
"""

from __future__ import annotations

import numpy as np

from pyfa.network import DFA_STREAM, FLOAT_DTYPES, DenseParams, Gradients, check_layer
from pyfa.reference.activations import activation_derivative
from pyfa.reference.conv import (
    ConvParams,
    check_conv_layer,
    conv_backward,
    conv_forward,
    conv_param_grads,
    init_conv,
)
from pyfa.reference.dense import dense_backward, dense_forward, dense_param_grads
from pyfa.reference.feedback import check_mode
from pyfa.reference.losses import check_target, loss_and_grad
from pyfa.reference.pool import (
    Flatten,
    Pool2d,
    flatten_backward,
    flatten_forward,
    pool_backward,
    pool_forward,
)

Layer = ConvParams | Pool2d | Flatten | DenseParams
PARAMETRISED = (ConvParams, DenseParams)


def check_cnn(layers: list, x_shape: tuple[int, ...], dtype=None) -> list[tuple[int, ...]]:
    """Each layer's output shape (without the batch) for inputs of shape ``x_shape``; a ValueError or
    TypeError naming the layer for anything that does not fit (kind, shapes, dtypes, DFA matrices)."""
    if not isinstance(layers, (list, tuple)) or not layers:
        raise ValueError("a CNN spec is a non-empty list of ConvParams, Pool2d, Flatten and DenseParams")
    shape = tuple(int(s) for s in x_shape[1:])
    shapes = []
    dtypes = {np.dtype(dtype)} if dtype is not None else set()
    for i, p in enumerate(layers):
        if isinstance(p, ConvParams):
            check_conv_layer(p, i)
            if len(shape) != 3 or shape[0] != p.in_channels:
                raise ValueError(
                    f"layer {i} (conv): takes (in_ch={p.in_channels}, H, W) inputs, gets {shape} "
                    f"(weight {p.weight.shape}, groups {p.groups})"
                )
            try:
                shape = p.output_shape(shape)
            except ValueError as e:
                raise ValueError(f"layer {i} (conv): {e}") from None
        elif isinstance(p, Pool2d):
            if len(shape) != 3:
                raise ValueError(f"layer {i} (pool): needs (C, H, W) inputs, gets {shape}")
            try:
                shape = p.output_shape(shape)
            except ValueError as e:
                raise ValueError(f"layer {i} (pool): {e}") from None
        elif isinstance(p, Flatten):
            if len(shape) != 3:
                raise ValueError(f"layer {i} (flatten): needs (C, H, W) inputs, gets {shape}")
            shape = p.output_shape(shape)
        elif isinstance(p, DenseParams):
            check_layer(p, i)
            if len(shape) != 1:
                raise ValueError(
                    f"layer {i} (dense): needs (batch, features) inputs, gets {shape}: "
                    "put a Flatten() before it"
                )
            if shape[0] != p.in_features:
                raise ValueError(
                    f"layer {i} (dense): takes {p.in_features} inputs but gets {shape[0]} "
                    f"(weight {p.weight.shape})"
                )
            shape = (p.out_features,)
        else:
            raise ValueError(
                f"layer {i}: {type(p).__name__} is not a CNN layer (ConvParams, Pool2d, Flatten, DenseParams)"
            )
        if isinstance(p, PARAMETRISED):
            dtypes.add(p.weight.dtype)
        shapes.append(shape)
    if len(dtypes) > 1:
        raise TypeError(f"the input and all layers must share one dtype, got {sorted(map(str, dtypes))}")
    _check_direct_feedback(layers, shapes)
    return shapes


def _check_direct_feedback(layers: list, shapes: list) -> None:
    params = [i for i, p in enumerate(layers) if isinstance(p, PARAMETRISED)]
    have = [i for i in params if layers[i].direct_feedback is not None]
    if not have:
        return
    top = len(layers) - 1
    if not isinstance(layers[top], PARAMETRISED):
        raise ValueError(
            f"DFA needs a conv or dense top layer (its pre-activation error is e); layer {top} is "
            f"{type(layers[top]).__name__}"
        )
    if top in have:
        raise ValueError(
            f"layer {top}: the top layer gets its true gradient under DFA; its direct_feedback must be None"
        )
    lack = [i for i in params[:-1] if i not in have]
    if lack:
        raise ValueError(
            f"direct_feedback must be set on every hidden conv/dense layer or on none: layers {have} "
            f"have it, layers {lack} do not"
        )
    n_out = int(np.prod(shapes[top]))
    for i in have:
        want = (n_out,) + shapes[i]
        if layers[i].direct_feedback.shape != want:
            raise ValueError(
                f"layer {i}: direct_feedback has shape {layers[i].direct_feedback.shape}, "
                f"needs (C, *output) = {want}"
            )


def _check_x(layers, x) -> None:
    if not isinstance(x, np.ndarray) or x.ndim < 2:
        raise ValueError(
            "x must be a numpy array (N, C, H, W) or (N, features), "
            f"got {getattr(x, 'shape', type(x).__name__)}"
        )
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"x must be float32 or float64, got dtype {x.dtype}")


def _forward(p, x):
    """(pre-activation or None, output) of one layer."""
    if isinstance(p, ConvParams):
        return conv_forward(p, x)
    if isinstance(p, DenseParams):
        return dense_forward(p, x)
    if isinstance(p, Pool2d):
        return None, pool_forward(p, x)
    return None, flatten_forward(x)


def _pass_back(p, x, g):
    """∂L/∂x of a parameterless layer."""
    return pool_backward(p, x, g) if isinstance(p, Pool2d) else flatten_backward(x, g)


def cnn_forward(layers: list, x: np.ndarray) -> np.ndarray:
    """The network's output for x."""
    _check_x(layers, x)
    check_cnn(layers, x.shape, x.dtype)
    for p in layers:
        x = _forward(p, x)[1]
    return x


def cnn_gradients(
    layers: list,
    x: np.ndarray,
    y: np.ndarray,
    mode: str = "fa",
    rng: np.random.Generator | None = None,
    *,
    loss: str = "mse",
) -> Gradients:
    """Loss and gradients of loss(cnn(x), y) for a CNN spec, in any mode of `ALL_MODES`.

    ``layers[i]`` of the result maps ``weight``, ``bias`` (and ``feedback`` in mode ``kp``) for conv
    and dense layers, nothing for pooling and flatten; ``input`` is ∂L/∂x with x's shape.
    """
    _check_x(layers, x)
    shapes = check_cnn(layers, x.shape, x.dtype)
    check_mode(mode)
    check_target(loss, y, (x.shape[0],) + shapes[-1])
    inputs, pre = [], []
    h = x
    for p in layers:
        inputs.append(h)
        z, h = _forward(p, h)
        pre.append(z)
    value, g = loss_and_grad(loss, h, y)
    grads: list[dict[str, np.ndarray]] = [{} for _ in layers]
    if mode == "dfa":
        grads, dx = _dfa_backward(layers, inputs, pre, g)
    else:
        for i in reversed(range(len(layers))):
            p = layers[i]
            if isinstance(p, PARAMETRISED):
                delta = g * activation_derivative(p.activation, pre[i])
                backward = conv_backward if isinstance(p, ConvParams) else dense_backward
                grads[i], g = backward(p, inputs[i], delta, mode, rng)
            else:
                g = _pass_back(p, inputs[i], g)
        dx = g
    return Gradients(
        loss=value, layers=grads, input=dx, meta={"backend": "reference", "mode": mode, "loss": loss}
    )


def _dfa_backward(layers, inputs, pre, g) -> tuple[list[dict], np.ndarray]:
    """(per-layer gradients, ∂L/∂x) under DFA, from the forward pass and g = ∂L/∂ŷ."""
    params = [i for i, p in enumerate(layers) if isinstance(p, PARAMETRISED)]
    top = len(layers) - 1
    if not params or params[-1] != top:
        raise ValueError(
            f"mode 'dfa' needs a conv or dense top layer; layer {top} is {type(layers[top]).__name__}"
        )
    missing = [i for i in params[:-1] if layers[i].direct_feedback is None]
    if missing:
        raise ValueError(
            "mode 'dfa' needs a direct_feedback matrix on every hidden conv/dense layer; "
            f"layers {missing} have none (see init_small_cnn(..., direct_feedback=True))"
        )
    e = g * activation_derivative(layers[top].activation, pre[top])
    e_flat = e.reshape(len(e), -1)                 # (N, C), C = the number of output units
    grads: list[dict[str, np.ndarray]] = [{} for _ in layers]
    deltas = {}
    for i in params:
        p = layers[i]
        if i == top:
            deltas[i] = e
        else:
            b = p.direct_feedback.reshape(p.direct_feedback.shape[0], -1)
            deltas[i] = (e_flat @ b).reshape(pre[i].shape) * activation_derivative(p.activation, pre[i])
        param_grads = conv_param_grads if isinstance(p, ConvParams) else dense_param_grads
        grads[i] = param_grads(p, inputs[i], deltas[i])
    first = params[0]
    backward = conv_backward if isinstance(layers[first], ConvParams) else dense_backward
    dx = backward(layers[first], inputs[first], deltas[first], "fa")[1]
    for i in reversed(range(first)):
        dx = _pass_back(layers[i], inputs[i], dx)
    return grads, dx


def init_small_cnn(
    seed: int = 0,
    *,
    input_shape: tuple[int, int, int] = (1, 12, 12),
    channels: tuple[int, int] = (4, 6),
    kernel_size: int = 3,
    classes: int = 10,
    activation: str = "relu",
    pool: str = "avg",
    dtype=np.float32,
    direct_feedback: bool = False,
) -> list:
    """Seeded conv-act-pool-conv-act-pool-flatten-dense spec (convs padded to keep H, W; pools 2×2).

    Weights then feedback, layer by layer, from ``numpy.random.default_rng(seed)``: Glorot uniform
    with torch's conv fans (`init_conv`) and dense layers as `init_mlp`; biases zero; the top layer
    is linear (logits). ``direct_feedback=True`` adds DFA matrices to the two convs from
    ``default_rng([seed, DFA_STREAM])``: U(-a, a), a = sqrt(6 / (C + units)), units = out_ch·H·W of
    the conv's output (the dense rule of `init_direct_feedback` with h_l = the number of units).
    """
    rng = np.random.default_rng(seed)
    c_in = input_shape[0]
    c1, c2 = channels
    pad = kernel_size // 2
    layers: list = [
        init_conv(c_in, c1, kernel_size, rng=rng, padding=pad, activation=activation, dtype=dtype),
        Pool2d(pool, 2),
        init_conv(c1, c2, kernel_size, rng=rng, padding=pad, activation=activation, dtype=dtype),
        Pool2d(pool, 2),
        Flatten(),
    ]
    shapes = check_cnn(layers, (1,) + tuple(input_shape))
    n_in = shapes[-1][0]
    a = np.sqrt(6.0 / (n_in + classes))
    wt = rng.uniform(-a, a, size=(classes, n_in)).astype(dtype)
    fb = rng.uniform(-a, a, size=(classes, n_in)).astype(dtype)
    layers.append(DenseParams(wt, fb, np.zeros(classes, dtype=dtype), "identity"))
    if direct_feedback:
        dfa_rng = np.random.default_rng([seed, DFA_STREAM])
        for i in (0, 2):
            units = int(np.prod(shapes[i]))
            a = np.sqrt(6.0 / (classes + units))
            layers[i].direct_feedback = dfa_rng.uniform(-a, a, size=(classes,) + shapes[i]).astype(dtype)
    return layers
