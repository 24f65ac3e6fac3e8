"""The torch models of ``pyfa train``, built from the numpy networks of `pyfa.train.models`.

- An MLP (a list of `DenseParams`) is `pyfa.torch.mlp_from_params`: an ``nn.Sequential`` of
  `LinearFA`, or a `DFASequential` in mode dfa.
- A CNN spec of the oracle (`ConvParams`, `Pool2d`, `Flatten`, `DenseParams`) is a `CNN`: an
  ``nn.Unflatten`` that turns the flat rows of a dataset back into images, then `Conv2dFA`,
  ``nn.MaxPool2d``/``nn.AvgPool2d``, ``nn.Flatten`` and `LinearFA` with their activations, every
  layer in the run's mode (fa, bp, usf, brsf, frsf or kp), holding copies of the spec's arrays.
  In mode dfa it is a `DFACNN`: the same modules in a `pyfa.torch.DFASequential`, every hidden
  conv and dense layer hearing the output error through its own matrix (the spec's
  ``direct_feedback``). `spec_from_torch` reads the trained arrays back into a spec, for the
  metrics.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from pyfa.network import DenseParams
from pyfa.reference import ConvParams, Flatten, Pool2d
from pyfa.torch import ACTIVATION_MODULES, Conv2dFA, DFASequential, LinearFA, mlp_from_params
from pyfa.torch.network import layer_from_params
from pyfa.train.models import lenet_spec

_ACTIVATION_NAMES = {cls: name for name, cls in ACTIVATION_MODULES.items()}


class _Architecture:
    """What a trained CNN records to be rebuilt: its input image shape, its architecture's name
    (e.g. ``"lenet"``) and activation (`architecture_info`, saved by `pyfa.checkpoint`)."""

    def _set_architecture(self, input_shape, architecture: str | None, activation: str) -> None:
        self.input_shape = tuple(int(v) for v in input_shape)
        self.architecture = architecture
        self.activation = activation

    def architecture_info(self) -> dict:
        """``{"name", "input_shape", "classes", "activation"}``; a ValueError for a CNN that is no
        named architecture (it cannot be rebuilt from a description)."""
        if self.architecture is None:
            raise ValueError("this CNN is no named architecture: save its state_dict with torch")
        top = [m for m in self if isinstance(m, (Conv2dFA, LinearFA))][-1]
        return {"name": self.architecture, "input_shape": list(self.input_shape),
                "classes": int(top.weight.shape[0]), "activation": self.activation}


class CNN(_Architecture, nn.Sequential):
    """An ``nn.Sequential`` CNN of FA layers (`cnn_from_spec`) that knows the image shape of its
    flat input rows and, for a named architecture such as ``"lenet"``, how to be rebuilt:
    `architecture_info` is what `pyfa.checkpoint` records to load its state dict again (`rebuild`).
    """

    def __init__(self, *modules: nn.Module, input_shape, architecture: str | None = None,
                 activation: str = "relu") -> None:
        super().__init__(*modules)
        self._set_architecture(input_shape, architecture, activation)

    def extra_repr(self) -> str:
        return f"input_shape={self.input_shape}, architecture={self.architecture!r}"


class DFACNN(_Architecture, DFASequential):
    """`CNN`'s modules trained by direct feedback alignment (`pyfa.torch.DFASequential`)."""

    def __init__(self, *modules: nn.Module, input_shape, direct_feedback=None,
                 generator: torch.Generator | None = None, architecture: str | None = None,
                 activation: str = "relu") -> None:
        flat = (int(np.prod(input_shape)),)  # the rows the first module (an nn.Unflatten) takes
        super().__init__(*modules, input_shape=flat, generator=generator, direct_feedback=direct_feedback)
        self._set_architecture(input_shape, architecture, activation)


def torch_model(model: str, network: list, mode: str, *, input_shape=None, device=None,
                generator=None) -> nn.Module:
    """The torch model of `network` (numpy, from `pyfa.train.models.initial_network`) in `mode`."""
    if model == "lenet":
        return cnn_from_spec(network, mode, input_shape, device=device, generator=generator,
                             architecture="lenet")
    return mlp_from_params(network, mode, device=device, generator=generator)


def cnn_from_spec(spec: list, mode: str, input_shape, *, device=None,
                  generator: torch.Generator | None = None, architecture: str | None = None) -> CNN:
    """A `CNN` holding copies of `spec`'s arrays, every conv and dense layer in `mode`; in mode dfa a
    `DFACNN` (its layers in mode fa, its B_l the spec's ``direct_feedback``, or drawn from
    `generator` where the spec has none). It takes flat rows (N, C·H·W), `input_shape` = (C, H, W)."""
    dfa = mode == "dfa"
    mode = "fa" if dfa else mode
    mods: list[nn.Module] = [nn.Unflatten(1, tuple(int(v) for v in input_shape))]
    activations = set()
    for p in spec:
        if isinstance(p, (ConvParams, DenseParams)):
            mods.append(layer_from_params(p, mode, device=device, generator=generator))
            if p.activation != "identity":
                mods.append(ACTIVATION_MODULES[p.activation]())
                activations.add(p.activation)
        elif isinstance(p, Pool2d):
            mods.append((nn.MaxPool2d if p.kind == "max" else nn.AvgPool2d)(p.kernel_size, p.stride))
        elif isinstance(p, Flatten):
            mods.append(nn.Flatten())
        else:
            raise TypeError(f"cnn_from_spec: {type(p).__name__} is not a CNN spec layer")
    activation = activations.pop() if len(activations) == 1 else "identity"
    if not dfa:
        return CNN(*mods, input_shape=input_shape, architecture=architecture, activation=activation)
    weighted = [p for p in spec if isinstance(p, (ConvParams, DenseParams))][:-1]
    direct = None
    if all(p.direct_feedback is not None for p in weighted):
        w = next(m.weight for m in mods if isinstance(m, (Conv2dFA, LinearFA)))
        direct = torch.cat([torch.from_numpy(p.direct_feedback).reshape(len(p.direct_feedback), -1)
                            for p in weighted], dim=1).to(device=w.device, dtype=w.dtype)
    return DFACNN(*mods, input_shape=input_shape, direct_feedback=direct, generator=generator,
                  architecture=architecture, activation=activation)


def spec_from_torch(model: nn.Module) -> list:
    """Copies of a `CNN`'s arrays as an oracle CNN spec (the inverse of `cnn_from_spec`)."""
    spec: list = []
    for m in model:
        if isinstance(m, Conv2dFA):
            if isinstance(m.padding, str) or m.padding_mode != "zeros":
                raise TypeError(f"spec_from_torch: {m!r} pads in a way ConvParams cannot describe")
            spec.append(ConvParams(_np(m.weight), _np(m.feedback), _bias(m), m.stride, m.padding,
                                   m.dilation, m.groups))
        elif isinstance(m, LinearFA):
            spec.append(DenseParams(_np(m.weight), _np(m.feedback), _bias(m)))
        elif type(m) in _ACTIVATION_NAMES and spec and getattr(spec[-1], "activation", None) == "identity":
            spec[-1].activation = _ACTIVATION_NAMES[type(m)]
        elif isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
            spec.append(Pool2d("max" if isinstance(m, nn.MaxPool2d) else "avg", m.kernel_size, m.stride))
        elif isinstance(m, nn.Flatten):
            spec.append(Flatten())
        elif not isinstance(m, nn.Unflatten):
            raise TypeError(f"spec_from_torch: unsupported module {m!r}")
    if isinstance(model, DFASequential):  # each hidden layer's B_l, in its output's shape
        weighted = [p for p in spec if isinstance(p, (ConvParams, DenseParams))][:-1]
        for layer, p in enumerate(weighted):
            p.direct_feedback = _np(model.direct_feedback_of(layer))
    return spec


def rebuild(info: dict, mode: str, *, device=None) -> CNN | DFACNN:
    """An untrained `CNN` of the architecture `info` (`CNN.architecture_info`) in `mode`: the
    skeleton into which a checkpoint's state dict is loaded."""
    if info.get("name") != "lenet":
        raise ValueError(f"unknown architecture {info.get('name')!r}; this pyfa knows 'lenet'")
    spec = lenet_spec(info["input_shape"], int(info["classes"]), activation=info["activation"],
                      direct_feedback=mode == "dfa")
    return cnn_from_spec(spec, mode, info["input_shape"], device=device, architecture="lenet")


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().copy()


def _bias(m) -> np.ndarray | None:
    return None if m.bias is None else _np(m.bias)


__all__ = ["CNN", "DFACNN", "torch_model", "cnn_from_spec", "spec_from_torch", "rebuild"]
