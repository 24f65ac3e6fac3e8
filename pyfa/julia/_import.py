"""The one place that imports juliacall (like PySR's julia_import), and what it may download.

juliacall reads its options from the environment once, at ``import juliacall``, which also resolves
the Julia dependencies (juliapkg: find Julia, or download it; install Flux, PyFA, ... into the
environment's Julia project) and starts Julia in this process. So everything here happens inside
`import_juliacall()`, never at import time of this module, and before anything imports torch.

**Nothing is downloaded by surprise** (`download_policy`). juliapkg, left alone, downloads Julia
and hundreds of MB of packages the first time anything imports juliacall. pyfa lets it do so only
when asked, in this order:

1. ``PYFA_JULIA_INSTALL=1`` (what ``make julia`` / ``python -m pyfa.julia install`` set): juliapkg
   may download Julia if none is found, and install pyfa's Julia packages.
2. ``PYTHON_JULIAPKG_OFFLINE`` (juliapkg's own switch) set by you: honoured as it is.
3. A Julia you installed: ``PYTHON_JULIAPKG_EXE``, else ``julia`` on PATH, which pyfa then hands
   to juliapkg as its executable: the Julia parts run with it, and juliapkg may install
   pyfa's Julia packages into it the first time, but never downloads another Julia.
4. Otherwise juliapkg runs offline: a Julia and packages installed earlier (by ``make julia``)
   still work; if there are none, Julia is reported unavailable at once, with the one command
   that installs it.

Threads and signals are left to juliacall's defaults and your settings: nothing in pyfa uses Julia
threads, juliacall honours ``JULIA_NUM_THREADS`` when ``PYTHON_JULIACALL_THREADS`` is unset, and
``PYTHON_JULIACALL_HANDLE_SIGNALS=yes`` (needed for more than one thread) would cost Ctrl-C
(``KeyboardInterrupt``) during ``pyfa train --backend julia``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import ssl
import subprocess
import sys
import warnings
from dataclasses import dataclass

#: Set to 1 to let juliapkg download Julia and install pyfa's Julia packages.
INSTALL_VAR = "PYFA_JULIA_INSTALL"
#: The documented way to opt in: installs Julia if needed, pyfa's Julia packages, Enzyme, Mooncake.
INSTALL_COMMAND = "make julia"
INSTALL_COMMAND_PY = "python -m pyfa.julia install"
_YES = ("1", "yes", "true")


class JuliaUnavailableError(RuntimeError):
    """Julia (or the Julia package PyFA) cannot be started in this process; the message says why."""


@dataclass(frozen=True)
class DownloadPolicy:
    """What juliapkg may do in this process (see the module docstring)."""

    offline: bool | None  # juliapkg offline (no Julia download, no package installs); None:
    #                       your PYTHON_JULIAPKG_OFFLINE decides
    exe: str | None     # a Julia found on PATH that pyfa hands to juliapkg (PYTHON_JULIAPKG_EXE)
    why: str            # which rule decided, in a few words


def download_policy(environ=None, which=shutil.which) -> DownloadPolicy:
    """The rule of the module docstring that applies to `environ` (default: os.environ)."""
    env = os.environ if environ is None else environ
    if env.get(INSTALL_VAR, "").lower() in _YES:
        return DownloadPolicy(False, None, f"{INSTALL_VAR}={env[INSTALL_VAR]}: downloads allowed")
    if "PYTHON_JULIAPKG_OFFLINE" in env or "juliapkg-offline" in sys._xoptions:
        return DownloadPolicy(None, None, "PYTHON_JULIAPKG_OFFLINE is set: juliapkg follows it")
    if env.get("PYTHON_JULIAPKG_EXE"):
        return DownloadPolicy(False, None, f"your Julia, PYTHON_JULIAPKG_EXE={env['PYTHON_JULIAPKG_EXE']}")
    found = which("julia")
    if found:
        return DownloadPolicy(False, found, f"your Julia, {found} (on PATH)")
    return DownloadPolicy(True, None, f"no Julia installed and {INSTALL_VAR} unset: nothing is downloaded")


_imported_by_pyfa = False


def import_juliacall():
    """Import juliacall (starting Julia) and return the module; raise JuliaUnavailableError if not.

    Applies `download_policy` first. Warns when torch is already imported (torch before juliacall
    has been reported to crash; call ``pyfa.julia.load()`` before importing torch), and when
    juliacall was imported by someone else first (then pyfa's policy did not apply).
    """
    global _imported_by_pyfa
    if "juliacall" in sys.modules:
        juliacall = sys.modules["juliacall"]
        if not _imported_by_pyfa:
            warnings.warn(
                "juliacall was imported before pyfa.julia started Julia, so pyfa's settings did "
                f"not apply (what juliapkg may download: {INSTALL_VAR}); Julia runs as whoever "
                "imported juliacall first set it up.",
                RuntimeWarning,
                stacklevel=3,
            )
            _imported_by_pyfa = True  # warn once
        if getattr(juliacall, "Main", None) is None:
            raise JuliaUnavailableError(
                "Julia is unavailable: juliacall was imported without starting Julia "
                "(PYTHON_JULIACALL_INIT=no?); restart Python and let pyfa.julia.load() import it.")
        return juliacall
    policy = apply_download_policy()
    if "torch" in sys.modules:
        warnings.warn(
            "torch was imported before juliacall; this has been reported to crash (segfaults, heap "
            "corruption). Call pyfa.julia.load() before importing torch.",
            RuntimeWarning,
            stacklevel=3,
        )
    try:
        # juliapkg reports its progress with print(): keep it off stdout, where reports go
        with contextlib.redirect_stdout(sys.stderr):
            import juliacall
    except BaseException as e:  # juliacall raises plain Exception, URLError, CalledProcessError...
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        raise JuliaUnavailableError(explain(e, policy)) from e
    _imported_by_pyfa = True
    return juliacall


def apply_download_policy() -> DownloadPolicy:
    """Tell juliapkg the policy (before juliacall is imported); return it.

    The Julia found on PATH goes where juliapkg keeps ``PYTHON_JULIAPKG_EXE`` (its STATE, read
    once when juliapkg is imported, which may have happened already), not into os.environ.
    """
    policy = download_policy()
    import juliapkg
    from juliapkg.state import STATE

    if policy.exe is not None and not STATE.get("override_executable"):
        STATE["override_executable"] = policy.exe
    if policy.offline is not None:
        juliapkg.offline(policy.offline)
    return policy


# --------------------------------------------------------------------------- explaining failures


def julia_version(exe: str | None) -> tuple[int, ...] | None:
    """(major, minor, patch) of ``exe --version``, or None when it is no working Julia."""
    if not exe:
        return None
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"julia version (\d+)\.(\d+)\.(\d+)", out)
    return tuple(int(g) for g in m.groups()) if m else None


def openssl_caps_julia() -> bool:
    """juliapkg (0.1.28, `deps.openssl_compat`) allows only Julia ≤ 1.11 when Python's OpenSSL is
    older than 3.5, the version Julia 1.12 ships (juliacall makes Julia share Python's OpenSSL)."""
    return tuple(ssl.OPENSSL_VERSION_INFO[:2]) < (3, 5)


def supported_julia() -> str:
    """The Julia versions pyfa can use with this Python."""
    return "1.10 or 1.11" if openssl_caps_julia() else "≥ 1.10"


def how_to_fix() -> str:
    cap = (f" (this Python's {ssl.OPENSSL_VERSION} is older than 3.5, so juliapkg allows Julia "
           "1.10 and 1.11 only)" if openssl_caps_julia() else "")
    return (f"To install Julia and pyfa's Julia packages (about 1 GB, minutes, once): `{INSTALL_COMMAND}` "
            f"(or `{INSTALL_COMMAND_PY}`, or set {INSTALL_VAR}=1). Or install Julia {supported_julia()}"
            f" yourself (juliaup or julialang.org) and put `julia` on PATH or set "
            f"PYTHON_JULIAPKG_EXE=/path/to/julia{cap}.")


def explain(e: BaseException, policy: DownloadPolicy | None = None) -> str:
    """A message for a failed ``import juliacall``: what went wrong, then what to do."""
    chain, cur = [], e
    while cur is not None and len(chain) < 10 and not isinstance(cur, JuliaUnavailableError):
        chain.append(cur)
        cur = cur.__cause__ or cur.__context__
    text = " | ".join(f"{type(c).__name__}: {c}" for c in chain)
    names = {type(c).__name__ for c in chain}
    exe = os.environ.get("PYTHON_JULIAPKG_EXE") or (policy.exe if policy else None)
    found = julia_version(exe or shutil.which("julia"))
    user_offline = os.environ.get("PYTHON_JULIAPKG_OFFLINE", "").lower() == "yes"
    if isinstance(e, ModuleNotFoundError) and e.name == "juliacall":
        what = "juliacall is not installed (pip install juliacall)."
    elif found is not None and found[:2] >= (1, 12) and openssl_caps_julia():
        v = ".".join(map(str, found))
        what = (f"the Julia found ({exe or shutil.which('julia')}) is {v}, but with this Python "
                f"juliapkg allows Julia 1.10 and 1.11 only: Python's {ssl.OPENSSL_VERSION} is older "
                "than 3.5, which Julia 1.12 needs (juliacall makes Julia share Python's OpenSSL). "
                "Install Julia 1.11 (`juliaup add 1.11`) and set PYTHON_JULIAPKG_EXE to it, or use a "
                f"Python built with OpenSSL ≥ 3.5 ({text}).")
    elif policy is not None and policy.offline and found is None and "could not find Julia" in text:
        what = "no Julia is installed, and pyfa does not download one unless asked."
    elif "URLError" in names or "gaierror" in names:
        what = ("no Julia was found and none could be downloaded: the network is unreachable "
                f"({text}).")
    elif "could not find Julia" in text or "is not a Julia executable" in text:
        what = f"no usable Julia was found ({text})."
        if os.environ.get("PYTHON_JULIAPKG_EXE"):
            what += f" PYTHON_JULIAPKG_EXE={os.environ['PYTHON_JULIAPKG_EXE']} is set."
    elif "CalledProcessError" in names:
        what = ("Julia was found but installing the Julia packages failed (Julia's Pkg output is "
                f"above; network access is needed the first time) ({text}).")
    else:
        what = f"juliacall failed to start Julia ({text})."
    if user_offline:
        what += (" PYTHON_JULIAPKG_OFFLINE=yes is set: juliapkg may neither download Julia nor "
                 "install packages, so Julia and every Julia package must already be installed "
                 "in the juliapkg project.")
    return f"Julia is unavailable: {what} {how_to_fix()}"
