"""Training FA networks from Python, with either backend, and the ``pyfa train`` command.

`train` builds an MLP (or LeNet-5) from seeded numpy weights and feedback matrices
(`pyfa.train.models`), so every mode and both backends start from the very same network; trains it
in any mode of `TRAIN_MODES` (fa, bp, usf, brsf, frsf, kp, dfa) with softmax cross-entropy (the
default for classification, on one-hot targets: see `pyfa.data`) or the mean squared error, on
minibatches drawn in the order of ``numpy.random.default_rng(seed).permutation`` each epoch; and
returns a `History` of per-epoch metrics (accuracy, loss, and per layer the W–B angle, ‖B‖/‖W‖ and
the angle to a shadow backprop update) plus the trained model. `resume` continues a run saved by
``pyfa train --out`` exactly.

Where things are:

- `pyfa.train.loop`: `train`, `resume`, the epoch loop (`fit`), the non-finite stop
  (`NonFiniteLoss`) and the interrupt (`TrainingInterrupted`);
- `pyfa.train.runners`: one runner per backend (model + optimiser + step), `TorchRunner` and
  `JuliaRunner`;
- `pyfa.train.history`: `History`, and its strict JSON;
- `pyfa.train.config`: `TrainConfig` (a run's settings), `TRAIN_MODES`, and the checks made before
  anything loads;
- `pyfa.train.models`: the seeded numpy networks (MLP, LeNet-5); `pyfa.train.torch_models` their
  torch models;
- `pyfa.train.rundir`: the ``--out`` folder: claim (a lock), per-epoch checkpoints, signals, resume;
- `pyfa.train.command`: the ``pyfa train`` command line.

Importing this package imports neither torch nor juliacall: ``pyfa train --backend julia`` must be
able to start Julia before torch is loaded.
"""

from pyfa.train.command import EXIT_STATUS, add_arguments, run
from pyfa.train.config import (
    BACKENDS,
    DEFAULT_LR,
    DEFAULT_WEIGHT_DECAY,
    LOSSES,
    MODELS,
    OPTIMIZERS,
    TRAIN_MODES,
    TrainConfig,
)
from pyfa.train.history import History
from pyfa.train.loop import NonFiniteLoss, TrainingInterrupted, resume, train

__all__ = ["train", "resume", "History", "TrainConfig", "NonFiniteLoss", "TrainingInterrupted",
           "BACKENDS", "OPTIMIZERS", "LOSSES", "MODELS", "TRAIN_MODES", "DEFAULT_LR",
           "DEFAULT_WEIGHT_DECAY", "EXIT_STATUS", "add_arguments", "run"]
