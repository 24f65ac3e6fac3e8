"""Static checks for Julia files that define ChainRules rules and Flux layers, without Julia.

`pyfa lint FILE...` (or ``python -m pyfa.lint FILE...``) parses each file with tree-sitter-julia
and reports mistakes that make a feedback-alignment layer silently train with plain backprop,
or that break it outright. Directories are searched for ``*.jl`` files. Each finding prints as::

    path:line:col: CODE message
        fix: a concrete change

Rules (``--select``/``--ignore`` take comma-separated codes):

PFA000  syntax: tree-sitter-julia finds an ERROR or MISSING node.
PFA001  a method of a bare ``rrule``/``frule`` in a module that did not ``import
        ChainRulesCore: rrule`` (or ``import ChainRulesCore.rrule``) first, counting the imports
        of the file that ``include``s it. After ``using ChainRulesCore`` it defines a new
        function that Zygote never calls (the forum bug; Julia only refuses it, with "must be
        explicitly imported to be extended", if ``rrule`` was already used at top level
        before); after ``using ChainRulesCore: rrule`` Julia refuses it when the file loads.
PFA002  an ``rrule`` argument typed ``Matrix``/``Vector``/``Array``/``VecOrMat``: a CuArray or a
        juliacall PyArray does not match it, so Zygote differentiates the function body (BP).
PFA003  the pullback returns a tuple whose length is not the rrule's argument count
        (function included).
PFA004  ``@functor`` (deprecated for Flux layers): use ``Flux.@layer T trainable=(...)``.
PFA005  ``@layer T trainable=(...)`` names a field T does not have.
PFA006  warning: implicit-parameter training (``Flux.params``, ``gradient(() -> ..., ps)``),
        deprecated since Flux 0.15.
PFA007  ``export``ed name that the module neither defines nor imports by name.
PFA008  ``@layer T`` where the module defines no struct ``T``.
PFA009  warning: a struct with a ``feedback`` field that nothing keeps out of ``trainable``:
        the optimiser would train the feedback matrix.

Warnings count like errors for the exit status (1 when anything is reported; 2 when a file
cannot be read or the command line is wrong); ``--ignore PFA006,PFA009`` drops them.

Limits: the checks read one parse tree, not Julia's lowering. Macros other than ``@layer``,
``@functor`` and definition wrappers (``@inline``, ``Base.@kwdef``...) are opaque; a module that
uses ``@eval``/``eval`` or ``include``s a non-literal path is skipped by PFA007/PFA008/PFA009;
tree-sitter-julia rejects a little valid Julia (e.g. ``const`` fields in a struct,
``@compat(public, ...)``), which then shows up as PFA000. Findings in a file are sorted by
position; ``lint_*`` return them as ``Finding`` objects.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

__all__ = [
    "Finding",
    "RULES",
    "lint_source",
    "lint_file",
    "lint_paths",
    "main",
    "add_arguments",
    "run",
]

RULES: dict[str, tuple[str, str]] = {
    "PFA000": ("error", "syntax error"),
    "PFA001": ("error", "bare rrule/frule does not extend ChainRulesCore"),
    "PFA002": ("error", "rrule argument typed with a concrete array type"),
    "PFA003": ("error", "pullback tangent count differs from the rrule's arguments"),
    "PFA004": ("error", "@functor is deprecated for Flux layers"),
    "PFA005": ("error", "@layer trainable names a missing field"),
    "PFA006": ("warning", "implicit-parameter training (deprecated)"),
    "PFA007": ("error", "exported name is not defined"),
    "PFA008": ("error", "@layer names no struct of this module"),
    "PFA009": ("warning", "feedback field may be trained"),
}

RULE_NAMES = ("rrule", "frule")
CONCRETE_ARRAYS = ("Matrix", "Vector", "Array", "VecOrMat")
CRC = "ChainRulesCore"
_COMMENTS = ("comment", "line_comment", "block_comment")
_FUNCTION_NODES = ("function_definition", "arrow_function_expression", "macro_definition",
                   "do_clause", "function_expression")


@dataclass(frozen=True, order=True)
class Finding:
    """One problem: where it is, which rule, what is wrong, and a concrete fix."""

    path: str
    line: int
    column: int
    code: str
    message: str
    suggestion: str

    @property
    def severity(self) -> str:
        """"error" or "warning" (PFA006, PFA009); both make the command exit 1."""
        return RULES[self.code][0]

    @property
    def rule(self) -> str:
        """Alias of `code`."""
        return self.code

    def format(self) -> str:
        return f"{self.path}:{self.line}:{self.column}: {self.code} {self.message}\n" \
               f"    fix: {self.suggestion}"

    def __str__(self) -> str:
        return self.format()


# --------------------------------------------------------------------------- parsing


@lru_cache(maxsize=1)
def _parser():
    import tree_sitter_julia
    from tree_sitter import Language, Parser

    return Parser(Language(tree_sitter_julia.language()))


def _text(node) -> str:
    return node.text.decode("utf-8", errors="replace")


def _named(node) -> list:
    return [c for c in node.named_children if c.type not in _COMMENTS]


def _walk(node, stop: Sequence[str] = ()) -> Iterator:
    """Pre-order walk; nodes whose type is in `stop` are yielded but not entered."""
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        if n is not node and n.type in stop:
            continue
        stack.extend(reversed(n.children))


@dataclass
class SourceFile:
    path: str
    source: bytes
    tree: object = None

    def __post_init__(self):
        self.tree = _parser().parse(self.source)
        self._lines = self.source.split(b"\n")

    @property
    def root(self):
        return self.tree.root_node

    def position(self, node) -> tuple[int, int]:
        """1-based line and column (in characters, not bytes) of `node`'s start."""
        row, col = node.start_point
        line = self._lines[row] if row < len(self._lines) else b""
        return row + 1, len(line[:col].decode("utf-8", errors="replace")) + 1


# --------------------------------------------------------------------------- shapes


def _unwrap_signature(node):
    """`f(x)::T where {S}` -> the call `f(x)`; None when `node` is not a call signature."""
    while node is not None:
        if node.type == "call_expression":
            return node
        if node.type in ("where_expression", "typed_expression", "signature"):
            kids = _named(node)
            node = kids[0] if kids else None
            continue
        return None
    return None


def _definition_call(node):
    """The signature call of a method definition (long or short form), else None."""
    if node.type == "function_definition":
        sig = next((c for c in node.children if c.type == "signature"), None)
        return _unwrap_signature(sig) if sig is not None else None
    if node.type == "assignment":
        kids = node.children
        if kids and kids[0].type in ("call_expression", "where_expression", "typed_expression"):
            return _unwrap_signature(kids[0])
    return None


def _bare_function_name(node) -> str | None:
    """`function f end` -> "f"."""
    if node.type != "function_definition":
        return None
    sig = next((c for c in node.children if c.type == "signature"), None)
    if sig is not None:
        kids = _named(sig)
        if len(kids) == 1 and kids[0].type == "identifier":
            return _text(kids[0])
    return None


def _callee(call) -> tuple[str | None, str | None]:
    """(qualifier, name) of a call's function: `f` -> (None, "f"), `A.B.f` -> ("A.B", "f")."""
    head = call.children[0] if call.children else None
    if head is None:
        return None, None
    if head.type == "parametrized_type_expression":
        head = head.children[0]
    if head.type in ("identifier", "operator"):
        return None, _text(head)
    if head.type in ("field_expression", "scoped_identifier"):
        kids = _named(head)
        if kids and kids[-1].type == "identifier":
            qual = _text(head)[: -len(_text(kids[-1]))].rstrip(".")
            return qual or None, _text(kids[-1])
    return None, None


def _arguments(call) -> tuple[list, bool]:
    """Positional argument nodes of a call/signature and whether their count is exact
    (no splat, no default value)."""
    args = next((c for c in call.children if c.type == "argument_list"), None)
    if args is None:
        return [], True
    out, exact = [], True
    for c in args.children:
        if c.type == ";":
            break
        if not c.is_named or c.type in _COMMENTS:
            continue
        if c.type in ("splat_expression",) or _text(c).endswith("..."):
            exact = False
        if c.type in ("assignment", "named_argument", "optional_parameter"):
            exact = False
        out.append(c)
    return out, exact


def _is_function_arg(arg) -> bool:
    t = _arg_type(arg)
    return t is not None and _text(t).replace(" ", "").startswith(("typeof(", "Type{"))


def _is_config(args: list) -> bool:
    """Whether an rrule's first argument is a RuleConfig (which gets no tangent)."""
    if not args:
        return False
    t = _arg_type(args[0])
    if t is not None and "RuleConfig" in _text(t):
        return True
    return len(args) >= 2 and not _is_function_arg(args[0]) and _is_function_arg(args[1])


def _arg_name(arg) -> str | None:
    if arg.type == "identifier":
        return _text(arg)
    if arg.type == "typed_expression":
        first = _named(arg)[0]
        return _text(first) if first.type == "identifier" else None
    return None


def _arg_type(arg):
    """The type annotation node of `x::T` / `::T`, else None."""
    if arg.type in ("typed_expression", "unary_typed_expression"):
        kids = _named(arg)
        return kids[-1] if kids else None
    return None


def _body(definition) -> list:
    """Statements of a long-form function body, or [rhs] of a short-form definition."""
    if definition.type == "function_definition":
        return [c for c in _named(definition) if c.type != "signature"]
    if definition.type == "assignment":
        kids = _named(definition)
        rhs = [c for c in kids[1:] if c.type != "operator"]
        return rhs[-1:]
    if definition.type == "arrow_function_expression":
        kids = _named(definition)
        return kids[-1:]
    return []


def _returned(definition) -> list:
    """Expressions a function may return: each `return x` and its last statement."""
    body = _body(definition)
    out = []
    for stmt in body:
        for n in _walk(stmt, stop=_FUNCTION_NODES):
            if n.type in _FUNCTION_NODES and n is not stmt:
                continue
            if n.type == "return_statement":
                kids = _named(n)
                if kids:
                    out.append(kids[0])
    if body:
        last = body[-1]
        if last.type != "return_statement":
            out.append(last)
    return out


def _tuple_items(node) -> list | None:
    if node.type in ("tuple_expression", "open_tuple"):
        return _named(node)
    if node.type == "parenthesized_expression":
        kids = _named(node)
        if len(kids) == 1 and kids[0].type in ("tuple_expression", "open_tuple"):
            return _named(kids[0])
    return None


def _macro_name(node) -> tuple[str | None, str | None]:
    """(qualifier, name) of a macro call: `Flux.@layer` -> ("Flux", "layer")."""
    qual = []
    for c in node.children:
        if c.type == "macro_identifier":
            kids = [k for k in c.named_children]
            name = _text(kids[-1]) if kids else _text(c).lstrip("@")
            return (".".join(qual) or None), name
        if c.type == "identifier":
            qual.append(_text(c))
        elif c.type in ("field_expression", "scoped_identifier"):
            qual.append(_text(c))
    return None, None


def _macro_args(node) -> list:
    args = next((c for c in node.children if c.type in ("macro_argument_list", "argument_list")),
                None)
    return _named(args) if args is not None else []


def _type_name(node) -> str | None:
    """`DenseFA{M}` / `DenseFA{M} <: AbstractLayer` / `DenseFA` -> "DenseFA"."""
    while node is not None:
        if node.type == "identifier":
            return _text(node)
        if node.type in ("type_head", "binary_expression", "parametrized_type_expression",
                         "typed_expression"):
            kids = _named(node)
            node = kids[0] if kids else None
            continue
        return None
    return None


def _struct_fields(struct) -> list[str]:
    fields = []
    for c in _named(struct):
        if c.type == "type_head":
            continue
        node = c
        if node.type == "const_statement":
            kids = _named(node)
            node = kids[0] if kids else node
        if node.type == "assignment":  # @kwdef default, unless it defines a constructor
            if _definition_call(node) is not None:
                continue
            node = _named(node)[0]
        if node.type == "identifier":
            fields.append(_text(node))
        elif node.type == "typed_expression":
            first = _named(node)[0]
            if first.type == "identifier":
                fields.append(_text(first))
    return fields


# --------------------------------------------------------------------------- modules


@dataclass
class Import:
    """One `using`/`import` clause."""

    kind: str            # "using" | "import"
    module: str          # "ChainRulesCore", ".Sub", "Base"
    names: list | None   # explicit names (None: the whole module)
    offset: int          # byte offset in its file
    path: str


def _module_name_node(module_node):
    name = module_node.child_by_field_name("name")
    if name is not None:
        return name
    return next((c for c in module_node.children if c.type == "identifier"), None)


def _scope_nodes(node) -> Iterator:
    """Nodes that belong to the scope rooted at `node` (nested modules excluded)."""
    for n in _walk(node, stop=("module_definition",)):
        if n is not node and n.type == "module_definition":
            continue
        yield n


def _imports_in(file: SourceFile, scope_node) -> list[Import]:
    out = []
    for n in _scope_nodes(scope_node):
        if n.type not in ("using_statement", "import_statement"):
            continue
        kind = "using" if n.type == "using_statement" else "import"
        for c in _named(n):
            if c.type == "selected_import":
                kids = _named(c)
                mod = _text(kids[0])
                names = []
                for k in kids[1:]:
                    if k.type == "import_alias":
                        names.append(_text(_named(k)[-1]))
                    else:
                        names.append(_text(k))
                out.append(Import(kind, mod, names, n.start_byte, file.path))
            elif c.type == "scoped_identifier" and kind == "import":
                text = _text(c)
                mod, _, name = text.rpartition(".")
                out.append(Import(kind, mod, [name], n.start_byte, file.path))
            elif c.type == "import_alias":
                kids = _named(c)
                out.append(Import(kind, _text(kids[0]), None, n.start_byte, file.path))
                out.append(Import(kind, "", [_text(kids[-1])], n.start_byte, file.path))
            else:
                out.append(Import(kind, _text(c), None, n.start_byte, file.path))
    return out


#: Nodes whose bodies are local scopes: a function named `rrule` defined there is a local closure,
#: not an attempt at a rule, so PFA001 leaves it alone.
LOCAL_SCOPES = ("function_definition", "let_statement", "arrow_function_expression", "do_clause",
                "macro_definition")


def _inside(node, kinds: Sequence[str]) -> bool:
    p = node.parent
    while p is not None:
        if p.type in kinds:
            return True
        p = p.parent
    return False


def _enclosing_module(node):
    p = node.parent
    while p is not None:
        if p.type == "module_definition":
            return p
        p = p.parent
    return None


def _include_target(call, base: Path) -> Path | None | bool:
    """The file an `include("x.jl")` call names; False when the call is not an include;
    None when its path is not a plain string literal."""
    qual, name = _callee(call)
    if name != "include" or qual not in (None, "Base"):
        return False
    args, _ = _arguments(call)
    if len(args) != 1 or args[0].type != "string_literal":
        return None
    parts = [c for c in args[0].named_children]
    if any(p.type != "content" for p in parts):
        return None
    return (base.parent / "".join(_text(p) for p in parts)).resolve()


@dataclass
class Project:
    """The files being linted plus the files they include or are included by."""

    files: dict = field(default_factory=dict)  # resolved Path -> SourceFile
    _index: dict = field(default_factory=dict)  # search root -> {included path: [(host, call)]}

    def load(self, path: Path, text: str | bytes | None = None) -> SourceFile:
        key = path.resolve() if text is None or path.exists() else path
        if key not in self.files:
            if text is None:
                data = path.read_bytes()
            else:
                data = text.encode() if isinstance(text, str) else text
            self.files[key] = SourceFile(str(path), data)
        return self.files[key]

    def includes(self, file: SourceFile, scope_node):
        """(target path or None, call node) for each include in a scope."""
        for n in _scope_nodes(scope_node):
            if n.type == "call_expression":
                target = _include_target(n, Path(file.path))
                if target is not False:
                    yield target, n

    def hosts(self, path: Path) -> list[tuple[SourceFile, object]]:
        """Files that `include` `path`: (host file, include call) pairs. Searched in the
        enclosing package (the nearest folder with a Project.toml, up to 4 levels up: its
        whole tree), else in the file's folder and the one above."""
        path = path.resolve()
        root = next((d for d in list(path.parents)[:5] if (d / "Project.toml").is_file()), None)
        if root is not None:
            candidates = sorted(root.rglob("*.jl"))
            key = root
        else:
            candidates = sorted(path.parent.glob("*.jl")) + sorted(path.parent.parent.glob("*.jl"))
            key = path.parent
        index = self._index.get(key)
        if index is None:
            index = {}
            for cand in candidates:
                try:
                    host = self.load(cand)
                except OSError:
                    continue
                for n in _walk(host.root):
                    if n.type == "call_expression":
                        target = _include_target(n, cand)
                        if target:
                            index.setdefault(target, []).append((host, n))
            self._index[key] = index
        return [(h, c) for h, c in index.get(path, []) if Path(h.path).resolve() != path]

    def inherited_imports(self, path: Path, seen: frozenset = frozenset()) -> list:
        """Imports in force where `path` is included (its hosts', transitively)."""
        path = path.resolve()
        out = []
        for host, call in self.hosts(path):
            hpath = Path(host.path).resolve()
            mod = _enclosing_module(call)
            out += [i for i in _imports_in(host, mod if mod is not None else host.root)
                    if i.offset < call.start_byte]
            if mod is None and hpath not in seen:
                out += self.inherited_imports(hpath, seen | {path})
        return out

    def owner_scopes(self, path: Path, seen: frozenset = frozenset()) -> list:
        """(file, scope node) of each module `path`'s top level is evaluated in."""
        path = path.resolve()
        out = []
        for host, call in self.hosts(path):
            hpath = Path(host.path).resolve()
            mod = _enclosing_module(call)
            if mod is not None:
                out.append((host, mod))
            elif hpath not in seen and self.hosts(hpath):
                out += self.owner_scopes(hpath, seen | {path})
            else:
                out.append((host, host.root))
        return out

    def host_modules(self, path: Path, seen: frozenset = frozenset()) -> list[str]:
        """Names of the modules `path` is included into (transitively)."""
        path = path.resolve()
        out = []
        for host, call in self.hosts(path):
            mod = _enclosing_module(call)
            if mod is not None:
                name = _module_name_node(mod)
                if name is not None:
                    out.append(_text(name))
            elif Path(host.path).resolve() not in seen:
                out += self.host_modules(Path(host.path), seen | {path})
        return out


# --------------------------------------------------------------------------- rules


class _Checker:
    def __init__(self, project: Project, file: SourceFile, inherited: list[Import],
                 display: str, host_modules: list[str] | None = None):
        self.project = project
        self.file = file
        self.inherited = inherited
        self.display = display
        self.host_modules = host_modules or []
        self.findings: list[Finding] = []

    def add(self, node, code: str, message: str, suggestion: str) -> None:
        line, col = self.file.position(node)
        if RULES[code][0] == "warning":
            message = "warning: " + message
        self.findings.append(Finding(self.display, line, col, code, message, suggestion))

    # -- scopes

    def scope_imports(self, node) -> list[Import]:
        """Imports visible to `node` in its module (host imports for top-level code)."""
        mod = _enclosing_module(node)
        if mod is None:
            return self.inherited + _imports_in(self.file, self.file.root)
        return _imports_in(self.file, mod)

    def module_names(self, node) -> list[str]:
        """Names of the module(s) `node` is evaluated in (a fragment's host modules)."""
        mod = _enclosing_module(node)
        if mod is None:
            return self.host_modules
        name = _module_name_node(mod)
        return [_text(name)] if name is not None else []

    def module_label(self, node) -> str:
        names = self.module_names(node)
        return f"module {names[0]}" if names else "this file's module"

    # -- PFA000

    def syntax(self) -> None:
        for n in _walk(self.file.root):
            if n.is_missing:
                self.add(n, "PFA000", f"syntax error: missing `{n.type}`",
                         f"add the missing `{n.type}`")
            elif n.type == "ERROR":
                parent = n.parent
                while parent is not None and parent.type != "ERROR":
                    parent = parent.parent
                if parent is not None:
                    continue
                snippet = _text(n).strip().splitlines()[0][:40] if _text(n).strip() else ""
                self.add(n, "PFA000",
                         f"syntax error near `{snippet}` (tree-sitter-julia cannot parse it)",
                         "fix the syntax here; if Julia accepts it, check with `fatou parse` "
                         "and report the grammar gap")

    # -- rules over every definition

    def definitions(self) -> None:
        for n in _walk(self.file.root):
            call = _definition_call(n)
            name = _bare_function_name(n)
            if call is None and name is None:
                continue
            qual, fname = _callee(call) if call is not None else (None, name)
            if fname in RULE_NAMES and qual is None and not _inside(n, LOCAL_SCOPES):
                self.bare_rule(n, call, fname)
            if fname == "rrule" and call is not None:
                self.concrete_types(n, call)
                self.tangent_count(n, call)

    def bare_rule(self, node, call, name: str) -> None:
        if CRC in self.module_names(node):
            return  # ChainRulesCore's own generic function
        imports = [i for i in self.scope_imports(node)
                   if i.offset < node.start_byte or i.path != self.file.path]
        crc = [i for i in imports if i.module.split(".")[-1] == CRC]
        extending = [i for i in crc if i.kind == "import" and i.names and name in i.names]
        if extending:
            return
        sig = " ".join(_text(call).split()) if call is not None else ""
        sig = re.sub(r"::\s*(Matrix|Vector|Array|VecOrMat)\b", r"::Abstract\1", sig)  # PFA002 too
        fixed = f"function {CRC}.{sig}" if call is not None else f"function {CRC}.{name} end"
        where = self.module_label(node)
        by_name = [i for i in crc if i.kind == "using" and i.names and name in i.names]
        if by_name:
            self.add(node, "PFA001",
                     f"`{name}` was brought in with `using {CRC}: {name}`, which cannot be "
                     f"extended: loading this file fails with \"function {CRC}.{name} must be "
                     f"explicitly imported to be extended\"",
                     f"write `{fixed}` (or change the `using` to `import {CRC}: {name}`)")
        else:
            self.add(node, "PFA001",
                     f"bare `{name}` defines a new function `{name}` in {where}, not a method "
                     f"of `{CRC}.{name}`: Zygote never sees it and silently computes plain "
                     f"backprop",
                     f"write `{fixed}` (or add `import {CRC}: {name}` before it)")

    def concrete_types(self, node, call) -> None:
        bounds = {}
        sig_root = call.parent
        while sig_root is not None and sig_root.type in ("where_expression", "typed_expression",
                                                          "signature"):
            if sig_root.type == "where_expression":
                for b in _walk(_named(sig_root)[-1]):
                    if b.type == "binary_expression":
                        kids = [c for c in _named(b) if c.type != "operator"]
                        ops = [c for c in b.children if c.type == "operator"]
                        if len(kids) == 2 and ops and _text(ops[0]) == "<:":
                            bounds[_text(kids[0])] = kids[1]
            sig_root = sig_root.parent
        args, _ = _arguments(call)
        for arg in args:
            t = _arg_type(arg)
            if t is None:
                continue
            via = ""
            if t.type == "identifier" and _text(t) in bounds:
                via = f" (`{_text(t)}<:{_text(bounds[_text(t)])}`)"
                t = bounds[_text(t)]
            bad = self._concrete_array(t)
            if bad:
                abstract = {"Matrix": "AbstractMatrix", "Vector": "AbstractVector",
                            "Array": "AbstractArray", "VecOrMat": "AbstractVecOrMat"}[bad]
                self.add(arg, "PFA002",
                         f"rrule argument `{_text(arg)}`{via} is typed `{bad}`: a CuArray or a "
                         f"juliacall PyArray does not match it, so Zygote silently "
                         f"differentiates the function body instead (backprop)",
                         f"use `{abstract}` in place of `{bad}`")

    @staticmethod
    def _concrete_array(t) -> str | None:
        head = t
        if head.type == "parametrized_type_expression":
            head = head.children[0]
        if head.type == "field_expression":
            head = _named(head)[-1]
        if head.type == "identifier" and _text(head) in CONCRETE_ARRAYS:
            return _text(head)
        if t.type == "curly_expression" or (t.type == "parametrized_type_expression"
                                            and _text(t.children[0]) == "Union"):
            for k in _walk(t):
                if k.type == "identifier" and _text(k) in CONCRETE_ARRAYS:
                    return _text(k)
        return None

    def tangent_count(self, node, call) -> None:
        args, exact = _arguments(call)
        if not exact or not args:
            return
        expected = len(args)
        if _is_config(args):
            expected -= 1  # rrule(config, f, args...): no tangent for the config
            args = args[1:]
        pullbacks = []
        for ret in _returned(node):
            items = _tuple_items(ret)
            if items and len(items) == 2:
                pb = self._resolve_function(node, items[1])
                if pb is not None:
                    pullbacks.append(pb)
        seen = set()
        for pb_name, pb in pullbacks:
            if pb.id in seen:
                continue
            seen.add(pb.id)
            for ret in _returned(pb):
                items = self._tuple_or_binding(pb, ret)
                if items is None:
                    continue
                tup, elems = items
                if any(e.type == "splat_expression" or _text(e).endswith("...") for e in elems):
                    continue
                if len(elems) != expected:
                    names = []
                    for i, a in enumerate(args):
                        if i == 0:
                            names.append("NoTangent()")
                        else:
                            names.append("∂" + (_arg_name(a) or f"arg{i}"))
                    self.add(tup, "PFA003",
                             f"pullback `{pb_name}` returns {len(elems)} tangents but "
                             f"`{' '.join(_text(call).split())}` takes {expected} arguments "
                             f"counting the function: expected {expected}, found {len(elems)}",
                             f"return one tangent per argument, function first: "
                             f"({', '.join(names)})")

    def _resolve_function(self, rule, expr):
        """The node of the function `expr` names inside `rule` (or `expr` if it is one)."""
        if expr.type in ("arrow_function_expression", "function_expression",
                         "function_definition"):
            return "<anonymous>", expr
        if expr.type != "identifier":
            return None
        name = _text(expr)
        found = None
        for stmt in _body(rule):
            for n in _walk(stmt):
                call = _definition_call(n)
                if call is not None and _callee(call) == (None, name):
                    found = n
                elif n.type == "assignment":
                    kids = _named(n)
                    if (len(kids) >= 2 and kids[0].type == "identifier"
                            and _text(kids[0]) == name
                            and kids[-1].type in ("arrow_function_expression",
                                                  "function_expression",
                                                  "function_definition")):
                        found = kids[-1]
        return (name, found) if found is not None else None

    def _tuple_or_binding(self, fn, expr):
        items = _tuple_items(expr)
        if items is not None:
            return expr, items
        if expr.type == "identifier":
            name = _text(expr)
            last = None
            for stmt in _body(fn):
                for n in _walk(stmt, stop=_FUNCTION_NODES):
                    if n.type == "assignment":
                        kids = _named(n)
                        if len(kids) >= 2 and kids[0].type == "identifier" \
                                and _text(kids[0]) == name:
                            last = kids[-1]
            if last is not None and _tuple_items(last) is not None:
                return last, _tuple_items(last)
        return None

    # -- macros: @functor, @layer; implicit params

    def macros_and_calls(self) -> None:
        loaded = {i.module.split(".")[-1] for i in self.inherited + [
            i for m in _walk(self.file.root) if m.type in ("source_file", "module_definition")
            for i in _imports_in(self.file, m)]}
        uses_flux = bool(loaded & {"Flux", "Zygote"})
        flux_file = "Flux" in loaded
        quoted = ("quote_expression", "quote_statement", "macro_definition")
        for n in _walk(self.file.root):
            if n.type == "macrocall_expression" and not _inside(n, quoted):
                qual, name = _macro_name(n)
                if name == "functor" and (qual == "Flux" or qual in (None, "Functors")
                                          and flux_file):
                    args = _macro_args(n)
                    target = _text(args[0]) if args else "T"
                    self.add(n, "PFA004",
                             f"`@functor {target}` is deprecated for Flux layers (Flux 0.15+)",
                             f"use `Flux.@layer {target} trainable=(weight, bias)` "
                             f"(list the fields the optimiser may change)")
            elif n.type == "call_expression":
                qual, name = _callee(n)
                if name == "params" and (qual in ("Flux", "Zygote")
                                         or (qual is None and uses_flux)):
                    self.add(n, "PFA006",
                             "implicit parameters (`params`) are deprecated since Flux 0.15",
                             "train explicitly: `opt = Flux.setup(rule, model)`; "
                             "`grads = Flux.gradient(m -> loss(m, x, y), model)`; "
                             "`Flux.update!(opt, model, grads[1])`")
                elif name in ("gradient", "withgradient") and qual in (None, "Flux", "Zygote"):
                    args, _ = _arguments(n)
                    do = next((c for c in n.children if c.type == "do_clause"), None)
                    zero_arg = bool(args) and args[0].type == "arrow_function_expression" \
                        and _text(args[0]).replace(" ", "").startswith("()->")
                    if do is not None:
                        params = next((c for c in do.children if c.type == "argument_list"),
                                      None)
                        zero_arg = params is None or not _named(params)
                    if zero_arg:
                        self.add(n, "PFA006",
                                 f"`{name}` of a zero-argument closure over implicit "
                                 f"parameters is deprecated since Flux 0.15",
                                 f"differentiate with respect to the model: "
                                 f"`Flux.{name}(m -> loss(m, x, y), model)`")


# --------------------------------------------------------------------------- module checks


@dataclass
class _ModuleFacts:
    defined: set = field(default_factory=set)
    exports: list = field(default_factory=list)     # (name, node, file)
    structs: dict = field(default_factory=dict)     # name -> (fields, node, file)
    layers: list = field(default_factory=list)      # (type name, trainable names|None, node, file)
    trainable_methods: set = field(default_factory=set)  # types with a trainable(::T) method
    opaque: bool = False                            # eval or unresolvable include


_DEFINITION_STOP = ("function_definition", "macro_definition", "struct_definition",
                    "arrow_function_expression", "let_statement", "for_statement",
                    "while_statement", "do_clause", "module_definition")


def _collect_module(project: Project, file: SourceFile, scope_node, facts: _ModuleFacts,
                    seen: set) -> None:
    key = (file.path, scope_node.start_byte)
    if key in seen:
        return
    seen.add(key)
    for imp in _imports_in(file, scope_node):
        if imp.names:
            facts.defined.update(imp.names)
        elif imp.module:  # `using X` / `import X` bind the name X itself
            facts.defined.add(imp.module.split(".")[-1])
    for n in _scope_nodes(scope_node):  # eval anywhere (loops included) hides definitions
        if n.type == "macrocall_expression" and _macro_name(n)[1] == "eval":
            facts.opaque = True
        elif n.type == "call_expression" and _callee(n) in ((None, "eval"), ("Core", "eval"),
                                                            ("Base", "eval")):
            facts.opaque = True
    for n in _walk(scope_node, stop=_DEFINITION_STOP):
        if n is not scope_node and n.type == "module_definition":
            name = _module_name_node(n)
            if name is not None:
                facts.defined.add(_text(name))
            continue
        t = n.type
        call = _definition_call(n)
        if call is not None:
            qual, name = _callee(call)
            if name and qual is None:
                facts.defined.add(name)
            if name == "trainable":
                args, _ = _arguments(call)
                if args:
                    ty = _arg_type(args[0])
                    tn = _type_name(ty) if ty is not None else None
                    if tn:
                        facts.trainable_methods.add(tn)
            continue
        fname = _bare_function_name(n)
        if fname:
            facts.defined.add(fname)
        elif t in ("struct_definition", "abstract_definition", "primitive_definition"):
            head = next((c for c in n.children if c.type == "type_head"), None)
            name = _type_name(head)
            if name:
                facts.defined.add(name)
                if t == "struct_definition":
                    facts.structs[name] = (_struct_fields(n), n, file)
        elif t == "macro_definition":
            sig = next((c for c in n.children if c.type == "signature"), None)
            c = _unwrap_signature(sig) if sig is not None else None
            if c is not None and _callee(c)[1]:
                facts.defined.add("@" + _callee(c)[1])
        elif t == "assignment" and n.parent is not None and n.parent.type not in (
                "argument_list", "macro_argument_list", "tuple_expression", "named_argument"):
            lhs = _named(n)[0] if _named(n) else None
            if lhs is not None and lhs.type in ("identifier", "operator"):
                facts.defined.add(_text(lhs))
            elif lhs is not None and lhs.type == "typed_expression":
                first = _named(lhs)[0]
                if first.type == "identifier":
                    facts.defined.add(_text(first))
            elif lhs is not None and lhs.type in ("open_tuple", "tuple_expression"):
                for k in _named(lhs):
                    if k.type == "identifier":
                        facts.defined.add(_text(k))
        elif t == "export_statement":
            for k in _named(n):
                facts.exports.append((_text(k), k, file))
        elif t == "macrocall_expression":
            qual, name = _macro_name(n)
            if name == "enum":
                for k in _macro_args(n):
                    if k.type == "identifier":
                        facts.defined.add(_text(k))
            elif name == "layer" and qual in (None, "Flux"):
                args = [a for a in _macro_args(n) if not _text(a).startswith(":")]
                if args:
                    tname = _type_name(args[0])
                    trainable = None
                    for a in args[1:]:
                        kids = _named(a)
                        if a.type == "assignment" and kids and _text(kids[0]) == "trainable":
                            value = kids[-1]
                            items = _tuple_items(value)
                            elems = items if items is not None else [value]
                            if value.type == "parenthesized_expression" and items is None:
                                elems = _named(value)
                            trainable = [(_text(e), e) for e in elems]
                    facts.layers.append((tname, trainable, n, file))
        elif t == "call_expression":
            target = _include_target(n, Path(file.path))
            if target is None:
                facts.opaque = True
            elif target:
                try:
                    child = project.load(target)
                except OSError:
                    facts.opaque = True
                    continue
                _collect_module(project, child, child.root, facts, seen)


def _tuple_text(names: Iterable[str]) -> str:
    names = list(names)
    return "(" + ", ".join(names) + ("," if len(names) == 1 else "") + ")"


def _module_checks(project: Project, file: SourceFile, checker: _Checker,
                   owners: list) -> None:
    """PFA005/7/8/9 for every module `file` contributes to. A file `include`d by a host is
    checked as part of the host's module; only findings located in `file` are reported."""
    owners = [(file, n) for n in _walk(file.root) if n.type == "module_definition"] + (
        owners or [(file, file.root)])
    for owner, scope in owners:
        facts = _ModuleFacts()
        _collect_module(project, owner, scope, facts, set())
        if facts.opaque:
            continue
        where = (f"module {_text(_module_name_node(scope))}" if scope.type == "module_definition"
                 else "this file")
        for name, node, f in facts.exports:
            if f is file and name not in facts.defined:
                checker.add(node, "PFA007",
                            f"`{name}` is exported from {where} but neither defined there nor "
                            f"imported by name",
                            f"define `{name}`, remove it from the export list, or import it "
                            f"explicitly (`using SomePackage: {name}`) to re-export it")
        for tname, trainable, node, f in facts.layers:
            if f is not file or tname is None:
                continue
            if tname not in facts.structs:
                if tname not in facts.defined:
                    checker.add(node, "PFA008",
                                f"`@layer {tname}`: {where} defines no struct `{tname}`",
                                f"define `struct {tname} ... end` before `@layer`, or fix the "
                                f"name")
                continue
            fields = facts.structs[tname][0]
            for item, enode in trainable or []:
                if item not in fields:
                    checker.add(enode, "PFA005",
                                f"`@layer {tname} trainable=(...)` names `{item}`, which is not "
                                f"a field of `{tname}` (fields: {', '.join(fields) or 'none'})",
                                f"use field names only: trainable="
                                f"{_tuple_text(x for x in fields if x != 'feedback')}")
        for sname, (fields, node, f) in facts.structs.items():
            if f is not file or "feedback" not in fields:
                continue
            layer = [ly for ly in facts.layers if ly[0] == sname]
            keeps_out = any(tr is not None and "feedback" not in [x for x, _ in tr]
                            for _, tr, _, _ in layer)
            if keeps_out or sname in facts.trainable_methods:
                continue
            rest = _tuple_text(x for x in fields if x != "feedback")
            checker.add(node, "PFA009",
                        f"struct `{sname}` has a `feedback` field but no `@layer {sname} "
                        f"trainable=(...)` or `trainable` method leaves it out: Flux.setup "
                        f"would train the feedback matrix",
                        f"add `Flux.@layer {sname} trainable={rest}`")


# --------------------------------------------------------------------------- entry points


def _select(findings: Iterable[Finding], select, ignore) -> list[Finding]:
    sel = {c.upper() for c in select} if select else None
    ign = {c.upper() for c in ignore} if ignore else set()
    return sorted(f for f in findings
                  if (sel is None or f.code in sel) and f.code not in ign)


def _lint_loaded(project: Project, file: SourceFile, path: Path | None,
                 display: str) -> list[Finding]:
    real = path is not None and path.exists()
    owners = project.owner_scopes(path) if real else []
    inherited = project.inherited_imports(path) if real else []
    host_modules = project.host_modules(path) if real else []
    checker = _Checker(project, file, inherited, display, host_modules)
    checker.syntax()
    checker.definitions()
    checker.macros_and_calls()
    _module_checks(project, file, checker, owners)
    return checker.findings


def lint_source(text: str, path: str = "<string>", *, select: Iterable[str] | None = None,
                ignore: Iterable[str] | None = None) -> list[Finding]:
    """Lint Julia source text. `path` is used in findings and to resolve `include`s."""
    project = Project()
    p = Path(path)
    file = project.load(p, text)
    real = p if path != "<string>" and p.exists() else None
    return _select(_lint_loaded(project, file, real, path), select, ignore)


def lint_file(path: str | Path, *, select: Iterable[str] | None = None,
              ignore: Iterable[str] | None = None) -> list[Finding]:
    """Lint one file (raises OSError when it cannot be read)."""
    return lint_paths([path], select=select, ignore=ignore)


def _expand(paths: Iterable[str | Path]) -> list[Path]:
    out = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            out.extend(sorted(x for x in p.rglob("*.jl") if x.is_file()))
        else:
            out.append(p)
    return out


def lint_paths(paths: Iterable[str | Path], *, select: Iterable[str] | None = None,
               ignore: Iterable[str] | None = None) -> list[Finding]:
    """Lint files and directories (searched for ``*.jl``). Raises OSError on an unreadable
    file."""
    project = Project()
    findings: list[Finding] = []
    for p in _expand(paths):
        file = project.load(p)
        findings += _lint_loaded(project, file, p, str(p))
    return _select(set(findings), select, ignore)


def _codes(value: str) -> list[str]:
    codes = [c.strip().upper() for c in value.split(",") if c.strip()]
    unknown = [c for c in codes if c not in RULES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown rule code(s): {', '.join(unknown)}")
    return codes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `pyfa lint` options (also used by `python -m pyfa.lint`)."""
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="Julia files, or directories searched for *.jl")
    parser.add_argument("--select", type=_codes, default=None, metavar="CODES",
                        help="only these comma-separated rule codes (e.g. PFA001,PFA003)")
    parser.add_argument("--ignore", type=_codes, default=None, metavar="CODES",
                        help="skip these comma-separated rule codes (e.g. PFA006,PFA009)")


def run(args: argparse.Namespace) -> int:
    """Lint `args.paths`; print findings; return 0 (clean), 1 (findings) or 2 (unreadable)."""
    status = 0
    findings: list[Finding] = []
    for p in args.paths:
        if not Path(p).exists():
            print(f"pyfa lint: {p}: no such file or directory", file=sys.stderr)
            status = 2
    paths = [p for p in args.paths if Path(p).exists()]
    for p in paths:
        if Path(p).is_dir() and not _expand([p]):
            print(f"pyfa lint: {p}: no *.jl files found", file=sys.stderr)
    try:
        findings = lint_paths(paths, select=args.select, ignore=args.ignore)
    except OSError as exc:
        print(f"pyfa lint: {exc}", file=sys.stderr)
        return 2
    for f in findings:
        print(f.format())
    if findings:
        n_files = len({f.path for f in findings})
        print(f"{len(findings)} finding(s) in {n_files} file(s)", file=sys.stderr)
    elif paths:
        print(f"no findings in {len(_expand(paths))} file(s)", file=sys.stderr)
    return status or (1 if findings else 0)


def main(argv: Sequence[str] | None = None) -> int:
    """`pyfa lint` / `python -m pyfa.lint` entry point; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="pyfa lint", description=(__doc__ or "").splitlines()[0])
    add_arguments(parser)
    try:
        args = parser.parse_args(list(argv) if argv is not None else None)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
