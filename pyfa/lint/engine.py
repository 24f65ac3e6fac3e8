"""Running the rules: one walk over each linted file, and the `lint_*` entry points.

Cost: a linted file is parsed once, scanned once for its modules' facts (`pyfa.lint.scopes`) and
walked once more while every selected rule's visitors are called; the rules then answer from
those facts. Neighbour files are parsed only when a rule needs something only they can tell (see
`pyfa.lint.project`), so linting is linear in the size of what is read.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from pyfa.lint import syntax as S
from pyfa.lint.parsing import SourceFile
from pyfa.lint.project import Package, Project, julia_files
from pyfa.lint.reporting import Finding, selected
from pyfa.lint.scopes import FileModel, Import, Scope

_QUOTED = ("quote_expression", "quote_statement", "macro_definition")


@dataclass
class Definition:
    """A method definition: `function f(x) ... end`, `f(x) = ...`, or `function f end`."""

    node: object
    call: object | None      # the signature call (None for `function f end`)
    qualifier: str | None    # "ChainRulesCore" in `ChainRulesCore.rrule(...)`
    name: str
    local: bool              # inside a function, let or closure: a local method
    scope: Scope             # the enclosing module's scope


class FileContext:
    """What a rule may ask while one file is linted. Properties that need other files are
    computed on first use only."""

    def __init__(self, project: Project, file: SourceFile, path: Path | None, display: str):
        self.project = project
        self.file = file
        self.path = path              # the file on disk, if it is one
        self.display = display
        self.model: FileModel = project.model(file)
        self.findings: list[Finding] = []
        # where the walk is (kept by the engine): the enclosing module, local and quote depth
        self.scope: Scope = self.model.top
        self.local_depth = 0
        self.quote_depth = 0

    # -- reporting

    def report(self, rule, node, message: str, fix: str) -> None:
        line, col = self.file.position(node)
        if rule.SEVERITY == "warning":
            message = "warning: " + message
        self.findings.append(Finding(self.display, line, col, rule.CODE, message, fix))

    def text(self, node) -> str:
        """Source text of `node`, for quoting code in messages."""
        return " ".join(self.file.text(node).split())

    # -- the file's surroundings

    @cached_property
    def inherited_imports(self) -> list[Import]:
        """Imports in force where this file is included."""
        return self.project.inherited_imports(self.path) if self.path else []

    @cached_property
    def host_modules(self) -> list[str]:
        return self.project.host_modules(self.path) if self.path else []

    @cached_property
    def loaded(self) -> set[str]:
        """Last name component of every module this file (or its includer) loads."""
        return self.model.loaded_modules() | {i.module.split(".")[-1]
                                              for i in self.inherited_imports}

    @cached_property
    def package(self) -> Package | None:
        return self.project.package(self.path) if self.path else None

    def visible_imports(self, scope: Scope, before: int) -> list[Import]:
        """Imports in force at byte `before` of this file, in module `scope`."""
        own = [i for i in scope.imports if i.offset < before]
        return (self.inherited_imports + own) if scope is self.model.top else own

    def module_names(self, scope: Scope) -> list[str]:
        """Names of the module(s) code in `scope` is evaluated in."""
        if scope is self.model.top:
            return self.host_modules
        return [scope.name] if scope.name else []

    def module_label(self, scope: Scope) -> str:
        names = self.module_names(scope)
        return f"module {names[0]}" if names else "this file's module"

    @cached_property
    def module_owners(self) -> list[tuple[str, object]]:
        """(label, ModuleFacts) of each module this file's code belongs to: its own
        ``module`` blocks, and the module(s) its top level is included into (or the file)."""
        owners = [(self.file, s) for s in self.model.scopes[1:]]
        hosts = self.project.owner_scopes(self.path) if self.path else []
        owners += hosts or [(self.file, self.model.top)]
        out = []
        for f, scope in owners:
            label = f"module {scope.name}" if scope.node.type == "module_definition" \
                else "this file"
            out.append((label, self.project.module_facts(f, scope)))
        return out


def _definition(node, ctx: FileContext) -> Definition | None:
    call = S.definition_call(node)
    if call is not None:
        qual, name = S.callee(call)
    else:
        qual, name = None, S.bare_function_name(node)
    if not name:
        return None
    return Definition(node, call, qual, name, ctx.local_depth > 0, ctx.scope)


def _walk(ctx: FileContext, rules: list) -> None:
    """Visit every node of the file once, calling the rules' visitors in document order."""
    table: dict[str, list] = {}
    on_definition = []
    for rule in rules:
        for attr in dir(type(rule)):
            if attr == "visit_definition":
                on_definition.append(rule.visit_definition)
            elif attr.startswith("visit_"):
                table.setdefault(attr[len("visit_"):], []).append(getattr(rule, attr))
    by_node = ctx.model.by_node
    cursor = ctx.file.root.walk()
    undo: list[tuple] = []   # per entered node: (local?, quoted?, previous scope or None)
    while True:
        node = cursor.node
        t = node.type
        for visit in table.get(t, ()):
            visit(node)
        if on_definition and t in ("function_definition", "assignment"):
            d = _definition(node, ctx)
            if d is not None:
                for visit in on_definition:
                    visit(d)
        if cursor.goto_first_child():
            local, quoted = t in S.LOCAL_SCOPES, t in _QUOTED
            prev = None
            if t == "module_definition":
                prev, ctx.scope = ctx.scope, by_node[node.id]
            ctx.local_depth += local
            ctx.quote_depth += quoted
            undo.append((local, quoted, prev))
            continue
        while not cursor.goto_next_sibling():
            if not cursor.goto_parent():
                return
            local, quoted, prev = undo.pop()
            ctx.local_depth -= local
            ctx.quote_depth -= quoted
            if prev is not None:
                ctx.scope = prev


def rule_classes(select: Iterable[str] | None, ignore: Iterable[str] | None) -> list:
    """The rule classes `select` (all when None) keeps and `ignore` does not drop."""
    from pyfa.lint.rules import ALL_RULES

    sel = {c.upper() for c in select} if select else None
    ign = {c.upper() for c in ignore} if ignore else set()
    return [r for r in ALL_RULES if (sel is None or r.CODE in sel) and r.CODE not in ign]


def lint_loaded(project: Project, file: SourceFile, path: Path | None, display: str,
                classes: list) -> list[Finding]:
    """Run the rule `classes` over a loaded file (`path`: the file on disk, if it is one)."""
    ctx = FileContext(project, file, path, display)
    rules = [cls(ctx) for cls in classes]
    _walk(ctx, rules)
    for rule in rules:
        rule.finish()
    return ctx.findings


def lint_source(text: str, path: str = "<string>", *, select: Iterable[str] | None = None,
                ignore: Iterable[str] | None = None) -> list[Finding]:
    """Lint Julia source text. `path` is used in findings and, when it names a file on disk,
    to find the files around it (its includer, its package)."""
    project = Project()
    p = Path(path)
    file = project.load(p, text)
    real = p if path != "<string>" and p.exists() else None
    return selected(lint_loaded(project, file, real, path, rule_classes(select, ignore)))


def lint_file(path: str | Path, *, select: Iterable[str] | None = None,
              ignore: Iterable[str] | None = None) -> list[Finding]:
    """Lint one file (raises OSError when it cannot be read or is not a regular file)."""
    return lint_paths([path], select=select, ignore=ignore)


def expand(paths: Iterable[str | Path]) -> list[Path]:
    """Files, with each folder replaced by the regular ``*.jl`` files under it."""
    out = []
    for p in paths:
        p = Path(p)
        out.extend(julia_files(p) if p.is_dir() else [p])
    return out


def lint_paths(paths: Iterable[str | Path], *, select: Iterable[str] | None = None,
               ignore: Iterable[str] | None = None, project: Project | None = None
               ) -> list[Finding]:
    """Lint files and folders (searched for regular ``*.jl`` files). Raises OSError on a file
    that cannot be read or is not a regular file."""
    project = project or Project()
    classes = rule_classes(select, ignore)
    findings: list[Finding] = []
    for p in expand(paths):
        file = project.load(p)
        findings += lint_loaded(project, file, p, str(p), classes)
    return selected(findings)
