"""Julia shapes on a tree-sitter-julia tree: method signatures, calls, macros, tuples, types.

Pure functions of nodes; no rule and no file system here.
"""

from __future__ import annotations

from pathlib import Path

from pyfa.lint.parsing import COMMENTS, named, text, walk

#: Nodes that start a new function (their returns are not the enclosing function's).
FUNCTION_NODES = ("function_definition", "arrow_function_expression", "macro_definition",
                  "do_clause", "function_expression")
#: Nodes whose bodies are local scopes: a method defined there is a local closure.
LOCAL_SCOPES = ("function_definition", "let_statement", "arrow_function_expression", "do_clause",
                "macro_definition")
#: Nodes whose insides do not define module-level names.
DEFINITION_STOP = ("function_definition", "macro_definition", "struct_definition",
                   "arrow_function_expression", "let_statement", "for_statement",
                   "while_statement", "do_clause", "module_definition")


def unwrap_signature(node):
    """`f(x)::T where {S}` -> the call `f(x)`; None when `node` is not a call signature."""
    while node is not None:
        if node.type == "call_expression":
            return node
        if node.type in ("where_expression", "typed_expression", "signature"):
            kids = named(node)
            node = kids[0] if kids else None
            continue
        return None
    return None


def definition_call(node):
    """The signature call of a method definition (long or short form), else None."""
    t = node.type
    if t == "function_definition":
        sig = next((c for c in node.children if c.type == "signature"), None)
        return unwrap_signature(sig) if sig is not None else None
    if t == "assignment":
        first = node.child(0)
        if first is not None and first.type in ("call_expression", "where_expression",
                                                "typed_expression"):
            return unwrap_signature(first)
    return None


def bare_function_name(node) -> str | None:
    """`function f end` -> "f"."""
    if node.type != "function_definition":
        return None
    sig = next((c for c in node.children if c.type == "signature"), None)
    if sig is not None:
        kids = named(sig)
        if len(kids) == 1 and kids[0].type == "identifier":
            return text(kids[0])
    return None


def callee(call) -> tuple[str | None, str | None]:
    """(qualifier, name) of a call's function: `f` -> (None, "f"), `A.B.f` -> ("A.B", "f")."""
    head = call.child(0)
    if head is None:
        return None, None
    if head.type == "parametrized_type_expression":
        head = head.child(0)
    if head.type in ("identifier", "operator"):
        return None, text(head)
    if head.type in ("field_expression", "scoped_identifier"):
        kids = named(head)
        if kids and kids[-1].type == "identifier":
            name = text(kids[-1])
            qual = text(head)[: -len(name)].rstrip(".")
            return qual or None, name
    return None, None


def dotted_name(node) -> str | None:
    """`f` -> "f", `A.B.f` -> "A.B.f"; None for anything else."""
    if node.type == "identifier":
        return text(node)
    if node.type in ("field_expression", "scoped_identifier"):
        kids = named(node)
        parts = [dotted_name(k) for k in kids]
        if parts and all(parts):
            return ".".join(parts)
    return None


def arguments(call) -> tuple[list, bool]:
    """Positional argument nodes of a call/signature and whether their count is exact
    (no splat, no default value)."""
    args = next((c for c in call.children if c.type == "argument_list"), None)
    if args is None:
        return [], True
    out, exact = [], True
    for c in args.children:
        if c.type == ";":
            break
        if not c.is_named or c.type in COMMENTS:
            continue
        if c.type == "splat_expression" or text(c).endswith("..."):
            exact = False
        if c.type in ("assignment", "named_argument", "optional_parameter"):
            exact = False
        out.append(c)
    return out, exact


def arg_type(arg):
    """The type annotation node of `x::T` / `::T`, else None."""
    if arg.type in ("typed_expression", "unary_typed_expression"):
        kids = named(arg)
        return kids[-1] if kids else None
    return None


def arg_name(arg) -> str | None:
    if arg.type == "identifier":
        return text(arg)
    if arg.type == "typed_expression":
        first = named(arg)[0]
        return text(first) if first.type == "identifier" else None
    return None


def typeof_target(node) -> str | None:
    """The function named by the first `typeof(f)` in `node` (itself included): "f" for
    `::typeof(f)`, `typeof(Mod.f)`, `Tuple{typeof(f), T}` or `Const{typeof(f)}`."""
    for n in walk(node):
        if n.type == "call_expression" and callee(n) == (None, "typeof"):
            args, _ = arguments(n)
            if len(args) == 1:
                name = dotted_name(args[0])
                return name.rsplit(".", 1)[-1] if name else None
    return None


def is_function_arg(arg) -> bool:
    t = arg_type(arg)
    return t is not None and text(t).replace(" ", "").startswith(("typeof(", "Type{"))


def is_config(args: list) -> bool:
    """Whether an rrule's first argument is a RuleConfig (which gets no tangent)."""
    if not args:
        return False
    t = arg_type(args[0])
    if t is not None and "RuleConfig" in text(t):
        return True
    return len(args) >= 2 and not is_function_arg(args[0]) and is_function_arg(args[1])


def rule_function(call) -> tuple[str | None, list]:
    """For an `rrule`/`frule` signature: the differentiated function's name (from its
    `::typeof(f)` argument) and the argument nodes after it."""
    args, _ = arguments(call)
    for i, a in enumerate(args[:3]):
        t = arg_type(a)
        if t is not None and a.type in ("typed_expression", "unary_typed_expression"):
            name = typeof_target(t)
            if name:
                return name, args[i + 1:]
    return None, []


def body(definition) -> list:
    """Statements of a long-form function body, or [rhs] of a short-form definition."""
    if definition.type == "function_definition":
        return [c for c in named(definition) if c.type != "signature"]
    if definition.type == "assignment":
        kids = named(definition)
        rhs = [c for c in kids[1:] if c.type != "operator"]
        return rhs[-1:]
    if definition.type == "arrow_function_expression":
        return named(definition)[-1:]
    return []


def returned(definition) -> list:
    """Expressions a function may return: each `return x` and its last statement."""
    stmts = body(definition)
    out = []
    for stmt in stmts:
        for n in walk(stmt, stop=FUNCTION_NODES):
            if n.type in FUNCTION_NODES and n is not stmt:
                continue
            if n.type == "return_statement":
                kids = named(n)
                if kids:
                    out.append(kids[0])
    if stmts and stmts[-1].type != "return_statement":
        out.append(stmts[-1])
    return out


def tuple_items(node) -> list | None:
    """Elements of a tuple `(a, b)` / `a, b` (named tuples included), else None."""
    if node.type in ("tuple_expression", "open_tuple"):
        return named(node)
    if node.type == "parenthesized_expression":
        kids = named(node)
        if len(kids) == 1 and kids[0].type in ("tuple_expression", "open_tuple"):
            return named(kids[0])
    return None


def is_plain_tuple(node) -> bool:
    """`(a.W,)`, `(a.W, a.b)`, `a.W, a.b`: a Tuple, not a NamedTuple (`(; W = a.W)`,
    `(W = a.W,)`, `(; a.W)`)."""
    if node.type == "parenthesized_expression":
        kids = named(node)
        return len(kids) == 1 and is_plain_tuple(kids[0])
    if node.type not in ("tuple_expression", "open_tuple"):
        return False
    if any(c.type == ";" for c in node.children):
        return False
    items = named(node)
    return bool(items) and not any(c.type in ("named_field", "assignment", "named_argument")
                                   for c in items)


def macro_name(node) -> tuple[str | None, str | None]:
    """(qualifier, name) of a macro call: `Flux.@layer` -> ("Flux", "layer")."""
    qual = []
    for c in node.children:
        if c.type == "macro_identifier":
            kids = c.named_children
            name = text(kids[-1]) if kids else text(c).lstrip("@")
            return (".".join(qual) or None), name
        if c.type in ("identifier", "field_expression", "scoped_identifier"):
            qual.append(text(c))
    return None, None


def macro_args(node) -> list:
    args = next((c for c in node.children if c.type in ("macro_argument_list", "argument_list")),
                None)
    return named(args) if args is not None else []


def type_name(node) -> str | None:
    """`DenseFA{M}` / `DenseFA{M} <: AbstractLayer` / `DenseFA` -> "DenseFA"."""
    while node is not None:
        if node.type == "identifier":
            return text(node)
        if node.type in ("type_head", "binary_expression", "parametrized_type_expression",
                         "typed_expression"):
            kids = named(node)
            node = kids[0] if kids else None
            continue
        return None
    return None


def struct_name(struct) -> str | None:
    head = next((c for c in struct.children if c.type == "type_head"), None)
    return type_name(head)


def struct_fields(struct) -> list[str]:
    fields = []
    for c in named(struct):
        if c.type == "type_head":
            continue
        node = c
        if node.type == "const_statement":
            kids = named(node)
            node = kids[0] if kids else node
        if node.type == "assignment":  # @kwdef default, unless it defines a constructor
            if definition_call(node) is not None:
                continue
            node = named(node)[0]
        if node.type == "identifier":
            fields.append(text(node))
        elif node.type == "typed_expression":
            first = named(node)[0]
            if first.type == "identifier":
                fields.append(text(first))
    return fields


def module_name(module_node) -> str | None:
    name = module_node.child_by_field_name("name")
    if name is None:
        name = next((c for c in module_node.children if c.type == "identifier"), None)
    return text(name) if name is not None else None


def include_target(call, base: Path) -> Path | None | bool:
    """The file an `include("x.jl")` call names, resolved against `base`'s folder; False when
    the call is not an include; None when its path is not a plain string literal."""
    qual, name = callee(call)
    if name != "include" or qual not in (None, "Base"):
        return False
    args, _ = arguments(call)
    if len(args) != 1 or args[0].type != "string_literal":
        return None
    parts = args[0].named_children
    if any(p.type != "content" for p in parts):
        return None
    return (base.parent / "".join(text(p) for p in parts)).resolve()


def tuple_text(names) -> str:
    """("a",) -> "(a,)"; ("a", "b") -> "(a, b)"."""
    names = list(names)
    return "(" + ", ".join(names) + ("," if len(names) == 1 else "") + ")"
