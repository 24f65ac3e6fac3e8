"""What each module of one file imports, includes and defines: one pass over the file.

`scan(file)` walks a parsed file once and returns a `FileModel`: one `Scope` per module (the
file's top level first, then each ``module ... end``). A scope holds the facts the rules ask
about, so no rule walks a module again to find them. Facts that span files (a module made of
several ``include``d files) are put together by `pyfa.lint.project.Project`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pyfa.lint import syntax as S
from pyfa.lint.parsing import SourceFile, named, text, walk

#: Macros that import a ChainRules rule into an AD backend, or give it one of its own. Each
#: names the function in a `typeof(f)` argument (`Enzyme.@import_rrule(typeof(f), T...)`,
#: `Mooncake.@from_rrule Mooncake.DefaultCtx Tuple{typeof(f), T...}`), except `@easy_rule`,
#: whose first argument is a call `f(x, y)`.
AD_MACROS = {
    "import_rrule": "Enzyme",
    "easy_rule": "Enzyme",
    "from_rrule": "Mooncake",
    "from_chainrules": "Mooncake",
    "zero_derivative": "Mooncake",
    "zero_adjoint": "Mooncake",
    "is_primitive": "Mooncake",
}
#: Enzyme's native rule functions: a method for `typeof(f)` gives `f` an Enzyme rule (or makes
#: it inactive). Counted when qualified by a module named EnzymeRules, or imported by name.
ENZYME_RULE_FUNCTIONS = ("augmented_primal", "reverse", "inactive", "inactive_noinl")
AD_BACKENDS = ("Enzyme", "Mooncake")


@dataclass
class Import:
    """One module named by a `using`/`import` statement."""

    kind: str            # "using" | "import"
    module: str          # "ChainRulesCore", ".Sub", "Base"
    names: list | None   # explicit names (None: the whole module)
    offset: int          # byte offset of the statement in its file
    path: str            # the file's display path


@dataclass
class Include:
    """An `include(...)` call."""

    target: Path | None  # resolved path; None when the argument is not a plain string
    call: object
    toplevel: bool       # not inside a function, let, loop or struct body


@dataclass
class Layer:
    """`@layer T` / `Flux.@layer T trainable=(a, b)`."""

    type_name: str | None
    trainable: list | None  # [(field name, node)] from `trainable=(...)`, None without it
    node: object


@dataclass
class Scope:
    """Facts about one module's code in one file (nested modules have their own scope)."""

    node: object                 # the file's root node or a module_definition
    name: str | None             # the module's name (None for a file's top level)
    imports: list = field(default_factory=list)             # [Import], in source order
    includes: list = field(default_factory=list)            # [Include]
    defined: set = field(default_factory=set)               # names bound at module level
    exports: list = field(default_factory=list)             # [(name, node)]
    structs: dict = field(default_factory=dict)             # name -> (fields, node)
    layers: list = field(default_factory=list)              # [Layer]
    trainable_methods: set = field(default_factory=set)     # T of each trainable(::T) method
    opaque: bool = False         # uses eval / @eval: it may define anything
    ad_rules: dict = field(default_factory=lambda: {b: set() for b in AD_BACKENDS})
    # function names whose rules this scope gives to each AD backend

    def imported_by_name(self, name: str, module_suffix: str) -> bool:
        return any(i.names and name in i.names and i.module.split(".")[-1] == module_suffix
                   for i in self.imports)


@dataclass
class FileModel:
    file: SourceFile
    scopes: list                 # [Scope]: the file's top level first
    by_node: dict                # node id -> Scope

    @property
    def top(self) -> Scope:
        return self.scopes[0]

    def scope_of(self, node) -> Scope:
        """The scope of the module enclosing `node`."""
        p = node if node.type == "module_definition" else node.parent
        while p is not None and p.type != "module_definition":
            p = p.parent
        return self.by_node[p.id] if p is not None else self.top

    def loaded_modules(self) -> set[str]:
        """Last name component of every module any scope of this file loads."""
        return {i.module.split(".")[-1] for s in self.scopes for i in s.imports}


def imports_of(statement, path: str) -> list[Import]:
    """The modules one `using`/`import` statement names."""
    kind = "using" if statement.type == "using_statement" else "import"
    out = []
    offset = statement.start_byte
    for c in named(statement):
        if c.type == "selected_import":
            kids = named(c)
            names = [text(named(k)[-1]) if k.type == "import_alias" else text(k)
                     for k in kids[1:]]
            out.append(Import(kind, text(kids[0]), names, offset, path))
        elif c.type == "scoped_identifier" and kind == "import":
            mod, _, name = text(c).rpartition(".")
            out.append(Import(kind, mod, [name], offset, path))
        elif c.type == "import_alias":
            kids = named(c)
            out.append(Import(kind, text(kids[0]), None, offset, path))
            out.append(Import(kind, "", [text(kids[-1])], offset, path))
        else:
            out.append(Import(kind, text(c), None, offset, path))
    return out


def imports_in(file: SourceFile, node) -> list[Import]:
    """Imports anywhere under `node`, nested modules excluded (a helper for callers outside
    the linter; the rules use `scan`)."""
    out = []
    for n in walk(node, stop=("module_definition",)):
        if n is not node and n.type == "module_definition":
            continue
        if n.type in ("using_statement", "import_statement"):
            out += imports_of(n, file.path)
    return out


def _is_eval(n) -> bool:
    if n.type == "macrocall_expression":
        return S.macro_name(n)[1] == "eval"
    return S.callee(n) in ((None, "eval"), ("Core", "eval"), ("Base", "eval"))


def _layer(n) -> Layer:
    args = [a for a in S.macro_args(n) if not text(a).startswith(":")]
    tname = S.type_name(args[0]) if args else None
    trainable = None
    for a in args[1:]:
        kids = named(a)
        if a.type == "assignment" and kids and text(kids[0]) == "trainable":
            value = kids[-1]
            items = S.tuple_items(value)
            elems = items if items is not None else [value]
            if value.type == "parenthesized_expression" and items is None:
                elems = named(value)
            trainable = [(text(e), e) for e in elems]
    return Layer(tname, trainable, n)


def _ad_macro(scope: Scope, n, name: str) -> None:
    backend = AD_MACROS[name]
    args = S.macro_args(n)
    if name == "easy_rule":
        target = S.callee(args[0])[1] if args and args[0].type == "call_expression" else None
    else:
        if n.parent is not None and n.parent.type == "macro_argument_list":
            # `@eval @from_rrule Ctx Tuple{...}`: tree-sitter-julia gives the inner macro's last
            # arguments to the outer one
            after = n.next_named_sibling
            while after is not None:
                args.append(after)
                after = after.next_named_sibling
        target = next((t for t in map(S.typeof_target, args) if t), None)
    if target:
        scope.ad_rules[backend].add(target)


def _define(scope: Scope, n, t: str) -> bool:
    """Record what node `n` (outside any function/loop body) binds in `scope`; True when `n`
    is a method definition (whose body is a local scope)."""
    call = S.definition_call(n)
    if call is not None:
        qual, name = S.callee(call)
        if name and qual is None:
            scope.defined.add(name)
        if name == "trainable":
            args, _ = S.arguments(call)
            ty = S.arg_type(args[0]) if args else None
            tn = S.type_name(ty) if ty is not None else None
            if tn:
                scope.trainable_methods.add(tn)
        elif name in ENZYME_RULE_FUNCTIONS and (
                (qual or "").split(".")[-1] == "EnzymeRules"
                or qual is None and scope.imported_by_name(name, "EnzymeRules")):
            target = S.typeof_target(call.child(call.child_count - 1))
            if target:
                scope.ad_rules["Enzyme"].add(target)
        return True
    if t == "function_definition":
        fname = S.bare_function_name(n)
        if fname:
            scope.defined.add(fname)
    elif t in ("struct_definition", "abstract_definition", "primitive_definition"):
        name = S.struct_name(n)
        if name:
            scope.defined.add(name)
            if t == "struct_definition":
                scope.structs[name] = (S.struct_fields(n), n)
    elif t == "macro_definition":
        sig = next((c for c in n.children if c.type == "signature"), None)
        c = S.unwrap_signature(sig) if sig is not None else None
        if c is not None and S.callee(c)[1]:
            scope.defined.add("@" + S.callee(c)[1])
    elif t == "assignment" and n.parent is not None and n.parent.type not in (
            "argument_list", "macro_argument_list", "tuple_expression", "named_argument"):
        lhs = n.named_children[0] if n.named_child_count else None
        if lhs is not None and lhs.type in ("identifier", "operator"):
            scope.defined.add(text(lhs))
        elif lhs is not None and lhs.type == "typed_expression":
            first = named(lhs)[0]
            if first.type == "identifier":
                scope.defined.add(text(first))
        elif lhs is not None and lhs.type in ("open_tuple", "tuple_expression"):
            scope.defined.update(text(k) for k in named(lhs) if k.type == "identifier")
    elif t == "export_statement":
        scope.exports += [(text(k), k) for k in named(n)]
    return False


_DEFINING = ("function_definition", "assignment", "struct_definition", "abstract_definition",
             "primitive_definition", "macro_definition", "export_statement")


def scan(file: SourceFile) -> FileModel:
    """One walk over `file`: every module scope's imports, includes, definitions, exports,
    structs, `@layer`s, `trainable` methods and AD rule imports."""
    root = file.root
    top = Scope(root, None)
    scopes, by_node = [top], {root.id: top}
    base = Path(file.path)
    # A cursor walk: asking nodes for `children` would build lists that py-tree-sitter keeps in
    # reference cycles, which only a full garbage collection frees (superlinear on big files).
    cursor = root.walk()
    frames: list[tuple] = []   # (scope, local) to restore when leaving each entered node
    scope, local = top, False  # the module of the current node; inside a function/loop body?
    while True:
        n = cursor.node
        t = n.type
        inner_scope, inner_local, descend = scope, local, True
        if t == "module_definition" and n.id != root.id:
            inner_scope, inner_local = Scope(n, S.module_name(n)), False
            scopes.append(inner_scope)
            by_node[n.id] = inner_scope
            if inner_scope.name:
                scope.defined.add(inner_scope.name)
        elif t in ("using_statement", "import_statement"):
            imports = imports_of(n, file.path)
            scope.imports += imports
            for imp in imports:  # `using X` / `import X` bind the name X itself
                scope.defined.update(imp.names or ([imp.module.split(".")[-1]] if imp.module
                                                   else []))
            descend = False
        else:
            if t == "call_expression":
                target = S.include_target(n, base)
                if target is not False:
                    scope.includes.append(Include(target, n, not local))
                    if target is None and not local:
                        scope.opaque = True  # include of a computed path: may define anything
                elif _is_eval(n):
                    scope.opaque = True
            elif t == "macrocall_expression":
                qual, name = S.macro_name(n)
                if name == "eval":
                    scope.opaque = True
                elif name in AD_MACROS:
                    _ad_macro(scope, n, name)
                elif not local and name == "enum":
                    scope.defined.update(text(k) for k in S.macro_args(n)
                                         if k.type == "identifier")
                elif not local and name == "layer" and qual in (None, "Flux"):
                    scope.layers.append(_layer(n))
            is_method = not local and t in _DEFINING and _define(scope, n, t)
            inner_local = local or is_method or t in S.DEFINITION_STOP
        if descend and cursor.goto_first_child():
            frames.append((scope, local))
            scope, local = inner_scope, inner_local
            continue
        while not cursor.goto_next_sibling():
            if not frames or not cursor.goto_parent():
                return FileModel(file, scopes, by_node)
            scope, local = frames.pop()
