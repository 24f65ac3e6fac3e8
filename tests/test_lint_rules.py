"""Every `pyfa lint` rule, through its own examples (as Fixit tests its rules): each INVALID
example gives findings of exactly that rule's code, each VALID example gives none at all. Also:
the rule set is complete and well-formed, and docs/lint-rules.md is the rendering of the rules.

An example with `files` is a package: it is written to a temporary folder and its `path` linted
from disk (so Project.toml, `include`s and `ext/` take part).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pyfa.lint import ALL_RULES, RULES, lint_file, lint_source
from pyfa.lint.docs import render
from pyfa.lint.rules.base import Example

ROOT = Path(__file__).resolve().parents[1]
RULES_DIR = ROOT / "pyfa" / "lint" / "rules"


def _lint_example(example: Example, tmp_path: Path) -> list:
    if not example.files:
        return lint_source(example.code, example.path)
    for name, body in {**example.files, example.path: example.code}.items():
        target = tmp_path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(body, encoding="utf-8")
    return lint_file(tmp_path / example.path)


def _cases(kind: str) -> list:
    out = []
    for rule in ALL_RULES:
        for i, example in enumerate(getattr(rule, kind)):
            out.append(pytest.param(rule, example, id=f"{rule.CODE}-{kind.lower()}-{i}"))
    return out


@pytest.mark.parametrize("rule, example", _cases("INVALID"))
def test_invalid_example_triggers_exactly_its_rule(rule, example, tmp_path):
    findings = _lint_example(example, tmp_path)
    assert findings, f"{rule.CODE} missed its INVALID example:\n{example.code}"
    assert {f.code for f in findings} == {rule.CODE}, "\n".join(f.format() for f in findings)
    for f in findings:
        assert f.message and f.suggestion and "\n" not in f.message + f.suggestion
        assert f.severity == rule.SEVERITY
        assert f.message.startswith("warning: ") == (rule.SEVERITY == "warning")


@pytest.mark.parametrize("rule, example", _cases("VALID"))
def test_valid_example_is_clean(rule, example, tmp_path):
    findings = _lint_example(example, tmp_path)
    assert not findings, "\n".join(f.format() for f in findings)


def test_every_rule_is_registered_once_with_examples():
    codes = [r.CODE for r in ALL_RULES]
    assert codes == [f"PFA{i:03d}" for i in range(len(codes))], "codes are stable and dense"
    assert len(codes) >= 12
    assert list(RULES) == codes
    modules = {p.stem for p in RULES_DIR.glob("pfa*.py")}
    assert modules == {r.__module__.rsplit(".", 1)[-1] for r in ALL_RULES}, \
        "every rules/pfaNNN_*.py module holds exactly one registered rule"
    for r in ALL_RULES:
        module = r.__module__.rsplit(".", 1)[-1]
        assert module.startswith(r.CODE.lower() + "_"), (r.CODE, module)
        assert r.SEVERITY in ("error", "warning")
        assert r.VALID and r.INVALID, f"{r.CODE} needs VALID and INVALID examples"
        for text in (r.TITLE, r.MESSAGE, r.FIX):
            assert text.strip() and "\n" not in text, r.CODE
        assert len((r.__doc__ or "").split()) >= 20, f"{r.CODE}: say why it matters"


def test_docs_page_is_the_rendering_of_the_rules():
    page = (ROOT / "docs" / "lint-rules.md").read_text(encoding="utf-8")
    assert page == render(), (
        "docs/lint-rules.md is out of date: run `python -m pyfa.lint.docs > docs/lint-rules.md`")
    listed = re.findall(r"^## (PFA\d{3}):", page, flags=re.M)
    assert listed == list(RULES)
    for r in ALL_RULES:
        assert r.MESSAGE in page and r.FIX in page


def test_docs_page_is_in_the_nav():
    index = (ROOT / "docs" / "index.md").read_text(encoding="utf-8")
    toctrees = re.findall(r"^```\{toctree\}\n(.*?)^```", index, flags=re.S | re.M)
    assert any(line.strip() == "lint-rules" for block in toctrees for line in block.splitlines())
