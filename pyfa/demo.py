"""`pyfa demo` (and `make demo`): the main job, end to end.

1. the cross-check on the forum's network (50-60-40-2, batch 64, MSE) with every available backend;
2. FA vs BP trained on scikit-learn's bundled digits with the same seed, plots written to --out.
"""

from __future__ import annotations

import time

import numpy as np


def add_arguments(p) -> None:
    p.add_argument("--out", default="runs/demo", help="where the training run writes its files")
    p.add_argument("--epochs", type=int, default=20, help="training epochs for each of FA and BP")
    p.add_argument("--skip-train", action="store_true", help="only the cross-check")


def run(args) -> int:
    from pyfa.crosscheck import crosscheck, format_report

    t0 = time.perf_counter()
    print("== 1. cross-check: the forum's network, same weights and data through every backend ==")
    report = crosscheck(None, sizes=(50, 60, 40, 2), batch=64, dtype=np.float32)
    print(format_report(report))
    status = 0 if report.ok else 1
    if not args.skip_train:
        print()
        print("== 2. FA vs BP on digits (scikit-learn's bundled 8x8 digits), torch backend ==")
        from pyfa import cli

        code = cli.main([
            "train", "--backend", "torch", "--dataset", "digits", "--compare", "fa,bp",
            "--epochs", str(args.epochs), "--out", args.out, "--force", "--seed", "0",
        ])  # --force: the demo rewrites its own folder on every run
        status = status or code
    print(f"\ndemo finished in {time.perf_counter() - t0:.0f} s")
    return status
