"""The `pyfa` argument parser, its texts made safe for sphinx-argparse (docs/cli.md).

sphinx-argparse reads descriptions, help strings and epilogs as reStructuredText, but pyfa writes
them as plain text for a terminal: ``*.jl`` or ``2**63-1`` would start emphasis, and the exit-status
tables of the epilogs are laid out by hand. So the help strings are escaped, ```name``` becomes a
literal, and every epilog is shown as it is printed, in a literal block. Nothing else changes: the
page lists the real parser's commands, options and defaults.
"""

from __future__ import annotations

import argparse
import re

from pyfa.cli import build_parser

_CODE = re.compile(r"`([^`]+)`|(?<![\w-])(--?[A-Za-z][\w-]*)")


def _escape(text: str) -> str:
    text = text.replace("\\", "\\\\").replace("*", "\\*").replace("|", "\\|")
    return re.sub(r"(\w)_(?=\W|$)", r"\1\\_", text)  # `word_` would be a reference


def _inline(text: str) -> str:
    """Plain help text as reStructuredText that reads the same: `code` and options (which docutils
    would otherwise turn into an en dash) as literals, the rest escaped."""
    out, pos = [], 0
    for m in _CODE.finditer(text):
        out += [_escape(text[pos:m.start()]), "``" + (m.group(1) or m.group(2)) + "``"]
        pos = m.end()
    return "".join(out + [_escape(text[pos:])])


def _literal(text: str) -> str:
    body = "\n".join(("    " + line) if line.strip() else "" for line in text.rstrip().splitlines())
    return "::\n\n" + body + "\n"


def _prose(text: str) -> str:
    return "\n\n".join(_inline(" ".join(p.split())) for p in text.strip().split("\n\n"))


def _make_safe(parser: argparse.ArgumentParser) -> None:
    if parser.description:
        parser.description = _prose(parser.description)
    if parser.epilog:
        parser.epilog = _literal(parser.epilog)
    for action in parser._actions:
        if action.help and action.help != argparse.SUPPRESS:
            action.help = _inline(action.help)
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                choice.help = _inline(choice.help or "")
            for sub in action.choices.values():
                _make_safe(sub)


def parser() -> argparse.ArgumentParser:
    """``pyfa.cli.build_parser()``, ready for the ``argparse`` directive."""
    p = build_parser()
    _make_safe(p)
    return p
