"""`pyfa lint` throughput and scaling: generated Julia files of 1k, 10k and 100k lines.

Each file is one module of many layers (a struct, its `@layer`, a forward method) and rules
(`ChainRulesCore.rrule` with a pullback using `W' * δ`), the code `pyfa lint` is written for. Each
lies alone in a fresh folder and is linted from disk as `pyfa lint FILE` does (a new `Project`
each time: parse, one scan of the module, one walk for the rules, the includer search).

Reported: lines per second for each size, and the time ratios t(10k) / (10 t(1k)) and
t(100k) / (10 t(10k)), which are 1.0 for perfectly linear cost; each must stay within 1.3 (PASS),
or the script prints FAIL and exits 1. Times are CPU seconds of this process (time.process_time),
which other jobs on shared cores disturb less than wall time. Each ratio is the median over
pairs of back-to-back measurements of equal work: 10 lints of the smaller file against one of
the larger (per line, so the rounding of the sizes cancels), in alternating order so that both
halves of a pair see the same load. Throughput is each size's best single lint.

    python benchmarks/bench_lint.py [--quick] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from pyfa.lint import lint_paths

SIZES = (1_000, 10_000, 100_000)
LIMIT = 1.3

HEADER = """\
module Generated

using ChainRulesCore: ChainRulesCore, NoTangent, ProjectTo, @thunk, unthunk
using Flux: Flux

"""
BLOCK = """\
\"\"\"
    Layer{i}(weight, feedback, bias)

A dense layer whose input gradient goes through `feedback`.
\"\"\"
struct Layer{i}{{M<:AbstractMatrix,V<:AbstractVector}}
    weight::M
    feedback::M
    bias::V
end

Flux.@layer Layer{i} trainable=(weight, bias)

matmul{i}(W::AbstractMatrix, x::AbstractVecOrMat, B::AbstractMatrix) = W * x

function ChainRulesCore.rrule(::typeof(matmul{i}), W::AbstractMatrix, x::AbstractVecOrMat,
                              B::AbstractMatrix)
    y = matmul{i}(W, x, B)
    project_x = ProjectTo(x)
    function matmul{i}_pullback(ȳ)
        δ = unthunk(ȳ)
        ∂W = @thunk(δ * x')
        ∂x = @thunk(project_x(B' * δ))
        return NoTangent(), ∂W, ∂x, NoTangent()
    end
    return y, matmul{i}_pullback
end

(a::Layer{i})(x::AbstractVecOrMat) = matmul{i}(a.weight, x, a.feedback) .+ a.bias

"""


def generate(lines: int) -> str:
    """A module of `lines` lines (to within one block)."""
    block_lines = BLOCK.count("\n")
    n = max(1, (lines - HEADER.count("\n") - 2) // block_lines)
    exports = "export " + ", ".join(f"Layer{i}" for i in range(n)) + "\n\n"
    return HEADER + exports + "".join(BLOCK.format(i=i) for i in range(n)) + "end\n"


def _block(path: Path, times: int) -> tuple[float, float]:
    """(CPU seconds, wall seconds) to lint `path` `times` times over."""
    c0, w0 = time.process_time(), time.perf_counter()
    for _ in range(times):
        findings = lint_paths([path])
        assert findings == [], [f.format() for f in findings]  # the generated code is clean
    return time.process_time() - c0, time.perf_counter() - w0


def run(quick: bool) -> dict:
    pairs = {1_000: 11, 10_000: 3} if quick else {1_000: 15, 10_000: 4}
    with tempfile.TemporaryDirectory(prefix="bench_lint_") as tmp:
        paths, lines = {}, {}
        for n in SIZES:
            path = Path(tmp) / f"n{n}" / "Generated.jl"
            path.parent.mkdir()
            path.write_text(generate(n), encoding="utf-8")
            paths[n], lines[n] = path, generate(n).count("\n")
        _block(paths[SIZES[0]], 3)  # warm-up: imports, the parser
        best: dict[int, tuple[float, float]] = {}   # size -> best (CPU, wall) seconds per lint
        ratios = []
        for small, big in zip(SIZES, SIZES[1:], strict=False):
            k = big // small
            per_pair = []
            for i in range(pairs[small]):
                # k lints of the small file against one of the big one (as many lines), back to
                # back and in alternating order, so both see the same load on the machine
                order = [(small, k), (big, 1)] if i % 2 == 0 else [(big, 1), (small, k)]
                t = {n: _block(paths[n], times) for n, times in order}
                for n, times in order:
                    cpu, wall = t[n][0] / times, t[n][1] / times
                    if n not in best or cpu < best[n][0]:
                        best[n] = (cpu, wall)
                per_pair.append((t[big][0] / lines[big]) / (t[small][0] / (k * lines[small])))
            ratios.append(dict(name=f"t({big // 1000}k) / (10 t({small // 1000}k))",
                               ratio=statistics.median(per_pair), pairs=per_pair))
    rows = [dict(lines=lines[n], cpu_s=best[n][0], wall_s=best[n][1],
                 lines_per_s=lines[n] / best[n][0]) for n in SIZES]
    return dict(rows=rows, ratios=ratios)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer pairs (about half the time)")
    ap.add_argument("--json", help="also write the results to this JSON file")
    args = ap.parse_args()
    result = run(args.quick)
    print(f"{'lines':>8} {'CPU s':>8} {'wall s':>8} {'lines/s':>9}")
    for row in result["rows"]:
        print(f"{row['lines']:8d} {row['cpu_s']:8.3f} {row['wall_s']:8.3f} {row['lines_per_s']:9.0f}")
    failed = False
    for r in result["ratios"]:
        ok = r["ratio"] <= LIMIT
        failed |= not ok
        pairs = ", ".join(f"{x:.2f}" for x in r["pairs"])
        print(f"{'PASS' if ok else 'FAIL'} {r['name']} = {r['ratio']:.2f} (limit {LIMIT}; "
              f"median of pairs: {pairs})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
