"""Conv2dFA vs nn.Conv2d, and vs BioTorch's FA conv Function, at LeNet-5 and ResNet-20 layer shapes.

One layer's forward + backward (∂x, ∂W and ∂b all computed: x requires a gradient), batch 128, CPU,
mode fa. The contenders hold the same weights and are timed in alternating rounds so that drift
hits all alike; in a round each one's time is its fastest call, and a ratio is the median over
rounds of that round's Conv2dFA time / the baseline's (`_timing`). Machines here are shared and
noisy: only ratios mean anything. Each target is printed with PASS/FAIL; the exit status is 1 if
any fails.

    python benchmarks/bench_conv.py [--quick] [--threads N] [--system-malloc] [--json FILE]

One thread by default: on a shared machine a multi-threaded kernel waits for its slowest thread,
so another process's burst stalls it (2-thread runs here under a load of 5 took 100 ms for a 2.5 ms
convolution); every contender runs the same kernels either way. Freed memory is kept by malloc
(`_timing.keep_freed_memory`) unless ``--system-malloc``.

Targets: ``Conv2dFA`` / ``nn.Conv2d`` <= 1.05 at every layer shape, and ``Conv2dFA`` / BioTorch's FA
conv autograd Function (``biotorch.autograd.fa.conv.Conv2dGrad``, what BioTorch's FA ``Conv2d``
layer applies; its backward calls ``torch.nn.grad.conv2d_input`` and ``conv2d_weight``, one
convolution backward each) on the same tensors <= 1.0. Reported, no target: a whole LeNet-5 SGD
step, ``convert``-ed to FA, over the same model with nn layers. On CUDA, where present: a whole
ResNet-20 SGD step (batch 128, CIFAR's 3×32×32, bf16 autocast), ``convert``-ed to FA, over the same
model with nn layers <= 1.05 (the GPU is timed to the end of each step; without CUDA it is skipped
and says so: on a CPU that step takes seconds).

BioTorch is not a dependency of pyfa: its column is measured when it is installed (``pip install
--no-deps biotorch``: pure Python, it pulls no other torch) and says how to install it when not.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys

import _timing
import torch
from torch import nn

from pyfa.torch import Conv2dFA, convert

try:  # an optional baseline, never a dependency
    from biotorch.autograd.fa.conv import Conv2dGrad as BioTorchConv2dGrad
except ImportError:
    BioTorchConv2dGrad = None

BATCH = 128
#: (model, layer, in_ch, out_ch, kernel, stride, padding, input H = W, bias): BioTorch's LeNet-5
#: (le_net.LeNetMNIST: 32×32 input, 5×5 kernels, no padding, bias) and ResNet-20
#: (small_resnet: 3×3 kernels, padding 1, no bias; stages 2 and 3 start with a stride-2 conv).
SHAPES = [
    ("LeNet-5", "conv1", 1, 6, 5, 1, 0, 32, True),
    ("LeNet-5", "conv2", 6, 16, 5, 1, 0, 14, True),
    ("LeNet-5", "conv3", 16, 120, 5, 1, 0, 5, True),
    ("ResNet-20", "stem", 3, 16, 3, 1, 1, 32, False),
    ("ResNet-20", "stage1", 16, 16, 3, 1, 1, 32, False),
    ("ResNet-20", "stage2 down", 16, 32, 3, 2, 1, 32, False),
    ("ResNet-20", "stage2", 32, 32, 3, 1, 1, 16, False),
    ("ResNet-20", "stage3 down", 32, 64, 3, 2, 1, 16, False),
    ("ResNet-20", "stage3", 64, 64, 3, 1, 1, 8, False),
]
TARGET_TORCH = 1.05
TARGET_BIOTORCH = 1.0
BIOTORCH_HINT = ("BioTorch is not installed, so its column is skipped; to measure it: "
                 "pip install --no-deps biotorch  (pure Python; it pulls no other torch)")


def _layer_step(forward, params, x):
    """One forward + backward of ``forward(x).sum()``, gradients reset first (none accumulate)."""
    def run():
        for p in params:
            p.grad = None
        x.grad = None
        forward(x).sum().backward()
    return run


def _layer_steps(cin, cout, k, stride, padding, hw, bias) -> dict:
    """{name: step}: nn.Conv2d, Conv2dFA with its weights, and BioTorch's Function applied to the
    Conv2dFA's own weight, feedback and bias (where installed)."""
    conv = nn.Conv2d(cin, cout, k, stride, padding, bias=bias)
    fa = Conv2dFA.from_conv(copy.deepcopy(conv))
    x = torch.randn(BATCH, cin, hw, hw, requires_grad=True)  # times the ∂x path too
    params = [p for p in (fa.weight, fa.bias) if p is not None]
    steps = {"nn.Conv2d": _layer_step(conv, list(conv.parameters()), x),
             "Conv2dFA": _layer_step(fa, params, x)}
    if BioTorchConv2dGrad is not None:
        def biotorch_fa(inp):  # what BioTorch's fa Conv2d.forward applies, without its module
            return BioTorchConv2dGrad.apply(inp, fa.weight, fa.feedback, fa.bias, None, fa.stride,
                                            fa.padding, fa.dilation, fa.groups)
        steps["BioTorch"] = _layer_step(biotorch_fa, params, x)
        _check_same_work(steps["Conv2dFA"], steps["BioTorch"], x, params)
    return steps


def _check_same_work(fa_step, other_step, x, params) -> None:
    """Raise unless both steps leave the same ∂x, ∂W (and ∂b): the same FA work is being timed."""
    got = []
    for step in (fa_step, other_step):
        step()
        got.append([t.grad.clone() for t in (x, *params)])
    for a, b in zip(*got, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * float(b.abs().max()))


def _lenet() -> nn.Sequential:
    """BioTorch's LeNetMNIST (32×32 input) as a Sequential."""
    return nn.Sequential(
        nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 120, 5), nn.ReLU(), nn.Flatten(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
    )


def _train_steps() -> dict:
    """{name: step}: one SGD step of LeNet-5 with nn layers, and of a converted copy (FA)."""
    bp = _lenet()
    fa = copy.deepcopy(bp)
    convert(fa)
    x, y = torch.randn(BATCH, 1, 32, 32), torch.randint(0, 10, (BATCH,))

    def step(model):
        opt = torch.optim.SGD(model.parameters(), lr=1e-3)

        def run():
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        return run
    return {"nn.Conv2d": step(bp), "Conv2dFA": step(fa)}


class _BasicBlock(nn.Module):
    """ResNet's basic block: conv-BN-relu-conv-BN plus the shortcut (a 1×1 conv and BN where the
    shape changes), then relu."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = nn.functional.relu(self.bn1(self.conv1(x)))
        return nn.functional.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


def resnet20(classes: int = 10) -> nn.Sequential:
    """ResNet-20 for 3×32×32 images (He et al. 2016): a 3×3 stem of 16 channels, three stages of
    three basic blocks (16, 32, 64 channels; stages 2 and 3 start with stride 2), global average
    pooling, a dense layer. Where a block changes the shape its shortcut is a 1×1 convolution (the
    paper's option B; its CIFAR nets pad with zeros instead), so the timed step has 21 convolutions."""
    layers: list[nn.Module] = [nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()]
    cin = 16
    for cout, stride in ((16, 1), (32, 2), (64, 2)):
        for i in range(3):
            layers.append(_BasicBlock(cin, cout, stride if i == 0 else 1))
            cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, classes)]
    return nn.Sequential(*layers)


def resnet_pair(device: str) -> tuple[nn.Module, nn.Module]:
    """(`resnet20` with nn layers, a converted copy with the same weights: FA), on `device`."""
    torch.manual_seed(0)
    bp = resnet20().to(device)
    fa = copy.deepcopy(bp)
    convert(fa)
    return bp, fa


def resnet_steps(device: str, batch: int = BATCH, dtype: torch.dtype = torch.bfloat16,
                 models: tuple[nn.Module, nn.Module] | None = None) -> dict:
    """{name: step}: one SGD step of `resnet20` under ``torch.autocast(device, dtype)``, with nn
    layers and as a converted copy (FA; `models` = `resnet_pair` by default); on CUDA each step
    ends with a synchronisation, so that its time is the GPU's."""
    bp, fa = models or resnet_pair(device)
    x = torch.randn(batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch,), device=device)

    def step(model):
        opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

        def run():
            opt.zero_grad(set_to_none=True)
            with torch.autocast(device, dtype=dtype):
                loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            if device == "cuda":
                torch.cuda.synchronize()
        return run
    return {"nn.Conv2d": step(bp), "Conv2dFA": step(fa)}


def _timed(steps: dict, n_rounds: int, min_time: float) -> dict:
    """{"us": {name: median round time}, "ratio": {baseline: Conv2dFA / baseline}} (`_timing`)."""
    times = _timing.rounds(steps, n_rounds, min_time)
    return {"us": {name: _timing.median_us(times, name) for name in times},
            "ratio": {name: _timing.ratio(times, "Conv2dFA", name) for name in times if name != "Conv2dFA"}}


def _row(model, layer, shape, timing, targets: dict) -> dict:
    passed = {b: bool(timing["ratio"][b] <= t) for b, t in targets.items() if b in timing["ratio"]}
    return dict(model=model, layer=layer, shape=shape, us=timing["us"], ratio=timing["ratio"],
                targets=targets, passed=passed)


def run(quick: bool):
    """Yield one row per layer shape, then the LeNet-5 train step."""
    rounds, min_time = (7, 0.15) if quick else (11, 0.3)
    torch.manual_seed(0)
    targets = {"nn.Conv2d": TARGET_TORCH, "BioTorch": TARGET_BIOTORCH}
    for model, layer, cin, cout, k, stride, padding, hw, bias in SHAPES:
        timing = _timed(_layer_steps(cin, cout, k, stride, padding, hw, bias), rounds, min_time)
        yield _row(model, layer, f"{cin}->{cout} k{k} s{stride} {hw}x{hw}", timing, targets)
    yield _row("LeNet-5", "SGD step", "whole net, convert()", _timed(_train_steps(), rounds, min_time), {})
    if torch.cuda.is_available():
        yield _row("ResNet-20", "CUDA step", "bf16 autocast, convert()",
                   _timed(resnet_steps("cuda"), rounds, min_time), {"nn.Conv2d": TARGET_TORCH})


def _cell(row, baseline) -> str:
    if baseline not in row["ratio"]:
        return f"{'-':>7} {'':9}"
    r = row["ratio"][baseline]
    if baseline not in row["passed"]:
        return f"{r:7.3f} {'':9}"
    return f"{r:7.3f} {'PASS' if row['passed'][baseline] else 'FAIL':9}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="7 short rounds instead of 11 longer ones")
    _timing.add_arguments(ap)
    ap.add_argument("--json", help="also write the rows to this JSON file")
    args = ap.parse_args()
    print(_timing.quiet_process(args))
    print(f"batch {BATCH}, one layer fwd+bwd (x, weight and bias gradients), mode fa")
    if BioTorchConv2dGrad is None:
        print(BIOTORCH_HINT)
    if not torch.cuda.is_available():
        print("no CUDA device: the ResNet-20 bf16 train step (CUDA only) is skipped")
    print(f"{'model':9} {'layer':11} {'shape':21} {'nn us':>8} {'BioT us':>8} {'FA us':>8} "
          f"{'FA/nn':>7} {'<=' + str(TARGET_TORCH):9} {'FA/BioT':>7} {'<=' + str(TARGET_BIOTORCH):9}")
    rows = []
    for row in run(args.quick):
        rows.append(row)
        us = row["us"]
        bio = f"{us['BioTorch']:8.0f}" if "BioTorch" in us else f"{'-':>8}"
        print(f"{row['model']:9} {row['layer']:11} {row['shape']:21} {us['nn.Conv2d']:8.0f} {bio} "
              f"{us['Conv2dFA']:8.0f} {_cell(row, 'nn.Conv2d')} {_cell(row, 'BioTorch')}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    failed = [(r["layer"], b) for r in rows for b, ok in r["passed"].items() if not ok]
    print(f"{len(failed)} target(s) missed: {failed}" if failed else "every target met")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
