"""Train-step cost of every mode against backprop, on one MLP: the price of each rule.

784-1024-1024-10 relu MLP, batch 256, SGD step (forward, MSE, backward, update), CPU. Each mode's
model holds the same weights as the BP model (`nn.Linear`); the ratio is time(mode step) /
time(BP step), measured side by side in the same run (`_timing`: the machine is shared and noisy,
only ratios mean anything). Targets: fa, usf, frsf, dfa <= 1.10; brsf <= 1.30; kp <= 1.25.
The exit status is 1 if a target is missed.

    python benchmarks/bench_modes.py [--quick] [--threads N] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys

import _timing
import torch
from torch import nn

from pyfa.torch import DFASequential, convert

WIDTHS = [784, 1024, 1024, 10]
BATCH = 256
TARGETS = {"fa": 1.10, "usf": 1.10, "frsf": 1.10, "dfa": 1.10, "brsf": 1.30, "kp": 1.25}


def _mlp() -> nn.Sequential:
    mods: list[nn.Module] = []
    for a, b in zip(WIDTHS[:-1], WIDTHS[1:], strict=True):
        mods += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*mods[:-1])


def _model(mode: str, state) -> nn.Module:
    model = _mlp()
    model.load_state_dict(state)
    if mode == "bp":
        return model
    if mode == "dfa":
        return DFASequential.from_sequential(model, generator=torch.Generator().manual_seed(1))
    convert(model, mode, generator=torch.Generator().manual_seed(1))
    return model


def _step(model, x, y):
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)

    def run():
        opt.zero_grad(set_to_none=True)
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    return run


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer, shorter rounds")
    ap.add_argument("--json", help="also write the rows to this JSON file")
    _timing.add_arguments(ap)
    args = ap.parse_args()
    n_rounds, min_time = (5, 0.3) if args.quick else (11, 1.0)
    header = _timing.quiet_process(args)
    torch.manual_seed(0)
    state = _mlp().state_dict()
    x, y = torch.randn(BATCH, WIDTHS[0]), torch.randn(BATCH, WIDTHS[-1])
    steps = {m: _step(_model(m, state), x, y) for m in ("bp", *TARGETS)}
    times = _timing.rounds(steps, n_rounds, min_time)
    print(f"{header}; {'-'.join(map(str, WIDTHS))} MLP, batch {BATCH}, SGD train step")
    print(f"{'mode':6} {'ms':>8} {'vs BP':>7}  target")
    print(f"{'bp':6} {_timing.median_us(times, 'bp') / 1e3:8.2f} {1:7.3f}")
    rows, failed = [], []
    for mode, target in TARGETS.items():
        r = _timing.ratio(times, mode, "bp")
        ok = r <= target
        failed += [] if ok else [mode]
        rows.append(dict(mode=mode, ms=_timing.median_us(times, mode) / 1e3, ratio=r, target=target,
                         passed=ok))
        print(f"{mode:6} {rows[-1]['ms']:8.2f} {r:7.3f}  <= {target:g} {'PASS' if ok else 'FAIL'}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    print(f"target(s) missed: {', '.join(failed)}" if failed else "every target met")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
