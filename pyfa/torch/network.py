"""PyTorch MLPs of `LinearFA` layers built from, and read back into, backend-neutral `DenseParams`."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from pyfa.network import DenseParams, Gradients, check_network
from pyfa.torch.modules import LinearFA

_ACTIVATION_MODULES = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}
_ACTIVATION_NAMES = {cls: name for name, cls in _ACTIVATION_MODULES.items()}


def mlp_from_params(
    layers: list[DenseParams], mode: str = "fa", *, device=None, generator=None
) -> nn.Sequential:
    """An ``nn.Sequential`` of `LinearFA` (+ activation modules) holding copies of `layers`' arrays."""
    check_network(layers)
    mods: list[nn.Module] = []
    for p in layers:
        dtype = torch.float64 if p.weight.dtype == np.float64 else torch.float32
        lin = LinearFA(
            p.in_features, p.out_features, bias=p.bias is not None, mode=mode,
            device=device, dtype=dtype, generator=generator,
        )
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(p.weight))
            lin.feedback.copy_(torch.from_numpy(p.feedback))
            if p.bias is not None:
                lin.bias.copy_(torch.from_numpy(p.bias))
        mods.append(lin)
        if p.activation != "identity":
            mods.append(_ACTIVATION_MODULES[p.activation]())
    return nn.Sequential(*mods)


def params_from_mlp(model: nn.Sequential) -> list[DenseParams]:
    """Copies of the weights, feedback and biases of a `mlp_from_params`-style model, as numpy."""
    layers: list[DenseParams] = []
    for m in model:
        if isinstance(m, LinearFA):
            layers.append(
                DenseParams(
                    _np(m.weight), _np(m.feedback), None if m.bias is None else _np(m.bias)
                )
            )
        elif type(m) in _ACTIVATION_NAMES and layers and layers[-1].activation == "identity":
            layers[-1].activation = _ACTIVATION_NAMES[type(m)]
        elif not isinstance(m, nn.Identity):
            raise TypeError(f"params_from_mlp: unsupported module {m!r} in the Sequential")
    return layers


def fa_layers(model: nn.Module) -> list[LinearFA]:
    """The LinearFA layers of `model`, in module order."""
    return [m for m in model.modules() if isinstance(m, LinearFA)]


def mlp_gradients(model: nn.Module, x: np.ndarray, y: np.ndarray) -> Gradients:
    """MSE loss and gradients of `model` on numpy (x, y), as numpy copies; see `pyfa.network`.

    The layers read are `model`'s `LinearFA` and plain `nn.Linear` modules, in module order (a plain
    `nn.Linear` is backprop: ``meta["mode"]`` is then ``"bp"``).
    """
    layers = [m for m in model.modules() if isinstance(m, (LinearFA, nn.Linear))]
    if not layers:
        raise TypeError(f"mlp_gradients: {type(model).__name__} has no LinearFA or nn.Linear layer")
    w0 = layers[0].weight
    x, y = _to_numpy(x, "x"), _to_numpy(y, "y")
    xt = torch.tensor(x, dtype=w0.dtype, device=w0.device, requires_grad=True)
    yt = torch.as_tensor(y, dtype=w0.dtype, device=w0.device)
    model.zero_grad(set_to_none=True)
    out = model(xt)
    if yt.shape != out.shape:
        raise ValueError(f"mlp_gradients: target y has shape {tuple(yt.shape)}; the network gives "
                         f"{tuple(out.shape)} for x of shape {tuple(xt.shape)}")
    loss = nn.functional.mse_loss(out, yt)
    loss.backward()
    grads = []
    for m in layers:
        g = {"weight": _np(m.weight.grad)}
        if m.bias is not None:
            g["bias"] = _np(m.bias.grad)
        grads.append(g)
    model.zero_grad(set_to_none=True)
    return Gradients(
        loss=loss.item(), layers=grads, input=_np(xt.grad),
        meta={"backend": "torch", "mode": getattr(layers[0], "mode", "bp"), "device": str(w0.device)},
    )


def _to_numpy(a, what: str) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().numpy()
    if not isinstance(a, np.ndarray):
        raise TypeError(f"mlp_gradients: {what} must be a numpy array or a torch.Tensor, "
                        f"got {type(a).__name__}")
    return a


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().copy()


__all__ = ["mlp_from_params", "params_from_mlp", "mlp_gradients", "fa_layers"]
