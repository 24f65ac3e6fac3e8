"""LinearFA vs nn.Linear on every path users train on: eager, torch.compile, autocast (and CUDA).

Reports time ratios FA/BP measured side by side in the same run (machines here are shared and noisy:
only ratios mean anything; `_timing` says how). Each target of the PyTorch-paths issue is printed
with PASS/FAIL; the exit status is 1 if any fails.

    python benchmarks/bench_linear.py [--quick] [--no-compile] [--threads N] [--json FILE]

Targets (CPU): layer fwd+bwd <= 1.03 from 512 features up; 3-layer MLP step <= 1.05 at 256x1024;
compiled MLP step (both models compiled) <= 1.05 at every size; autocast bf16 step: reported.
CUDA, where present: FA/BP MLP step with bf16 autocast and compile <= 1.02 at batch 2048,
1024-4096-4096-10, and peak memory <= BP's + the feedback matrices' size.
"""

from __future__ import annotations

import argparse
import json
import sys

import _timing
import torch
from torch import nn

from pyfa.torch import LinearFA, convert

LAYER_SIZES = [(64, 64), (256, 256), (64, 512), (1024, 512), (256, 1024), (1024, 2048)]  # (batch, feat)
MLP_SIZES = [(64, 256), (256, 1024)]
COMPILED_SIZES = [(64, 64), (256, 256), (256, 1024)]


def _layer_step(layer, x):
    def run():
        layer.zero_grad(set_to_none=True)
        x.grad = None
        layer(x).sum().backward()
    return run


def _train_step(model, opt, x, y, autocast_dtype=None):
    device = x.device.type

    def run():
        opt.zero_grad(set_to_none=True)
        if autocast_dtype is None:
            loss = nn.functional.mse_loss(model(x), y)
        else:
            with torch.autocast(device, dtype=autocast_dtype):
                loss = nn.functional.mse_loss(model(x).float(), y)
        loss.backward()
        opt.step()
    return run


def _mlp(widths: list[int], device: str) -> nn.Sequential:
    mods: list[nn.Module] = []
    for a, b in zip(widths[:-1], widths[1:], strict=True):
        mods += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*mods[:-1]).to(device)


def _pair(widths, device):
    """(BP model, FA model with the same weights), each with its own SGD optimiser."""
    bp, fa = _mlp(widths, device), _mlp(widths, device)
    fa.load_state_dict(bp.state_dict())
    convert(fa)
    return bp, fa


def _median_ratio(fa_fn, bp_fn, n_rounds: int, min_time: float) -> tuple[float, float, float]:
    """(FA/BP ratio, BP seconds, FA seconds), by `_timing`'s alternating rounds."""
    times = _timing.rounds({"bp": bp_fn, "fa": fa_fn}, n_rounds, min_time)
    return (_timing.ratio(times, "fa", "bp"), _timing.median_us(times, "bp") / 1e6,
            _timing.median_us(times, "fa") / 1e6)


def _row(device, case, batch, features, timing, target=None) -> dict:
    r, tb, tf = timing
    return dict(device=device, case=case, batch=batch, features=features, bp_us=tb * 1e6,
                fa_us=tf * 1e6, ratio=r, target=target,
                passed=None if target is None else bool(r <= target))


def run_cpu(quick: bool, compiled: bool) -> list[dict]:
    rounds, min_time = (5, 0.05) if quick else (11, 0.2)
    rows = []
    torch.manual_seed(0)
    for batch, feat in LAYER_SIZES:
        x = torch.randn(batch, feat, requires_grad=True)  # time the dL/dx path too
        lin = nn.Linear(feat, feat)
        fa = LinearFA.from_linear(nn.Linear(feat, feat))
        with torch.no_grad():
            fa.weight.copy_(lin.weight)
            fa.bias.copy_(lin.bias)
        rows.append(_row("cpu", "layer fwd+bwd", batch, feat,
                         _median_ratio(_layer_step(fa, x), _layer_step(lin, x), rounds, min_time),
                         1.03 if feat >= 512 else None))
    for batch, feat in MLP_SIZES:
        rows.append(_mlp_row("cpu", "3-layer MLP step", batch, [feat, feat, feat, 10], rounds, min_time,
                             1.05 if (batch, feat) == (256, 1024) else None))
    batch, feat = MLP_SIZES[-1]
    rows.append(_mlp_row("cpu", "MLP step, autocast bf16", batch, [feat, feat, feat, 10], rounds,
                         min_time, None, autocast_dtype=torch.bfloat16))
    if compiled:
        for batch, feat in COMPILED_SIZES[:2] if quick else COMPILED_SIZES:
            rows.append(_mlp_row("cpu", "MLP step, compiled", batch, [feat, feat, feat, 10], rounds,
                                 min_time, 1.05, compiled=True))
    return rows


def _mlp_row(device, case, batch, widths, rounds, min_time, target, *, autocast_dtype=None,
             compiled=False):
    x = torch.randn(batch, widths[0], device=device)
    y = torch.randn(batch, widths[-1], device=device)
    bp, fa = _pair(widths, device)
    run_bp, run_fa = bp, fa
    if compiled:
        torch._dynamo.reset()
        run_bp, run_fa = torch.compile(bp, fullgraph=True), torch.compile(fa, fullgraph=True)
    step_bp = _train_step(run_bp, torch.optim.SGD(bp.parameters(), lr=1e-3), x, y, autocast_dtype)
    step_fa = _train_step(run_fa, torch.optim.SGD(fa.parameters(), lr=1e-3), x, y, autocast_dtype)
    return _row(device, case, batch, "-".join(map(str, widths)),
                _median_ratio(step_fa, step_bp, rounds, min_time), target)


def run_cuda(quick: bool) -> list[dict]:
    """bf16 autocast + compile on the GPU, and peak memory FA vs BP."""
    rounds, min_time = (5, 0.1) if quick else (11, 0.5)
    widths, batch = [1024, 4096, 4096, 10], 2048
    rows = []
    for compiled in (False, True):
        case = "MLP step, bf16 autocast" + (", compiled" if compiled else "")
        rows.append(_mlp_row("cuda", case, batch, widths, rounds, min_time, 1.02 if compiled else None,
                             autocast_dtype=torch.bfloat16, compiled=compiled))
    feedback_bytes = sum(a * b * 4 for a, b in zip(widths[:-1], widths[1:], strict=True))
    peaks = {}
    for name in ("bp", "fa"):
        torch.cuda.empty_cache()
        model = _mlp(widths, "cuda")  # only the model measured is on the GPU
        if name == "fa":
            convert(model)
        x = torch.randn(batch, widths[0], device="cuda")
        y = torch.randn(batch, widths[-1], device="cuda")
        step = _train_step(torch.compile(model, fullgraph=True),
                           torch.optim.SGD(model.parameters(), lr=1e-3), x, y, torch.bfloat16)
        step()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        step()
        torch.cuda.synchronize()
        peaks[name] = torch.cuda.max_memory_allocated()
        del model, step
    extra = peaks["fa"] - peaks["bp"]
    rows.append(dict(device="cuda", case="peak memory FA - BP (MiB)", batch=batch,
                     features="-".join(map(str, widths)), bp_us=peaks["bp"] / 2**20,
                     fa_us=peaks["fa"] / 2**20, ratio=extra / 2**20,
                     target=feedback_bytes / 2**20, passed=bool(extra <= feedback_bytes)))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer, shorter rounds; fewer compiled sizes")
    ap.add_argument("--no-compile", action="store_true", help="skip the compiled cases (slow to build)")
    ap.add_argument("--json", help="also write the rows to this JSON file")
    _timing.add_arguments(ap)
    args = ap.parse_args()
    gpu = torch.cuda.is_available()
    print(_timing.quiet_process(args)
          + (f"; GPU: {torch.cuda.get_device_name()}" if gpu else "; no GPU (CUDA cases skipped)"))
    print(f"{'device':6} {'case':26} {'batch':>5} {'features':>15} {'BP us':>10} {'FA us':>10} "
          f"{'FA/BP':>6}  target")
    rows = []
    sections = [lambda: run_cpu(args.quick, not args.no_compile)] + ([lambda: run_cuda(args.quick)]
                                                                      if gpu else [])
    for section in sections:
        for row in section():
            rows.append(row)
            verdict = "" if row["target"] is None else (
                f"<= {row['target']:g} {'PASS' if row['passed'] else 'FAIL'}")
            print(f"{row['device']:6} {row['case']:26} {row['batch']:>5} {row['features']:>15} "
                  f"{row['bp_us']:10.1f} {row['fa_us']:10.1f} {row['ratio']:6.3f}  {verdict}",
                  flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    failed = [r for r in rows if r["passed"] is False]
    print(f"{len(failed)} target(s) missed" if failed else "every target met")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
