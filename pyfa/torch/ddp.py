"""FA under ``DistributedDataParallel``: a network trained by several CPU processes (gloo, 127.0.0.1).

`ddp_run` starts one ``python -m pyfa.torch.ddp`` process per rank (plain subprocesses: nothing
depends on how the caller's own ``__main__`` was started), hands them the network and the data
through files in a temporary folder, and gathers what they computed. Every process stops by itself:
the process group times out after a minute, and `ddp_run` kills whatever still runs at `timeout`.

What DDP does to an FA model, and what the tests check: parameters are all-reduced (averaged) after
each backward pass; buffers — ``feedback``, and brsf's ``brsf_state`` — are broadcast from rank 0
when DDP wraps the model and before every forward pass. So every rank uses rank 0's feedback
matrices, and in mode brsf every rank draws the same R at every step (the draw is counter-based:
`pyfa.torch.feedback.brsf_noise`), which makes a DDP run equal a single-process run on the full
batch in every mode.

The processes meet through a file store in the temporary folder (no port to pick) and talk over
the loopback interface only (gloo's ``GLOO_SOCKET_IFNAME``): 127.0.0.1. `run_ranks` and
`init_process_group` serve any such multi-process run (the tests use them too).
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np

from pyfa.network import DenseParams, Gradients

WORLD_SIZE = 2
#: Seconds a whole DDP run may take (process start-up included) before its processes are killed.
TIMEOUT = 180.0


def ddp_run(layers: list[DenseParams], x: np.ndarray, y: np.ndarray, mode: str = "fa", *,
            steps: int = 0, lr: float = 0.1, convert_seeds: tuple[int, ...] | None = None,
            loss: str = "mse", world_size: int = WORLD_SIZE, timeout: float = TIMEOUT) -> dict:
    """Train the `layers` network with DDP on `world_size` CPU processes; return what they saw.

    Rank r holds the rows ``x[r::world_size]``. Its loss is its share of the full batch's loss
    (mse: its squared errors summed over batch · out; ce: its cross-entropies summed over batch),
    times world_size, so DDP's all-reduce (a mean over ranks) gives exactly the full batch's
    gradient for any split. After the
    first backward pass each rank takes `steps` SGD steps (learning rate `lr`; none when 0).

    Without `convert_seeds` each rank builds the network with `pyfa.torch.mlp_from_params` (the
    given feedback matrices). With one seed per rank, each rank builds a plain ``nn.Linear`` MLP of
    the network's weights and `pyfa.torch.convert`s it with ``torch.Generator().manual_seed(seed)``:
    different feedback per rank, which DDP must make identical.

    Returns ``{"gradients": Gradients of the first backward pass (rank 0's all-reduced parameter
    gradients, dL/dx reassembled from every rank), "rank_gradients": per rank, the same
    per-layer dicts, "ranks": per rank, {"weight", "bias", "feedback": per-layer arrays after the
    steps}}``.
    """
    if len(x) < world_size:
        raise ValueError(f"ddp_run: a batch of {len(x)} cannot be shared by {world_size} ranks")
    n = sum(hasattr(p, "weight") for p in layers)
    with tempfile.TemporaryDirectory(prefix="pyfa-ddp-") as tmp:
        arrays = {"x": x, "y": y}
        specs = _save_layers(layers, arrays)
        np.savez(os.path.join(tmp, "inputs.npz"), **arrays)
        config = {"world_size": world_size, "mode": mode, "steps": steps, "loss": loss,
                  "lr": lr, "convert_seeds": convert_seeds, "layers": specs}
        with open(os.path.join(tmp, "config.json"), "w") as f:
            json.dump(config, f)
        run_ranks(lambda r: [sys.executable, "-m", "pyfa.torch.ddp", tmp, str(r)], world_size, tmp, timeout)
        ranks = []
        for r in range(world_size):
            with np.load(os.path.join(tmp, f"rank{r}.npz"), allow_pickle=False) as z:
                ranks.append(dict(z))
    rank_grads = [
        [{k: z[f"grad{i}.{k}"] for k in ("weight", "bias", "feedback") if f"grad{i}.{k}" in z}
         for i in range(n)]
        for z in ranks
    ]
    it = iter(rank_grads[0])
    layout = [next(it) if hasattr(p, "weight") else {} for p in layers]  # the oracle's layout
    gx = np.empty(x.shape, dtype=ranks[0]["grad_x"].dtype)
    for r, z in enumerate(ranks):
        gx[r::world_size] = z["grad_x"]
    return {
        "gradients": Gradients(
            loss=float(sum(float(z["loss"]) for z in ranks)), layers=layout, input=gx,
            meta={"backend": "torch", "path": "ddp", "mode": mode, "device": "cpu",
                  "compute_dtype": str(ranks[0]["grad_x"].dtype), "world_size": world_size},
        ),
        "rank_gradients": rank_grads,
        "ranks": [{k: [z[f"{k}{i}"] for i in range(n) if f"{k}{i}" in z]
                   for k in ("weight", "bias", "feedback")} for z in ranks],
    }


def run_ranks(command, world_size: int, folder: str, timeout: float = TIMEOUT) -> None:
    """Run ``command(rank)`` (an argv list) as one process per rank, logging into `folder`; wait for
    all of them; kill any left at `timeout` seconds. RuntimeError, with the end of the failing
    rank's output, if one fails or time runs out."""
    logs, procs = [], []
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    try:
        for r in range(world_size):
            logs.append(open(os.path.join(folder, f"rank{r}.log"), "w+"))
            procs.append(subprocess.Popen(command(r), stdout=logs[r], stderr=subprocess.STDOUT, env=env))
        _wait(procs, logs, timeout)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for f in logs:
            f.close()


def init_process_group(folder: str, rank: int, world_size: int) -> None:
    """Join the gloo process group of a `run_ranks` run: a file store in `folder`, the loopback
    interface only, a one-minute timeout (so a lost peer cannot hang a rank)."""
    import torch.distributed as dist

    os.environ["GLOO_SOCKET_IFNAME"] = loopback_interface()
    dist.init_process_group("gloo", init_method="file://" + os.path.join(folder, "store"), rank=rank,
                            world_size=world_size, timeout=datetime.timedelta(seconds=60))


def loopback_interface() -> str:
    """The name of the loopback network interface (``lo`` on Linux, ``lo0`` on macOS, ...)."""
    names = [name for _, name in socket.if_nameindex()]
    exact = [n for n in names if n in ("lo", "lo0")]
    return (exact or [n for n in names if n.startswith("lo")] or ["lo"])[0]


def _wait(procs, logs, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while any(p.poll() is None for p in procs):
        failed = [r for r, p in enumerate(procs) if p.poll() not in (None, 0)]
        if failed or time.monotonic() > deadline:
            r = failed[0] if failed else 0
            logs[r].seek(0)
            tail = logs[r].read()[-2000:]
            what = (f"rank {r} exited with status {procs[r].returncode}" if failed
                    else f"the processes took over {timeout:.0f} s")
            raise RuntimeError(f"ddp: {what}; its output ends with:\n{tail}")
        time.sleep(0.05)
    bad = [r for r, p in enumerate(procs) if p.returncode != 0]
    if bad:
        logs[bad[0]].seek(0)
        raise RuntimeError(f"ddp: rank {bad[0]} exited with status {procs[bad[0]].returncode}:"
                           f"\n{logs[bad[0]].read()[-2000:]}")


def _save_layers(layers: list, arrays: dict) -> list[dict]:
    """Describe `layers` (DenseParams, or a CNN spec of the oracle) as JSON, their arrays into
    `arrays`; `_load_layers` reverses it."""
    from pyfa.reference import ConvParams, Pool2d

    specs = []
    for i, p in enumerate(layers):
        if isinstance(p, Pool2d):
            specs.append({"kind": "pool", "pool": p.kind, "kernel_size": p.kernel_size, "stride": p.stride})
            continue
        if not hasattr(p, "weight"):
            specs.append({"kind": "flatten"})
            continue
        for name in ("weight", "feedback", "bias", "direct_feedback"):
            if getattr(p, name) is not None:
                arrays[f"in.{name}{i}"] = getattr(p, name)
        spec = {"kind": "conv" if isinstance(p, ConvParams) else "dense", "activation": p.activation}
        if isinstance(p, ConvParams):
            spec.update(stride=p.stride, padding=p.padding, dilation=p.dilation, groups=p.groups)
        specs.append(spec)
    return specs


def _load_layers(specs: list[dict], arrays: dict) -> list:
    from pyfa.reference import ConvParams, Flatten, Pool2d

    layers = []
    for i, spec in enumerate(specs):
        kind = spec["kind"]
        if kind == "pool":
            layers.append(Pool2d(spec["pool"], tuple(spec["kernel_size"]), tuple(spec["stride"])))
            continue
        if kind == "flatten":
            layers.append(Flatten())
            continue
        a = {k: arrays.get(f"in.{k}{i}") for k in ("weight", "feedback", "bias", "direct_feedback")}
        if kind == "conv":
            layers.append(ConvParams(a["weight"], a["feedback"], a["bias"], tuple(spec["stride"]),
                                     tuple(spec["padding"]), tuple(spec["dilation"]), spec["groups"],
                                     spec["activation"], a["direct_feedback"]))
        else:
            layers.append(DenseParams(a["weight"], a["feedback"], a["bias"], spec["activation"],
                                      a["direct_feedback"]))
    return layers


def _worker(folder: str, rank: int) -> None:
    """One rank: read the inputs, train under DDP, write ``rank<r>.npz``."""
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    from pyfa.torch.network import fa_layers, layer_gradients

    with open(os.path.join(folder, "config.json")) as f:
        c = json.load(f)
    world_size = c["world_size"]
    with np.load(os.path.join(folder, "inputs.npz"), allow_pickle=False) as z:
        arrays = dict(z)
    layers = _load_layers(c["layers"], arrays)
    x, y = arrays["x"], arrays["y"]
    torch.set_num_threads(1)
    init_process_group(folder, rank, world_size)
    try:
        seeds = c["convert_seeds"]
        model = _rank_model(layers, c["mode"], None if seeds is None else seeds[rank], x.shape[1:])
        dtype = fa_layers(model)[0].weight.dtype
        ddp = DDP(model)
        opt = torch.optim.SGD(ddp.parameters(), lr=c["lr"])
        xs = torch.tensor(x[rank::world_size], dtype=dtype, requires_grad=True)
        ys = torch.tensor(y[rank::world_size], dtype=dtype)
        # this rank's share of the full batch's loss, times world_size
        scale = world_size / (y.size if c["loss"] == "mse" else len(y))
        record = {}
        for step in range(max(c["steps"], 1)):
            opt.zero_grad(set_to_none=True)
            xs.grad = None
            out = ddp(xs)
            if c["loss"] == "mse":
                loss = ((out - ys) ** 2).sum() * scale
            else:
                loss = torch.nn.functional.cross_entropy(out, ys, reduction="sum") * scale
            loss.backward()
            if step == 0:
                record["loss"] = np.asarray(loss.item() / world_size)
                record["grad_x"] = (xs.grad / world_size).numpy()
                for i, g in enumerate(layer_gradients(model)):
                    record.update({f"grad{i}.{k}": v.numpy().copy() for k, v in g.items()})
            if c["steps"]:
                opt.step()
        for i, m in enumerate(fa_layers(model)):
            record[f"weight{i}"] = m.weight.detach().numpy().copy()
            record[f"feedback{i}"] = m.feedback.detach().numpy().copy()
            if m.bias is not None:
                record[f"bias{i}"] = m.bias.detach().numpy().copy()
        np.savez(os.path.join(folder, f"rank{rank}.npz"), **record)
    finally:
        dist.destroy_process_group()


def _rank_model(layers: list, mode: str, convert_seed: int | None, input_shape=None):
    import torch
    from torch import nn

    from pyfa.torch.modules import convert
    from pyfa.torch.network import ACTIVATION_MODULES
    from pyfa.torch.paths import build_model

    if convert_seed is None:
        return build_model(layers, mode, input_shape)
    mods: list[nn.Module] = []
    for p in layers:
        dtype = torch.float64 if p.weight.dtype == np.float64 else torch.float32
        lin = nn.Linear(p.in_features, p.out_features, bias=p.bias is not None, dtype=dtype)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(p.weight))
            if p.bias is not None:
                lin.bias.copy_(torch.from_numpy(p.bias))
        mods.append(lin)
        if p.activation != "identity":
            mods.append(ACTIVATION_MODULES[p.activation]())
    model = nn.Sequential(*mods)
    convert(model, mode, generator=torch.Generator().manual_seed(convert_seed))
    return model


if __name__ == "__main__":
    _worker(sys.argv[1], int(sys.argv[2]))
