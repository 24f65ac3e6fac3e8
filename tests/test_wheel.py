"""The built wheel carries the Julia package and a juliapkg.json that points at it.

Builds the wheel for real (hatchling, through `python -m build --no-isolation`, with the
hatch_build.py hook), opens it, and lets juliapkg's own requirement search run on the unpacked wheel
(no Julia needed).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import zipfile

import pytest
from julia_helpers import ROOT, read_project_toml


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("dist")
    for tool in ("build", "hatchling"):
        assert importlib.util.find_spec(tool), f"{tool} is missing: install the dev extra"
    # --no-isolation: the dev venv's hatchling, so building needs no network
    cmd = [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(ROOT)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"wheel build failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    wheels = list(out.glob("pyfa_alignment-*.whl"))
    assert len(wheels) == 1, wheels
    with zipfile.ZipFile(wheels[0]) as z:
        yield z


@pytest.mark.slow
def test_wheel_ships_julia_package_and_points_at_it(wheel):
    names = wheel.namelist()
    assert names.count("pyfa/juliapkg.json") == 1
    assert "pyfa/py.typed" in names  # type information for users' checkers (PEP 561)
    deps = json.loads(wheel.read("pyfa/juliapkg.json"))
    checkout = json.loads((ROOT / "pyfa" / "juliapkg.json").read_text())
    assert deps["julia"] == checkout["julia"]
    spec = deps["packages"]["PyFA"]
    assert spec["path"] == "julia_src/PyFA" and spec["dev"] is True
    # every other package is declared exactly as in the checkout
    assert {k: v for k, v in deps["packages"].items() if k != "PyFA"} == {
        k: v for k, v in checkout["packages"].items() if k != "PyFA"
    }
    project_path = f"pyfa/{spec['path']}/Project.toml"
    assert project_path in names
    project = read_project_toml(wheel.read(project_path).decode())
    assert project["name"] == "PyFA" and project["uuid"] == spec["uuid"]
    shipped = sorted(p.relative_to(ROOT / "julia" / "PyFA").as_posix()
                     for p in (ROOT / "julia" / "PyFA").rglob("*") if p.is_file())
    assert {"src/PyFA.jl", "src/conv.jl", "src/dfa.jl", "ext/PyFAEnzymeExt.jl", "ext/PyFAMooncakeExt.jl",
            "test/runtests.jl", "README.md"} <= set(shipped)
    for f in shipped:  # the whole Julia package, extensions included
        assert f"pyfa/julia_src/PyFA/{f}" in names, f
    for f in ("__init__.py", "_import.py", "forum.py", "bridge.jl", "forum_bug.jl", "forum_fix.jl"):
        assert f"pyfa/julia/{f}" in names
    assert not any(n.endswith("hatch_build.py") for n in names)


@pytest.mark.slow
def test_juliapkg_resolves_pyfa_inside_the_unpacked_wheel(wheel, tmp_path):
    pytest.importorskip("juliapkg")
    site = tmp_path / "site"
    wheel.extractall(site)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON_JULIACALL_", "PYTHON_JULIAPKG_"))}
    env["PYTHONPATH"] = str(site)
    code = (
        "import json; from juliapkg.deps import find_requirements; "
        "print(json.dumps({p.name: p.dict() for p in find_requirements()[1]}))"
    )
    r = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    pkgs = json.loads(r.stdout.strip().splitlines()[-1])
    where = site / "pyfa" / "julia_src" / "PyFA"
    assert os.path.normcase(pkgs["PyFA"]["path"]) == os.path.normcase(str(where))
    project = read_project_toml((where / "Project.toml").read_text())
    assert project["uuid"] == pkgs["PyFA"]["uuid"]
