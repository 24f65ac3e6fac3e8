r"""The documentation builds offline with no warning, reads well in a browser, and its examples are true.

The site (Sphinx + MyST + furo, docs/conf.py) is built once per run, as ``make docs`` builds it:
``sphinx-build -W --keep-going`` (a warning fails), with every proxy variable pointing at a closed
port so that any attempt to reach the network fails too. Then the built HTML is opened:

- math is typeset: MathML ``<math>`` elements, and no ``$...$``, ``\(``, ``\[`` or ``\begin`` left in
  the text of any page;
- code is highlighted at build time: Pygments token spans in every Python, Julia, shell and TOML
  block;
- the API pages list every public name (``__all__``) of the documented modules, and the command-line
  page every sub-command and option of ``pyfa.cli.build_parser``;
- no page loads a script, stylesheet, image or font from the network; every internal link and anchor
  exists, with relative paths only (the site works opened from disk);
- every page is in a toctree and was built.

And on the Markdown sources:

- pages marked ``<!-- python blocks run in tests/test_docs.py -->`` have their ```python blocks run,
  in order, in one namespace per page; other pages' python blocks are compiled;
- ```julia blocks parse (tree-sitter-julia, through pyfa.lint); a block preceded by
  ``<!-- lint: clean -->`` has no findings, ``<!-- lint: PFA001 -->`` exactly those codes; with
  ``excerpt: PATH`` it must appear verbatim in that file of the repository;
- every ``pyfa ...`` line of a ```sh block parses with the real ``pyfa`` argument parser, and every
  ``make TARGET`` is a Makefile target.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import shlex
import subprocess
import sys
import types
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
RUN_MARK = "<!-- python blocks run in tests/test_docs.py -->"
FENCE = re.compile(
    r"^(?:<!--(?P<note>[^\n]*?)-->\n)?```(?P<lang>[\w+-]*)[^\n]*\n(?P<body>.*?)^```[ \t]*$",
    re.S | re.M,
)
#: The modules docs/api/ documents, and the page of each.
API_PAGES = {
    "pyfa": "api/pyfa.html",
    "pyfa.torch": "api/torch.html",
    "pyfa.reference": "api/reference.html",
    "pyfa.crosscheck": "api/crosscheck.html",
    "pyfa.julia": "api/julia.html",
    "pyfa.lint": "api/lint.html",
    "pyfa.train": "api/train.html",
    "pyfa.network": "api/network.html",
    "pyfa.checkpoint": "api/checkpoint.html",
    "pyfa.data": "api/data.html",
    "pyfa.metrics": "api/metrics.html",
    "pyfa.plots": "api/plots.html",
}


def _pages() -> list[Path]:
    return sorted(p for p in DOCS.rglob("*.md") if "_build" not in p.parts)


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


# -- the build ------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def site(tmp_path_factory) -> Path:
    """The site, built as `make docs` builds it, offline."""
    out = tmp_path_factory.mktemp("docs")
    closed = "http://127.0.0.1:9"  # the discard port: nothing listens, a fetch fails at once
    env = {**os.environ, "http_proxy": closed, "https_proxy": closed, "HTTP_PROXY": closed,
           "HTTPS_PROXY": closed, "no_proxy": "", "NO_PROXY": ""}
    r = subprocess.run(
        [sys.executable, "-m", "sphinx", "-b", "html", "-W", "--keep-going", "-q",
         "-d", str(out / "doctrees"), str(DOCS), str(out / "site")],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=600,
    )
    assert r.returncode == 0, f"sphinx-build -W failed:\n{r.stdout[-5000:]}\n{r.stderr[-10000:]}"
    return out / "site"


class _Page(HTMLParser):
    """The parts of a built page the tests look at."""

    SKIP = {"pre", "code", "script", "style", "math", "kbd", "samp", "tt"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []  # prose: outside code, scripts and math
        self.ids: set[str] = set()
        self.links: list[str] = []  # <a href>
        self.loads: list[tuple[str, str]] = []  # (tag, url) of what the page loads
        self.maths = 0
        self.highlights: list[tuple[str, int]] = []  # (language, number of token spans)
        self._skip = 0
        self._hl: list[list] = []  # open highlight divs: [language, depth, tokens]

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])
        if tag in ("script", "img", "iframe", "audio", "video", "source", "embed") and a.get("src"):
            self.loads.append((tag, a["src"]))
        if tag == "link" and a.get("href"):
            self.loads.append((f"link rel={a.get('rel')}", a["href"]))
        if tag == "math":
            self.maths += 1
        classes = (a.get("class") or "").split()
        if tag == "div":
            for hl in self._hl:
                hl[1] += 1
            lang = next((c[len("highlight-"):] for c in classes if c.startswith("highlight-")), None)
            if lang:
                self._hl.append([lang, 1, 0])
        if tag == "span" and self._hl and classes and classes[0] not in ("w", "linenos"):
            self._hl[-1][2] += 1
        if tag in self.SKIP:
            self._skip += 1

    def handle_endtag(self, tag):
        if tag in self.SKIP:
            self._skip -= 1
        if tag == "div":
            for hl in self._hl:
                hl[1] -= 1
            while self._hl and self._hl[-1][1] == 0:
                lang, _, tokens = self._hl.pop()
                self.highlights.append((lang, tokens))

    def handle_data(self, data):
        if not self._skip:
            self.text.append(data)


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


@pytest.fixture(scope="session")
def html(site) -> dict[str, _Page]:
    """Every built page, by its path in the site."""
    return {p.relative_to(site).as_posix(): _parse(p) for p in site.rglob("*.html")}


def _source_pages() -> list[str]:
    return [p.relative_to(DOCS).with_suffix(".html").as_posix() for p in _pages()
            if p.name != "README.md"]


@pytest.mark.slow
def test_every_page_is_built(site, html):
    missing = sorted(set(_source_pages()) - set(html))
    assert not missing, f"pages not built: {missing}"
    for name in html:  # docutils shows an error it could not report as a warning in a red box
        assert 'class="system-message"' not in (site / name).read_text(encoding="utf-8"), name


def test_every_page_is_in_a_toctree():
    """(sphinx -W fails on such a page too; this says which, without building.)"""
    listed = set()
    for page in _pages():
        text = page.read_text(encoding="utf-8")
        for block in re.findall(r"^```\{toctree\}\n(.*?)^```", text, flags=re.S | re.M):
            for entry in block.splitlines():
                entry = entry.strip()
                if entry and not entry.startswith(":"):
                    listed.add((page.parent / entry).relative_to(DOCS).as_posix())
    pages = {p.relative_to(DOCS).with_suffix("").as_posix() for p in _pages() if p.name != "README.md"}
    assert sorted(pages - listed - {"index"}) == [], "pages in no toctree"
    assert sorted(listed - pages) == [], "toctree entries without a page"


# -- what a reader sees ---------------------------------------------------------------------------

LEFTOVER_TEX = re.compile(r"\$\$|(?<![\w$])\$[^$\s][^$\n]*\$|\\\(|\\\[|\\begin\{|\\frac|\\partial")


@pytest.mark.slow
def test_math_is_typeset(html):
    """MathML where the sources have LaTeX; no LaTeX left in any page's text."""
    pages_with_math = []
    for page in _pages():
        text = FENCE.sub("", page.read_text(encoding="utf-8"))
        text = re.sub(r"`[^`\n]*`", "", text)
        if re.search(r"\$[^$\s][^$\n]*\$", text):
            pages_with_math.append(page.relative_to(DOCS).with_suffix(".html").as_posix())
    assert {"index.html", "conventions.html", "pytorch-api.html"} <= set(pages_with_math)
    for name in pages_with_math:
        assert html[name].maths > 0, f"{name}: its LaTeX was not typeset"
    assert html["conventions.html"].maths >= 40
    for name, page in html.items():
        leftover = LEFTOVER_TEX.findall("".join(page.text))
        assert not leftover, f"{name}: LaTeX left as text: {leftover[:5]}"


@pytest.mark.slow
def test_code_is_highlighted(html):
    """Pygments token spans, written at build time, in every Python and Julia block, and in the shell
    and TOML blocks (a shell line of plain words, `pyfa lint src/`, has nothing to colour)."""
    seen: dict[str, list[int]] = {}
    for name, page in html.items():
        for lang, tokens in page.highlights:
            seen.setdefault(lang, []).append(tokens)
            if lang in ("python", "julia"):
                assert tokens > 0, f"{name}: a {lang} block is not highlighted"
    assert len(seen.get("python", [])) >= 20 and len(seen.get("julia", [])) >= 10, seen.keys()
    assert sum(n > 0 for n in seen.get("sh", [])) >= 10, seen.get("sh")
    assert sum(n > 0 for n in seen.get("toml", [])) >= 1, seen.get("toml")
    for name, page in html.items():  # no highlighter runs in the browser
        assert not any("highlight" in url and url.endswith(".js") for _, url in page.loads), name


def _public(module) -> list[str]:
    """`__all__`, or else the names a module defines (not the modules and objects it imports)."""
    if hasattr(module, "__all__"):
        return list(module.__all__)
    names = []
    for n in dir(module):
        obj = getattr(module, n)
        if n.startswith("_") or isinstance(obj, types.ModuleType) or type(obj).__name__ == "_Feature":
            continue
        if (callable(obj) or isinstance(obj, type)) and getattr(obj, "__module__", None) != module.__name__:
            continue
        names.append(n)
    return names


@pytest.mark.slow
@pytest.mark.parametrize("module", sorted(API_PAGES))
def test_api_page_lists_every_public_name(html, module):
    """Each public name has its entry on the module's page (or, when `pyfa` exports it, on pyfa's,
    which the module's page links to)."""
    page = html[API_PAGES[module]]
    top = html[API_PAGES["pyfa"]]
    mod = importlib.import_module(module)
    missing = []
    for name in _public(mod):
        if f"{module}.{name}" in page.ids:
            continue
        exported = module != "pyfa" and name in getattr(sys.modules["pyfa"], "__all__", ())
        if exported and f"pyfa.{name}" in top.ids and any(
                link.endswith(f"pyfa.html#pyfa.{name}") for link in page.links):
            continue
        missing.append(name)
    assert not missing, f"{API_PAGES[module]} does not document {module}.{missing}"


@pytest.mark.slow
def test_cli_page_lists_every_command_and_option(html, site):
    from pyfa.cli import build_parser

    parser = build_parser()
    text = (site / "cli.html").read_text(encoding="utf-8")
    sections = dict(re.findall(r'<section id="pyfa-([\w-]+)">(.*?)(?=<section id="pyfa-[\w]+">|\Z)',
                               text, flags=re.S))
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) <= set(sections), sorted(sub.choices)
    for name, sp in sub.choices.items():
        for action in sp._actions:
            if isinstance(action, argparse._HelpAction):  # every command has -h; not listed
                continue
            for option in action.option_strings:
                assert option in sections[name], f"cli.html: `pyfa {name} {option}` is missing"
            if not action.option_strings and action.help != argparse.SUPPRESS:
                assert (action.metavar or action.dest) in sections[name], (name, action.dest)
    assert "--version" in text


@pytest.mark.slow
def test_nothing_is_loaded_from_the_network(site, html):
    """Scripts, stylesheets, fonts and images are the site's own files; links are plain <a>."""
    remote = re.compile(r"^(?:[a-z][\w+.-]*:|//)", re.I)
    for name, page in html.items():
        bad = [(tag, url) for tag, url in page.loads if remote.match(url)]
        assert not bad, f"{name} loads from the network: {bad}"
    for css in site.rglob("*.css"):
        text = css.read_text(encoding="utf-8", errors="replace")
        urls = re.findall(r"""(?:@import\s+|url\()\s*['"]?([^'")\s]+)""", text)
        bad = [u for u in urls if remote.match(u) and not u.startswith("data:")]
        assert not bad, f"{css.relative_to(site)} loads {bad}"


@pytest.mark.slow
def test_links_work_from_disk(site, html):
    """Every internal link is relative and points at a built file (and anchor): no broken link, and
    nothing that would need a web server's `folder/ -> folder/index.html`."""
    broken = []
    for name, page in html.items():
        for href in page.links + [url for _, url in page.loads]:
            parts = urlsplit(href)
            if parts.scheme or href.startswith("//"):
                continue
            assert not parts.path.startswith("/"), f"{name}: absolute path {href}"
            target = (site / name).parent / unquote(parts.path) if parts.path else site / name
            if parts.path.endswith("/") or not target.is_file():
                broken.append((name, href))
            elif parts.fragment and target.suffix == ".html":
                ids = html[target.resolve().relative_to(site.resolve()).as_posix()].ids
                if unquote(parts.fragment) not in ids:
                    broken.append((name, href))
    assert not broken, f"broken links: {broken[:20]}"


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
                except SystemExit as e:  # 0: --version or --help, which exit after printing
                    if e.code in (0, None):
                        checked += 1
                        continue
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
