"""The command line: ``pyfa lint PATH...`` and ``python -m pyfa.lint PATH...``.

Exit status: 0 nothing found, 1 findings (warnings included), 2 a path that is missing, cannot be
read or is not a regular file, or a wrong command line.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from pyfa.lint.engine import lint_loaded, rule_classes
from pyfa.lint.project import Project, julia_files
from pyfa.lint.reporting import Finding, selected, summary
from pyfa.lint.rules import RULES


def _codes(value: str) -> list[str]:
    codes = [c.strip().upper() for c in value.split(",") if c.strip()]
    unknown = [c for c in codes if c not in RULES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown rule code(s): {', '.join(unknown)}")
    return codes


#: The exit statuses, as `pyfa lint --help` ends (pyfa.cli adds the Ctrl-C line).
EXIT_STATUS = (
    "exit status:\n"
    "  0    no findings\n"
    "  1    findings (errors or warnings)\n"
    "  2    a path that is missing, cannot be read or is not a regular file (a FIFO, a device),\n"
    "       or a usage error"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `pyfa lint` options (also used by `python -m pyfa.lint`); the help's epilog gets the
    rule list in front of the exit statuses."""
    rules = "\n".join(f"  {code}  {sev:7}  {title}" for code, (sev, title) in RULES.items())
    parser.epilog = (f"rules (docs/lint-rules.md explains each):\n{rules}\n\n"
                     f"{parser.epilog or EXIT_STATUS}")
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="Julia files, or directories searched for *.jl")
    parser.add_argument("--select", type=_codes, default=None, metavar="CODES",
                        help="only these comma-separated rule codes (e.g. PFA001,PFA003)")
    parser.add_argument("--ignore", type=_codes, default=None, metavar="CODES",
                        help="skip these comma-separated rule codes (e.g. PFA006,PFA009)")


def run(args: argparse.Namespace) -> int:
    """Lint `args.paths`; print findings; return 0 (clean), 1 (findings) or 2 (a path that is
    missing, unreadable or not a regular file)."""
    status = 0
    files: list[Path] = []
    for p in map(Path, args.paths):
        if not p.exists():
            print(f"pyfa lint: {p}: no such file or directory", file=sys.stderr)
            status = 2
        elif p.is_dir():
            found = julia_files(p)
            if not found:
                print(f"pyfa lint: {p}: no *.jl files found", file=sys.stderr)
            files += found
        else:
            files.append(p)
    project = Project()
    classes = rule_classes(args.select, args.ignore)
    findings: list[Finding] = []
    for p in files:
        try:
            file = project.load(p)
        except OSError as exc:
            print(f"pyfa lint: {p}: {exc.strerror or exc}", file=sys.stderr)
            status = 2
            continue
        findings += lint_loaded(project, file, p, str(p), classes)
    findings = selected(findings)
    for f in findings:
        print(f.format())
    if files:
        print(summary(findings, len(files)), file=sys.stderr)
    return status or (1 if findings else 0)


def main(argv: Sequence[str] | None = None) -> int:
    """`pyfa lint` / `python -m pyfa.lint` entry point; returns the exit status."""
    import pyfa.lint

    parser = argparse.ArgumentParser(
        prog="pyfa lint", description=(pyfa.lint.__doc__ or "").splitlines()[0])
    add_arguments(parser)
    try:
        args = parser.parse_args(list(argv) if argv is not None else None)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    return run(args)
