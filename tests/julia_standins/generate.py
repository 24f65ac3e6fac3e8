"""Regenerate the Julia stand-in packages from the real packages' sources.

Not run by the tests (they use the committed output, with no network). Run it by hand after
checking out each real package at the commit recorded in README.md::

    python tests/julia_standins/generate.py SRC_ROOT [NAME ...]

SRC_ROOT holds one checkout per repository, named after it without ``.jl``: ``SRC_ROOT/Flux``
(FluxML/Flux.jl), ``SRC_ROOT/CUDA`` (JuliaGPU/CUDA.jl, which also holds CUDACore, CUDATools and
cuDNN), ``SRC_ROOT/Enzyme`` (EnzymeAD/Enzyme.jl, which also holds EnzymeCore in lib/EnzymeCore),
``SRC_ROOT/Mooncake`` (chalk-lab/Mooncake.jl), and so on for ChainRulesCore, ChainRulesTestUtils,
Zygote, Optimisers, Functors, NNlib, ADTypes, LinearAlgebra, Statistics. With NAMEs, only those
stand-ins are rebuilt (and only their checkouts are needed). Test and Random live inside
JuliaLang/julia, too large to check out here: their lists are written below, with where they come
from.

What is kept of each package: the names its module ``export``s and the names it declares
``public`` (the ``public`` keyword, ``@compat public``, ``@compat(public, (...))`` and CUDA's
``@public``), across every file its module ``include``s (nested modules are skipped), with
``@reexport using X`` flattened in. No code is kept: a stand-in is ``module X; export ...;
public ...; end``.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import tree_sitter_julia as tsj
from tree_sitter import Language, Parser

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from julia_helpers import REGISTERED_UUIDS  # noqa: E402  (tests/julia_helpers.py: the one table)

PARSER = Parser(Language(tsj.language()))

# name -> (checkout folder under SRC_ROOT, package root inside it)
PACKAGES = {
    "Flux": ("Flux", "."),
    "ChainRulesCore": ("ChainRulesCore", "."),
    "ChainRulesTestUtils": ("ChainRulesTestUtils", "."),
    "Zygote": ("Zygote", "."),
    "Optimisers": ("Optimisers", "."),
    "Functors": ("Functors", "."),
    "NNlib": ("NNlib", "."),
    "CUDA": ("CUDA", "."),
    "cuDNN": ("CUDA", "lib/cudnn"),
    "LinearAlgebra": ("LinearAlgebra", "."),
    "Statistics": ("Statistics", "."),
    "Enzyme": ("Enzyme", "."),
    "EnzymeCore": ("Enzyme", "lib/EnzymeCore"),
    "Mooncake": ("Mooncake", "."),
}
# Packages that are only ever reached through another one's `@reexport using`.
HELPERS = {
    "ADTypes": ("ADTypes", "."),
    "CUDACore": ("CUDA", "CUDACore"),
    "CUDATools": ("CUDA", "CUDATools"),
}

# Test: stdlib/Test/src/Test.jl, JuliaLang/julia commit 00a70378591d67c7f88a1952979a495d5df29698
# (its export statements; it declares nothing `public`).
TEST_EXPORTS = [
    "@test", "@test_throws", "@test_broken", "@test_skip", "@test_warn", "@test_nowarn",
    "@test_logs", "@test_deprecated", "@testset", "@inferred", "detect_ambiguities",
    "detect_unbound_args", "GenericString", "GenericSet", "GenericDict", "GenericArray",
    "GenericOrder", "TestSetException", "TestLogger", "LogRecord",
]
# Random: stdlib/Random/src/Random.jl, JuliaLang/julia commit
# ddd9a952ff7f01089ffc18bbfc0606d313e61b09 (its export statement), plus TaskLocalRNG and Xoshiro,
# which the Random manual lists as "exported by the Random package" since Julia 1.7. The public
# names are those the manual documents qualified (`Random.seed!`, `Random.default_rng`, the
# Sampler API); the stored copy of Random.jl predates Julia 1.11's `public` statement.
RANDOM_EXPORTS = [
    "rand!", "randn!", "randexp", "randexp!", "bitrand", "randstring", "randsubseq",
    "randsubseq!", "shuffle", "shuffle!", "randperm", "randperm!", "randcycle", "randcycle!",
    "AbstractRNG", "MersenneTwister", "RandomDevice", "TaskLocalRNG", "Xoshiro",
]
RANDOM_PUBLIC = [
    "seed!", "default_rng", "Sampler", "SamplerType", "SamplerTrivial", "SamplerSimple",
    "gentype",
]

UUIDS = REGISTERED_UUIDS

_SKIP = {"module_definition", "baremodule_definition", "function_definition",
         "macro_definition", "struct_definition", "quote_expression", "quote_statement",
         "string_literal", "prefixed_string_literal", "comment", "line_comment",
         "block_comment"}
_NAME_NODES = {"identifier", "macro_identifier", "operator"}


@dataclass
class Surface:
    exports: set[str] = field(default_factory=set)
    public: set[str] = field(default_factory=set)
    reexports: list[tuple[str, list[str] | None]] = field(default_factory=list)
    symbol_lists: dict[str, list[str]] = field(default_factory=dict)  # NAME = [:a, :b]
    eval_exports: list[str] = field(default_factory=list)  # `for f in NAME; @eval export $(f)`


def _names(node, skip_first: int = 0) -> list[str]:
    """Names listed under `node` (identifiers, `@macro`s, operators), comments and
    interpolations left out, the first `skip_first` of them dropped."""
    out: list[str] = []

    def visit(n):
        if n.type in ("line_comment", "block_comment", "comment", "interpolation_expression",
                      "string_literal"):
            return
        if n.type in _NAME_NODES:
            text = n.text.decode()
            if text != "public" and text not in (",", ":"):
                out.append(text)
            return
        for c in n.children:
            visit(c)

    visit(node)
    return out[skip_first:]


def _macro_name(node) -> str:
    for c in node.children:
        if c.type == "macro_identifier":
            return c.text.decode().lstrip("@")
    return ""


def _walk(node, file: Path, out: Surface, seen: set[Path]) -> None:
    t = node.type
    if t in _SKIP:
        return
    if t in ("export_statement", "public_statement"):
        (out.exports if t == "export_statement" else out.public).update(_names(node))
        return
    if t == "macrocall_expression":
        name = _macro_name(node)
        if name == "compat" and b"public" in node.text:
            out.public.update(_names(node, skip_first=1))  # drop `@compat` itself
            return
        if name == "public":
            out.public.update(_names(node, skip_first=1))
            return
        if name == "reexport":
            for stmt in _descendants(node, "using_statement"):
                for c in stmt.named_children:
                    if c.type == "selected_import":
                        names = _names(c)
                        out.reexports.append((names[0], names[1:]))
                    elif c.type == "identifier":
                        out.reexports.append((c.text.decode(), None))
            return
    if t == "assignment":
        kids = node.named_children
        if (len(kids) >= 3 and kids[0].type == "identifier"
                and kids[-1].type in ("vector_expression", "tuple_expression")):
            syms = [c for c in kids[-1].named_children if c.type == "quote_expression"]
            if syms and len(syms) == len(kids[-1].named_children):
                out.symbol_lists[kids[0].text.decode()] = [
                    s.text.decode().lstrip(":") for s in syms]
    if t == "for_statement":
        binding = next((c for c in node.children if c.type == "for_binding"), None)
        loops_over = binding.named_children[-1] if binding is not None else None
        evals = [m for m in _descendants(node, "macrocall_expression")
                 if _macro_name(m) == "eval" and list(_descendants(m, "export_statement"))]
        if evals and loops_over is not None and loops_over.type == "identifier":
            out.eval_exports.append(loops_over.text.decode())
            return
    if t == "call_expression" and node.children and node.children[0].text == b"include":
        args = node.children[1] if len(node.children) > 1 else None
        lits = [c for c in (args.named_children if args else []) if c.type == "string_literal"]
        if len(lits) == 1:
            content = "".join(c.text.decode() for c in lits[0].named_children
                              if c.type == "content")
            target = (file.parent / content).resolve()
            if target.is_file() and target not in seen:
                seen.add(target)
                _walk_file(target, out, seen, top=False)
        return
    for c in node.children:
        _walk(c, file, out, seen)


def _descendants(node, kind: str):
    if node.type == kind:
        yield node
        return
    for c in node.children:
        yield from _descendants(c, kind)


_MACRO_DEF = re.compile(rb"^macro .*?^end\b", re.M | re.S)


def _walk_file(path: Path, out: Surface, seen: set[Path], top: bool) -> None:
    # Top-level macro definitions hold no export list, and some (CUDATools' `@public`) use
    # syntax tree-sitter-julia cannot parse: blank them out, keeping line numbers.
    source = _MACRO_DEF.sub(lambda m: b"\n" * m.group(0).count(b"\n"), path.read_bytes())
    tree = PARSER.parse(source)
    root = tree.root_node
    if top:
        mods = [c for c in root.named_children if c.type == "module_definition"
                # tree-sitter-julia cannot parse every valid file; a module it fails on
                # comes back as an ERROR node that still starts with `module`.
                or (c.type == "ERROR" and c.children and c.children[0].type == "module")]
        if not mods and root.type == "ERROR" and any(c.type == "module" for c in root.children):
            mods = [root]
        if len(mods) != 1:
            raise SystemExit(f"{path}: expected one top-level module, found {len(mods)}")
        for c in mods[0].children:
            _walk(c, path, out, seen)
    else:
        for c in root.children:
            _walk(c, path, out, seen)


def surface(src_root: Path, name: str, table: dict) -> Surface:
    repo, sub = table[name]
    root = (src_root / repo / sub).resolve()
    entry = root / "src" / f"{name}.jl"
    out = Surface()
    _walk_file(entry, out, {entry}, top=True)
    for name in out.eval_exports:  # NNlib: `for f in ACTIVATIONS; @eval export $(f); end`
        if name not in out.symbol_lists:
            raise SystemExit(f"{name}: `@eval export` over a list that is not a literal")
        out.exports.update(out.symbol_lists[name])
    return out


def flatten(src_root: Path, name: str) -> tuple[set[str], set[str]]:
    """The package's exported and public names, `@reexport`s resolved."""
    table = {**PACKAGES, **HELPERS}
    s = surface(src_root, name, table)
    exports, public = set(s.exports), set(s.public)
    for mod, names in s.reexports:
        if names is not None:
            exports.update(names)
            continue
        if mod not in table:
            raise SystemExit(f"{name}: `@reexport using {mod}` names no known package")
        sub_exports, sub_public = flatten(src_root, mod)
        exports |= sub_exports
        if name == "CUDA":
            # CUDA.jl forwards CUDACore's and CUDATools' public names with a loop over
            # `names(mod)` that marks each one `public` in CUDA as well.
            public |= sub_public
    return exports, public - exports


GITHUB = {
    "Flux": "FluxML/Flux.jl", "ChainRulesCore": "JuliaDiff/ChainRulesCore.jl",
    "ChainRulesTestUtils": "JuliaDiff/ChainRulesTestUtils.jl", "Zygote": "FluxML/Zygote.jl",
    "Optimisers": "FluxML/Optimisers.jl", "Functors": "FluxML/Functors.jl",
    "NNlib": "FluxML/NNlib.jl", "CUDA": "JuliaGPU/CUDA.jl", "ADTypes": "SciML/ADTypes.jl",
    "LinearAlgebra": "JuliaLang/LinearAlgebra.jl", "Statistics": "JuliaStats/Statistics.jl",
    "Enzyme": "EnzymeAD/Enzyme.jl", "Mooncake": "chalk-lab/Mooncake.jl",
}


def commit_of(src_root: Path, repo: str) -> str:
    """The commit a checkout is at: the `.commit` file beside it, else git's HEAD."""
    head = src_root / repo / ".commit"
    if head.exists():
        return head.read_text().strip()
    import subprocess
    out = subprocess.run(["git", "-C", str(src_root / repo), "rev-parse", "HEAD"],
                         capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def version_of(src_root: Path, name: str) -> str:
    repo, sub = PACKAGES[name]
    text = (src_root / repo / sub / "Project.toml").read_text()
    m = re.search(r'^version\s*=\s*"([^"]+)"', text, re.M)
    return m.group(1) if m else ""


def write_standin(name: str, exports, public, version: str, source: str) -> None:
    pkg = HERE / name
    (pkg / "src").mkdir(parents=True, exist_ok=True)
    (pkg / "Project.toml").write_text(
        f'name = "{name}"\nuuid = "{UUIDS[name]}"\nversion = "{version}"\n')
    lines = [
        f"# Stand-in for {name} {version}: its export and public lists, no code.",
        f"# Source: {source}. Generated by tests/julia_standins/generate.py.",
        f"module {name}",
        "",
    ]
    for keyword, names in (("export", exports), ("public", public)):
        for i in range(0, len(names), 6):
            lines.append(f"{keyword} " + ", ".join(names[i:i + 6]))
    lines += ["", "end", ""]
    (pkg / "src" / f"{name}.jl").write_text("\n".join(lines))


def _order(names) -> list[str]:
    return sorted(set(names), key=lambda n: (n.lstrip("@").lower(), n))


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    src_root, only = Path(argv[0]), set(argv[1:])
    unknown = only - set(PACKAGES) - {"Test", "Random"}
    if unknown:
        print(f"unknown stand-in(s): {sorted(unknown)}; known: {sorted(PACKAGES)} Test Random")
        return 2
    for name, (repo, sub) in PACKAGES.items():
        if only and name not in only:
            continue
        exports, public = flatten(src_root, name)
        source = f"{GITHUB[repo]}@{commit_of(src_root, repo)}"
        if sub != ".":
            source += f" {sub}"
        write_standin(name, _order(exports), _order(public), version_of(src_root, name), source)
    if not only or "Test" in only:
        write_standin("Test", _order(TEST_EXPORTS), [], "1.11.0",
                      "JuliaLang/julia@00a70378 stdlib/Test/src/Test.jl")
    if not only or "Random" in only:
        write_standin("Random", _order(RANDOM_EXPORTS), _order(RANDOM_PUBLIC), "1.11.0",
                      "JuliaLang/julia@ddd9a952 stdlib/Random/src/Random.jl + manual")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
