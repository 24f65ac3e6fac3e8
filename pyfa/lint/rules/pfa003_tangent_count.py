"""PFA003: a pullback returns a different number of tangents than the rrule has arguments."""

from __future__ import annotations

from pyfa.lint import syntax as S
from pyfa.lint.parsing import named, text, walk
from pyfa.lint.rules.base import Invalid, Rule, Valid

_FUNCTIONS = ("arrow_function_expression", "function_expression", "function_definition")


def _resolve_function(rule, expr):
    """(name, node) of the function `expr` names inside `rule` (or `expr` if it is one)."""
    if expr.type in _FUNCTIONS:
        return "<anonymous>", expr
    if expr.type != "identifier":
        return None
    name = text(expr)
    found = None
    for stmt in S.body(rule):
        for n in walk(stmt):
            call = S.definition_call(n)
            if call is not None and S.callee(call) == (None, name):
                found = n
            elif n.type == "assignment":
                kids = named(n)
                if (len(kids) >= 2 and kids[0].type == "identifier" and text(kids[0]) == name
                        and kids[-1].type in _FUNCTIONS):
                    found = kids[-1]
    return (name, found) if found is not None else None


def _tuple_or_binding(fn, expr):
    """(node, elements) of a returned tuple, or of the tuple last bound to a returned name."""
    items = S.tuple_items(expr)
    if items is not None:
        return expr, items
    if expr.type == "identifier":
        name = text(expr)
        last = None
        for stmt in S.body(fn):
            for n in walk(stmt, stop=S.FUNCTION_NODES):
                if n.type == "assignment":
                    kids = named(n)
                    if len(kids) >= 2 and kids[0].type == "identifier" and text(kids[0]) == name:
                        last = kids[-1]
        if last is not None and S.tuple_items(last) is not None:
            return last, S.tuple_items(last)
    return None


class TangentCount(Rule):
    """ChainRulesCore wants one tangent per argument of the rule, the function itself first
    (``NoTangent()`` for it; a ``RuleConfig`` argument gets none). A pullback returning one too
    few or too many shifts every tangent onto the wrong argument or fails inside Zygote with an
    error far from the rule. Checked where the count is certain: positional arguments without
    splats or defaults, pullbacks defined in the rule, tuples written out."""

    CODE = "PFA003"
    TITLE = "pullback tangent count differs from the rrule's arguments"
    MESSAGE = ("pullback `fa_pullback` returns 3 tangents but `rrule(::typeof(fa), W, x, B)` takes 4 "
               "arguments counting the function")
    FIX = "return one tangent per argument, function first: (NoTangent(), ∂W, ∂x, ∂B)"
    VALID = (
        Valid("using ChainRulesCore\nscale(a, x) = a .* x\n"
              "ChainRulesCore.rrule(::typeof(scale), a::Real, x::AbstractArray) =\n"
              "    scale(a, x), ȳ -> (NoTangent(), sum(unthunk(ȳ) .* x), a .* unthunk(ȳ))\n"),
    )
    INVALID = (
        Invalid("using ChainRulesCore\nscale(a, x) = a .* x\n"
                "ChainRulesCore.rrule(::typeof(scale), a::Real, x::AbstractArray) =\n"
                "    scale(a, x), ȳ -> (NoTangent(), sum(unthunk(ȳ) .* x))\n"),
        Invalid("using ChainRulesCore\nfa(W, x, B) = W * x\n"
                "function ChainRulesCore.rrule(::typeof(fa), W::AbstractMatrix, x::AbstractVecOrMat,\n"
                "                              B::AbstractMatrix)\n"
                "    function fa_pullback(ȳ)\n        δ = unthunk(ȳ)\n"
                "        return NoTangent(), δ * x', B' * δ\n    end\n"
                "    return fa(W, x, B), fa_pullback\nend\n"),
    )

    def visit_definition(self, d) -> None:
        if d.name != "rrule" or d.call is None:
            return
        args, exact = S.arguments(d.call)
        if not exact or not args:
            return
        if S.is_config(args):
            args = args[1:]  # rrule(config, f, args...): no tangent for the config
        expected = len(args)
        pullbacks = []
        for ret in S.returned(d.node):
            items = S.tuple_items(ret)
            if items and len(items) == 2:
                pb = _resolve_function(d.node, items[1])
                if pb is not None:
                    pullbacks.append(pb)
        seen = set()
        for pb_name, pb in pullbacks:
            if pb.id in seen:
                continue
            seen.add(pb.id)
            for ret in S.returned(pb):
                found = _tuple_or_binding(pb, ret)
                if found is None:
                    continue
                tup, elems = found
                if any(e.type == "splat_expression" or text(e).endswith("...") for e in elems):
                    continue
                if len(elems) != expected:
                    names = ["NoTangent()"] + ["∂" + (S.arg_name(a) or f"arg{i}")
                                               for i, a in enumerate(args) if i]
                    self.report(tup,
                                f"pullback `{pb_name}` returns {len(elems)} tangents but "
                                f"`{self.ctx.text(d.call)}` takes {expected} arguments counting "
                                f"the function: expected {expected}, found {len(elems)}",
                                f"return one tangent per argument, function first: "
                                f"({', '.join(names)})")
