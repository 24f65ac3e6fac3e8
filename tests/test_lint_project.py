"""`pyfa lint` and the files around a linted file: what it reads, what it parses, what it never
opens, and that its cost does not grow with the number of rules in a module.

- a FIFO named ``*.jl`` (or ``Project.toml``) beside a linted file is never opened: each check
  runs the command in a subprocess with a timeout, so a regression fails instead of hanging;
- linting one file parses only that file and the files an ``include`` chain needs (a spy on
  `pyfa.lint.parsing.parse` records what was parsed); each file is parsed at most once, and read
  at most twice (once as bytes by the includer search, once to be parsed);
- one pass per module collects its imports, however many rules it defines.

The timing side (lines per second, linear scaling) is benchmarks/bench_lint.py's job.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from pyfa.lint import lint_file, lint_paths, lint_source, parsing, project

ROOT = Path(__file__).resolve().parents[1]
needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")

HOST = ('module Pkg\nusing ChainRulesCore\nimport ChainRulesCore: rrule\n\n'
        'include("rules.jl")\ninclude("big.jl")\n\nend\n')
RULES = "f(x) = 2x\nrrule(::typeof(f), x) = f(x), ȳ -> (NoTangent(), 2ȳ)\n"
BIG = "".join(f"g{i}(x) = x + {i}\nstruct S{i}\n    a::Int\nend\n" for i in range(2000))


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, body in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(body, encoding="utf-8")
    return root


def _package(tmp_path: Path, **extra: str) -> Path:
    return _write(tmp_path / "Pkg", {
        "Project.toml": 'name = "Pkg"\nuuid = "8b6c7d80-9e0f-4a1b-8c2d-3e4f50617283"\n',
        "src/Pkg.jl": HOST, "src/rules.jl": RULES, "src/big.jl": BIG,
        "src/unrelated.jl": BIG.replace("g", "h"), "test/runtests.jl": "using Pkg, Test\n",
        **extra})


@pytest.fixture
def parsed(monkeypatch):
    """The sources `pyfa.lint.parsing.parse` is called on, in order."""
    seen: list[bytes] = []
    real = parsing.parse

    def spy(source: bytes):
        seen.append(source)
        return real(source)

    monkeypatch.setattr(parsing, "parse", spy)
    return seen


def _which(seen: list[bytes], root: Path) -> list[str]:
    by_content = {p.read_bytes(): p.relative_to(root).as_posix() for p in root.rglob("*.jl")}
    return sorted(by_content.get(s, "<not a file>") for s in seen)


# --------------------------------------------------------------------------- what is parsed


def test_a_fragment_parses_its_includer_but_no_sibling_or_neighbour(tmp_path, parsed):
    root = _package(tmp_path)
    assert lint_file(root / "src" / "rules.jl") == []  # the bare rrule inherits Pkg's import
    assert _which(parsed, root) == ["src/Pkg.jl", "src/rules.jl"]


def test_an_included_fragment_without_the_import_is_still_flagged(tmp_path, parsed):
    root = _package(tmp_path)
    (root / "src" / "Pkg.jl").write_text(HOST.replace("import ChainRulesCore: rrule\n", ""))
    findings = lint_file(root / "src" / "rules.jl")
    assert [f.code for f in findings] == ["PFA001"] and "module Pkg" in findings[0].message
    assert _which(parsed, root) == ["src/Pkg.jl", "src/rules.jl"]


def test_a_file_nobody_includes_parses_only_itself(tmp_path, parsed):
    root = _package(tmp_path, **{"src/loose.jl": "using ChainRulesCore\n" + RULES})
    assert [f.code for f in lint_file(root / "src" / "loose.jl")] == ["PFA001"]
    assert _which(parsed, root) == ["src/loose.jl"]


def test_a_file_whose_rules_need_no_context_reads_no_other_file(tmp_path, monkeypatch):
    root = _package(tmp_path, **{"src/qualified.jl": (
        "using ChainRulesCore\nf(x) = 2x\n"
        "ChainRulesCore.rrule(::typeof(f), x) = f(x), ȳ -> (NoTangent(), 2ȳ)\n")})
    reads: list[Path] = []
    real = project.read_regular
    monkeypatch.setattr(project, "read_regular", lambda p: reads.append(Path(p)) or real(p))
    assert lint_file(root / "src" / "qualified.jl") == []
    # Project.toml: does the package list Enzyme or Mooncake (PFA010)? It does not: nothing more
    assert [p.name for p in reads] == ["qualified.jl", "Project.toml"]


def test_module_wide_checks_read_the_siblings_only_when_the_file_needs_them(tmp_path, parsed):
    # `export g0` is defined in big.jl: PFA007 must see the whole module, so big.jl is parsed
    root = _package(tmp_path, **{"src/rules.jl": "export g0, f\n" + RULES})
    assert lint_file(root / "src" / "rules.jl") == []
    assert _which(parsed, root) == ["src/Pkg.jl", "src/big.jl", "src/rules.jl"]
    (root / "src" / "rules.jl").write_text("export g0, f, nowhere\n" + RULES)
    findings = lint_file(root / "src" / "rules.jl")
    assert [f.code for f in findings] == ["PFA007"] and "`nowhere`" in findings[0].message


def test_each_neighbour_is_read_and_parsed_at_most_once(tmp_path, parsed, monkeypatch):
    fragments = {f"src/part{i}.jl": f"export p{i}\np{i}(x) = x\n" + RULES for i in range(12)}
    host = HOST.replace('include("big.jl")\n', "".join(f'include("part{i}.jl")\n' for i in range(12)))
    root = _package(tmp_path, **fragments, **{"src/Pkg.jl": host})
    reads: list[Path] = []
    real = project.read_regular
    monkeypatch.setattr(project, "read_regular", lambda p: reads.append(Path(p)) or real(p))
    assert lint_paths([root / "src"]) == []
    names = Counter(p.relative_to(root).as_posix() for p in reads if p.suffix == ".jl")
    # once to see whether it says `include("…")` (the includer search), once to be parsed
    assert max(names.values()) <= 2, names
    assert len(parsed) == len(set(parsed)) == 16  # each .jl of src/, once


def test_one_pass_per_module_for_imports(monkeypatch):
    """Imports are collected once per `using`/`import` statement, not once per rule."""
    from pyfa.lint import scopes

    calls = []
    real = scopes.imports_of
    monkeypatch.setattr(scopes, "imports_of", lambda *a: calls.append(a) or real(*a))
    n = 300
    rules = "".join(f"f{i}(x) = x\nrrule(::typeof(f{i}), x) = f{i}(x), ȳ -> (NoTangent(), ȳ)\n"
                    for i in range(n))
    assert lint_source("using ChainRulesCore\nimport ChainRulesCore: rrule\n" + rules) == []
    assert len(calls) == 2
    calls.clear()
    findings = lint_source("using ChainRulesCore\n" + rules)
    assert [f.code for f in findings] == ["PFA001"] * n and len(calls) == 1


# --------------------------------------------------------------------------- FIFOs


def _lint_cli(*args: Path, timeout: int = 60) -> subprocess.CompletedProcess:
    """`python -m pyfa.lint ARGS`; a hang fails the test (TimeoutExpired) instead of blocking."""
    return subprocess.run([sys.executable, "-m", "pyfa.lint", *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT, timeout=timeout)


@needs_fifo
def test_a_fifo_beside_the_linted_file_is_never_opened(tmp_path):
    root = _package(tmp_path)
    os.mkfifo(root / "src" / "pipe.jl")        # in the package tree searched for includers
    os.mkfifo(root / "ext.jl")
    run = _lint_cli(root / "src" / "rules.jl")
    assert run.returncode == 0, run.stdout + run.stderr
    run = _lint_cli(root / "src")              # a folder: the FIFO is not one of its *.jl files
    assert run.returncode == 0, run.stdout + run.stderr
    assert "no findings in 4 file(s)" in run.stderr


@needs_fifo
def test_a_fifo_beside_a_file_outside_any_package_is_never_opened(tmp_path):
    folder = _write(tmp_path / "loose" / "inner", {"rules.jl": RULES})
    os.mkfifo(folder / "host.jl")              # the file's folder and the one above are searched
    os.mkfifo(folder.parent / "main.jl")
    os.mkfifo(folder.parent / "Project.toml")  # not a regular file: not a package root either
    run = _lint_cli(folder / "rules.jl")
    assert run.returncode == 1, run.stdout + run.stderr  # bare rrule, no includer: PFA001
    assert "PFA001" in run.stdout


@needs_fifo
def test_a_fifo_named_on_the_command_line_is_refused(tmp_path):
    os.mkfifo(tmp_path / "pipe.jl")
    good = _write(tmp_path, {"good.jl": "x = 1\n"}) / "good.jl"
    run = _lint_cli(tmp_path / "pipe.jl", good)
    assert run.returncode == 2, run.stdout + run.stderr
    assert "pipe.jl: not a regular file" in run.stderr
    with pytest.raises(OSError, match="not a regular file"):
        lint_file(tmp_path / "pipe.jl")
