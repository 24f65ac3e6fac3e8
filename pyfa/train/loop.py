"""The training loop: `train` (a fresh run), `resume` (a run continued from its checkpoint), `fit`.

Every run goes the same way: the model (an MLP, or LeNet-5) starts from seeded numpy weights and
feedback matrices (`pyfa.train.models.initial_network`), so every mode and both backends start from
the very same network; each epoch draws the minibatch order from
``numpy.random.default_rng(seed).permutation``, steps the backend's runner (`pyfa.train.runners`)
on each minibatch, then measures the test loss, the accuracies and the alignment metrics
(`pyfa.metrics`: W–B angle, ‖B‖/‖W‖ and the update angle against a shadow backprop pass, computed
by the numpy oracle on the current weights and a fixed probe batch, so they mean the same for every
backend) into the `History`.

Two things stop a run early, always between two minibatches and never half-way through anything:

- `NonFiniteLoss`: a minibatch's loss (or the epoch's evaluation) is NaN or infinite. The epoch is
  not recorded; the exception carries the history up to the last finite epoch.
- `TrainingInterrupted`: ``should_stop()`` (given by the caller, e.g. the ``pyfa train`` command on
  SIGINT/SIGTERM) returned true. The epoch in progress is dropped; the exception carries the history
  of the epochs completed.

The state at the end of each completed epoch (model, optimiser, RNG states, history) is handed to
``on_epoch``: ``pyfa train --out`` saves it there, and `resume` continues from it bit for bit.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from dataclasses import dataclass

import numpy as np

from pyfa import metrics
from pyfa.checkpoint import TrainingState
from pyfa.data import Dataset, load_dataset, source_of
from pyfa.network import DEFAULT_ACTIVATION
from pyfa.reference import LOSSES as ORACLE_LOSSES
from pyfa.reference import loss_and_grad
from pyfa.train import models
from pyfa.train.config import TrainConfig, check_config, resolve_loss, weight_decay_of
from pyfa.train.history import History, nan_to_none
from pyfa.train.runners import make_runner


class NonFiniteLoss(FloatingPointError):
    """Training produced a NaN or infinite loss; ``history`` ends at the last finite epoch."""

    def __init__(self, message: str, *, epoch: int, history: History):
        super().__init__(message)
        self.epoch = epoch  # the epoch that went non-finite
        self.history = history


class TrainingInterrupted(Exception):
    """``should_stop`` asked the loop to stop; ``history`` holds the epochs completed before."""

    def __init__(self, epoch: int, history: History):
        super().__init__(f"interrupted at epoch {epoch}")
        self.epoch = epoch  # the epoch that was in progress (dropped)
        self.history = history


@dataclass
class EpochEnd:
    """The complete state after `epoch` epochs (0: before training), as `on_epoch` receives it."""

    epoch: int
    history: History
    runner: object
    data_rng: np.random.Generator
    config: TrainConfig

    def training_state(self) -> TrainingState:
        """What a checkpoint needs besides the model to continue this run exactly (`resume`):
        the epoch, the history, the data-order RNG, and the runner's own state (the optimiser and,
        for torch, brsf's generator). ``info["runner"]`` is None where the backend cannot say."""
        runner_state = self.runner.state()
        info = {
            "epoch": self.epoch,
            "config": self.config.to_dict(),
            "history": nan_to_none(self.history.to_dict()),
            "data_rng": self.data_rng.bit_generator.state,
            "runner": None if runner_state is None else runner_state.info,
        }
        arrays = {} if runner_state is None else dict(runner_state.arrays)
        return TrainingState(info, arrays)


def train(
    backend: str = "torch",
    hidden: int | tuple[int, ...] | list[int] = (256,),
    activation: str = DEFAULT_ACTIVATION,
    mode: str = "fa",
    dataset: str | Dataset = "digits",
    optimizer: str = "adam",
    lr: float | None = None,
    momentum: float = 0.9,
    epochs: int = 20,
    batch_size: int = 32,
    seed: int = 0,
    progress: bool = True,
    device: str = "cpu",
    *,
    sizes: tuple[int, ...] | list[int] | None = None,
    probe_size: int = 256,
    threads: int | None = 1,
    task: str | None = None,
    loss: str | None = None,
    model: str = "mlp",
    weight_decay: float | None = None,
    data_dir: str | None = None,
):
    """Train an MLP (or LeNet-5) of FA layers; return ``(history, model)``.

    Args:
        backend: ``"torch"`` (model: ``nn.Sequential`` of `LinearFA`, a `DFASequential` in mode
            dfa, a `pyfa.train.torch_models.CNN` for LeNet) or ``"julia"`` (model:
            ``pyfa.julia.JuliaChain``; raises ``pyfa.julia.JuliaUnavailableError`` if Julia cannot
            start; what its bridge cannot train is refused with a ValueError).
        hidden: hidden layer widths (an int is one hidden layer: ``hidden=32`` is ``(32,)``; ``()``
            for none); the input and output widths come from the dataset. Or give `sizes`, the
            full list (input, hidden..., output), which must fit the dataset.
        activation: hidden activation (identity, relu, tanh, sigmoid); the output layer is linear.
            The default, relu, is `pyfa.network.DEFAULT_ACTIVATION`, as in `pyfa.init_mlp`.
        mode: ``fa``, ``bp``, ``usf``, ``brsf``, ``frsf``, ``kp`` or ``dfa``
            (`pyfa.train.config.TRAIN_MODES`).
        dataset: ``"digits"``, ``"mnist1d"``, ``"fashion-mnist"``, ``"forum"``, a path to a ``.npz``
            (see `pyfa.data.load_dataset`) or a `pyfa.data.Dataset` (e.g. from
            `pyfa.data.from_arrays`).
        optimizer: ``"sgd"``, ``"momentum"`` (SGD with momentum `momentum`) or ``"adam"`` (AdamW
            when there is weight decay); `lr` defaults to `DEFAULT_LR`.
        loss: ``"ce"`` (softmax cross-entropy; the default for classification) or ``"mse"`` (on the
            one-hot targets for classification; the default, and the only loss, for regression).
        model: ``"mlp"`` or ``"lenet"`` (LeNet-5, for a dataset of images: fashion-mnist, digits).
        weight_decay: decoupled weight decay λ on weights (and kp's feedback), never biases;
            default `pyfa.train.config.DEFAULT_WEIGHT_DECAY` of the mode (1e-4 for kp, else 0).
        data_dir: where the Fashion-MNIST IDX files are (default: Debian's folder).
        epochs, batch_size, seed: seed (a whole number in [0, 2**63 - 1]) fixes the initial
            weights and feedback matrices (`init_mlp(seed=seed)`), the minibatch order
            (``default_rng(seed)``) and brsf's draws.
        progress: report each epoch on stderr: a tqdm bar with the running loss, then the
            accuracies, on a terminal (or in a notebook); one plain line per epoch otherwise
            (a log file, a pipe), so logs are not flooded with bar redraws.
        device: torch device for the torch backend (``"cpu"``, ``"cuda"``); the Julia backend runs
            on the CPU.
        probe_size: how many training samples (the first ones, >= 1) the update angles are
            measured on.
        threads: torch's intra-op CPU threads while training, and numpy's BLAS threads for the
            metrics (both restored afterwards). Small MLPs train fastest on one thread, and on a
            busy machine more threads can be many times slower; ``None`` keeps the settings. The
            Julia backend's own threads are Julia's.
        task: ``"classification"`` or ``"regression"``, for a dataset given by name or path (see
            `pyfa.data.load_dataset`): a ``.npz`` of real-valued targets needs
            ``task="regression"``.

    Every argument is checked before anything is loaded or trained: a bad value (lr not finite and
    > 0, momentum outside [0, 1), epochs, batch_size, probe_size or a hidden width < 1, a seed
    outside [0, 2**63 - 1], a device torch cannot use) raises ValueError.

    Raises `NonFiniteLoss` if the loss becomes NaN or infinite (its ``history`` ends at the last
    finite epoch): lower the learning rate.

    The defaults (relu, one hidden layer of 256, cross-entropy, Adam lr 1e-3, batch 32, 20 epochs)
    reach about 97-98 % test accuracy on digits with mode fa and 98-99 % with bp.
    """
    config = check_config(TrainConfig(
        backend=backend, mode=mode, hidden=hidden, sizes=sizes, activation=activation,
        optimizer=optimizer, lr=lr, momentum=momentum, epochs=epochs, batch_size=batch_size,
        seed=seed, device=device, threads=threads, probe_size=probe_size, loss=loss, model=model,
        weight_decay=weight_decay,
    ))
    ds = load_dataset(dataset, task=task, data_dir=data_dir)
    return run_config(config, ds, progress=progress, source=source_of(dataset),
                      data_dir=data_dir)


def resume(checkpoint, *, dataset: str | Dataset | None = None, epochs: int | None = None,
           progress: bool = True):
    """Continue the run saved in `checkpoint` (a ``model.npz`` written by ``pyfa train --out``, or
    its folder) to `epochs` epochs in all (default: the run's own); return ``(history, model)``.

    The result is the very one an uninterrupted run would have given (same weights, same history
    but for the timings): the checkpoint holds the optimiser state, the epoch, the data-order RNG
    and brsf's generator. The data are loaded again from where the run found them (a name or a
    ``.npz`` path) unless `dataset` is given; they must be the same arrays (their SHA-256 is checked).
    Only torch runs can be resumed. Nothing is written: see ``pyfa train --resume`` for that.
    """
    from pyfa.train import rundir

    start = rundir.read_resume_point(rundir.checkpoint_path(checkpoint))
    config = start.config
    if epochs is not None:
        config = check_config(dataclasses.replace(config, epochs=epochs))
    rundir.check_epochs(start, config.epochs)
    ds = rundir.resume_dataset(start, dataset)
    return run_config(config, ds, progress=progress, start=start, source=start.source,
                      data_dir=start.data_dir)


def run_config(config: TrainConfig, ds: Dataset, *, progress: bool = True, start=None,
               on_epoch=None, should_stop=None, source: str | None = None,
               data_dir: str | None = None):
    """Build the runner for the checked `config` on `ds` (from `start`, a
    `pyfa.train.rundir.ResumePoint`, if given), fit, and return ``(history, model)``.
    The loss is settled here, now that the task is known (`resolve_loss`)."""
    config = resolve_loss(config, ds.task, f"dataset {ds.name!r}")
    if start is not None and start.layers is not None:
        network = start.layers
    else:
        network = models.initial_network(config, ds)
    runner = make_runner(config, network, ds.image_shape)
    if start is not None and start.model_state is not None:
        runner.load_model_state(start.model_state)
    try:
        runner.set_threads(config.threads)
        with _blas_threads(config.threads):
            history = fit(runner, ds, config, progress=progress, start=start, on_epoch=on_epoch,
                          should_stop=should_stop, source=source, data_dir=data_dir,
                          network=network)
    finally:
        runner.close()
    return history, runner.model


def _blas_threads(threads: int | None):
    """numpy's BLAS limited to `threads` while the run lasts (the metrics' oracle passes are numpy):
    on a busy machine a multi-threaded BLAS made them 25 times slower (0.6 s instead of 24 ms an
    epoch for a 40-256-256-10 MLP)."""
    import contextlib

    if threads is None:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=int(threads), user_api="blas")


def fit(runner, ds: Dataset, config: TrainConfig, *, progress: bool = True, start=None,
        on_epoch=None, should_stop=None, source: str | None = None, data_dir: str | None = None,
        network: list | None = None) -> History:
    """Train `runner` on `ds` up to ``config.epochs`` epochs; return the History.

    `start` (a `pyfa.train.rundir.ResumePoint`) continues a run after its ``start.epoch`` epochs.
    ``on_epoch(EpochEnd)`` is called after every complete, finite epoch, and once at epoch 0 for a
    fresh run; ``should_stop()`` is asked before every minibatch. See the module docstring for
    `NonFiniteLoss` and `TrainingInterrupted`.
    """
    n = len(ds.x_train)
    probe_size = min(config.probe_size, n)
    probe_x = ds.x_train[:probe_size]
    if runner.input_shape is not None:  # the oracle's CNN takes images
        probe_x = probe_x.reshape(probe_size, *runner.input_shape)
    probe = (probe_x, ds.y_train[:probe_size])
    rng = np.random.default_rng(config.seed)
    if start is None:
        network = runner.params() if network is None else network
        history = History(config=_history_config(config, ds, network, probe_size, source, data_dir))
        history.initial = evaluate(runner, ds, config.mode, probe, config.loss)
        first = 1
        if on_epoch is not None:
            on_epoch(EpochEnd(0, history, runner, rng, config))
    else:
        history = start.history
        history.config["epochs"] = config.epochs
        rng.bit_generator.state = start.data_rng
        runner.load_state(start.runner_state)
        first = start.epoch + 1

    from tqdm.auto import tqdm

    # Bars redraw themselves with \r several times an epoch: right on a terminal (or as a notebook
    # widget), a flood in a log file or a pipe. There, one plain line per epoch instead.
    bars = progress and _bars_fit(tqdm, sys.stderr)
    lines = progress and not bars
    n_batches = math.ceil(n / config.batch_size)
    epochs = config.epochs
    width = len(str(epochs))
    name = f"{config.backend}/{config.mode}"
    for epoch in range(first, epochs + 1):
        perm = rng.permutation(n)
        bar = tqdm(total=n_batches, desc=f"{name} epoch {epoch:>{width}}/{epochs}", unit="batch",
                   disable=not bars, leave=True, file=sys.stderr, dynamic_ncols=True)
        try:
            total, seen = 0.0, 0
            t0 = time.perf_counter()
            for b in range(n_batches):
                if should_stop is not None and should_stop():
                    raise TrainingInterrupted(epoch, history)
                idx = perm[b * config.batch_size: (b + 1) * config.batch_size]
                loss = runner.step(ds.x_train[idx], ds.y_train[idx])
                if not math.isfinite(loss):
                    raise NonFiniteLoss(
                        f"the training loss became {loss} at epoch {epoch}, minibatch {b + 1} of "
                        f"{n_batches}", epoch=epoch, history=history)
                total += loss * len(idx)
                seen += len(idx)
                bar.update(1)
                bar.set_postfix(loss=f"{total / seen:.4f}", refresh=False)
            elapsed = time.perf_counter() - t0
            ev = evaluate(runner, ds, config.mode, probe, config.loss)
            bad = [k for k in ("test_loss", "train_acc") if k in ev and not math.isfinite(ev[k])]
            if bad:
                raise NonFiniteLoss(
                    f"the {bad[0].replace('_', ' ')} became {ev[bad[0]]} after epoch {epoch} (the "
                    "outputs overflowed)", epoch=epoch, history=history)
            history.append(total / max(seen, 1), ev, elapsed)
            post = {"loss": f"{history.loss[-1]:.4f}"}
            if ds.task == "classification":
                post.update(train_acc=f"{ev['train_acc']:.3f}", test_acc=f"{ev['test_acc']:.3f}")
            else:
                post.update(test_loss=f"{ev['test_loss']:.4f}")
            bar.set_postfix(post, refresh=True)
        finally:
            bar.close()
        if on_epoch is not None:
            on_epoch(EpochEnd(epoch, history, runner, rng, config))
        if lines:
            stats = "  ".join(f"{k} {v}" for k, v in post.items())
            print(f"{name} epoch {epoch:>{width}}/{epochs}  {stats}", file=sys.stderr, flush=True)
    return history


def test_loss(loss: str, outputs: np.ndarray, targets: np.ndarray) -> float:
    """The training loss `loss` (``mse`` or ``ce``) of numpy `outputs` against `targets`, in
    float64, by the oracle's formulas (`pyfa.reference.losses`)."""
    if loss not in ORACLE_LOSSES:
        raise ValueError(f"unknown loss {loss!r}; expected one of {ORACLE_LOSSES}")
    return loss_and_grad(loss, outputs.astype(np.float64), targets.astype(np.float64))[0]


def evaluate(runner, ds: Dataset, mode: str, probe, loss: str = "mse") -> dict:
    """The test loss, the accuracies (classification) and the alignment metrics, per layer."""
    params = runner.params()
    out = {}
    test_pred = runner.predict(ds.x_test)
    with np.errstate(over="ignore", invalid="ignore"):  # non-finite outputs are reported by fit
        out["test_loss"] = test_loss(loss, test_pred, ds.y_test)
    if ds.task == "classification":
        train_pred = runner.predict(ds.x_train)
        acc_ok = np.isfinite(train_pred).all() and np.isfinite(test_pred).all()
        out["train_acc"] = metrics.accuracy(train_pred, ds.y_train) if acc_ok else float("nan")
        out["test_acc"] = metrics.accuracy(test_pred, ds.y_test) if acc_ok else float("nan")
    layers = metrics.parametrised(params)
    if not all(_finite(p) for p in layers):
        out["test_loss"] = float("nan")
        nan_rows = [float("nan")] * len(layers)
        out["weight_feedback_angle"] = out["update_angle"] = out["feedback_norm_ratio"] = nan_rows
        return out
    out["weight_feedback_angle"] = metrics.weight_feedback_angles(params, mode)
    out["feedback_norm_ratio"] = metrics.feedback_norm_ratios(params, mode)
    with np.errstate(over="ignore", invalid="ignore"):
        out["update_angle"] = metrics.update_angles(params, probe[0], probe[1], mode, loss=loss)
    return out


def _finite(p) -> bool:
    return bool(np.isfinite(p.weight).all() and (p.bias is None or np.isfinite(p.bias).all()))


def _history_config(c: TrainConfig, ds: Dataset, network: list, probe_size: int,
                    source: str | None, data_dir: str | None = None) -> dict:
    from pyfa import __version__

    dense = [p for p in network if hasattr(p, "in_features")]
    sizes = ([dense[0].in_features] + [p.out_features for p in dense]) if c.model == "mlp" else None
    return {
        "backend": c.backend, "mode": c.mode, "dataset": ds.name, "task": ds.task,
        "n_classes": ds.n_classes, "model": c.model, "architecture": models.describe(c, network),
        "sizes": sizes, "layer_names": models.layer_names(network),
        "image_shape": None if ds.image_shape is None else list(ds.image_shape),
        "activation": c.activation, "loss": c.loss, "optimizer": c.optimizer, "lr": c.lr,
        "momentum": c.momentum, "weight_decay": weight_decay_of(c), "epochs": c.epochs,
        "batch_size": c.batch_size, "seed": c.seed, "device": c.device, "threads": c.threads,
        "probe_size": probe_size, "n_train": len(ds.x_train), "n_test": len(ds.x_test),
        "dataset_source": source,
        "data_dir": None if data_dir is None else os.path.abspath(os.fspath(data_dir)),
        "dataset_sha256": ds.fingerprint(), "pyfa_version": __version__,
    }


def _bars_fit(tqdm_class, stream) -> bool:
    """Whether progress bars suit `stream`: a terminal, or a notebook (tqdm.auto's widgets)."""
    notebook = sys.modules.get("tqdm.notebook")
    if notebook is not None and issubclass(tqdm_class, notebook.tqdm_notebook):
        return True  # a notebook widget, not \r redraws on the stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
