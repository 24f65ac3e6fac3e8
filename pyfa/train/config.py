"""A training run's settings (`TrainConfig`) and their checks, made before anything is loaded."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, fields

import numpy as np

from pyfa.network import ACTIVATIONS, ALL_MODES, DEFAULT_ACTIVATION

BACKENDS = ("torch", "julia")
#: Every mode ``pyfa train`` knows, in one place: the layer modes of `pyfa.network.MODES`, ``kp``
#: (Kolen-Pollack: B learns with W's gradient, plus weight decay) and the network-level ``dfa``
#: (direct feedback alignment). Whether a backend and model can train a mode is checked by
#: `check_config` (torch: all of them, on an MLP and on LeNet; Julia: what its bridge offers).
TRAIN_MODES = ALL_MODES
#: The models: an MLP of `LinearFA` (widths from ``hidden``), or LeNet-5 (`pyfa.train.models`).
MODELS = ("mlp", "lenet")
OPTIMIZERS = ("sgd", "momentum", "adam")
#: The training losses: ``ce`` softmax cross-entropy on the one-hot targets (the default for
#: classification), ``mse`` mean squared error (the default, and the only choice, for regression).
LOSSES = ("mse", "ce")
#: Learning rate used when none is given (plain SGD needs a larger step than Adam).
DEFAULT_LR = {"sgd": 0.1, "momentum": 0.05, "adam": 1e-3}
#: Weight decay when none is given, per mode (0 for a mode not listed), as the factor lr·λ by which
#: it shrinks the weights every step: λ = DEFAULT_WEIGHT_DECAY[mode] / lr. Decay is decoupled: every
#: step multiplies each weight (and kp's trainable feedback; never a bias) by (1 − lr·λ), besides
#: the optimiser's own update (SGD's ``weight_decay``, which for plain SGD is the same thing; Adam
#: becomes AdamW). In kp, W and B get the same gradient, so W − B shrinks by (1 − lr·λ) a step:
#: 1e-4 a step (λ = 0.1 with Adam's lr 1e-3, 1e-3 with SGD's lr 0.1) brings the top layer's W–B
#: angle under 10° in 150 epochs of MNIST-1D, where λ = 1e-4 with Adam (1e-7 a step) leaves it
#: near 17° (docs/results.md).
DEFAULT_WEIGHT_DECAY = {"kp": 1e-4}
#: Seeds are whole numbers in [0, MAX_SEED]: numpy's, torch's and Julia's generators all take them.
MAX_SEED = 2**63 - 1


@dataclass(frozen=True)
class TrainConfig:
    """How a run trains: everything but the data. Checked and normalised by `check_config`.

    ``hidden`` are the hidden widths (``sizes``, when given, the full list input..output, which
    must fit the dataset) of the MLP; ``model="lenet"`` ignores them. ``lr`` None means
    `DEFAULT_LR` of the optimiser; ``loss`` None means ``ce`` for classification and ``mse`` for
    regression (`resolve_loss`, once the dataset is known); ``weight_decay`` None means
    `DEFAULT_WEIGHT_DECAY` of the mode (`weight_decay_of`), so that one ``--compare`` config gives
    kp its decay and the other modes none.
    """

    backend: str = "torch"
    mode: str = "fa"
    hidden: tuple[int, ...] = (256,)
    sizes: tuple[int, ...] | None = None
    activation: str = DEFAULT_ACTIVATION
    loss: str | None = None
    optimizer: str = "adam"
    lr: float | None = None
    momentum: float = 0.9
    weight_decay: float | None = None
    model: str = "mlp"
    epochs: int = 20
    batch_size: int = 32
    seed: int = 0
    device: str = "cpu"
    threads: int | None = 1
    probe_size: int = 256

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        d["sizes"] = None if self.sizes is None else list(self.sizes)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """From `to_dict` (or a History's ``config``: unknown keys are ignored), checked."""
        known = {f.name: d[f.name] for f in fields(cls) if f.name in d}
        return check_config(cls(**known))


def check_config(c: TrainConfig) -> TrainConfig:
    """`c` checked (ValueError naming a bad value) and normalised: the default lr filled in,
    widths as tuples of ints, device as a string. Loads nothing but torch, and torch only to check
    the device of the torch backend."""
    check_choice("backend", c.backend, BACKENDS)
    check_choice("mode", c.mode, TRAIN_MODES)
    check_choice("model", c.model, MODELS)
    check_choice("optimizer", c.optimizer, OPTIMIZERS)
    check_choice("activation", c.activation, ACTIVATIONS)
    if c.loss is not None:
        check_choice("loss", c.loss, LOSSES)
    for name in ("epochs", "batch_size", "probe_size"):
        check_whole(name, getattr(c, name))
    if c.threads is not None:
        check_whole("threads", c.threads, " or None")
    seed = check_seed(c.seed)
    lr = DEFAULT_LR[c.optimizer] if c.lr is None else _float("lr", c.lr)
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
    momentum = _float("momentum", c.momentum)
    if not 0 <= momentum < 1:
        raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
    weight_decay = None if c.weight_decay is None else _float("weight_decay", c.weight_decay)
    if weight_decay is not None and not (math.isfinite(weight_decay) and weight_decay >= 0):
        raise ValueError(f"weight_decay must be a finite number >= 0, got {weight_decay!r}")
    hidden = widths("hidden", c.hidden)
    sizes = None if c.sizes is None else widths("sizes", c.sizes)
    if c.backend == "julia" and str(c.device) != "cpu":
        raise ValueError("device applies to the torch backend; the Julia backend trains on the CPU")
    checked = TrainConfig(
        backend=c.backend, mode=c.mode, hidden=hidden, sizes=sizes, activation=c.activation,
        loss=c.loss, optimizer=c.optimizer, lr=lr, momentum=momentum, weight_decay=weight_decay,
        model=c.model, epochs=int(c.epochs), batch_size=int(c.batch_size), seed=seed,
        device=str(c.device), threads=None if c.threads is None else int(c.threads),
        probe_size=int(c.probe_size),
    )
    problem = support_problem(checked)
    if problem:
        raise ValueError(problem)
    if c.backend == "torch":
        from pyfa._device import check_torch_device

        check_torch_device(c.device)
    return checked


def support_problem(c: TrainConfig) -> str | None:
    """Why the backend or model of `c` cannot train what `c` asks for, or None. Imports neither
    torch nor juliacall (the Julia bridge's offer is read from its Python signatures)."""
    if c.model == "lenet":
        if c.sizes is not None:
            return "sizes sets an MLP's widths; --model lenet has its own (LeNet-5)"
    if c.backend == "julia":
        from pyfa.train.runners import julia_support_problem

        return julia_support_problem(c)
    return None


def weight_decay_of(c: TrainConfig) -> float:
    """The decoupled weight decay λ `c` trains with: its own, or the default of its mode,
    ``DEFAULT_WEIGHT_DECAY[mode] / lr`` (a shrink of DEFAULT_WEIGHT_DECAY[mode] a step)."""
    if c.weight_decay is not None:
        return float(c.weight_decay)
    per_step = DEFAULT_WEIGHT_DECAY.get(c.mode, 0.0)
    if not per_step:
        return 0.0
    lr = DEFAULT_LR[c.optimizer] if c.lr is None else float(c.lr)
    return float(per_step / lr)


def resolve_loss(c: TrainConfig, task: str, dataset: str = "the dataset") -> TrainConfig:
    """`c` with its loss settled for a `task` ("classification" or "regression"): None becomes
    ``ce`` for classification and ``mse`` for regression; ``ce`` on a regression is a ValueError."""
    if c.loss is None:
        c = dataclasses.replace(c, loss="ce" if task == "classification" else "mse")
    elif c.loss == "ce" and task != "classification":
        raise ValueError(f"loss 'ce' (softmax cross-entropy) needs class labels, but {dataset} is a "
                         "regression: use loss 'mse' (--loss mse)")
    if c.backend == "julia":  # the loss is settled only now: ask the bridge again
        from pyfa.train.runners import julia_support_problem

        problem = julia_support_problem(c)
        if problem:
            raise ValueError(problem)
    return c


def check_choice(what: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}; expected one of {tuple(choices)}")


def check_whole(name: str, value, also: str = "") -> None:
    """A ValueError unless `value` is a whole number >= 1 (an int, or a float like 3.0)."""
    try:
        ok = not isinstance(value, bool) and int(value) == value and value >= 1
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise ValueError(f"{name} must be a whole number >= 1{also}, got {value!r}")


def check_seed(seed, name: str = "seed") -> int:
    """`seed` as an int in [0, `MAX_SEED`]; a ValueError naming `name` otherwise."""
    try:
        ok = not isinstance(seed, bool) and int(seed) == seed and 0 <= int(seed) <= MAX_SEED
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise ValueError(f"{name} must be a whole number from 0 to 2**63 - 1 ({MAX_SEED}), "
                         f"got {seed!r}")
    return int(seed)


def widths(name: str, value) -> tuple[int, ...]:
    """`value` (an int, or a sequence of ints) as a tuple of ints >= 1; ValueError otherwise."""
    try:
        if isinstance(value, (str, bytes)):
            raise TypeError
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            items = (value,)  # one hidden layer
        else:
            items = tuple(value)
    except TypeError:
        raise ValueError(
            f"{name} must be a width or a sequence of widths (whole numbers >= 1), got {value!r}"
        ) from None
    for w in items:
        try:
            ok = not isinstance(w, bool) and int(w) == w and w >= 1
        except (TypeError, ValueError, OverflowError):
            ok = False
        if not ok:
            raise ValueError(
                f"{name} widths must be whole numbers >= 1, got {value!r} (bad: {w!r})"
            )
    return tuple(int(w) for w in items)


def _float(name: str, value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
