"""Same seeded weights and data through each backend; compare their gradients; say who really used FA.

The reference is the numpy oracle (`pyfa.reference`). For every other backend the report gives, per
parameter, the max absolute and relative difference from the oracle and a pass/fail against a
dtype-aware tolerance; and a verdict: did the backend send the error through the feedback matrix
(FA), or did it silently compute backprop (the forum bug)? The verdict compares the backend's
input-gradient and lower-layer weight gradients with the oracle's FA and BP values: in any network
of two or more layers with a random feedback matrix these differ, so each backend's gradients can
match at most one of them.

The torch backend is also run along every execution path PyTorch users train on
(`pyfa.torch.paths`: eager, autocast, compile, torch.func, DDP): one row per path, held against the
oracle with the tolerance of the dtype the path computes in, and with its own verdict. A path that
cannot run on this machine (no CUDA) is reported in one line.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field

import numpy as np

from pyfa import reference
from pyfa.network import ACTIVATIONS, DenseParams, Gradients, init_mlp

#: The backends compared: the numpy oracle, the PyTorch port, the Julia package through juliacall.
BACKENDS = ("reference", "torch", "julia")
#: Execution paths of the torch backend (the same names as `pyfa.torch.paths.PATHS`, kept here so
#: that importing this module does not import torch).
TORCH_PATHS = ("eager", "autocast", "autocast-cuda", "autocast-cuda-bf16", "compile", "func", "ddp")
#: ``max|a - b| <= atol + rtol * max|b|``, per array; keyed by the dtype the products are computed in.
#: bf16 keeps 8 significant bits: a CNN's input gradient (a transposed convolution, with much
#: cancellation) comes out up to ~20 % off its largest entry even in mode bp, exactly as nn.Conv2d's
#: does under autocast; the verdict's norm distance (MATCH_DISTANCE) still tells FA from BP.
TOLERANCES = {
    "float64": {"rtol": 1e-10, "atol": 1e-13},
    "float32": {"rtol": 1e-4, "atol": 1e-6},
    "float16": {"rtol": 5e-2, "atol": 1e-4},
    "bfloat16": {"rtol": 3e-1, "atol": 1e-3},
}
#: The verdict's threshold: the relative distance under which a backend's signals "match" the
#: oracle's FA or BP values (bf16 rounding alone puts a CNN's conv gradients about 5 % off). FA
#: and BP lie about 1 apart on the default networks (the report's "oracle" line), far beyond each.
MATCH_DISTANCE = {"float64": 1e-3, "float32": 1e-3, "float16": 2e-2, "bfloat16": 1e-1}

#: Modes the cross-check compares: every oracle mode but brsf, which redraws its feedback on every
#: pass (so two backends cannot be held to the same B).
CHECK_MODES = ("fa", "bp", "usf", "frsf", "kp", "dfa")
#: Losses: mean squared error, or softmax cross-entropy on one-hot targets.
LOSSES = ("mse", "ce")

#: Verdict: the backend's signals match the oracle's for a feedback rule (fa, usf, frsf, kp).
VERDICT_FA = "FA used"
#: Verdict: they match the oracle's direct feedback alignment.
VERDICT_DFA = "DFA used"
#: Verdict: they match backprop's (the silent fallback, unless bp was asked for).
VERDICT_BP = "backprop"
#: Verdict (mode dfa): they match the layer-by-layer FA chain instead of DFA.
VERDICT_FA_CHAIN = "the FA chain, not DFA"
#: Verdict: they match no candidate (wrong B, shapes or loss).
VERDICT_OTHER = "matches neither the rule nor BP"


def expected_verdict(mode: str) -> str:
    """What a backend that really used `mode` is called."""
    return {"bp": VERDICT_BP, "dfa": VERDICT_DFA}.get(mode, VERDICT_FA)


@dataclass
class Comparison:
    """Difference of one array from the reference's."""

    name: str
    max_abs: float
    max_rel: float
    passed: bool


@dataclass
class BackendReport:
    """One backend (or one torch execution path, `path` set) against the oracle."""

    backend: str
    gradients: Gradients | None = None
    comparisons: list[Comparison] = field(default_factory=list)
    verdict: str | None = None
    unavailable: str | None = None
    path: str | None = None
    compute_dtype: str | None = None

    @property
    def agrees(self) -> bool:
        return all(c.passed for c in self.comparisons)

    @property
    def name(self) -> str:
        return self.backend if self.path is None else f"{self.backend}/{self.path}"

    @property
    def worst(self) -> Comparison | None:
        """The comparison with the largest relative difference."""
        return max(self.comparisons, key=lambda c: c.max_rel, default=None)


@dataclass
class Report:
    mode: str
    dtype: np.dtype
    sizes: tuple[int, ...]
    batch: int
    reference: Gradients
    bp_reference: Gradients
    backends: list[BackendReport]
    paths: list[BackendReport] = field(default_factory=list)
    loss: str = "mse"
    model: str = "mlp"

    @property
    def compared(self) -> list[BackendReport]:
        """Every backend and path row that ran against the oracle (the oracle itself excluded)."""
        rows = self.backends + self.paths
        return [b for b in rows if b.unavailable is None and b.backend != "reference"]

    @property
    def ok(self) -> bool:
        """At least one backend was compared with the oracle, and all that were (paths included)
        agree with it and use the requested mode's feedback (the oracle itself counts for nothing)."""
        ran = self.compared
        return bool(ran) and all(b.agrees and b.verdict == self.expected_verdict for b in ran)

    @property
    def expected_verdict(self) -> str:
        return expected_verdict(self.mode)

    @property
    def fa_bp_gap(self) -> float:
        """‖∂L/∂x(mode) − ∂L/∂x(BP)‖ / ‖∂L/∂x(BP)‖ from the oracle: how far FA is from backprop."""
        return _rel_dist(self.reference.input, self.bp_reference.input)


def compare(got: Gradients, want: Gradients, dtype) -> list[Comparison]:
    """Per-array max abs/rel differences of `got` from `want`, with pass/fail at the tolerance of
    `dtype` (a numpy dtype, or a name from `TOLERANCES` such as ``"bfloat16"``)."""
    tol = TOLERANCES[_dtype_name(dtype)]
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
        diff = float(np.max(np.abs(np.asarray(a, np.float64) - b))) if np.size(a) else 0.0
        scale = float(np.max(np.abs(b))) if np.size(b) else 0.0
        rel = diff / scale if scale > 0 else (0.0 if diff == 0 else np.inf)
        out.append(Comparison(name, diff, rel, diff <= tol["atol"] + tol["rtol"] * scale))
    return out


def verdict(got: Gradients, fa: Gradients, bp: Gradients, dtype=np.float64, *,
            mode: str = "fa", fa_chain: Gradients | None = None) -> str:
    """Which rule `got` used, by which oracle the signals below the top layer match.

    `fa` is the oracle's gradients for the asked-for `mode` (the name: any feedback rule), `bp`
    backprop's, and for ``mode="dfa"`` `fa_chain` the ordinary FA chain's with the same feedback
    matrices, which DFA must differ from too. Looks at dL/dx and at the weight gradients of every
    layer but the last (the same under every rule). A backend "matches" an oracle when these are
    closer to it than to every other candidate and within `MATCH_DISTANCE` (relative, by the compute
    `dtype`). Returns `expected_verdict(mode)`, `VERDICT_BP`, `VERDICT_FA_CHAIN` or `VERDICT_OTHER`.
    """
    candidates = {expected_verdict(mode): fa}
    if mode != "bp":
        candidates[VERDICT_BP] = bp
    if mode == "dfa" and fa_chain is not None:
        candidates[VERDICT_FA_CHAIN] = fa_chain
    dists = {name: _signal_dist(got, ref, top=mode != "bp") for name, ref in candidates.items()}
    best = min(dists, key=dists.get)
    others = [d for name, d in dists.items() if name != best]
    if dists[best] <= MATCH_DISTANCE[_dtype_name(dtype)] and all(dists[best] < d for d in others):
        return best
    return VERDICT_OTHER


def _signal_dist(a: Gradients, b: Gradients, *, top: bool = True) -> float:
    """max relative distance of dL/dx and the weight gradients (all layers' but the top one's when
    `top`: it is the same under every rule)."""
    pairs = zip(a.layers[:-1] if top else a.layers, b.layers[:-1] if top else b.layers, strict=True)
    return max([_rel_dist(a.input, b.input)]
               + [_rel_dist(x["weight"], y["weight"]) for x, y in pairs if "weight" in y])


def crosscheck(
    backends: list[str] | None = None,
    *,
    sizes: tuple[int, ...] = (50, 60, 40, 2),
    activation: str = "tanh",
    batch: int = 64,
    mode: str = "fa",
    dtype=np.float32,
    seed: int = 0,
    paths: list[str] | None = None,
    loss: str = "mse",
    julia_ad: list[str] | None = None,
    model: str = "mlp",
) -> Report:
    """Gradients of loss(net(x), y) from each backend, compared with the numpy oracle.

    ``backends=None`` means every backend that is available; a backend named explicitly but
    unavailable is reported as such (with the reason), not raised. A backend that raises (say, a
    mode it does not implement) is a failed row carrying the error.

    ``mode``: one of `CHECK_MODES`; ``loss``: ``"mse"`` (targets ~ N(0, 1)) or ``"ce"`` (softmax
    cross-entropy, one-hot targets).

    ``paths`` (torch execution paths, `TORCH_PATHS`): ``None`` runs every path available on this
    machine when the torch backend is compared, and reports the others as unavailable in one line;
    ``[]`` runs none. The autocast paths always run the network in float32 (autocast is for float32
    models), the others in `dtype`.

    ``julia_ad`` (Flux AD backends for the julia backend: ``zygote``, ``enzyme``, ``mooncake``):
    ``None`` gives one row per AD backend, each unavailable one said in one line.

    ``model``: ``"mlp"`` (dense layers of widths `sizes`) or ``"cnn"``, the oracle's small CNN
    (`pyfa.reference.init_small_cnn`: conv-relu-avgpool-conv-relu-avgpool-flatten-dense on
    1×12×12 inputs, 10 outputs; `sizes` and `activation` do not apply).
    """
    if mode not in CHECK_MODES:
        raise ValueError(
            f"crosscheck: mode must be one of {CHECK_MODES}, got {mode!r}"
            + (" (brsf redraws its feedback on every pass, so backends cannot be compared exactly)"
               if mode == "brsf" else "")
        )
    if loss not in LOSSES:
        raise ValueError(f"crosscheck: unknown loss {loss!r}; expected one of {LOSSES}")
    if model not in MODELS:
        raise ValueError(f"crosscheck: unknown model {model!r}; expected one of {MODELS}")
    names = list(BACKENDS if backends is None else backends)
    unknown = [b for b in names if b not in BACKENDS]
    if unknown:
        raise ValueError(f"crosscheck: unknown backend(s) {unknown}; expected some of {BACKENDS}")
    if not [b for b in names if b != "reference"]:
        raise ValueError("crosscheck: reference is the oracle itself; name torch or julia as well")
    if paths is not None:
        bad = [p for p in paths if p not in TORCH_PATHS]
        if bad:
            raise ValueError(f"crosscheck: unknown path(s) {bad}; expected some of {TORCH_PATHS}")
        if paths and "torch" not in names:
            raise ValueError("crosscheck: paths are the torch backend's; add torch to the backends")
    if julia_ad is not None:
        bad = [a for a in julia_ad if a not in JULIA_ADS]
        if bad:
            raise ValueError(f"crosscheck: unknown Julia AD backend(s) {bad}; expected some of {JULIA_ADS}")
        if julia_ad and "julia" not in names:
            raise ValueError("crosscheck: AD backends are the julia backend's; add julia to the backends")
    if len(sizes) < 2 or any(int(s) < 1 for s in sizes):
        raise ValueError(f"crosscheck: sizes must give at least two widths >= 1, got {tuple(sizes)}")
    if batch < 1:
        raise ValueError(f"crosscheck: batch must be >= 1, got {batch}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"crosscheck: unknown activation {activation!r}; expected one of {ACTIVATIONS}")
    # juliacall must be imported before torch in a process: start Julia first if it is wanted.
    julia_reason = _julia_unavailable_reason() if "julia" in names else None

    if model == "cnn":
        sizes = CNN_INPUT
    spec = (tuple(sizes), activation, batch, seed, loss, model)
    layers, x, y = network_and_data(*spec, dtype=dtype)
    refs = _oracle(layers, x, y, mode, loss)

    reports = []
    for name in names:
        if name == "julia":
            reports += _julia_rows(julia_reason, julia_ad, layers, x, y, mode, loss, refs, dtype)
            continue
        row = _run_row(BackendReport(name), lambda b=name: _gradients(b, layers, x, y, mode, loss))
        reports.append(_judge(row, refs, mode, np.dtype(dtype).name))

    path_rows = []
    if "torch" in names:
        for path in TORCH_PATHS if paths is None else paths:
            path_rows.append(_path_report(path, layers, x, y, mode, loss, refs, dtype, spec))
    return Report(mode, np.dtype(dtype), tuple(sizes), batch, refs["want"], refs["bp"], reports,
                  path_rows, loss, model)


#: Flux's AD backends the julia backend runs under, one row each.
JULIA_ADS = ("zygote", "enzyme", "mooncake")
#: The networks: an MLP of widths --sizes, or the oracle's small CNN.
MODELS = ("mlp", "cnn")
#: The small CNN's input, one sample: (channels, height, width).
CNN_INPUT = (1, 12, 12)


def _oracle(layers, x, y, mode: str, loss: str) -> dict[str, Gradients]:
    refs = {"want": _oracle_gradients(layers, x, y, mode, loss),
            "bp": _oracle_gradients(layers, x, y, "bp", loss)}
    if mode == "dfa":
        fa_chain = _oracle_gradients(layers, x, y, "fa", loss)
        if _signal_dist(fa_chain, refs["want"]) > 0:  # one layer: DFA is the FA chain, nothing to tell
            refs["fa_chain"] = fa_chain
    return refs


def _is_mlp(layers) -> bool:
    return all(isinstance(p, DenseParams) for p in layers)


def _run_row(row: BackendReport, compute) -> BackendReport:
    """`row` with ``compute()``'s gradients, or, when it raises, marked failed with the error."""
    try:
        row.gradients = compute()
    except Exception as e:  # a broken backend is a failed row, with the reason, not a crash
        row.verdict = f"failed: {type(e).__name__}: {one_line(str(e))}"
        row.comparisons = [Comparison("run", np.inf, np.inf, False)]
    return row


def _julia_rows(reason, ads, layers, x, y, mode, loss, refs, dtype) -> list[BackendReport]:
    if reason is not None:
        return [BackendReport("julia", unavailable=reason)]
    from pyfa import julia

    rows = []
    for ad in JULIA_ADS if ads is None else ads:
        ad_reason = julia.ad_unavailable_reason(ad)
        if ad_reason is not None:
            rows.append(BackendReport("julia", path=ad, unavailable=ad_reason))
            continue
        row = _run_row(BackendReport("julia", path=ad),
                       lambda a=ad: _julia_gradients(layers, x, y, mode, loss, a))
        rows.append(_judge(row, refs, mode, np.dtype(dtype).name))
    return rows


def network_and_data(sizes, activation: str, batch: int, seed: int, loss: str, model: str = "mlp", *,
                     dtype=np.float32):
    """The cross-check's seeded network and batch. ``model="mlp"``: widths `sizes`, weights and
    feedback from ``init_mlp(seed)`` (with DFA's matrices, from their own stream); ``"cnn"``: the
    oracle's ``init_small_cnn(seed, pool="avg")`` on inputs of one sample's shape `sizes`.
    Biases and x ~ N(0, 1) from ``default_rng(seed + 1)``; targets y ~ N(0, 1) for mse, one-hot
    rows of random classes for ce."""
    if model == "cnn":
        layers = reference.init_small_cnn(seed, input_shape=tuple(sizes), pool="avg", dtype=dtype,
                                          direct_feedback=True)
        x_shape, n_out = (batch, *sizes), layers[-1].out_features
    else:
        layers = init_mlp(sizes, activation=activation, seed=seed, dtype=dtype,
                          direct_feedback=len(sizes) > 2)
        x_shape, n_out = (batch, sizes[0]), sizes[-1]
    rng = np.random.default_rng(seed + 1)
    for p in layers:
        if getattr(p, "bias", None) is not None:
            p.bias[:] = rng.uniform(-0.1, 0.1, size=p.bias.shape).astype(dtype)
    x = rng.standard_normal(x_shape).astype(dtype)
    if loss == "ce":
        y = np.eye(n_out, dtype=dtype)[rng.integers(0, n_out, batch)]
    else:
        y = rng.standard_normal((batch, n_out)).astype(dtype)
    return layers, x, y


def _judge(row: BackendReport, refs: dict[str, Gradients], mode: str, compute: str) -> BackendReport:
    row.compute_dtype = compute
    if row.gradients is None:  # the backend raised: already a failed row
        return row
    try:
        row.comparisons = compare(row.gradients, refs["want"], compute)
    except ValueError as e:  # arrays missing or misshapen (a kp backend giving feedback nothing...)
        row.verdict = f"failed: {one_line(str(e))}"
        row.comparisons = [Comparison("layout", np.inf, np.inf, False)]
        return row
    row.verdict = verdict(row.gradients, refs["want"], refs["bp"], compute, mode=mode,
                          fa_chain=refs.get("fa_chain"))
    return row


def _path_report(path, layers, x, y, mode, loss, refs, dtype, spec) -> BackendReport:
    from pyfa.torch import paths as torch_paths

    reason = torch_paths.unavailable_reason(path)
    if reason is not None:
        return BackendReport("torch", path=path, unavailable=reason)
    if path in torch_paths.COMPUTE_DTYPE and np.dtype(dtype) != np.float32:
        # autocast is for float32 models: the float32 network, against its own oracle values
        layers, x, y = network_and_data(*spec, dtype=np.float32)
        refs = _oracle(layers, x, y, mode, loss)
    row = _run_row(BackendReport("torch", path=path),
                   lambda: torch_paths.path_gradients(path, layers, x, y, mode, loss=loss))
    compute = row.gradients.meta["compute_dtype"] if row.gradients is not None else np.dtype(dtype).name
    return _judge(row, refs, mode, compute)


def _gradients(backend: str, layers: list, x, y, mode: str, loss: str) -> Gradients:
    if backend == "reference":
        return _oracle_gradients(layers, x, y, mode, loss)
    from pyfa.torch.network import cnn_from_params, mlp_from_params, mlp_gradients, network_gradients

    if _is_mlp(layers):
        return mlp_gradients(mlp_from_params(layers, mode), x, y, loss=loss)
    return network_gradients(cnn_from_params(layers, mode, input_shape=x.shape[1:]), x, y, loss=loss)


def _oracle_gradients(layers, x, y, mode, loss) -> Gradients:
    grads = reference.chain_gradients if _is_mlp(layers) else reference.cnn_gradients
    return grads(layers, x, y, mode, loss=loss)


def _julia_gradients(layers, x, y, mode: str, loss: str, ad: str) -> Gradients:
    from pyfa import julia

    dtype = next(p.weight.dtype for p in layers if hasattr(p, "weight"))
    net = (julia.JuliaChain if _is_mlp(layers) else julia.JuliaCNN).from_params(
        layers, mode=mode, dtype=dtype, ad=ad)
    return net.gradients(x, y, loss=loss)


def _julia_unavailable_reason() -> str | None:
    from pyfa import julia

    if not julia.available():
        return julia.unavailable_reason() or "Julia is not available"
    julia.load()
    return None


def _dtype_name(dtype) -> str:
    return dtype if isinstance(dtype, str) else np.dtype(dtype).name


def _rel_dist(a: np.ndarray, b: np.ndarray) -> float:
    nb = float(np.linalg.norm(b))
    d = float(np.linalg.norm(np.asarray(a, np.float64) - b))
    return d / nb if nb > 0 else d


def format_report(r: Report) -> str:
    """The report as a plain-text table."""
    tol = TOLERANCES[r.dtype.name]
    against = {"bp": "", "dfa": "  (0 would mean DFA = BP)"}.get(r.mode, "  (0 would mean FA = BP)")
    lines = [
        f"cross-check: mode {r.mode}, loss {r.loss}, {r.dtype}, {_network_name(r)}, "
        f"batch {r.batch}, tolerance rtol={tol['rtol']:g} atol={tol['atol']:g}",
        f"oracle: ‖∂L/∂x({r.mode}) − ∂L/∂x(bp)‖ / ‖∂L/∂x(bp)‖ = {r.fa_bp_gap:.3f}{against}",
    ]
    for b in r.backends:
        if b.unavailable is not None:
            lines.append(f"{b.name}: unavailable ({one_line(b.unavailable)}); skipped")
            continue
        if b.backend == "reference":
            lines.append("reference: the numpy oracle itself")
            continue
        lines.append(f"{b.name} vs reference:")
        if b.gradients is None:  # it raised
            lines.append(f"  FAIL: {b.verdict}")
            continue
        lines.append(f"  {'parameter':<19}{'max abs diff':>14}{'max rel diff':>14}  result")
        for c in b.comparisons:
            lines.append(
                f"  {c.name:<19}{c.max_abs:>14.3e}{c.max_rel:>14.3e}  {'pass' if c.passed else 'FAIL'}"
            )
        lines.append(f"  verdict: {b.verdict}{_verdict_note(b.verdict, r.mode)}")
    if r.paths:
        lines += _path_lines(r)
    if r.ok:
        rule = {"bp": "backprop", "dfa": "DFA"}.get(r.mode, "FA")
        result = f"PASS: every compared backend agrees with the oracle and uses {rule}"
    elif not r.compared:
        result = "FAIL: no backend was compared with the oracle"
    else:
        failed = [b.name for b in r.compared if not (b.agrees and b.verdict == r.expected_verdict)]
        result = "FAIL: " + ", ".join(failed)
    lines.append("result: " + result)
    return "\n".join(lines)


def _network_name(r: Report) -> str:
    if r.model == "cnn":
        return "small CNN conv-relu-avgpool-conv-relu-avgpool-dense on " + "x".join(map(str, r.sizes))
    return "sizes " + "-".join(map(str, r.sizes))


def _path_lines(r: Report) -> list[str]:
    lines = ["torch execution paths vs reference (worst array; tolerance by compute dtype):",
             f"  {'path':<20}{'computes in':<13}{'max rel diff':>13}{'rtol':>8}  result  verdict"]
    for b in r.paths:
        if b.unavailable is not None:
            lines.append(f"  {b.path:<20}unavailable: {one_line(b.unavailable)}")
            continue
        if b.gradients is None:  # the path raised
            lines.append(f"  {b.path:<20}{'':<13}{'':>13}{'':>8}  FAIL    {b.verdict}")
            continue
        worst = b.worst
        ok = b.agrees and b.verdict == r.expected_verdict
        lines.append(
            f"  {b.path:<20}{b.compute_dtype:<13}{worst.max_rel:>13.2e}"
            f"{TOLERANCES[b.compute_dtype]['rtol']:>8g}  {'pass' if ok else 'FAIL':<6}  "
            f"{b.verdict}{_verdict_note(b.verdict, r.mode)}"
        )
    return lines


def _verdict_note(v: str | None, mode: str) -> str:
    if v == VERDICT_FA_CHAIN:
        return " (the output error did not reach the hidden layers directly)"
    if v != VERDICT_BP:
        return ""
    return " (as asked)" if mode == "bp" else " (SILENT FALLBACK: the FA rule was not used)"


def one_line(s: str, limit: int = 200) -> str:
    """The gist of a long reason: its first line without parenthesised details, as many whole
    sentences as fit in `limit` characters (at least one, cut with "..." if it is longer)."""
    first = s.strip().splitlines()[0] if s.strip() else s
    plain, previous = first, None
    while plain != previous:  # innermost parentheses first, until none is left
        previous, plain = plain, re.sub(r"\s*\([^()]*\)", "", plain)
    sentences = re.split(r"(?<=\.)\s+", plain)
    out = sentences[0]
    for sentence in sentences[1:]:
        if len(out) + 1 + len(sentence) > limit:
            break
        out += " " + sentence
    return out if len(out) <= limit else out[: limit - 3] + "..."


# ---- the `pyfa crosscheck` sub-command ----

EXIT_STATUS = """exit status:
  0    every compared backend and path agrees with the oracle and uses the asked-for rule
  1    a backend or path disagrees, or silently used backprop (or none could be compared)
  2    bad arguments"""


def add_arguments(p) -> None:
    p.add_argument("--backends", default=None, metavar="LIST",
                   help=f"comma-separated, from {','.join(BACKENDS)} (default: every available one; "
                   "julia is reported as unavailable, with the reason, where Julia cannot start)")
    p.add_argument("--paths", default=None, metavar="LIST",
                   help=f"torch execution paths, comma-separated, from {','.join(TORCH_PATHS)}; "
                   "'none' for none (default: every path; those that cannot run here, e.g. "
                   "autocast-cuda without CUDA, say so in one line)")
    p.add_argument("--ad", default=None, metavar="LIST",
                   help=f"Julia AD backends, comma-separated, from {','.join(JULIA_ADS)} (default: "
                   "every one; those that cannot run say so in one line)")
    p.add_argument("--mode", default="fa", choices=CHECK_MODES,
                   help="the rule every backend uses (default: fa)")
    p.add_argument("--modes", default=None, metavar="LIST",
                   help=f"several modes, comma-separated, from {','.join(CHECK_MODES)}, or 'all': one "
                   "report each, then a summary (overrides --mode)")
    p.add_argument("--loss", default="mse", choices=LOSSES,
                   help="mse (targets ~ N(0, 1)) or ce (softmax cross-entropy, one-hot targets) "
                   "(default: mse)")
    p.add_argument("--model", default="mlp", choices=MODELS,
                   help="mlp (widths --sizes) or cnn (a small conv-relu-avgpool-conv-relu-avgpool-dense "
                   "network on 1x12x12 inputs) (default: mlp)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"],
                   help="dtype of the network and data (default: float32)")
    p.add_argument("--sizes", default="50,60,40,2", metavar="WIDTHS",
                   help="layer widths, input first (default: 50,60,40,2, the forum's network)")
    p.add_argument("--activation", default="tanh", choices=list(ACTIVATIONS),
                   help="hidden activation; the output layer is linear (default: tanh)")
    p.add_argument("--batch", type=int, default=64, help="batch size (default: 64)")
    from pyfa.cli import seed_arg

    p.add_argument("--seed", type=seed_arg, default=0,
                   help="weights and feedback from init_mlp(seed), biases and data from "
                   "default_rng(seed + 1); 0 to 2**63-1 (default: 0)")


def _list(text: str | None, option: str) -> list[str] | None:
    if text is None:
        return None
    items = [t.strip() for t in text.split(",")]
    if option in ("--paths", "--ad") and items == ["none"]:
        return []
    if option == "--modes" and items == ["all"]:
        return list(CHECK_MODES)
    if not all(items):
        raise ValueError(f"crosscheck: {option} takes a comma-separated list without empty items, "
                         f"got {text!r}")
    return items


__all__ = [
    "BACKENDS", "TORCH_PATHS", "JULIA_ADS", "MODELS", "CHECK_MODES", "LOSSES", "TOLERANCES",
    "MATCH_DISTANCE", "CNN_INPUT", "VERDICT_FA", "VERDICT_DFA", "VERDICT_BP", "VERDICT_FA_CHAIN",
    "VERDICT_OTHER", "Comparison", "BackendReport", "Report", "crosscheck", "compare", "verdict",
    "expected_verdict", "network_and_data", "format_report", "format_summary", "one_line",
    "add_arguments", "run", "EXIT_STATUS",
]


def format_summary(reports: list[Report]) -> str:
    """One line per mode: each compared backend and path, and whether it passed."""
    lines = ["summary (mode: every backend and path; pass = agrees with the oracle and uses the rule):"]
    for r in reports:
        cells = [f"{b.name} {'pass' if b.agrees and b.verdict == r.expected_verdict else 'FAIL'}"
                 for b in r.compared]
        lines.append(f"  {r.mode:<5} {'PASS' if r.ok else 'FAIL'}  " + ", ".join(cells))
    return "\n".join(lines)


def run(args) -> int:
    try:
        backends = _list(args.backends, "--backends")
        paths = _list(args.paths, "--paths")
        ads = _list(args.ad, "--ad")
        modes = _list(args.modes, "--modes") or [args.mode]
        bad = [m for m in modes if m not in CHECK_MODES]
        if bad:
            raise ValueError(f"crosscheck: unknown mode(s) {bad} in --modes; expected some of {CHECK_MODES}")
        try:
            sizes = tuple(int(s) for s in args.sizes.split(","))
        except ValueError:
            msg = f"crosscheck: --sizes takes comma-separated widths like 50,60,2; got {args.sizes!r}"
            raise ValueError(msg) from None
        reports = []
        for mode in dict.fromkeys(modes):
            reports.append(crosscheck(backends, sizes=sizes, activation=args.activation,
                                      batch=args.batch, mode=mode, dtype=np.dtype(args.dtype),
                                      seed=args.seed, paths=paths, loss=args.loss, julia_ad=ads,
                                      model=args.model))
            if len(modes) > 1:
                print(format_report(reports[-1]) + "\n", flush=True)
    except ValueError as e:
        print(f"pyfa {str(e).removeprefix('pyfa ')}", file=sys.stderr)  # messages start "crosscheck: "
        return 2
    print(format_summary(reports) if len(reports) > 1 else format_report(reports[0]))
    julia = [b for b in reports[0].backends if b.backend == "julia" and b.unavailable and b.path is None]
    if julia and backends is not None and "julia" in backends:  # asked for by name: say it all
        print(f"\njulia: {julia[0].unavailable}", file=sys.stderr)
    return 0 if all(r.ok for r in reports) else 1
