"""Hatchling build hook: ship a `pyfa/juliapkg.json` whose PyFA path works inside the wheel.

In a source checkout `pyfa/juliapkg.json` points at the Julia package by the relative path
``../julia/PyFA``. The wheel force-includes that folder elsewhere (see ``force-include`` in
pyproject.toml: ``pyfa/julia_src/PyFA``), so for a regular wheel this hook writes a copy of the
json whose PyFA ``path`` is the folder's place relative to ``pyfa/`` and puts it at
``pyfa/juliapkg.json`` in place of the checkout's (hatchling then skips the checkout file).
Editable installs keep the checkout's json, which resolves from the source tree.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

JSON = "pyfa/juliapkg.json"
JULIA_PACKAGE = "PyFA"


class JuliaPkgJsonHook(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict) -> None:
        self._tmpdir = None
        if self.target_name != "wheel" or version == "editable":
            return
        src = os.path.join(self.root, *JSON.split("/"))
        with open(src, encoding="utf-8") as fp:
            deps = json.load(fp)
        spec = deps["packages"][JULIA_PACKAGE]
        checkout_dir = os.path.normpath(os.path.join(os.path.dirname(src), spec["path"]))
        targets = {
            os.path.normpath(source): target
            for source, target in self.build_config.get_force_include().items()
        }
        if checkout_dir not in targets:
            raise RuntimeError(
                f"{JSON}: {JULIA_PACKAGE}'s path {spec['path']!r} ({checkout_dir}) is not "
                f"force-included into the wheel; force-include maps {sorted(targets)}"
            )
        in_wheel = os.path.relpath(targets[checkout_dir], os.path.dirname(JSON))
        spec["path"] = in_wheel.replace(os.sep, "/")
        # Outside the project root: hatchling then reserves the target and skips the checkout file.
        self._tmpdir = tempfile.mkdtemp(prefix="pyfa-build-")
        out = os.path.join(self._tmpdir, "juliapkg.json")
        with open(out, "w", encoding="utf-8") as fp:
            json.dump(deps, fp, indent=4)
            fp.write("\n")
        build_data["force_include"][out] = JSON

    def finalize(self, version: str, build_data: dict, artifact_path: str) -> None:
        if getattr(self, "_tmpdir", None):
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None
