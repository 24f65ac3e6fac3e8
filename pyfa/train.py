"""Training FA networks from Python, with either backend, and the ``pyfa train`` command.

`train` builds an MLP from seeded numpy weights and feedback matrices (`pyfa.network.init_mlp`), so
both backends start from the very same network; trains it with the mean squared error (one-hot
targets for classification: see `pyfa.data`) and minibatches drawn in the order of
``numpy.random.default_rng(seed).permutation`` each epoch; and returns a `History` of per-epoch
metrics plus the trained model:

- ``backend="torch"``: `pyfa.torch.mlp_from_params` -> an ``nn.Sequential`` of `LinearFA` layers,
  trained with ``torch.optim`` (SGD, SGD with momentum, Adam).
- ``backend="julia"``: ``pyfa.julia.JuliaChain`` -> a Flux chain of ``DenseFA`` layers trained with
  Flux's explicit API (``Flux.setup`` / ``withgradient`` / ``update!``) through the bridge.

The same seed gives the same history on rerun (up to ``epoch_time``). The alignment angles
(`pyfa.metrics`) are computed on the numpy weights after every epoch, on a fixed probe batch (the
first `probe_size` training samples), so they mean the same for both backends.

This module imports neither torch nor juliacall at import time: ``pyfa train --backend julia``
must be able to start Julia before torch is loaded.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from pyfa import metrics
from pyfa.checkpoint import atomic_write
from pyfa.data import Dataset, load_dataset
from pyfa.network import ACTIVATIONS, MODES, DenseParams, init_mlp

BACKENDS = ("torch", "julia")
OPTIMIZERS = ("sgd", "momentum", "adam")
#: Learning rate used when none is given (MSE on one-hot targets: plain SGD needs a large step).
DEFAULT_LR = {"sgd": 0.1, "momentum": 0.05, "adam": 1e-3}


@dataclass
class History:
    """Per-epoch record of one training run.

    Lists have one entry per epoch (epoch 1 first). ``loss`` is the mean training loss over the
    epoch's minibatches (as trained: the model changes during the epoch); ``test_loss``,
    ``train_acc`` and ``test_acc`` are measured after the epoch on the whole sets (accuracies stay
    empty for regression). ``weight_feedback_angle[e][i]`` and ``update_angle[e][i]`` are layer i's
    angles in degrees after epoch e+1 (`pyfa.metrics`). ``epoch_time`` is the wall time of the
    epoch's training steps in seconds (evaluation excluded). ``initial`` holds the same
    measurements before training (test_loss, train_acc, test_acc, both angle lists).
    ``config`` records how the run was made (backend, mode, sizes, optimiser, seed, ...).
    """

    config: dict = field(default_factory=dict)
    loss: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    test_acc: list[float] = field(default_factory=list)
    weight_feedback_angle: list[list[float]] = field(default_factory=list)
    update_angle: list[list[float]] = field(default_factory=list)
    epoch_time: list[float] = field(default_factory=list)
    initial: dict = field(default_factory=dict)

    @property
    def epochs(self) -> int:
        return len(self.loss)

    @property
    def mode(self) -> str:
        return self.config.get("mode", "?")

    @property
    def task(self) -> str:
        return self.config.get("task", "classification" if self.test_acc else "regression")

    def summary(self) -> dict:
        """The last epoch's numbers and the total training time."""
        out = {"mode": self.mode, "backend": self.config.get("backend"), "epochs": self.epochs}
        if self.epochs:
            out["loss"] = self.loss[-1]
            out["test_loss"] = self.test_loss[-1]
            if self.test_acc:
                out["train_acc"] = self.train_acc[-1]
                out["test_acc"] = self.test_acc[-1]
            out["weight_feedback_angle"] = self.weight_feedback_angle[-1]
            out["update_angle"] = self.update_angle[-1]
        out["train_time"] = float(sum(self.epoch_time))
        return out

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self, path: str | os.PathLike | None = None) -> str:
        """Strict JSON: every non-finite number (NaN, +inf, -inf) is written as null, which
        `from_json` reads back as NaN. Also written to `path`, atomically, if given."""
        text = json.dumps(_nan_to_none(self.to_dict()), indent=1, allow_nan=False)
        if path is not None:
            _write_text(path, text)
        return text

    @classmethod
    def from_json(cls, text_or_path: str | os.PathLike) -> History:
        """From a `to_json` string or a path to a file holding one (null numbers become NaN)."""
        text = os.fspath(text_or_path)
        if not text.lstrip().startswith("{"):
            text = Path(text).read_text()
        d = json.loads(text)
        known = {f: d[f] for f in cls.__dataclass_fields__ if f in d}
        for k in ("loss", "test_loss", "train_acc", "test_acc", "epoch_time"):
            if k in known:
                known[k] = [_none_to_nan(v) for v in known[k]]
        for k in ("weight_feedback_angle", "update_angle"):
            if k in known:
                known[k] = [[_none_to_nan(v) for v in row] for row in known[k]]
        if "initial" in known:
            known["initial"] = {
                k: ([_none_to_nan(v) for v in val] if isinstance(val, list) else _none_to_nan(val))
                for k, val in known["initial"].items()
            }
        return cls(**known)

    def same_curves(self, other: History) -> bool:
        """True if every recorded number but the timings is identical (NaN equal to NaN)."""
        a, b = self.to_dict(), other.to_dict()
        a.pop("epoch_time"), b.pop("epoch_time")
        return json.dumps(_nan_to_none(a), sort_keys=True) == json.dumps(
            _nan_to_none(b), sort_keys=True
        )


def train(
    backend: str = "torch",
    hidden: int | tuple[int, ...] | list[int] = (256,),
    activation: str = "relu",
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
):
    """Train an MLP of FA layers; return ``(history, model)``.

    Args:
        backend: ``"torch"`` (model: ``nn.Sequential`` of `LinearFA`) or ``"julia"`` (model:
            ``pyfa.julia.JuliaChain``; raises ``pyfa.julia.JuliaUnavailableError`` if Julia cannot
            start).
        hidden: hidden layer widths (an int is one hidden layer: ``hidden=32`` is ``(32,)``; ``()``
            for none); the input and output widths come from the dataset. Or give `sizes`, the
            full list (input, hidden..., output), which must fit the dataset.
        activation: hidden activation (identity, relu, tanh, sigmoid); the output layer is linear.
        mode: ``fa``, ``bp``, ``usf``, ``brsf`` or ``frsf`` (`pyfa.network.MODES`).
        dataset: ``"digits"``, ``"forum"``, a path to a ``.npz`` (see `pyfa.data.load_dataset`) or a
            `pyfa.data.Dataset` (e.g. from `pyfa.data.from_arrays`).
        optimizer: ``"sgd"``, ``"momentum"`` (SGD with momentum `momentum`) or ``"adam"``;
            `lr` defaults to `DEFAULT_LR`.
        epochs, batch_size, seed: seed fixes the initial weights and feedback matrices
            (`init_mlp(seed=seed)`) and the minibatch order (``default_rng(seed)``).
        progress: report each epoch on stderr: a tqdm bar with the running loss, then the
            accuracies, on a terminal (or in a notebook); one plain line per epoch otherwise
            (a log file, a pipe), so logs are not flooded with bar redraws.
        device: torch device for the torch backend (``"cpu"``, ``"cuda"``); the Julia backend runs
            on the CPU.
        probe_size: how many training samples (the first ones, >= 1) the update angles are
            measured on.
        threads: torch's intra-op CPU threads while training (restored afterwards). Small MLPs train
            fastest on one thread, and on a busy machine more threads can be many times slower;
            ``None`` keeps torch's setting. Ignored by the Julia backend.

    Every argument is checked before anything is loaded or trained: a bad value (lr not finite and
    > 0, momentum outside [0, 1), epochs, batch_size, probe_size or a hidden width < 1, a device
    torch cannot use) raises ValueError.

    The defaults (relu, one hidden layer of 256, Adam lr 1e-3, batch 32, 20 epochs) reach about
    97-98 % test accuracy on digits with mode fa and 98-99 % with bp.
    """
    lr, momentum, hidden = _check_arguments(
        backend=backend, mode=mode, optimizer=optimizer, activation=activation, epochs=epochs,
        batch_size=batch_size, probe_size=probe_size, threads=threads, lr=lr, momentum=momentum,
        device=device, hidden=hidden, sizes=sizes,
    )

    ds = load_dataset(dataset)
    if sizes is None:
        sizes = (ds.n_features, *hidden, ds.n_outputs)
    sizes = tuple(int(s) for s in sizes)
    if sizes[0] != ds.n_features or sizes[-1] != ds.n_outputs:
        raise ValueError(
            f"sizes {sizes} do not fit dataset {ds.name!r}: it has {ds.n_features} inputs and "
            f"{ds.n_outputs} outputs"
        )
    layers = init_mlp(sizes, activation, "identity", seed=seed, dtype=np.float32)

    runner = (_TorchRunner if backend == "torch" else _JuliaRunner)(
        layers, mode, optimizer, lr, momentum, device, seed
    )
    try:
        runner.set_threads(threads)
        history = _fit(runner, ds, mode, epochs, batch_size, seed, progress, probe_size,
                       config=dict(backend=backend, sizes=sizes, activation=activation,
                                   optimizer=optimizer, lr=lr, momentum=momentum, device=device,
                                   threads=threads))
    finally:
        runner.close()
    return history, runner.model


def _check_arguments(*, backend, mode, optimizer, activation, epochs, batch_size, probe_size,
                     threads, lr, momentum, device, hidden, sizes=None):
    """`train`'s argument checks (ValueError for a bad one), without loading anything; returns
    ``(lr, momentum, hidden)`` normalised: the default lr filled in, hidden as a tuple of ints."""
    _check_choice("backend", backend, BACKENDS)
    _check_choice("mode", mode, MODES)
    _check_choice("optimizer", optimizer, OPTIMIZERS)
    _check_choice("activation", activation, ACTIVATIONS)
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("probe_size", probe_size)):
        _check_whole(name, value)
    if threads is not None:
        _check_whole("threads", threads, " or None")
    lr = DEFAULT_LR[optimizer] if lr is None else float(lr)
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
    momentum = float(momentum)
    if not 0 <= momentum < 1:
        raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
    hidden = _widths("hidden", hidden)
    if sizes is not None:
        _widths("sizes", sizes)
    if backend == "julia" and str(device) != "cpu":
        raise ValueError("device applies to the torch backend; the Julia backend trains on the CPU")
    if backend == "torch":
        _check_device(device)
    return lr, momentum, hidden


def _widths(name: str, widths) -> tuple[int, ...]:
    """`widths` (an int, or a sequence of ints) as a tuple of ints >= 1; ValueError otherwise."""
    try:
        if isinstance(widths, (str, bytes)):
            raise TypeError
        if isinstance(widths, (int, np.integer)) and not isinstance(widths, bool):
            items = (widths,)  # one hidden layer
        else:
            items = tuple(widths)
    except TypeError:
        raise ValueError(
            f"{name} must be a width or a sequence of widths (whole numbers >= 1), got {widths!r}"
        ) from None
    for w in items:
        try:
            ok = not isinstance(w, bool) and int(w) == w and w >= 1
        except (TypeError, ValueError, OverflowError):
            ok = False
        if not ok:
            raise ValueError(
                f"{name} widths must be whole numbers >= 1, got {widths!r} (bad: {w!r})"
            )
    return tuple(int(w) for w in items)


def _fit(runner, ds, mode, epochs, batch_size, seed, progress, probe_size, config):
    from pyfa import __version__

    c = config
    history = History(
        config={
            "backend": c["backend"], "mode": mode, "dataset": ds.name, "task": ds.task,
            "n_classes": ds.n_classes, "sizes": list(c["sizes"]), "activation": c["activation"],
            "optimizer": c["optimizer"], "lr": c["lr"], "momentum": c["momentum"],
            "epochs": int(epochs), "batch_size": int(batch_size), "seed": int(seed),
            "device": str(c["device"]), "threads": c["threads"],
            "probe_size": int(min(probe_size, len(ds.x_train))),
            "n_train": len(ds.x_train), "n_test": len(ds.x_test), "pyfa_version": __version__,
        }
    )
    probe = (ds.x_train[:probe_size], ds.y_train[:probe_size])
    history.initial = _evaluate(runner, ds, mode, probe)

    from tqdm.auto import tqdm

    # Bars redraw themselves with \r several times an epoch: right on a terminal (or as a notebook
    # widget), a flood in a log file or a pipe. There, one plain line per epoch instead.
    bars = progress and _bars_fit(tqdm, sys.stderr)
    lines = progress and not bars
    rng = np.random.default_rng(seed)
    n = len(ds.x_train)
    n_batches = math.ceil(n / batch_size)
    width = len(str(epochs))
    for epoch in range(1, int(epochs) + 1):
        perm = rng.permutation(n)
        bar = tqdm(
            total=n_batches, desc=f"{c['backend']}/{mode} epoch {epoch:>{width}}/{epochs}",
            unit="batch", disable=not bars, leave=True, file=sys.stderr, dynamic_ncols=True,
        )
        total, seen = 0.0, 0
        t0 = time.perf_counter()
        for b in range(n_batches):
            idx = perm[b * batch_size : (b + 1) * batch_size]
            loss = runner.step(ds.x_train[idx], ds.y_train[idx])
            total += loss * len(idx)
            seen += len(idx)
            bar.update(1)
            bar.set_postfix(loss=f"{total / seen:.4f}", refresh=False)
        elapsed = time.perf_counter() - t0
        ev = _evaluate(runner, ds, mode, probe)
        history.loss.append(total / max(seen, 1))
        history.test_loss.append(ev["test_loss"])
        if ds.task == "classification":
            history.train_acc.append(ev["train_acc"])
            history.test_acc.append(ev["test_acc"])
        history.weight_feedback_angle.append(ev["weight_feedback_angle"])
        history.update_angle.append(ev["update_angle"])
        history.epoch_time.append(elapsed)
        post = {"loss": f"{history.loss[-1]:.4f}"}
        if ds.task == "classification":
            post.update(train_acc=f"{ev['train_acc']:.3f}", test_acc=f"{ev['test_acc']:.3f}")
        else:
            post.update(test_loss=f"{ev['test_loss']:.4f}")
        bar.set_postfix(post, refresh=True)
        bar.close()
        if lines:
            stats = "  ".join(f"{k} {v}" for k, v in post.items())
            print(f"{c['backend']}/{mode} epoch {epoch:>{width}}/{epochs}  {stats}",
                  file=sys.stderr, flush=True)
    return history


def _bars_fit(tqdm_class, stream) -> bool:
    """Whether progress bars suit `stream`: a terminal, or a notebook (tqdm.auto's widgets)."""
    notebook = sys.modules.get("tqdm.notebook")
    if notebook is not None and issubclass(tqdm_class, notebook.tqdm_notebook):
        return True  # a notebook widget, not \r redraws on the stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _evaluate(runner, ds: Dataset, mode: str, probe) -> dict:
    params = runner.params()
    out = {}
    test_pred = runner.predict(ds.x_test)
    out["test_loss"] = float(np.mean((test_pred.astype(np.float64) - ds.y_test) ** 2))
    if ds.task == "classification":
        out["train_acc"] = metrics.accuracy(runner.predict(ds.x_train), ds.y_train)
        out["test_acc"] = metrics.accuracy(test_pred, ds.y_test)
    out["weight_feedback_angle"] = metrics.weight_feedback_angles(params, mode)
    out["update_angle"] = metrics.update_angles(params, probe[0], probe[1], mode)
    return out


class _TorchRunner:
    def __init__(self, layers, mode, optimizer, lr, momentum, device, seed):
        import torch

        from pyfa.torch import mlp_from_params, params_from_mlp

        self._torch = torch
        self._params_from_mlp = params_from_mlp
        self.device = torch.device(device)
        gen = torch.Generator(device=self.device)
        gen.manual_seed(int(seed))  # brsf's per-step draws
        self.model = mlp_from_params(layers, mode, device=self.device, generator=gen)
        ps = self.model.parameters()
        if optimizer == "adam":
            self.opt = torch.optim.Adam(ps, lr=lr)
        else:
            mom = momentum if optimizer == "momentum" else 0.0
            self.opt = torch.optim.SGD(ps, lr=lr, momentum=mom)

    def set_threads(self, threads: int | None) -> None:
        self._saved_threads = self._torch.get_num_threads()
        if threads is not None and self.device.type == "cpu":
            self._torch.set_num_threads(int(threads))

    def close(self) -> None:
        saved = getattr(self, "_saved_threads", None)
        if saved is not None and self._torch.get_num_threads() != saved:
            self._torch.set_num_threads(saved)

    def step(self, x: np.ndarray, y: np.ndarray) -> float:
        torch = self._torch
        xt = torch.from_numpy(x).to(self.device)
        yt = torch.from_numpy(y).to(self.device)
        self.opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(self.model(xt), yt)
        loss.backward()
        self.opt.step()
        return float(loss.item())

    def predict(self, x: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.no_grad():
            return self.model(torch.from_numpy(x).to(self.device)).cpu().numpy()

    def params(self) -> list[DenseParams]:
        return self._params_from_mlp(self.model)


class _JuliaRunner:
    def __init__(self, layers, mode, optimizer, lr, momentum, device, seed):
        from pyfa import julia

        if not julia.available():
            raise julia.JuliaUnavailableError(julia.unavailable_reason())
        julia.seed(seed)  # brsf's per-step draws
        self.model = julia.JuliaChain.from_params(layers, mode=mode, dtype=np.float32)
        self.model.setup_optimiser(optimizer, lr=lr, momentum=momentum)

    def set_threads(self, threads: int | None) -> None:
        pass  # Julia's threads are fixed when Julia starts (PYTHON_JULIACALL_THREADS)

    def close(self) -> None:
        pass

    def step(self, x: np.ndarray, y: np.ndarray) -> float:
        return float(self.model.step(np.ascontiguousarray(x), np.ascontiguousarray(y)))

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.forward(np.ascontiguousarray(x)), dtype=np.float32)

    def params(self) -> list[DenseParams]:
        return self.model.to_params()


def _check_choice(what: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}; expected one of {tuple(choices)}")


def _check_whole(name: str, value, also: str = "") -> None:
    try:
        ok = int(value) == value and value >= 1
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise ValueError(f"{name} must be a whole number >= 1{also}, got {value!r}")


def _check_device(device) -> None:
    """A ValueError unless torch can put tensors on `device` (parsed, and present here)."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device {device!r} is not a torch device: {e}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device {device!r}: CUDA is not available here (torch.cuda.is_available() is False); "
            "use device 'cpu'"
        )
    if dev.type != "cpu":
        try:
            torch.empty(1, device=dev)
        except (RuntimeError, AssertionError) as e:
            raise ValueError(f"device {device!r} cannot be used: {e}") from None


def _nan_to_none(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None  # strict JSON has no NaN or infinity
    if isinstance(x, dict):
        return {k: _nan_to_none(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_nan_to_none(v) for v in x]
    return x


def _none_to_nan(v):
    return float("nan") if v is None else v


def _write_text(path, text: str) -> None:
    atomic_write(path, lambda f: f.write((text + "\n").encode()))


# ------------------------------------------------------------------------ the `pyfa train` command


def add_arguments(parser) -> None:
    parser.add_argument("--backend", choices=BACKENDS, default="torch", help="default: torch")
    parser.add_argument("--mode", choices=MODES, default="fa", help="default: fa")
    parser.add_argument(
        "--compare", metavar="MODES", default=None,
        help="comma-separated modes, each named once (e.g. fa,bp), trained on the same data and "
        "seed and plotted together; overrides --mode",
    )
    parser.add_argument(
        "--dataset", default="digits",
        help="digits (default), forum, or a .npz with x_train, y_train, x_test, y_test",
    )
    parser.add_argument(
        "--hidden", default="256", type=_parse_hidden,
        help="hidden widths, comma-separated (default: 256; '' for none)",
    )
    parser.add_argument("--activation", choices=ACTIVATIONS, default="relu", help="default: relu")
    parser.add_argument("--epochs", type=int, default=20, help="default: 20")
    parser.add_argument("--batch-size", type=int, default=32, help="default: 32")
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default="adam", help="default: adam")
    parser.add_argument(
        "--lr", type=float, default=None,
        help="learning rate (default: "
        + ", ".join(f"{k} {v:g}" for k, v in DEFAULT_LR.items()) + ")",
    )
    parser.add_argument("--momentum", type=float, default=0.9, help="for --optimizer momentum")
    parser.add_argument(
        "--seed", type=int, default=0, help="initial weights, feedback and data order (default: 0)"
    )
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument(
        "--threads", type=int, default=1,
        help="torch CPU threads while training (default: 1, fastest for small MLPs; "
        "0: torch's own)",
    )
    parser.add_argument(
        "--out", metavar="DIR", default=None,
        help="write history.json, model.npz (checkpoint) and PNG plots here; must be a new or "
        "empty folder unless --force (created, and checked writable, before training)",
    )
    parser.add_argument(
        "--force", action="store_true",
        help="let --out be a non-empty folder: overwrite the files pyfa writes there",
    )
    parser.add_argument(
        "--no-progress", action="store_true",
        help="no progress output (bars on a terminal, else one line per epoch)",
    )


def _parse_hidden(text: str) -> tuple[int, ...]:
    import argparse

    parts = [t.strip() for t in text.split(",") if t.strip()]
    try:
        widths = tuple(int(t) for t in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--hidden takes comma-separated widths like 128,64, got {text!r}"
        ) from None
    if any(w < 1 for w in widths):
        raise argparse.ArgumentTypeError(f"--hidden widths must be >= 1, got {text!r}")
    return widths


def run(args) -> int:
    err = sys.stderr
    if args.compare:
        modes = [m.strip() for m in args.compare.split(",") if m.strip()]
        bad = [m for m in modes if m not in MODES]
        if bad or not modes:
            print(f"pyfa train: --compare: unknown mode(s) {bad or args.compare!r}; "
                  f"expected a comma-separated list of {MODES}", file=err)
            return 2
        twice = [m for m in dict.fromkeys(modes) if modes.count(m) > 1]
        if twice:
            print(f"pyfa train: --compare {args.compare}: {', '.join(twice)} given more than once; "
                  "name each mode once (the same mode and seed would train the same run twice)",
                  file=err)
            return 2
    else:
        modes = [args.mode]

    out = Path(args.out) if args.out else None
    problem = _out_problem(out, modes, args.force) if out else None
    if problem:
        print(f"pyfa train: {problem}", file=err)
        return 2

    options = dict(
        backend=args.backend, activation=args.activation, optimizer=args.optimizer, lr=args.lr,
        momentum=args.momentum, epochs=args.epochs, batch_size=args.batch_size,
        device=args.device, threads=args.threads or None,
    )
    try:  # every option, before anything is loaded, created or trained
        _check_arguments(mode=modes[0], probe_size=256, hidden=args.hidden, **options)
    except ValueError as e:
        print(f"pyfa train: {e}", file=err)
        return 2

    if args.backend == "julia":
        try:
            from pyfa import julia

            ok = julia.available()
            reason = None if ok else julia.unavailable_reason()
        except Exception as e:  # the bridge itself failed to import
            ok, reason = False, f"{type(e).__name__}: {e}"
        if not ok:
            print(f"pyfa train --backend julia: {reason}", file=err)
            return 2

    try:
        dataset = load_dataset(args.dataset)
    except (ValueError, TypeError, FileNotFoundError) as e:
        print(f"pyfa train: {e}", file=err)
        return 2

    created: list[Path] = []
    if out is not None:
        problem, created = _make_out(out)
        if problem:
            print(f"pyfa train: --out {out}: {problem}", file=err)
            return 2

    histories: dict[str, History] = {}
    written: list[Path] = []
    for mode in modes:
        try:
            history, model = train(
                hidden=args.hidden, mode=mode, dataset=dataset, seed=args.seed,
                progress=not args.no_progress, **options,
            )
        except ValueError as e:
            print(f"pyfa train: {e}", file=err)
            _remove_empty(created)
            return 2
        histories[mode] = history
        if out is not None:
            run_dir = out / mode if len(modes) > 1 else out
            files = _write_run(run_dir, history, model)
            written += [run_dir] if len(modes) > 1 else files

    _print_summary(histories)
    if out is not None:
        if len(modes) > 1:
            from pyfa import plots

            _write_text(
                out / "histories.json",
                json.dumps({m: json.loads(h.to_json()) for m, h in histories.items()}, indent=1),
            )
            written += [out / "histories.json", *plots.save_compare_plots(histories, out)]
        print("wrote: " + ", ".join(str(p) for p in written))
    else:
        print("(nothing saved: pass --out DIR to keep the history, checkpoint and plots)", file=err)
    return 0


def _make_out(out: Path) -> tuple[str | None, list[Path]]:
    """Create `out` (parents too) and prove a file can be written in it, before any training.

    Returns ``(problem, created)``: why `out` cannot be used (None if it can), and the folders
    this made, deepest first (`_remove_empty` takes them away again if the run stops early).
    """
    created = []
    up = out
    while not up.exists() and up != up.parent:
        created.append(up)
        up = up.parent
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        _remove_empty(created)
        return f"cannot create the folder ({e.strerror or e})", []
    try:
        with tempfile.NamedTemporaryFile(dir=out, prefix=".pyfa-write-test-"):
            pass
    except OSError as e:
        _remove_empty(created)
        return f"cannot write files there ({e.strerror or e})", []
    return None, created


def _remove_empty(folders: list[Path]) -> None:
    for d in folders:  # deepest first
        try:
            d.rmdir()
        except OSError:
            return


def _out_problem(out: Path, modes: list[str], force: bool) -> str | None:
    """Why `out` cannot receive this run's files, checked before training; None if it can."""
    if out.exists() and not out.is_dir():
        return f"--out {out} is an existing file; give a folder"
    up = out
    while not up.exists() and up != up.parent:
        up = up.parent
    if not up.is_dir():
        return f"--out {out}: {up} is a file, not a folder"
    if out.is_dir() and not force:
        names = sorted(p.name for p in out.iterdir())
        if names:
            shown = ", ".join(names[:8]) + (f", ... ({len(names)} in all)" if len(names) > 8 else "")
            return (
                f"--out {out} is not empty (it holds {shown}); choose a new or empty folder, or "
                "pass --force to overwrite the files pyfa writes there"
            )
    for m in modes if len(modes) > 1 else []:
        if (out / m).exists() and not (out / m).is_dir():
            return f"--out {out}: {out / m} is a file, but --compare writes the {m} run there"
    return None


def _write_run(run_dir: Path, history: History, model) -> list[Path]:
    from pyfa import checkpoint, plots

    run_dir.mkdir(parents=True, exist_ok=True)
    history.to_json(run_dir / "history.json")
    checkpoint.save(run_dir / "model.npz", model, {"history": history.summary(), **history.config},
                    mode=history.mode)
    return [run_dir / "history.json", run_dir / "model.npz", *plots.save_plots(history, run_dir)]


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


__all__ = ["train", "History", "BACKENDS", "OPTIMIZERS", "DEFAULT_LR", "add_arguments", "run"]
