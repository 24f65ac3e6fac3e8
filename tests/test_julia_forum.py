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
# The post's code as posted (discourse.julialang.org/t/custom-rrule-for-feedback-alignment/72159),
# up to the rule and `Flux.trainable`; its model, data and gradient lines live in the bridge.
POST = r"""
using Flux; using Flux: @functor, glorot_uniform
using ChainRulesCore; using ChainRulesCore: NoTangent, @thunk
# DenseFA struct
struct DenseFA{M1<:Matrix, M2<:Matrix}
    W::M1 # Weights used in the forward pass
    B::M2 # Weights used in the backwards pass
    function DenseFA(W::M1, B::M2) where {M1<:Matrix, M2<:Matrix}
        new{M1,M2}(W, B)
    end
end
# Initialize DenseFA struct
function DenseFA(in::Integer, out::Integer; init = glorot_uniform)
   W = init(out, in)
   B = init(out, in)
   return DenseFA(W, B)
end
@functor DenseFA
(a::DenseFA)(X) = my_matmul(a.W, X, a.B)
function my_matmul(W, X, B)
   return W * X
end
function Base.show(io::IO, l::DenseFA)
   print(io, "DenseFA(", size(l.W, 2), ", ", size(l.W, 1), ")")
end
function rrule(::typeof(my_matmul), W::Matrix, X::Matrix, B::Matrix)
   y = my_matmul(W, X, B)
   println("==========Using rrule with fixed random feedback weights==========")
   function times_pullback(ΔΩ)
      ∂W = @thunk(ΔΩ * X')
      ∂X = @thunk(B' * ΔΩ) # Use random feedback weight matrix B
      return (NoTangent(), ∂W, ∂X, NoTangent())
   end
   return y, times_pullback
end
Flux.trainable(a::DenseFA) = (a.W,)
"""


def _code_lines(text: str) -> list[str]:
    """The file without its leading comment block (the header that says which snippet it is)."""
    lines = text.splitlines()
    i = 0
    while i < len(lines) and lines[i].startswith("#"):
        i += 1
    while i < len(lines) and not lines[i].strip():
        i += 1
    return lines[i:]


def _is_comment(line: str) -> bool:
    return line.lstrip().startswith("#")


def test_snippets_differ_only_in_the_rule_line():
    bug = forum.SNIPPETS["bug"].read_text()
    fix = forum.SNIPPETS["fix"].read_text()
    assert "ON PURPOSE" in bug.split("\n\n")[0]  # says so at the top
    diff = [d for d in difflib.ndiff(_code_lines(bug), _code_lines(fix)) if d[:1] in "+-"]
    assert [d for d in diff if not _is_comment(d[2:])] == [f"- {RULE_BUG}", f"+ {RULE_FIX}"]
    fix_lines = _code_lines(fix)
    above = fix_lines[fix_lines.index(RULE_FIX) - 1]
    assert _is_comment(above) and "the post" in above and "W::Matrix" in above  # says what it was
    assert "using ChainRulesCore;" in bug  # the bare rrule comes after `using ChainRulesCore`
    assert not re.search(r"\bimport\s+ChainRulesCore\s*:\s*rrule", bug)


@pytest.mark.parametrize("name", ["bug", "fix"])
def test_every_line_changed_from_the_post_says_so(name):
    """A line of a snippet either is the post's (up to indentation) or carries a comment naming
    the post (or the fix), so a reader knows exactly what was changed."""
    posted = {" ".join(line.split()) for line in POST.splitlines() if line.strip()}
    lines = _code_lines(forum.SNIPPETS[name].read_text())
    unmarked = [line for i, line in enumerate(lines)
                if line.strip() and " ".join(line.split()) not in posted
                and "the post" not in line and "the fix" not in line
                and not (i > 0 and _is_comment(lines[i - 1]) and "the post" in lines[i - 1])]
    assert unmarked == [], f"forum_{name}.jl: lines changed from the post without saying so"


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
