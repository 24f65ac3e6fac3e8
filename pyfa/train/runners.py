"""The backend runners: one model and its optimiser, stepped on numpy minibatches.

A runner is what the training loop (`pyfa.train.loop`) talks to, whatever the backend::

    runner = make_runner(config, network)      # network: the initial numpy network
                                               # (pyfa.train.models.initial_network)
    loss = runner.step(x, y)                   # one optimiser step on a minibatch; the batch's loss
    outputs = runner.predict(x)                # no gradient, no random draws
    runner.params()                            # the current network in numpy, for the metrics:
                                               # DenseParams (an MLP) or an oracle CNN spec
    runner.checkpoint_model()                  # what pyfa.checkpoint.save gets
    runner.input_shape                         # (C, H, W) of a CNN's images, None for an MLP
    runner.state() / runner.load_state(s)      # everything else a resumed run needs, or None
    runner.model                               # what `pyfa.train.train` returns

`TorchRunner` builds the torch model (`pyfa.train.torch_models`: an MLP of `LinearFA`, a
`DFASequential` in mode dfa, or a LeNet of `Conv2dFA`/`LinearFA`) trained with ``torch.optim``;
`JuliaRunner` a ``pyfa.julia.JuliaChain`` trained with Flux's explicit API through the bridge,
with whatever the bridge offers (`julia_support_problem` says what it does not, before a run
starts). A new backend, loss or model builder goes here: a class with the methods above,
registered in `RUNNERS`.

Weight decay (`pyfa.train.config.weight_decay_of`) is decoupled and applies to every weight and
kp's trainable feedback, never to a bias: SGD (and momentum) with ``weight_decay`` λ, for plain SGD
exactly W ← W − lr·(∂W + λW) of the oracle's `pyfa.reference.sgd_step`; Adam becomes
``torch.optim.AdamW``, W ← W·(1 − lr·λ) − lr·(Adam's step). In kp, W and B receive the same
gradient and so the same Adam or SGD step: W − B shrinks by (1 − lr·λ) every step.

Nothing here imports torch or juliacall until a runner is made.
"""

from __future__ import annotations

import inspect

import numpy as np

from pyfa.checkpoint import TrainingState
from pyfa.train.config import TrainConfig, weight_decay_of

#: Rows per forward pass in `TorchRunner.predict` (bounds a CNN's activations on a large set).
PREDICT_CHUNK = 2048


class ResumeUnsupported(RuntimeError):
    """This backend cannot save the state a bit-exact resume needs."""


class TorchRunner:
    """PyTorch: the model of `pyfa.train.torch_models`, ``torch.optim`` (SGD, SGD with momentum,
    Adam/AdamW), and one ``torch.Generator`` seeded with the run's seed for brsf's per-step draws."""

    def __init__(self, config: TrainConfig, network: list, input_shape=None):
        import torch

        from pyfa.torch.network import loss_value
        from pyfa.train import torch_models

        self._torch = torch
        self._torch_models = torch_models
        self._loss_value = loss_value
        self.config = config
        self.loss = config.loss or "mse"
        self.device = torch.device(config.device)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(config.seed)  # brsf's per-step draws
        self.input_shape = None if config.model == "mlp" else tuple(input_shape)
        self.model = torch_models.torch_model(config.model, network, config.mode,
                                              input_shape=self.input_shape, device=self.device,
                                              generator=self.generator)
        self.weight_decay = weight_decay_of(config)
        self.opt = self.make_optimizer(config)

    def make_optimizer(self, config: TrainConfig):
        """The optimiser of `config`, with decoupled weight decay on weights and kp's feedback."""
        torch = self._torch
        decay, no_decay = [], []
        for name, p in self.model.named_parameters():
            (no_decay if name.rsplit(".", 1)[-1] == "bias" else decay).append(p)
        wd = self.weight_decay
        groups = [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}]
        groups = [g for g in groups if g["params"]]
        if config.optimizer == "adam":
            cls = torch.optim.AdamW if wd > 0 else torch.optim.Adam
            return cls(groups, lr=config.lr)
        mom = config.momentum if config.optimizer == "momentum" else 0.0
        return torch.optim.SGD(groups, lr=config.lr, momentum=mom)

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
        loss = self._loss_value(self.loss, self.model(xt), yt)
        loss.backward()
        self.opt.step()
        return float(loss.item())

    def predict(self, x: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.no_grad():
            outs = [self.model(torch.from_numpy(x[i: i + PREDICT_CHUNK]).to(self.device)).cpu()
                    for i in range(0, len(x), PREDICT_CHUNK)]
        return torch.cat(outs).numpy()

    def params(self) -> list:
        if self.input_shape is not None:
            return self._torch_models.spec_from_torch(self.model)
        from pyfa.torch import params_from_mlp

        return params_from_mlp(self.model)

    def checkpoint_model(self):
        """What the checkpoint keeps: the numpy layers of an MLP (any backend loads them, DFA
        matrices and kp's learnt feedback included), the torch model of a CNN (its state dict)."""
        return self.model if self.input_shape is not None else self.params()

    def load_model_state(self, arrays: dict[str, np.ndarray]) -> None:
        """Load a checkpoint's state dict arrays (a CNN's) into the model."""
        from pyfa.checkpoint import load_state_arrays

        load_state_arrays(self.model, arrays)

    def state(self) -> TrainingState:
        """The optimiser's state (moments, step counts, hyper-parameters), the generator's, and
        the model's buffers (e.g. a brsf layer's draw counter: whatever is not a weight, bias or
        feedback matrix but changes as the model trains)."""
        arrays: dict[str, np.ndarray] = {}
        info = {"optimizer": _pack(self.opt.state_dict(), "optimizer", arrays, self._torch)}
        arrays["generator"] = self.generator.get_state().numpy().copy()
        buffers = dict(self.model.named_buffers())
        for name, buf in buffers.items():
            arrays[f"buffer.{name}"] = buf.detach().cpu().numpy().copy()
        info["buffers"] = sorted(buffers)
        return TrainingState(info, arrays)

    def load_state(self, state: TrainingState) -> None:
        """Restore what `state` gave (the weights come from the checkpoint's layers)."""
        torch = self._torch
        self.opt.load_state_dict(_unpack(state.info["optimizer"], state.arrays, torch))
        self.generator.set_state(torch.from_numpy(state.arrays["generator"].copy()))
        buffers = dict(self.model.named_buffers())
        for name in state.info.get("buffers", ()):
            saved = torch.from_numpy(state.arrays[f"buffer.{name}"].copy())
            if name not in buffers or buffers[name].shape != saved.shape:
                raise ValueError(f"the saved training state has buffer {name!r} "
                                 f"{tuple(saved.shape)}, which this model does not have")
            with torch.no_grad():
                buffers[name].copy_(saved)


def julia_support_problem(config: TrainConfig) -> str | None:
    """Why the Julia bridge cannot train `config`, or None. Read from ``pyfa.julia``'s Python side
    (its model classes, the modes they list, the keyword arguments they take), so it starts no
    Julia: a model, a mode, a loss other than the MSE, or weight decay that the bridge does not
    offer is refused, never silently trained otherwise."""
    from pyfa import julia

    cls = _julia_class(config.model)
    if cls is None:
        return (f"--backend julia cannot train --model {config.model} yet: the Julia bridge has no "
                "CNN (pyfa.julia.JuliaCNN); train it with --backend torch")
    modes = _julia_modes(julia, config.model)
    if config.mode not in modes:
        return (f"--backend julia cannot train mode {config.mode!r}"
                f"{' on --model ' + config.model if config.model != 'mlp' else ''} yet: the Julia "
                f"bridge (pyfa.julia) offers {', '.join(modes)}; train {config.mode} with "
                "--backend torch")
    if config.loss not in (None, "mse") and (
            not _julia_takes(cls, "loss") or config.loss not in getattr(julia, "LOSSES", ("mse",))):
        return (f"--backend julia cannot train with loss {config.loss!r} yet: the Julia bridge's "
                f"training step is the MSE only ({cls.__name__} takes no loss); pass --loss mse, or "
                "train with --backend torch")
    if weight_decay_of(config) > 0 and not _julia_takes(cls, "weight_decay"):
        return (f"--backend julia cannot apply weight decay (λ = {weight_decay_of(config):g}"
                f"{', the default of mode ' + config.mode if config.weight_decay is None else ''}) "
                f"yet: pyfa.julia.{cls.__name__} takes no weight_decay; train with --backend torch")
    return None


def _julia_class(model: str):
    """The bridge's class for `model` ("mlp": JuliaChain, "lenet": JuliaCNN), or None."""
    from pyfa import julia

    return getattr(julia, "JuliaChain" if model == "mlp" else "JuliaCNN", None)


def _julia_modes(julia, model: str) -> tuple[str, ...]:
    if model == "mlp":
        listed = getattr(julia, "CHAIN_MODES", None)
        return tuple(listed) if listed is not None else (
            *getattr(julia, "MODES", ()), *getattr(julia, "NETWORK_MODES", ()))
    return tuple(getattr(julia, "CNN_MODES", ()))


#: The methods of a Julia model the runner calls, in the order it calls them.
_JULIA_METHODS = ("from_params", "setup_optimiser", "step")


def _julia_takes(cls, name: str) -> str | None:
    """The first method of `_JULIA_METHODS` of the bridge's class `cls` that takes a keyword
    `name`, or None."""
    for method in _JULIA_METHODS:
        try:
            if name in inspect.signature(getattr(cls, method)).parameters:
                return method
        except (AttributeError, TypeError, ValueError):
            continue
    return None


class JuliaRunner:
    """Julia: a ``JuliaChain`` (an MLP; a DFA chain in mode dfa) or ``JuliaCNN`` (LeNet) through
    `pyfa.julia`, Julia's RNG seeded for brsf. The loss and the weight decay go to the method of the
    bridge that takes them (`julia_support_problem` has refused the run before if none does); a
    CNN's flat input rows are reshaped to images (N, C, H, W) for it."""

    def __init__(self, config: TrainConfig, network: list, input_shape=None):
        from pyfa import julia

        problem = julia_support_problem(config)
        if problem:
            raise ValueError(problem)
        if not julia.available():
            raise julia.JuliaUnavailableError(julia.unavailable_reason())
        julia.seed(config.seed)  # brsf's per-step draws
        cls = _julia_class(config.model)
        self.config = config
        self.input_shape = None if config.model == "mlp" else tuple(input_shape)
        extra = {m: {} for m in _JULIA_METHODS}
        if config.loss not in (None, "mse"):
            extra[_julia_takes(cls, "loss")]["loss"] = config.loss
        if weight_decay_of(config) > 0:
            extra[_julia_takes(cls, "weight_decay")]["weight_decay"] = weight_decay_of(config)
        self._step_kw = extra["step"]
        # DFA's matrices are fixed: kept here, so the metrics have them whatever to_params gives
        self._direct = [getattr(p, "direct_feedback", None) for p in network]
        self.model = cls.from_params(network, mode=config.mode, dtype=np.float32,
                                     **extra["from_params"])
        self.model.setup_optimiser(config.optimizer, lr=config.lr, momentum=config.momentum,
                                   **extra["setup_optimiser"])

    def _images(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x)
        return x if self.input_shape is None else x.reshape(len(x), *self.input_shape)

    def set_threads(self, threads: int | None) -> None:
        pass  # Julia's threads are fixed when Julia starts (PYTHON_JULIACALL_THREADS)

    def close(self) -> None:
        pass

    def step(self, x: np.ndarray, y: np.ndarray) -> float:
        return float(self.model.step(self._images(x), np.ascontiguousarray(y), **self._step_kw))

    def predict(self, x: np.ndarray) -> np.ndarray:
        outs = [np.asarray(self.model.forward(self._images(x[i: i + PREDICT_CHUNK])),
                           dtype=np.float32) for i in range(0, len(x), PREDICT_CHUNK)]
        return np.concatenate(outs)

    def params(self) -> list:
        layers = self.model.to_params()
        for p, d in zip(layers, self._direct, strict=True):
            if d is not None and getattr(p, "direct_feedback", None) is None:
                p.direct_feedback = d.astype(p.weight.dtype)
        return layers

    def checkpoint_model(self):
        """An MLP's numpy layers; a CNN as the torch model of the same arrays, so that its
        checkpoint is the same state-dict checkpoint a torch run writes."""
        if self.input_shape is None:
            return self.params()
        from pyfa.train.torch_models import cnn_from_spec

        return cnn_from_spec(self.params(), self.config.mode, self.input_shape,
                             architecture=self.config.model)

    def state(self) -> None:
        return None  # the bridge does not hand out Flux's optimiser state or Julia's RNG state

    def load_state(self, state: TrainingState) -> None:
        raise ResumeUnsupported(
            "the Julia backend cannot resume a run yet: pyfa cannot read Flux's optimiser state "
            "or Julia's random state out of Julia"
        )


RUNNERS = {"torch": TorchRunner, "julia": JuliaRunner}


def make_runner(config: TrainConfig, network: list, input_shape=None):
    """The runner of `config.backend`, holding a model built from `network` (a CNN's flat input
    rows are images of `input_shape`, (C, H, W))."""
    return RUNNERS[config.backend](config, network, input_shape)


# ---------------------------------------------------- torch state dicts <-> JSON + numpy arrays


def _pack(obj, name: str, arrays: dict, torch):
    """`obj` (a state dict: dicts, lists, tuples, numbers, strings, tensors) as JSON, with every
    tensor moved into `arrays` under a name derived from `name`; exact, dict key types included."""
    if isinstance(obj, torch.Tensor):
        arrays[name] = obj.detach().cpu().numpy().copy()
        return {"__tensor__": name}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj) and "__tensor__" not in obj:
            return {k: _pack(v, f"{name}.{k}", arrays, torch) for k, v in obj.items()}
        return {"__items__": [[k, _pack(v, f"{name}.{k}", arrays, torch)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_pack(v, f"{name}.{i}", arrays, torch) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_pack(v, f"{name}.{i}", arrays, torch) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot save {type(obj).__name__} at {name} of the training state")


def _unpack(obj, arrays: dict, torch):
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return torch.from_numpy(arrays[obj["__tensor__"]].copy())
        if "__items__" in obj:
            return {k: _unpack(v, arrays, torch) for k, v in obj["__items__"]}
        if "__tuple__" in obj:
            return tuple(_unpack(v, arrays, torch) for v in obj["__tuple__"])
        return {k: _unpack(v, arrays, torch) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_unpack(v, arrays, torch) for v in obj]
    return obj
