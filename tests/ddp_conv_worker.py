"""One DDP rank training a converted CNN whose layers are in different modes, for
tests/test_torch_conv.py (`pyfa.torch.ddp.ddp_run` trains one mode at a time).

    python tests/ddp_conv_worker.py FOLDER RANK

FOLDER holds ``config.json`` (world_size, steps, lr, seeds: one convert seed per rank) and
``inputs.npz`` (x, y and the plain CNN's state dict). The rank trains on the rows ``x[rank::world_size]``
with its share of the full batch's mean squared error, so DDP's all-reduce (a mean over ranks) gives
the full batch's gradient, and writes its model's final ``state_dict`` to ``rank<RANK>.npz``. The
process group times out after a minute; the test kills whatever still runs after its own timeout.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

MODES = {0: "brsf", 3: "fa", 7: "kp"}  # layer index -> mode


def build_model(arrays: dict, seed: int):
    """conv-relu-avgpool-conv-relu-avgpool-flatten-linear holding `arrays`' weights (state-dict
    names), converted with ``torch.Generator().manual_seed(seed)``; layer modes as in `MODES`."""
    import torch
    from torch import nn

    from pyfa.torch import convert

    w0, w3, w7 = arrays["0.weight"], arrays["3.weight"], arrays["7.weight"]
    dtype = torch.float64 if w0.dtype == np.float64 else torch.float32
    model = nn.Sequential(
        nn.Conv2d(w0.shape[1], w0.shape[0], w0.shape[2:], padding=w0.shape[2] // 2, dtype=dtype),
        nn.ReLU(), nn.AvgPool2d(2),
        nn.Conv2d(w3.shape[1], w3.shape[0], w3.shape[2:], padding=w3.shape[2] // 2, dtype=dtype),
        nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
        nn.Linear(w7.shape[1], w7.shape[0], dtype=dtype),
    )
    model.load_state_dict({k: torch.from_numpy(arrays[k]) for k in model.state_dict()})
    convert(model, "fa", generator=torch.Generator().manual_seed(seed))
    for i, mode in MODES.items():
        model[i].mode = mode
    return model


def main(folder: str, rank: int) -> None:
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    from pyfa.torch.ddp import init_process_group

    with open(os.path.join(folder, "config.json")) as f:
        c = json.load(f)
    with np.load(os.path.join(folder, "inputs.npz")) as z:
        arrays = dict(z)
    world_size = c["world_size"]
    torch.set_num_threads(1)
    init_process_group(folder, rank, world_size)  # a file store in FOLDER, loopback only
    try:
        model = build_model(arrays, c["seeds"][rank])
        ddp = DDP(model)
        opt = torch.optim.SGD(ddp.parameters(), lr=c["lr"])
        x, y = arrays["x"], arrays["y"]
        xs, ys = torch.from_numpy(x[rank::world_size]), torch.from_numpy(y[rank::world_size])
        scale = world_size / y.size  # this rank's share of mean((ŷ - y)²) over the full batch
        for _ in range(c["steps"]):
            opt.zero_grad(set_to_none=True)
            (((ddp(xs) - ys) ** 2).sum() * scale).backward()
            opt.step()
        np.savez(os.path.join(folder, f"rank{rank}.npz"),
                 **{k: v.detach().numpy() for k, v in model.state_dict().items()})
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
