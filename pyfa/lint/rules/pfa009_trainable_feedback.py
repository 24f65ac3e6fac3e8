"""PFA009: a `feedback` field that `trainable` does not keep out (or keeps in whatever the mode)."""

from __future__ import annotations

from pyfa.lint import syntax as S
from pyfa.lint.parsing import COMMENTS, named, text, walk
from pyfa.lint.rules.base import Invalid, Rule, Valid

_LAYER = "using Flux\nstruct DenseFA{M<:AbstractMatrix}\n    weight::M\n    feedback::M\nend\n"
_MODE_LAYER = ("using Flux\nstruct DenseFA{M<:AbstractMatrix, B}\n    weight::M\n    feedback::M\n"
               "    bias::B\n    mode::Symbol\nend\n")
#: Array types a field may be declared with (or a type parameter bounded by) to count as an array.
_ARRAY_TYPES = ("AbstractArray", "AbstractMatrix", "AbstractVector", "AbstractVecOrMat", "DenseArray",
                "DenseMatrix", "DenseVector", "StridedArray", "StridedMatrix", "StridedVector",
                "Array", "Matrix", "Vector", "VecOrMat", "CuArray", "CuMatrix", "CuVector")


class TrainableFeedback(Rule):
    """By default every array field of a Flux layer is trainable: ``Flux.setup`` gives the
    ``feedback`` matrix optimiser state, and whatever gradient reaches it moves it (a tied or
    hand-written gradient; an AD backend that ignores the rule, PFA010, gives it a zero gradient
    that weight decay such as ``AdamW`` then applies). The feedback stops being fixed and FA
    quietly becomes something else. Keep it out with ``Flux.@layer T trainable=(weight, bias)``
    (the fields to train: the weight and bias, never ``σ``, ``stride`` or ``mode``) or a
    ``trainable`` method; the ``@layer`` may be in another file of the module. A hand-written
    ``trainable`` method is read too: a NamedTuple it returns may hold ``feedback`` only under a
    condition on the layer's mode, as for Kolen-Pollack (``a.mode === :kp && return (; weight =
    a.weight, bias = a.bias, feedback = a.feedback)``, or ``a.mode === :kp ? (; a.weight, a.bias,
    a.feedback) : (; a.weight, a.bias)``); one that returns it whatever the mode trains it always.
    (A method returning a plain Tuple is PFA011's finding; what it returns by other means is not
    judged.)"""

    CODE = "PFA009"
    SEVERITY = "warning"
    TITLE = "feedback field may be trained"
    MESSAGE = ("struct `DenseFA` has a `feedback` field but no `@layer DenseFA trainable=(...)` or "
               "`trainable` method leaves it out: Flux.setup would train the feedback matrix")
    FIX = "add `Flux.@layer DenseFA trainable=(weight,)`"
    VALID = (
        Valid(_LAYER + "Flux.@layer DenseFA trainable=(weight,)\n"),
        Valid(_MODE_LAYER + "Flux.trainable(a::DenseFA) = (; weight = a.weight, bias = a.bias)\n"),
        Valid(_MODE_LAYER + "function Flux.trainable(a::DenseFA)\n"
              "    a.mode === :kp && return (; weight = a.weight, bias = a.bias, feedback = a.feedback)\n"
              "    return (; weight = a.weight, bias = a.bias)\nend\n"),
        Valid(_MODE_LAYER + "Flux.trainable(a::DenseFA) =\n"
              "    a.mode === :kp ? (; a.weight, a.bias, a.feedback) : (; a.weight, a.bias)\n"),
        Valid(_MODE_LAYER + "function Flux.trainable(a::DenseFA)\n    if a.mode == :kp\n"
              "        (weight = a.weight, bias = a.bias, feedback = a.feedback)\n    else\n"
              "        (weight = a.weight, bias = a.bias)\n    end\nend\n"),
    )
    INVALID = (
        Invalid("using Flux\nstruct DenseFA{M<:AbstractMatrix}\n    weight::M\n    feedback::M\nend\n"
                "(a::DenseFA)(x) = a.weight * x\n"),
        Invalid("using Flux\nstruct DenseFA{M<:AbstractMatrix}\n    weight::M\n    feedback::M\nend\n"
                "Flux.@layer DenseFA trainable=(weight, feedback)\n"),
        Invalid(_MODE_LAYER + "Flux.trainable(a::DenseFA) = (; weight = a.weight, feedback = a.feedback)\n"),
        Invalid(_MODE_LAYER + "function Flux.trainable(a::DenseFA)\n"
                "    return (; a.weight, a.bias, a.feedback)\nend\n"),
        Invalid(_MODE_LAYER + "function Flux.trainable(a::DenseFA)\n"
                "    a.bias === false && return (; weight = a.weight, feedback = a.feedback)\n"
                "    return (; weight = a.weight, bias = a.bias)\nend\n"),
        Invalid("using Flux\nstruct ConvFA{N, A<:AbstractArray, F}\n    weight::A\n    feedback::A\n"
                "    scale::Vector{Float32}\n    σ::F\n    stride::NTuple{N, Int}\nend\n"
                "(c::ConvFA)(x) = c.σ.(c.weight .* x .* c.scale)\n"),
    )

    def visit_definition(self, d) -> None:
        """A `trainable(::T)` method returning a NamedTuple with `feedback` outside any mode
        condition."""
        if d.name != "trainable" or d.call is None or d.local:
            return
        args, _ = S.arguments(d.call)
        if len(args) != 1:
            return
        self_name = S.arg_name(args[0]) or "a"
        ty = S.arg_type(args[0])
        tname = (S.type_name(ty) if ty is not None else None) or "T"
        for ret in S.returned(d.node):
            for value in _values(ret):
                keys = _namedtuple_keys(value)
                if keys is None or "feedback" not in keys or _guarded_by_mode(value, d.node):
                    continue
                rest = [k for k in keys if k != "feedback"]
                kept = "(; " + ", ".join(f"{k} = {self_name}.{k}" for k in rest) + ")"
                qual = f"{d.qualifier}." if d.qualifier else ""
                self.report(value,
                            f"`{qual}trainable(::{tname})` returns `feedback` whatever the mode: "
                            f"Flux.setup would train the feedback matrix",
                            f"return `{kept}`, or `feedback` only under a mode condition "
                            f"(`{self_name}.mode === :kp ? (; ..., feedback = {self_name}.feedback)"
                            f" : {kept}`)")
                return

    def finish(self) -> None:
        if not any("feedback" in fields for s in self.ctx.model.scopes
                   for fields, _ in s.structs.values()):
            return
        for _where, facts in self.ctx.module_owners:
            if facts.opaque:
                continue
            keeps_out = {layer.type_name for layer, _ in facts.layers
                         if layer.trainable is not None
                         and "feedback" not in [x for x, _ in layer.trainable]}
            for sname, (fields, node, f) in facts.structs.items():
                if f is not self.ctx.file or "feedback" not in fields:
                    continue
                if sname in keeps_out or sname in facts.trainable_methods:
                    continue  # a trainable method is judged where it is (visit_definition)
                train = _fields_to_train(node, fields)
                fix = (f"add `Flux.@layer {sname} trainable={S.tuple_text(train)}`" if train else
                       f"add `Flux.@layer {sname} trainable=(...)` naming the array fields to "
                       f"train (not `feedback`)")
                self.report(node,
                            f"struct `{sname}` has a `feedback` field but no `@layer {sname} "
                            f"trainable=(...)` or `trainable` method leaves it out: Flux.setup "
                            f"would train the feedback matrix", fix)


def _kids(node) -> list:
    return [c for c in named(node) if c.type not in COMMENTS]


def _values(node):
    """The expressions `node` may evaluate to: both branches of `c ? a : b`, the last statement
    of each branch of an `if`, the inside of parentheses and of `begin ... end`."""
    t = node.type
    kids = _kids(node)
    if t == "ternary_expression" and len(kids) == 3:
        yield from _values(kids[1])
        yield from _values(kids[2])
    elif t == "if_statement" and kids:
        body = [k for k in kids[1:] if k.type not in ("elseif_clause", "else_clause")]
        branches = [body] + [_kids(k)[1:] if k.type == "elseif_clause" else _kids(k)
                             for k in kids[1:] if k.type in ("elseif_clause", "else_clause")]
        for branch in branches:
            if branch:
                yield from _values(branch[-1])
    elif t == "parenthesized_expression" and len(kids) == 1 and S.tuple_items(node) is None:
        yield from _values(kids[0])
    elif t == "compound_statement" and kids:
        yield from _values(kids[-1])
    else:
        yield node


def _namedtuple_keys(node) -> list[str] | None:
    """The keys of a NamedTuple literal — `(; k = v)`, `(k = v,)`, `(; a.k)`, `(; k)` — else
    None (a plain Tuple, PFA011's business, or anything else)."""
    items = S.tuple_items(node)
    if items is None or S.is_plain_tuple(node):
        return None
    semicolon = any(c.type == ";" for c in node.children) or any(
        c.type == ";" for k in named(node) if k.type == "tuple_expression" for c in k.children)
    keys = []
    for item in items:
        if item.type in COMMENTS:
            continue
        kids = _kids(item)
        if item.type in ("named_field", "assignment", "named_argument") and kids:
            keys.append(text(kids[0]))
        elif item.type == "field_expression" and kids and kids[-1].type == "identifier":
            keys.append(text(kids[-1]))
        elif item.type == "identifier" and semicolon:
            keys.append(text(item))
        else:
            return None
    return keys


def _operator(node) -> str | None:
    return next((text(c) for c in node.children if c.type == "operator"), None)


def _mentions_mode(node) -> bool:
    """Whether a condition reads the layer's mode: a name `mode` (`a.mode`, `mode(a)`) or `:kp`."""
    return any((n.type == "identifier" and text(n) == "mode")
               or (n.type == "quote_expression" and text(n) == ":kp") for n in walk(node))


def _guarded_by_mode(node, top) -> bool:
    """Whether `node` is evaluated only under a condition on the mode: the right of `c && x` or
    `c || x`, a branch of `c ? x : y` or of an `if c` (its `elseif`s and `else`), with `c`
    reading the mode, anywhere between `node` and the method `top`."""
    child, parent = node, node.parent
    while parent is not None and parent.id != top.id:
        kids = _kids(parent)
        if parent.type == "binary_expression" and _operator(parent) in ("&&", "||"):
            if kids and kids[-1].id == child.id and _mentions_mode(kids[0]):
                return True
        elif parent.type in ("ternary_expression", "if_statement", "elseif_clause"):
            if kids and kids[0].id != child.id and _mentions_mode(kids[0]):
                return True
        child, parent = parent, parent.parent
    return False


def _fields_to_train(struct, fields: list[str]) -> list[str]:
    """What `trainable=(...)` should list: `weight` and `bias` where the struct has them, else its
    array-typed fields (declared so, or with a type parameter bounded so) but `feedback`."""
    preferred = [f for f in fields if f in ("weight", "bias")]
    if preferred:
        return preferred
    bounds = _type_parameter_bounds(struct)
    out = []
    for c in _kids(struct):
        if c.type != "typed_expression":
            continue
        kids = _kids(c)
        if len(kids) != 2 or kids[0].type != "identifier" or text(kids[0]) == "feedback":
            continue
        head = S.type_name(kids[1])
        if head in _ARRAY_TYPES or bounds.get(head) in _ARRAY_TYPES:
            out.append(text(kids[0]))
    return out


def _type_parameter_bounds(struct) -> dict[str, str]:
    """`{M<:AbstractMatrix, B}` of a struct's head -> {"M": "AbstractMatrix"}."""
    head = next((c for c in struct.children if c.type == "type_head"), None)
    out = {}
    for n in walk(head) if head is not None else ():
        if n.type == "binary_expression" and _operator(n) == "<:":
            kids = [k for k in _kids(n) if k.type != "operator"]
            if len(kids) == 2 and kids[0].type == "identifier":
                out[text(kids[0])] = S.type_name(kids[1]) or ""
    return out
