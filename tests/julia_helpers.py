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

#: Registered UUIDs, each read from the package's own Project.toml (FluxML/Flux.jl, Zygote.jl,
#: Optimisers.jl, Functors.jl, NNlib.jl; JuliaDiff/ChainRulesCore.jl, ChainRulesTestUtils.jl;
#: JuliaGPU/CUDA.jl and its lib/cudnn; the stdlibs' own Project.toml files).
REGISTERED_UUIDS = {
    "Flux": "587475ba-b771-5e3f-ad9e-33799f191a9c",
    "ChainRulesCore": "d360d2e6-b24c-11e9-a2a3-2a2ae2dbcce4",
    "Zygote": "e88e6eb3-aa80-5325-afca-941959d7151f",
    "Optimisers": "3bd65402-5787-11e9-1adc-39752487f4e2",
    "Functors": "d9f16b24-f501-4c13-a1f2-28368ffc5196",
    "NNlib": "872c559c-99b0-510c-b3b7-b6c96a88d5cd",
    "CUDA": "052768ef-5323-5732-b1bb-66c8b64840ba",
    "cuDNN": "02a925ec-e4fe-4b08-9a7e-0d78e3d38ccd",
    "ChainRulesTestUtils": "cdddcdb0-9152-4a09-a978-84456f9df70a",
    "Test": "8dfed614-e22c-5e08-85e1-65c5234f0b40",
    "Random": "9a3f8284-a2c9-5f02-9a11-845980a1fd5c",
    "LinearAlgebra": "37e2e46d-f89d-539d-b4ee-838fcccc9c8e",
    "Statistics": "10745b16-79ce-11e8-11f9-7d13ad32a3b2",
    "Pkg": "44cfe95a-1eb2-52ea-b672-e2afdf69b78f",
}
STDLIBS = {"Test", "Random", "LinearAlgebra", "Statistics", "Pkg"}
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
