"""The documentation builds, lists every page, and its examples are true.

- ``mkdocs build --strict`` succeeds (mkdocs.yml turns broken links and anchors and pages missing
  from ``nav`` into warnings, which --strict makes errors);
- every page under docs/ is in ``nav``, and every ``nav`` entry exists;
- pages marked ``<!-- python blocks run in tests/test_docs.py -->`` have their ```python blocks run,
  in order, in one namespace per page; other pages' python blocks are compiled;
- ```julia blocks parse (tree-sitter-julia, through pyfa.lint); a block preceded by
  ``<!-- lint: clean -->`` has no findings, ``<!-- lint: PFA001 -->`` exactly those codes; with
  ``excerpt: PATH`` it must appear verbatim in that file of the repository;
- every ``pyfa ...`` line of a ```sh block parses with the real ``pyfa`` argument parser, and every
  ``make TARGET`` is a Makefile target.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
RUN_MARK = "<!-- python blocks run in tests/test_docs.py -->"
FENCE = re.compile(
    r"^(?:<!--(?P<note>[^\n]*?)-->\n)?```(?P<lang>[\w+-]*)[^\n]*\n(?P<body>.*?)^```[ \t]*$",
    re.S | re.M,
)


def _pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


def _blocks(page: Path, lang: str):
    """(line, note dict, body) of each fenced block in `lang` on `page`."""
    text = page.read_text(encoding="utf-8")
    for m in FENCE.finditer(text):
        if m.group("lang") != lang:
            continue
        notes = {}
        for part in (m.group("note") or "").split(";"):
            if ":" in part:
                k, v = part.split(":", 1)
                notes[k.strip()] = v.strip()
        yield text.count("\n", 0, m.start("body")) + 1, notes, m.group("body")


def _nav_files(nav) -> list[str]:
    out = []
    for item in nav:
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, dict):
            for v in item.values():
                out.extend(_nav_files(v) if isinstance(v, list) else [v])
    return out


def test_every_page_is_in_nav():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    nav = _nav_files(config["nav"])
    pages = {p.relative_to(DOCS).as_posix() for p in _pages()}
    assert sorted(pages - set(nav)) == [], "pages missing from mkdocs.yml nav"
    assert sorted(set(nav) - pages) == [], "nav entries without a page"
    assert len(nav) == len(set(nav)), "a page is listed twice in nav"


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None, reason="mkdocs is not installed")
def test_mkdocs_build_strict(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
         str(ROOT / "mkdocs.yml"), "--site-dir", str(tmp_path / "site")],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    site = tmp_path / "site"
    built = {p.relative_to(site).as_posix() for p in site.rglob("*.html")}
    for page in _pages():
        rel = page.relative_to(DOCS).with_suffix("")
        want = "index.html" if rel.name == "index" else f"{rel.as_posix()}/index.html"
        assert want in built, f"{page.name} was not built"


def test_readme_links_to_the_docs():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "docs/" in readme, "README should point readers at docs/"


RUNNABLE = [p for p in _pages()
            if re.search(rf"^{re.escape(RUN_MARK)}$", p.read_text(encoding="utf-8"), re.M)]


def test_some_pages_run_their_examples():
    names = {p.name for p in RUNNABLE}
    assert {"pytorch-api.md", "conventions.md", "crosscheck.md", "training.md"} <= names


@pytest.mark.parametrize("page", RUNNABLE, ids=lambda p: p.name)
def test_python_examples_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    namespace: dict = {"__name__": f"docs_{page.stem.replace('-', '_')}"}
    blocks = list(_blocks(page, "python"))
    assert blocks, f"{page.name} is marked runnable but has no python blocks"
    for line, _, body in blocks:
        code = compile(body, f"{page.name}:{line}", "exec")
        exec(code, namespace)  # noqa: S102 - the documentation's own examples


@pytest.mark.parametrize("page", _pages(), ids=lambda p: p.name)
def test_python_examples_compile(page):
    for line, _, body in _blocks(page, "python"):
        compile(body, f"{page.name}:{line}", "exec")


@pytest.mark.parametrize("page", _pages(), ids=lambda p: p.name)
def test_julia_examples_parse_and_lint(page):
    from pyfa import lint
    for line, notes, body in _blocks(page, "julia"):
        where = f"{page.name}:{line}"
        findings = lint.lint_source(body, where)
        syntax = [f.format() for f in findings if f.code == "PFA000"]
        assert not syntax, f"{where}: the Julia example does not parse:\n" + "\n".join(syntax)
        expected = notes.get("lint")
        if expected == "clean":
            assert not findings, "\n".join(f.format() for f in findings)
        elif expected:
            codes = {f.code for f in findings}
            assert codes == set(expected.split(",")), (where, sorted(codes))
        if "excerpt" in notes:
            source = (ROOT / notes["excerpt"]).read_text(encoding="utf-8")
            assert body.strip() in source, (
                f"{where} is no longer a verbatim excerpt of {notes['excerpt']}"
            )


def _command_lines(page: Path):
    for line, _, body in list(_blocks(page, "sh")) + list(_blocks(page, "bash")):
        for i, raw in enumerate(body.splitlines()):
            try:
                words = shlex.split(raw, comments=True)
            except ValueError as e:
                raise AssertionError(f"{page.name}:{line + i}: {e}: {raw}") from None
            while words and re.match(r"^\w+=", words[0]):  # leading VAR=value assignments
                words = words[1:]
            for stop in ("|", "&&", ";", ">"):
                if stop in words:
                    words = words[: words.index(stop)]
            if words:
                yield f"{page.name}:{line + i}", words


def test_documented_commands_exist():
    from pyfa.cli import build_parser

    parser = build_parser()
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([\w-]+):", makefile, flags=re.M))
    checked = 0
    for page in _pages():
        for where, words in _command_lines(page):
            if words[0] == "pyfa":
                try:
                    parser.parse_args(words[1:])
                except SystemExit:
                    raise AssertionError(
                        f"{where}: `{shlex.join(words)}` is not a valid pyfa command"
                    ) from None
                checked += 1
            elif words[0] == "make":
                for t in words[1:]:
                    assert t in targets, f"{where}: `make {t}`: no such Makefile target"
                checked += 1
    assert checked >= 10


def test_results_images_exist():
    page = DOCS / "results.md"
    for img in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", page.read_text(encoding="utf-8")):
        assert (DOCS / img).is_file(), f"results.md shows {img}, which is not in docs/"


def test_results_numbers_match_their_histories():
    """The accuracy table of results.md states what docs/results/histories.json holds."""
    import json

    page = (DOCS / "results.md").read_text(encoding="utf-8")
    histories = json.loads((DOCS / "results" / "histories.json").read_text())
    rows = {m: cells for m, cells in re.findall(r"^\| `(\w+)` \|(.*)\|$", page, flags=re.M)}
    assert set(histories) <= set(rows), (sorted(histories), sorted(rows))
    for mode, h in histories.items():
        cells = [c.strip() for c in rows[mode].split("|")]
        first95 = next((i + 1 for i, a in enumerate(h["test_acc"]) if a >= 0.95), None)
        want = [f"{100 * h['train_acc'][-1]:.1f} %", f"{100 * h['test_acc'][-1]:.1f} %",
                str(first95), f"{h['loss'][-1]:.4f}", f"{h['test_loss'][-1]:.4f}"]
        assert cells == want, (mode, cells, want)
        assert h["config"]["dataset"] == "digits" and h["config"]["mode"] == mode
    command = re.search(r"^pyfa train .*$", page, flags=re.M).group(0)
    config = next(iter(histories.values()))["config"]
    for flag, key in (("--activation", "activation"), ("--epochs", "epochs"), ("--seed", "seed")):
        value = re.search(rf"{flag} (\S+)", command)
        assert value and value.group(1) == str(config[key]), (flag, config[key])


@pytest.mark.parametrize(
    "page, command", [("training.md", "train"), ("crosscheck.md", "crosscheck")]
)
def test_option_tables_match_the_parser(page, command):
    """Each `| `--option` | `default` |` row names a real option with its real default."""
    import argparse

    from pyfa.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    options = {s: a for a in sub.choices[command]._actions for s in a.option_strings}
    rows = re.findall(r"^\| `(--[\w-]+)[^`]*` \| ([^|]*) \|", (DOCS / page).read_text(), re.M)
    assert len(rows) >= 5
    for option, default in rows:
        assert option in options, f"{page}: `{option}` is not an option of pyfa {command}"
        m = re.fullmatch(r"`([^`]*)`", default.strip())
        if m:
            assert m.group(1) == str(options[option].default), (option, options[option].default)


def test_julia_api_names_exist():
    """The Python bridge API that julia-api.md documents exists (importing it starts no Julia)."""
    import pyfa.julia as jl

    text = (DOCS / "julia-api.md").read_text(encoding="utf-8")
    python_part = text[text.index("## From Python"):]
    functions = re.findall(r"^`(\w+)\(", python_part, flags=re.M)  # definition-list terms
    assert {"available", "unavailable_reason", "load", "enable_gpu"} <= set(functions)
    for name in functions:
        assert hasattr(jl, name), f"pyfa.julia.{name}"
    methods = re.findall(r"^\| `(\w+)\(", python_part, flags=re.M)  # the JuliaChain table
    assert {"forward", "gradients", "setup_optimiser", "step", "to_params", "gpu"} <= set(methods)
    for name in methods + ["cpu", "from_params", "mode", "dtype", "julia_model"]:
        assert hasattr(jl.JuliaChain, name), f"JuliaChain.{name}"
    assert issubclass(jl.JuliaUnavailableError, RuntimeError)
