"""Accuracy benchmark: every training mode on MNIST-1D, digits and Fashion-MNIST, against goals.

Not a test and not part of ``make bench`` (which runs ``benchmarks/bench_*.py``): the full run trains
about a hundred networks and takes hours on one CPU core. ``--quick`` runs every part for an epoch or
two on small subsets (minutes), to check that the benchmark itself works; its numbers mean nothing
and no goal is checked.

Parts (``--only`` picks some; each run is one ``pyfa.train.train`` with the torch backend):

- ``mnist1d``: MNIST-1D (4000 train / 1000 test), MLP 40-256-256-10 tanh, softmax cross-entropy,
  Adam lr 1e-3, batch 64, 150 epochs, seeds 0, 1, 2; every mode. Goals (mean test accuracy over the
  seeds): bp >= 69, kp/usf/brsf >= 67.5, frsf >= 66.5, dfa >= 61, fa >= 58, mean(kp, usf) -
  mean(fa, dfa) >= 5 points, and kp's top-layer W-B angle < 15 degrees at the end.
- ``digits``: scikit-learn's digits, MLP 64-128-128-10 relu, cross-entropy, Adam 1e-3, batch 32,
  50 epochs, seeds 0, 1, 2; every mode >= 96 %.
- ``fashion-mlp``: Fashion-MNIST (60,000 / 10,000), MLP 784-256-256-10 tanh (as MNIST-1D's; with relu
  FA's last-epoch accuracy swings by 2-4 points from epoch to epoch), cross-entropy, Adam 1e-3,
  batch 64, 10 epochs, seed 0; every mode >= 86.5 %.
- ``fashion-lenet``: Fashion-MNIST, LeNet-5 (BioTorch's, 28x28 zero-padded to 32x32), tanh,
  cross-entropy, Adam 1e-3, batch 64, 20 epochs, seed 0;
  bp >= 89.5, usf and frsf within 1.5 points of bp, fa and dfa >= 85.

Accuracy is the test accuracy after the last epoch (no early stopping, no model selection). Every
finished run's history is written to ``OUT/PART/MODE-seedS.json`` and a rerun skips the runs already
there, so an interrupted benchmark continues where it stopped. At the end ``OUT/results.json`` holds
the table, ``OUT/results.md`` the Markdown tables, and ``OUT/PART/`` the comparison plots of seed 0
(`pyfa.plots`: ``compare_curves.png`` and one figure per alignment metric, ``compare_wb_angle.png``,
``compare_update_angle.png``, ``compare_norm_ratio.png``). ``--plots-to DIR`` also writes them to
``DIR/PART_curves.png``, ``DIR/PART_wb_angle.png`` ... (``-`` in PART as ``_``) without title or
caption, as the docs show them; ``--plots-only`` redraws the plots from the histories in
``OUT/PART/`` and trains nothing. Exit status 0 when every goal checked is met (with
``--plots-only``: when every part chosen had histories to draw), 1 otherwise.

    python benchmarks/accuracy.py --quick
    nohup python benchmarks/accuracy.py --only mnist1d --out runs/accuracy > mnist1d.log 2>&1 &
    python benchmarks/accuracy.py --plots-only --only mnist1d --out runs/accuracy --plots-to docs/results
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pyfa.data import Dataset, load_dataset
from pyfa.train import TRAIN_MODES, History, train


@dataclass
class Part:
    name: str
    dataset: str
    title: str
    settings: dict
    seeds: tuple[int, ...]
    modes: tuple[str, ...] = TRAIN_MODES
    not_run: dict = field(default_factory=dict)  # mode -> why
    goals: tuple = ()  # (description, function(summary) -> (ok, measured text))
    per_mode: dict = field(default_factory=dict)  # mode -> settings that differ from `settings`


def _mean(summary, mode):
    return summary[mode]["mean"]


def _at_least(mode: str, value: float):
    return (f"{mode} >= {value:g} %", lambda s: (_mean(s, mode) >= value, f"{_mean(s, mode):.2f}"))


def _within(mode: str, ref: str, points: float):
    def check(s):
        gap = _mean(s, ref) - _mean(s, mode)
        return gap <= points, f"{mode} {_mean(s, mode):.2f} vs {ref} {_mean(s, ref):.2f}"
    return (f"{mode} within {points:g} points of {ref}", check)


def _gap_goal(s):
    gap = (_mean(s, "kp") + _mean(s, "usf")) / 2 - (_mean(s, "fa") + _mean(s, "dfa")) / 2
    return gap >= 5, f"{gap:.2f} points"


def _kp_angle_goal(s):
    angle = s["kp"]["top_wb_angle"]
    return angle < 15, f"{angle:.1f} degrees"


def _all_at_least(value: float):
    return (f"every mode >= {value:g} %", lambda s: (
        all(v["mean"] >= value for v in s.values()),
        ", ".join(f"{m} {v['mean']:.2f}" for m, v in s.items())))


def parts() -> dict[str, Part]:
    mlp = dict(optimizer="adam", lr=1e-3, loss="ce", model="mlp")
    return {p.name: p for p in [
        Part("mnist1d", "mnist1d", "MNIST-1D, MLP 40-256-256-10 tanh, 150 epochs, 3 seeds",
             dict(mlp, hidden=(256, 256), activation="tanh", batch_size=64, epochs=150), (0, 1, 2),
             goals=(_at_least("bp", 69), _at_least("kp", 67.5), _at_least("usf", 67.5),
                    _at_least("brsf", 67.5), _at_least("frsf", 66.5), _at_least("dfa", 61),
                    _at_least("fa", 58), ("mean(kp, usf) - mean(fa, dfa) >= 5 points", _gap_goal),
                    ("kp's top-layer W-B angle < 15 degrees at the end", _kp_angle_goal))),
        Part("digits", "digits", "digits, MLP 64-128-128-10 relu, 50 epochs, 3 seeds",
             dict(mlp, hidden=(128, 128), activation="relu", batch_size=32, epochs=50), (0, 1, 2),
             goals=(_all_at_least(96),)),
        Part("fashion-mlp", "fashion-mnist", "Fashion-MNIST, MLP 784-256-256-10 tanh, 10 epochs",
             dict(mlp, hidden=(256, 256), activation="tanh", batch_size=64, epochs=10), (0,),
             goals=(_all_at_least(86.5),)),
        Part("fashion-lenet", "fashion-mnist", "Fashion-MNIST, LeNet-5 tanh, 20 epochs",
             # tanh, LeCun's: with relu, FA's and DFA's conv layers never align (20 epochs, Adam
             # 1e-3: fa 79.8 %, dfa 62.9 %; at BioTorch's 1e-4 both 82.2 %)
             dict(mlp, model="lenet", activation="tanh", batch_size=64, epochs=20), (0,),
             goals=(_at_least("bp", 89.5), _within("usf", "bp", 1.5), _within("frsf", "bp", 1.5),
                    _at_least("fa", 85), _at_least("dfa", 85))),
    ]}


def quick_part(part: Part) -> Part:
    """`part` shrunk to a smoke test: at most 2 epochs, one seed, no goals."""
    settings = dict(part.settings, epochs=min(2, part.settings["epochs"]))
    return Part(part.name, part.dataset, part.title + " (quick)", settings, part.seeds[:1],
                part.modes, part.not_run, (), part.per_mode)


def quick_data(ds: Dataset) -> Dataset:
    """The first 3000 training and 1000 test samples of `ds`."""
    from pyfa.data import from_arrays

    return from_arrays(ds.x_train[:3000], ds.labels_train[:3000], ds.x_test[:1000],
                       ds.labels_test[:1000], n_classes=ds.n_classes, name=ds.name,
                       image_shape=ds.image_shape)


def run_part(part: Part, ds: Dataset, out: Path, threads: int, plots_to: Path | None = None) -> dict:
    """Train every mode and seed of `part` not already in `out`, draw its plots (`draw_plots`);
    return its summary."""
    histories = train_runs(part, ds, out, threads)
    summary = _summarise(histories)
    draw_plots(part, {m: hs[0] for m, hs in histories.items()}, out, plots_to)
    return summary


def train_runs(part: Part, ds: Dataset, out: Path, threads: int) -> dict[str, list[History]]:
    """Train every mode and seed of `part` whose history is not in ``OUT/PART/`` yet (and save it
    there); return every mode's histories, in seed order."""
    folder = out / part.name
    folder.mkdir(parents=True, exist_ok=True)
    histories: dict[str, list[History]] = {}
    for mode in part.modes:
        for seed in part.seeds:
            path = folder / f"{mode}-seed{seed}.json"
            if path.is_file():
                h = History.from_json(path)
            else:
                t0 = time.perf_counter()
                h, _ = train(dataset=ds, mode=mode, seed=seed, threads=threads, progress=False,
                             **{**part.settings, **part.per_mode.get(mode, {})})
                h.to_json(path)
                print(f"{part.name}: {mode} seed {seed}: test {100 * h.test_acc[-1]:.2f} % "
                      f"({time.perf_counter() - t0:.0f} s)", flush=True)
            histories.setdefault(mode, []).append(h)
    return histories


def _summarise(histories: dict[str, list[History]]) -> dict:
    summary = {}
    warnings.filterwarnings("ignore", "Mean of empty slice", RuntimeWarning)  # DFA's top layer
    for mode, hs in histories.items():
        accs = [100 * h.test_acc[-1] for h in hs]
        top = [h.weight_feedback_angle[-1][-1] for h in hs]
        summary[mode] = {
            "test_acc": accs, "mean": float(np.mean(accs)), "std": float(np.std(accs)),
            "train_acc": float(np.mean([100 * h.train_acc[-1] for h in hs])),
            "top_wb_angle": float(np.nanmean(top)) if not all(map(math.isnan, top)) else math.nan,
            "wb_angle": np.nanmean([h.weight_feedback_angle[-1] for h in hs], axis=0).tolist(),
            "update_angle": np.nanmean([h.update_angle[-1] for h in hs], axis=0).tolist(),
            "train_time": float(np.mean([sum(h.epoch_time) for h in hs])),
        }
    return summary


def saved_histories(part: Part, out: Path) -> dict[str, History]:
    """The history of `part`'s first seed saved in ``OUT/PART/`` for each mode (in `part`'s order);
    the modes without one are left out."""
    folder = out / part.name
    return {mode: History.from_json(folder / f"{mode}-seed{part.seeds[0]}.json")
            for mode in part.modes if (folder / f"{mode}-seed{part.seeds[0]}.json").is_file()}


def draw_plots(part: Part, histories: dict[str, History], out: Path, plots_to: Path | None = None
               ) -> list[Path]:
    """The comparison plots of `histories` (one run per mode) in ``OUT/PART/`` (``compare_*.png``,
    with titles and captions) and, given `plots_to`, in it as ``PART_*.png`` without them (the page
    that shows them says what they show); returns the paths written."""
    from pyfa import plots

    paths = plots.save_compare_plots(histories, out / part.name, per_metric=True)
    if plots_to is not None:
        paths += plots.save_compare_plots(histories, plots_to, prefix=part.name.replace("-", "_") + "_",
                                          per_metric=True, title=False, caption=False)
    return paths


def check_goals(part: Part, summary: dict) -> list[dict]:
    results = []
    for text, check in part.goals:
        try:
            ok, measured = check(summary)
        except KeyError as e:
            ok, measured = False, f"not measured ({e} missing)"
        results.append({"goal": text, "met": bool(ok), "measured": measured})
    return results


def markdown(part: Part, summary: dict, goals: list[dict]) -> str:
    seeds = len(part.seeds)
    head = "mean ± std over seeds " + ", ".join(map(str, part.seeds)) if seeds > 1 else (
        f"seed {part.seeds[0]}")
    lines = [f"### {part.title}", "", f"Test accuracy after the last epoch ({head}).", "",
             "| mode | test accuracy (%) | train accuracy (%) | W–B angle per layer (°) | "
             "update angle per layer (°) | train time (s) |", "|---|---|---|---|---|---|"]
    for mode in part.modes + tuple(part.not_run):
        if mode in part.not_run:
            lines.append(f"| {mode} | not run: {part.not_run[mode]} | | | | |")
            continue
        s = summary[mode]
        acc = f"{s['mean']:.2f} ± {s['std']:.2f}" if seeds > 1 else f"{s['mean']:.2f}"
        wb = ", ".join("–" if math.isnan(a) else f"{a:.0f}" for a in s["wb_angle"])
        up = ", ".join("–" if math.isnan(a) else f"{a:.0f}" for a in s["update_angle"])
        lines.append(f"| {mode} | {acc} | {s['train_acc']:.2f} | {wb} | {up} | "
                     f"{s['train_time']:.0f} |")
    if goals:
        lines += ["", "| goal | measured | met |", "|---|---|---|"]
        lines += [f"| {g['goal']} | {g['measured']} | {'yes' if g['met'] else '**no**'} |"
                  for g in goals]
    return "\n".join(lines) + "\n"


def redraw(chosen: list[str], out: Path, plots_to: Path | None, *, quick: bool = False) -> int:
    """``--plots-only``: the plots of each part in `chosen` from the histories saved in
    ``OUT/PART/``, nothing trained; 1 if a part has none."""
    status = 0
    for name in chosen:
        part = quick_part(parts()[name]) if quick else parts()[name]
        histories = saved_histories(part, out)
        if not histories:
            print(f"{name}: no histories in {out / name} (OUT/PART/MODE-seed{part.seeds[0]}.json): "
                  "nothing to draw", file=sys.stderr)
            status = 1
            continue
        paths = draw_plots(part, histories, out, plots_to)
        print(f"{name} ({', '.join(histories)}): wrote {', '.join(map(str, paths))}", flush=True)
    return status


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a smoke test: tiny subsets, 1-2 epochs")
    p.add_argument("--only", default=None, help="comma-separated parts: " + ", ".join(parts()))
    p.add_argument("--out", default=None, help="default: runs/accuracy (runs/accuracy-quick)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1)")
    p.add_argument("--data-dir", default=None, help="where the Fashion-MNIST IDX files are")
    p.add_argument("--plots-only", action="store_true",
                   help="train nothing: redraw the plots of the histories saved in OUT/PART")
    p.add_argument("--plots-to", default=None, type=Path, metavar="DIR",
                   help="also write each part's plots to DIR/PART_*.png, without title or caption "
                        "(for the docs: --plots-to docs/results)")
    p.add_argument("--modes", default=None, metavar="MODES",
                   help="comma-separated modes: train only these (say, to share a part between "
                        "processes on the same --out) and summarise nothing; a later run without "
                        "--modes reads their histories and checks the goals")
    args = p.parse_args(argv)
    chosen = list(parts()) if args.only is None else [s.strip() for s in args.only.split(",")]
    unknown = [c for c in chosen if c not in parts()]
    if unknown:
        p.error(f"unknown part(s) {unknown}; expected {list(parts())}")
    modes = None if args.modes is None else [m.strip() for m in args.modes.split(",") if m.strip()]
    if modes is not None and (not modes or set(modes) - set(TRAIN_MODES)):
        p.error(f"--modes {args.modes!r}: expected modes among {', '.join(TRAIN_MODES)}")
    out = Path(args.out or ("runs/accuracy-quick" if args.quick else "runs/accuracy"))
    if args.plots_only:
        return redraw(chosen, out, args.plots_to, quick=args.quick)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    all_met = True
    for name in chosen:
        part = parts()[name]
        try:
            ds = load_dataset(part.dataset, data_dir=args.data_dir if part.dataset ==
                              "fashion-mnist" else None)
        except FileNotFoundError as e:
            print(f"{name}: skipped: {e}", file=sys.stderr)
            all_met = False
            continue
        if args.quick:
            part, ds = quick_part(part), quick_data(ds)
        if modes is not None:
            train_runs(dataclasses.replace(part, modes=tuple(m for m in part.modes if m in modes)),
                       ds, out, args.threads)
            continue
        t0 = time.perf_counter()
        summary = run_part(part, ds, out, args.threads, args.plots_to)
        goals = check_goals(part, summary)
        all_met &= all(g["met"] for g in goals)
        results[name] = {"title": part.title, "settings": {k: list(v) if isinstance(v, tuple) else v
                                                           for k, v in part.settings.items()},
                         "per_mode": part.per_mode, "seeds": list(part.seeds), "summary": summary,
                         "goals": goals, "not_run": part.not_run, "quick": args.quick}
        results_path.write_text(json.dumps(results, indent=1))
        text = markdown(part, summary, goals)
        print(text + f"({time.perf_counter() - t0:.0f} s)\n", flush=True)
    if modes is not None:
        print(f"trained {', '.join(modes)} of {', '.join(chosen)} into {out}: run again without "
              "--modes to summarise and check the goals")
        return 0
    (out / "results.md").write_text("\n".join(
        markdown(quick_part(parts()[n]) if r["quick"] else parts()[n], r["summary"], r["goals"])
        for n, r in results.items()))
    if args.quick:
        print("quick run: the numbers mean nothing and no goal was checked")
        return 0
    print("every goal met" if all_met else "SOME GOALS NOT MET (see above)")
    return 0 if all_met else 1


if __name__ == "__main__":
    sys.exit(main())
