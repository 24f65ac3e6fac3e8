"""The GitHub Actions workflow for machines with Julia (.github/workflows/ci.yml).

It cannot run here (no Julia, no GitHub), so these tests check what can be checked offline: the YAML
parses, the jobs have the required shape, every action is pinned, the commands point at paths that
exist in this repository, every ``run:`` script is valid bash, and, when check-jsonschema is
installed, the file validates against the GitHub workflow schema it vendors (no network).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"
JOBS = ("julia-package", "python-with-julia", "wheel")
# owner/repo[/path]@vN, @vN.N(.N), or a full commit SHA: never a branch such as @main.
PINNED = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@(v\d+(\.\d+){0,2}|[0-9a-f]{40})$")
# The current major release of each action used (their repositories' tags, read 2026-08): bump
# here and in ci.yml together.
CURRENT_MAJORS = {
    "actions/checkout": 7,
    "actions/setup-python": 7,
    "actions/upload-artifact": 7,
    "julia-actions/setup-julia": 3,
    "julia-actions/cache": 3,
}


@pytest.fixture(scope="module")
def wf() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def _steps(wf, job):
    return wf["jobs"][job]["steps"]


def _runs(wf, job) -> str:
    return "\n".join(s.get("run", "") for s in _steps(wf, job))


def _uses(wf, job) -> list[str]:
    return [s["uses"] for s in _steps(wf, job) if "uses" in s]


def test_triggers(wf):
    # YAML 1.1 (PyYAML) reads the key `on` as the boolean True.
    on = wf.get("on", wf.get(True))
    assert on is not None, "workflow has no `on:` triggers"
    assert {"push", "pull_request"} <= set(on)


def test_jobs_have_runner_and_steps(wf):
    assert set(JOBS) <= set(wf["jobs"]), sorted(wf["jobs"])
    for name, job in wf["jobs"].items():
        assert job.get("runs-on"), f"job {name} has no runs-on"
        steps = job.get("steps")
        assert isinstance(steps, list) and steps, f"job {name} has no steps"
        for i, step in enumerate(steps):
            assert ("uses" in step) != ("run" in step), f"{name} step {i}: one of uses/run"
        assert _uses(wf, name)[0].startswith("actions/checkout@"), f"{name}: check out first"


def test_every_action_is_pinned(wf):
    for name in wf["jobs"]:
        for ref in _uses(wf, name):
            assert PINNED.match(ref), f"job {name}: `uses: {ref}` is not pinned to a tag or SHA"


def test_every_action_is_at_its_current_major(wf):
    used = set()
    for name in wf["jobs"]:
        for ref in _uses(wf, name):
            action, version = ref.split("@")
            used.add(action)
            assert action in CURRENT_MAJORS, f"job {name}: {action}: add its current major here"
            assert re.match(rf"v{CURRENT_MAJORS[action]}(\.|$)", version), (
                f"job {name}: {ref}, current major is v{CURRENT_MAJORS[action]}")
    assert used == set(CURRENT_MAJORS)


def test_julia_versions_are_strings(wf):
    # Unquoted 1.10 is the float 1.1 in YAML: setup-julia would install Julia 1.1.
    for name, job in wf["jobs"].items():
        versions = list(job.get("strategy", {}).get("matrix", {}).get("julia", []))
        versions += [s["with"]["version"] for s in job["steps"]
                     if s.get("uses", "").startswith("julia-actions/setup-julia@") and "with" in s]
        for v in versions:
            assert isinstance(v, str), f"job {name}: Julia version {v!r} must be a quoted string"
    assert {"1.10", "1.11", "1"} <= set(wf["jobs"]["julia-package"]["strategy"]["matrix"]["julia"])
    assert set(wf["jobs"]["python-with-julia"]["strategy"]["matrix"]["julia"]) == {"1.10", "1.11"}


def test_julia_skips_are_failures_where_julia_must_run(wf):
    """PYFA_REQUIRE_JULIA=1 makes a skipped julia test (tests/conftest.py) or a skipped AD
    testset (runtests.jl) fail: with Julia installed, a skip means something broke."""
    assert str(wf["jobs"]["python-with-julia"]["env"]["PYFA_REQUIRE_JULIA"]) == "1"
    expr = wf["jobs"]["julia-package"]["env"]["PYFA_REQUIRE_JULIA"]
    assert "matrix.julia" in expr  # required on the versions Enzyme and Mooncake support
    runtests = (ROOT / "julia" / "PyFA" / "test" / "runtests.jl").read_text()
    assert 'get(ENV, "PYFA_REQUIRE_JULIA", "") == "1"' in runtests
    conftest = (ROOT / "tests" / "conftest.py").read_text()
    assert "PYFA_REQUIRE_JULIA" in conftest


def test_julia_package_job_runs_the_julia_tests(wf):
    uses = _uses(wf, "julia-package")
    assert any(u.startswith("julia-actions/setup-julia@") for u in uses)
    assert any(u.startswith("julia-actions/cache@") for u in uses)
    runs = _runs(wf, "julia-package")
    assert "--project=julia/PyFA" in runs and "Pkg.test()" in runs
    assert (ROOT / "julia" / "PyFA" / "Project.toml").is_file(), "the workflow tests julia/PyFA"


def test_pytest_job_uses_this_julia_and_checks_it_first(wf):
    job = wf["jobs"]["python-with-julia"]
    uses = _uses(wf, "python-with-julia")
    assert any(u.startswith("actions/setup-python@") for u in uses)
    assert any(u.startswith("julia-actions/setup-julia@") for u in uses)
    runs = [s.get("run", "") for s in job["steps"]]
    check = next(i for i, r in enumerate(runs) if "j.available()" in r)
    # pyfa downloads and installs nothing unless asked: the job asks, as `make julia` does
    install = next(i for i, r in enumerate(runs) if "python -m pyfa.julia install" in r)
    assert install < check
    # juliacall must be pointed at the setup-julia Julia (else juliapkg may download another),
    # for the whole job (via $GITHUB_ENV) or on the check and pytest steps, before the check.
    exported = [i for i, r in enumerate(runs)
                if re.search(r'PYTHON_JULIAPKG_EXE=\S*julia"?\s*>>\s*"?\$GITHUB_ENV', r)]
    assert exported and exported[0] < check, "no step exports PYTHON_JULIAPKG_EXE to $GITHUB_ENV"
    setter = job["steps"][exported[0]]
    assert "steps.setup-julia.outputs.julia-bindir" in yaml.safe_dump(setter)
    assert any(s.get("id") == "setup-julia" and s["uses"].startswith("julia-actions/setup-julia@")
               for s in job["steps"] if "uses" in s)
    first_pytest = next(i for i, r in enumerate(runs) if "pytest" in r)
    assert check < first_pytest, "check Julia works before pytest, or the julia tests just skip"
    assert any("pytest -m julia" in r for r in runs)
    assert any(re.search(r"pip install -e '\.\[dev\]'", r) for r in runs)


def test_torch_pin_matches_the_makefile(wf):
    pin = re.search(r"torch==[\w.+]+", (ROOT / "Makefile").read_text()).group(0)
    assert wf["env"]["TORCH_SPEC"] == pin


def test_wheel_job_checks_the_files_juliapkg_needs(wf):
    runs = _runs(wf, "wheel")
    assert "python -m build" in runs and "-m venv" in runs and "dist/*.whl" in runs
    assert "juliapkg.json" in runs and '"julia_src" / "PyFA" / "Project.toml"' in runs
    assert "j.load()" in runs
    # The path the smoke test looks for is where pyproject.toml puts the Julia package.
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^"julia/PyFA" = "pyfa/julia_src/PyFA"$', pyproject, flags=re.M), (
        "pyproject.toml's wheel force-include no longer puts julia/PyFA at pyfa/julia_src/PyFA"
    )
    julia_step = next(s for s in _steps(wf, "wheel") if "j.load()" in s.get("run", ""))
    assert "PYTHON_JULIAPKG_EXE" in julia_step.get("env", {})


def _bash_scripts(wf):
    for name, job in wf["jobs"].items():
        for i, step in enumerate(job["steps"]):
            if "run" in step:
                # ${{ ... }} is replaced by Actions before bash sees the script.
                yield f"{name} step {i}", re.sub(r"\$\{\{[^}]*\}\}", "X", step["run"])


def test_run_scripts_are_valid_bash(wf):
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash")
    for where, script in _bash_scripts(wf):
        r = subprocess.run([bash, "-n"], input=script, capture_output=True, text=True)
        assert r.returncode == 0, f"{where}: {r.stderr}\n{script}"


def test_inline_python_compiles(wf):
    found = 0
    for where, script in _bash_scripts(wf):
        for body in re.findall(r"<<'PY'\n(.*?)\nPY\b", script, flags=re.S):
            compile(body, where, "exec")
            found += 1
        for body in re.findall(r'python"? -c "([^"]*)"', script):
            compile(body, where, "exec")
            found += 1
    assert found >= 3


def test_schema_valid():
    """Against the GitHub workflow JSON schema vendored by check-jsonschema (works offline)."""
    pytest.importorskip("check_jsonschema")
    r = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
         str(WORKFLOW)],
        capture_output=True, text=True,
    )
    assert r.returncode == 0, r.stdout + r.stderr
