"""The one place that imports juliacall, after setting its environment (like PySR's julia_import).

juliacall reads its options from the environment once, at ``import juliacall``, which also resolves
the Julia dependencies (juliapkg: find or download Julia, then install Flux, PyFA, ... into the
environment's Julia project) and starts Julia in this process. So everything here happens inside
`import_juliacall()`, never at import time of this module.

Defaults, applied with ``os.environ.setdefault`` (a value the user set always wins):

- ``PYTHON_JULIACALL_THREADS=auto``: Julia may use every core;
- ``PYTHON_JULIACALL_HANDLE_SIGNALS=yes``: required as soon as Julia runs more than one thread
  (otherwise Julia's GC signals can crash Python).
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings

ENV_DEFAULTS = {
    "PYTHON_JULIACALL_THREADS": "auto",
    "PYTHON_JULIACALL_HANDLE_SIGNALS": "yes",
}

HOW_TO_FIX = (
    "To use the Julia backend, either install Julia >= 1.10 yourself (juliaup or julialang.org) "
    "and put `julia` on PATH or set PYTHON_JULIAPKG_EXE=/path/to/julia, or give this machine "
    "network access so that juliapkg can download Julia and the Julia packages (Flux, PyFA's "
    "dependencies) on first use. The first start installs and precompiles them (minutes)."
)


class JuliaUnavailableError(RuntimeError):
    """Julia (or the Julia package PyFA) cannot be started in this process; the message says why."""


def set_env_defaults() -> None:
    """Set juliacall's environment defaults unless the user set them; warn on risky values."""
    for key, value in ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)
    threads = os.environ["PYTHON_JULIACALL_THREADS"]
    if threads != "1" and os.environ["PYTHON_JULIACALL_HANDLE_SIGNALS"] != "yes":
        warnings.warn(
            f"PYTHON_JULIACALL_THREADS={threads} with PYTHON_JULIACALL_HANDLE_SIGNALS="
            f"{os.environ['PYTHON_JULIACALL_HANDLE_SIGNALS']}: multithreaded Julia needs "
            "PYTHON_JULIACALL_HANDLE_SIGNALS=yes to avoid segfaults.",
            RuntimeWarning,
            stacklevel=3,
        )


def import_juliacall():
    """Import juliacall (starting Julia) and return the module; raise JuliaUnavailableError if not.

    Sets `ENV_DEFAULTS` first. Warns when torch is already imported (torch before juliacall has been
    reported to crash; import pyfa.julia and call ``pyfa.julia.load()`` before torch), and when
    juliacall was imported by someone else first (then these defaults could not apply).
    """
    if "juliacall" in sys.modules and getattr(sys.modules["juliacall"], "Main", None) is not None:
        for key, value in ENV_DEFAULTS.items():
            if os.environ.get(key) != value:
                warnings.warn(
                    f"juliacall was imported before pyfa.julia with {key}={os.environ.get(key)!r}; "
                    f"pyfa would have set {key}={value}.",
                    RuntimeWarning,
                    stacklevel=3,
                )
        return sys.modules["juliacall"]
    set_env_defaults()
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
        raise JuliaUnavailableError(explain(e)) from e
    return juliacall


def explain(e: BaseException) -> str:
    """A message for a failed ``import juliacall``: what went wrong, then what to do."""
    chain, cur = [], e
    while cur is not None and len(chain) < 10:
        chain.append(cur)
        cur = cur.__cause__ or cur.__context__
    text = " | ".join(f"{type(c).__name__}: {c}" for c in chain)
    names = {type(c).__name__ for c in chain}
    offline = os.environ.get("PYTHON_JULIAPKG_OFFLINE", "").lower() == "yes"
    exe = os.environ.get("PYTHON_JULIAPKG_EXE")
    if isinstance(e, ModuleNotFoundError) and e.name == "juliacall":
        what = "juliacall is not installed (pip install juliacall)."
    elif "URLError" in names or "gaierror" in names:
        what = ("no Julia was found and none could be downloaded: the network is unreachable "
                f"({text}).")
    elif "could not find Julia" in text or "is not a Julia executable" in text:
        what = f"no usable Julia was found ({text})."
        if exe:
            what += f" PYTHON_JULIAPKG_EXE={exe} is set."
    elif "CalledProcessError" in names:
        what = ("Julia was found but installing the Julia packages failed (Julia's Pkg output is "
                f"above; network access is needed the first time) ({text}).")
    else:
        what = f"juliacall failed to start Julia ({text})."
    if offline:
        what += (" PYTHON_JULIAPKG_OFFLINE=yes is set: juliapkg may neither download Julia nor "
                 "install packages, so Julia and every Julia package must already be installed "
                 "in the juliapkg project.")
    return f"Julia is unavailable: {what} {HOW_TO_FIX}"
