"""Static checks of every Julia file this repository ships, without Julia.

Over ``julia/**/*.jl`` and ``pyfa/**/*.jl``:

- tree-sitter-julia and fatou both parse each file without errors;
- ``pyfa lint`` finds nothing, except the forum snippet ``pyfa/julia/forum_bug.jl``, whose
  bare ``rrule`` it must flag (PFA001): that bug is the point of the snippet;
- ``fatou lint`` (default rules) reports nothing;
- ``fatou lint`` with ``undefined-name``, ``non-public-access`` and ``unresolved-import``,
  resolved against stand-ins of Flux, ChainRulesCore, ... that carry the real packages' export
  and public lists (tests/julia_standins, see its README), reports nothing; and a misspelt name
  planted in a copy of a shipped file IS reported, while the same copy linted without the
  stand-in environment is not (proving the environment is what makes the check work);
- julia/PyFA/Project.toml has a valid UUID and its dependencies' UUIDs are the registered ones.

How fatou resolves names (fatou 0.24, read from its source and checked here): with a
resolution rule selected, ``fatou lint`` finds the environment (``JULIA_PROJECT``, else the
nearest ``Project.toml`` above the file), reads its ``Manifest.toml`` and parses each
dependency's ``src/<Name>.jl`` (a ``path =`` entry for a dev'ed package). A file with a
whole-module ``using X`` it cannot resolve, or any ``eval``/``@eval``, is skipped entirely. A
module bound by an item list (``using Flux: Flux``) counts as a value, so ``Flux.name`` is not
checked. The copies linted here therefore get two line-preserving rewrites: ``@eval using X``
becomes ``using X``, and ``using M: M, a`` becomes ``import M; using M: a`` (the same bindings).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from julia_helpers import (
    REGISTERED_UUIDS,
    STDLIBS,
    blank_comments_and_strings,
    inside,
    julia_imports,
    node_text,
    parse_julia,
    walk,
)

from pyfa.lint import lint_file

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
STANDINS = ROOT / "tests" / "julia_standins"
PACKAGE = ROOT / "julia" / "PyFA"
FORUM_BUG = ROOT / "pyfa" / "julia" / "forum_bug.jl"
EXPECTED_FILES = [
    PACKAGE / "src" / "PyFA.jl",
    PACKAGE / "src" / "dfa.jl",
    PACKAGE / "src" / "conv.jl",
    PACKAGE / "ext" / "PyFAEnzymeExt.jl",
    PACKAGE / "ext" / "PyFAMooncakeExt.jl",
    PACKAGE / "test" / "runtests.jl",
    FORUM_BUG,
    ROOT / "pyfa" / "julia" / "forum_fix.jl",
    ROOT / "pyfa" / "julia" / "bridge.jl",
]
SHIPPED = sorted({*ROOT.glob("julia/**/*.jl"), *ROOT.glob("pyfa/**/*.jl")})

# Registered UUIDs, from each package's own Project.toml (for the stdlibs, their Project.toml
# under JuliaLang/julia's stdlib/ or their own repository).

# fatou findings accepted on purpose: (file name, rule, text in the message) -> why.
ALLOWED = {
    ("bridge.jl", "non-public-access", "`find_package`"):
        "Base.find_package is internal but the documented way to ask whether an optional "
        "package (Enzyme, Mooncake) is installed without loading it",
    ("bridge.jl", "non-public-access", "`require`"):
        "Base.require(into, name), documented in the manual's code loading chapter, is what "
        "`import` calls: the bridge loads Enzyme or Mooncake on first use, inside a function "
        "(an `@eval import` would make fatou skip the whole file)",
    ("runtests.jl", "non-public-access", "`julia_cmd`"):
        "Base.julia_cmd (documented in the manual, not marked public) starts a child Julia "
        "with this one's settings: the tests try `using PyFA, Enzyme` there first",
    ("PyFA.jl", "non-public-access", "`_match_eltype`"):
        "Flux's own Dense converts its input with Flux._match_eltype; DenseFA does exactly "
        "what Dense does (Flux's compat is pinned to 0.16)",
    ("conv.jl", "non-public-access", "`_match_eltype`"):
        "Flux's own Conv converts its input with Flux._match_eltype; ConvFA does exactly "
        "what Conv does (Flux's compat is pinned to 0.16)",
}
RESOLUTION_RULES = ["undefined-name", "non-public-access", "unresolved-import"]


def rel(p: Path) -> str:
    return str(p.relative_to(ROOT))


def test_expected_julia_files_are_shipped():
    missing = [rel(p) for p in EXPECTED_FILES if not p.is_file()]
    assert not missing, f"missing Julia files: {missing}"


# --------------------------------------------------------------------------- pyfa lint


@pytest.mark.parametrize("path", SHIPPED, ids=rel)
def test_tree_sitter_parses(path):
    errors = lint_file(path, select=["PFA000"])
    assert not errors, "\n".join(f.format() for f in errors)


@pytest.mark.parametrize("path", SHIPPED, ids=rel)
def test_pyfa_lint(path):
    findings = lint_file(path)
    if path == FORUM_BUG:
        assert "PFA001" in {f.code for f in findings}, (
            "forum_bug.jl must keep the forum's bare `rrule` (pyfa lint should flag it)")
        # as posted: `::Matrix` rule arguments (PFA002), implicit params (PFA006) may stay
        others = [f for f in findings if f.code not in ("PFA001", "PFA002", "PFA006")]
        assert not others, "\n".join(f.format() for f in others)
    else:
        assert not findings, "\n".join(f.format() for f in findings)


@pytest.mark.parametrize("ext", ["PyFAEnzymeExt", "PyFAMooncakeExt"])
def test_lint_sees_a_rule_left_out_of_an_ad_backend(tmp_path, ext):
    """`pyfa lint` passes PyFA only because both extensions import its rules: without one of
    them, every rule (`fa_matmul`, DFA's three, `fa_conv`) and @non_differentiable mark is reported,
    in the file that defines it."""
    copy = tmp_path / "PyFA"
    shutil.copytree(PACKAGE, copy)
    (copy / "ext" / f"{ext}.jl").write_text(f"module {ext}\nend\n")
    wanted = {"PyFA.jl": ["fa_matmul", "feedback_matrix", "_check_input", "_check_mode"],
              "dfa.jl": ["dfa_matmul", "dfa_conv", "dfa_output"],
              "conv.jl": ["fa_conv", "_conv_dims"]}
    for name, functions in wanted.items():
        findings = [f for f in lint_file(copy / "src" / name) if f.code == "PFA010"]
        for function in functions:
            assert any(f"`{function}`" in f.message for f in findings), (
                name, function, "\n".join(map(str, findings)))


def test_forum_fix_has_no_bare_rrule():
    fix = ROOT / "pyfa" / "julia" / "forum_fix.jl"
    assert "PFA001" not in {f.code for f in lint_file(fix)}


# --------------------------------------------------------------------------- Project.toml


def _project() -> dict:
    return tomllib.loads((PACKAGE / "Project.toml").read_text())


def test_project_identity():
    proj = _project()
    assert proj["name"] == "PyFA"
    u = uuid.UUID(proj["uuid"])
    assert str(u) == proj["uuid"], "UUID must be lowercase 8-4-4-4-12"
    assert u.version == 4 and u.variant == uuid.RFC_4122
    assert proj["uuid"] not in REGISTERED_UUIDS.values()
    assert re.fullmatch(r"\d+\.\d+\.\d+", proj["version"])
    assert re.search(r"^module PyFA\b", (PACKAGE / "src" / "PyFA.jl").read_text(), re.M)


def test_project_dependency_uuids_are_the_registered_ones():
    proj = _project()
    sections = {k: proj.get(k, {}) for k in ("deps", "extras", "weakdeps")}
    for section, deps in sections.items():
        for name, value in deps.items():
            assert name in REGISTERED_UUIDS, (
                f"[{section}] {name}: add its registered UUID (from its own Project.toml) to "
                f"REGISTERED_UUIDS in this test")
            assert value == REGISTERED_UUIDS[name], f"[{section}] {name} = {value}, registered is " \
                                              f"{REGISTERED_UUIDS[name]}"
    declared = set().union(*sections.values())
    compat = proj.get("compat", {})
    assert "julia" in compat
    assert set(compat) - {"julia"} <= declared, "a [compat] entry names an undeclared package"
    for name in set(sections["deps"]) - STDLIBS:
        assert name in compat, f"[compat] has no entry for {name}"
    for target, names in proj.get("targets", {}).items():
        assert set(names) <= declared, f"[targets] {target} names an undeclared package"


def _loaded_packages(path: Path) -> tuple[set, set]:
    """Packages a file loads with `using`/`import`: (plain, only via @eval)."""
    plain, dynamic = set(), set()
    for imp in julia_imports(parse_julia(path.read_bytes())):
        if imp.module and not imp.module.startswith("."):
            (dynamic if imp.in_macro else plain).add(imp.module.split(".")[0])
    return plain - {"Base", "Core"}, dynamic - {"Base", "Core"}


def test_every_loaded_package_is_declared():
    proj = _project()
    deps, extras = set(proj.get("deps", {})), set(proj.get("extras", {}))
    weak = set(proj.get("weakdeps", {}))
    for path in sorted((PACKAGE / "src").rglob("*.jl")):
        plain, dynamic = _loaded_packages(path)
        assert plain | dynamic <= deps | {"PyFA"}, f"{rel(path)} loads undeclared packages"
    for path in sorted((PACKAGE / "ext").rglob("*.jl")):
        plain, dynamic = _loaded_packages(path)
        assert plain | dynamic <= deps | weak | {"PyFA"}, f"{rel(path)}: {plain - deps - weak}"
    for path in sorted((PACKAGE / "test").rglob("*.jl")):
        plain, dynamic = _loaded_packages(path)  # @eval'd loads are optional (Enzyme, CUDA)
        assert plain <= deps | extras | {"PyFA"}, f"{rel(path)}: {plain - deps - extras}"
        assert dynamic <= deps | extras | weak | {"PyFA", "CUDA", "cuDNN"}, rel(path)


def test_extensions_are_wired():
    """Each weak dependency triggers one extension, ext/<Name>.jl, a module of that name which
    loads its trigger, the parent PyFA, and has a [compat] bound; and PyFA's rule reaches it."""
    proj = _project()
    weak = proj.get("weakdeps", {})
    exts = proj.get("extensions", {})
    assert set(weak) == {"Enzyme", "Mooncake"}
    assert exts == {"PyFAEnzymeExt": "Enzyme", "PyFAMooncakeExt": "Mooncake"}
    for ext, trigger in exts.items():
        path = PACKAGE / "ext" / f"{ext}.jl"
        assert path.is_file(), f"[extensions] {ext}: {rel(path)} is missing"
        assert re.search(rf"^module {ext}$", path.read_text(), re.M), rel(path)
        plain, _ = _loaded_packages(path)
        assert {trigger, "PyFA"} <= plain, f"{rel(path)} must load {trigger} and PyFA"
        assert trigger in proj["compat"], f"[compat] has no bound for {trigger}"
        text = blank_comments_and_strings(path.read_bytes()).decode()
        assert "fa_matmul" in text, f"{rel(path)} gives {trigger} no rule for fa_matmul"
        assert "feedback_matrix" in text and "_check_input" in text, rel(path)


def test_juliapkg_json_matches_the_package():
    found = sorted((ROOT / "pyfa").rglob("juliapkg.json"))
    assert found, "pyfa/juliapkg.json is missing"
    proj = _project()
    for path in found:
        spec = json.loads(path.read_text())
        for name, entry in spec.get("packages", {}).items():
            want = proj["uuid"] if name == "PyFA" else REGISTERED_UUIDS.get(name)
            assert want is not None, f"{rel(path)}: {name} has no known UUID"
            assert entry["uuid"] == want, f"{rel(path)}: {name}"


# --------------------------------------------------------------------------- fatou


def _fatou() -> str | None:
    near = Path(sys.executable).with_name("fatou")
    return str(near) if near.exists() else shutil.which("fatou")


@pytest.fixture(scope="module")
def fatou() -> str:
    exe = _fatou()
    if exe is None:
        pytest.fail("fatou is not installed: it is in the dev extra (pip install -e '.[dev]')")
    return exe


def run_fatou(exe: str, paths: list[Path], work: Path, select: list[str] | None = None,
              ) -> list[dict]:
    """`fatou lint --output json`, in a bare environment (no depot, no Julia on PATH)."""
    work.mkdir(parents=True, exist_ok=True)
    config = work / "fatou.toml"
    lines = ["[lint]"] + ([f"select = {json.dumps(select)}"] if select else [])
    config.write_text("\n".join(lines) + "\n")
    env = {"HOME": str(work / "home"), "PATH": str(Path(exe).parent),
           "FATOU_CACHE_HOME": str(work / "cache"), "JULIA_DEPOT_PATH": str(work / "depot"),
           "NO_COLOR": "1", "LANG": os.environ.get("LANG", "C.UTF-8")}
    run = subprocess.run([exe, "lint", "--config", str(config), "--output", "json",
                          *map(str, paths)], capture_output=True, text=True, cwd=work, env=env,
                         timeout=300)
    assert run.returncode in (0, 1), run.stderr
    out = json.loads(run.stdout or "[]")
    for d in out:
        text = Path(d["path"] if Path(d["path"]).is_absolute() else work / d["path"]).read_bytes()
        d["line"] = text[: d["range"]["start"]].count(b"\n") + 1
        d["name"] = Path(d["path"]).name
    return out


def _show(findings: list[dict]) -> str:
    return "\n".join(f"{d['path']}:{d['line']}: {d['severity']}[{d['rule']}] "
                     f"{d['message']['body']}" for d in findings)


def _not_allowed(findings: list[dict]) -> list[dict]:
    return [d for d in findings
            if not any(d["name"] == f and d["rule"] == r and s in d["message"]["body"]
                       for f, r, s in ALLOWED)]


def test_fatou_default_rules(fatou, tmp_path):
    assert SHIPPED
    findings = run_fatou(fatou, SHIPPED, tmp_path)
    assert not _not_allowed(findings), _show(findings)


_EVAL_USING = re.compile(r"@eval\s+(using|import)\b")
_SELF_USING = re.compile(r"^([ \t]*)using[ \t]+(\w+)[ \t]*:[ \t]*\2\b(?!\.)[ \t]*(,[ \t]*)?", re.M)


def _for_fatou(text: str) -> str:
    """The two line-preserving rewrites described in the module docstring."""
    text = _EVAL_USING.sub(r"\1", text)

    def self_using(m: re.Match) -> str:
        indent, mod, more = m.group(1), m.group(2), m.group(3)
        return f"{indent}import {mod}; using {mod}: " if more else f"{indent}import {mod}"
    return _SELF_USING.sub(self_using, text)


def _manifest(with_standins: bool) -> str:
    lines = ['manifest_format = "2.0"', ""]
    if with_standins:
        for d in sorted(STANDINS.iterdir()):
            if (d / "Project.toml").is_file():
                u = tomllib.loads((d / "Project.toml").read_text())["uuid"]
                lines += [f"[[deps.{d.name}]]", f'uuid = "{u}"', f'path = "{d.as_posix()}"', ""]
    return "\n".join(lines)


def build_environment(work: Path, with_standins: bool = True) -> dict[Path, Path]:
    """Copies of the shipped files laid out for fatou: julia/PyFA as a package project, the
    other files in a plain project; both with a Manifest of the stand-ins (or an empty one).
    Returns {shipped file: its copy}."""
    copies = {}
    pkg = work / "PyFA"
    shutil.copytree(PACKAGE, pkg, ignore=shutil.ignore_patterns("Manifest*.toml"))
    (pkg / "Manifest.toml").write_text(_manifest(with_standins))
    scripts = work / "scripts"
    scripts.mkdir()
    deps = "\n".join(f'{n} = "{u}"' for n, u in sorted(REGISTERED_UUIDS.items()))
    (scripts / "Project.toml").write_text(f"[deps]\n{deps}\nPyFA = \"{_project()['uuid']}\"\n")
    pyfa_uuid = tomllib.loads((PACKAGE / "Project.toml").read_text())["uuid"]
    (scripts / "Manifest.toml").write_text(_manifest(with_standins) + (
        f'\n[[deps.PyFA]]\nuuid = "{pyfa_uuid}"\npath = "{pkg.as_posix()}"\n'
        if with_standins else ""))
    for path in SHIPPED:
        if PACKAGE in path.parents:
            copy = pkg / path.relative_to(PACKAGE)
        else:
            copy = scripts / path.relative_to(ROOT)
            copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_text(_for_fatou(path.read_text()))
        copies[path] = copy
    return copies


@pytest.fixture(scope="module")
def resolved(fatou, tmp_path_factory):
    work = tmp_path_factory.mktemp("fatou_env")
    copies = build_environment(work)
    findings = run_fatou(fatou, list(copies.values()), work / "run", RESOLUTION_RULES)
    return copies, findings


def test_some_file_needs_the_environment():
    """At least one shipped file loads a package whole (`using Flux`): for it, the planted-name
    test checks that the stand-ins, not fatou alone, catch the misspelling."""
    assert any(_whole_module_usings(p) & set(REGISTERED_UUIDS) for p in SHIPPED)


def test_rewrites():
    assert _for_fatou("using Flux: Flux\n") == "import Flux\n"
    assert _for_fatou("using ChainRulesCore: ChainRulesCore, NoTangent\n") == \
        "import ChainRulesCore; using ChainRulesCore: NoTangent\n"
    assert _for_fatou("using Flux: Flux.Chain\nusing Flux: gradient\n") == \
        "using Flux: Flux.Chain\nusing Flux: gradient\n"
    assert _for_fatou("ok && @eval using CUDA\n") == "ok && using CUDA\n"


def test_why_the_item_list_rewrite(fatou, tmp_path):
    """fatou checks `Flux.name` only when `Flux` is bound as a module (`import Flux`), not when
    an item list binds it (`using Flux: Flux`), though Julia binds the same thing either way."""
    reported = []
    for header in ("using Flux: Flux", "import Flux"):
        work = tmp_path / header.split()[0]
        proj = work / "Probe"
        (proj / "src").mkdir(parents=True)
        (proj / "Project.toml").write_text(
            f'name = "Probe"\nuuid = "{uuid.uuid4()}"\n[deps]\nFlux = "{REGISTERED_UUIDS["Flux"]}"\n')
        (proj / "Manifest.toml").write_text(_manifest(True))
        src = proj / "src" / "Probe.jl"
        src.write_text(f"module Probe\n{header}\nf(n) = Flux.glorot_unifrom(n, n)\nend\n")
        findings = run_fatou(fatou, [src], work / "run", RESOLUTION_RULES)
        reported.append(any("glorot_unifrom" in d["message"]["body"] for d in findings))
    assert reported == [False, True]


def test_rewrites_keep_line_numbers():
    for path in SHIPPED:
        text = path.read_text()
        assert _for_fatou(text).count("\n") == text.count("\n"), rel(path)


def test_fatou_resolves_every_name(resolved):
    _copies, findings = resolved
    assert not _not_allowed(findings), _show(findings)


# -- planted misspellings: proof that the checks above can fail


def _code_identifiers(path: Path) -> list[tuple[int, int, str]]:
    """(start byte, end byte, text) of the free names fatou checks: identifiers read outside
    strings, comments, import lists and macro calls (fatou exempts a macro call's arguments),
    not the member of a qualified name; and macro names (`@testset`), which it always checks."""
    out = []
    skip = ("string_literal", "line_comment", "block_comment", "using_statement",
            "import_statement", "export_statement")
    for n in walk(parse_julia(path.read_bytes()), stop=skip):
        if inside(n, skip):
            continue
        if n.type == "macro_identifier":
            out.append((n.start_byte, n.end_byte, node_text(n)))
        elif n.type == "identifier":
            parent = n.parent
            if parent is None or parent.type == "macro_identifier":
                continue
            if parent.type == "field_expression" and parent.children[0] is not n:
                continue
            if inside(n, ("macrocall_expression",)):
                continue
            out.append((n.start_byte, n.end_byte, node_text(n)))
    return out


def _misspell(name: str) -> str:
    return name[:-2] + name[-1] + name[-2]


def _standin_names(kind: str) -> set[str]:
    names = set()
    for f in STANDINS.glob("*/src/*.jl"):
        for line in f.read_text().splitlines():
            if line.startswith(kind + " "):
                names.update(n.strip() for n in line[len(kind) + 1:].split(","))
    return names


def _plant(copy: Path, candidates: list[str]) -> str | None:
    """Misspell the first code occurrence of a candidate name in `copy`; return the new name."""
    data = copy.read_bytes()
    idents = _code_identifiers(copy)
    for cand in candidates:
        for start, end, text in idents:
            if text == cand:
                bad = _misspell(cand)
                copy.write_bytes(data[:start] + bad.encode() + data[end:])
                return bad
    return None


EXPORTED = ["@testset", "@test", "test_rrule", "Dense", "Chain", "Adam", "gradient",
            "withgradient", "Xoshiro", "NoTangent", "unthunk", "ProjectTo", "relu",
            "glorot_uniform", "DenseFA", "fa_matmul"]


def _whole_module_usings(path: Path) -> set[str]:
    """Packages loaded whole (`using A, B`, no item list), anywhere in the file's code."""
    return {i.module for i in julia_imports(parse_julia(path.read_bytes()))
            if i.kind == "using" and i.names is None}


@pytest.mark.parametrize("path", SHIPPED, ids=rel)
def test_planted_undefined_name_is_caught_only_with_the_environment(fatou, tmp_path, path):
    found = []
    for with_standins in (True, False):
        work = tmp_path / ("env" if with_standins else "bare")
        copies = build_environment(work, with_standins)
        bad = _plant(copies[path], EXPORTED)
        if bad is None:
            pytest.skip(f"{rel(path)} uses none of {EXPORTED}")
        findings = run_fatou(fatou, [copies[path]], work / "run", RESOLUTION_RULES)
        found.append({d["message"]["body"] for d in findings if d["rule"] == "undefined-name"})
    with_env, without_env = found
    assert f"`{bad}` is not defined" in with_env, with_env
    if _whole_module_usings(path) & (set(REGISTERED_UUIDS) | {"PyFA"}):
        # a whole-module `using Flux` etc.: without the stand-ins fatou cannot tell what it
        # exports and skips the file, so the planted name goes unnoticed
        assert f"`{bad}` is not defined" not in without_env


@pytest.mark.parametrize("path", SHIPPED, ids=rel)
def test_planted_qualified_misspelling_is_caught(fatou, tmp_path, path):
    public = _standin_names("public") | _standin_names("export")
    code = blank_comments_and_strings(_for_fatou(path.read_text()).encode()).decode()
    quals = re.findall(r"\b(Flux|ChainRulesCore|Random|Optimisers|Zygote|Enzyme|EnzymeCore|Mooncake)"
                       r"\.(@?\w+!?)", code)
    quals = [(m, n) for m, n in quals if n in public]
    if not quals:
        pytest.skip(f"{rel(path)} uses no qualified stand-in names")
    results = []
    for with_standins in (True, False):
        work = tmp_path / ("env" if with_standins else "bare")
        copies = build_environment(work, with_standins)
        copy = copies[path]
        data = copy.read_text()
        for mod, name in set(quals):  # docstring occurrences change too; harmless
            data = re.sub(rf"\b{mod}\.{re.escape(name)}(?![\w!])", f"{mod}.{_misspell(name)}",
                          data)
        copy.write_text(data)
        findings = run_fatou(fatou, [copy], work / "run", RESOLUTION_RULES)
        results.append(_not_allowed([d for d in findings if d["rule"] == "non-public-access"]))
    with_env, without_env = results
    assert with_env, f"no misspelt qualified name reported in {rel(path)}"
    assert not without_env


# --------------------------------------------------------------------------- stand-ins


def test_standins_match_the_real_packages(fatou, tmp_path):
    for d in sorted(STANDINS.iterdir()):
        if not (d / "Project.toml").is_file():
            continue
        proj = tomllib.loads((d / "Project.toml").read_text())
        assert proj["name"] == d.name
        assert proj["uuid"] == REGISTERED_UUIDS[d.name], d.name
        assert d.name in (STANDINS / "README.md").read_text()
    findings = run_fatou(fatou, list(STANDINS.glob("*/src/*.jl")), tmp_path)
    assert not findings, _show(findings)
    exported, public = _standin_names("export"), _standin_names("public")
    flux = (STANDINS / "Flux" / "src" / "Flux.jl").read_text()
    for name in ("Dense", "Chain", "gradient", "withgradient", "Adam", "f32", "gpu"):
        assert re.search(rf"^export .*\b{name}\b", flux, re.M), name
    for name in ("@layer", "setup", "glorot_uniform", "trainable", "create_bias", "mse"):
        assert re.search(rf"^public .*(?<![\w@]){re.escape(name)}\b", flux, re.M), name
    assert not re.search(r"^export .*\bglorot_uniform\b", flux, re.M)  # public only since 0.15
    for name in ("rrule", "frule", "NoTangent", "ZeroTangent", "@thunk", "unthunk", "ProjectTo"):
        assert name in exported
    assert {"test_rrule", "⊢", "@testset", "Xoshiro"} <= exported
    assert "seed!" in public
    # Enzyme re-exports EnzymeCore's annotations and its EnzymeRules module; Mooncake marks its
    # high-level API public (its rule macros, @from_rrule and friends, are neither)
    enzyme = (STANDINS / "Enzyme" / "src" / "Enzyme.jl").read_text()
    for name in ("EnzymeRules", "Duplicated", "Const", "Annotation", "make_zero", "autodiff"):
        assert re.search(rf"^export .*\b{name}\b", enzyme, re.M), name
    mooncake = (STANDINS / "Mooncake" / "src" / "Mooncake.jl").read_text()
    assert re.search(r"^public .*\bprepare_pullback_cache\b", mooncake, re.M)
    assert "from_rrule" not in mooncake
