"""The ``pyfa train`` command: options, checks, the run folder, signals, exit status.

Order of work, so that a mistake costs nothing: every option is checked, then Julia (for
``--backend julia``), then the dataset is loaded, then ``--out`` is claimed (created and locked,
`pyfa.train.rundir`), and only then does training start, under `StopOnSignals`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
from pathlib import Path

from pyfa.cli import positive_int_arg, seed_arg
from pyfa.data import DATASETS, TASKS, load_dataset, source_of
from pyfa.network import ACTIVATIONS, DEFAULT_ACTIVATION
from pyfa.train.config import (
    BACKENDS,
    DEFAULT_LR,
    DEFAULT_WEIGHT_DECAY,
    LOSSES,
    MODELS,
    OPTIMIZERS,
    TRAIN_MODES,
    TrainConfig,
    check_config,
)
from pyfa.train.history import History, write_text
from pyfa.train.rundir import (
    CHECKPOINT,
    RunFolder,
    RunFolderError,
    StopOnSignals,
    check_epochs,
    out_problem,
    read_resume_point,
    resume_dataset,
)

DEFAULT_EPOCHS = 20
EXIT_STATUS = """\
exit status:
  0    training finished (with --resume: also when nothing was left to train)
  1    training stopped because the loss became NaN or infinite; --out keeps the last finite epoch
  2    a bad option, an unknown or invalid dataset, an unusable or busy --out, a folder --resume
       cannot continue, or --backend julia without a working Julia
  130  interrupted by Ctrl-C (SIGINT), 143 by SIGTERM: --out keeps the last complete epoch;
       continue with --resume DIR"""
#: Options --resume accepts besides the folder: the run keeps every other setting it had (the data
#: may have moved: --data-dir says where; their SHA-256 is checked).
_RESUME_OPTIONS = ("epochs", "no_progress", "data_dir")


class _Usage(Exception):
    """A problem with the command line or its inputs: printed as ``pyfa train: ...``, exit 2."""

    def __init__(self, message: str, prefix: str = "pyfa train"):
        super().__init__(message)
        self.prefix = prefix


def add_arguments(parser) -> None:
    parser.add_argument("--backend", choices=BACKENDS, default="torch", help="default: torch")
    parser.add_argument("--mode", choices=TRAIN_MODES, default="fa",
                        help="default: fa (kp: Kolen-Pollack; dfa: direct feedback alignment)")
    parser.add_argument(
        "--compare", metavar="MODES", default=None,
        help="comma-separated modes, each named once (e.g. fa,bp,kp,dfa), trained on the same data "
        "and seed and plotted together; overrides --mode",
    )
    parser.add_argument(
        "--dataset", default="digits",
        help=f"{', '.join(DATASETS)} (default: digits), or a .npz with x_train, y_train, x_test, "
        "y_test",
    )
    parser.add_argument(
        "--data-dir", metavar="DIR", default=None,
        help="where the Fashion-MNIST IDX files are (default: Debian's "
        "/usr/share/datasets/fashion-mnist, from `apt-get install dataset-fashion-mnist`)",
    )
    parser.add_argument("--model", choices=MODELS, default="mlp",
                        help="mlp (default; widths from --hidden) or lenet (LeNet-5, for images: "
                        "fashion-mnist)")
    parser.add_argument(
        "--task", choices=TASKS, default=None,
        help="how to read a .npz's y: classification (the default: integer labels 0..K-1) or "
        "regression (real-valued targets); digits and forum have their own",
    )
    parser.add_argument(
        "--hidden", default="256", type=_hidden_arg,
        help="hidden widths, comma-separated (default: 256; '' for none)",
    )
    parser.add_argument("--activation", choices=ACTIVATIONS, default=DEFAULT_ACTIVATION,
                        help=f"hidden activation; the output layer is linear (default: "
                        f"{DEFAULT_ACTIVATION})")
    parser.add_argument("--epochs", type=positive_int_arg, default=None,
                        help=f"epochs in all (default: {DEFAULT_EPOCHS}; with --resume: the run's "
                        "own, or more to train on)")
    parser.add_argument("--batch-size", type=int, default=32, help="default: 32")
    parser.add_argument("--loss", choices=LOSSES, default=None,
                        help="ce (softmax cross-entropy; the default for classification) or mse "
                        "(on one-hot targets; the default for regression)")
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default="adam",
                        help="default: adam (AdamW when there is weight decay)")
    parser.add_argument(
        "--lr", type=float, default=None,
        help="learning rate (default: "
        + ", ".join(f"{k} {v:g}" for k, v in DEFAULT_LR.items()) + ")",
    )
    parser.add_argument("--momentum", type=float, default=0.9,
                        help="for --optimizer momentum (default: 0.9)")
    parser.add_argument(
        "--weight-decay", metavar="LAMBDA", type=float, default=None,
        help="decoupled weight decay λ on weights (and kp's feedback), not biases: each step "
        "shrinks them by lr·λ; default: "
        + ", ".join(f"{m} {v:g}/lr" for m, v in DEFAULT_WEIGHT_DECAY.items()) + ", else 0",
    )
    parser.add_argument(
        "--seed", type=seed_arg, default=0,
        help="initial weights, feedback, data order and brsf's draws; 0 to 2**63-1 (default: 0)",
    )
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument(
        "--threads", type=int, default=1,
        help="torch CPU threads while training, and numpy's BLAS threads for the metrics "
        "(default: 1, fastest for small MLPs; 0: the libraries' own)",
    )
    parser.add_argument(
        "--out", metavar="DIR", default=None,
        help="write history.json, model.npz (checkpoint, after every epoch) and PNG plots here; "
        "a new or empty folder unless --force; locked while the run lasts",
    )
    parser.add_argument(
        "--force", action="store_true",
        help="let --out be a non-empty folder: overwrite the files pyfa writes there",
    )
    parser.add_argument(
        "--resume", metavar="DIR", default=None,
        help="continue the run saved in DIR (an --out of an interrupted or finished run) exactly "
        "where it stopped, with its own settings; only --epochs and --no-progress may be given",
    )
    parser.add_argument(
        "--no-progress", action="store_true",
        help="no progress output (bars on a terminal, else one line per epoch)",
    )


def _hidden_arg(text: str) -> tuple[int, ...]:
    if not text.strip():
        return ()  # no hidden layer
    parts = [t.strip() for t in text.split(",")]
    if "" in parts:
        raise argparse.ArgumentTypeError(
            f"--hidden {text!r} has an empty width between commas; give widths like 128,64 "
            "('' for no hidden layer)")
    try:
        widths = tuple(int(t) for t in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--hidden takes comma-separated widths like 128,64, got {text!r}") from None
    if any(w < 1 for w in widths):
        raise argparse.ArgumentTypeError(f"--hidden widths must be >= 1, got {text!r}")
    return widths


@dataclasses.dataclass
class _Job:
    modes: list[str]
    config: TrainConfig  # of the first mode; the others differ in mode only
    out: Path | None
    force: bool
    progress: bool
    dataset: object = None
    source: str | None = None
    starts: dict = dataclasses.field(default_factory=dict)  # mode -> ResumePoint
    data_dir: str | None = None


def run(args) -> int:
    err = sys.stderr
    try:
        job = _job_to_resume(args) if args.resume is not None else _new_job(args)
        _check_julia(job.config)
        if job.dataset is None:
            job.dataset = _load(args)
            job.source = source_of(args.dataset)
            job.data_dir = args.data_dir
            _check_fits(job)
        if job.out is not None:
            folder = RunFolder.claim(job.out, job.modes, force=job.force,
                                     resume=args.resume is not None)
        else:
            folder = None
    except (_Usage, RunFolderError) as e:
        print(f"{getattr(e, 'prefix', 'pyfa train')}: {e}", file=err)
        return 2
    try:
        return _train_all(job, folder)
    finally:
        if folder is not None:
            folder.release(remove_if_empty=True)


def _new_job(args) -> _Job:
    if args.compare is not None:
        modes = _modes(args.compare)
    else:
        modes = [args.mode]
    if args.out is not None and not args.out.strip():
        raise _Usage("--out '' names no folder; give one, or leave --out out to save nothing")
    out = Path(args.out) if args.out is not None else None
    problem = out_problem(out, modes, args.force) if out else None
    if problem:
        raise _Usage(problem)
    try:  # every option, before anything is loaded, created or trained
        base = TrainConfig(
            backend=args.backend, mode=modes[0], hidden=args.hidden, activation=args.activation,
            optimizer=args.optimizer, lr=args.lr, momentum=args.momentum,
            epochs=DEFAULT_EPOCHS if args.epochs is None else args.epochs,
            batch_size=args.batch_size, seed=args.seed, device=args.device,
            threads=args.threads or None, loss=args.loss, model=args.model,
            weight_decay=args.weight_decay,
        )
        config = check_config(base)
        for mode in modes[1:]:  # every mode must be trainable before the first one starts
            check_config(dataclasses.replace(base, mode=mode))
    except ValueError as e:
        raise _Usage(str(e)) from None
    return _Job(modes, config, out, args.force, not args.no_progress)


def _modes(text: str) -> list[str]:
    parts = [m.strip() for m in text.split(",")]
    if "" in parts:
        raise _Usage(f"--compare {text!r}: an empty mode name; give modes like fa,bp "
                     f"(from {', '.join(TRAIN_MODES)})")
    bad = [m for m in parts if m not in TRAIN_MODES]
    if bad:
        raise _Usage(f"--compare: unknown mode(s) {bad}; expected a comma-separated list of "
                     f"{TRAIN_MODES}")
    twice = [m for m in dict.fromkeys(parts) if parts.count(m) > 1]
    if twice:
        raise _Usage(f"--compare {text}: {', '.join(twice)} given more than once; name each mode "
                     "once (the same mode and seed would train the same run twice)")
    return parts


def _job_to_resume(args) -> _Job:
    """The job `--resume DIR` continues: the run's own settings, from its checkpoints."""
    from pyfa.checkpoint import CheckpointError

    if not args.resume.strip():
        raise _Usage("--resume '' names no folder")
    given = [f"--{d.replace('_', '-')}" for d, v in _defaults().items()
             if d not in (*_RESUME_OPTIONS, "resume") and getattr(args, d) != v]
    if given:
        raise _Usage(f"--resume continues a run with the settings it was started with; leave out "
                     f"{', '.join(given)} (only --epochs and --no-progress may be given)")
    out = Path(args.resume)
    if not out.is_dir():
        raise _Usage(f"--resume {out}: no such folder" if not out.exists() else
                     f"--resume {out}: give the run's folder (the --out it was started with)")
    try:
        if (out / CHECKPOINT).is_file():
            point = read_resume_point(out / CHECKPOINT)
            modes, starts = [point.config.mode], {point.config.mode: point}
        else:
            found = {p.parent.name: p for p in sorted(out.glob(f"*/{CHECKPOINT}"))
                     if p.parent.name in TRAIN_MODES}
            if not found:
                raise _Usage(f"--resume {out}: it holds no run to continue (no {CHECKPOINT} in it, "
                             "nor in a folder per mode of a --compare run)")
            starts = {m: read_resume_point(p) for m, p in found.items()}
            plans = {tuple(s.compare or ()) for s in starts.values()}
            if len(plans) != 1 or not next(iter(plans)):
                raise _Usage(f"--resume {out}: its mode folders ({', '.join(found)}) are not one "
                             "--compare run")
            modes = list(next(iter(plans)))
    except (CheckpointError, FileNotFoundError) as e:
        raise _Usage(f"--resume {out}: {e}") from None
    first = next(iter(starts.values()))
    config = dataclasses.replace(first.config, mode=modes[0])
    epochs = args.epochs if args.epochs is not None else first.config.epochs
    config = dataclasses.replace(config, epochs=epochs)
    try:
        for s in starts.values():
            check_epochs(s, epochs)
            if dataclasses.replace(s.config, mode=modes[0], epochs=epochs) != config:
                raise ValueError(f"{s.path} was trained with other settings than the other modes")
        dataset = resume_dataset(first, data_dir=args.data_dir)
    except (ValueError, TypeError, FileNotFoundError) as e:
        raise _Usage(f"--resume {out}: {e}") from None
    return _Job(modes, config, out, True, not args.no_progress, dataset, first.source, starts,
                args.data_dir or first.data_dir)


def _defaults() -> dict:
    p = argparse.ArgumentParser(add_help=False)
    add_arguments(p)
    return vars(p.parse_args([]))


def _check_julia(config: TrainConfig) -> None:
    if config.backend != "julia":
        return
    try:
        from pyfa import julia

        ok = julia.available()
        reason = None if ok else julia.unavailable_reason()
    except Exception as e:  # the bridge itself failed to import
        ok, reason = False, f"{type(e).__name__}: {e}"
    if not ok:
        raise _Usage(str(reason), prefix="pyfa train --backend julia")


def _load(args):
    try:
        return load_dataset(args.dataset, task=args.task, data_dir=args.data_dir)
    except (ValueError, TypeError, FileNotFoundError) as e:
        raise _Usage(str(e)) from None


def _check_fits(job: _Job) -> None:
    """The settings that depend on the data (the loss, LeNet's images), before --out is claimed."""
    from pyfa.train.config import resolve_loss
    from pyfa.train.models import initial_network

    ds = job.dataset
    try:
        config = resolve_loss(job.config, ds.task, f"dataset {ds.name!r}")
        if config.model == "lenet":
            initial_network(config, ds)
    except ValueError as e:
        raise _Usage(str(e)) from None


def _train_all(job: _Job, folder: RunFolder | None) -> int:
    from pyfa.train.loop import NonFiniteLoss, TrainingInterrupted, run_config

    err = sys.stderr
    histories: dict[str, History] = {}
    written: list[Path] = []
    if job.starts and all(s.epoch >= job.config.epochs for s in job.starts.values()) and len(
            job.starts) == len(job.modes):
        print(f"pyfa train: the run in {job.out} has trained all its {job.config.epochs} epochs: "
              f"nothing to resume (pass --epochs N, more than {job.config.epochs}, to train on)",
              file=err)
        return 0
    with StopOnSignals() as stop:
        for mode in job.modes:
            config = dataclasses.replace(job.config, mode=mode)
            start = job.starts.get(mode)
            if start is not None and start.epoch >= config.epochs:
                histories[mode] = start.history  # finished before: nothing to train
                continue
            on_epoch = None if folder is None else (lambda end, m=mode: folder.save_epoch(m, end))
            try:
                history, _ = run_config(config, job.dataset, progress=job.progress, start=start,
                                        on_epoch=on_epoch, should_stop=stop, source=job.source,
                                        data_dir=job.data_dir)
            except TrainingInterrupted as e:
                _save_plots(folder, mode, e.history)
                print(_interrupted_line(job, folder, mode, e.epoch), file=err)
                return stop.exit_status
            except NonFiniteLoss as e:
                _save_plots(folder, mode, e.history, note=f"stopped: {e}")
                print(_non_finite_line(job, folder, mode, e, config), file=err)
                return 1
            except ValueError as e:
                print(f"pyfa train: {e}", file=err)
                return 2
            histories[mode] = history
            if folder is not None:
                written += [folder.run_dir(mode)] if len(job.modes) > 1 else [
                    folder.run_dir(mode) / n for n in (CHECKPOINT, "history.json")]
                files = folder.write_plots(mode, history)
                written += [] if len(job.modes) > 1 else files

        _print_summary(histories)
        if folder is not None:
            if len(job.modes) > 1:
                from pyfa import plots

                out = folder.path
                write_text(out / "histories.json", json.dumps(
                    {m: json.loads(h.to_json()) for m, h in histories.items()}, indent=1))
                written += [out / "histories.json", *plots.save_compare_plots(histories, out)]
            print("wrote: " + ", ".join(str(p) for p in written))
        else:
            print("(nothing saved: pass --out DIR to keep the history, checkpoint and plots)",
                  file=err)
        if stop():
            print("pyfa train: interrupted after the last epoch: the run is complete and saved",
                  file=err)
            return stop.exit_status
    return 0


def _save_plots(folder: RunFolder | None, mode: str, history: History, note: str | None = None
                ) -> None:
    if folder is not None:
        folder.write_plots(mode, history, note)


def _last(epoch: int) -> str:
    return f"epoch {epoch - 1}" + (" (the untrained start)" if epoch == 1 else "")


def _interrupted_line(job: _Job, folder: RunFolder | None, mode: str, epoch: int) -> str:
    """One line: "interrupted at epoch N; saved epoch N-1 to DIR; resume with: ..."."""
    head = f"interrupted at epoch {epoch}" + (f" of mode {mode}" if len(job.modes) > 1 else "")
    if folder is None:
        return f"{head}; {_last(epoch)} was the last complete one; nothing saved (no --out)"
    line = f"{head}; saved {_last(epoch)} to {folder.run_dir(mode)}"
    if job.config.backend != "torch":
        return line + " (the Julia backend cannot resume it)"
    return line + f"; resume with: pyfa train --resume {shlex.quote(str(folder.path))}"


def _non_finite_line(job: _Job, folder: RunFolder | None, mode: str, e, config) -> str:
    which = "" if len(job.modes) == 1 else f" (mode {mode})"
    kept = (f"kept {_last(e.epoch)}, the last finite one, in {folder.run_dir(mode)}"
            if folder is not None else "nothing saved (no --out)")
    return (f"pyfa train: {e}{which}: training stopped; {kept}. The learning rate (lr "
            f"{config.lr:g}) is probably too large for --optimizer {config.optimizer}: try a "
            "smaller --lr")


def _print_summary(histories: dict[str, History]) -> None:
    for mode, h in histories.items():
        s = h.summary()
        parts = [f"{mode:>4}: {s['epochs']} epochs"]
        if "test_acc" in s:
            parts.append(f"train acc {s['train_acc']:.4f}  test acc {s['test_acc']:.4f}")
        if "test_loss" in s:
            parts.append(f"loss {s['loss']:.4f}  test loss {s['test_loss']:.4f}")
        if "weight_feedback_angle" in s:
            wf = ", ".join(f"{a:.1f}" for a in s["weight_feedback_angle"])
            parts.append(f"W-B angles [{wf}] deg")
        parts.append(f"{s['train_time']:.1f} s")
        print("  ".join(parts))
