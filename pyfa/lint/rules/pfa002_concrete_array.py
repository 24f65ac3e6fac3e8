"""PFA002: an `rrule` argument typed with a concrete array type (`Matrix`, `Vector`, ...)."""

from __future__ import annotations

from pyfa.lint import syntax as S
from pyfa.lint.parsing import named, text, walk
from pyfa.lint.rules.base import Invalid, Rule, Valid

ABSTRACT = {"Matrix": "AbstractMatrix", "Vector": "AbstractVector", "Array": "AbstractArray",
            "VecOrMat": "AbstractVecOrMat"}


def _concrete_array(t) -> str | None:
    """The concrete array type a type annotation names (`Matrix{Float32}`, `Base.Vector`,
    `Union{Matrix, Nothing}`), else None."""
    head = t
    if head.type == "parametrized_type_expression":
        head = head.child(0)
    if head.type == "field_expression":
        head = named(head)[-1]
    if head.type == "identifier" and text(head) in ABSTRACT:
        return text(head)
    if t.type == "curly_expression" or (t.type == "parametrized_type_expression"
                                        and text(t.child(0)) == "Union"):
        for k in walk(t):
            if k.type == "identifier" and text(k) in ABSTRACT:
                return text(k)
    return None


class ConcreteArrayInRule(Rule):
    """Zygote looks for an ``rrule`` method matching the runtime argument types. A ``CuArray``
    (on the GPU) or a juliacall ``PyArray`` (an array passed from Python) is not a ``Matrix``, so
    an ``rrule(::typeof(f), W::Matrix, ...)`` does not match it and Zygote differentiates ``f``'s
    body instead: plain backprop for exactly the arrays FA is meant for, without an error.
    Type parameters bounded by a concrete type (``where {M<:Matrix}``) count too."""

    CODE = "PFA002"
    TITLE = "rrule argument typed with a concrete array type"
    MESSAGE = ("rrule argument `W::Matrix{Float32}` is typed `Matrix`: a CuArray or a juliacall PyArray "
               "does not match it, so Zygote silently differentiates the function body (backprop)")
    FIX = "use `AbstractMatrix` in place of `Matrix` (`AbstractVector`, `AbstractArray`, `AbstractVecOrMat`)"
    VALID = (
        Valid("using ChainRulesCore\nfa(W, x, B) = W * x\n"
              "function ChainRulesCore.rrule(::typeof(fa), W::AbstractMatrix, x::AbstractVecOrMat,\n"
              "                              B::AbstractMatrix)\n"
              "    fa_pullback(ȳ) = (NoTangent(), ȳ * x', B' * ȳ, NoTangent())\n"
              "    return fa(W, x, B), fa_pullback\nend\n"),
    )
    INVALID = (
        Invalid("using ChainRulesCore\nfa(W, x, B) = W * x\n"
                "function ChainRulesCore.rrule(::typeof(fa), W::Matrix{Float32}, x::AbstractVecOrMat,\n"
                "                              B::AbstractMatrix)\n"
                "    fa_pullback(ȳ) = (NoTangent(), ȳ * x', B' * ȳ, NoTangent())\n"
                "    return fa(W, x, B), fa_pullback\nend\n"),
        Invalid("using ChainRulesCore\nfa(W, x, B) = W * x\n"
                "function ChainRulesCore.rrule(::typeof(fa), W::AbstractMatrix, x::M,\n"
                "                              B::AbstractMatrix) where {M<:VecOrMat}\n"
                "    fa_pullback(ȳ) = (NoTangent(), ȳ * x', B' * ȳ, NoTangent())\n"
                "    return fa(W, x, B), fa_pullback\nend\n"),
    )

    def visit_definition(self, d) -> None:
        if d.name != "rrule" or d.call is None:
            return
        bounds = {}
        sig_root = d.call.parent
        while sig_root is not None and sig_root.type in ("where_expression", "typed_expression",
                                                          "signature"):
            if sig_root.type == "where_expression":
                for b in walk(named(sig_root)[-1]):
                    if b.type == "binary_expression":
                        kids = [c for c in named(b) if c.type != "operator"]
                        ops = [c for c in b.children if c.type == "operator"]
                        if len(kids) == 2 and ops and text(ops[0]) == "<:":
                            bounds[text(kids[0])] = kids[1]
            sig_root = sig_root.parent
        args, _ = S.arguments(d.call)
        for arg in args:
            t = S.arg_type(arg)
            if t is None:
                continue
            via = ""
            if t.type == "identifier" and text(t) in bounds:
                via = f" (`{text(t)}<:{self.ctx.text(bounds[text(t)])}`)"
                t = bounds[text(t)]
            bad = _concrete_array(t)
            if bad:
                self.report(arg,
                            f"rrule argument `{self.ctx.text(arg)}`{via} is typed `{bad}`: a CuArray "
                            f"or a juliacall PyArray does not match it, so Zygote silently "
                            f"differentiates the function body instead (backprop)",
                            f"use `{ABSTRACT[bad]}` in place of `{bad}`")
