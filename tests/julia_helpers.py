"""Shared helpers for the Julia tests: the `julia_or_skip` fixture and a small Project.toml reader.

Tests that need a working Julia are marked ``@pytest.mark.julia`` and take the `julia_or_skip`
fixture (import it into the test module): it skips, with ``pyfa.julia.unavailable_reason()`` as the
reason, where Julia cannot start, and otherwise returns juliacall's ``Main`` with PyFA loaded.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PYFA_JL = ROOT / "julia" / "PyFA"
JULIAPKG_JSON = ROOT / "pyfa" / "juliapkg.json"


@pytest.fixture
def julia_or_skip():
    import pyfa.julia

    if not pyfa.julia.available():
        pytest.skip(skip_reason())
    return pyfa.julia.load()


def skip_reason() -> str:
    """The gist of `pyfa.julia.unavailable_reason()`, short enough for pytest's skip summary."""
    import pyfa.julia
    from pyfa.crosscheck import one_line

    return one_line(pyfa.julia.unavailable_reason() or "Julia is not available")


def read_project_toml(text: str) -> dict:
    """A Julia Project.toml's tables."""
    return tomllib.loads(text)
