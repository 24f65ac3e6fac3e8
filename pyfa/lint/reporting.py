"""Findings and how they print: ``path:line:col: CODE message`` and an indented ``fix:`` line."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Finding:
    """One problem: where it is, which rule, what is wrong, and a concrete fix."""

    path: str
    line: int
    column: int
    code: str
    message: str
    suggestion: str

    @property
    def severity(self) -> str:
        """"error" or "warning"; both make the command exit 1."""
        from pyfa.lint.rules import RULES

        return RULES[self.code][0]

    @property
    def rule(self) -> str:
        """Alias of `code`."""
        return self.code

    def format(self) -> str:
        return f"{self.path}:{self.line}:{self.column}: {self.code} {self.message}\n" \
               f"    fix: {self.suggestion}"

    def __str__(self) -> str:
        return self.format()


def selected(findings: Iterable[Finding], select: Iterable[str] | None = None,
             ignore: Iterable[str] | None = None) -> list[Finding]:
    """`findings` whose code is in `select` (all when None) and not in `ignore`, sorted by
    path and position."""
    sel = {c.upper() for c in select} if select else None
    ign = {c.upper() for c in ignore} if ignore else set()
    return sorted(f for f in set(findings) if (sel is None or f.code in sel) and f.code not in ign)


def summary(findings: list[Finding], n_files: int) -> str:
    """The closing line printed to stderr."""
    if not findings:
        return f"no findings in {n_files} file(s)"
    return f"{len(findings)} finding(s) in {len({f.path for f in findings})} file(s)"
