"""The cross-check: agreement and the FA-vs-backprop verdict, including catching a silent fallback."""

import numpy as np
import pytest
import torch
from torch import nn

from pyfa import cli, reference
from pyfa.crosscheck import (
    VERDICT_BP,
    VERDICT_FA,
    VERDICT_OTHER,
    compare,
    crosscheck,
    format_report,
    verdict,
)
from pyfa.network import init_mlp
from pyfa.torch import mlp_gradients


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mode", ["fa", "usf", "frsf"])
def test_torch_agrees_with_reference_and_uses_fa(dtype, mode):
    r = crosscheck(["reference", "torch"], mode=mode, dtype=dtype, sizes=(6, 7, 5, 3), batch=9)
    torch_report = r.backends[1]
    assert torch_report.agrees, [c for c in torch_report.comparisons if not c.passed]
    assert torch_report.verdict == VERDICT_FA
    assert r.ok and r.fa_bp_gap > 0.05
    assert "result: PASS" in format_report(r)


def test_bp_mode_is_reported_as_backprop():
    r = crosscheck(["torch"], mode="bp", dtype=np.float64)
    assert r.ok and r.backends[0].verdict == VERDICT_BP and r.fa_bp_gap == 0


def _data(dtype=np.float64):
    layers = init_mlp([8, 6, 4, 2], seed=3, dtype=dtype)
    rng = np.random.default_rng(0)
    return layers, rng.normal(size=(10, 8)).astype(dtype), rng.normal(size=(10, 2)).astype(dtype)


def test_verdict_catches_a_silent_backprop_backend():
    """A torch network of plain nn.Linear (what the forum bug amounts to) must be called backprop."""
    layers, x, y = _data()
    plain = nn.Sequential()
    for i, p in enumerate(layers):
        lin = nn.Linear(p.in_features, p.out_features, dtype=torch.float64)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(p.weight))
            lin.bias.copy_(torch.from_numpy(p.bias))
        plain.append(lin)
        if i < len(layers) - 1:
            plain.append(nn.Tanh())
    fa = reference.chain_gradients(layers, x, y, "fa")
    bp = reference.chain_gradients(layers, x, y, "bp")
    got = mlp_gradients(plain, x, y)
    assert got.meta["mode"] == "bp"
    assert verdict(got, fa, bp) == VERDICT_BP
    diffs = compare(got, fa, np.float64)
    failed = [c.name for c in diffs if not c.passed]
    assert "layer 0 weight" in failed and "input" in failed
    assert "layer 2 weight" not in failed  # the top layer's gradient is the same under FA and BP


def test_verdict_neither():
    layers, x, y = _data()
    fa = reference.chain_gradients(layers, x, y, "fa")
    bp = reference.chain_gradients(layers, x, y, "bp")
    usf = reference.chain_gradients(layers, x, y, "usf")
    assert verdict(fa, fa, bp) == VERDICT_FA
    assert verdict(bp, fa, bp) == VERDICT_BP
    assert verdict(usf, fa, bp) == VERDICT_OTHER


def test_compare_tolerance_is_dtype_aware():
    layers, x, y = _data(np.float32)
    want = reference.chain_gradients(layers, x, y, "fa")
    got = reference.chain_gradients(layers, x, y, "fa")
    got.layers[1]["weight"] = got.layers[1]["weight"] * (1 + 1e-6)
    assert all(c.passed for c in compare(got, want, np.float32))
    assert not all(c.passed for c in compare(got, want, np.float64))
    got.layers[1]["weight"] = got.layers[1]["weight"] * 1.01
    bad = [c for c in compare(got, want, np.float32) if not c.passed]
    assert [c.name for c in bad] == ["layer 1 weight"] and bad[0].max_rel == pytest.approx(0.01, rel=0.01)


def test_julia_unavailable_is_one_line_and_rest_compared(capsys):
    from pyfa import julia

    if julia.available():
        pytest.skip("Julia is available here; this test is for machines without it")
    r = crosscheck(None)
    assert [b.backend for b in r.backends] == ["reference", "torch", "julia"]
    assert r.backends[2].unavailable and r.ok
    code = cli.main(["crosscheck"])
    out = capsys.readouterr().out
    assert code == 0
    assert sum(line.startswith("julia: unavailable") for line in out.splitlines()) == 1
    assert "torch vs reference" in out


def test_cli_errors_and_exit_status(capsys):
    assert cli.main(["crosscheck", "--backends", "torch,nope"]) == 2
    assert "unknown backend" in capsys.readouterr().err
    assert cli.main(["crosscheck", "--backends", "torch", "--batch", "0"]) == 2
    assert "batch must be >= 1" in capsys.readouterr().err
    assert cli.main(["crosscheck", "--backends", "torch", "--sizes", "50"]) == 2
    assert "at least two widths" in capsys.readouterr().err
    assert cli.main(["crosscheck", "--backends", "torch", "--sizes", "5,x"]) == 2
    assert "--sizes takes" in capsys.readouterr().err
    # the oracle compared with itself proves nothing: a usage error
    assert cli.main(["crosscheck", "--backends", "reference"]) == 2
    err = capsys.readouterr().err
    assert "reference is the oracle itself; name torch or julia" in err
    assert err.startswith("pyfa crosscheck: ") and "crosscheck: crosscheck" not in err
    assert cli.main(["crosscheck", "--backends", "reference,torch", "--dtype", "float64"]) == 0
    with pytest.raises(ValueError, match="brsf"):
        crosscheck(["torch"], mode="brsf")
