"""PFA010: a ChainRules rule that Enzyme or Mooncake, listed in Project.toml, never imports."""

from __future__ import annotations

from pyfa.lint import syntax as S
from pyfa.lint.parsing import named, text
from pyfa.lint.rules.base import Invalid, Rule, Valid
from pyfa.lint.scopes import AD_BACKENDS

_PROJECT = """\
name = "FA"
uuid = "5a3e4b1c-7d2f-4e6a-9b8c-1d2e3f4a5b6c"
version = "0.1.0"

[deps]
ChainRulesCore = "d360d2e6-b24c-11e9-a2a3-2a2ae2dbcce4"

[weakdeps]
Enzyme = "7da242da-08ed-463a-9acd-ee780be4f1d9"
Mooncake = "da2b9cff-9c12-43a0-ae48-6db2b0edb7d6"

[extensions]
FAEnzymeExt = "Enzyme"
FAMooncakeExt = "Mooncake"
"""
_SRC = """\
module FA

using ChainRulesCore: ChainRulesCore, NoTangent

fa_matmul(W::AbstractMatrix, x::AbstractVecOrMat, B::AbstractMatrix) = W * x

function ChainRulesCore.rrule(::typeof(fa_matmul), W::AbstractMatrix, x::AbstractVecOrMat,
                              B::AbstractMatrix)
    fa_matmul_pullback(ȳ) = (NoTangent(), ȳ * x', B' * ȳ, NoTangent())
    return fa_matmul(W, x, B), fa_matmul_pullback
end

end
"""
_ENZYME_EXT = """\
module FAEnzymeExt

using Enzyme: Enzyme
using FA: fa_matmul

Enzyme.@import_rrule(typeof(fa_matmul), AbstractMatrix, AbstractVecOrMat, AbstractMatrix)

end
"""
_MOONCAKE_EXT = """\
module FAMooncakeExt

using Mooncake: Mooncake, @from_rrule, MinimalCtx
using FA: fa_matmul

for T in (Float32, Float64)
    @eval @from_rrule MinimalCtx Tuple{typeof(fa_matmul), Matrix{$T}, Matrix{$T}, Matrix{$T}}
end

end
"""
_EMPTY_EXT = "module {0}\n\nend\n"


def _package(**ext: str) -> dict:
    files = {"Project.toml": _PROJECT, "ext/FAEnzymeExt.jl": _EMPTY_EXT.format("FAEnzymeExt"),
             "ext/FAMooncakeExt.jl": _EMPTY_EXT.format("FAMooncakeExt")}
    files.update({f"ext/{name}.jl": body for name, body in ext.items()})
    return files


def _where_bounds(call) -> dict:
    """{type parameter: its upper bound's text, or "Any"} from the `where` clauses around a
    signature (`where {T<:Real, N}`)."""
    bounds = {}
    node = call.parent
    while node is not None and node.type in ("where_expression", "typed_expression", "signature"):
        if node.type == "where_expression":
            rhs = named(node)[-1]
            for p in named(rhs) if rhs.type == "curly_expression" else [rhs]:
                if p.type == "identifier":
                    bounds.setdefault(text(p), "Any")
                elif p.type == "binary_expression":
                    kids = [c for c in named(p) if c.type != "operator"]
                    ops = [c for c in p.children if c.type == "operator"]
                    if len(kids) == 2 and kids[0].type == "identifier" and ops \
                            and text(ops[0]) == "<:":
                        bounds[text(kids[0])] = " ".join(text(kids[1]).split())
        node = node.parent
    return bounds


class RuleNotImportedIntoAD(Rule):
    """Since Flux 0.16.8, ``Flux.gradient(f, AutoEnzyme(), m)`` (or ``Duplicated(m)``) and
    ``Flux.gradient(f, AutoMooncake(), m)`` differentiate with Enzyme or Mooncake. Neither reads
    ``ChainRulesCore.rrule`` methods: unless the package imports each rule, they differentiate
    the function's own code, and an FA layer silently trains with backprop (the forum bug by
    another road). Likewise ``@non_differentiable f(...)`` means nothing to them. Checked for
    package code (``src/``, ``ext/``) of a package whose Project.toml lists Enzyme or Mooncake in
    ``[deps]`` or ``[weakdeps]``; the imports are looked for in the package module's files and in
    the files of its ``[extensions]`` (an ``ext/`` file not listed there is never loaded):
    ``Enzyme.@import_rrule`` (or native ``EnzymeRules`` methods, ``EnzymeRules.inactive``),
    ``Mooncake.@from_rrule`` / ``@from_chainrules`` / ``@zero_derivative`` / ``@is_primitive``,
    qualified or imported by name. A rule counts as imported when one of these names its function
    (``typeof(f)``), whatever the argument types. Imported rules cover positional calls only, and
    Mooncake's import is tested mostly on Float64: test each backend's gradient too. The fix
    names ``Mooncake.MinimalCtx``, Mooncake's context for rules without which AD is wrong; every
    MinimalCtx rule also holds in ``DefaultCtx``, the context of Mooncake's default interpreter
    (and so of ``AutoMooncake()``), which Mooncake's own examples name and which works too."""

    CODE = "PFA010"
    SEVERITY = "warning"
    TITLE = "ChainRules rule not imported into Enzyme/Mooncake"
    MESSAGE = ("`ChainRulesCore.rrule` for `fa_matmul` is imported into neither Enzyme nor Mooncake "
               "(both in Project.toml): under `AutoEnzyme()`/`AutoMooncake()` they silently differentiate "
               "`fa_matmul` itself (backprop)")
    FIX = ("in a package extension listed under [extensions], add "
           "`Enzyme.@import_rrule(typeof(fa_matmul), ArgTypes...)` and "
           "`Mooncake.@from_rrule Mooncake.MinimalCtx Tuple{typeof(fa_matmul), ArgTypes...}`")
    VALID = (
        Valid(_SRC, path="src/FA.jl", files=_package(FAEnzymeExt=_ENZYME_EXT,
                                                     FAMooncakeExt=_MOONCAKE_EXT)),
        Valid(_SRC, path="src/FA.jl", files={"Project.toml": _PROJECT.split("[weakdeps]")[0]}),
    )
    INVALID = (
        Invalid(_SRC, path="src/FA.jl", files=_package()),
        Invalid(_SRC, path="src/FA.jl", files=_package(FAEnzymeExt=_ENZYME_EXT)),
        Invalid(_SRC.replace("end\n\nend", "end\n\nChainRulesCore.@non_differentiable "
                             "feedback(::Any)\n\nend"),
                path="src/FA.jl", files=_package(FAEnzymeExt=_ENZYME_EXT,
                                                 FAMooncakeExt=_MOONCAKE_EXT)),
    )

    def __init__(self, ctx):
        super().__init__(ctx)
        self.rules: dict[str, tuple] = {}   # function -> (node, argument types, zero derivative)

    def visit_definition(self, d) -> None:
        if d.name != "rrule" or d.call is None or d.local:
            return
        fname, rest = S.rule_function(d.call)
        if fname and fname not in self.rules:
            bounds = _where_bounds(d.call)
            self.rules[fname] = (d.node, [self._type(a, bounds) for a in rest], False)

    def visit_macrocall_expression(self, node) -> None:
        if self.ctx.quote_depth or self.ctx.local_depth:
            return
        name = S.macro_name(node)[1]
        if name not in ("non_differentiable", "scalar_rule"):
            return
        args = S.macro_args(node)
        if not args or args[0].type != "call_expression":
            return
        fname = S.callee(args[0])[1]
        if fname and fname not in self.rules:
            params, _ = S.arguments(args[0])
            self.rules[fname] = (node, [self._type(a, {}) for a in params],
                                 name == "non_differentiable")

    def _type(self, arg, bounds: dict) -> str:
        t = S.arg_type(arg.named_children[0] if arg.type == "splat_expression" else arg)
        ty = " ".join(self.ctx.file.text(t).split()) if t is not None else "Any"
        ty = bounds.get(ty, ty)
        if arg.type == "splat_expression" or text(arg).endswith("..."):
            return "Vararg" if ty == "Any" else f"Vararg{{{ty}}}"
        return ty

    def finish(self) -> None:
        if not self.rules or self.ctx.path is None:
            return
        pkg = self.ctx.package
        if pkg is None or not pkg.owns(self.ctx.path):
            return
        required = [b for b in AD_BACKENDS if b in pkg.deps | pkg.weakdeps]
        if not required:
            return
        coverage = {b: set(names) for b, names in self.ctx.project.ad_coverage(pkg).items()}
        for scope in self.ctx.model.scopes:
            for b, names in scope.ad_rules.items():
                coverage[b] |= names
        unlisted = None
        for fname, (node, types, zero) in self.rules.items():
            missing = [b for b in required if fname not in coverage[b]]
            if not missing:
                continue
            if unlisted is None:
                unlisted = self.ctx.project.unlisted_ad_coverage(pkg)
            forgotten = {b: ext for b in missing for ext, cov in unlisted.items() if fname in cov[b]}
            self._warn(node, fname, types, zero, required, missing, forgotten)

    def _warn(self, node, fname, types, zero, required, missing, forgotten) -> None:
        listed = " and ".join(required) + (" are" if len(required) > 1 else " is")
        covered = [b for b in required if b not in missing]
        if zero:
            subject, verb = f"`@non_differentiable {fname}`", "declared to"
            effect = f"gradients flow through `{fname}`"
        else:
            subject, verb = f"`ChainRulesCore.rrule` for `{fname}`", "imported into"
            effect = f"`{fname}` itself is differentiated: silently backprop, not the rule"
        if len(missing) == 2:
            what = f"{subject} is {verb} neither Enzyme nor Mooncake"
        elif covered:
            what = f"{subject} is {verb} {covered[0]} but not {missing[0]}"
        else:
            what = f"{subject} is not {verb} {missing[0]}"
        backends = " and ".join(f"`Flux.gradient(f, Auto{b}(), m)`" for b in missing)
        sig = ", ".join([f"typeof({fname})", *types])
        adds, listings = [], []
        for b in missing:
            if b in forgotten:
                listings.append(f"list `{forgotten[b]} = \"{b}\"` under [extensions] in Project.toml "
                                f"(ext/ has it, but Julia never loads an unlisted extension)")
            elif b == "Enzyme":
                adds.append(f"`EnzymeRules.inactive(::typeof({fname}), args...) = true`" if zero
                            else f"`Enzyme.@import_rrule({sig})`")
            else:
                macro = "@zero_derivative" if zero else "@from_rrule"
                adds.append(f"`Mooncake.{macro} Mooncake.MinimalCtx Tuple{{{sig}}}`"
                            + ("" if zero else " (one per concrete array type you support, e.g. "
                               "Matrix{Float32})"))
        fixes = listings
        if adds:
            fixes = [f"in a package extension listed under [extensions] (ext/), add "
                     f"{' and '.join(adds)}", *listings]
        self.report(node, f"{what} ({listed} in Project.toml): under {backends}, {effect}",
                    "; ".join(fixes))
