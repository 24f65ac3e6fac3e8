"""PFA006: implicit-parameter training (`Flux.params`, `gradient(() -> ..., ps)`)."""

from __future__ import annotations

from pyfa.lint import syntax as S
from pyfa.lint.parsing import named
from pyfa.lint.rules.base import Invalid, Rule, Valid

_EXPLICIT = ("train explicitly: `opt = Flux.setup(rule, model)`; "
             "`grads = Flux.gradient(m -> loss(m, x, y), model)`; "
             "`Flux.update!(opt, model, grads[1])`")


def _zero_argument_closure(call) -> bool:
    """`gradient(() -> ..., ps)`, `gradient(function () ... end, ps)`, `gradient(ps) do ... end`."""
    do = next((c for c in call.children if c.type == "do_clause"), None)
    if do is not None:
        params = next((c for c in do.children if c.type == "argument_list"), None)
        return params is None or not named(params)
    args, _ = S.arguments(call)
    if not args:
        return False
    head = None
    if args[0].type == "arrow_function_expression":
        head = args[0].named_children[0] if args[0].named_children else None
    elif args[0].type in ("function_definition", "function_expression"):
        sig = next((c for c in args[0].children if c.type == "signature"), None)
        kids = named(sig) if sig is not None else []
        head = kids[0] if len(kids) == 1 else None
    return head is not None and head.type == "argument_list" and not named(head)


class ImplicitParams(Rule):
    """Flux 0.15 made training explicit: ``Flux.setup`` + ``Flux.gradient(m -> loss(m), model)``
    + ``Flux.update!``. The implicit style (``ps = Flux.params(model)``, then
    ``gradient(() -> loss(), ps)``) still runs in Flux 0.16, with deprecation warnings, only with
    the old ``Flux.Optimise`` rules and only through Zygote (Flux's Enzyme and Mooncake paths are
    explicit), so an FA layer trained this way cannot be checked under the other AD backends.
    Use it only to reproduce old code, as the forum post does."""

    CODE = "PFA006"
    SEVERITY = "warning"
    TITLE = "implicit-parameter training (deprecated)"
    MESSAGE = ("implicit parameters (`Flux.params`, `gradient(() -> loss(), ps)`) are deprecated "
               "since Flux 0.15")
    FIX = _EXPLICIT
    VALID = (
        Valid("using Flux\nmodel = Dense(4 => 1)\nx, y = rand(Float32, 4, 8), rand(Float32, 1, 8)\n"
              "opt = Flux.setup(Adam(1e-3), model)\n"
              "loss, grads = Flux.withgradient(m -> Flux.mse(m(x), y), model)\n"
              "Flux.update!(opt, model, grads[1])\n"),
    )
    INVALID = (
        Invalid("using Flux\nmodel = Dense(4 => 1)\nps = Flux.params(model)\n"),
        Invalid("using Flux\nmodel = Dense(4 => 1)\nx, y = rand(Float32, 4, 8), rand(Float32, 1, 8)\n"
                "gs = gradient(() -> Flux.mse(model(x), y), ps)\n"),
        Invalid("using Flux\nmodel = Dense(4 => 1)\nx, y = rand(Float32, 4, 8), rand(Float32, 1, 8)\n"
                "gs = gradient(ps) do\n    Flux.mse(model(x), y)\nend\n"),
    )

    def visit_call_expression(self, node) -> None:
        qual, name = S.callee(node)
        if name == "params" and (qual in ("Flux", "Zygote")
                                 or (qual is None and self.ctx.loaded & {"Flux", "Zygote"})):
            self.report(node, "implicit parameters (`params`) are deprecated since Flux 0.15",
                        _EXPLICIT)
        elif name in ("gradient", "withgradient") and qual in (None, "Flux", "Zygote") \
                and _zero_argument_closure(node):
            self.report(node,
                        f"`{name}` of a zero-argument closure over implicit parameters is "
                        f"deprecated since Flux 0.15",
                        f"differentiate with respect to the model: "
                        f"`Flux.{name}(m -> loss(m, x, y), model)`")
