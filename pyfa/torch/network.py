"""PyTorch networks built from, and read back into, the backend-neutral numpy layers: MLPs of
`LinearFA` from `DenseParams`, and CNNs of `Conv2dFA`/pooling/`LinearFA` from the oracle's CNN specs
(`pyfa.reference.ConvParams`, `Pool2d`, `Flatten`, `DenseParams`)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from pyfa.network import DenseParams, Gradients, check_network
from pyfa.torch.modules import Conv2dFA, LinearFA

ACTIVATION_MODULES = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}
_ACTIVATION_NAMES = {cls: name for name, cls in ACTIVATION_MODULES.items()}


def layer_from_params(p, mode: str = "fa", *, device=None,
                      generator: torch.Generator | None = None) -> LinearFA | Conv2dFA:
    """A `LinearFA` (from ``DenseParams``) or `Conv2dFA` (from ``pyfa.reference.ConvParams``) in
    `mode`, holding copies of `p`'s weight, bias and feedback, in their dtype (float64 stays float64,
    anything else becomes float32)."""
    dtype = torch.float64 if p.weight.dtype == np.float64 else torch.float32
    kw = dict(bias=p.bias is not None, mode=mode, device=device, dtype=dtype, generator=generator)
    if isinstance(p, DenseParams):
        layer = LinearFA(p.in_features, p.out_features, **kw)
    else:
        layer = Conv2dFA(p.in_channels, p.out_channels, p.kernel_size, p.stride, p.padding,
                         p.dilation, p.groups, **kw)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(p.weight))
        layer.feedback.copy_(torch.from_numpy(p.feedback))
        if p.bias is not None:
            layer.bias.copy_(torch.from_numpy(p.bias))
    return layer


def mlp_from_params(
    layers: list[DenseParams], mode: str = "fa", *, device=None, generator=None
) -> nn.Sequential:
    """An ``nn.Sequential`` of `LinearFA` (+ activation modules) holding copies of `layers`' arrays.

    ``mode="dfa"`` gives a `DFASequential` (its layers in mode fa, so that the input gradient is the
    first layer's FA rule) whose B_l are the hidden layers' ``direct_feedback`` arrays.
    """
    check_network(layers)
    dfa = mode == "dfa"
    if dfa and len(layers) > 1 and any(p.direct_feedback is None for p in layers[:-1]):
        raise ValueError("mlp_from_params: mode 'dfa' needs a direct_feedback matrix on every hidden "
                         "layer: build the network with init_mlp(..., direct_feedback=True)")
    mods: list[nn.Module] = []
    for p in layers:
        mods.append(layer_from_params(p, "fa" if dfa else mode, device=device, generator=generator))
        if p.activation != "identity":
            mods.append(ACTIVATION_MODULES[p.activation]())
    if not dfa:
        return nn.Sequential(*mods)
    from pyfa.torch.dfa import DFASequential

    w = mods[0].weight
    direct = [torch.from_numpy(p.direct_feedback) for p in layers[:-1]]
    fused = torch.cat(direct, dim=1) if direct else torch.empty((layers[-1].out_features, 0))
    return DFASequential(*mods, direct_feedback=fused.to(device=w.device, dtype=w.dtype))


def params_from_mlp(model: nn.Sequential) -> list[DenseParams]:
    """Copies of the weights, feedback and biases of a `mlp_from_params`-style model, as numpy
    (with each hidden layer's ``direct_feedback`` for a `DFASequential`)."""
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
    direct = getattr(model, "direct_feedback_of", None)
    if direct is not None:
        for i, p in enumerate(layers[:-1]):
            p.direct_feedback = _np(direct(i))
    return layers


#: Modules with weights that the gradient readers report, FA or plain (a plain one is backprop).
WEIGHT_LAYERS = (LinearFA, Conv2dFA, nn.Linear, nn.Conv2d)
#: Parameter-free spec layers of the oracle's CNNs: an empty dict each in the gradients' layout.
SPEC_ONLY = (nn.AvgPool2d, nn.MaxPool2d, nn.Flatten)


def fa_layers(model: nn.Module) -> list[LinearFA | Conv2dFA]:
    """The FA layers (`LinearFA`, `Conv2dFA`) of `model`, in module order."""
    return [m for m in model.modules() if isinstance(m, (LinearFA, Conv2dFA))]


def layer_gradients(model: nn.Module, scale: float = 1.0) -> list[dict[str, torch.Tensor]]:
    """Each weight layer's gradients after a backward pass (times `scale`), in module order:
    ``weight``, ``bias`` (if any), ``feedback`` where it is trained (mode kp)."""
    out = []
    for m in model.modules():
        if isinstance(m, WEIGHT_LAYERS):
            g = {"weight": m.weight.grad * scale}
            if m.bias is not None:
                g["bias"] = m.bias.grad * scale
            if isinstance(getattr(m, "feedback", None), nn.Parameter):
                g["feedback"] = m.feedback.grad * scale
            out.append(g)
    return out


def spec_layout(model: nn.Sequential, grads: list) -> list:
    """Per-weight-layer gradients laid out as the oracle's `pyfa.reference.cnn_gradients`: one entry
    per spec layer, an empty dict for each pooling or flatten module (activation modules belong to
    their layer). An MLP's layout is its list of weight layers."""
    it = iter(grads)
    return [next(it) if isinstance(m, WEIGHT_LAYERS) else {} for m in model
            if isinstance(m, WEIGHT_LAYERS + SPEC_ONLY)]


def mlp_gradients(model: nn.Module, x: np.ndarray, y: np.ndarray, *, loss: str = "mse") -> Gradients:
    """Loss (``"mse"`` or softmax cross-entropy ``"ce"`` on one-hot/probability targets) and
    gradients of `model` on numpy (x, y), as numpy copies; see `pyfa.network`.

    The layers read are `model`'s `LinearFA` and plain `nn.Linear` modules, in module order (a plain
    `nn.Linear` is backprop: ``meta["mode"]`` is then ``"bp"``). A layer whose feedback is trained
    (mode kp) also reports ``"feedback"``.
    """
    layers = [m for m in model.modules() if isinstance(m, WEIGHT_LAYERS)]
    if not layers:
        raise TypeError(f"mlp_gradients: {type(model).__name__} has no linear or conv layer")
    w0 = layers[0].weight
    x, y = _to_numpy(x, "x"), _to_numpy(y, "y")
    xt = torch.tensor(x, dtype=w0.dtype, device=w0.device, requires_grad=True)
    yt = torch.as_tensor(y, dtype=w0.dtype, device=w0.device)
    model.zero_grad(set_to_none=True)
    out = model(xt)
    if yt.shape != out.shape:
        raise ValueError(f"mlp_gradients: target y has shape {tuple(yt.shape)}; the network gives "
                         f"{tuple(out.shape)} for x of shape {tuple(xt.shape)}")
    value = loss_value(loss, out, yt)
    value.backward()
    grads = [{k: _np(v) for k, v in g.items()} for g in layer_gradients(model)]
    model.zero_grad(set_to_none=True)
    mode = "dfa" if hasattr(model, "direct_feedback_of") else getattr(layers[0], "mode", "bp")
    return Gradients(
        loss=value.item(), layers=grads, input=_np(xt.grad),
        meta={"backend": "torch", "mode": mode, "device": str(w0.device), "loss": loss},
    )


LOSSES = ("mse", "ce")


def loss_value(loss: str, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``mse``: mean((ŷ − y)²) over every element; ``ce``: softmax cross-entropy with probability
    (one-hot) targets, averaged over the batch — the losses of `pyfa.reference.losses`."""
    if loss == "mse":
        return nn.functional.mse_loss(out, y)
    if loss == "ce":
        return nn.functional.cross_entropy(out, y)
    raise ValueError(f"unknown loss {loss!r}; expected one of {LOSSES}")


def _to_numpy(a, what: str) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().numpy()
    if not isinstance(a, np.ndarray):
        raise TypeError(f"mlp_gradients: {what} must be a numpy array or a torch.Tensor, "
                        f"got {type(a).__name__}")
    return a


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().copy()


__all__ = ["mlp_from_params", "layer_from_params", "params_from_mlp", "mlp_gradients", "fa_layers",
           "loss_value", "LOSSES", "cnn_from_params", "network_gradients", "layer_gradients",
           "spec_layout"]


def cnn_from_params(layers: list, mode: str = "fa", *, input_shape: tuple[int, ...] | None = None,
                    device=None, generator: torch.Generator | None = None) -> nn.Sequential:
    """An ``nn.Sequential`` for a CNN spec of the oracle (`pyfa.reference.cnn_gradients`): each
    ``ConvParams`` a `Conv2dFA` (+ activation), ``Pool2d`` an ``nn.AvgPool2d``/``nn.MaxPool2d``,
    ``Flatten`` an ``nn.Flatten``, each ``DenseParams`` a `LinearFA` (+ activation), holding copies of
    the arrays. ``mode="dfa"`` gives a `DFASequential` (needs `input_shape`, one sample's (C, H, W),
    and every hidden layer's ``direct_feedback``). `input_shape` (when given) is checked against the
    spec (`pyfa.reference.check_cnn`); `generator` seeds brsf's streams."""
    from pyfa.reference import ConvParams, Flatten, Pool2d, check_cnn

    if input_shape is not None:
        check_cnn(layers, (1, *input_shape))
    dfa = mode == "dfa"
    mods: list[nn.Module] = []
    direct = []
    for i, p in enumerate(layers):
        if isinstance(p, (ConvParams, DenseParams)):
            layer = layer_from_params(p, "fa" if dfa else mode, device=device, generator=generator)
        elif isinstance(p, Pool2d):
            pool = nn.AvgPool2d if p.kind == "avg" else nn.MaxPool2d
            mods.append(pool(p.kernel_size, p.stride))
            continue
        elif isinstance(p, Flatten):
            mods.append(nn.Flatten())
            continue
        else:
            raise TypeError(f"cnn_from_params: layer {i} is a {type(p).__name__}, not a CNN layer")
        mods.append(layer)
        if p.activation != "identity":
            mods.append(ACTIVATION_MODULES[p.activation]())
        if p.direct_feedback is not None:
            direct.append(torch.from_numpy(p.direct_feedback).reshape(len(p.direct_feedback), -1))
    if not dfa:
        return nn.Sequential(*mods)
    from pyfa.torch.dfa import DFASequential

    w = next(m.weight for m in mods if hasattr(m, "weight"))
    weighted = [p for p in layers if isinstance(p, (ConvParams, DenseParams))]
    if any(p.direct_feedback is None for p in weighted[:-1]) or weighted[-1].direct_feedback is not None:
        raise ValueError("cnn_from_params: mode 'dfa' needs a direct_feedback array on every hidden conv "
                         "and dense layer and none on the top one "
                         "(init_small_cnn(..., direct_feedback=True))")
    fused = torch.cat(direct, dim=1) if direct else None
    return DFASequential(*mods, input_shape=input_shape,
                         direct_feedback=None if fused is None else fused.to(device=w.device, dtype=w.dtype))


def network_gradients(model: nn.Sequential, x: np.ndarray, y: np.ndarray, *, loss: str = "mse"
                      ) -> Gradients:
    """`mlp_gradients` laid out as the oracle's `pyfa.reference.cnn_gradients` (`spec_layout`), for
    a `cnn_from_params` (or `mlp_from_params`) model."""
    grads = mlp_gradients(model, x, y, loss=loss)
    grads.layers = spec_layout(model, grads.layers)
    return grads
