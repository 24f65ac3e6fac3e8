"""PFA004: `@functor` on a Flux layer (deprecated since Flux 0.15)."""

from __future__ import annotations

from pyfa.lint import syntax as S
from pyfa.lint.rules.base import Invalid, Rule, Valid


class FunctorMacro(Rule):
    """Flux 0.15 replaced ``@functor`` with ``Flux.@layer``, which also says which fields the
    optimiser may train (``trainable=(weight, bias)``). With ``@functor`` every array field is
    trainable, so an FA layer's ``feedback`` matrix would be trained too (see PFA009). Counted for
    ``Flux.@functor``, and for a bare or ``Functors.@functor`` in a file that loads Flux."""

    CODE = "PFA004"
    TITLE = "@functor is deprecated for Flux layers"
    MESSAGE = "`@functor Affine` is deprecated for Flux layers (Flux 0.15+)"
    FIX = "use `Flux.@layer Affine trainable=(weight, bias)` (list the fields the optimiser may change)"
    VALID = (
        Valid("using Flux\nstruct Affine\n    weight\n    bias\nend\n"
              "Flux.@layer Affine trainable=(weight, bias)\n"),
    )
    INVALID = (
        Invalid("using Flux, Functors\nstruct Affine\n    weight\n    bias\nend\n@functor Affine\n"),
        Invalid("using Flux\nstruct Affine\n    weight\n    bias\nend\nFlux.@functor Affine\n"),
    )

    def visit_macrocall_expression(self, node) -> None:
        if self.ctx.quote_depth:
            return
        qual, name = S.macro_name(node)
        if name != "functor":
            return
        if qual == "Flux" or (qual in (None, "Functors") and "Flux" in self.ctx.loaded):
            args = S.macro_args(node)
            target = self.ctx.text(args[0]) if args else "T"
            self.report(node, f"`@functor {target}` is deprecated for Flux layers (Flux 0.15+)",
                        f"use `Flux.@layer {target} trainable=(weight, bias)` (list the fields the "
                        f"optimiser may change)")
