"""2-d convolution layers (NCHW cross-correlation, as torch.nn.functional.conv2d) with FA's backward.

Shapes: x (N, C_in, H, W); weight W and feedback B (C_out, C_in/g, kh, kw), g = groups; bias (C_out,).
Output channel o belongs to group γ(o) = o // (C_out/g) and reads the input channels
γ(o)·C_in/g + c, c < C_in/g. Stride s, zero padding p and dilation d are (h, w) pairs; xp is x with
p zeros added on both sides of each spatial axis. With upstream δ = ∂L/∂z (N, C_out, H_out, W_out)::

    z[n,o,i,j]    = b[o] + Σ_{c,u,v} W[o,c,u,v] · xp[n, γ(o)·C_in/g + c, i·s_h + u·d_h, j·s_w + v·d_w]
    H_out         = ⌊(H + 2 p_h − d_h (kh − 1) − 1) / s_h⌋ + 1        (W_out likewise)
    ∂L/∂W[o,c,u,v] = Σ_{n,i,j} δ[n,o,i,j] · xp[n, γ(o)·C_in/g + c, i·s_h + u·d_h, j·s_w + v·d_w]   true
    ∂L/∂b[o]      = Σ_{n,i,j} δ[n,o,i,j]                                                      true
    ∂L/∂xp[n, γ·C_in/g + c, i·s_h + u·d_h, j·s_w + v·d_w]  +=  Σ_{o ∈ γ} M[o,c,u,v] · δ[n,o,i,j]
    ∂L/∂x         = ∂L/∂xp without its padding

The last two lines are the transposed convolution of δ with M, M = feedback_matrix(mode, W, B):
M = B under FA (W's shape), M = W under BP. Input rows/columns that no window reaches (when the
stride does not divide evenly) get 0. Padding is zero padding only: other padding modes (reflect,
replicate, circular) are a pad of x before a padding-0 convolution, and their backward is that pad's
adjoint, outside the layer. Everything is loops over the kh·kw kernel taps, each an einsum.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pyfa.network import ACTIVATIONS, FLOAT_DTYPES
from pyfa.reference.activations import activate
from pyfa.reference.feedback import fans, feedback_matrix

Pair = tuple[int, int]


def pair(v, name: str, minimum: int) -> Pair:
    """(v, v) for an int, (a, b) for a pair of ints; each >= minimum."""
    t = (v, v) if isinstance(v, (int, np.integer)) and not isinstance(v, bool) else v
    if (
        not isinstance(t, (tuple, list))
        or len(t) != 2
        or not all(isinstance(a, (int, np.integer)) and not isinstance(a, bool) for a in t)
    ):
        raise ValueError(f"{name} must be an int or a pair of ints, got {v!r}")
    if min(t) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {v!r}")
    return int(t[0]), int(t[1])


def conv_output_hw(hw: Pair, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair) -> Pair:
    """(H_out, W_out) = ⌊(H + 2p − d(k − 1) − 1) / s⌋ + 1 per axis; a ValueError if the kernel
    does not fit."""
    out = tuple(
        (n + 2 * p - d * (k - 1) - 1) // s + 1
        for n, k, s, p, d in zip(hw, kernel, stride, padding, dilation, strict=True)
    )
    if min(out) < 1:
        raise ValueError(
            f"the (dilated) kernel {kernel} with dilation {dilation} does not fit the input {hw} padded by "
            f"{padding}: output would be {out}"
        )
    return int(out[0]), int(out[1])


def _check_geometry(x_shape, w_shape, stride, padding, dilation, groups, what: str = "conv"):
    if len(x_shape) != 4:
        raise ValueError(f"{what}: x must be 4-d (N, C, H, W), got shape {tuple(x_shape)}")
    if len(w_shape) != 4:
        raise ValueError(
            f"{what}: weight must be 4-d (out_ch, in_ch/groups, kh, kw), got shape {tuple(w_shape)}"
        )
    if not isinstance(groups, (int, np.integer)) or isinstance(groups, bool) or groups < 1:
        raise ValueError(f"{what}: groups must be an int >= 1, got {groups!r}")
    if w_shape[0] % groups:
        raise ValueError(f"{what}: out_channels {w_shape[0]} is not divisible by groups {groups}")
    if x_shape[1] != w_shape[1] * groups:
        raise ValueError(
            f"{what}: x has {x_shape[1]} channels (shape {tuple(x_shape)}) but the weight {tuple(w_shape)} "
            f"with groups={groups} takes {w_shape[1] * groups}"
        )
    s, p, d = pair(stride, "stride", 1), pair(padding, "padding", 0), pair(dilation, "dilation", 1)
    out = conv_output_hw(tuple(x_shape[2:]), tuple(w_shape[2:]), s, p, d)
    return s, p, d, out


def _tap(a: np.ndarray, u: int, v: int, s: Pair, d: Pair, out: Pair) -> np.ndarray:
    """The view a[:, :, u·d_h + i·s_h, v·d_w + j·s_w] over all output positions (i, j), shape
    (N, C, H_out, W_out)."""
    h0, w0 = u * d[0], v * d[1]
    return a[:, :, h0 : h0 + s[0] * (out[0] - 1) + 1 : s[0], w0 : w0 + s[1] * (out[1] - 1) + 1 : s[1]]


def _pad(x: np.ndarray, p: Pair) -> np.ndarray:
    return np.pad(x, ((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])))


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1) -> np.ndarray:
    """z = the cross-correlation of x with weight, plus bias (the module docstring's first line)."""
    s, p, d, out = _check_geometry(x.shape, weight.shape, stride, padding, dilation, groups, "conv2d")
    n, o, cg, kh, kw = x.shape[0], weight.shape[0], weight.shape[1], weight.shape[2], weight.shape[3]
    xp = _pad(x, p)
    wg = weight.reshape(groups, o // groups, cg, kh, kw)
    z = np.zeros((n, groups, o // groups) + out, dtype=np.result_type(x, weight))
    for u in range(kh):
        for v in range(kw):
            patch = _tap(xp, u, v, s, d, out).reshape((n, groups, cg) + out)
            z += np.einsum("ngchw,goc->ngohw", patch, wg[:, :, :, u, v])
    z = z.reshape((n, o) + out)
    if bias is not None:
        z = z + bias.reshape(1, o, 1, 1)
    return z


def conv2d_weight_grad(x, delta, weight_shape, stride=1, padding=0, dilation=1, groups=1) -> np.ndarray:
    """∂L/∂W[o,c,u,v] = Σ_{n,i,j} δ[n,o,i,j] · xp[n, γ(o)·C_in/g + c, i·s_h + u·d_h, j·s_w + v·d_w] (true)."""
    s, p, d, out = _check_geometry(
        x.shape, weight_shape, stride, padding, dilation, groups, "conv2d_weight_grad"
    )
    n, (o, cg, kh, kw) = x.shape[0], weight_shape
    _check_delta(delta, (n, o) + out, "conv2d_weight_grad")
    xp = _pad(x, p)
    dg = delta.reshape((n, groups, o // groups) + out)
    dw = np.zeros((groups, o // groups, cg, kh, kw), dtype=np.result_type(x, delta))
    for u in range(kh):
        for v in range(kw):
            patch = _tap(xp, u, v, s, d, out).reshape((n, groups, cg) + out)
            dw[:, :, :, u, v] = np.einsum("ngohw,ngchw->goc", dg, patch)
    return dw.reshape(weight_shape)


def conv2d_input_grad(delta, matrix, input_shape, stride=1, padding=0, dilation=1, groups=1) -> np.ndarray:
    """∂L/∂x: the transposed convolution of δ with ``matrix`` (B under FA, W under BP), padding cropped."""
    s, p, d, out = _check_geometry(
        input_shape, matrix.shape, stride, padding, dilation, groups, "conv2d_input_grad"
    )
    n, c, h, w = input_shape
    o, cg, kh, kw = matrix.shape
    _check_delta(delta, (n, o) + out, "conv2d_input_grad")
    dg = delta.reshape((n, groups, o // groups) + out)
    mg = matrix.reshape(groups, o // groups, cg, kh, kw)
    dxp = np.zeros((n, c, h + 2 * p[0], w + 2 * p[1]), dtype=np.result_type(delta, matrix))
    for u in range(kh):
        for v in range(kw):
            window = _tap(dxp, u, v, s, d, out)
            window += np.einsum("ngohw,goc->ngchw", dg, mg[:, :, :, u, v]).reshape((n, c) + out)
    return np.ascontiguousarray(dxp[:, :, p[0] : p[0] + h, p[1] : p[1] + w])


def _check_delta(delta, shape, what: str) -> None:
    if np.shape(delta) != tuple(shape):
        raise ValueError(
            f"{what}: the upstream gradient has shape {np.shape(delta)}, the output {tuple(shape)}"
        )


@dataclass
class ConvParams:
    """One 2-d convolution FA layer: ``y = act(conv2d(x, weight, bias, stride, padding, dilation, groups))``.

    ``weight`` and ``feedback`` have shape (out_ch, in_ch/groups, kh, kw); ``bias`` (out_ch,) or None.
    ``stride``, ``padding`` (zero padding) and ``dilation`` are ints or (h, w) pairs, stored as pairs.
    ``direct_feedback`` (DFA only, on a hidden layer): the fixed matrix of shape
    (C, out_ch, H_out, W_out) through which the network's output error reaches this layer's output.
    """

    weight: np.ndarray
    feedback: np.ndarray
    bias: np.ndarray | None
    stride: int | Pair = 1
    padding: int | Pair = 0
    dilation: int | Pair = 1
    groups: int = 1
    activation: str = "identity"
    direct_feedback: np.ndarray | None = None

    def __post_init__(self) -> None:
        check_conv_layer(self)
        self.stride = pair(self.stride, "stride", 1)
        self.padding = pair(self.padding, "padding", 0)
        self.dilation = pair(self.dilation, "dilation", 1)

    @property
    def in_channels(self) -> int:
        return int(self.weight.shape[1] * self.groups)

    @property
    def out_channels(self) -> int:
        return int(self.weight.shape[0])

    @property
    def kernel_size(self) -> Pair:
        return int(self.weight.shape[2]), int(self.weight.shape[3])

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, int, int]:
        """(out_ch, H_out, W_out) for an input of shape (C, H, W) or (N, C, H, W)."""
        hw = tuple(input_shape[-2:])
        return (self.out_channels,) + conv_output_hw(
            hw, self.kernel_size, self.stride, self.padding, self.dilation
        )

    def _with(self, f) -> ConvParams:
        return ConvParams(
            f(self.weight),
            f(self.feedback),
            None if self.bias is None else f(self.bias),
            self.stride,
            self.padding,
            self.dilation,
            self.groups,
            self.activation,
            None if self.direct_feedback is None else f(self.direct_feedback),
        )

    def copy(self) -> ConvParams:
        return self._with(np.copy)

    def astype(self, dtype) -> ConvParams:
        dt = np.dtype(dtype)
        return self._with(lambda a: a.astype(dt))


def check_conv_layer(p: ConvParams, index: int | None = None) -> None:
    """Raise a ValueError/TypeError naming the layer if ``p`` breaks the conventions."""
    name = "conv layer" if index is None else f"layer {index} (conv)"
    if p.activation not in ACTIVATIONS:
        raise ValueError(f"{name}: unknown activation {p.activation!r}; expected one of {ACTIVATIONS}")
    for attr in ("weight", "feedback"):
        a = getattr(p, attr)
        if not isinstance(a, np.ndarray) or a.ndim != 4:
            raise ValueError(
                f"{name}: {attr} must be a 4-d numpy array (out_ch, in_ch/groups, kh, kw), got {_desc(a)}"
            )
        if a.dtype not in FLOAT_DTYPES:
            raise TypeError(f"{name}: {attr} must be float32 or float64, got dtype {a.dtype}")
    if p.feedback.shape != p.weight.shape:
        raise ValueError(
            f"{name}: feedback must have the weight's shape {p.weight.shape}, got {p.feedback.shape}"
        )
    if p.feedback.dtype != p.weight.dtype:
        raise TypeError(f"{name}: feedback dtype {p.feedback.dtype} != weight dtype {p.weight.dtype}")
    g = p.groups
    if not isinstance(g, (int, np.integer)) or isinstance(g, bool) or g < 1:
        raise ValueError(f"{name}: groups must be an int >= 1, got {g!r}")
    if p.weight.shape[0] % g:
        raise ValueError(f"{name}: out_channels {p.weight.shape[0]} is not divisible by groups {g}")
    for attr, minimum in (("stride", 1), ("padding", 0), ("dilation", 1)):
        try:
            pair(getattr(p, attr), attr, minimum)
        except ValueError as e:
            raise ValueError(f"{name}: {e}") from None
    o = p.weight.shape[0]
    if p.bias is not None:
        if not isinstance(p.bias, np.ndarray) or p.bias.shape != (o,):
            raise ValueError(f"{name}: bias must have shape ({o},), got {_desc(p.bias)}")
        if p.bias.dtype != p.weight.dtype:
            raise TypeError(f"{name}: bias dtype {p.bias.dtype} != weight dtype {p.weight.dtype}")
    d = p.direct_feedback
    if d is not None:
        if not isinstance(d, np.ndarray) or d.ndim != 4 or d.shape[1] != o:
            raise ValueError(f"{name}: direct_feedback must be 4-d (C, {o}, H_out, W_out), got {_desc(d)}")
        if d.dtype != p.weight.dtype:
            raise TypeError(f"{name}: direct_feedback dtype {d.dtype} != weight dtype {p.weight.dtype}")


def check_conv_input(p: ConvParams, x, index: int | None = None, what: str = "x") -> None:
    """Raise a ValueError/TypeError naming the layer unless x (N, C_in, H, W) fits it."""
    name = "conv layer" if index is None else f"layer {index} (conv)"
    if not isinstance(x, np.ndarray) or x.ndim != 4:
        raise ValueError(f"{name}: {what} must be a 4-d array (N, C, H, W), got {_desc(x)}")
    if x.dtype != p.weight.dtype:
        raise TypeError(f"{name}: {what} dtype {x.dtype} != weight dtype {p.weight.dtype}")
    try:
        _check_geometry(x.shape, p.weight.shape, p.stride, p.padding, p.dilation, p.groups)
    except ValueError as e:
        raise ValueError(f"{name}: {str(e).removeprefix('conv: ')} ({what} {x.shape})") from None


def conv_forward(p: ConvParams, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(z, y) with z = conv2d(x, W, b, ...) and y = act(z)."""
    check_conv_input(p, x)
    z = conv2d(x, p.weight, p.bias, p.stride, p.padding, p.dilation, p.groups)
    return z, activate(p.activation, z)


def conv_param_grads(p: ConvParams, x: np.ndarray, delta: np.ndarray, mode: str = "fa") -> dict:
    """The true ``weight`` and ``bias`` gradients for δ = ∂L/∂z; in mode ``kp`` also ``feedback`` = ∂W."""
    grads = {
        "weight": conv2d_weight_grad(x, delta, p.weight.shape, p.stride, p.padding, p.dilation, p.groups)
    }
    if p.bias is not None:
        grads["bias"] = delta.sum(axis=(0, 2, 3))
    if mode == "kp":
        grads["feedback"] = grads["weight"].copy()
    return grads


def conv_backward(
    p: ConvParams, x: np.ndarray, delta: np.ndarray, mode: str = "fa", rng: np.random.Generator | None = None
) -> tuple[dict, np.ndarray]:
    """(parameter gradients, ∂L/∂x) of one conv layer: ∂x is the transposed conv of δ with B of the mode."""
    matrix = feedback_matrix(mode, p.weight, p.feedback, rng)
    dx = conv2d_input_grad(delta, matrix, x.shape, p.stride, p.padding, p.dilation, p.groups)
    return conv_param_grads(p, x, delta, mode), dx


def init_conv(
    in_channels: int,
    out_channels: int,
    kernel_size: int | Pair,
    *,
    rng: np.random.Generator,
    stride: int | Pair = 1,
    padding: int | Pair = 0,
    dilation: int | Pair = 1,
    groups: int = 1,
    activation: str = "identity",
    bias: bool = True,
    dtype=np.float32,
) -> ConvParams:
    """A conv layer with ``weight`` then ``feedback`` drawn from ``rng``, Glorot uniform U(-a, a),
    a = sqrt(6 / (fan_in + fan_out)), fan_in = in_ch/groups·kh·kw, fan_out = out_ch·kh·kw (torch's
    ``xavier_uniform_`` fans); bias zero."""
    kh, kw = pair(kernel_size, "kernel_size", 1)
    if in_channels % groups or out_channels % groups:
        raise ValueError(
            f"in_channels {in_channels} and out_channels {out_channels} must be divisible by groups {groups}"
        )
    shape = (out_channels, in_channels // groups, kh, kw)
    fan_in, fan_out = fans(shape)
    a = np.sqrt(6.0 / (fan_in + fan_out))
    w = rng.uniform(-a, a, size=shape).astype(dtype)
    b = rng.uniform(-a, a, size=shape).astype(dtype)
    return ConvParams(
        w,
        b,
        np.zeros(out_channels, dtype=dtype) if bias else None,
        stride,
        padding,
        dilation,
        groups,
        activation,
    )


def _desc(a) -> str:
    if isinstance(a, np.ndarray):
        return f"array of shape {a.shape} dtype {a.dtype}"
    return type(a).__name__
