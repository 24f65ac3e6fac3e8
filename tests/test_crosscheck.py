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
    r = crosscheck(["reference", "torch"], mode=mode, dtype=dtype, sizes=(6, 7, 5, 3), batch=9, paths=[])
    torch_report = r.backends[1]
    assert torch_report.agrees, [c for c in torch_report.comparisons if not c.passed]
    assert torch_report.verdict == VERDICT_FA
    assert r.ok and r.fa_bp_gap > 0.05
    assert "result: PASS" in format_report(r)


def test_bp_mode_is_reported_as_backprop():
    r = crosscheck(["torch"], mode="bp", dtype=np.float64, paths=["eager", "func"])
    assert r.ok and r.backends[0].verdict == VERDICT_BP and r.fa_bp_gap == 0
    assert [p.verdict for p in r.paths] == [VERDICT_BP, VERDICT_BP]
    assert "backprop (as asked)" in format_report(r)


def _data(dtype=np.float64):
    layers = init_mlp([8, 6, 4, 2], activation="tanh", seed=3, dtype=dtype)
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
    r = crosscheck(None, paths=[])
    assert [b.backend for b in r.backends] == ["reference", "torch", "julia"]
    assert r.backends[2].unavailable and r.ok
    code = cli.main(["crosscheck", "--paths", "eager"])
    out = capsys.readouterr().out
    assert code == 0
    assert sum(line.startswith("julia: unavailable") for line in out.splitlines()) == 1
    assert "torch vs reference" in out
    assert "python -c" not in out and "julia: unavailable (Julia is unavailable: " in out  # the reason


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
    assert cli.main(["crosscheck", "--backends", "reference,torch", "--dtype", "float64",
                     "--paths", "eager"]) == 0
    with pytest.raises(SystemExit) as e:
        cli.main(["crosscheck", "--backends", "torch", "--seed", "-1"])
    assert e.value.code == 2 and "--seed: must be a whole number from 0" in capsys.readouterr().err
    assert cli.main(["crosscheck", "--backends", "reference", "--paths", "eager"]) == 2
    assert cli.main(["crosscheck", "--backends", "julia", "--paths", "eager"]) == 2
    assert "paths are the torch backend's" in capsys.readouterr().err
    with pytest.raises(ValueError, match="brsf"):
        crosscheck(["torch"], mode="brsf")


@pytest.mark.parametrize("mode", ["fa", "bp", "usf", "frsf", "kp", "dfa"])
@pytest.mark.parametrize("loss", ["mse", "ce"])
def test_every_mode_and_loss_agrees_with_its_oracle(mode, loss):
    from pyfa.crosscheck import expected_verdict

    r = crosscheck(["reference", "torch"], mode=mode, loss=loss, sizes=(6, 7, 5, 3), batch=9,
                   dtype=np.float64, paths=["eager", "func"])
    assert r.ok, format_report(r)
    assert [b.verdict for b in r.compared] == [expected_verdict(mode)] * 3
    if mode == "kp":
        assert "layer 0 feedback" in [c.name for c in r.backends[1].comparisons]


def test_dfa_verdict_catches_the_fa_chain_and_backprop():
    from pyfa.crosscheck import VERDICT_DFA, VERDICT_FA_CHAIN

    layers = init_mlp([8, 6, 5, 2], activation="tanh", seed=3, dtype=np.float64, direct_feedback=True)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(10, 8)), rng.normal(size=(10, 2))
    dfa, fa, bp = (reference.chain_gradients(layers, x, y, m) for m in ("dfa", "fa", "bp"))
    assert verdict(dfa, dfa, bp, mode="dfa", fa_chain=fa) == VERDICT_DFA
    assert verdict(fa, dfa, bp, mode="dfa", fa_chain=fa) == VERDICT_FA_CHAIN
    assert verdict(bp, dfa, bp, mode="dfa", fa_chain=fa) == VERDICT_BP


def test_a_backend_that_raises_is_a_failed_row_not_a_crash(monkeypatch):
    import pyfa.crosscheck as cc

    def broken(*args, **kwargs):
        raise RuntimeError("no such rule here")

    monkeypatch.setattr(cc, "_gradients", broken)
    r = crosscheck(["torch"], paths=[])
    assert not r.ok and r.backends[0].verdict == "failed: RuntimeError: no such rule here"
    assert "FAIL: failed: RuntimeError: no such rule here" in format_report(r)


def test_cli_modes_print_each_report_and_a_summary(capsys):
    code = cli.main(["crosscheck", "--backends", "torch", "--paths", "eager", "--modes", "fa,dfa",
                     "--sizes", "6,7,5,3", "--loss", "ce"])
    out = capsys.readouterr().out
    assert code == 0
    assert "cross-check: mode fa, loss ce" in out and "cross-check: mode dfa, loss ce" in out
    assert "  fa    PASS  torch pass, torch/eager pass" in out
    assert "  dfa   PASS  torch pass, torch/eager pass" in out
    assert cli.main(["crosscheck", "--backends", "torch", "--modes", "fa,brsf"]) == 2
    assert "unknown mode(s) ['brsf']" in capsys.readouterr().err
    assert cli.main(["crosscheck", "--backends", "torch", "--ad", "zygote", "--paths", "none"]) == 2
    assert "add julia to the backends" in capsys.readouterr().err


@pytest.mark.parametrize("mode", ["fa", "bp", "usf", "frsf", "kp", "dfa"])
def test_small_cnn_agrees_with_its_oracle_in_every_mode(mode):
    from pyfa.crosscheck import expected_verdict

    r = crosscheck(["reference", "torch"], model="cnn", mode=mode, loss="ce", batch=6,
                   dtype=np.float64, paths=["eager", "func"])
    assert r.ok, format_report(r)
    assert [b.verdict for b in r.compared] == [expected_verdict(mode)] * 3
    assert "small CNN conv-relu-avgpool-conv-relu-avgpool-dense on 1x12x12" in format_report(r)
    assert r.reference.layers[1] == {} and r.reference.input.shape == (6, 1, 12, 12)


def test_small_cnn_under_autocast_and_ddp_keeps_dfa():
    from pyfa.crosscheck import VERDICT_DFA

    r = crosscheck(["torch"], model="cnn", mode="dfa", loss="ce", batch=8, paths=["autocast", "ddp"])
    assert r.ok, format_report(r)
    assert [p.verdict for p in r.paths] == [VERDICT_DFA, VERDICT_DFA]


@pytest.mark.julia
@pytest.mark.parametrize("ad", ["zygote", "enzyme", "mooncake"])
@pytest.mark.parametrize("mode", ["fa", "bp", "usf", "frsf", "kp", "dfa"])
def test_julia_rows_per_ad_backend_agree_and_use_the_rule(ad, mode):
    """Flux's gradients, under each AD backend, against the oracle: the Julia rows of the report."""
    from julia_helpers import julia_ad_or_skip

    from pyfa.crosscheck import expected_verdict

    julia_ad_or_skip(ad)
    r = crosscheck(["reference", "julia"], mode=mode, paths=[], julia_ad=[ad], dtype=np.float64)
    (row,) = [b for b in r.backends if b.backend == "julia"]
    assert row.path == ad and row.agrees, format_report(r)
    assert row.verdict == expected_verdict(mode), format_report(r)


@pytest.mark.julia
@pytest.mark.parametrize("mode", ["fa", "kp", "dfa"])
def test_julia_small_cnn_and_ce_agree_with_the_oracle(mode):
    from julia_helpers import skip_or_fail, skip_reason

    from pyfa import julia

    if not julia.available():
        skip_or_fail(skip_reason())
    r = crosscheck(["reference", "julia"], model="cnn", mode=mode, loss="ce", paths=[],
                   julia_ad=["zygote"], dtype=np.float64)
    assert r.ok, format_report(r)


def test_a_backend_missing_an_array_is_a_failed_row_not_a_usage_error(monkeypatch, capsys):
    """A kp backend that gives the feedback no gradient must fail the check (status 1), naming why."""
    import pyfa.crosscheck as cc

    real = cc._gradients

    def no_feedback_gradient(*args, **kwargs):
        got = real(*args, **kwargs)
        for g in got.layers:
            g.pop("feedback", None)
        return got

    monkeypatch.setattr(cc, "_gradients", no_feedback_gradient)
    assert cli.main(["crosscheck", "--backends", "torch", "--paths", "none", "--mode", "kp"]) == 1
    assert "verdict: failed: layer 0: gradients have keys ['bias', 'weight']" in capsys.readouterr().out


def test_one_layer_dfa_is_its_own_fa_chain_and_passes():
    from pyfa.crosscheck import VERDICT_DFA

    r = crosscheck(["torch"], mode="dfa", sizes=(5, 3), paths=[])
    assert r.ok and r.backends[0].verdict == VERDICT_DFA, format_report(r)


def test_an_mlp_whose_widths_look_like_an_image_is_still_an_mlp():
    r = crosscheck(["torch"], sizes=(1, 12, 12), paths=[])
    assert r.ok and r.model == "mlp"
    assert [g["weight"].shape for g in r.reference.layers] == [(12, 1), (12, 12)]
