"""Direct Feedback Alignment (Nøkland 2016) in PyTorch: `DFASequential`, a network-level rule.

With the output error e = ∂L/∂z_top (flattened to (batch, C)), the formulas of
`pyfa.reference.dfa_gradients` (dense) and `pyfa.reference.cnn_gradients` (conv)::

    top layer:        δ_top = e                               (its true gradient)
    hidden layer l:   δ_l   = reshape(e B_l) ⊙ act_l'(z_l)    B_l fixed, (C, units of z_l)
    every layer:      ∂L/∂W_l, ∂L/∂b_l: the true ones for δ_l
    the input:        the first layer's own rule (FA: δ_0 through its feedback)

How one ordinary backward pass carries e to every layer, with no hooks and no global state: every
parametrised layer after the first reads its input DETACHED, so nothing flows from layer to layer;
and the top layer's output passes through `DFAOutputFunction`, an identity whose backward also
hands each hidden layer's activation its slice of the single product e [B_0 | B_1 | ...], from
where autograd carries it through the activation (⊙ act') into the layer's ordinary gradients.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from pyfa.torch.functional import fast_apply
from pyfa.torch.modules import Conv2dFA, LinearFA

#: Layers with weights: DFA's hidden and top layers.
PARAMETRISED = (nn.Linear, LinearFA, nn.Conv2d, Conv2dFA)
#: Elementwise activations: a hidden layer's signal e B_l arrives after those that follow it
#: (before any pooling, flatten or dropout), where the oracle's act'(z_l) applies.
ACTIVATIONS = (nn.ReLU, nn.Tanh, nn.Sigmoid, nn.Identity, nn.LeakyReLU, nn.GELU, nn.ELU, nn.SiLU,
               nn.Softplus, nn.Hardtanh)


class DFAOutputFunction(torch.autograd.Function):
    """``z_top`` unchanged; its backward passes the incoming e = ∂L/∂z_top on to z_top, and hands
    each ``hidden[l]`` (an input here only for this) ``reshape(e_flat @ B_l)``, all from the one
    product ``e_flat @ direct_feedback``."""

    generate_vmap_rule = True

    @staticmethod
    def forward(z_top, direct_feedback, *hidden):
        return z_top.clone()  # a tensor of its own: an in-place activation after it is fine

    @staticmethod
    def setup_context(ctx, inputs, output):
        _, direct_feedback, *hidden = inputs
        ctx.save_for_backward(direct_feedback)
        ctx.shapes = [tuple(h.shape) for h in hidden]

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        (direct_feedback,) = ctx.saved_tensors
        e = grad_out.reshape(grad_out.shape[0], -1)
        projected = e @ direct_feedback.to(e.dtype)  # every e B_l in one product
        units = [math.prod(s[1:]) for s in ctx.shapes]
        grads = [g.reshape(s) for g, s in zip(torch.split(projected, units, dim=1), ctx.shapes, strict=True)]
        return (grad_out, None, *grads)


class DFASequential(nn.Sequential):
    r"""A network trained with Direct Feedback Alignment: an ``nn.Sequential`` of linear and conv
    layers (`LinearFA`, ``nn.Linear``, `Conv2dFA`, ``nn.Conv2d``) with parameter-free modules
    (activations, pooling, flatten, dropout) between them (and before the first, e.g. an
    ``nn.Unflatten``: its input gradient is the first layer's rule, passed back through them).

    The forward output is the plain Sequential's. In the backward pass every hidden layer l receives
    the network's output error e = ∂L/∂z_top directly, as reshape(e B_l), after the activations
    that follow it (see the module docstring); the top layer gets its true gradient; the first
    layer sends its error to the input by its own rule (a `LinearFA`'s or `Conv2dFA`'s mode, or
    backprop for a plain layer).

    Attributes:
        direct_feedback: buffer (C, units_0 + units_1 + ...): the fixed matrices B_l side by side
            (`direct_feedback_of` gives B_l with its layer's output shape), C the top layer's number
            of outputs and units_l the number of outputs of hidden layer l (h_l for a dense layer,
            out_ch·H·W for a conv). In ``state_dict``, moved by ``.to()``, never trained.

    Args:
        input_shape: the shape of one sample as the first module takes it, e.g. (1, 32, 32): needed
            when there are conv layers, whose numbers of outputs depend on it (not for dense-only
            networks).
        generator: draws B_l, Glorot-uniform U(±sqrt(6 / (C + units_l))), when `direct_feedback`
            is not given.
    """

    def __init__(self, *modules: nn.Module, input_shape: tuple[int, ...] | None = None,
                 generator: torch.Generator | None = None,
                 direct_feedback: torch.Tensor | None = None) -> None:
        super().__init__(*modules)
        parametrised = self._parametrised()
        if not parametrised:
            raise ValueError("DFASequential needs a linear or conv layer (LinearFA, nn.Linear, Conv2dFA, "
                             f"nn.Conv2d); got {[type(m).__name__ for m in self]}")
        for i, m in enumerate(self):
            if i not in parametrised and any(True for _ in m.parameters()):
                raise ValueError(f"DFASequential: module {i} ({type(m).__name__}) has parameters; only "
                                 "linear and conv layers may (DFA's rule is written for them)")
        shapes = self._hidden_shapes(input_shape)
        top = self[parametrised[-1]].weight
        c = self._top_units(input_shape)
        shape = (c, sum(math.prod(s) for s in shapes))
        self._shapes = shapes
        # the structure forward walks, fixed here (a DFASequential is not meant to be edited later)
        self._layers, self._points = parametrised, set(self._injection_points())
        self._input_dims = len(input_shape) + 1 if input_shape is not None else 2
        if direct_feedback is None:
            self.register_buffer("direct_feedback", torch.empty(shape, device=top.device, dtype=top.dtype))
            self.reset_direct_feedback(generator)
        else:
            if tuple(direct_feedback.shape) != shape:
                raise ValueError(f"DFASequential: direct_feedback must have shape {shape} (C, Σ units_l), "
                                 f"got {tuple(direct_feedback.shape)}")
            self.register_buffer("direct_feedback", direct_feedback)

    def _parametrised(self) -> list[int]:
        return [i for i, m in enumerate(self) if isinstance(m, PARAMETRISED)]

    def _injection_points(self) -> list[int]:
        """For each hidden layer, the index of the module whose output receives e B_l."""
        points = []
        for i in self._parametrised()[:-1]:
            j = i
            while j + 1 < len(self) and isinstance(self[j + 1], ACTIVATIONS):
                j += 1
            points.append(j)
        return points

    def _hidden_shapes(self, input_shape) -> list[tuple[int, ...]]:
        """Each hidden layer's output shape at its injection point (without the batch)."""
        points = self._injection_points()
        layers = [self[i] for i in self._parametrised()]
        if all(isinstance(m, (nn.Linear, LinearFA)) for m in layers):
            for a, b in zip(layers[:-1], layers[1:], strict=True):
                if a.weight.shape[0] != b.weight.shape[1]:
                    raise ValueError(f"DFASequential: {a!r} gives {a.weight.shape[0]} features but {b!r} "
                                     f"takes {b.weight.shape[1]}")
            return [(self[self._layer_of(p)].weight.shape[0],) for p in points]
        if input_shape is None:
            raise ValueError("DFASequential: a network with conv layers needs input_shape (one sample's "
                             "shape, e.g. (1, 32, 32)) to size its B_l")
        return [s[1:] for s in self._trace(input_shape, points)]

    def _top_units(self, input_shape) -> int:
        top = self._parametrised()[-1]
        if isinstance(self[top], (nn.Linear, LinearFA)):
            return self[top].weight.shape[0]
        return math.prod(self._trace(input_shape, [top])[0][1:])

    def _layer_of(self, point: int) -> int:
        return max(i for i in self._parametrised() if i <= point)

    def _trace(self, input_shape, points: list[int]) -> list[tuple[int, ...]]:
        """Output shapes at `points`, by a forward pass on the meta device (nothing computed)."""
        shapes = {}
        dtype = self[self._parametrised()[0]].weight.dtype
        h = torch.empty((1, *input_shape), device="meta", dtype=dtype)
        with torch.no_grad():
            for i, m in enumerate(self):
                h = _meta_call(m, h) if isinstance(m, PARAMETRISED) else m(h)
                if i in points:
                    shapes[i] = tuple(h.shape)
        return [shapes[p] for p in points]

    def direct_feedback_of(self, layer: int) -> torch.Tensor:
        """B_l of hidden layer `layer` (0-based among the parametrised layers), a view of shape
        ``(C, *its output shape)``."""
        if not 0 <= layer < len(self._shapes):
            raise IndexError(f"DFASequential has hidden layers 0..{len(self._shapes) - 1}, not {layer}")
        units = [math.prod(s) for s in self._shapes]
        start = sum(units[:layer])
        b = self.direct_feedback[:, start : start + units[layer]]
        return b.reshape(b.shape[0], *self._shapes[layer])

    def reset_direct_feedback(self, generator: torch.Generator | None = None) -> None:
        """Draw every B_l again, Glorot uniform U(±sqrt(6 / (C + units_l))), from `generator`."""
        c = self.direct_feedback.shape[0]
        units = [math.prod(s) for s in self._shapes]
        with torch.no_grad():
            start = 0
            for u in units:
                a = math.sqrt(6.0 / (c + u))
                self.direct_feedback[:, start : start + u].uniform_(-a, a, generator=generator)
                start += u

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parametrised, points = self._layers, self._points
        top = parametrised[-1]
        if isinstance(x, torch.Tensor) and x.dim() != self._input_dims:
            raise ValueError(
                f"DFASequential: input has shape {tuple(x.shape)}; DFA needs a batch of samples, "
                f"{self._input_dims}-d (the output error is a per-sample matrix (batch, C))"
            )
        hidden: list[torch.Tensor] = []
        h = x
        first = parametrised[0]
        for i, m in enumerate(self):
            if i in parametrised and i != first:
                h = h.detach()  # nothing flows from a layer to the one below it
            h = m(h)
            if i in points:
                hidden.append(h)
            if i == top and top != first:
                h = fast_apply(DFAOutputFunction, h, self.direct_feedback, *hidden)
        return h

    @classmethod
    def from_sequential(cls, model: nn.Sequential, *, input_shape: tuple[int, ...] | None = None,
                        generator: torch.Generator | None = None) -> DFASequential:
        """A DFASequential of `model`'s modules, every ``nn.Linear``/``nn.Conv2d`` turned into a
        `LinearFA`/`Conv2dFA` (mode fa) around its own Parameters (as `pyfa.torch.convert` does:
        ties and optimisers carry over). Only the first layer's feedback is used (for the input
        gradient); fresh feedback and B_l from `generator`."""
        from pyfa.torch.modules import CONVERSIONS

        modules = []
        for m in model:
            make = next((f for t, f in CONVERSIONS.items() if type(m) is t), None)
            modules.append(make(m, "fa", generator=generator) if make else m)
        return cls(*modules, input_shape=input_shape, generator=generator)

    def __getitem__(self, idx):
        if isinstance(idx, slice):  # a part of the network is no DFA network: a plain Sequential
            return nn.Sequential(*list(self)[idx])
        return super().__getitem__(idx)

    def extra_repr(self) -> str:
        return f"direct_feedback={tuple(self.direct_feedback.shape)}"


def _meta_call(m: nn.Module, h: torch.Tensor) -> torch.Tensor:
    """`m`'s output shape on meta tensors, without touching `m` (its weights stay where they are)."""
    from torch.func import functional_call

    params = {k: torch.empty_like(v, device="meta") for k, v in m.named_parameters()}
    buffers = {k: torch.empty_like(v, device="meta") for k, v in m.named_buffers()}
    return functional_call(m, (params, buffers), (h,))


__all__ = ["DFASequential", "DFAOutputFunction"]
