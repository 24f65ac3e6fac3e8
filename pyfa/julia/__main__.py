"""``python -m pyfa.julia [install|status]``: set up the Julia backend, or say how it stands.

``install`` (what ``make julia`` runs) opts in to downloads for this process: juliapkg downloads
Julia if none is found and installs pyfa's Julia packages, Enzyme and Mooncake included (about
1 GB, minutes, once); then every AD backend is checked to give FA. ``status`` downloads nothing: it
starts Julia if it can and reports the same. Exit status 0 when Julia and the default AD backend
(Zygote) work, 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pyfa.julia", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", nargs="?", choices=("install", "status"), default="status",
                        help="install: download and install what is missing; status: only report "
                             "(default)")
    parser.add_argument("--ad", default="enzyme,mooncake",
                        help="install: the optional AD backends to install, comma-separated, or "
                             "'none' (default: enzyme,mooncake)")
    args = parser.parse_args(argv)

    import pyfa.julia as jl  # before torch: nothing here imports it

    if args.command == "install":
        ad = [] if args.ad.strip() == "none" else [a.strip() for a in args.ad.split(",") if a.strip()]
        try:
            jl.install(ad)
        except (ValueError, RuntimeError) as e:  # JuliaUnavailableError is a RuntimeError
            print(f"pyfa.julia: {e}", file=sys.stderr)
            return 1
    else:
        print(f"pyfa.julia: download policy: {jl.download_policy().why}")
        if not jl.available():
            print(f"pyfa.julia: {jl.unavailable_reason()}", file=sys.stderr)
            return 1
    main = jl.load()
    print(f"pyfa.julia: Julia {main.seval('string(VERSION)')} at {main.seval('Sys.BINDIR')}, "
          f"PyFA loaded from {main.seval('pkgdir(PyFA)')}")
    ok = True
    for ad in jl.AD_BACKENDS:
        reason = jl.ad_unavailable_reason(ad)
        print(f"  {ad:<9}{'FA, checked' if reason is None else reason}")
        ok = ok and (ad != "zygote" or reason is None)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
