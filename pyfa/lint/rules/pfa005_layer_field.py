"""PFA005: `@layer T trainable=(...)` names a field `T` does not have."""

from __future__ import annotations

from pyfa.lint.rules.base import Invalid, Rule, Valid
from pyfa.lint.syntax import tuple_text


class LayerTrainableField(Rule):
    """``Flux.@layer T trainable=(weight, bais)`` makes ``Flux.trainable(::T)`` return the named
    fields; a name that is not a field fails only when the optimiser is set up, far from the
    typo, and a field left out of the list is silently frozen. The struct may be defined in
    another file of the same module (``include``)."""

    CODE = "PFA005"
    TITLE = "@layer trainable names a missing field"
    MESSAGE = ("`@layer DenseFA trainable=(...)` names `scale`, which is not a field of `DenseFA`")
    FIX = "use field names only: trainable=(weight, bias)"
    VALID = (
        Valid("using Flux\nstruct DenseFA{M<:AbstractMatrix,B}\n    weight::M\n    feedback::M\n"
              "    bias::B\nend\nFlux.@layer DenseFA trainable=(weight, bias)\n"),
    )
    INVALID = (
        Invalid("using Flux\nstruct DenseFA{M<:AbstractMatrix,B}\n    weight::M\n    feedback::M\n"
                "    bias::B\nend\nFlux.@layer DenseFA trainable=(weight, bias, scale)\n"),
    )

    def finish(self) -> None:
        if not any(s.layers for s in self.ctx.model.scopes):
            return
        for _label, facts in self.ctx.module_owners:
            if facts.opaque:
                continue
            for layer, f in facts.layers:
                if f is not self.ctx.file or layer.type_name not in facts.structs:
                    continue
                tname = layer.type_name
                fields = facts.structs[tname][0]
                for item, node in layer.trainable or []:
                    if item not in fields:
                        self.report(node,
                                    f"`@layer {tname} trainable=(...)` names `{item}`, which is "
                                    f"not a field of `{tname}` (fields: {', '.join(fields) or 'none'})",
                                    f"use field names only: trainable="
                                    f"{tuple_text(x for x in fields if x != 'feedback')}")
