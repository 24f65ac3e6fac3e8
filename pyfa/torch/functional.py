"""Functional FA for PyTorch: `fa_linear` and `conv2d_fa`, the FA counterparts of ``F.linear``
and ``F.conv2d``.

``fa_linear(x, W, B, b)`` computes ``x Wᵀ + b`` exactly like ``torch.nn.functional.linear``; only its
backward differs from ``linear``'s::

    ∂L/∂x = g B          (backprop: g W)
    ∂L/∂W = gᵀ x         (summed over every batch dimension)
    ∂L/∂b = Σ g
    ∂L/∂B = none         (B is fixed) — or ∂W when B requires a gradient (Kolen-Pollack, mode kp)

with g = ∂L/∂y of shape (..., out) and B of W's shape (out, in). ``conv2d_fa`` is the same rule for
a 2-d convolution: ∂L/∂x is the transposed convolution of g with B (of W's shape) instead of W.

The rule keeps FA on every execution path (each is tested, and proven by ``pyfa crosscheck``):

- eager, any float dtype;
- ``torch.autocast`` (CPU bf16, CUDA fp16/bf16): the forward is ``F.linear``'s, so it runs in the
  autocast dtype like ``nn.Linear``; the backward casts B and x to the incoming gradient's dtype, and
  autograd returns each gradient in its input's dtype (fp32 parameters get fp32 gradients);
- ``torch.compile(fullgraph=True)``: the Function traces without graph breaks;
- ``torch.func`` (``grad``, ``vmap``, ``functional_call``): ``setup_context`` style with a generated
  vmap rule;
- DDP: nothing rank-specific happens inside the rule.

Higher-order gradients do not exist for FA (the rule is not the derivative of anything): a second
differentiation through the backward raises (``once_differentiable``).
"""

from __future__ import annotations

import functools

import torch
from torch.autograd.function import once_differentiable
from torch.nn import functional as F

from pyfa.torch.feedback import brsf_noise, feedback_matrix  # noqa: F401  (their home before)


class FALinearFunction(torch.autograd.Function):
    """The autograd rule behind `fa_linear`: ``F.linear`` forward, FA backward.

    Saves only x and B: the backward needs nothing else. If B requires a gradient (mode kp), it
    receives ∂W.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(x, weight, feedback, bias):
        return F.linear(x, weight, bias)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, _, feedback, bias = inputs
        ctx.save_for_backward(x, feedback)
        ctx.has_bias = bias is not None

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        x, feedback = ctx.saved_tensors
        need_x, need_w, need_fb, need_b = ctx.needs_input_grad
        dt = grad_out.dtype
        grad_x = grad_w = grad_b = None
        if need_x:
            grad_x = grad_out @ (feedback if feedback.dtype is dt else feedback.to(dt))
        if need_w or need_fb or need_b:
            g2 = grad_out if grad_out.dim() == 2 else grad_out.reshape(-1, grad_out.shape[-1])
            if need_w or need_fb:
                x2 = x if x.dim() == 2 else x.reshape(-1, x.shape[-1])
                grad_w = g2.T @ (x2 if x2.dtype is dt else x2.to(dt))
            if need_b and ctx.has_bias:
                grad_b = g2.sum(0)
        return grad_x, grad_w if need_w else None, _kp_grad(grad_w, need_w, need_fb), grad_b


def _kp_grad(grad_w, need_w, need_fb):
    """B's gradient: ∂W where B requires one (Kolen-Pollack), as a tensor of its own."""
    if not need_fb:
        return None
    return grad_w.clone() if need_w else grad_w


def fa_linear(
    x: torch.Tensor, weight: torch.Tensor, feedback: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """``x Wᵀ + b`` whose input-gradient goes through ``feedback`` instead of ``weight``.

    Args:
        x: (..., in).
        weight: (out, in).
        feedback: (out, in): the matrix the input-gradient goes through.
        bias: (out,) or None.

    Under ``torch.autocast`` the product runs in the autocast dtype, as ``F.linear`` does; outside
    it every tensor must share one dtype.

    Example:
        >>> W = torch.randn(3, 4, requires_grad=True); B = torch.randn(3, 4)
        >>> x = torch.randn(2, 4, requires_grad=True)
        >>> fa_linear(x, W, B).sum().backward()
        >>> torch.allclose(x.grad, torch.ones(2, 3) @ B)
        True
    """
    check_linear_args(x, weight, feedback, bias)
    return apply_fa_linear(x, weight, feedback, bias)


@functools.cache
def _c_apply(function):
    """The C entry point that ``Function.apply`` ends in, bound to `function` (or None)."""
    try:
        return torch._C._FunctionBase.__dict__["apply"].__get__(None, function)
    except (AttributeError, KeyError):  # another torch: the public path only
        return None


try:
    from torch._functorch.utils import unwrap_dead_wrappers as _unwrap_dead_wrappers

    _functorch_active = torch._C._are_functorch_transforms_active
except (AttributeError, ImportError):
    _unwrap_dead_wrappers = _functorch_active = None


def fast_apply(function, *args):
    """``function.apply(*args)``, without its per-call cost in eager mode.

    ``Function.apply`` binds the arguments to ``forward``'s signature with ``inspect`` on every call
    of a ``setup_context``-style Function (about 15 µs, half again a small layer's whole step). That
    binding only serves torch.func transforms, so eagerly — not compiling, no transform active — this
    goes straight to the C entry point that ``Function.apply`` itself ends in, after the same
    unwrapping of dead functorch wrappers. Compiled or under a transform it is ``apply`` itself.
    """
    if _functorch_active is None or torch.compiler.is_compiling() or _functorch_active():
        return function.apply(*args)
    c_apply = _c_apply(function)
    if c_apply is None:
        return function.apply(*args)
    return c_apply(*_unwrap_dead_wrappers(args))


def apply_fa_linear(x, weight, feedback, bias):
    """``FALinearFunction.apply(x, weight, feedback, bias)`` by `fast_apply`."""
    return fast_apply(FALinearFunction, x, weight, feedback, bias)


def autocast_dtype(device_type: str) -> torch.dtype | None:
    """The dtype ``torch.autocast`` computes linear layers in on `device_type`, or None when off."""
    try:
        return torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else None
    except RuntimeError:  # a device type autocast does not know (meta, ...)
        return None


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
    _check_devices_and_dtypes(name, x, weight, feedback, bias)


def _check_devices_and_dtypes(name, x, weight, feedback, bias) -> None:
    tensors = {"x": x, "weight": weight, "feedback": feedback}
    if bias is not None:
        tensors["bias"] = bias
    if len({t.device for t in tensors.values()}) > 1:
        where = ", ".join(f"{k} on {t.device}" for k, t in tensors.items())
        raise ValueError(f"{name}: {', '.join(tensors)} must be on one device, got {where}")
    dtypes = {t.dtype for t in tensors.values()}
    if len(dtypes) > 1:
        cast = autocast_dtype(x.device.type)
        if cast is None or not dtypes <= {cast, weight.dtype}:
            raise TypeError(
                f"{name}: {', '.join(tensors)} must share one dtype, got "
                f"{_dtype_names(x, weight, feedback, bias)}"
                + ("" if cast is None else f" (autocast to {cast} allows only {cast} and the weight's)")
            )


def _dtype_names(x, weight, feedback, bias) -> str:
    parts = [f"x {x.dtype}", f"weight {weight.dtype}", f"feedback {feedback.dtype}"]
    if bias is not None:
        parts.append(f"bias {bias.dtype}")
    return ", ".join(parts)


# ---------------------------------------------------------------- 2-d convolution


class Conv2dFAFunction(torch.autograd.Function):
    """The autograd rule behind `conv2d_fa`: ``F.conv2d`` forward; backward by ONE call of
    ``aten.convolution_backward`` with B in the weight slot, which gives ∂x (the transposed
    convolution of g with B), the true ∂W (it reads only x and g, never the weight's values) and ∂b
    together. If B requires a gradient (mode kp), it receives ∂W. `padding` must be explicit ints.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(x, weight, feedback, bias, stride, padding, dilation, groups):
        return F.conv2d(x, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, _, feedback, bias, stride, padding, dilation, groups = inputs
        ctx.save_for_backward(x, feedback)
        ctx.conv = (stride, padding, dilation, groups)
        ctx.bias_sizes = None if bias is None else [bias.shape[0]]

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        x, feedback = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.conv
        need_x, need_w, need_fb, need_b = ctx.needs_input_grad[:4]
        dt = grad_out.dtype
        unbatched = x.dim() == 3
        if unbatched:
            x, grad_out = x.unsqueeze(0), grad_out.unsqueeze(0)
        grad_x, grad_w, grad_b = torch.ops.aten.convolution_backward(
            grad_out, x if x.dtype is dt else x.to(dt), feedback if feedback.dtype is dt else feedback.to(dt),
            ctx.bias_sizes, stride, padding, dilation, False, [0, 0], groups,
            [need_x, need_w or need_fb, need_b and ctx.bias_sizes is not None],
        )
        if unbatched and grad_x is not None:
            grad_x = grad_x.squeeze(0)
        return (grad_x, grad_w if need_w else None, _kp_grad(grad_w, need_w, need_fb), grad_b,
                None, None, None, None)


def pair(v, name: str) -> tuple[int, int]:
    """`v` (an int, or two ints) as a pair of ints; ValueError naming `name` otherwise."""
    if isinstance(v, int) and not isinstance(v, bool):
        return (v, v)
    try:
        a, b = v
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an int or a pair of ints, got {v!r}") from None
    return int(a), int(b)


def same_padding(kernel_size, dilation) -> tuple[int, int, int, int]:
    """The zero padding ``(left, right, top, bottom)`` (F.pad's order) that keeps H and W at stride
    1: d·(k − 1) in all, the odd one on the right/bottom, as ``F.conv2d(padding="same")`` does."""
    (kh, kw), (dh, dw) = pair(kernel_size, "kernel_size"), pair(dilation, "dilation")
    th, tw = dh * (kh - 1), dw * (kw - 1)
    return tw // 2, tw - tw // 2, th // 2, th - th // 2


def conv2d_fa(
    x: torch.Tensor,
    weight: torch.Tensor,
    feedback: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride=1,
    padding=0,
    dilation=1,
    groups: int = 1,
) -> torch.Tensor:
    """``F.conv2d(x, weight, bias, stride, padding, dilation, groups)`` whose input-gradient is the
    transposed convolution of the upstream gradient with ``feedback`` (weight's shape) instead of
    ``weight``; ∂weight and ∂bias are the true ones.

    Args:
        x: (N, C_in, H, W) or unbatched (C_in, H, W).
        weight: (C_out, C_in/groups, kh, kw).
        feedback: weight's shape: the input-gradient's kernel.
        bias: (C_out,) or None.
        stride: int or pair.
        padding: int, pair, ``"valid"`` or ``"same"`` (stride 1; an uneven total puts the extra
            row/column at the bottom/right, as ``F.conv2d`` does).
        dilation: int or pair.
        groups: as for ``F.conv2d``.

    Under ``torch.autocast`` the convolution runs in the autocast dtype, as ``F.conv2d`` does.
    """
    check_conv2d_args(x, weight, feedback, bias, groups)
    stride, dilation = pair(stride, "stride"), pair(dilation, "dilation")
    if isinstance(padding, str):
        if padding == "valid":
            padding = (0, 0)
        elif padding == "same":
            if stride != (1, 1):
                raise ValueError("conv2d_fa: padding='same' needs stride 1 (as F.conv2d)")
            left, right, top, bottom = same_padding(weight.shape[2:], dilation)
            if (left, top) != (right, bottom):
                x = F.pad(x, (left, right, top, bottom))
                padding = (0, 0)
            else:
                padding = (top, left)
        else:
            raise ValueError(f"conv2d_fa: padding must be an int, a pair, 'valid' or 'same', got {padding!r}")
    return apply_conv2d_fa(x, weight, feedback, bias, stride, pair(padding, "padding"), dilation, groups)


def apply_conv2d_fa(x, weight, feedback, bias, stride, padding, dilation, groups):
    """``Conv2dFAFunction.apply(...)`` by `fast_apply`; stride, padding, dilation: pairs of ints."""
    return fast_apply(Conv2dFAFunction, x, weight, feedback, bias, stride, padding, dilation, groups)


def check_conv2d_args(x, weight, feedback, bias, groups, name: str = "conv2d_fa") -> None:
    """Raise a clear error, naming `name` and the shapes/dtypes, before anything is computed."""
    for label, t in (("x", x), ("weight", weight), ("feedback", feedback)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name}: {label} must be a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise TypeError(f"{name}: {label} must be a floating-point tensor, got dtype {t.dtype}")
    if weight.dim() != 4:
        raise ValueError(
            f"{name}: weight must be 4-d (out_ch, in_ch/groups, kh, kw), got shape {tuple(weight.shape)}"
        )
    if feedback.shape != weight.shape:
        raise ValueError(
            f"{name}: feedback must have the weight's shape {tuple(weight.shape)}, got "
            f"{tuple(feedback.shape)}"
        )
    if not isinstance(groups, int) or groups < 1 or weight.shape[0] % groups:
        raise ValueError(
            f"{name}: groups must be an int >= 1 dividing out_ch {weight.shape[0]}, got {groups!r}"
        )
    c_in = weight.shape[1] * groups
    if x.dim() not in (3, 4) or x.shape[-3] != c_in:
        raise ValueError(
            f"{name}: input has shape {tuple(x.shape)}, expected (N, {c_in}, H, W) or ({c_in}, H, W) "
            f"(weight {tuple(weight.shape)}, groups {groups})"
        )
    if bias is not None and not isinstance(bias, torch.Tensor):
        raise TypeError(f"{name}: bias must be a torch.Tensor or None, got {type(bias).__name__}")
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(f"{name}: bias must have shape ({weight.shape[0]},), got {tuple(bias.shape)}")
    _check_devices_and_dtypes(name, x, weight, feedback, bias)
