"""PFA011: a hand-written `trainable` method that returns a Tuple instead of a NamedTuple."""

from __future__ import annotations

from pyfa.lint import syntax as S
from pyfa.lint.parsing import named, text
from pyfa.lint.rules.base import Invalid, Rule, Valid

_LAYER = "using Flux\nstruct DenseFA{M<:AbstractMatrix}\n    weight::M\n    feedback::M\nend\n"


class TupleTrainable(Rule):
    """Optimisers 0.4 (under ``Flux.setup``/``Flux.update!``) expects ``trainable(x)`` to return
    a NamedTuple of fields. Given the old Flux-style Tuple ``(a.weight,)``, its
    ``_trainable(ch::NamedTuple, tr::Tuple)`` warns "trainable(x) should now return a NamedTuple
    with the field names, not a Tuple" (three times only) and keeps each field ``c`` for which
    ``c in tr`` holds, i.e. that is ``==`` to an element by value, not by identity: a
    ``feedback`` matrix equal to ``weight`` (say, initialised as a copy of it) or a zero bias
    equal to another zero array is then trained too, silently."""

    CODE = "PFA011"
    SEVERITY = "warning"
    TITLE = "trainable returns a Tuple, not a NamedTuple"
    MESSAGE = ("`Flux.trainable(::DenseFA)` returns a Tuple: Optimisers 0.4 warns and trains every "
               "field that is `==` to one of its elements (by value: a `feedback` equal to `weight` is "
               "trained too)")
    FIX = ("write `Flux.@layer DenseFA trainable=(weight,)` instead of this method, or return a "
           "NamedTuple: `(; weight = a.weight)`")
    VALID = (
        Valid(_LAYER + "Flux.@layer DenseFA trainable=(weight,)\n"),
        Valid(_LAYER + "Flux.trainable(a::DenseFA) = (; weight = a.weight)\n"),
    )
    INVALID = (
        Invalid(_LAYER + "Flux.trainable(a::DenseFA) = (a.weight,)\n"),
        Invalid(_LAYER + "function Flux.trainable(a::DenseFA)\n    return a.weight, a.feedback\nend\n"),
    )

    def visit_definition(self, d) -> None:
        if d.name != "trainable" or d.call is None or d.local:
            return
        args, _ = S.arguments(d.call)
        if len(args) != 1:
            return
        self_name = S.arg_name(args[0])
        ty = S.arg_type(args[0])
        tname = (S.type_name(ty) if ty is not None else None) or "T"
        for ret in S.returned(d.node):
            if not S.is_plain_tuple(ret):
                continue
            items = S.tuple_items(ret) or named(ret)
            fields = []
            for item in items:
                kids = named(item)
                if item.type == "field_expression" and len(kids) == 2 and \
                        (self_name is None or text(kids[0]) == self_name):
                    fields.append(text(kids[1]))
                else:
                    fields.append(self.ctx.text(item))
            owner = self_name or "x"
            named_tuple = "(; " + ", ".join(f"{f} = {owner}.{f}" for f in fields) + ")"
            self.report(ret,
                        f"`{S.callee(d.call)[0] + '.' if S.callee(d.call)[0] else ''}trainable"
                        f"(::{tname})` returns a Tuple: Optimisers 0.4 warns and trains every "
                        f"field that is `==` to one of its elements (by value: a `feedback` equal "
                        f"to `weight` is trained too)",
                        f"write `Flux.@layer {tname} trainable={S.tuple_text(fields)}` instead of "
                        f"this method, or return a NamedTuple: `{named_tuple}`")
            return
