"""The feedback matrix B of each mode, brsf's random stream, and what every FA layer shares.

B always has the weight's shape — (out, in) for `LinearFA`, (out_ch, in_ch/groups, kh, kw) for
`Conv2dFA` — and, with s = sqrt(2 / (fan_in + fan_out)) the Glorot standard deviation of that shape
(torch.nn.init's fans; s = sqrt(2 / (in + out)) for a dense layer):

- ``fa``   B = feedback (fixed random; Lillicrap et al. 2016)
- ``bp``   B = W (exact backprop)
- ``usf``  B = sign(W)·s (Liao et al. 2016)
- ``frsf`` B = |feedback| ⊙ sign(W) (Moskovitz et al. 2018)
- ``brsf`` B = |R|·s ⊙ sign(W), R ~ N(0, 1) drawn anew at every training step
- ``kp``   B = feedback, which is trained: it receives ∂W as its gradient (Kolen-Pollack, Akrout et
  al. 2019). With weight decay λ on both W and B (an optimiser's ``weight_decay``: SGD, or AdamW's
  decoupled decay), W − B shrinks by (1 − ηλ) every step and B comes to align with W.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from pyfa.network import MODES  # the layer modes (dfa is network-level: DFASequential)


def glorot_std(shape) -> float:
    """sqrt(2 / (fan_in + fan_out)) for a weight of this shape, with ``torch.nn.init``'s fans (the
    oracle's `pyfa.reference.fans`), in plain Python arithmetic: torch.compile traces it as
    constants, where numpy's would break the graph."""
    receptive = math.prod(shape[2:])
    return math.sqrt(2.0 / (shape[1] * receptive + shape[0] * receptive))


def feedback_matrix(
    mode: str,
    weight: torch.Tensor,
    feedback: torch.Tensor,
    generator: torch.Generator | None = None,
    *,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """The matrix B through which the error reaches a layer's input, for each mode (module docstring).

    The same formulas as `pyfa.reference.feedback_matrix`. For ``brsf``, R is `noise` if given
    (`FeedbackLayer` passes its counter-based draw, `brsf_noise`), else drawn here from `generator`.
    B is computed without autograd: it never carries a gradient back to W. In ``kp`` it is the
    `feedback` tensor itself, whose gradient the FA rule sets to ∂W.
    """
    if mode in ("fa", "kp"):
        return feedback
    if mode == "bp":
        return weight.detach()
    with torch.no_grad():
        w = weight.detach()
        if mode == "usf":
            return torch.sign(w) * glorot_std(w.shape)
        if mode == "frsf":
            return feedback.abs() * torch.sign(w)
        if mode == "brsf":
            if noise is not None:
                return torch.sign(w).mul_(noise.abs()).mul_(glorot_std(w.shape))
            r = torch.randn(w.shape, generator=generator, device=w.device, dtype=w.dtype)
            return _brsf_from_fresh_noise(w, r)
    raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")


def _brsf_from_fresh_noise(w: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """brsf's B = |R|·s ⊙ sign(W), written into `r` (a draw nobody else holds): two passes and one
    new tensor fewer than the plain formula, on the step's hot path."""
    return r.abs_().mul_(glorot_std(w.shape)).mul_(torch.sign(w))


@torch.library.custom_op("pyfa::brsf_noise", mutates_args=("state",))
def brsf_noise(weight: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
    """R ~ N(0, 1) shaped like `weight`, the draw number ``state[1]`` of the stream ``state[0]``.

    `state` is an int64 tensor ``[seed, step]``; the draw comes from a ``torch.Generator`` on
    `weight`'s device seeded with ``numpy.random.SeedSequence([seed, step])``, and ``step`` then
    advances by one. Being counter-based and an opaque custom op, the draws are the same in eager
    mode, under ``torch.compile`` (which cannot trace a Generator), on every DDP rank holding the
    same state, and after ``state`` is restored from a checkpoint.
    """
    seed, step = (int(v) for v in state.tolist())
    g = torch.Generator(device=weight.device)
    g.manual_seed(int(np.random.SeedSequence([seed, step]).generate_state(1, np.uint64)[0]))
    state[1] += 1
    return torch.randn(weight.shape, generator=g, device=weight.device, dtype=weight.dtype)


@brsf_noise.register_fake
def _(weight, state):
    return torch.empty_like(weight)


def check_mode(mode: str, where: str) -> None:
    if mode not in MODES:
        hint = " (dfa is network-level: use pyfa.torch.DFASequential)" if mode == "dfa" else ""
        raise ValueError(f"{where}: unknown mode {mode!r}; expected one of {MODES}{hint}")


class FeedbackLayer(nn.Module):
    """What every FA layer shares (`LinearFA`, `Conv2dFA`): its mode, its feedback tensor and brsf's
    random stream. A subclass registers ``weight``, ``bias`` and the buffer ``feedback`` (weight's
    shape), calls `_init_feedback_state`, and sends the error to its input through
    `backward_matrix`.

    - ``feedback`` is a buffer: in ``state_dict``, moved by ``.to()``, never in ``parameters()`` —
      except in mode ``kp``, where it is a Parameter (optimisers train it; its gradient is ∂W). The
      ``state_dict`` key is ``feedback`` either way. Setting ``mode`` switches between the two; an
      optimiser built before the switch does not see the change.
    - ``brsf_state`` is a buffer in mode ``brsf`` only (else None, absent from ``state_dict``): the
      ``[seed, step]`` of the layer's stream of R (`brsf_noise`).
    """

    def _init_feedback_state(self, mode: str, generator: torch.Generator | None) -> None:
        self._mode = mode
        self.generator = generator
        self.register_buffer("brsf_state", None)
        self._follow_mode()

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        check_mode(value, repr(self))
        self._mode = value
        self._follow_mode()

    def _follow_mode(self) -> None:
        if self._mode == "brsf" and self.brsf_state is None:
            g = self.generator
            seed = int(torch.randint(0, 2**62, (), generator=g, device=g.device if g else None))
            self.brsf_state = torch.tensor([seed, 0], dtype=torch.int64)
        elif self._mode != "brsf":
            self.brsf_state = None  # leaving brsf: its stream goes (and leaves the state_dict)
        fb = self.feedback
        if self._mode == "kp" and not isinstance(fb, nn.Parameter):
            del self._buffers["feedback"]
            self.feedback = nn.Parameter(fb.detach())
        elif self._mode != "kp" and isinstance(fb, nn.Parameter):
            del self._parameters["feedback"]
            self.register_buffer("feedback", fb.detach())

    def backward_matrix(self, x: torch.Tensor) -> torch.Tensor:
        """B for this forward pass. brsf draws R only when a backward pass can follow."""
        mode = self._mode
        if mode in ("fa", "kp"):
            return self.feedback
        if mode != "brsf":
            return feedback_matrix(mode, self.weight, self.feedback)
        if torch.is_grad_enabled() and (
            x.requires_grad or any(p.requires_grad for p in self.parameters(recurse=False))
        ):
            with torch.no_grad():
                w = self.weight.detach()
                return _brsf_from_fresh_noise(w, brsf_noise(w, self.brsf_state))
        return self.feedback  # inference: B never enters a backward pass, so draw nothing

    def __getstate__(self) -> dict:
        """Pickled (``torch.save(layer)``, ``copy.deepcopy``) without `generator`: it only served
        initialisation, and a ``torch.Generator`` is not among what ``torch.load(weights_only=True)``
        accepts. `brsf_state` holds brsf's stream."""
        state = super().__getstate__()
        state["generator"] = None
        return state
