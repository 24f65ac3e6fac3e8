"""docs/lint-rules.md, rendered from the rule classes (their code, severity, title, message,
docstring and examples), so the page cannot drift from the code:

    python -m pyfa.lint.docs > docs/lint-rules.md

tests/test_lint_rules.py checks that the page is the rendering of the current rules.
"""

from __future__ import annotations

import inspect
import sys

from pyfa.lint.rules import ALL_RULES
from pyfa.lint.rules.base import Example, Rule

INTRO = """\
# `pyfa lint` rules

<!-- Generated from pyfa/lint/rules/ by `python -m pyfa.lint.docs > docs/lint-rules.md`;
tests/test_lint_rules.py fails when this page and the rules differ. -->

`pyfa lint` reads Julia files with tree-sitter-julia (no Julia needed) and reports the mistakes
below: each one either makes a feedback-alignment layer silently train with plain backprop, or
breaks it far from the cause. Every finding names its rule and a concrete fix:

```text
path:line:col: CODE message
    fix: a concrete change
```

```sh
pyfa lint julia/PyFA/src julia/PyFA/test julia/PyFA/ext
pyfa lint --select PFA001,PFA010 src/
pyfa lint --ignore PFA006 src/
```

The exit status is 0 when nothing is found, 1 when anything is (warnings count), and 2 when a
path is missing, cannot be read or is not a regular file. Each rule is one module,
`pyfa/lint/rules/pfaNNN_*.py`, holding the rule and the examples below, which are its tests.
"""


def _examples(rule: type[Rule], examples: tuple[Example, ...], flagged: bool) -> list[str]:
    out = []
    for ex in examples:
        if ex.files:
            out.append(f"A package with these files, linting `{ex.path}`:\n")
            for name, body in sorted(ex.files.items()):
                lang = "toml" if name.endswith(".toml") else "julia"
                out += [f"`{name}`:\n", f"```{lang}\n{body.rstrip()}\n```\n"]
            out += [f"`{ex.path}`:\n", f"```julia\n{ex.code.rstrip()}\n```\n"]
        elif rule.CODE == "PFA000" and flagged:
            out.append(f"```text\n{ex.code.rstrip()}\n```\n")
        else:
            note = rule.CODE if flagged else "clean"
            out.append(f"<!-- lint: {note} -->\n```julia\n{ex.code.rstrip()}\n```\n")
    return out


def render() -> str:
    """The whole page."""
    parts = [INTRO, "| Code | Severity | Finds |\n|---|---|---|\n" + "".join(
        f"| [{r.CODE}](#{r.CODE.lower()}) | {r.SEVERITY} | {r.TITLE} |\n" for r in ALL_RULES)]
    for r in ALL_RULES:
        module = r.__module__.rsplit(".", 1)[-1]
        parts += [
            f"({r.CODE.lower()})=\n## {r.CODE}: {r.TITLE}\n",  # a MyST target: #pfa001
            f"**{r.SEVERITY}** · `{r.__name__}` in `pyfa/lint/rules/{module}.py`\n",
            f"Message: {r.MESSAGE}\n",
            f"Fix: {r.FIX}\n",
            f"Why: {' '.join(inspect.cleandoc(r.__doc__ or '').split())}\n",
            "Flagged:\n", *_examples(r, r.INVALID, True),
            "Not flagged:\n", *_examples(r, r.VALID, False),
        ]
    return "\n".join(parts)


if __name__ == "__main__":
    sys.stdout.write(render())
