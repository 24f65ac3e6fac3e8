"""PFA001: a bare `rrule`/`frule` method that does not extend ChainRulesCore's (the forum bug)."""

from __future__ import annotations

import re

from pyfa.lint.rules.base import Invalid, Rule, Valid

CRC = "ChainRulesCore"
RULE_NAMES = ("rrule", "frule")


class BareRuleDefinition(Rule):
    """After ``using ChainRulesCore``, ``function rrule(::typeof(f), ...)`` defines a new function
    ``rrule`` in your module instead of adding a method to ``ChainRulesCore.rrule``. Zygote only
    calls the latter, so it never sees the rule and silently differentiates ``f``'s body: plain
    backprop, no error (the bug of the forum post this project reproduces; Julia refuses it only
    if ``rrule`` was already used at top level before). After ``using ChainRulesCore: rrule`` the
    file does not even load ("must be explicitly imported to be extended"). The imports of the
    file that ``include``s this one count; a module named ChainRulesCore and local closures named
    ``rrule`` are left alone."""

    CODE = "PFA001"
    TITLE = "bare rrule/frule does not extend ChainRulesCore"
    MESSAGE = ("bare `rrule` defines a new function `rrule` in your module, not a method of "
               "`ChainRulesCore.rrule`: Zygote never sees it and silently computes plain backprop")
    FIX = "write `function ChainRulesCore.rrule(...)` (or add `import ChainRulesCore: rrule` before it)"
    VALID = (
        Valid("using ChainRulesCore\ndouble(x) = 2x\n"
              "ChainRulesCore.rrule(::typeof(double), x) = double(x), ȳ -> (NoTangent(), 2ȳ)\n"),
        Valid("import ChainRulesCore: rrule\nusing ChainRulesCore: NoTangent\ndouble(x) = 2x\n"
              "rrule(::typeof(double), x) = double(x), ȳ -> (NoTangent(), 2ȳ)\n"),
    )
    INVALID = (
        Invalid("using ChainRulesCore\ndouble(x) = 2x\n"
                "rrule(::typeof(double), x) = double(x), ȳ -> (NoTangent(), 2ȳ)\n"),
        Invalid("using ChainRulesCore: rrule, NoTangent\ndouble(x) = 2x\n"
                "rrule(::typeof(double), x) = double(x), ȳ -> (NoTangent(), 2ȳ)\n"),
    )

    def __init__(self, ctx):
        super().__init__(ctx)
        self._crc: dict = {}   # scope node id -> its ChainRulesCore imports (few: kept apart)

    def visit_definition(self, d) -> None:
        if d.name not in RULE_NAMES or d.qualifier is not None or d.local:
            return
        ctx = self.ctx
        if CRC in ctx.module_names(d.scope):
            return  # ChainRulesCore's own generic function
        key = d.scope.node.id
        if key not in self._crc:
            self._crc[key] = [i for i in ctx.visible_imports(d.scope, len(ctx.file.source) + 1)
                              if i.module.split(".")[-1] == CRC]
        start = d.node.start_byte
        crc = [i for i in self._crc[key] if i.offset < start or i.path != ctx.file.path]
        if any(i.kind == "import" and i.names and d.name in i.names for i in crc):
            return
        if d.call is not None:
            sig = re.sub(r"::\s*(Matrix|Vector|Array|VecOrMat)\b", r"::Abstract\1",
                         ctx.text(d.call))  # PFA002's fix too
            fixed = f"function {CRC}.{sig}"
        else:
            fixed = f"function {CRC}.{d.name} end"
        if any(i.kind == "using" and i.names and d.name in i.names for i in crc):
            self.report(d.node,
                        f"`{d.name}` was brought in with `using {CRC}: {d.name}`, which cannot be "
                        f"extended: loading this file fails with \"function {CRC}.{d.name} must be "
                        f"explicitly imported to be extended\"",
                        f"write `{fixed}` (or change the `using` to `import {CRC}: {d.name}`)")
        else:
            self.report(d.node,
                        f"bare `{d.name}` defines a new function `{d.name}` in "
                        f"{ctx.module_label(d.scope)}, not a method of `{CRC}.{d.name}`: Zygote "
                        f"never sees it and silently computes plain backprop",
                        f"write `{fixed}` (or add `import {CRC}: {d.name}` before it)")
