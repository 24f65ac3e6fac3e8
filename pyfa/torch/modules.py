"""`LinearFA`, the FA counterpart of `torch.nn.Linear`, and conversion of existing models."""

from __future__ import annotations

import math
import warnings

import torch
from torch import nn

from pyfa.network import MODES
from pyfa.torch.functional import FALinearFunction, check_linear_args, feedback_matrix

INITS = ("xavier", "kaiming")


class LinearFA(nn.Module):
    r"""A dense layer ``y = x Wᵀ + b`` trained with Feedback Alignment.

    The forward pass is `torch.nn.Linear`'s. In the backward pass the gradient reaching the input is
    ``g B`` instead of ``g W``, with B of W's shape, chosen by ``mode`` (see
    `pyfa.torch.functional.feedback_matrix`): ``"fa"`` (fixed random B, the default), ``"bp"``
    (B = W: exact backprop), ``"usf"``, ``"frsf"``, ``"brsf"`` (sign-symmetry family).
    W and b get their true gradients.

    Attributes:
        weight: Parameter (out_features, in_features).
        bias: Parameter (out_features,) or None.
        feedback: buffer (out_features, in_features): the fixed random matrix (R in frsf).
            It is saved in ``state_dict``, moves with ``.to()``, and never gets a gradient.

    Args:
        init: ``"xavier"`` (Glorot uniform weight and feedback, zero bias) or ``"kaiming"``
            (nn.Linear's default for weight and bias; feedback drawn like the weight).
        generator: a ``torch.Generator`` for reproducible initialisation (and for brsf's draws).

    Example:
        >>> torch.manual_seed(0)
        >>> layer = LinearFA(50, 60)
        >>> layer(torch.randn(64, 50)).shape
        torch.Size([64, 60])
    """

    __constants__ = ["in_features", "out_features"]

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        mode: str = "fa",
        init: str = "xavier",
        device=None,
        dtype=None,
        generator: torch.Generator | None = None,
    ) -> None:
        _check_mode(mode, f"LinearFA({in_features}, {out_features})")
        if init not in INITS:
            raise ValueError(f"LinearFA: unknown init {init!r}; expected one of {INITS}")
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.in_features = in_features
        self.out_features = out_features
        self._mode = mode
        self.init = init
        self.generator = generator
        self.weight = nn.Parameter(torch.empty((out_features, in_features), **factory))
        self.bias = nn.Parameter(torch.empty(out_features, **factory)) if bias else None
        self.register_buffer("feedback", torch.empty((out_features, in_features), **factory))
        self.reset_parameters()

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        _check_mode(value, repr(self))
        self._mode = value

    def reset_parameters(self) -> None:
        """Draw weight, feedback (independently) and bias again from the layer's init."""
        g = self.generator
        with torch.no_grad():
            if self.init == "xavier":
                a = math.sqrt(6.0 / (self.in_features + self.out_features))
                self.weight.uniform_(-a, a, generator=g)
                self.feedback.uniform_(-a, a, generator=g)
                if self.bias is not None:
                    self.bias.zero_()
            else:
                nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5), generator=g)
                nn.init.kaiming_uniform_(self.feedback, a=math.sqrt(5), generator=g)
                if self.bias is not None:
                    bound = 1 / math.sqrt(self.in_features) if self.in_features > 0 else 0
                    self.bias.uniform_(-bound, bound, generator=g)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(
                f"{self!r}: input must be a torch.Tensor, got {type(x).__name__} "
                "(for a numpy array use torch.from_numpy(x))"
            )
        if x.dim() == 0 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"{self!r}: input has shape {tuple(x.shape)}, expected (..., {self.in_features}) "
                f"(weight {tuple(self.weight.shape)})"
            )
        w, fb = self.weight, self.feedback
        if not (x.dtype is w.dtype is fb.dtype and fb.shape == w.shape and x.device == w.device
                and fb.device == w.device and (self.bias is None or self.bias.device == w.device)):
            check_linear_args(x, w, fb, self.bias, repr(self))  # raises, naming what is wrong
        if self._mode == "brsf" and not _backward_possible(x, self):
            b = self.feedback  # B only enters the backward pass: don't draw R for inference
        else:
            b = feedback_matrix(self._mode, self.weight, self.feedback, self.generator)
        return FALinearFunction.apply(x, self.weight, b, self.bias)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}, mode={self._mode!r}"
        )

    def __repr__(self) -> str:
        return f"LinearFA({self.extra_repr()})"

    @classmethod
    def from_linear(
        cls, linear: nn.Linear, mode: str = "fa", *, generator: torch.Generator | None = None
    ) -> LinearFA:
        """A LinearFA with `linear`'s weight and bias (copied) and a fresh Glorot-uniform feedback."""
        w = linear.weight
        if isinstance(w, nn.parameter.UninitializedParameter):
            raise ValueError(
                f"LinearFA.from_linear: {linear!r} is not initialised yet (a LazyLinear): run one "
                "forward pass through the model first, then convert"
            )
        layer = cls(
            linear.in_features,
            linear.out_features,
            bias=linear.bias is not None,
            mode=mode,
            device=w.device,
            dtype=w.dtype,
            generator=generator,
        )
        with torch.no_grad():
            layer.weight.copy_(w)
            layer.weight.requires_grad_(w.requires_grad)
            if linear.bias is not None:
                layer.bias.copy_(linear.bias)
                layer.bias.requires_grad_(linear.bias.requires_grad)
        layer.train(linear.training)
        return layer


def convert(model: nn.Module, mode: str = "fa", *, generator: torch.Generator | None = None) -> int:
    """Replace, in place, every `nn.Linear` in `model`'s tree by a `LinearFA` with the same weights.

    The forward output does not change; only the backward pass does. Returns the number of layers
    replaced. A layer used in several places is replaced once, by one shared `LinearFA`; weights
    frozen with ``requires_grad=False`` stay frozen. The output projection of an
    `nn.MultiheadAttention` is left alone (with a warning): the attention reads its weight directly,
    so a `LinearFA` there would never run. If `model` itself is an `nn.Linear` there is no parent
    to put the new layer in: use `LinearFA.from_linear` instead.
    """
    _check_mode(mode, "convert")
    if isinstance(model, nn.Linear):
        raise TypeError("convert(model): model is itself an nn.Linear; use LinearFA.from_linear")
    return _convert(model, mode, generator, {})


def _convert(model: nn.Module, mode: str, generator, done: dict[int, LinearFA]) -> int:
    count = 0
    # model._modules, not named_children(): the latter lists a module used twice only once
    for name, child in list(model._modules.items()):
        if child is None:
            continue
        if isinstance(child, nn.Linear):
            if isinstance(model, nn.MultiheadAttention):
                warnings.warn(
                    f"convert: left {type(model).__name__}.{name} as it is: the attention uses its "
                    "weight directly, so it would still be trained by backprop",
                    stacklevel=3,
                )
                continue
            if id(child) not in done:
                done[id(child)] = LinearFA.from_linear(child, mode, generator=generator)
                count += 1
            setattr(model, name, done[id(child)])
        else:
            count += _convert(child, mode, generator, done)
    return count


def _backward_possible(x: torch.Tensor, layer: LinearFA) -> bool:
    return torch.is_grad_enabled() and (
        x.requires_grad or any(p.requires_grad for p in layer.parameters(recurse=False))
    )


def _check_mode(mode: str, where: str) -> None:
    if mode not in MODES:
        raise ValueError(f"{where}: unknown mode {mode!r}; expected one of {MODES}")
