"""PFA008: `@layer T` where the module defines no struct `T`."""

from __future__ import annotations

from pyfa.lint.rules.base import Invalid, Rule, Valid


class LayerWithoutStruct(Rule):
    """``Flux.@layer DenseFb`` for a struct ``DenseFA`` (a typo) fails at load time with an
    ``UndefVarError``, or, if some other ``DenseFb`` exists, silently configures the wrong type
    while the real layer keeps every field trainable. The struct may be defined in another file
    of the same module."""

    CODE = "PFA008"
    TITLE = "@layer names no struct of this module"
    MESSAGE = "`@layer DenseFb`: module Layers defines no struct `DenseFb`"
    FIX = "define `struct DenseFb ... end` before `@layer`, or fix the name"
    VALID = (
        Valid("module Layers\nusing Flux\nstruct DenseFA{M<:AbstractMatrix}\n    weight::M\n"
              "    feedback::M\nend\nFlux.@layer DenseFA trainable=(weight,)\nend\n"),
    )
    INVALID = (
        Invalid("module Layers\nusing Flux\nstruct Dense2{M<:AbstractMatrix}\n    weight::M\n"
                "end\nFlux.@layer DenseFb trainable=(weight,)\nend\n"),
    )

    def finish(self) -> None:
        if not any(s.layers for s in self.ctx.model.scopes):
            return
        for where, facts in self.ctx.module_owners:
            if facts.opaque:
                continue
            for layer, f in facts.layers:
                tname = layer.type_name
                if f is self.ctx.file and tname is not None and tname not in facts.structs \
                        and tname not in facts.defined:
                    self.report(layer.node, f"`@layer {tname}`: {where} defines no struct `{tname}`",
                                f"define `struct {tname} ... end` before `@layer`, or fix the name")
