"""The `pyfa` command: one sub-command per module, imported only when the parser is built.

Each sub-command module exposes ``add_arguments(parser)`` and ``run(args) -> int`` (exit status), and
states its exit statuses in ``EXIT_STATUS`` (or sets the parser's epilog itself), shown at the end of
its ``--help``. Every command exits 130 on Ctrl-C, and its help gets that line added.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys

DESCRIPTION = """\
pyfa trains Feedback Alignment (FA) networks, in PyTorch and in Julia/Flux. FA is backprop with
one change: the error sent to a layer's input goes through a fixed random matrix B instead of the
layer's weights. A custom rule that a framework ignores gives plain backprop with no warning, so
pyfa checks every backend against a numpy reference and tells FA from backprop.

Start with `pyfa demo`: it cross-checks the backends, then trains FA and backprop on handwritten
digits and writes plots. `pyfa COMMAND --help` describes each command."""

COMMANDS = {
    "demo": ("pyfa.demo", "the tour: cross-check every available backend, then train FA vs backprop "
             "on digits"),
    "crosscheck": ("pyfa.crosscheck", "same weights and data through each backend: do they agree, "
                   "and does each really use FA?"),
    "forum": ("pyfa.forum", "reproduce the Discourse thread: a bare rrule (silently backprop) vs "
              "ChainRulesCore.rrule (FA)"),
    "train": ("pyfa.train", "train an FA network (torch or Julia) on bundled or your own data; "
              "history, checkpoint, plots"),
    "lint": ("pyfa.lint", "check Julia files for rule mistakes that silently give backprop"),
}

_INTERRUPTED = "interrupted by Ctrl-C (SIGINT)"
TOP_EXIT_STATUS = (
    "exit status: 0 success; 1 the command's check failed (see its --help); 2 a usage error;\n"
    "130 interrupted (Ctrl-C). pyfa train also exits 143 on SIGTERM."
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pyfa", description=DESCRIPTION, epilog=TOP_EXIT_STATUS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from pyfa import __version__

    parser.add_argument("--version", action="version", version=f"pyfa {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_) in COMMANDS.items():
        mod = importlib.import_module(module)
        p = sub.add_parser(name, help=help_, description=help_,
                           epilog=getattr(mod, "EXIT_STATUS", None),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(_module=module)
        mod.add_arguments(p)  # which may set its own epilog
        epilog = (p.epilog or "").rstrip()
        if "\n  130 " not in epilog:
            gap = re.search(r"\n  0( +)", epilog)  # the column the explanations start in
            width = 1 + len(gap.group(1)) if gap else 5
            p.epilog = f"{epilog}\n  130{' ' * max(1, width - 3)}{_INTERRUPTED}"
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except KeyboardInterrupt:
        print(f"pyfa {args.command}: interrupted", file=sys.stderr)
        return 130


# ------------------------------------------------------------------ argparse types the commands share


def seed_arg(text: str) -> int:
    """argparse type of a ``--seed``: a whole number in [0, 2**63 - 1] (numpy, torch and Julia
    all take it)."""
    from pyfa.train.config import MAX_SEED

    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be a whole number from 0 to 2**63 - 1, got {text!r}")
    return value


def positive_int_arg(text: str) -> int:
    """argparse type of a count: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return value


if __name__ == "__main__":
    sys.exit(main())
