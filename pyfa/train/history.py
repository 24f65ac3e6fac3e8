"""`History`: the per-epoch record of one training run, and its strict JSON form."""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pyfa.checkpoint import atomic_write

#: Per-epoch lists of numbers, and per-epoch lists of per-layer numbers.
_SERIES = ("loss", "test_loss", "train_acc", "test_acc", "epoch_time")
_LAYER_SERIES = ("weight_feedback_angle", "update_angle", "feedback_norm_ratio")
#: Per-layer series that histories of older pyfa versions lack (read back as NaN rows).
_ADDED_LATER = ("feedback_norm_ratio",)
#: Lists that have one entry per epoch in every run (accuracies: only in classification).
_EVERY_RUN = ("loss", "test_loss", "epoch_time", *_LAYER_SERIES)


@dataclass
class History:
    """Per-epoch record of one training run.

    Lists have one entry per epoch (epoch 1 first). ``loss`` is the mean training loss over the
    epoch's minibatches (as trained: the model changes during the epoch); ``test_loss``,
    ``train_acc`` and ``test_acc`` are measured after the epoch on the whole sets (accuracies stay
    empty for regression). ``weight_feedback_angle[e][i]`` and ``update_angle[e][i]`` are
    parametrised layer i's angles in degrees after epoch e+1, ``feedback_norm_ratio[e][i]`` its
    ‖B‖/‖W‖ (`pyfa.metrics`; NaN where a mode has no such number, e.g. DFA's top layer).
    ``epoch_time`` is the wall time of the epoch's training steps in seconds (evaluation
    excluded). ``initial`` holds the same measurements before training (test_loss, train_acc,
    test_acc, the three per-layer lists).
    ``config`` records how the run was made (backend, mode, sizes, optimiser, seed, ...).
    """

    config: dict = field(default_factory=dict)
    loss: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    test_acc: list[float] = field(default_factory=list)
    weight_feedback_angle: list[list[float]] = field(default_factory=list)
    update_angle: list[list[float]] = field(default_factory=list)
    feedback_norm_ratio: list[list[float]] = field(default_factory=list)
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
            out["feedback_norm_ratio"] = self.feedback_norm_ratio[-1]
        out["train_time"] = float(sum(self.epoch_time))
        return out

    def append(self, loss: float, evaluation: dict, epoch_time: float) -> None:
        """Record one epoch: its mean training loss, `evaluation` (as ``initial``) and its time."""
        self.loss.append(loss)
        self.test_loss.append(evaluation["test_loss"])
        if "test_acc" in evaluation:
            self.train_acc.append(evaluation["train_acc"])
            self.test_acc.append(evaluation["test_acc"])
        self.weight_feedback_angle.append(evaluation["weight_feedback_angle"])
        self.update_angle.append(evaluation["update_angle"])
        self.feedback_norm_ratio.append(evaluation["feedback_norm_ratio"])
        self.epoch_time.append(epoch_time)

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self, path: str | os.PathLike | None = None) -> str:
        """Strict JSON: every non-finite number (NaN, +inf, -inf) is written as null, which
        `from_json` reads back as NaN. Also written to `path`, atomically, if given."""
        text = json.dumps(nan_to_none(self.to_dict()), indent=1, allow_nan=False)
        if path is not None:
            write_text(path, text)
        return text

    @classmethod
    def from_json(cls, text_or_path: str | os.PathLike) -> History:
        """From a `to_json` string or a path to a file holding one (null numbers become NaN).

        The JSON must be what `to_json` writes (`from_dict` says what is checked); anything else,
        such as some other JSON object, or ``histories.json`` of a ``--compare`` run (one history
        per mode), raises a ValueError naming the source and what is wrong.
        """
        text = os.fspath(text_or_path)
        where = "the JSON text"
        if not text.lstrip().startswith(("{", "[")):
            where = repr(text)
            text = Path(text).read_text()
        try:
            d = json.loads(text)
        except ValueError as e:
            raise ValueError(f"History.from_json: {where} is not valid JSON ({e})") from None
        return cls.from_dict(d, where=where)

    @classmethod
    def from_dict(cls, d, *, where: str = "the dict") -> History:
        """A History from `to_dict`'s form (null numbers become NaN), checked: a JSON object with
        every field `to_json` writes, each of the right type, and as many epochs in every
        per-epoch list (accuracies: that many, or none). Unknown keys are ignored."""
        def bad(msg: str):
            return ValueError(f"History: {where} is not a pyfa training history: {msg}")

        if not isinstance(d, dict):
            raise bad(f"expected a JSON object, got a {type(d).__name__}")
        if isinstance(d.get("weight_feedback_angle"), list):
            d = _with_added_series(d)
        missing = [f for f in cls.__dataclass_fields__ if f not in d]
        if missing:
            runs = [k for k, v in d.items() if isinstance(v, dict) and "loss" in v]
            if runs and len(runs) == len(d):
                raise bad(f"it holds one history per run ({', '.join(runs)}), as histories.json "
                          "of a --compare run does: read one of its values")
            raise bad(f"it lacks {', '.join(missing)}")
        if not isinstance(d["config"], dict) or not isinstance(d["initial"], dict):
            raise bad("'config' and 'initial' must be JSON objects")
        out = {"config": d["config"]}
        for k in _SERIES:
            out[k] = _numbers(d[k], k, bad)
        for k in _LAYER_SERIES:
            if not isinstance(d[k], list):
                raise bad(f"{k!r} must be a list (one row per epoch)")
            out[k] = [_numbers(row, f"{k} row", bad) for row in d[k]]
        initial = {}
        for k, v in d["initial"].items():
            initial[k] = _numbers(v, f"initial {k}", bad) if isinstance(v, list) else _number(
                v, f"initial {k}", bad)
        out["initial"] = initial
        n = len(out["loss"])
        for k in _EVERY_RUN:
            if len(out[k]) != n:
                raise bad(f"{k!r} has {len(out[k])} entries but 'loss' has {n} epochs")
        for k in ("train_acc", "test_acc"):
            if len(out[k]) not in (0, n):
                raise bad(f"{k!r} has {len(out[k])} entries; expected {n} (or none, for regression)")
        return cls(**out)

    def same_curves(self, other: History) -> bool:
        """True if every recorded number but the timings is identical (NaN equal to NaN)."""
        a, b = self.to_dict(), other.to_dict()
        a.pop("epoch_time"), b.pop("epoch_time")
        return json.dumps(nan_to_none(a), sort_keys=True) == json.dumps(
            nan_to_none(b), sort_keys=True
        )


def _with_added_series(d: dict) -> dict:
    """`d` with the per-layer series of `_ADDED_LATER` it lacks (a history written by an older pyfa,
    or a History built without them) as NaN rows shaped like its W–B angles."""
    rows = d["weight_feedback_angle"]
    d = dict(d)
    for k in _ADDED_LATER:
        if k not in d or (d[k] == [] and rows):  # absent, or a History made without it
            d[k] = [[None] * len(r) if isinstance(r, list) else r for r in rows]
    return d


def _number(v, what: str, bad) -> float:
    if v is None:
        return float("nan")
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise bad(f"{what}: expected a number or null, got {v!r}")
    return v


def _numbers(v, what: str, bad) -> list[float]:
    if not isinstance(v, list):
        raise bad(f"{what!r} must be a list of numbers, got {type(v).__name__}")
    return [_number(x, what, bad) for x in v]


def nan_to_none(x):
    """`x` with every non-finite float replaced by None (strict JSON has no NaN or infinity)."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: nan_to_none(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [nan_to_none(v) for v in x]
    return x


def write_text(path, text: str) -> None:
    """`text` and a newline to `path`, atomically."""
    atomic_write(path, lambda f: f.write((text + "\n").encode()))
