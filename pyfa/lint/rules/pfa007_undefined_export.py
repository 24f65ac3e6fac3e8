"""PFA007: an exported name that the module neither defines nor imports by name."""

from __future__ import annotations

from pyfa.lint.rules.base import Invalid, Rule, Valid


class UndefinedExport(Rule):
    """``export fa_matmull`` (a typo) loads without a word; the first user of the name gets
    ``UndefVarError`` far from the package. The module's definitions are gathered over the files
    it ``include``s; a module using ``eval``/``@eval`` or an ``include`` of a computed path can
    define anything and is not checked."""

    CODE = "PFA007"
    TITLE = "exported name is not defined"
    MESSAGE = "`missing_function` is exported from module M but neither defined there nor imported by name"
    FIX = ("define `missing_function`, remove it from the export list, or import it explicitly "
           "(`using SomePackage: missing_function`) to re-export it")
    VALID = (
        Valid("module Exports\nusing LinearAlgebra: norm\nexport layer_norm, norm\n"
              "layer_norm(x) = x ./ norm(x)\nend\n"),
    )
    INVALID = (
        Invalid("module Exports\nusing LinearAlgebra: norm\nexport layer_norm, missing_function\n"
                "layer_norm(x) = x ./ norm(x)\nend\n"),
    )

    def finish(self) -> None:
        if not any(s.exports for s in self.ctx.model.scopes):
            return
        for where, facts in self.ctx.module_owners:
            if facts.opaque:
                continue
            for name, node, f in facts.exports:
                if f is self.ctx.file and name not in facts.defined:
                    self.report(node,
                                f"`{name}` is exported from {where} but neither defined there nor "
                                f"imported by name",
                                f"define `{name}`, remove it from the export list, or import it "
                                f"explicitly (`using SomePackage: {name}`) to re-export it")
