"""The execution paths PyTorch users train on, each giving the FA gradients of one network.

Every path runs the same `DenseParams` network on the same numpy data and returns a `Gradients`
(MSE loss, per-layer weight and bias gradients, dL/dx), so `pyfa.crosscheck` can hold each one
against the numpy oracle and say whether it really used FA:

``eager``         the model called directly, in the network's dtype;
``autocast``      under ``torch.autocast("cpu", dtype=torch.bfloat16)``: bf16 products, fp32 gradients;
``autocast-cuda`` under ``torch.autocast("cuda", dtype=torch.float16)`` with a ``GradScaler``;
``autocast-cuda-bf16`` under ``torch.autocast("cuda", dtype=torch.bfloat16)``;
``compile``       ``torch.compile(model, fullgraph=True)`` (Inductor): one graph, no breaks;
``func``          per-sample gradients from ``vmap(grad(...))`` over ``functional_call``, summed;
``ddp``           ``DistributedDataParallel``, 2 CPU processes (gloo on 127.0.0.1), each holding
                  half the batch; the all-reduced gradient is the full batch's.

`unavailable_reason` says in one line why a path cannot run here (no CUDA, no distributed support).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from pyfa.network import DenseParams, Gradients
from pyfa.torch.modules import Conv2dFA, LinearFA
from pyfa.torch.network import (
    cnn_from_params,
    fa_layers,
    layer_gradients,
    loss_value,
    mlp_from_params,
    spec_layout,
)

PATHS = ("eager", "autocast", "autocast-cuda", "autocast-cuda-bf16", "compile", "func", "ddp")
#: The dtype each autocast path computes its products in (the others: the network's own dtype).
COMPUTE_DTYPE = {"autocast": torch.bfloat16, "autocast-cuda": torch.float16,
                 "autocast-cuda-bf16": torch.bfloat16}


def unavailable_reason(path: str) -> str | None:
    """Why `path` cannot run on this machine (one line), or None if it can."""
    if path not in PATHS:
        raise ValueError(f"unknown path {path!r}; expected one of {PATHS}")
    if path.startswith("autocast-cuda") and not torch.cuda.is_available():
        return "no CUDA device here (torch.cuda.is_available() is False)"
    if path == "ddp" and not (torch.distributed.is_available()
                              and torch.distributed.is_gloo_available()):
        return "this torch build has no torch.distributed with the gloo backend"
    return None


def path_gradients(path: str, layers: list[DenseParams], x: np.ndarray, y: np.ndarray,
                   mode: str = "fa", *, loss: str = "mse") -> Gradients:
    """Loss (``mse`` or ``ce``, `pyfa.torch.network.loss_value`) and gradients of the `layers`
    network on (x, y), computed along `path`. ``mode="dfa"`` runs a `DFASequential`."""
    reason = unavailable_reason(path)
    if reason is not None:
        raise RuntimeError(f"path {path!r} cannot run here: {reason}")
    if path == "ddp":
        from pyfa.torch.ddp import ddp_run

        return ddp_run(layers, x, y, mode, loss=loss)["gradients"]
    device = "cuda" if path.startswith("autocast-cuda") else "cpu"
    model = build_model(layers, mode, x.shape[1:], device=device)
    dtype = fa_layers(model)[0].weight.dtype
    xt = torch.tensor(x, dtype=dtype, device=device)
    yt = torch.tensor(y, dtype=dtype, device=device)
    if path == "func":
        value, grads, gx = _func_gradients(model, xt, yt, loss)
    else:
        value, grads, gx = _autograd_gradients(path, model, xt, yt, loss)
    return _gradients(path, mode, value, spec_layout(model, grads), gx, fa_layers(model), device)


def build_model(layers: list, mode: str, input_shape, device=None) -> nn.Sequential:
    """`mlp_from_params` for a list of `DenseParams`, else `cnn_from_params` (a CNN spec)."""
    if all(isinstance(p, DenseParams) for p in layers):
        return mlp_from_params(layers, mode, device=device)
    return cnn_from_params(layers, mode, input_shape=tuple(input_shape), device=device)


def _autograd_gradients(path, model, xt, yt, loss):
    xt.requires_grad_(True)
    run = torch.compile(model, fullgraph=True) if path == "compile" else model
    if path.startswith("autocast"):
        device = xt.device.type
        with torch.autocast(device, dtype=COMPUTE_DTYPE[path]):
            out = run(xt)
        value = loss_value(loss, out.float(), yt)
        if path == "autocast-cuda":  # fp16 needs loss scaling; the gradients come back unscaled
            scaler = torch.amp.GradScaler("cuda", init_scale=2.0**10)
            scaler.scale(value).backward()
            inv = 1.0 / scaler.get_scale()
            return value, layer_gradients(model, inv), xt.grad * inv
    else:
        value = loss_value(loss, run(xt), yt)
    value.backward()
    return value, layer_gradients(model), xt.grad


def _func_gradients(model, xt, yt, loss):
    """Per-sample gradients with ``vmap(grad(...))`` over ``functional_call``, summed."""
    from torch.func import functional_call, grad, vmap

    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = dict(model.named_buffers())
    # each sample's share of the batch loss: Σ_j (ŷ_ij - y_ij)² / (batch · out) for mse,
    # its cross-entropy / batch for ce
    share = yt.numel() if loss == "mse" else len(yt)

    def sample_loss(p, xi, yi):
        out = functional_call(model, (p, buffers), (xi.unsqueeze(0),))
        return loss_value(loss, out, yi.unsqueeze(0)) * (yi.numel() if loss == "mse" else 1) / share

    per_sample, per_sample_x = vmap(grad(sample_loss, argnums=(0, 1)), in_dims=(None, 0, 0))(
        params, xt, yt
    )
    summed = {k: v.sum(0) for k, v in per_sample.items()}
    names = [n for n, m in model.named_modules() if isinstance(m, (LinearFA, Conv2dFA))]
    grads = [{k: summed[f"{name}.{k}"] for k in ("weight", "bias", "feedback") if f"{name}.{k}" in summed}
             for name in names]
    with torch.no_grad():
        value = loss_value(loss, functional_call(model, (params, buffers), (xt,)), yt)
    return value, grads, per_sample_x


def _gradients(path, mode, value, grads, gx, layers, device) -> Gradients:
    def host(t):
        return t.detach().to("cpu").numpy().copy()

    return Gradients(
        loss=float(value.detach()),
        layers=[{k: host(v) for k, v in g.items()} for g in grads],
        input=host(gx),
        meta={"backend": "torch", "path": path, "mode": mode, "device": str(device),
              "compute_dtype": str(COMPUTE_DTYPE.get(path, layers[0].weight.dtype))
              .removeprefix("torch.")},
    )


__all__ = ["PATHS", "COMPUTE_DTYPE", "unavailable_reason", "path_gradients"]
