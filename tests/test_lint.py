"""`pyfa.lint`: each rule catches its planted bug, the fixed code is clean, and the command line
prints `file:line:col: CODE message` plus a `fix:` line with the documented exit status.

The Julia fixtures live in tests/fixtures/julia/. `forum_bug.jl` is the Discourse post's layer
as posted (a bare `rrule` after `using ChainRulesCore`); `forum_fixed.jl` is the same layer with
`ChainRulesCore.rrule`, and the mutation tests break the fixed layer one rule at a time. The
packages under ad/ exercise PFA010 (rules Enzyme/Mooncake never import). Each rule's own
examples are run by tests/test_lint_rules.py; files, includes, FIFOs and scale by
tests/test_lint_project.py; the parser by tests/test_lint_parsing.py.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from pyfa import lint
from pyfa.lint import Finding, lint_file, lint_paths, lint_source

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "julia"
FORMAT = re.compile(r"^(?P<path>.+):(?P<line>\d+):(?P<col>\d+): (?P<code>PFA\d{3}) (?P<msg>.+)$")


def codes(findings: list[Finding]) -> list[str]:
    return [f.code for f in findings]


def line_of(path: Path, needle: str) -> int:
    """1-based line of the first line of `path` containing `needle`."""
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if needle in line:
            return i
    raise AssertionError(f"{needle!r} not in {path}")


# --------------------------------------------------------------------------- planted bugs


def test_forum_bug_bare_rrule_is_flagged():
    path = FIXTURES / "forum_bug.jl"
    findings = lint_file(path)
    assert codes(findings) == ["PFA001"]
    f = findings[0]
    assert (f.line, f.column) == (line_of(path, "function rrule("), 1)
    assert "new function `rrule`" in f.message and "module ForumBug" in f.message
    assert "plain backprop" in f.message
    assert f.suggestion.startswith("write `function ChainRulesCore.rrule(::typeof(fa_matmul),")


def test_forum_fixed_is_clean():
    assert lint_file(FIXTURES / "forum_fixed.jl") == []


def test_using_selected_rrule_is_a_load_error():
    path = FIXTURES / "using_selected_rrule.jl"
    findings = lint_file(path)
    assert codes(findings) == ["PFA001"]
    assert "using ChainRulesCore: rrule" in findings[0].message
    assert "must be explicitly imported to be extended" in findings[0].message
    assert findings[0].line == line_of(path, "function rrule(")


def test_import_selected_rrule_extends():
    assert lint_file(FIXTURES / "import_selected_rrule.jl") == []


def test_syntax_error_has_a_location():
    path = FIXTURES / "syntax_error.jl"
    findings = lint_file(path)
    assert findings and set(codes(findings)) == {"PFA000"}
    assert findings[0].line == line_of(path, "y = sum(x")


def test_wrong_tangent_count():
    path = FIXTURES / "wrong_tangent_count.jl"
    findings = lint_file(path)
    assert codes(findings) == ["PFA003", "PFA003"]
    long_form, short_form = findings
    assert long_form.line == line_of(path, "return NoTangent(), δ * x', B' * δ")
    assert "expected 4, found 3" in long_form.message
    assert "fa_matmul_pullback" in long_form.message
    assert long_form.suggestion.endswith("(NoTangent(), ∂W, ∂x, ∂B)")
    assert short_form.line == line_of(path, "scale(a, x), ȳ ->")
    assert "expected 3, found 2" in short_form.message


def test_matrix_argument():
    path = FIXTURES / "matrix_argument.jl"
    findings = lint_file(path)
    assert codes(findings) == ["PFA002", "PFA002"]
    direct, via_where = findings
    assert "`W::Matrix{Float32}`" in direct.message and "AbstractMatrix" in direct.suggestion
    assert "M<:VecOrMat" in via_where.message and "AbstractVecOrMat" in via_where.suggestion
    assert "PyArray" in direct.message


def test_functor_is_deprecated():
    path = FIXTURES / "functor_layer.jl"
    findings = lint_file(path)
    assert codes(findings) == ["PFA004"]
    assert findings[0].line == line_of(path, "@functor Affine")
    assert "Flux.@layer Affine" in findings[0].suggestion


def test_trainable_names_a_missing_field():
    path = FIXTURES / "trainable_missing_field.jl"
    findings = lint_file(path)
    assert codes(findings) == ["PFA005"]
    assert "`scale`" in findings[0].message
    assert findings[0].suggestion == "use field names only: trainable=(weight, bias)"


def test_implicit_params_are_warnings():
    findings = lint_file(FIXTURES / "implicit_params.jl")
    assert codes(findings) == ["PFA006"] * 3
    assert all(f.message.startswith("warning: ") and f.severity == "warning" for f in findings)
    assert "Flux.setup" in findings[0].suggestion


def test_export_of_undefined_name():
    findings = lint_file(FIXTURES / "export_undefined.jl")
    assert codes(findings) == ["PFA007"]
    assert "`missing_function`" in findings[0].message


def test_export_of_modules_and_eval_generated_names():
    reexport = "module M\nusing LinearAlgebra\nimport Random\nexport LinearAlgebra, Random\nend\n"
    assert lint_source(reexport) == []
    generated = "module M\nfor n in (:a, :b)\n    @eval $n() = 1\nend\nexport a, b\nend\n"
    assert lint_source(generated) == []  # @eval can define anything: not checked
    assert codes(lint_source(generated.replace("@eval $n() = 1", "nothing"))) == ["PFA007"] * 2


def test_layer_without_struct_and_trainable_feedback():
    findings = lint_file(FIXTURES / "layer_without_struct.jl")
    assert sorted(codes(findings)) == ["PFA008", "PFA009"]
    assert any("DenseFb" in f.message for f in findings if f.code == "PFA008")


def test_feedback_field_left_trainable():
    findings = lint_file(FIXTURES / "feedback_trainable.jl")
    assert codes(findings) == ["PFA009"]
    assert findings[0].suggestion == "add `Flux.@layer DenseFA trainable=(weight,)`"


_CONV_LIKE = """using Flux
struct ConvFA{N, M, F, A<:AbstractArray, R<:AbstractArray, V}
    weight::A
    feedback::R
    bias::V
    σ::F
    stride::NTuple{N, Int}
    pad::NTuple{M, Int}
    groups::Int
    mode::Symbol
end
"""


@pytest.mark.parametrize("struct, want", [
    (_CONV_LIKE, "(weight, bias)"),     # not σ, stride, pad, groups, mode
    ("using Flux\nstruct Scale{V<:AbstractVector, F}\n    scale::V\n    feedback::V\n    σ::F\n"
     "    shift::Matrix{Float32}\n    k::Int\nend\n", "(scale, shift)"),   # the array-typed fields
])
def test_trainable_feedback_fix_lists_only_the_fields_to_train(struct, want):
    findings = lint_source(struct)
    assert codes(findings) == ["PFA009"]
    name = "ConvFA" if "ConvFA" in struct else "Scale"
    assert findings[0].suggestion == f"add `Flux.@layer {name} trainable={want}`"


def test_trainable_feedback_fix_without_known_array_fields():
    findings = lint_source("struct Odd\n    w\n    feedback\nend\n")
    assert codes(findings) == ["PFA009"]
    assert "trainable=(...)` naming the array fields to train (not `feedback`)" in findings[0].suggestion


@pytest.mark.parametrize("method", [
    "Flux.trainable(a::ConvFA) = (; weight = a.weight, bias = a.bias, feedback = a.feedback)",
    "Flux.trainable(c::ConvFA) = (weight = c.weight, bias = c.bias, feedback = c.feedback)",
    "Flux.trainable(c::ConvFA) = (; c.weight, c.bias, c.feedback)",
    "function Flux.trainable(c::ConvFA)\n    c.groups > 1 && return (; c.weight, c.feedback)\n"
    "    return (; c.weight, c.bias)\nend",                       # a condition, not on the mode
    "function Flux.trainable(c::ConvFA)\n    if c.groups > 1\n        (; c.weight, c.bias, c.feedback)\n"
    "    else\n        (; c.weight, c.bias)\n    end\nend",
    "Flux.trainable(c::ConvFA) = c.groups > 1 ? (; c.weight, c.bias, c.feedback) : (; c.weight)",
])
def test_trainable_method_that_trains_feedback_whatever_the_mode(method):
    findings = lint_source(_CONV_LIKE + method + "\n")
    assert codes(findings) == ["PFA009"], [f.format() for f in findings]
    assert "`Flux.trainable(::ConvFA)` returns `feedback` whatever the mode" in findings[0].message
    assert "weight = " in findings[0].suggestion and "mode === :kp" in findings[0].suggestion


@pytest.mark.parametrize("method", [
    "Flux.trainable(c::ConvFA) = (; weight = c.weight, bias = c.bias)",
    "function Flux.trainable(c::ConvFA)\n    c.mode === :kp && return (; c.weight, c.bias, c.feedback)\n"
    "    return (; c.weight, c.bias)\nend",
    "function Flux.trainable(c::ConvFA)\n    c.mode !== :kp || return (; c.weight, c.bias, c.feedback)\n"
    "    return (; c.weight, c.bias)\nend",
    "Flux.trainable(c::ConvFA) = c.mode === :kp ? (; c.weight, c.bias, c.feedback) : (; c.weight, c.bias)",
    "function Flux.trainable(c::ConvFA)\n    if c.groups > 1\n        (; c.weight)\n"
    "    elseif c.mode == :kp\n        (; c.weight, c.bias, c.feedback)\n    else\n"
    "        (; c.weight, c.bias)\n    end\nend",
    "Flux.trainable(c::ConvFA) = merge((; c.weight), (; c.feedback))",   # not judged
])
def test_trainable_method_that_keeps_feedback_out_or_to_a_mode(method):
    assert lint_source(_CONV_LIKE + method + "\n") == []


def test_pyfa_trainable_methods_pass_and_their_mutation_is_caught():
    """PyFA's own `trainable` methods give `feedback` only in mode :kp; without the guard, PFA009
    says so (in the file that has the method)."""
    for name in ("PyFA.jl", "conv.jl"):
        path = ROOT / "julia" / "PyFA" / "src" / name
        source = path.read_text(encoding="utf-8")
        assert "PFA009" not in codes(lint_file(path))
        guard = re.search(r"\n    (\w)\.mode === :kp && return \(; weight", source)
        assert guard, name
        mutated = source.replace(f"{guard.group(1)}.mode === :kp && return (; weight",
                                 "return (; weight", 1)
        found = [f for f in lint_source(mutated, str(path)) if f.code == "PFA009"]
        assert len(found) == 1 and "whatever the mode" in found[0].message, name


def test_implicit_params_fixture_has_a_clean_twin():
    assert lint_file(FIXTURES / "explicit_training.jl") == []


@pytest.mark.parametrize("src", [
    "using Flux\nps = Flux.params(model)\n",
    "using Zygote\nps = params(model)\n",
    "gs = gradient(() -> loss(model), ps)\n",
    "gs = Flux.withgradient(() -> loss(model), ps)\n",
    "gs = gradient(function () loss(model) end, ps)\n",
    "gs = Zygote.gradient(ps) do\n    loss(model)\nend\n",
])
def test_both_implicit_forms_are_flagged(src):
    assert codes(lint_source(src)) == ["PFA006"]


@pytest.mark.parametrize("src", [
    "using Flux\ngs = gradient(m -> loss(m), model)\n",
    "using Flux\ngs = gradient((m, x) -> loss(m, x), model, x)\n",
    "using Flux\ngs = gradient(model) do m\n    loss(m)\nend\n",
    "params(x) = x\ny = params(1)\n",  # not Flux's
])
def test_explicit_training_is_not_flagged(src):
    assert lint_source(src) == []


def test_tuple_valued_trainable():
    path = FIXTURES / "tuple_trainable.jl"
    findings = lint_file(path)
    assert codes(findings) == ["PFA011", "PFA011"]
    short, long = findings
    assert short.line == line_of(path, "Flux.trainable(a::DenseFA) = (a.weight, a.bias)")
    assert long.line == line_of(path, "return (s.scale,)")
    assert "Optimisers 0.4" in short.message and "`==`" in short.message
    assert "feedback" in short.message and short.severity == "warning"
    assert short.suggestion == ("write `Flux.@layer DenseFA trainable=(weight, bias)` instead of this "
                                "method, or return a NamedTuple: `(; weight = a.weight, bias = a.bias)`")
    assert "trainable=(scale,)" in long.suggestion and "(; scale = s.scale)" in long.suggestion
    assert lint_file(FIXTURES / "namedtuple_trainable.jl") == []


# --------------------------------------------------------------------------- PFA010: AD backends

AD = FIXTURES / "ad"


def test_rules_imported_into_no_ad_backend():
    path = AD / "ADMissing" / "src" / "rules.jl"
    findings = lint_file(path)
    assert codes(findings) == ["PFA010", "PFA010"]
    rule, zero = findings
    assert rule.line == line_of(path, "function ChainRulesCore.rrule(::typeof(fa_matmul)")
    assert "`fa_matmul`" in rule.message and "neither Enzyme nor Mooncake" in rule.message
    assert "backprop" in rule.message and rule.severity == "warning"
    assert "`Enzyme.@import_rrule(typeof(fa_matmul), AbstractMatrix, AbstractVecOrMat, " \
           "AbstractMatrix)`" in rule.suggestion
    assert "`Mooncake.@from_rrule Mooncake.MinimalCtx Tuple{typeof(fa_matmul), AbstractMatrix, " \
           "AbstractVecOrMat, AbstractMatrix}`" in rule.suggestion
    assert zero.line == line_of(path, "@non_differentiable feedback")
    assert "`EnzymeRules.inactive(::typeof(feedback), args...) = true`" in zero.suggestion
    assert "`Mooncake.@zero_derivative Mooncake.MinimalCtx Tuple{typeof(feedback), " \
           "AbstractMatrix}`" in zero.suggestion
    # the package entry point has no rule of its own: nothing to report there
    assert lint_file(AD / "ADMissing" / "src" / "ADMissing.jl") == []


def test_rules_imported_into_both_backends_in_extensions():
    # imported macro names (`@import_rrule`, `@zero_derivative`), qualified ones
    # (`Mooncake.@from_rrule`, `Enzyme.EnzymeRules.inactive`), an ext/<X>/<X>.jl extension whose
    # import sits in a file it includes, inside `@eval`
    assert lint_paths([AD / "ADCovered"]) == []


def test_the_missing_backend_is_named():
    findings = lint_file(AD / "ADEnzymeOnly" / "src" / "rules.jl")
    assert codes(findings) == ["PFA010", "PFA010"]
    for f in findings:
        assert "Enzyme but not Mooncake" in f.message
        assert "AutoMooncake" in f.message and "AutoEnzyme" not in f.message
        assert "Mooncake." in f.suggestion and "Enzyme" not in f.suggestion


def test_an_unlisted_extension_does_not_count():
    findings = lint_file(AD / "ADUnlisted" / "src" / "rules.jl")
    assert codes(findings) == ["PFA010", "PFA010"]
    assert all("Enzyme but not Mooncake" in f.message for f in findings)
    assert all('list `ADUnlistedMooncakeExt = "Mooncake"` under [extensions]' in f.suggestion
               for f in findings)


def _ad_package(tmp_path, project_extra: str, files: dict) -> Path:
    root = tmp_path / "P"
    (root / "src").mkdir(parents=True)
    (root / "Project.toml").write_text('name = "P"\nuuid = "7a5b6c70-8d9e-4f0a-9b1c-2d3e4f506172"\n'
                                       + project_extra)
    for name, body in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(body)
    return root


RULE = ("using ChainRulesCore\nf(x) = 2x\n"
        "ChainRulesCore.rrule(::typeof(f), x::Real) = f(x), ȳ -> (NoTangent(), 2ȳ)\n")


def test_only_listed_backends_are_required(tmp_path):
    root = _ad_package(tmp_path, '[weakdeps]\nMooncake = "da2b9cff-9c12-43a0-ae48-6db2b0edb7d6"\n',
                       {"src/P.jl": "module P\n" + RULE + "end\n"})
    findings = lint_file(root / "src" / "P.jl")
    assert codes(findings) == ["PFA010"]
    assert "is not imported into Mooncake (Mooncake is in Project.toml)" in findings[0].message
    assert "Enzyme" not in findings[0].message + findings[0].suggestion


def test_a_hard_dependency_imported_in_src_counts(tmp_path):
    src = ("module P\nusing Enzyme\n" + RULE
           + "Enzyme.@import_rrule(typeof(f), Real)\nend\n")
    root = _ad_package(tmp_path, '[deps]\nEnzyme = "7da242da-08ed-463a-9acd-ee780be4f1d9"\n',
                       {"src/P.jl": src})
    assert lint_file(root / "src" / "P.jl") == []


def test_no_ad_backend_in_project_toml_or_no_package_means_no_warning(tmp_path):
    root = _ad_package(tmp_path, '[deps]\nChainRulesCore = "d360d2e6-b24c-11e9-a2a3-2a2ae2dbcce4"\n',
                       {"src/P.jl": "module P\n" + RULE + "end\n"})
    assert lint_file(root / "src" / "P.jl") == []
    assert lint_source(RULE) == []


def test_test_files_of_an_ad_package_are_not_package_code(tmp_path):
    root = _ad_package(tmp_path, '[weakdeps]\nEnzyme = "7da242da-08ed-463a-9acd-ee780be4f1d9"\n',
                       {"src/P.jl": "module P\nend\n", "test/runtests.jl": RULE})
    assert lint_file(root / "test" / "runtests.jl") == []


# --------------------------------------------------------------------------- include context


def test_included_fragment_inherits_the_hosts_import():
    pkg = FIXTURES / "host" / "src"
    assert lint_file(pkg / "rules.jl") == []
    assert lint_paths([pkg]) == []


def test_included_fragment_without_import_is_flagged(tmp_path):
    src = tmp_path / "Frag" / "src"
    src.mkdir(parents=True)
    (tmp_path / "Frag" / "Project.toml").write_text('name = "Frag"\n')
    host = (FIXTURES / "host" / "src" / "Host.jl").read_text()
    host = host.replace("import ChainRulesCore: rrule\n", "").replace("module Host", "module Frag")
    (src / "Frag.jl").write_text(host)
    (src / "rules.jl").write_text((FIXTURES / "host" / "src" / "rules.jl").read_text())
    findings = lint_file(src / "rules.jl")
    assert codes(findings) == ["PFA001"]
    assert "module Frag" in findings[0].message


# --------------------------------------------------------------------------- mutations


FIXED = (FIXTURES / "forum_fixed.jl").read_text()
MUTATIONS = {
    "bare rrule": ("function ChainRulesCore.rrule(", "function rrule(", {"PFA001"}),
    "using-selected rrule": (
        "using Flux, ChainRulesCore, LinearAlgebra\n",
        "using Flux, ChainRulesCore, LinearAlgebra\nusing ChainRulesCore: rrule\n"
        "rrule(::typeof(identity), x) = x, ȳ -> (NoTangent(), ȳ)\n",
        {"PFA001"}),
    "Matrix weight": ("W::AbstractMatrix, x::", "W::Matrix, x::", {"PFA002"}),
    "Vector input": ("x::AbstractVecOrMat,\n", "x::Vector{Float32},\n", {"PFA002"}),
    "tangent dropped": ("return NoTangent(), ∂W, ∂x, NoTangent()", "return NoTangent(), ∂W, ∂x",
                        {"PFA003"}),
    "tangent added": ("return NoTangent(), ∂W, ∂x, NoTangent()",
                      "return (NoTangent(), ∂W, ∂x, NoTangent(), NoTangent())", {"PFA003"}),
    "functor": ("Flux.@layer DenseFA trainable=(weight, bias)", "Flux.@functor DenseFA",
                {"PFA004", "PFA009"}),
    "misspelt field": ("trainable=(weight, bias)", "trainable=(weight, bais)", {"PFA005"}),
    "feedback trainable": ("trainable=(weight, bias)", "trainable=(weight, feedback, bias)",
                           {"PFA009"}),
    "export typo": ("export DenseFA, fa_matmul", "export DenseFA, fa_matmull", {"PFA007"}),
    "layer typo": ("Flux.@layer DenseFA", "Flux.@layer DenseFa", {"PFA008", "PFA009"}),
    "missing end": ("    return y, fa_matmul_pullback\nend\n", "    return y, fa_matmul_pullback\n",
                    {"PFA000"}),
}


@pytest.mark.parametrize("name", MUTATIONS)
def test_mutation_of_the_fixed_layer_is_caught(name):
    old, new, expected = MUTATIONS[name]
    assert old in FIXED, f"mutation {name!r} no longer applies to forum_fixed.jl"
    findings = lint_source(FIXED.replace(old, new, 1), "forum_fixed.jl")
    assert set(codes(findings)) == expected, [f.format() for f in findings]


# --------------------------------------------------------------------------- syntax forms


@pytest.mark.parametrize("src", [
    "rrule(::typeof(f), x) = f(x), ȳ -> (NoTangent(), ȳ)",
    "rrule(::typeof(f), x::T) where {T<:Real} = f(x), ȳ -> (NoTangent(), ȳ)",
    "function rrule(::typeof(f), x)::Tuple\n    return f(x), ȳ -> (NoTangent(), ȳ)\nend",
    "function rrule(::typeof(f), x::T) where T\n    return f(x), ȳ -> (NoTangent(), ȳ)\nend",
    "@inline function rrule(::typeof(f), x)\n    return f(x), ȳ -> (NoTangent(), ȳ)\nend",
    "function frule((_, ẋ), ::typeof(f), x)\n    return f(x), ẋ\nend",
    "function rrule end",
])
def test_every_definition_form_of_a_bare_rule_is_flagged(src):
    findings = lint_source("using ChainRulesCore\nf(x) = x\n" + src + "\n")
    assert codes(findings) == ["PFA001"], [f.format() for f in findings]
    assert findings[0].line == 3


def test_calls_and_qualified_definitions_are_not_flagged():
    src = """
using ChainRulesCore, ChainRulesTestUtils
import ChainRulesCore as CRC
f(x) = 2x
CRC.rrule(::typeof(f), x) = f(x), ȳ -> (NoTangent(), 2ȳ)
y, pb = rrule(f, 1.0)
test_rrule(f, 1.0)
"""
    assert lint_source(src) == []


def test_rule_config_argument_gets_no_tangent():
    src = """
using ChainRulesCore
const RCR = RuleConfig{>:HasReverseMode}
g(h, x) = h(x)
function ChainRulesCore.rrule(cfg::RCR, ::typeof(g), h, x)
    y, back = rrule_via_ad(cfg, h, x)
    g_pullback(ȳ) = (NoTangent(), NoTangent(), back(ȳ)[2])
    return y, g_pullback
end
"""
    assert lint_source(src) == []
    broken = src.replace("(NoTangent(), NoTangent(), back(ȳ)[2])", "(NoTangent(), back(ȳ)[2])")
    assert codes(lint_source(broken)) == ["PFA003"]


def test_pullback_bound_to_a_name_and_returned_tuple_variable():
    src = """
using ChainRulesCore
h(a, b) = a * b
function ChainRulesCore.rrule(::typeof(h), a, b)
    pb = function (ȳ)
        ∂s = (NoTangent(), ȳ * b)
        return ∂s
    end
    return h(a, b), pb
end
"""
    findings = lint_source(src)
    assert codes(findings) == ["PFA003"] and "expected 3, found 2" in findings[0].message


def test_columns_count_characters_not_bytes():
    findings = lint_source("using ChainRulesCore\nα = 1; rrule(x) = x\n")
    assert [(f.line, f.column) for f in findings] == [(2, 8)]


def test_chain_rules_core_itself_may_define_bare_rrule():
    src = "module ChainRulesCore\nfunction rrule end\nrrule(::Any, ::Vararg{Any}) = nothing\nend\n"
    assert lint_source(src) == []


def test_select_and_ignore():
    text = (FIXTURES / "implicit_params.jl").read_text() + "\nusing ChainRulesCore\nrrule(x) = x\n"
    assert set(codes(lint_source(text))) == {"PFA001", "PFA006"}
    assert set(codes(lint_source(text, select=["PFA001"]))) == {"PFA001"}
    assert set(codes(lint_source(text, ignore=["pfa006"]))) == {"PFA001"}


def test_finding_format():
    f = Finding("a.jl", 3, 5, "PFA001", "msg", "do this")
    assert f.format() == "a.jl:3:5: PFA001 msg\n    fix: do this"
    assert set(lint.RULES) == {f"PFA{i:03d}" for i in range(12)}


# --------------------------------------------------------------------------- command line


def _check_output(out: str, expected_codes: set[str]) -> None:
    lines = out.splitlines()
    heads = [ln for ln in lines if not ln.startswith("    ")]
    assert heads, out
    for i, ln in enumerate(lines):
        if ln.startswith("    "):
            continue
        m = FORMAT.match(ln)
        assert m, ln
        assert int(m["line"]) >= 1 and int(m["col"]) >= 1
        assert lines[i + 1].startswith("    fix: ") and len(lines[i + 1]) > len("    fix: ")
    assert {FORMAT.match(h)["code"] for h in heads} == expected_codes


def test_main_exit_codes_and_format(capsys):
    bug = str(FIXTURES / "forum_bug.jl")
    assert lint.main([bug]) == 1
    out = capsys.readouterr().out
    _check_output(out, {"PFA001"})
    assert out.startswith(f"{bug}:{line_of(Path(bug), 'function rrule(')}:1: PFA001 ")

    assert lint.main([str(FIXTURES / "forum_fixed.jl")]) == 0
    assert capsys.readouterr().out == ""

    assert lint.main([str(FIXTURES / "does_not_exist.jl")]) == 2
    assert "no such file" in capsys.readouterr().err

    assert lint.main(["--select", "NOPE", bug]) == 2
    assert lint.main([]) == 2
    capsys.readouterr()

    implicit = str(FIXTURES / "implicit_params.jl")
    assert lint.main([implicit]) == 1  # warnings count
    assert lint.main(["--ignore", "PFA006", implicit]) == 0
    capsys.readouterr()
    assert lint.main(["--select", "PFA001,PFA003", str(FIXTURES)]) == 1
    _check_output(capsys.readouterr().out, {"PFA001", "PFA003"})


def test_unreadable_file_exits_2(tmp_path, capsys):
    dangling = tmp_path / "gone.jl"
    dangling.symlink_to(tmp_path / "nowhere.jl")
    good = FIXTURES / "forum_fixed.jl"
    assert lint.main([str(good), str(dangling)]) == 2
    assert "gone.jl" in capsys.readouterr().err
    with pytest.raises(OSError):
        lint_file(dangling)


def test_python_dash_m(tmp_path):
    run = subprocess.run([sys.executable, "-m", "pyfa.lint", str(FIXTURES / "forum_bug.jl"),
                          str(FIXTURES / "wrong_tangent_count.jl")],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert run.returncode == 1, run.stderr
    _check_output(run.stdout, {"PFA001", "PFA003"})
    assert "finding(s)" in run.stderr

    clean = subprocess.run([sys.executable, "-m", "pyfa.lint", str(FIXTURES / "forum_fixed.jl")],
                           capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert (clean.returncode, clean.stdout) == (0, "")

    missing = subprocess.run([sys.executable, "-m", "pyfa.lint", str(tmp_path / "none.jl")],
                             capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert missing.returncode == 2


def test_pyfa_lint_subcommand():
    from pyfa import cli

    assert "lint" in cli.COMMANDS
    try:
        status = cli.main(["lint", str(FIXTURES / "forum_bug.jl")])
    except SystemExit as exc:  # argparse
        status = exc.code
    assert status == 1


def test_import_is_light():
    code = ("import sys, pyfa.lint; bad = [m for m in ('torch', 'juliacall', 'tree_sitter') "
            "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr


def test_local_closures_named_rrule_are_not_rules():
    src = (
        "using ChainRulesCore\n"
        "function foo(x)\n    rrule(y) = y + 1\n    return rrule(x)\nend\n"
        "let\n    function rrule(z) z end\nend\n"
        "g = x -> begin\n    rrule(y) = y\nend\n"
        "map([1]) do v\n    rrule(q) = q\nend\n"
        "function rrule(::typeof(sin), x)\n    return sin(x), y -> (NoTangent(), cos(x) * y)\nend\n"
    )
    findings = lint_source(src)
    assert [(f.line, f.code) for f in findings] == [(15, "PFA001")]


def test_empty_directory_is_reported(tmp_path, capsys):
    assert lint.main([str(tmp_path)]) == 0
    assert "no *.jl files found" in capsys.readouterr().err
