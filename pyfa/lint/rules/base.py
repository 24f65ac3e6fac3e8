"""What a rule is: a class with a stable code, a one-line message and its fix, the reason it
matters (its docstring), and Julia examples that must (INVALID) or must not (VALID) trigger it.

Modelled on Fixit's ``LintRule``: the engine walks each file once and calls, on every rule, the
``visit_<node type>(node)`` methods it defines (``visit_call_expression``...), plus
``visit_definition(d)`` for each method definition, then ``finish()`` once the walk is done.
A rule reports with ``self.report(node, message, fix)``; what it may ask about the file, its
module and its package is on ``self.ctx`` (`pyfa.lint.engine.FileContext`). The examples are run
by tests/test_lint_rules.py and shown on docs/lint-rules.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar


@dataclass(frozen=True)
class Example:
    """A Julia file for a rule's tests and docs. With `files`, the file is `path` inside a
    package made of those other files too ({relative path: text}, e.g. a Project.toml)."""

    code: str
    files: Mapping[str, str] = field(default_factory=dict)
    path: str = "example.jl"


class Valid(Example):
    """Code the rule must leave alone (and that no other rule flags)."""


class Invalid(Example):
    """Code the rule must flag (and that no other rule flags)."""


class Rule:
    """Base class of the lint rules; see the module docstring."""

    CODE: ClassVar[str]
    SEVERITY: ClassVar[str] = "error"   # or "warning"
    TITLE: ClassVar[str]                # a few words, for the rule table
    MESSAGE: ClassVar[str]              # a typical message: what is wrong, in one line
    FIX: ClassVar[str]                  # its fix, in one line
    VALID: ClassVar[tuple[Example, ...]] = ()
    INVALID: ClassVar[tuple[Example, ...]] = ()

    def __init__(self, ctx):
        self.ctx = ctx

    def report(self, node, message: str, fix: str) -> None:
        self.ctx.report(self, node, message, fix)

    def finish(self) -> None:
        """Called once after the walk (for checks over a whole module or package)."""
