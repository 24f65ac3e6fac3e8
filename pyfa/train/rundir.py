"""The run folder of ``pyfa train --out DIR``: claim it, checkpoint every epoch, stop on a signal,
resume.

What ``DIR`` holds (``DIR/<mode>/`` for each mode of a ``--compare`` run)::

    model.npz      the checkpoint of the last complete epoch (`pyfa.checkpoint`, format 2): the model,
                   and the training state that `resume` continues from exactly (optimiser state,
                   epoch, history, the data-order RNG and brsf's torch generator)
    history.json   the same history, readable without pyfa (`History.to_json`)
    curves.png, alignment.png    written when the run ends, stops or is interrupted

- **Claim.** `RunFolder.claim` creates ``DIR`` and takes an exclusive lock on ``DIR/.pyfa-train.lock``
  (``flock``, released by the kernel if the process dies) before it looks whether ``DIR`` is empty:
  of two runs started at once on one folder, the second is refused, never interleaved. The lock
  file is removed when the run ends.
- **Checkpoint.** After epoch 0 (before training) and after every complete epoch, ``model.npz`` and
  ``history.json`` are rewritten atomically (`pyfa.checkpoint.atomic_write`). A run killed at any
  moment leaves the last complete epoch on disk.
- **Interrupt.** `StopOnSignals` turns SIGINT and SIGTERM into a request that the loop honours
  between two minibatches: the epoch in progress is dropped, nothing is left half-written.
- **Resume.** `read_resume_point` reads a checkpoint back into a `ResumePoint`, and
  `pyfa.train.loop.resume` (or ``pyfa train --resume DIR``) continues from it.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from pyfa import checkpoint
from pyfa.checkpoint import CheckpointError, TrainingState
from pyfa.data import Dataset, load_dataset
from pyfa.network import DenseParams
from pyfa.train.config import TrainConfig
from pyfa.train.history import History

LOCK_NAME = ".pyfa-train.lock"
CHECKPOINT = "model.npz"
HISTORY = "history.json"
#: Exit status of a run stopped by a signal: 128 + the signal's number (130 SIGINT, 143 SIGTERM).
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class RunFolderError(Exception):
    """A folder that cannot hold this run (the message says why, starting with ``--out DIR``)."""


# --------------------------------------------------------------------------------------- claim


def out_problem(out: Path, modes: list[str], force: bool) -> str | None:
    """Why `out` cannot receive a new run's files, or None if it can; looks, changes nothing."""
    if out.exists() and not out.is_dir():
        return f"--out {out} is an existing file; give a folder"
    up = out
    while not up.exists() and up != up.parent:
        up = up.parent
    if not up.is_dir():
        return f"--out {out}: {up} is a file, not a folder"
    if out.is_dir() and not force:
        names = sorted(p.name for p in out.iterdir() if p.name != LOCK_NAME)
        if names:
            shown = ", ".join(names[:8]) + (f", ... ({len(names)} in all)" if len(names) > 8 else "")
            run = (out / CHECKPOINT).is_file() or any(out.glob(f"*/{CHECKPOINT}"))
            return (
                f"--out {out} is not empty (it holds {shown}); choose a new or empty folder"
                + (", pass --force to overwrite the files pyfa writes there, or --resume "
                   f"{out} to continue the run it holds" if run else
                   ", or pass --force to overwrite the files pyfa writes there")
            )
    for m in modes if len(modes) > 1 else []:
        if (out / m).exists() and not (out / m).is_dir():
            return f"--out {out}: {out / m} is a file, but --compare writes the {m} run there"
    return None


class RunFolder:
    """A claimed ``--out`` folder (see the module docstring); `release` gives it back."""

    def __init__(self, path: Path, modes: list[str], fd: int | None, created: list[Path]):
        self.path = path
        self.modes = list(modes)
        self._fd = fd
        self._created = created  # folders the claim made, deepest first

    @classmethod
    def claim(cls, out: Path, modes: list[str], *, force: bool = False,
              resume: bool = False) -> RunFolder:
        """Create `out` (and parents), lock it, and check under the lock that it can take the run:
        empty (unless `force` or `resume`). Raises `RunFolderError` and leaves no folder behind
        that it made."""
        out = Path(out)
        if not resume:
            problem = out_problem(out, modes, force=True)  # a file in the way
            if problem:
                raise RunFolderError(problem)
        created = []
        up = out
        while not up.exists() and up != up.parent:
            created.append(up)
            up = up.parent
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            _remove_empty(created)
            raise RunFolderError(f"--out {out}: cannot create the folder ({e.strerror or e})") from None
        try:
            fd = _lock(out / LOCK_NAME)
        except _Busy as e:
            raise RunFolderError(
                f"--out {out} is in use by another pyfa train ({e}); wait for it to finish, or "
                "choose another folder"
            ) from None
        except OSError as e:
            _remove_empty(created)
            raise RunFolderError(f"--out {out}: cannot write files there ({e.strerror or e})") from None
        folder = cls(out, modes, fd, created)
        problem = None if resume else out_problem(out, modes, force)
        if problem:
            folder.release()
            raise RunFolderError(problem)
        return folder

    def run_dir(self, mode: str) -> Path:
        """Where `mode`'s files go: ``DIR`` for one mode, ``DIR/<mode>`` for a ``--compare``."""
        return self.path / mode if len(self.modes) > 1 else self.path

    def save_epoch(self, mode: str, end) -> None:
        """``model.npz`` (model + training state) and ``history.json`` of `end`
        (a `pyfa.train.loop.EpochEnd`), each written atomically."""
        d = self.run_dir(mode)
        d.mkdir(parents=True, exist_ok=True)
        history = end.history
        meta = {"history": history.summary(), **history.config,
                "compare": self.modes if len(self.modes) > 1 else None}
        checkpoint.save(d / CHECKPOINT, end.runner.checkpoint_model(), meta, mode=history.mode,
                        training=end.training_state())
        history.to_json(d / HISTORY)

    def write_plots(self, mode: str, history: History, note: str | None = None) -> list[Path]:
        from pyfa import plots

        return plots.save_plots(history, self.run_dir(mode), note=note)

    def release(self, *, remove_if_empty: bool = False) -> None:
        """Unlock (removing the lock file); with `remove_if_empty`, also remove the folders the
        claim created if nothing was written into them."""
        if self._fd is not None:
            try:
                os.unlink(self.path / LOCK_NAME)
            except OSError:
                pass
            os.close(self._fd)
            self._fd = None
        if remove_if_empty:
            _remove_empty(self._created)


class _Busy(Exception):
    pass


def _lock(path: Path) -> int:
    """An open descriptor of `path` holding an exclusive lock; `_Busy` (with who holds it) if
    another process has it. Where ``fcntl`` is missing (Windows), exclusive creation stands in."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            raise _Busy(f"{_holder(path)}; if no run is going on, delete {path}") from None
        os.write(fd, _holder_text().encode())
        return fd
    for _ in range(10):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise _Busy(_holder(path)) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False  # the holder removed it between our open and our lock: take a new one
        if same:
            os.ftruncate(fd, 0)
            os.write(fd, _holder_text().encode())
            return fd
        os.close(fd)
    raise _Busy("the lock file keeps being replaced")


def _holder_text() -> str:
    return f"pid {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}\n"


def _holder(path: Path) -> str:
    try:
        text = path.read_text().strip()
    except OSError:
        text = ""
    return text or "lock held"


def _remove_empty(folders: list[Path]) -> None:
    for d in folders:  # deepest first
        try:
            d.rmdir()
        except OSError:
            return


# ----------------------------------------------------------------------------------- interrupt


class StopOnSignals:
    """While active (``with``), SIGINT and SIGTERM only set `signum`; call the object to ask
    whether one came (the training loop's ``should_stop``). Outside the main thread, where Python
    cannot handle signals, it does nothing and the signals keep their usual effect."""

    def __init__(self, signals=SIGNALS):
        self.signals = tuple(signals)
        self.signum: int | None = None
        self._saved: dict = {}

    def _handler(self, signum, frame) -> None:
        if self.signum is None:
            self.signum = signum

    def __call__(self) -> bool:
        return self.signum is not None

    def __enter__(self) -> StopOnSignals:
        if threading.current_thread() is threading.main_thread():
            for s in self.signals:
                self._saved[s] = signal.signal(s, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        for s, h in self._saved.items():
            signal.signal(s, h)
        self._saved.clear()

    @property
    def exit_status(self) -> int:
        """128 + the signal's number (the shell's convention): 130 for SIGINT, 143 for SIGTERM."""
        return 128 + int(self.signum or 0)


# -------------------------------------------------------------------------------------- resume


@dataclass
class ResumePoint:
    """A run as its checkpoint left it after `epoch` complete epochs: its model as `layers` (an
    MLP's DenseParams) or as `model_state` (a CNN's state dict arrays)."""

    path: Path
    epoch: int
    config: TrainConfig
    history: History
    data_rng: dict
    runner_state: TrainingState | None
    layers: list[DenseParams] | None
    compare: list[str] | None
    model_state: dict | None = None

    @property
    def source(self) -> str | None:
        return self.history.config.get("dataset_source")

    @property
    def data_dir(self) -> str | None:
        return self.history.config.get("data_dir")

    @property
    def task(self) -> str | None:
        return self.history.config.get("task")


def checkpoint_path(where) -> Path:
    """`where` itself, or ``where/model.npz`` for a run folder."""
    p = Path(where)
    if p.is_dir():
        if (p / CHECKPOINT).is_file():
            return p / CHECKPOINT
        raise FileNotFoundError(f"{p} holds no {CHECKPOINT} (the checkpoint pyfa train --out writes)")
    return p


def read_resume_point(path: Path) -> ResumePoint:
    """The `ResumePoint` saved in checkpoint `path`; a `CheckpointError` naming the file if it
    has no (valid) training state, or one the backend cannot resume from."""
    where = f"checkpoint {os.fspath(path)!r}"
    state = checkpoint.read_training(path)
    if state is None:
        raise CheckpointError(
            f"{where} holds a model but no training state (it was written by pyfa.save, or by an older "
            "pyfa): it can be loaded, not resumed"
        )
    info = state.info
    try:
        config = TrainConfig.from_dict(info["config"])
        history = History.from_dict(info["history"], where=f"the history in {where}")
        epoch = info["epoch"]
        data_rng = info["data_rng"]
        if not (isinstance(epoch, int) and epoch == history.epochs) or not isinstance(data_rng, dict):
            raise ValueError(f"epoch {epoch!r} does not match the {history.epochs} epochs recorded")
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{where}: its training state is incomplete or damaged ({e})") from None
    if info.get("runner") is None:
        raise CheckpointError(
            f"{where} was trained with the {config.backend} backend, which cannot resume yet: pyfa "
            "cannot read Flux's optimiser state or Julia's random state out of Julia"
        )
    header = checkpoint.read_meta(path)
    meta = header.get("meta", {})
    state_dict = "model" in header
    return ResumePoint(
        path=Path(path), epoch=epoch, config=config, history=history, data_rng=data_rng,
        runner_state=TrainingState(info["runner"], state.arrays),
        layers=None if state_dict else checkpoint.load(path),
        model_state=checkpoint.read_state_arrays(path) if state_dict else None,
        compare=meta.get("compare"),
    )


def check_epochs(start: ResumePoint, epochs: int) -> None:
    if epochs < start.epoch:
        raise ValueError(f"the run in {start.path.parent} has trained {start.epoch} epochs already; "
                         f"epochs must be at least that, got {epochs}")


def resume_dataset(start: ResumePoint, dataset: str | Dataset | None = None,
                   data_dir: str | None = None) -> Dataset:
    """The data `start`'s run trained on, loaded again (or `dataset`; Fashion-MNIST from `data_dir`,
    default the run's own), checked to be the same arrays (SHA-256), so that the resumed run
    continues the very same run."""
    source = dataset if dataset is not None else start.source
    if source is None:
        raise ValueError(
            f"the run in {start.path.parent} trained on a Dataset made in Python, which pyfa cannot "
            "load again: pass it as dataset="
        )
    if data_dir is None and source == start.source:
        data_dir = start.data_dir
    ds = load_dataset(source, task=start.task, data_dir=data_dir)
    want = start.history.config.get("dataset_sha256")
    if want is not None and ds.fingerprint() != want:
        raise ValueError(
            f"the data of {source if isinstance(source, str) else ds.name!r} are not those the run "
            "started with (their SHA-256 differs): resuming would not continue the same run"
        )
    return ds
