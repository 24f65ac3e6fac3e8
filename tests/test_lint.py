"""`pyfa.lint`: each rule catches its planted bug, the fixed code is clean, and the command line
prints `file:line:col: CODE message` plus a `fix:` line with the documented exit status.

The Julia fixtures live in tests/fixtures/julia/. `forum_bug.jl` is the Discourse post's layer
as posted (a bare `rrule` after `using ChainRulesCore`); `forum_fixed.jl` is the same layer with
`ChainRulesCore.rrule`, and the mutation tests break the fixed layer one rule at a time.
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
    assert set(lint.RULES) == {f"PFA00{i}" for i in range(10)}


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
