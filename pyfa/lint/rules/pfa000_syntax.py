"""PFA000: tree-sitter-julia cannot parse the file."""

from __future__ import annotations

from pyfa.lint.rules.base import Invalid, Rule, Valid


class Unparsable(Rule):
    """Every other rule reads the parse tree, so a file that does not parse is checked only
    up to the error, and Julia refuses to load it. tree-sitter-julia rejects a little valid
    Julia (e.g. ``const`` fields in a struct, ``@compat(public, ...)``): if Julia accepts the
    code, check it with ``fatou parse`` and report the grammar gap."""

    CODE = "PFA000"
    TITLE = "syntax error"
    MESSAGE = "syntax error near `...` (tree-sitter-julia cannot parse it)"
    FIX = "fix the syntax there; if Julia accepts it, check with `fatou parse` and report the grammar gap"
    VALID = (
        Valid("y = sum(x)\n"),
    )
    INVALID = (
        Invalid("function f(x)\n    y = sum(x\n    return y\nend\n"),
        Invalid("struct S\n    a::Int\n"),
    )

    def finish(self) -> None:
        root = self.ctx.file.root
        if not root.has_error:
            return
        stack = [(root, False)]   # (node, inside an ERROR node)
        while stack:
            n, in_error = stack.pop()
            if n.is_missing:
                self.report(n, f"syntax error: missing `{n.type}`", f"add the missing `{n.type}`")
            elif n.type == "ERROR" and not in_error:
                raw = self.ctx.file.text(n).strip()
                snippet = raw.splitlines()[0][:40] if raw else ""
                self.report(n, f"syntax error near `{snippet}` (tree-sitter-julia cannot parse it)",
                            "fix the syntax here; if Julia accepts it, check with `fatou parse` "
                            "and report the grammar gap")
            inner = in_error or n.type == "ERROR"
            stack.extend((c, inner) for c in reversed(n.children) if c.has_error or c.is_missing)
