"""Static checks for Julia files that define ChainRules rules and Flux layers, without Julia.

`pyfa lint FILE...` (or ``python -m pyfa.lint FILE...``) parses each file with tree-sitter-julia
and reports mistakes that make a feedback-alignment layer silently train with plain backprop, or
that break it outright. Directories are searched for ``*.jl`` files. Each finding prints as::

    path:line:col: CODE message
        fix: a concrete change

The rules, PFA000 to PFA011, each live in ``pyfa/lint/rules/pfaNNN_*.py`` with their examples;
docs/lint-rules.md lists them (``--select``/``--ignore`` take comma-separated codes). Warnings
count like errors for the exit status (1 when anything is reported; 2 when a path cannot be read
or the command line is wrong).

The package, by part:

- `pyfa.lint.parsing`: tree-sitter-julia (loaded on first use), a parsed `SourceFile`, walking;
- `pyfa.lint.syntax`: Julia shapes on the tree (signatures, calls, macros, tuples, types);
- `pyfa.lint.scopes`: one pass over a file: each module's imports, includes, definitions, AD
  rule imports;
- `pyfa.lint.project`: the files around it: includers, the module across files, Project.toml;
- `pyfa.lint.rules`: one module per rule; `pyfa.lint.engine`: runs them, one walk per file;
- `pyfa.lint.reporting`: `Finding` and its format; `pyfa.lint.cli`: the command line;
  `pyfa.lint.docs`: renders docs/lint-rules.md from the rules.

Limits: the checks read one parse tree per file, not Julia's lowering. Macros other than the
ones the rules name are opaque; a module that uses ``eval``/``@eval`` or ``include``s a computed
path is skipped by PFA005/7/8/9; tree-sitter-julia rejects a little valid Julia (e.g. ``const``
fields in a struct, ``@compat(public, ...)``), which then shows up as PFA000. Findings in a file
are sorted by position; ``lint_*`` return them as ``Finding`` objects.
"""

from pyfa.lint.cli import EXIT_STATUS, add_arguments, main, run
from pyfa.lint.engine import lint_file, lint_paths, lint_source
from pyfa.lint.parsing import SourceFile
from pyfa.lint.reporting import Finding
from pyfa.lint.rules import ALL_RULES, RULES

__all__ = [
    "ALL_RULES",
    "EXIT_STATUS",
    "Finding",
    "RULES",
    "SourceFile",
    "add_arguments",
    "lint_file",
    "lint_paths",
    "lint_source",
    "main",
    "run",
]
