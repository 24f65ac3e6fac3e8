"""Functional FA for PyTorch: `fa_linear` and the feedback matrix of each mode.

``fa_linear(x, W, B, b)`` computes ``x Wᵀ + b`` exactly like ``torch.nn.functional.linear``; only its
backward differs from ``linear``'s::

    ∂L/∂x = g B          (backprop: g W)
    ∂L/∂W = gᵀ x         (summed over every batch dimension)
    ∂L/∂b = Σ g
    ∂L/∂B = none         (B is fixed; it never receives a gradient)

with g = ∂L/∂y of shape (..., out) and B of W's shape (out, in).
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from pyfa.network import MODES


class FALinearFunction(torch.autograd.Function):
    """The autograd rule behind `fa_linear`. Saves only x and B: the backward needs nothing else.

    The backward is not differentiable: ``create_graph=True`` raises a clear error (the FA rule is
    not the derivative of anything, so there is no second derivative to give).
    """

    @staticmethod
    def forward(ctx, x, weight, feedback, bias):
        ctx.save_for_backward(x, feedback)
        ctx.has_bias = bias is not None
        return F.linear(x, weight, bias)

    @staticmethod
    def backward(ctx, grad_out):
        if torch.is_grad_enabled():  # only under create_graph=True
            raise RuntimeError(
                "fa_linear's backward is not differentiable (the FA rule is not the derivative of "
                "anything): no higher-order gradients; call backward/grad without create_graph=True"
            )
        x, feedback = ctx.saved_tensors
        need_x, need_w, _, need_b = ctx.needs_input_grad
        grad_x = grad_w = grad_b = None
        if need_x:
            grad_x = grad_out @ feedback
        if need_w or need_b:
            g2 = grad_out.reshape(-1, grad_out.shape[-1])
            if need_w:
                grad_w = g2.T @ x.reshape(-1, x.shape[-1])
            if need_b and ctx.has_bias:
                grad_b = g2.sum(0)
        return grad_x, grad_w, None, grad_b


def fa_linear(
    x: torch.Tensor, weight: torch.Tensor, feedback: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """``x Wᵀ + b`` whose input-gradient goes through ``feedback`` instead of ``weight``.

    Args:
        x: (..., in). weight, feedback: (out, in). bias: (out,) or None.

    Example:
        >>> W = torch.randn(3, 4, requires_grad=True); B = torch.randn(3, 4)
        >>> x = torch.randn(2, 4, requires_grad=True)
        >>> fa_linear(x, W, B).sum().backward()
        >>> torch.allclose(x.grad, torch.ones(2, 3) @ B)
        True
    """
    check_linear_args(x, weight, feedback, bias)
    return FALinearFunction.apply(x, weight, feedback, bias)


def check_linear_args(x, weight, feedback, bias, name: str = "fa_linear") -> None:
    """Raise a clear error, naming `name` and the shapes/dtypes, before anything is computed."""
    for label, t in (("x", x), ("weight", weight), ("feedback", feedback)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name}: {label} must be a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise TypeError(f"{name}: {label} must be a floating-point tensor, got dtype {t.dtype}")
    if weight.dim() != 2:
        raise ValueError(f"{name}: weight must be 2-d (out, in), got shape {tuple(weight.shape)}")
    if feedback.shape != weight.shape:
        raise ValueError(
            f"{name}: feedback must have the weight's shape (out, in) = {tuple(weight.shape)}, "
            f"got {tuple(feedback.shape)}"
        )
    if x.dim() < 1 or x.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"{name}: input has last dimension {x.shape[-1] if x.dim() else None} (shape "
            f"{tuple(x.shape)}) but weight {tuple(weight.shape)} takes {weight.shape[1]} features"
        )
    if bias is not None and not isinstance(bias, torch.Tensor):
        raise TypeError(f"{name}: bias must be a torch.Tensor or None, got {type(bias).__name__}")
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(
            f"{name}: bias must have shape ({weight.shape[0]},), got {tuple(bias.shape)}"
        )
    dtypes = {t.dtype for t in (x, weight, feedback) + (() if bias is None else (bias,))}
    if len(dtypes) > 1:
        raise TypeError(f"{name}: x, weight, feedback and bias must share one dtype, got {dtypes}")
    devices = {t.device for t in (x, weight, feedback) + (() if bias is None else (bias,))}
    if len(devices) > 1:
        raise ValueError(f"{name}: x, weight, feedback and bias are on different devices {devices}")


def feedback_matrix(
    mode: str,
    weight: torch.Tensor,
    feedback: torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The matrix B through which the error reaches a layer's input, for each mode.

    The same formulas as `pyfa.reference.feedback_matrix`: ``fa`` B = feedback; ``bp`` B = W;
    ``usf`` B = sign(W)·sqrt(2/(in+out)); ``frsf`` B = |feedback| ⊙ sign(W);
    ``brsf`` B = |R| ⊙ sign(W) with R ~ N(0, 2/(in+out)) drawn anew on each call.
    B is computed without autograd (detached): it never carries a gradient back to W.
    """
    if mode == "fa":
        return feedback
    if mode == "bp":
        return weight.detach()
    with torch.no_grad():
        w = weight.detach()
        out, n_in = w.shape
        if mode == "usf":
            return torch.sign(w) * math.sqrt(2.0 / (n_in + out))
        if mode == "frsf":
            return feedback.abs() * torch.sign(w)
        if mode == "brsf":
            r = torch.randn(w.shape, generator=generator, device=w.device, dtype=w.dtype)
            return r.abs_().mul_(math.sqrt(2.0 / (n_in + out))) * torch.sign(w)
    raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
