"""Parameterless CNN layers: 2-d pooling (average or max) and flatten, forward and backward.

Pooling has no padding, no dilation and no ceil mode: with kernel k and stride s (default k),
H_out = ⌊(H − k_h) / s_h⌋ + 1 (W_out likewise), and window (i, j) covers
x[n, c, i·s_h + u, j·s_w + v] for u < k_h, v < k_w::

    avg:  y[n,c,i,j] = (1 / (k_h k_w)) Σ_{u,v} x[n,c,i·s_h+u, j·s_w+v]
          ∂L/∂x[n,c,i·s_h+u, j·s_w+v] += ∂L/∂y[n,c,i,j] / (k_h k_w)
    max:  y[n,c,i,j] = max_{u,v} x[n,c,i·s_h+u, j·s_w+v]
          ∂L/∂x at the window's arg-max += ∂L/∂y[n,c,i,j]

Overlapping windows (s < k) add up. Max-pool ties: the gradient goes to the FIRST maximal element
of the window in row-major (u, v) order (numpy's argmax; PyTorch's CPU kernel does the same). Ties
are common after relu (several zeros in one window), and other libraries may break them otherwise,
so a cross-check between backends should use average pooling (or inputs without ties).

Flatten: (N, C, H, W) -> (N, C·H·W) in C order, feature index (c·H + h)·W + w, as torch.flatten on
NCHW. (Flux is WHCN: a bridge permutes to NCHW before flattening to keep this order.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pyfa.reference.conv import Pair, pair

POOL_KINDS = ("avg", "max")


@dataclass(frozen=True)
class Pool2d:
    """A pooling layer: ``kind`` "avg" or "max", ``kernel_size`` and ``stride`` (default: the kernel)."""

    kind: str
    kernel_size: int | Pair
    stride: int | Pair | None = None

    def __post_init__(self) -> None:
        if self.kind not in POOL_KINDS:
            raise ValueError(f"unknown pooling {self.kind!r}; expected one of {POOL_KINDS}")
        k = pair(self.kernel_size, "kernel_size", 1)
        object.__setattr__(self, "kernel_size", k)
        object.__setattr__(self, "stride", k if self.stride is None else pair(self.stride, "stride", 1))

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, int, int]:
        """(C, H_out, W_out) for an input of shape (C, H, W) or (N, C, H, W)."""
        c, h, w = input_shape[-3:]
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        if h < kh or w < kw:
            raise ValueError(f"pool window {self.kernel_size} is larger than the input {(h, w)}")
        return int(c), (h - kh) // sh + 1, (w - kw) // sw + 1


@dataclass(frozen=True)
class Flatten:
    """(N, C, H, W) -> (N, C·H·W), C order."""

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int]:
        return (int(np.prod(input_shape[-3:], dtype=np.int64)),)


def _windows(x: np.ndarray, spec: Pool2d) -> tuple[np.ndarray, tuple[int, int]]:
    """(N, C, H_out, W_out, k_h·k_w) array of every window's elements in row-major (u, v) order."""
    _, h_out, w_out = spec.output_shape(x.shape)
    (kh, kw), (sh, sw) = spec.kernel_size, spec.stride
    taps = [
        x[:, :, u : u + sh * (h_out - 1) + 1 : sh, v : v + sw * (w_out - 1) + 1 : sw]
        for u in range(kh)
        for v in range(kw)
    ]
    return np.stack(taps, axis=-1), (h_out, w_out)


def pool_forward(spec: Pool2d, x: np.ndarray) -> np.ndarray:
    """Average or max over each window (module docstring)."""
    _check_pool_input(spec, x)
    win, _ = _windows(x, spec)
    return win.mean(axis=-1) if spec.kind == "avg" else win.max(axis=-1)


def pool_backward(spec: Pool2d, x: np.ndarray, grad: np.ndarray) -> np.ndarray:
    """∂L/∂x from the pooled output's gradient ``grad``; max ties go to the first maximum (row-major)."""
    _check_pool_input(spec, x)
    win, (h_out, w_out) = _windows(x, spec)
    if grad.shape != win.shape[:-1]:
        raise ValueError(
            f"pool backward: gradient has shape {grad.shape}, the pooled output {win.shape[:-1]}"
        )
    (kh, kw), (sh, sw) = spec.kernel_size, spec.stride
    if spec.kind == "avg":
        share = np.repeat((grad / (kh * kw))[..., None], kh * kw, axis=-1)
    else:
        first_max = win.argmax(axis=-1)
        share = (np.arange(kh * kw) == first_max[..., None]) * grad[..., None]
    dx = np.zeros_like(x, dtype=np.result_type(x, grad))
    for t in range(kh * kw):
        u, v = divmod(t, kw)
        dx[:, :, u : u + sh * (h_out - 1) + 1 : sh, v : v + sw * (w_out - 1) + 1 : sw] += share[..., t]
    return dx


def _check_pool_input(spec: Pool2d, x) -> None:
    if not isinstance(x, np.ndarray) or x.ndim != 4:
        raise ValueError(
            f"pooling needs a 4-d input (N, C, H, W), got {getattr(x, 'shape', type(x).__name__)}"
        )


def flatten_forward(x: np.ndarray) -> np.ndarray:
    if not isinstance(x, np.ndarray) or x.ndim != 4:
        raise ValueError(
            f"Flatten needs a 4-d input (N, C, H, W), got {getattr(x, 'shape', type(x).__name__)}"
        )
    return x.reshape(x.shape[0], -1)


def flatten_backward(x: np.ndarray, grad: np.ndarray) -> np.ndarray:
    return grad.reshape(x.shape)
