"""The `pyfa` command: one sub-command per module, imported only when that sub-command runs.

Each sub-command module exposes ``add_arguments(parser)`` and ``run(args) -> int`` (exit status).
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "demo": ("pyfa.demo", "the main job: cross-check every available backend, then train FA vs BP"),
    "crosscheck": ("pyfa.crosscheck", "same weights and data through each backend; compare gradients"),
    "forum": ("pyfa.forum", "reproduce the Discourse thread: bare rrule (bug) vs ChainRulesCore.rrule"),
    "train": ("pyfa.train", "train an FA MLP with the torch or Julia backend"),
    "lint": ("pyfa.lint", "check Julia files for rule mistakes that silently give backprop"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pyfa", description=__doc__.splitlines()[0])
    from pyfa import __version__

    parser.add_argument("--version", action="version", version=f"pyfa {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(_module=module)
        importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(importlib.import_module(args._module).run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
