"""The distribution is publishable: `pyfa-alignment` builds, passes `twine check`, and works installed.

Builds the sdist and, from it, the wheel (``python -m build --no-isolation``: hatchling from the
dev venv, no network), checks both with ``twine check --strict``, reads the metadata (name,
version, URLs, classifiers, license, README), then installs the wheel with ``--no-deps --no-index``
into a fresh ``python -m venv`` and runs, from outside the checkout, ``pyfa --version`` and
``import pyfa.torch`` with the installed package.

The fresh venv installs nothing from the network: numpy and torch (and torch's own dependencies)
are the dev venv's, added read-only at the END of its ``sys.path`` by a ``.pth`` file. A path
listed there is only appended (its own ``.pth`` files are not run), so the dev venv's editable pyfa
stays out; the test checks that ``pyfa`` is imported from the fresh venv's site-packages.
"""

from __future__ import annotations

import email
import importlib.util
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DIST_NAME = "pyfa-alignment"
REPOSITORY = "https://github.com/pyfa-dev/pyfa"

pytestmark = pytest.mark.slow


def _version() -> str:
    sys.path.insert(0, str(ROOT))
    try:
        import pyfa
    finally:
        sys.path.pop(0)
    return pyfa.__version__


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> dict[str, Path]:
    for tool in ("build", "hatchling", "twine"):
        assert importlib.util.find_spec(tool), f"{tool} is missing: install the dev extra"
    out = tmp_path_factory.mktemp("dist")
    r = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"build failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    wheels, sdists = list(out.glob("*.whl")), list(out.glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, sorted(p.name for p in out.iterdir())
    return {"wheel": wheels[0], "sdist": sdists[0]}


def test_file_names_carry_the_distribution_name_and_version(dist):
    version = _version()
    assert dist["wheel"].name == f"pyfa_alignment-{version}-py3-none-any.whl"
    assert dist["sdist"].name == f"pyfa_alignment-{version}.tar.gz"


def test_twine_check(dist):
    r = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", str(dist["wheel"]),
                        str(dist["sdist"])], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("PASSED") == 2, r.stdout


def test_metadata(dist):
    with zipfile.ZipFile(dist["wheel"]) as z:
        info = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        meta = email.message_from_bytes(z.read(info))
        names = z.namelist()
    assert meta["Name"] == DIST_NAME and meta["Version"] == _version()
    assert meta["Requires-Python"] == ">=3.10"
    assert meta["License-Expression"] == "MIT"
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL"))
    assert {"Homepage", "Documentation", "Repository", "Issues"} <= set(urls)
    assert all(u.startswith(REPOSITORY) for u in urls.values()), urls
    classifiers = meta.get_all("Classifier")
    assert "Typing :: Typed" in classifiers and "Programming Language :: Python :: 3" in classifiers
    assert meta["Description-Content-Type"] == "text/markdown"
    assert "pip install pyfa-alignment" in meta.get_payload(), "the README names the distribution"
    assert "pyfa/py.typed" in names and "pyfa/__init__.py" in names
    assert not any(n.startswith(("docs/", "tests/")) for n in names)  # the wheel is the package only
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    with zipfile.ZipFile(dist["wheel"]) as z:
        assert "pyfa = pyfa.cli:main" in z.read(entry_points).decode()


def test_sdist_has_the_sources_the_tests_and_the_docs(dist):
    with tarfile.open(dist["sdist"]) as t:
        names = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
    for f in ("pyproject.toml", "README.md", "hatch_build.py", "Makefile", "pyfa/__init__.py",
              "pyfa/py.typed", "julia/PyFA/Project.toml", "docs/conf.py", "docs/index.md",
              "tests/test_packaging.py"):
        assert f in names, f
    assert not any(n.startswith((".venv", "site/", "build/", "dist/")) for n in names)


def _fresh_venv(path: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=300)
    python = path / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # numpy, torch and torch's dependencies from the dev venv, after the fresh venv's own packages
    (Path(site) / "zz_dev_venv_packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def test_installed_wheel_runs_in_a_fresh_venv(dist, tmp_path):
    python = _fresh_venv(tmp_path / "venv")
    r = subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "-q",
                        str(dist["wheel"])], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    elsewhere = tmp_path / "elsewhere"  # not the checkout: `import pyfa` must find the installed one
    elsewhere.mkdir()

    r = subprocess.run([str(tmp_path / "venv" / "bin" / "pyfa"), "--version"], cwd=elsewhere,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"pyfa {_version()}"

    code = (
        "import pathlib, pyfa, pyfa.torch, torch\n"
        "from importlib.metadata import version\n"
        "root = pathlib.Path(pyfa.__file__).parent\n"
        "print(root)\n"
        "print(version('pyfa-alignment'))\n"
        "assert (root / 'py.typed').is_file() and (root / 'julia_src' / 'PyFA' / 'Project.toml').is_file()\n"
        "layer = pyfa.torch.LinearFA(3, 2)\n"
        "x = torch.randn(4, 3, requires_grad=True)\n"
        "layer(x).sum().backward()\n"
        "assert torch.allclose(x.grad, torch.ones(4, 2) @ layer.feedback)\n"
    )
    r = subprocess.run([str(python), "-c", code], cwd=elsewhere, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    root, version = r.stdout.split()
    assert Path(root).is_relative_to(tmp_path / "venv"), f"pyfa was imported from {root}"
    assert version == _version()
