"""Shared helpers for the Julia tests: skipping without Julia, registered UUIDs, Julia parsing.

Tests that need a working Julia are marked ``@pytest.mark.julia`` and take the `julia_or_skip`
fixture (import it into the test module): it skips, with ``pyfa.julia.unavailable_reason()`` as the
reason, where Julia cannot start, and otherwise returns juliacall's ``Main`` with PyFA loaded.
`julia_ad_or_skip` does the same for one AD backend ("zygote", "enzyme", "mooncake").
With ``PYFA_REQUIRE_JULIA=1`` in the environment every such skip is a failure instead
(`skip_or_fail`; tests/conftest.py also turns any other skip of a ``julia`` test into a failure),
so that a broken bridge cannot pass as a row of skips where Julia is meant to run (CI).

The tree-sitter helpers at the bottom let the static tests read Julia files (imports, code
identifiers) without depending on pyfa.lint's internals.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]

#: Registered UUIDs, each read from the package's own Project.toml (FluxML/Flux.jl, Zygote.jl,
#: Optimisers.jl, Functors.jl, NNlib.jl; JuliaDiff/ChainRulesCore.jl, ChainRulesTestUtils.jl;
#: JuliaGPU/CUDA.jl and its lib/cudnn; EnzymeAD/Enzyme.jl and its lib/EnzymeCore;
#: chalk-lab/Mooncake.jl; the stdlibs' own Project.toml files).
REGISTERED_UUIDS = {
    "Flux": "587475ba-b771-5e3f-ad9e-33799f191a9c",
    "ChainRulesCore": "d360d2e6-b24c-11e9-a2a3-2a2ae2dbcce4",
    "Zygote": "e88e6eb3-aa80-5325-afca-941959d7151f",
    "Optimisers": "3bd65402-5787-11e9-1adc-39752487f4e2",
    "Functors": "d9f16b24-f501-4c13-a1f2-28368ffc5196",
    "NNlib": "872c559c-99b0-510c-b3b7-b6c96a88d5cd",
    "CUDA": "052768ef-5323-5732-b1bb-66c8b64840ba",
    "cuDNN": "02a925ec-e4fe-4b08-9a7e-0d78e3d38ccd",
    "ChainRulesTestUtils": "cdddcdb0-9152-4a09-a978-84456f9df70a",
    "Test": "8dfed614-e22c-5e08-85e1-65c5234f0b40",
    "Random": "9a3f8284-a2c9-5f02-9a11-845980a1fd5c",
    "LinearAlgebra": "37e2e46d-f89d-539d-b4ee-838fcccc9c8e",
    "Statistics": "10745b16-79ce-11e8-11f9-7d13ad32a3b2",
    "Pkg": "44cfe95a-1eb2-52ea-b672-e2afdf69b78f",
    "Enzyme": "7da242da-08ed-463a-9acd-ee780be4f1d9",
    "EnzymeCore": "f151be2c-9106-41f4-ab19-57ee4f262869",
    "Mooncake": "da2b9cff-9c12-43a0-ae48-6db2b0edb7d6",
}
STDLIBS = {"Test", "Random", "LinearAlgebra", "Statistics", "Pkg"}
PYFA_JL = ROOT / "julia" / "PyFA"
JULIAPKG_JSON = ROOT / "pyfa" / "juliapkg.json"


#: Set to 1 where Julia must work (CI with Julia): a Julia skip is then a failure.
REQUIRE_JULIA = "PYFA_REQUIRE_JULIA"


def julia_required() -> bool:
    return os.environ.get(REQUIRE_JULIA, "") == "1"


def skip_or_fail(reason: str):
    """pytest.skip(reason), or pytest.fail when PYFA_REQUIRE_JULIA=1."""
    if julia_required():
        pytest.fail(f"{REQUIRE_JULIA}=1, but a Julia test would skip: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def julia_or_skip():
    import pyfa.julia

    if not pyfa.julia.available():
        skip_or_fail(skip_reason())
    return pyfa.julia.load()


def julia_ad_or_skip(ad: str):
    """Julia's Main, with the AD backend `ad` ready in the bridge; else skip (or fail) saying why."""
    import pyfa.julia

    if not pyfa.julia.available():
        skip_or_fail(skip_reason())
    reason = pyfa.julia.ad_unavailable_reason(ad)
    if reason is not None:
        skip_or_fail(_one_line(reason))
    return pyfa.julia.load()


def skip_reason() -> str:
    """The gist of `pyfa.julia.unavailable_reason()`, short enough for pytest's skip summary."""
    import pyfa.julia

    return _one_line(pyfa.julia.unavailable_reason() or "Julia is not available")


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def read_project_toml(text: str) -> dict:
    """A Julia Project.toml's tables."""
    return tomllib.loads(text)


# --------------------------------------------------------------------------- reading Julia

_COMMENTS = ("comment", "line_comment", "block_comment")


@lru_cache(maxsize=1)
def _parser():
    import tree_sitter_julia
    from tree_sitter import Language, Parser

    return Parser(Language(tree_sitter_julia.language()))


def parse_julia(source: bytes):
    """The tree-sitter-julia root node of `source`."""
    return _parser().parse(source).root_node


def node_text(node) -> str:
    return node.text.decode("utf-8", errors="replace")


def walk(node, stop: Sequence[str] = ()) -> Iterator:
    """Pre-order walk; nodes whose type is in `stop` are yielded but not entered."""
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        if n is not node and n.type in stop:
            continue
        stack.extend(reversed(n.children))


def inside(node, kinds: Sequence[str]) -> bool:
    """Whether an ancestor of `node` has one of the types `kinds`."""
    p = node.parent
    while p is not None:
        if p.type in kinds:
            return True
        p = p.parent
    return False


@dataclass
class JuliaImport:
    """One module named by a `using`/`import` statement."""

    kind: str                # "using" | "import"
    module: str              # "Flux", "Foo.Bar", ".Sub"
    names: list | None       # the item list; None when the module is loaded whole
    in_macro: bool           # inside a macro call (`@eval using CUDA`): loaded at run time only


def julia_imports(root) -> list[JuliaImport]:
    """Every `using`/`import` under `root`, nested modules included."""
    out = []
    for n in walk(root):
        if n.type not in ("using_statement", "import_statement"):
            continue
        kind = "using" if n.type == "using_statement" else "import"
        dynamic = inside(n, ("macrocall_expression",))
        for c in n.named_children:
            if c.type in _COMMENTS:
                continue
            if c.type == "selected_import":
                kids = [k for k in c.named_children if k.type not in _COMMENTS]
                names = [node_text(k.named_children[-1]) if k.type == "import_alias" else node_text(k)
                         for k in kids[1:]]
                out.append(JuliaImport(kind, node_text(kids[0]), names, dynamic))
            elif c.type == "import_alias":
                out.append(JuliaImport(kind, node_text(c.named_children[0]), None, dynamic))
            else:
                out.append(JuliaImport(kind, node_text(c), None, dynamic))
    return out


def blank_comments_and_strings(source: bytes) -> bytes:
    """`source` with every comment and string literal (docstrings included) replaced by spaces,
    newlines kept: what is left is code, at the same offsets."""
    out = bytearray(source)
    for n in walk(parse_julia(source), stop=_COMMENTS + ("string_literal",
                                                         "prefixed_string_literal")):
        if n.type in _COMMENTS or n.type in ("string_literal", "prefixed_string_literal"):
            for i in range(n.start_byte, n.end_byte):
                if out[i] != ord("\n"):
                    out[i] = ord(" ")
    return bytes(out)
