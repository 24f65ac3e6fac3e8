"""`pyfa demo` (and `make demo`): the main job, end to end.

1. the cross-check on the forum's network (50-60-40-2, batch 64, MSE) with every available backend;
2. FA vs BP trained on scikit-learn's bundled digits with the same seed, plots written to --out.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from pyfa.cli import positive_int_arg
from pyfa.train.rundir import LOCK_NAME

DEFAULT_OUT = "runs/demo"
#: What a demo run leaves in its folder; a folder holding only these may be rewritten (the lock
#: file is left only by a demo that was killed).
DEMO_FILES = {"fa", "bp", "histories.json", "compare_curves.png", "compare_alignment.png",
              LOCK_NAME}
EXIT_STATUS = """\
exit status:
  0    the cross-check passed and training finished
  1    the cross-check failed (a backend disagrees with the numpy reference, or silently used
       backprop), or training stopped on a NaN or infinite loss
  2    a bad option or an unusable --out (checked before anything runs)
  130  interrupted by Ctrl-C (SIGINT), 143 by SIGTERM during training"""


def add_arguments(p) -> None:
    p.add_argument("--out", default=DEFAULT_OUT,
                   help=f"where the training run writes its files (default: {DEFAULT_OUT}); "
                   "a non-empty folder must hold an earlier demo's files, unless --force")
    p.add_argument("--epochs", type=positive_int_arg, default=20,
                   help="training epochs for each of FA and BP, at least 1 (default: 20)")
    p.add_argument("--force", action="store_true", help="write into --out whatever it holds")
    p.add_argument("--skip-train", action="store_true", help="only the cross-check")


def run(args) -> int:
    from pyfa.crosscheck import crosscheck, format_report

    if not args.out.strip():
        print("pyfa demo: --out '' names no folder; give one (default: runs/demo)", file=sys.stderr)
        return 2
    out = Path(args.out)
    if not args.skip_train and out.exists() and not out.is_dir():
        print(f"pyfa demo: --out {out} is an existing file; give a folder", file=sys.stderr)
        return 2
    if not args.skip_train and not args.force and out.is_dir():
        foreign = sorted(p.name for p in out.iterdir() if p.name not in DEMO_FILES)
        if foreign:
            print(f"pyfa demo: --out {out} holds files that are not an earlier demo's "
                  f"({', '.join(foreign[:5])}); pick another folder or pass --force",
                  file=sys.stderr)
            return 2
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
        ])  # --force: the folder is new, an earlier demo's, or the user said --force
        status = status or code
    print(f"\ndemo finished in {time.perf_counter() - t0:.0f} s")
    return status
