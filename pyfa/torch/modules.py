"""`LinearFA` and `Conv2dFA`, the FA counterparts of `torch.nn.Linear` and `torch.nn.Conv2d`, and
`convert`, which swaps them into an existing model around its own Parameters."""

from __future__ import annotations

import math
import warnings

import torch
from torch import nn
from torch.nn import functional as F

from pyfa.torch.feedback import FeedbackLayer, check_mode, glorot_std
from pyfa.torch.functional import (
    apply_conv2d_fa,
    apply_fa_linear,
    check_conv2d_args,
    check_linear_args,
    pair,
    same_padding,
)

INITS = ("xavier", "kaiming")


class _InitMixin:
    """Weight, feedback and bias initialisation shared by the FA layers (``init``: xavier/kaiming)."""

    def reset_parameters(self) -> None:
        """Draw weight, feedback (independently) and bias again from the layer's init."""
        g = self.generator
        with torch.no_grad():
            if self.init == "xavier":
                a = math.sqrt(3.0) * glorot_std(self.weight.shape)
                self.weight.uniform_(-a, a, generator=g)
                self.reset_feedback()
                if self.bias is not None:
                    self.bias.zero_()
            else:  # nn.Linear's and nn.Conv2d's own defaults
                nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5), generator=g)
                self.reset_feedback()
                if self.bias is not None:
                    fan_in = self.weight[0].numel()
                    bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
                    self.bias.uniform_(-bound, bound, generator=g)

    def reset_feedback(self) -> None:
        """Draw the feedback matrix again from the layer's init (Glorot uniform for ``xavier``, the
        weight's kaiming draw for ``kaiming``), leaving weight and bias alone."""
        with torch.no_grad():
            if self.init == "xavier":
                a = math.sqrt(3.0) * glorot_std(self.feedback.shape)
                self.feedback.uniform_(-a, a, generator=self.generator)
            else:
                nn.init.kaiming_uniform_(self.feedback, a=math.sqrt(5), generator=self.generator)


def _check_init(init: str, where: str) -> None:
    if init not in INITS:
        raise ValueError(f"{where}: unknown init {init!r}; expected one of {INITS}")


def _adopt(layer: FeedbackLayer, original: nn.Module) -> FeedbackLayer:
    """Make `layer` (built on the meta device) hold `original`'s weight and bias Parameter objects,
    with a fresh feedback buffer of the weight's device and dtype."""
    if isinstance(original.weight, nn.parameter.UninitializedParameter):
        raise ValueError(
            f"{type(layer).__name__}.from_{'linear' if isinstance(original, nn.Linear) else 'conv'}: "
            f"{original!r} is not initialised yet (a lazy module): run one forward pass through the "
            "model first, then convert"
        )
    layer.weight = original.weight
    layer.bias = original.bias
    fb = torch.empty_like(original.weight, requires_grad=False)
    if isinstance(layer.feedback, nn.Parameter):  # mode kp
        layer.feedback = nn.Parameter(fb)
    else:
        layer.feedback = fb
    layer.reset_feedback()
    layer.train(original.training)
    return layer


class LinearFA(_InitMixin, FeedbackLayer):
    r"""A dense layer ``y = x Wᵀ + b`` trained with Feedback Alignment.

    The forward pass is `torch.nn.Linear`'s. In the backward pass the gradient reaching the input is
    ``g B`` instead of ``g W``, with B of W's shape, chosen by ``mode`` (`pyfa.torch.feedback`):
    ``"fa"`` (fixed random B, the default), ``"bp"`` (B = W: exact backprop), ``"usf"``, ``"frsf"``,
    ``"brsf"`` (sign-symmetry family), ``"kp"`` (Kolen-Pollack: B trained with ∂W). W and b get their
    true gradients.

    Attributes:
        weight: Parameter (out_features, in_features).
        bias: Parameter (out_features,) or None.
        feedback: (out_features, in_features), saved in ``state_dict`` and moved by ``.to()``: a
            buffer that never gets a gradient (the fixed matrix; R in frsf), except in mode ``kp``,
            where it is a Parameter whose gradient is ∂W. Weight decay λ for KP is the optimiser's
            (``SGD(..., weight_decay=λ)`` or ``AdamW``), applied to weight and feedback alike.
        brsf_state: in mode ``brsf`` only (else None, and absent from ``state_dict``): the int64
            buffer ``[seed, step]`` of the counter-based stream R is drawn from
            (`pyfa.torch.feedback.brsf_noise`), so the draws are the same eagerly, compiled, on
            every DDP rank, and after a reload.

    Args:
        init: ``"xavier"`` (Glorot uniform weight and feedback, zero bias) or ``"kaiming"``
            (nn.Linear's default for weight and bias; feedback drawn like the weight).
        generator: a ``torch.Generator`` for reproducible initialisation (and brsf's stream seed).

    Execution paths: eager, ``torch.autocast`` (the forward runs in the autocast dtype like
    ``nn.Linear``; gradients come back in the parameters' dtype), ``torch.compile(fullgraph=True)``,
    ``torch.func`` and DDP all keep the FA rule (see `pyfa.torch.functional`).

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
        check_mode(mode, f"LinearFA({in_features}, {out_features})")
        _check_init(init, "LinearFA")
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.in_features = in_features
        self.out_features = out_features
        self.init = init
        self.weight = nn.Parameter(torch.empty((out_features, in_features), **factory))
        self.bias = nn.Parameter(torch.empty(out_features, **factory)) if bias else None
        self.register_buffer("feedback", torch.empty((out_features, in_features), **factory))
        self.generator = generator
        self.reset_parameters()
        self._init_feedback_state(mode, generator)

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
        w, fb, bias = self.weight, self.feedback, self.bias
        if not (x.dtype is w.dtype is fb.dtype and w.is_floating_point() and fb.shape == w.shape
                and x.device == w.device and fb.device == w.device
                and (bias is None or (bias.device == w.device and bias.dtype is w.dtype))):
            check_linear_args(x, w, fb, bias, self)  # raises unless all is well (autocast)
        return apply_fa_linear(x, w, self.backward_matrix(x), bias)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}, mode={self._mode!r}"
        )

    @classmethod
    def from_linear(
        cls, linear: nn.Linear, mode: str = "fa", *, generator: torch.Generator | None = None
    ) -> LinearFA:
        """A LinearFA around `linear`'s own ``weight`` and ``bias`` Parameter objects.

        Nothing is copied: the new layer holds the very Parameters (ties to other modules, an
        optimiser built earlier, ``requires_grad`` and the names ``weight``/``bias`` all carry
        over). Only ``feedback`` is new: weight's shape, device and dtype, drawn Glorot-uniform
        (from `generator` if given).
        """
        layer = cls(linear.in_features, linear.out_features, bias=linear.bias is not None, mode=mode,
                    device="meta", generator=generator)  # nothing allocated or drawn
        return _adopt(layer, linear)


class Conv2dFA(_InitMixin, FeedbackLayer):
    r"""A 2-d convolution trained with Feedback Alignment: ``nn.Conv2d``'s forward; in the backward
    pass the input receives the transposed convolution of the upstream gradient with B (of the
    weight's shape (out_channels, in_channels/groups, kh, kw)) instead of W. W and b get their true
    gradients. B is chosen by ``mode`` as for `LinearFA` (s, in usf/brsf, from the conv weight's
    fans), and the backward is one ``aten.convolution_backward`` call with B in the weight slot.

    Arguments as ``nn.Conv2d`` (``padding`` an int, a pair, ``"valid"`` or ``"same"``;
    ``padding_mode`` ``"zeros"``, ``"reflect"``, ``"replicate"`` or ``"circular"``: a non-zero mode
    pads x first, and that pad's backward is its ordinary adjoint), plus ``mode``, ``init`` and
    ``generator`` as for `LinearFA`. Attributes ``weight``, ``bias``, ``feedback``, ``brsf_state`` as
    for `LinearFA`.

    Example:
        >>> layer = Conv2dFA(1, 6, 5, padding=2)
        >>> layer(torch.randn(8, 1, 28, 28)).shape
        torch.Size([8, 6, 28, 28])
    """

    __constants__ = ["stride", "padding", "dilation", "groups", "padding_mode", "in_channels",
                     "out_channels", "kernel_size"]
    PADDING_MODES = ("zeros", "reflect", "replicate", "circular")

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        *,
        mode: str = "fa",
        init: str = "xavier",
        device=None,
        dtype=None,
        generator: torch.Generator | None = None,
    ) -> None:
        where = f"Conv2dFA({in_channels}, {out_channels}, {kernel_size})"
        check_mode(mode, where)
        _check_init(init, "Conv2dFA")
        if groups < 1 or in_channels % groups or out_channels % groups:
            raise ValueError(f"{where}: in_channels and out_channels must be divisible by groups {groups}")
        if padding_mode not in self.PADDING_MODES:
            raise ValueError(
                f"{where}: padding_mode must be one of {self.PADDING_MODES}, got {padding_mode!r}"
            )
        super().__init__()
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = pair(kernel_size, "kernel_size")
        if min(self.kernel_size) < 1:
            raise ValueError(f"{where}: kernel_size must be >= 1, got {kernel_size!r}")
        self.stride, self.dilation = pair(stride, "stride"), pair(dilation, "dilation")
        if isinstance(padding, str):
            if padding not in ("valid", "same"):
                raise ValueError(
                    f"{where}: padding must be an int, a pair, 'valid' or 'same', got {padding!r}"
                )
            if padding == "same" and self.stride != (1, 1):
                raise ValueError(f"{where}: padding='same' needs stride 1 (as nn.Conv2d)")
            self.padding = padding
        else:
            self.padding = pair(padding, "padding")
        self.padding_mode = padding_mode
        self.init = init
        factory = {"device": device, "dtype": dtype}
        shape = (out_channels, in_channels // groups, *self.kernel_size)
        self.weight = nn.Parameter(torch.empty(shape, **factory))
        self.bias = nn.Parameter(torch.empty(out_channels, **factory)) if bias else None
        self.register_buffer("feedback", torch.empty(shape, **factory))
        self.generator = generator
        self.reset_parameters()
        self._init_feedback_state(mode, generator)

    def _geometry(self) -> tuple:
        """(what to F.pad x with first, or None; the convolution's own zero padding; the smallest
        (H, W) the kernel fits), worked out once per padding/kernel/dilation setting."""
        key = (self.padding, self.padding_mode, self.kernel_size, self.dilation)
        if self.__dict__.get("_geometry_key") != key:
            if self.padding == "valid":
                pads = (0, 0, 0, 0)
            elif self.padding == "same":
                pads = same_padding(self.kernel_size, self.dilation)
            else:
                ph, pw = self.padding
                pads = (pw, pw, ph, ph)
            left, right, top, bottom = pads
            smallest = tuple(d * (k - 1) + 1 - add for k, d, add in
                             zip(self.kernel_size, self.dilation, (top + bottom, left + right), strict=True))
            if self.padding_mode == "zeros" and (left, top) == (right, bottom):
                geometry = (None, (top, left), smallest)
            else:
                geometry = (pads, (0, 0), smallest)
            self.__dict__["_geometry_key"], self.__dict__["_geometry_value"] = key, geometry
        return self.__dict__["_geometry_value"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(
                f"{self!r}: input must be a torch.Tensor, got {type(x).__name__} "
                "(for a numpy array use torch.from_numpy(x))"
            )
        w, fb, bias = self.weight, self.feedback, self.bias
        if not (x.dim() == 4 and x.shape[1] == self.in_channels and x.dtype is w.dtype is fb.dtype
                and w.is_floating_point() and fb.shape == w.shape and x.device == w.device
                and fb.device == w.device
                and (bias is None or (bias.device == w.device and bias.dtype is w.dtype))):
            check_conv2d_args(x, w, fb, bias, self.groups, self)  # raises unless all is well
        pre, padding, (min_h, min_w) = self._geometry()
        if x.shape[-2] < min_h or x.shape[-1] < min_w:
            raise ValueError(
                f"{self!r}: input of shape {tuple(x.shape)} is, padded, smaller than the kernel "
                f"{self.kernel_size} (dilation {self.dilation})"
            )
        if pre is not None and any(pre):
            mode = "constant" if self.padding_mode == "zeros" else self.padding_mode
            x = F.pad(x, pre, mode=mode)
        return apply_conv2d_fa(x, w, self.backward_matrix(x), bias, self.stride, padding,
                               self.dilation, self.groups)

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        if self.padding != (0, 0):
            s += f", padding={self.padding!r}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode!r}"
        return s + f", mode={self._mode!r}"

    @classmethod
    def from_conv(
        cls, conv: nn.Conv2d, mode: str = "fa", *, generator: torch.Generator | None = None
    ) -> Conv2dFA:
        """A Conv2dFA around `conv`'s own ``weight`` and ``bias`` Parameter objects (as
        `LinearFA.from_linear`), with its stride, padding, dilation, groups and padding mode."""
        padding = conv.padding if isinstance(conv.padding, str) else tuple(conv.padding)
        layer = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, padding,
                    conv.dilation, conv.groups, conv.bias is not None, conv.padding_mode, mode=mode,
                    device="meta", generator=generator)  # nothing allocated or drawn
        return _adopt(layer, conv)


#: What `convert` replaces, and how.
CONVERSIONS: dict[type, callable] = {nn.Linear: LinearFA.from_linear, nn.Conv2d: Conv2dFA.from_conv}


def convert(model: nn.Module, mode: str = "fa", *, generator: torch.Generator | None = None) -> int:
    """Replace, in place, every `nn.Linear` and `nn.Conv2d` in `model`'s tree by a `LinearFA` or
    `Conv2dFA`; return how many.

    Each new layer holds the original ``weight`` and ``bias`` Parameter OBJECTS (see
    `LinearFA.from_linear`); only the ``feedback`` buffer is new. So:

    - the forward output does not change; only the backward pass does;
    - parameter names and ``requires_grad`` are kept; ``state_dict`` keys are the old ones plus
      ``<layer>.feedback`` (and ``<layer>.brsf_state`` in mode brsf);
    - an optimiser built before ``convert`` goes on training the model (in mode kp, add the new
      ``feedback`` Parameters to it, or build it afterwards);
    - tied weights stay tied (a head sharing its weight with an embedding), and a layer used in
      several places is replaced once, by one shared FA layer;
    - hooks registered on an original module stay with that (now unused) module;
    - a subclass that overrides ``forward`` is left alone, with a warning (an FA layer would
      compute something else); a parametrized layer (weight_norm, ...) is refused;
    - other layers with weights (``Conv1d``, ``ConvTranspose2d``, RNNs, ...) have no FA
      counterpart: they stay backprop, with a warning naming each.

    The output projection of an `nn.MultiheadAttention` is left alone (with a warning): the
    attention reads its weight directly, so a `LinearFA` there would never run. If `model` itself
    is an `nn.Linear`/`nn.Conv2d` there is no parent to put the new layer in: use
    `LinearFA.from_linear` / `Conv2dFA.from_conv`.
    """
    check_mode(mode, "convert")
    if type(model) in CONVERSIONS or isinstance(model, (nn.Linear, nn.Conv2d)):
        raise TypeError(f"convert(model): model is itself an {type(model).__name__}; use "
                        "LinearFA.from_linear or Conv2dFA.from_conv")
    return _convert(model, mode, generator, {})


#: Layers with weights, sending an error to their input, that `convert` has no FA counterpart for:
#: they stay backprop, with a warning. (An nn.Embedding sends nothing to its input, integer indices:
#: FA and BP are the same rule for it.)
UNCONVERTED = (nn.Conv1d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
               nn.Bilinear, nn.RNNBase)


def _conversion(module: nn.Module, name: str):
    """How to convert `module` (None: leave it); warns or raises where converting would be wrong."""
    for cls, make in CONVERSIONS.items():
        if not isinstance(module, cls):
            continue
        if nn.utils.parametrize.is_parametrized(module):
            raise TypeError(
                f"convert: {name} ({type(module).__name__}) has parametrizations (weight_norm, "
                "spectral_norm...): its "
                "weight is computed, not a Parameter an FA layer could hold; remove them first"
            )
        if type(module).forward is not cls.forward:
            warnings.warn(
                f"convert: left {name} ({type(module).__name__}) as it is: it overrides "
                f"{cls.__name__}.forward, which an FA layer would not reproduce (it stays backprop)",
                stacklevel=4,
            )
            return None
        return make
    return None


def _convert(model: nn.Module, mode: str, generator, done: dict[int, nn.Module], prefix: str = "") -> int:
    count = 0
    # model._modules, not named_children(): the latter lists a module used twice only once
    for name, child in list(model._modules.items()):
        if child is None:
            continue
        path = f"{prefix}{name}"
        make = _conversion(child, path)
        if make is None:
            if isinstance(child, UNCONVERTED) and id(child) not in done:
                done[id(child)] = child
                warnings.warn(f"convert: {path} ({type(child).__name__}) has no FA counterpart in pyfa; "
                              "it stays backprop", stacklevel=3)
            count += _convert(child, mode, generator, done, f"{path}.")
            continue
        if isinstance(model, nn.MultiheadAttention):
            warnings.warn(
                f"convert: left {type(model).__name__}.{name} as it is: the attention uses its "
                "weight directly, so it would still be trained by backprop",
                stacklevel=3,
            )
            continue
        if id(child) not in done:
            done[id(child)] = make(child, mode, generator=generator)
            count += 1
        setattr(model, name, done[id(child)])
    return count
