"""Same seeded weights and data through each backend; compare their gradients; say who really used FA.

The reference is the numpy oracle (`pyfa.reference`). For every other backend the report gives, per
parameter, the max absolute and relative difference from the oracle and a pass/fail against a
dtype-aware tolerance; and a verdict: did the backend send the error through the feedback matrix
(FA), or did it silently compute backprop (the forum bug)? The verdict compares the backend's
input-gradient and lower-layer weight gradients with the oracle's FA and BP values: in any network
of two or more layers with a random feedback matrix these differ, so each backend's gradients can
match at most one of them.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import numpy as np

from pyfa import reference
from pyfa.network import MODES, DenseParams, Gradients, init_mlp

BACKENDS = ("reference", "torch", "julia")
#: max |a - b| <= atol + rtol * max |b|, per array
TOLERANCES = {
    np.dtype(np.float32): {"rtol": 1e-4, "atol": 1e-6},
    np.dtype(np.float64): {"rtol": 1e-10, "atol": 1e-13},
}

VERDICT_FA = "FA used"
VERDICT_BP = "backprop"
VERDICT_OTHER = "matches neither FA nor BP"


@dataclass
class Comparison:
    """Difference of one array from the reference's."""

    name: str
    max_abs: float
    max_rel: float
    passed: bool


@dataclass
class BackendReport:
    backend: str
    gradients: Gradients | None = None
    comparisons: list[Comparison] = field(default_factory=list)
    verdict: str | None = None
    unavailable: str | None = None

    @property
    def agrees(self) -> bool:
        return all(c.passed for c in self.comparisons)


@dataclass
class Report:
    mode: str
    dtype: np.dtype
    sizes: tuple[int, ...]
    batch: int
    reference: Gradients
    bp_reference: Gradients
    backends: list[BackendReport]

    @property
    def ok(self) -> bool:
        """At least one backend was compared with the oracle, and all that were agree with it and use
        the requested mode's feedback (the oracle itself counts for nothing)."""
        ran = [b for b in self.backends if b.unavailable is None and b.backend != "reference"]
        return bool(ran) and all(b.agrees and b.verdict == self.expected_verdict for b in ran)

    @property
    def expected_verdict(self) -> str:
        return VERDICT_BP if self.mode == "bp" else VERDICT_FA

    @property
    def fa_bp_gap(self) -> float:
        """‖∂L/∂x(mode) − ∂L/∂x(BP)‖ / ‖∂L/∂x(BP)‖ from the oracle: how far FA is from backprop."""
        return _rel_dist(self.reference.input, self.bp_reference.input)


def compare(got: Gradients, want: Gradients, dtype) -> list[Comparison]:
    """Per-array max abs/rel differences of `got` from `want`, with dtype-aware pass/fail."""
    tol = TOLERANCES[np.dtype(dtype)]
    out = []
    if len(got.layers) != len(want.layers):
        raise ValueError(f"gradients for {len(got.layers)} layers, the reference has {len(want.layers)}")
    pairs = [("loss", np.asarray(got.loss), np.asarray(want.loss))]
    for i, (g, w) in enumerate(zip(got.layers, want.layers, strict=True)):
        if g.keys() != w.keys():
            raise ValueError(f"layer {i}: gradients have keys {sorted(g)}, expected {sorted(w)}")
        pairs += [(f"layer {i} {k}", g[k], w[k]) for k in w]
    pairs.append(("input", got.input, want.input))
    for name, a, b in pairs:
        if np.shape(a) != np.shape(b):
            raise ValueError(f"{name}: shape {np.shape(a)} but the reference has {np.shape(b)}")
        diff = float(np.max(np.abs(a - b))) if np.size(a) else 0.0
        scale = float(np.max(np.abs(b))) if np.size(b) else 0.0
        rel = diff / scale if scale > 0 else (0.0 if diff == 0 else np.inf)
        out.append(Comparison(name, diff, rel, diff <= tol["atol"] + tol["rtol"] * scale))
    return out


def verdict(got: Gradients, fa: Gradients, bp: Gradients) -> str:
    """FA used / silently backprop / neither, by which oracle the signals below the top layer match.

    Looks at dL/dx and at the weight gradients of every layer but the last (the last layer's
    gradient is the same under FA and BP). A backend "matches" an oracle when these are closer to
    it than to the other one and within 1e-3 relative distance.
    """
    def dist(a: Gradients, b: Gradients) -> float:
        ds = [_rel_dist(a.input, b.input)]
        ds += [_rel_dist(x["weight"], y["weight"]) for x, y in zip(a.layers[:-1], b.layers[:-1], strict=True)]
        return max(ds)

    d_fa, d_bp = dist(got, fa), dist(got, bp)
    if d_fa <= 1e-3 and d_fa < d_bp:
        return VERDICT_FA
    if d_bp <= 1e-3 and d_bp < d_fa:
        return VERDICT_BP
    return VERDICT_OTHER


def crosscheck(
    backends: list[str] | None = None,
    *,
    sizes: tuple[int, ...] = (50, 60, 40, 2),
    activation: str = "tanh",
    batch: int = 64,
    mode: str = "fa",
    dtype=np.float32,
    seed: int = 0,
) -> Report:
    """Gradients of MSE(net(x), y) from each backend, compared with the numpy oracle.

    ``backends=None`` means every backend that is available; a backend named explicitly but
    unavailable is reported as such (with the reason), not raised.
    """
    if mode not in MODES or mode == "brsf":
        raise ValueError(
            f"crosscheck: mode must be one of {tuple(m for m in MODES if m != 'brsf')}, got {mode!r} "
            "(brsf redraws its feedback on every pass, so backends cannot be compared exactly)"
        )
    names = list(BACKENDS if backends is None else backends)
    unknown = [b for b in names if b not in BACKENDS]
    if unknown:
        raise ValueError(f"crosscheck: unknown backend(s) {unknown}; expected some of {BACKENDS}")
    if not [b for b in names if b != "reference"]:
        raise ValueError("crosscheck: reference is the oracle itself; name torch or julia as well")
    if len(sizes) < 2 or any(int(s) < 1 for s in sizes):
        raise ValueError(f"crosscheck: sizes must give at least two widths >= 1, got {tuple(sizes)}")
    if batch < 1:
        raise ValueError(f"crosscheck: batch must be >= 1, got {batch}")
    # juliacall must be imported before torch in a process: start Julia first if it is wanted.
    julia_reason = _julia_unavailable_reason() if "julia" in names else None

    layers = init_mlp(sizes, activation=activation, seed=seed, dtype=dtype)
    rng = np.random.default_rng(seed + 1)
    for p in layers:
        p.bias[:] = rng.uniform(-0.1, 0.1, size=p.bias.shape).astype(dtype)
    x = rng.standard_normal((batch, sizes[0])).astype(dtype)
    y = rng.standard_normal((batch, sizes[-1])).astype(dtype)
    want = reference.chain_gradients(layers, x, y, mode)
    bp = reference.chain_gradients(layers, x, y, "bp")

    reports = []
    for name in names:
        if name == "julia" and julia_reason is not None:
            reports.append(BackendReport(name, unavailable=julia_reason))
            continue
        got = _gradients(name, layers, x, y, mode)
        reports.append(
            BackendReport(name, got, compare(got, want, dtype), verdict(got, want, bp)
                          if mode != "bp" else _bp_verdict(got, bp))
        )
    return Report(mode, np.dtype(dtype), tuple(sizes), batch, want, bp, reports)


def _gradients(backend: str, layers: list[DenseParams], x, y, mode: str) -> Gradients:
    if backend == "reference":
        return reference.chain_gradients(layers, x, y, mode)
    if backend == "torch":
        from pyfa.torch import mlp_from_params, mlp_gradients

        return mlp_gradients(mlp_from_params(layers, mode), x, y)
    from pyfa.julia import JuliaChain

    return JuliaChain.from_params(layers, mode=mode, dtype=layers[0].weight.dtype).gradients(x, y)


def _bp_verdict(got: Gradients, bp: Gradients) -> str:
    d = max([_rel_dist(got.input, bp.input)]
            + [_rel_dist(a["weight"], b["weight"]) for a, b in zip(got.layers, bp.layers, strict=True)])
    return VERDICT_BP if d <= 1e-3 else VERDICT_OTHER


def _julia_unavailable_reason() -> str | None:
    from pyfa import julia

    if not julia.available():
        return julia.unavailable_reason() or "Julia is not available"
    julia.load()
    return None


def _rel_dist(a: np.ndarray, b: np.ndarray) -> float:
    nb = float(np.linalg.norm(b))
    d = float(np.linalg.norm(np.asarray(a, np.float64) - b))
    return d / nb if nb > 0 else d


def format_report(r: Report) -> str:
    """The report as a plain-text table."""
    lines = [
        f"cross-check: mode {r.mode}, {r.dtype}, sizes {'-'.join(map(str, r.sizes))}, batch {r.batch}, "
        f"tolerance rtol={TOLERANCES[r.dtype]['rtol']:g} atol={TOLERANCES[r.dtype]['atol']:g}",
        f"oracle: ‖∂L/∂x({r.mode}) − ∂L/∂x(bp)‖ / ‖∂L/∂x(bp)‖ = {r.fa_bp_gap:.3f}"
        + ("" if r.mode == "bp" else "  (0 would mean FA = BP)"),
    ]
    for b in r.backends:
        if b.unavailable is not None:
            lines.append(f"{b.backend}: unavailable ({one_line(b.unavailable)}); skipped (details: "
                         f"{sys.executable} -c 'import pyfa.julia as j; print(j.unavailable_reason())')")
            continue
        if b.backend == "reference":
            lines.append("reference: the numpy oracle itself")
            continue
        lines.append(f"{b.backend} vs reference:")
        lines.append(f"  {'parameter':<16}{'max abs diff':>14}{'max rel diff':>14}  result")
        for c in b.comparisons:
            lines.append(
                f"  {c.name:<16}{c.max_abs:>14.3e}{c.max_rel:>14.3e}  {'pass' if c.passed else 'FAIL'}"
            )
        note = ""
        if b.verdict == VERDICT_BP:
            note = " (as asked)" if r.mode == "bp" else " (SILENT FALLBACK: the FA rule was not used)"
        lines.append(f"  verdict: {b.verdict}{note}")
    compared = [b for b in r.backends if b.unavailable is None and b.backend != "reference"]
    if r.ok:
        result = "PASS: every compared backend agrees with the oracle and uses " + (
            "backprop" if r.mode == "bp" else "FA")
    elif not compared:
        result = "FAIL: no backend was compared with the oracle"
    else:
        result = "FAIL"
    lines.append("result: " + result)
    return "\n".join(lines)


def one_line(s: str) -> str:
    """The gist of a long reason: its first line, up to the first parenthesised detail."""
    first = s.strip().splitlines()[0] if s.strip() else s
    first = first.split(" (", 1)[0].rstrip(".")
    return first if len(first) < 160 else first[:157] + "..."


# ---- the `pyfa crosscheck` sub-command ----

def add_arguments(p) -> None:
    p.add_argument("--backends", default=None,
                   help=f"comma-separated, from {','.join(BACKENDS)} (default: all available)")
    p.add_argument("--mode", default="fa", choices=[m for m in MODES if m != "brsf"])
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--sizes", default="50,60,40,2", help="layer widths, input first")
    p.add_argument("--activation", default="tanh", choices=["identity", "relu", "tanh", "sigmoid"])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)


def run(args) -> int:
    backends = args.backends.split(",") if args.backends else None
    try:
        try:
            sizes = tuple(int(s) for s in args.sizes.split(","))
        except ValueError:
            msg = f"crosscheck: --sizes takes comma-separated widths like 50,60,2; got {args.sizes!r}"
            raise ValueError(msg) from None
        report = crosscheck(backends, sizes=sizes, activation=args.activation, batch=args.batch,
                            mode=args.mode, dtype=np.dtype(args.dtype), seed=args.seed)
    except ValueError as e:
        print(f"pyfa {str(e).removeprefix('pyfa ')}", file=sys.stderr)  # messages start "crosscheck: "
        return 2
    print(format_report(report))
    julia = [b for b in report.backends if b.backend == "julia" and b.unavailable]
    if julia and backends is not None and "julia" in backends:  # asked for by name: say it all
        print(f"\njulia: {julia[0].unavailable}", file=sys.stderr)
    return 0 if report.ok else 1
