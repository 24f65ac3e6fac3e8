"""pyfa.julia.forum: the post's layer as posted (bare `rrule`: backprop) and fixed (FA)."""

from __future__ import annotations

import difflib
import re

import numpy as np
import pytest
from julia_helpers import julia_or_skip  # noqa: F401

from pyfa import reference
from pyfa.julia import forum
from pyfa.network import init_mlp

RULE_BUG = "function rrule(::typeof(my_matmul), W::Matrix, X::Matrix, B::Matrix)"
RULE_FIX = ("function ChainRulesCore.rrule(::typeof(my_matmul), W::AbstractMatrix, "
            "X::AbstractMatrix, B::AbstractMatrix)")


def _code_lines(text: str) -> list[str]:
    """The file without its leading comment block (the header that says which snippet it is)."""
    lines = text.splitlines()
    while lines and (lines[0].startswith("#") or not lines[0].strip()):
        lines.pop(0)
    return lines


def test_snippets_differ_only_in_the_rule_line():
    bug = forum.SNIPPETS["bug"].read_text()
    fix = forum.SNIPPETS["fix"].read_text()
    assert "ON PURPOSE" in bug.split("\n\n")[0]  # says so at the top
    diff = [d for d in difflib.ndiff(_code_lines(bug), _code_lines(fix)) if d[:1] in "+-"]
    assert diff == [f"- {RULE_BUG}", f"+ {RULE_FIX}"]
    assert "using ChainRulesCore;" in bug  # the bare rrule comes after `using ChainRulesCore`
    assert not re.search(r"\bimport\s+ChainRulesCore\s*:\s*rrule", bug)


def test_post_problem_has_the_posts_shape():
    layers, x, y = forum.post_problem(seed=3)
    assert [p.weight.shape for p in layers] == [(60, 50), (40, 60), (2, 40)]
    assert all(p.bias is None and p.activation == "identity" for p in layers)
    assert x.shape == (64, 50) and y.shape == (64, 2) and x.dtype == np.float32
    assert 0 <= x.min() and x.max() < 1
    again = forum.post_problem(seed=3)
    assert np.array_equal(again[1], x) and np.array_equal(again[0][0].feedback, layers[0].feedback)


def test_lint_sees_the_bug_and_passes_the_fix():
    from pyfa import lint
    assert any(f.code == "PFA001" for f in lint.lint_file(forum.SNIPPETS["bug"]))
    assert lint.lint_file(forum.SNIPPETS["fix"]) == []


def test_run_forum_checks_its_arguments_before_julia():
    layers, x, y = forum.post_problem()
    with pytest.raises(ValueError, match="together"):
        forum.run_forum(x=x)
    with pytest.raises(ValueError, match="target y"):
        forum.run_forum(layers, x, y[:, :1])


def _rel(a, b) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _judge(got, want, rtol=1e-4) -> bool:
    return all(_rel(g[k], w[k]) <= rtol for g, w in zip(got.layers, want.layers, strict=True)
               for k in w) and _rel(got.input, want.input) <= rtol


@pytest.mark.julia
def test_bug_gives_backprop_fix_gives_fa(julia_or_skip):  # noqa: F811
    out = forum.run_forum(seed=0)
    layers, x, y = out["layers"], out["x"], out["y"]
    fa = reference.chain_gradients(layers, x, y, "fa")
    bp = reference.chain_gradients(layers, x, y, "bp")
    assert not _judge(fa, bp, 1e-2)  # FA and BP differ on this problem
    assert _judge(out["bug"], bp) and not _judge(out["bug"], fa, 1e-2)
    assert _judge(out["fix"], fa) and not _judge(out["fix"], bp, 1e-2)
    assert out["bug"].meta["rrule_calls"] == 0  # Zygote never called the bare rule
    assert out["fix"].meta["rrule_calls"] == 3  # once per layer
    assert out["bug"].loss == pytest.approx(fa.loss, rel=1e-5)


@pytest.mark.julia
def test_forum_with_biases_and_activations(julia_or_skip):  # noqa: F811
    layers = init_mlp(forum.POST_SIZES, activation="relu", seed=1)
    rng = np.random.default_rng(2)
    for p in layers:
        p.bias[...] = rng.normal(0, 0.1, p.bias.shape)
    x = rng.standard_normal((forum.POST_BATCH, 50)).astype(np.float32)
    y = rng.standard_normal((forum.POST_BATCH, 2)).astype(np.float32)
    out = forum.run_forum(layers, x, y)
    fa = reference.chain_gradients(layers, x, y, "fa")
    bp = reference.chain_gradients(layers, x, y, "bp")
    assert all(set(g) == {"weight", "bias"} for g in out["fix"].layers)
    assert _judge(out["bug"], bp) and _judge(out["fix"], fa)
