"""`pyfa.lint.parsing`: the detour around tree-sitter-julia's slow adjoint quotes changes no
finding, no position and no quoted text; it touches only adjoint quotes in code.

(tree-sitter-julia 0.23.1 keeps a second parse stack alive to the end of the file after each
``W' * x``, so such files parse in quadratic time; `parse` reads those quotes as spaces when the
result parses cleanly. benchmarks/bench_lint.py measures the effect.)
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pyfa.lint import lint_file, lint_source, parsing
from pyfa.lint.parsing import SourceFile, _adjoints_before_operators, text

ROOT = Path(__file__).resolve().parents[1]
JULIA_FILES = sorted({*ROOT.glob("tests/fixtures/julia/**/*.jl"), *ROOT.glob("julia/**/*.jl"),
                      *ROOT.glob("pyfa/**/*.jl")})
FENCE = re.compile(r"^```julia[^\n]*\n(.*?)^```", re.S | re.M)


def spaced(src: str) -> str:
    """`src` with each quote the detour reads as a space shown as `_`."""
    b = bytearray(src.encode())
    for q in _adjoints_before_operators(bytes(b)):
        b[q] = ord("_")
    return b.decode()


@pytest.mark.parametrize("src, expected", [
    ("y = W' * x", "y = W_ * x"),
    ("y = B'*δ", "y = B_*δ"),
    ("y = f(x)' * z", "y = f(x)_ * z"),
    ("y = a.b' .* c", "y = a.b_ .* c"),
    ("y = x'' == z", "y = x'_ == z"),
    ("y = δ' * x", "y = δ_ * x"),                 # after a Unicode identifier
    ("y = x'\nz = (x') * g(x', y)", "y = x_\nz = (x') * g(x', y)"),
    ("y = [x'-1 x' +1]", "y = [x'-1 x_ +1]"),   # not before an operator with a unary form
    ("c = 'a' * \"b\"", None),
    ("c = ['a' 'b'] == x", None),
    ("c = '\\'' * x", None),
    ("c = 'é' * x", None),
    ('s = "it\'s" * "W\' * x"', None),
    ("s = raw\"W' * x\"", None),
    ("s = \"\"\"\nW' * x\n\"\"\"", None),
    ("# W' * x\n#= W' * x =#\ny = 1", None),
    ("#= nested #= W' * x =# still a comment W' * y =#", None),
    ('s = "v = $(W\' * x)"', 's = "v = $(W_ * x)"'),
    ('s = "v = $(f("a)") * W\' * x)" * y\' * z', 's = "v = $(f("a)") * W_ * x)" * y_ * z'),
    ("cmd = `echo W' * x`", None),
])
def test_which_quotes_read_as_spaces(src, expected):
    assert spaced(src) == (src if expected is None else expected)


def test_the_detour_keeps_offsets_lines_and_the_original_text():
    src = "module M\nfunction g(W, δ)\n    return W' * δ, δ' * W\nend\nend\n".encode()
    file = SourceFile("m.jl", src)
    assert not file.root.has_error
    ret = next(n for n in parsing.walk(file.root) if n.type == "return_statement")
    assert file.text(ret) == "return W' * δ, δ' * W"  # quoted from the original bytes
    assert text(ret) == "return W  * δ, δ  * W"       # as parsed
    assert file.position(ret) == (3, 5)
    assert file.tree.root_node.end_byte == len(src)


def test_a_file_with_a_syntax_error_is_parsed_as_written(monkeypatch):
    calls = []
    real = parsing.parser

    class Spy:
        def parse(self, source):
            calls.append(source)
            return real().parse(source)

    monkeypatch.setattr(parsing, "parser", lambda: Spy())
    src = b"y = W' * x\nz = sum(x\n"
    tree = parsing.parse(src)
    assert calls == [src.replace(b"W'", b"W "), src]   # the spaced copy fails: parse the original
    assert tree.root_node.has_error
    calls.clear()
    parsing.parse(b"y = W' * x\n")
    assert len(calls) == 1


def _without_detour(monkeypatch):
    monkeypatch.setattr(parsing, "_adjoints_before_operators", lambda source: [])


@pytest.mark.parametrize("path", JULIA_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_findings_are_the_same_without_the_detour(path, monkeypatch):
    with_detour = [f.format() for f in lint_file(path)]
    _without_detour(monkeypatch)
    assert [f.format() for f in lint_file(path)] == with_detour


def test_doc_examples_lint_the_same_without_the_detour(monkeypatch):
    blocks = [b for page in sorted((ROOT / "docs").glob("*.md"))
              for b in FENCE.findall(page.read_text(encoding="utf-8"))]
    assert len(blocks) > 10
    with_detour = [[f.format() for f in lint_source(b)] for b in blocks]
    _without_detour(monkeypatch)
    assert [[f.format() for f in lint_source(b)] for b in blocks] == with_detour
