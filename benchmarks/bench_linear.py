"""LinearFA vs nn.Linear: forward+backward per size, and a 3-layer MLP training step.

Reports the median time ratio FA/BP measured in the same run (machines here are shared and noisy:
only ratios are meaningful). BP and FA are timed in alternating rounds so drift hits both alike.
Runs on CUDA as well when a GPU is present.

    python benchmarks/bench_linear.py [--quick] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch
from torch import nn
from torch.utils import benchmark

from pyfa.torch import LinearFA, convert

SIZES = [(64, 64), (256, 256), (64, 512), (1024, 512), (256, 1024), (1024, 2048)]  # (batch, features)


def _layer_step(layer, x):
    def run():
        layer.zero_grad(set_to_none=True)
        x.grad = None
        layer(x).sum().backward()
    return run


def _mlp_step(model, opt, x, y):
    def run():
        opt.zero_grad(set_to_none=True)
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    return run


def _mlp(feat: int, device: str) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(feat, feat), nn.ReLU(), nn.Linear(feat, feat), nn.ReLU(), nn.Linear(feat, 10)
    ).to(device)


def _median_ratio(fa_fn, bp_fn, rounds: int, min_time: float) -> tuple[float, float, float]:
    fa_t, bp_t = [], []
    for _ in range(rounds):
        for fn, times in ((bp_fn, bp_t), (fa_fn, fa_t)):
            timer = benchmark.Timer("f()", globals={"f": fn})
            times.append(timer.blocked_autorange(min_run_time=min_time).median)
    ratios = [f / b for f, b in zip(fa_t, bp_t, strict=True)]
    return statistics.median(ratios), statistics.median(bp_t), statistics.median(fa_t)


def run(device: str, quick: bool) -> list[dict]:
    rounds, min_time = (3, 0.05) if quick else (7, 0.2)
    rows = []
    torch.manual_seed(0)
    for batch, feat in SIZES:
        x = torch.randn(batch, feat, device=device, requires_grad=True)  # time the dL/dx path too
        lin = nn.Linear(feat, feat, device=device)
        fa = LinearFA.from_linear(lin)
        r, tb, tf = _median_ratio(_layer_step(fa, x), _layer_step(lin, x), rounds, min_time)
        rows.append(dict(device=device, case="layer fwd+bwd", batch=batch, features=feat,
                         bp_us=tb * 1e6, fa_us=tf * 1e6, ratio=r))
    for batch, feat in [(64, 256), (256, 1024)]:
        x, y = torch.randn(batch, feat, device=device), torch.randn(batch, 10, device=device)
        bp, fa = _mlp(feat, device), _mlp(feat, device)
        fa.load_state_dict(bp.state_dict())
        convert(fa)
        fa.to(device)
        fbp = _mlp_step(bp, torch.optim.SGD(bp.parameters(), lr=1e-3), x, y)
        ffa = _mlp_step(fa, torch.optim.SGD(fa.parameters(), lr=1e-3), x, y)
        r, tb, tf = _median_ratio(ffa, fbp, rounds, min_time)
        rows.append(dict(device=device, case="3-layer MLP SGD step", batch=batch, features=feat,
                         bp_us=tb * 1e6, fa_us=tf * 1e6, ratio=r))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer, shorter rounds")
    ap.add_argument("--json", help="also write the rows to this JSON file")
    args = ap.parse_args()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
          + (f", GPU: {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"))
    print(f"{'device':6} {'case':22} {'batch':>5} {'feat':>5} {'BP us':>9} {'FA us':>9} {'FA/BP':>6}")
    for dev in devices:
        for row in run(dev, args.quick):
            rows.append(row)
            print(f"{row['device']:6} {row['case']:22} {row['batch']:>5} {row['features']:>5} "
                  f"{row['bp_us']:9.1f} {row['fa_us']:9.1f} {row['ratio']:6.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
