"""`pyfa forum`: the Discourse thread that started pyfa, reproduced.

The post's `DenseFA` layer defined its rule as ``function rrule(...)`` after ``using ChainRulesCore``.
That creates a NEW function ``rrule`` in the user's module; Zygote only looks up methods of
``ChainRulesCore.rrule``, never sees it, and differentiates the layer's plain ``W * x`` instead:
ordinary backprop, no error, no warning. The fix is ``function ChainRulesCore.rrule(...)``.

This command runs, on the post's network (50-60-40-2, batch 64, MSE) with identical seeded weights:
- statically, `pyfa lint` on both Julia snippets (works without Julia);
- in Julia (when available), both snippets in fresh modules: the bug gives backprop, the fix FA;
- in PyTorch, the FA port next to a plain `nn.Linear` network (backprop) on the same weights;
each judged against the numpy oracle's FA and BP gradients.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pyfa import reference
from pyfa.crosscheck import VERDICT_BP, VERDICT_FA, one_line, verdict
from pyfa.network import DenseParams, Gradients, init_mlp

SIZES = (50, 60, 40, 2)
BATCH = 64
ACTIVATION = "relu"
SNIPPETS = {
    "bug": Path(__file__).parent / "julia" / "forum_bug.jl",
    "fix": Path(__file__).parent / "julia" / "forum_fix.jl",
}


@dataclass
class ForumCase:
    name: str
    expected: str
    got: str | None
    gradients: Gradients | None = None
    note: str = ""


def forum_problem(seed: int = 0, dtype=np.float32):
    """The post's network and data: seeded weights, feedback, biases, x (64, 50) and y (64, 2)."""
    layers = init_mlp(SIZES, activation=ACTIVATION, seed=seed, dtype=dtype)
    rng = np.random.default_rng(seed + 1)
    x = rng.standard_normal((BATCH, SIZES[0])).astype(dtype)
    y = rng.standard_normal((BATCH, SIZES[-1])).astype(dtype)
    return layers, x, y


def torch_cases(layers: list[DenseParams], x, y, fa: Gradients, bp: Gradients) -> list[ForumCase]:
    """The PyTorch FA port, and the same weights in plain nn.Linear layers (what the bug amounts to)."""
    import torch
    from torch import nn

    from pyfa.torch import mlp_from_params, mlp_gradients

    port = mlp_gradients(mlp_from_params(layers, "fa"), x, y)
    plain = mlp_from_params(layers, "fa")
    for i, m in enumerate(plain):  # swap every LinearFA for an nn.Linear with the same weights
        if hasattr(m, "feedback"):
            lin = nn.Linear(m.in_features, m.out_features, dtype=m.weight.dtype)
            with torch.no_grad():
                lin.weight.copy_(m.weight)
                lin.bias.copy_(m.bias)
            plain[i] = lin
    bp_got = mlp_gradients(plain, x, y)
    return [
        ForumCase("torch LinearFA (the port)", VERDICT_FA, verdict(port, fa, bp), port),
        ForumCase("torch nn.Linear (plain backprop)", VERDICT_BP, verdict(bp_got, fa, bp), bp_got),
    ]


def julia_cases(layers, x, y, fa: Gradients, bp: Gradients) -> list[ForumCase]:
    """Both Julia snippets in fresh modules (needs Julia)."""
    from pyfa.julia.forum import run_forum

    results = run_forum(layers, x, y)
    return [
        ForumCase("Julia: bare `rrule` (the post)", VERDICT_BP, verdict(results["bug"], fa, bp),
                  results["bug"], "Zygote never saw the rule"),
        ForumCase("Julia: `ChainRulesCore.rrule` (the fix)", VERDICT_FA,
                  verdict(results["fix"], fa, bp), results["fix"]),
    ]


EXIT_STATUS = """\
exit status:
  0    the bug and the fix behave as the thread says (the bare rrule gives backprop, the fix FA,
       the PyTorch port FA), and pyfa lint flags the bug and passes the fix
  1    some result was not the expected one (marked UNEXPECTED)
  2    a bad option"""


def add_arguments(p) -> None:
    from pyfa.cli import seed_arg

    p.add_argument("--seed", type=seed_arg, default=0,
                   help="weights, feedback matrices and data of the post's network; 0 to 2**63-1 "
                   "(default: 0)")


def run(args) -> int:
    from pyfa import julia, lint

    print(__doc__.split("\n\n")[1].replace("\n", " ").replace("``", "`").strip(), "\n")
    print("== statically: pyfa lint on the two snippets ==")
    for name, path in SNIPPETS.items():
        findings = lint.lint_file(path)
        codes = ", ".join(sorted({f.code for f in findings})) or "no findings"
        print(f"  {name}: {path.name}: {codes}")
        for f in findings:
            print(f"    {f.line}:{f.column}: {f.code} {f.message}")
    ok_static = any(f.code == "PFA001" for f in lint.lint_file(SNIPPETS["bug"])) and not lint.lint_file(
        SNIPPETS["fix"]
    )

    cases: list[ForumCase] = []
    julia_reason = None if julia.available() else (julia.unavailable_reason() or "unavailable")
    if julia_reason is None:
        julia.load()  # before torch: juliacall must be imported first
    layers, x, y = forum_problem(args.seed)
    fa = reference.chain_gradients(layers, x, y, "fa")
    bp = reference.chain_gradients(layers, x, y, "bp")
    if julia_reason is None:
        cases += julia_cases(layers, x, y, fa, bp)
    cases += torch_cases(layers, x, y, fa, bp)

    print("\n== gradients on the post's network (50-60-40-2, batch 64, MSE), vs the numpy oracle ==")
    gap = np.linalg.norm(fa.layers[0]["weight"] - bp.layers[0]["weight"]) / np.linalg.norm(
        bp.layers[0]["weight"]
    )
    print(f"  FA and BP differ: ‖∂W₁(FA) − ∂W₁(BP)‖/‖∂W₁(BP)‖ = {gap:.3f} in the oracle")
    print(f"  {'implementation':<42}{'expected':<20}{'got':<20}")
    for c in cases:
        mark = "ok" if c.got == c.expected else "UNEXPECTED"
        print(f"  {c.name:<42}{c.expected:<20}{c.got:<20}{mark}  {c.note}")
    if julia_reason is not None:
        print(f"  Julia: unavailable ({one_line(julia_reason)}); the Julia rows need Julia "
              "(README, section 'Julia')")
    print(
        "\nWhy: `function rrule(...)` after `using ChainRulesCore` defines the user's module's own "
        "`rrule`; Zygote "
        "calls `ChainRulesCore.rrule`, finds no method for the layer's call, and differentiates "
        "`W * x` itself, so the input-gradient uses Wᵀ (backprop) instead of Bᵀ. Writing "
        "`function ChainRulesCore.rrule(...)` adds the method Zygote looks for."
    )
    return 0 if ok_static and all(c.got == c.expected for c in cases) else 1
