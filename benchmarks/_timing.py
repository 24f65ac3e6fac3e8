"""How the benchmarks time things: alternating rounds, the fastest call per round, ratios of medians.

Machines here are shared and noisy, so only ratios measured side by side mean anything:

- `rounds`: in each round every contender runs back to back (the order rotating from round to
  round), each for about `min_time` seconds of single calls, and its time in that round is its
  fastest call: another process's burst only ever adds time, so the minimum is the least disturbed
  estimate of the same deterministic work;
- `ratio`: the median over rounds of one contender's round time over another's (drift between
  rounds hits both alike).

`quiet_process` takes two common sources of noise out, for every contender alike: threads (one by
default: a multi-threaded kernel waits for its slowest thread, so another process's burst stalls
it) and malloc's page-fault lottery (`keep_freed_memory`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import statistics
import time


def rounds(steps: dict, n_rounds: int, min_time: float) -> dict[str, list[float]]:
    """Per contender (name -> zero-argument callable), its time in each round, in seconds."""
    names = list(steps)
    per_call = {}
    for name, fn in steps.items():  # warm-up (and, compiled, the compilation), then the call's cost
        for _ in range(3):
            fn()
        t0 = time.perf_counter()
        for _ in range(2):
            fn()
        per_call[name] = (time.perf_counter() - t0) / 2
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(n_rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            fn, best = steps[name], float("inf")
            for _ in range(max(3, math.ceil(min_time / max(per_call[name], 1e-9)))):
                t0 = time.perf_counter()
                fn()
                best = min(best, time.perf_counter() - t0)
            times[name].append(best)
    return times


def ratio(times: dict[str, list[float]], subject: str, baseline: str) -> float:
    """The median over rounds of `subject`'s time / `baseline`'s."""
    return statistics.median(s / b for s, b in zip(times[subject], times[baseline], strict=True))


def median_us(times: dict[str, list[float]], name: str) -> float:
    return statistics.median(times[name]) * 1e6


def keep_freed_memory() -> bool:
    """Have glibc's malloc keep freed blocks up to 32 MiB in the heap instead of unmapping them
    (``mallopt``: M_MMAP_THRESHOLD, and M_TRIM_THRESHOLD off). By default each large tensor is a
    fresh mmap whose pages fault in on first touch; at these sizes that is a third to a half of a
    step, and glibc's adaptive threshold hands those faults to whichever contender the allocation
    sequence happens to pick. This takes that lottery out, for every contender alike (as jemalloc or
    tcmalloc would). False where there is no glibc."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_mmap_threshold, 32 << 20) and libc.mallopt(m_trim_threshold, 1 << 30))
    except (OSError, AttributeError):
        return False


def add_arguments(ap) -> None:
    ap.add_argument("--threads", type=int, default=1,
                    help="torch.set_num_threads(N) first; 0: torch's default (default: 1)")
    ap.add_argument("--system-malloc", action="store_true",
                    help="leave glibc's malloc as it is (see _timing.keep_freed_memory)")


def quiet_process(args) -> str:
    """Apply --threads and --system-malloc; return a line saying what holds."""
    import torch

    kept = not args.system_malloc and keep_freed_memory()
    if args.threads:
        torch.set_num_threads(args.threads)
    return (f"torch {torch.__version__}, {torch.get_num_threads()} CPU thread(s); "
            + ("freed memory kept by malloc" if kept else "malloc as the system has it")
            + "; ratios: medians over alternating rounds of each round's fastest call")
