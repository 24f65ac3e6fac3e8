"""Checkpoints: a model's weights, biases AND feedback matrices in one ``.npz``, saved atomically.

The feedback matrices are part of an FA model: training on with other B's silently changes what the
network learns, so a checkpoint always carries them, and loading gives back the very same B.

File layout of an MLP (plain numpy, ``np.load(path, allow_pickle=False)`` reads it)::

    layer0.weight    (out, in)      layer0.feedback  (out, in)     layer0.bias  (out,)  [if any]
    layer0.direct_feedback  (C, out)   [DFA networks: every hidden layer's fixed matrix B_l]
    layer1.weight    ...
    __meta__         0-d unicode array: JSON {"format": "pyfa.checkpoint", "format_version": 1,
                     "pyfa_version", "sizes", "activations", "bias", "dtype", "mode", "meta": {...},
                     ["direct_feedback": [true, ..., false]]}
    training.NAME    [format >= 2] arrays of the training state (optimiser moments, RNG states),
                     listed in the header's "training_arrays"; the header's "training" holds the
                     rest of it as JSON (epoch, history, ...). See `TrainingState`.

A model whose layers are not all dense (LeNet-5 of ``pyfa train --model lenet``, a
`pyfa.train.torch_models.CNN`) is kept as its torch **state dict**, which names every tensor
(weights, biases, feedback matrices, brsf's counters)::

    state.KEY        each tensor of model.state_dict(), KEY its name (e.g. ``state.1.weight``)
    __meta__         {..., "model": {"name": "lenet", "input_shape": [1, 28, 28], "classes": 10,
                     "activation": "relu"}, "state_keys": [...], "mode", "dtype", "meta"}

and `load` rebuilds the architecture that ``model`` names, in the saved mode, and loads the state
dict into it (``backend="torch"`` only: numpy `DenseParams` and Julia chains are dense-only).

The format version is the smallest that holds what is written: 1 for an MLP alone (older pyfa reads
it), 2 with a training state (what ``pyfa train --out`` writes after every epoch, so that
``--resume`` can continue the run exactly), 3 for DFA matrices or a state-dict model, which an
older pyfa would silently drop or misread and so refuses ("newer than this pyfa"). `load` reads
them all and ignores the training state. kp's trainable feedback is the ``feedback`` array like
every mode's; DFA's matrices are part of the model and are never dropped.

`save` writes to a temporary file in the target's folder, flushes and fsyncs it, then renames it
over the target (``os.replace``): a crash or error mid-way leaves the old file as it was and no
temporary file behind. `load` gives numpy `DenseParams`, a PyTorch ``nn.Sequential`` or a Julia
``JuliaChain``; `load_into` fills an existing PyTorch model, refusing (and leaving it unchanged) if
shapes differ.

Reading never unpickles: a file that is not an ``.npz`` (zip) archive, a damaged one, one holding object
arrays, or one whose header contradicts its arrays raises a `CheckpointError` naming the file.

This module imports neither torch nor juliacall at import time.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pyfa.network import DenseParams, check_network

FORMAT = "pyfa.checkpoint"
#: The newest format this pyfa reads and writes (1: the model; 2: the model and a training state;
#: 3: DFA matrices or a state-dict model, see the module docstring).
FORMAT_VERSION = 3
BACKENDS = ("numpy", "torch", "julia")
_META_KEY = "__meta__"
_MIXED = "<mixed>"  # _to_params: the torch model's LinearFA layers have different modes
_TRAINING = "training."  # prefix of the training state's arrays
_STATE = "state."  # prefix of a state-dict model's tensors
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip archive (an .npz), or an empty one


class CheckpointError(ValueError):
    """A file that is not a readable pyfa checkpoint, or one that does not fit the target model."""


@dataclass
class TrainingState:
    """What a checkpoint carries besides the model so that training can continue exactly.

    ``info`` is JSON-serialisable (epoch, history, optimiser hyper-parameters, the data-order RNG
    state, ...); ``arrays`` are numpy arrays (optimiser moments, a torch generator's state), keyed by
    names made of letters, digits, ``_``, ``-`` and ``.``. pyfa.train defines what goes in them;
    this module only stores and checks them.
    """

    info: dict = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


def save(path, model, meta: dict | None = None, *, mode: str | None = None,
         training: TrainingState | None = None) -> Path:
    """Write `model` to `path` (exactly that name; ``.npz`` is the usual suffix) atomically.

    Args:
        model: a list of `DenseParams` (with DFA matrices or not), an ``nn.Sequential`` of
            `LinearFA` layers and activation modules or a `DFASequential` (e.g. from
            `pyfa.torch.mlp_from_params`), a Julia chain with ``to_params()``, or a
            `pyfa.train.torch_models.CNN` of a named architecture (LeNet-5), kept as its state
            dict. Other modules (e.g. a custom ``nn.Module`` after `pyfa.torch.convert`) raise
            TypeError: save their ``state_dict()`` with torch.
        meta: JSON-serialisable extras kept in the file (e.g. the training config); read them back
            with `read_meta`.
        mode: the FA mode to record (default: ``meta["mode"]``, else the torch model's mode, else
            ``"fa"``). `load` builds models in that mode unless told otherwise. A torch model whose
            layers have different modes is refused (ValueError) unless `mode` is given.
        training: a `TrainingState` to keep with the model (format 2); read it back with
            `read_training`.
    Returns the path written.
    """
    if hasattr(model, "architecture_info"):
        return _save_state_dict(path, model, meta, mode, training)
    layers, model_mode = _to_params(model)
    if model_mode == _MIXED and mode is None:
        raise ValueError(
            f"save: the model's LinearFA layers have different modes "
            f"{[m.mode for m in _fa_layers(model)]}; a checkpoint records one mode for all layers: "
            "pass mode=... to choose the one `load` will build"
        )
    check_network(layers)
    meta = dict(meta or {})
    mode = mode or meta.get("mode") or (None if model_mode == _MIXED else model_mode) or "fa"
    _check_mode(mode, "save")
    if training is not None:
        _check_training(training)
    direct = [p.direct_feedback is not None for p in layers]
    info = {
        **_header(1 if training is None else 2, training),
        "sizes": [layers[0].in_features] + [p.out_features for p in layers],
        "activations": [p.activation for p in layers],
        "bias": [p.bias is not None for p in layers],
        "dtype": str(layers[0].weight.dtype),
        "mode": mode,
        "meta": meta,
    }
    if any(direct):
        info["format_version"] = 3
        info["direct_feedback"] = direct
    arrays = {_META_KEY: _header_array(info)}
    for i, p in enumerate(layers):
        arrays[f"layer{i}.weight"] = p.weight
        arrays[f"layer{i}.feedback"] = p.feedback
        if p.bias is not None:
            arrays[f"layer{i}.bias"] = p.bias
        if p.direct_feedback is not None:
            arrays[f"layer{i}.direct_feedback"] = p.direct_feedback
    if training is not None:
        arrays.update({_TRAINING + k: np.asarray(a) for k, a in training.arrays.items()})

    return atomic_write(path, lambda f: np.savez(f, **arrays))


def _header(version: int, training: TrainingState | None) -> dict:
    from pyfa import __version__

    info = {"format": FORMAT, "format_version": version, "pyfa_version": __version__}
    if training is not None:
        info["training"] = training.info
        info["training_arrays"] = sorted(training.arrays)
    return info


def _header_array(info: dict) -> np.ndarray:
    try:
        return np.array(json.dumps(info, allow_nan=True))
    except TypeError as e:
        raise TypeError(f"save: meta must be JSON-serialisable: {e}") from None


def _check_mode(mode: str, where: str) -> None:
    from pyfa.train.config import TRAIN_MODES

    if mode not in TRAIN_MODES:
        raise ValueError(f"{where}: unknown mode {mode!r}; expected one of {TRAIN_MODES}")


def _save_state_dict(path, model, meta: dict | None, mode: str | None,
                     training: TrainingState | None) -> Path:
    """A state-dict checkpoint (format 3) of a model that can rebuild itself (module docstring)."""
    arch = model.architecture_info()
    modes = {m.mode for m in model.modules() if hasattr(m, "feedback") and hasattr(m, "mode")}
    if mode is None and len(modes) != 1:
        raise ValueError(f"save: the model's layers have modes {sorted(modes)}; pass mode=...")
    meta = dict(meta or {})
    mode = mode or modes.pop()
    _check_mode(mode, "save")
    if training is not None:
        _check_training(training)
    state = {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}
    floats = {str(a.dtype) for a in state.values() if a.dtype.kind == "f"}
    info = {**_header(3, training), "model": arch, "state_keys": sorted(state),
            "dtype": floats.pop() if len(floats) == 1 else "mixed", "mode": mode, "meta": meta}
    arrays = {_META_KEY: _header_array(info)}
    arrays.update({_STATE + k: a for k, a in state.items()})
    if training is not None:
        arrays.update({_TRAINING + k: np.asarray(a) for k, a in training.arrays.items()})
    return atomic_write(path, lambda f: np.savez(f, **arrays))


def _check_training(training: TrainingState) -> None:
    if not isinstance(training, TrainingState):
        raise TypeError(f"save: training must be a TrainingState, got {type(training).__name__}")
    for k, a in training.arrays.items():
        ok_name = isinstance(k, str) and k and all(c.isalnum() or c in "_-." for c in k)
        if not ok_name:
            raise ValueError(f"save: training array name {k!r} must be made of letters, digits, "
                             "'_', '-' and '.'")
        if not isinstance(a, np.ndarray) or a.dtype.hasobject:
            raise TypeError(f"save: training array {k!r} must be a numeric numpy array, got "
                            f"{type(a).__name__}")


def atomic_write(path, write) -> Path:
    """Write a file atomically: ``write(f)`` fills a temporary binary file in `path`'s folder, which
    is flushed, fsynced and renamed over `path` (``os.replace``). On any error or interrupt the old
    file is left as it was and no temporary file remains. Creates the folder. Returns the path."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    folder.mkdir(parents=True, exist_ok=True)
    # mkstemp makes the file 0600; give the new file the old file's mode, or rw-r--r--.
    file_mode = os.stat(path).st_mode & 0o777 if path.is_file() else 0o644
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, file_mode)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(folder)
    return path


def read_meta(path) -> dict:
    """The checkpoint's JSON header (sizes, activations, mode, pyfa version, your ``meta``)."""
    with _open(path) as z:
        return _meta(z, path)


def read_training(path) -> TrainingState | None:
    """The `TrainingState` saved with the model, or None if the checkpoint has none (format 1)."""
    with _open(path) as z:
        info = _meta(z, path)
        _check_keys(z, info, path)
        if "training" not in info:
            return None
        arrays = {k: _array(z, _TRAINING + k, path) for k in info["training_arrays"]}
    return TrainingState(info["training"], arrays)


def load(path, backend: str | None = None, mode: str | None = None, *, device=None, dtype=None):
    """Read a checkpoint written by `save`.

    Args:
        backend: ``None`` or ``"numpy"``: a list of `DenseParams` (weights, feedback, biases,
            activations, DFA matrices). ``"torch"``: an ``nn.Sequential`` of `LinearFA` layers
            (`pyfa.torch.mlp_from_params`; a `DFASequential` in mode dfa) on `device`, or, for a
            state-dict checkpoint (LeNet-5), the rebuilt `pyfa.train.torch_models.CNN` with its
            state dict loaded. ``"julia"``: a ``pyfa.julia.JuliaChain`` (raises
            ``pyfa.julia.JuliaUnavailableError`` if Julia cannot start).
        mode: the FA mode of the built model; default the one saved in the checkpoint.
        device: for ``backend="torch"``: where the model's tensors go (``"cpu"``, ``"cuda"``, ...);
            refused (ValueError) if torch cannot use it here.
        dtype: convert the arrays: float32 or float64, as a numpy dtype, a name (``"float64"``)
            or a torch dtype (``torch.float64``); default as saved.

    Every argument is checked before the file is read (ValueError for a bad one).
    """
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"load: unknown backend {backend!r}; expected None or one of {BACKENDS}")
    if mode is not None:
        _check_mode(mode, "load")
    dtype = None if dtype is None else _float_dtype(dtype)
    if device is not None:
        if backend != "torch":
            raise ValueError(f"load: device={device!r} applies to backend='torch' only")
        from pyfa._device import check_torch_device

        check_torch_device(device, "load")
    with _open(path) as z:
        info = _meta(z, path)
        _check_keys(z, info, path)
        if "model" in info:
            return _load_state_dict_model(z, info, path, backend, mode, device, dtype)
        direct = info.get("direct_feedback") or [False] * len(info["activations"])
        layers = []
        for i, act in enumerate(info["activations"]):
            w, fb = _array(z, f"layer{i}.weight", path), _array(z, f"layer{i}.feedback", path)
            b = _array(z, f"layer{i}.bias", path) if info["bias"][i] else None
            d = _array(z, f"layer{i}.direct_feedback", path) if direct[i] else None
            try:
                layers.append(DenseParams(w, fb, b, act, d))
            except (ValueError, TypeError) as e:
                raise CheckpointError(f"checkpoint {os.fspath(path)!r}, layer {i}: {e}") from None
    try:
        check_network(layers)
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"checkpoint {os.fspath(path)!r}: {e}") from None
    _check_header_against_arrays(info, layers, path)
    if dtype is not None:
        layers = [p.astype(dtype) for p in layers]
    mode = mode or _saved_mode(info, path)
    if backend in (None, "numpy"):
        return layers
    if backend == "torch":
        from pyfa.torch import mlp_from_params

        return mlp_from_params(layers, mode, device=device)
    from pyfa import julia

    return julia.JuliaChain.from_params(layers, mode=mode, dtype=layers[0].weight.dtype)


def _saved_mode(info: dict, path) -> str:
    from pyfa.train.config import TRAIN_MODES

    mode = info.get("mode", "fa")
    if mode not in TRAIN_MODES:
        raise CheckpointError(f"checkpoint {os.fspath(path)!r}: header mode {mode!r} is not one of "
                              f"{TRAIN_MODES}")
    return mode


def read_state_arrays(path) -> dict[str, np.ndarray]:
    """The state dict arrays of a state-dict checkpoint (LeNet-5), keyed as in ``state_dict()``; a
    `CheckpointError` for a checkpoint of DenseParams layers."""
    with _open(path) as z:
        info = _meta(z, path)
        _check_keys(z, info, path)
        if "model" not in info:
            raise CheckpointError(f"checkpoint {os.fspath(path)!r} holds dense layers, not a state "
                                  "dict: read it with load(path)")
        return {k: _array(z, _STATE + k, path) for k in info["state_keys"]}


def _load_state_dict_model(z, info: dict, path, backend, mode, device, dtype):
    where = f"checkpoint {os.fspath(path)!r}"
    if backend != "torch":
        raise CheckpointError(
            f"{where} holds a {info['model'].get('name')} (convolutional layers), kept as a torch "
            "state dict: load it with backend='torch' (numpy DenseParams and Julia chains are "
            "dense-only)")
    mode = mode or _saved_mode(info, path)
    arrays = {k: _array(z, _STATE + k, path) for k in info["state_keys"]}
    from pyfa.train.torch_models import rebuild

    try:
        model = rebuild(info["model"], mode, device=device)
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{where}: cannot rebuild its model {info['model']!r} ({e})") from None
    if dtype is not None:
        import torch

        model.to(getattr(torch, _float_dtype(dtype).name))
    load_state_arrays(model, arrays, where=where)
    return model


def load_state_arrays(model, arrays: dict[str, np.ndarray], *, where: str = "the state") -> None:
    """Copy state dict `arrays` into torch `model`, every name and shape checked BEFORE anything is
    copied (a `CheckpointError` naming the tensor leaves the model unchanged). A ``brsf_state``
    counter present on one side only (the mode changed between save and load) is left alone;
    values are cast to the model's dtypes."""
    import torch

    target = model.state_dict()
    optional = {k for k in set(target) ^ set(arrays) if k.rsplit(".", 1)[-1] == "brsf_state"}
    missing = sorted(set(target) - set(arrays) - optional)
    extra = sorted(set(arrays) - set(target) - optional)
    if missing or extra:
        raise CheckpointError(f"{where} does not fit the model: tensors missing {missing[:6]}, "
                              f"tensors the model does not have {extra[:6]}")
    for k, a in arrays.items():
        if k in target and tuple(target[k].shape) != a.shape:
            raise CheckpointError(f"{where}: {k} has shape {a.shape} but the model's "
                                  f"{k} has shape {tuple(target[k].shape)}")
    with torch.no_grad():
        for k, a in arrays.items():
            if k in target:
                target[k].copy_(torch.from_numpy(np.array(a)))


def load_into(model, path):
    """Copy a checkpoint's weights, feedback matrices and biases into an existing PyTorch `model`.

    The model's `LinearFA` layers are filled in order, and a `DFASequential`'s DFA matrices from
    the checkpoint's. Every shape (and the presence of biases and DFA matrices, and, for an MLP from
    `pyfa.torch.mlp_from_params`, the activations) is checked BEFORE anything is copied: on a
    mismatch a `CheckpointError` names the layer and both shapes and the model is left unchanged.
    Values are cast to the model's dtype, with a UserWarning naming both dtypes when they differ
    (e.g. a float64 checkpoint into a float32 model). A state-dict checkpoint (LeNet-5) fills a
    model of the same architecture, tensor by tensor (`load_state_arrays`). Returns `model`.
    """
    try:
        import torch
        from torch import nn
    except ImportError:  # pragma: no cover - torch is a dependency
        raise TypeError("load_into fills PyTorch models; torch is not installed") from None
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"load_into: expected a PyTorch model of LinearFA layers, got {type(model).__name__}; "
            "for numpy or Julia use pyfa.checkpoint.load(path, backend=...)"
        )
    from pyfa.torch import fa_layers, params_from_mlp

    where = f"checkpoint {os.fspath(path)!r}"
    if "model" in read_meta(path):
        load_state_arrays(model, read_state_arrays(path), where=where)
        return model
    layers = load(path)
    targets = fa_layers(model)
    if len(targets) != len(layers):
        raise CheckpointError(
            f"{where} has {len(layers)} layers {_shapes(layers)} but the model has "
            f"{len(targets)} LinearFA layers {[tuple(m.weight.shape) for m in targets]}"
        )
    for i, (m, p) in enumerate(zip(targets, layers, strict=True)):
        if tuple(m.weight.shape) != p.weight.shape:
            raise CheckpointError(
                f"{where}: layer {i} weight has shape {p.weight.shape} but the model's layer {i} "
                f"({m!r}) has weight shape {tuple(m.weight.shape)}"
            )
        if (m.bias is None) != (p.bias is None):
            has = "has" if p.bias is not None else "has no"
            raise CheckpointError(
                f"{where}: layer {i} {has} bias but the model's layer {i} ({m!r}) "
                f"{'has none' if m.bias is None else 'has one'}"
            )
    try:
        model_acts = [q.activation for q in params_from_mlp(model)]
    except TypeError:
        model_acts = None  # not a plain MLP (e.g. a converted model): activations are its own
    saved_acts = [p.activation for p in layers]
    if model_acts is not None and model_acts != saved_acts:
        i = next(k for k, (a, b) in enumerate(zip(model_acts, saved_acts, strict=True)) if a != b)
        raise CheckpointError(
            f"{where}: layer {i} has activation {saved_acts[i]!r} but the model's layer {i} has "
            f"{model_acts[i]!r} (checkpoint {saved_acts}, model {model_acts})"
        )
    dfa = getattr(model, "direct_feedback_of", None)
    if dfa is not None:
        for i, p in enumerate(layers[:-1]):
            want = tuple(dfa(i).shape)
            got = None if p.direct_feedback is None else p.direct_feedback.shape
            if got != want:
                raise CheckpointError(
                    f"{where}: the model is a DFASequential, whose layer {i} needs a DFA matrix "
                    f"{want}, but the checkpoint's layer {i} has "
                    f"{'none' if got is None else f'one of shape {got}'}")
    saved = {str(p.weight.dtype) for p in layers}
    model_dtypes = {str(m.weight.dtype).removeprefix("torch.") for m in targets}
    if saved != model_dtypes:
        warnings.warn(
            f"load_into: {where} holds {'/'.join(sorted(saved))} arrays but the model's LinearFA "
            f"layers are {'/'.join(sorted(model_dtypes))}: the values are cast to the model's dtype",
            UserWarning, stacklevel=2,
        )
    with torch.no_grad():
        for m, p in zip(targets, layers, strict=True):
            m.weight.copy_(torch.from_numpy(p.weight))
            m.feedback.copy_(torch.from_numpy(p.feedback))
            if p.bias is not None:
                m.bias.copy_(torch.from_numpy(p.bias))
        if dfa is not None:
            for i, p in enumerate(layers[:-1]):
                dfa(i).copy_(torch.from_numpy(p.direct_feedback))
    return model


def _to_params(model) -> tuple[list[DenseParams], str | None]:
    if isinstance(model, (list, tuple)) and all(isinstance(p, DenseParams) for p in model):
        return [p for p in model], None
    if hasattr(model, "to_params"):  # a Julia chain from pyfa.julia
        return list(model.to_params()), getattr(model, "mode", None)
    mod = type(model).__module__ or ""
    if mod.startswith("torch") or hasattr(model, "state_dict"):
        from pyfa.torch import params_from_mlp

        try:
            layers = params_from_mlp(model)
        except TypeError as e:
            raise TypeError(
                f"save: cannot save a {type(model).__name__} ({e}): save accepts {_ACCEPTS}; for "
                "another module, torch.save its state_dict()"
            ) from None
        if hasattr(model, "direct_feedback_of"):  # a DFASequential: the network-level mode
            return layers, "dfa"
        modes = {m.mode for m in _fa_layers(model)}
        return layers, (modes.pop() if len(modes) == 1 else _MIXED if modes else None)
    raise TypeError(f"save: expected {_ACCEPTS}, got {type(model).__name__}")


_ACCEPTS = (
    "a list of DenseParams, an nn.Sequential of LinearFA layers and activation "
    "modules (pyfa.torch.mlp_from_params), or a pyfa.julia.JuliaChain"
)


def _fa_layers(model):
    from pyfa.torch import fa_layers

    return fa_layers(model)


def _float_dtype(dtype) -> np.dtype:
    """float32 or float64 as a numpy dtype, from a numpy dtype, a name or a torch dtype."""
    name = str(dtype).removeprefix("torch.") if type(dtype).__module__.startswith("torch") else dtype
    try:
        dt = np.dtype(name)
    except TypeError:
        dt = None
    if dt is None or dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"load: dtype must be float32 or float64 (a numpy or torch dtype, or its "
                         f"name), got {dtype!r}")
    return dt


def _open(path):
    """The open .npz (a context manager); never unpickles, and every failure names the file."""
    path = os.fspath(path)
    if os.path.isdir(path):
        inside = sorted(p for p in Path(path).glob("*model.npz")) + sorted(
            Path(path).glob("*/model.npz"))
        hint = (f"; it holds {', '.join(repr(str(p)) for p in inside[:4])}" if inside else
                "; give the checkpoint file inside it (pyfa train writes DIR/model.npz)")
        raise CheckpointError(f"checkpoint {path!r} is a folder, not a file{hint}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist")
    with open(path, "rb") as f:
        head = f.read(4)
    if head not in _ZIP_MAGIC:
        raise CheckpointError(
            f"{path!r} is not a pyfa checkpoint: not an .npz (zip) archive, it starts with {head!r}"
        )
    try:
        return np.load(path, allow_pickle=False)
    except Exception as e:
        raise CheckpointError(f"{path!r} is not a readable .npz checkpoint ({_brief(e)})") from None


def _array(z, key: str, path) -> np.ndarray:
    """One array of the open checkpoint; a damaged member or an object array (which would need
    pickle) is a `CheckpointError` naming the file and the array."""
    where = f"checkpoint {os.fspath(path)!r}"
    try:
        a = z[key]
    except ValueError as e:
        if "pickle" in str(e):
            raise CheckpointError(
                f"{where}: array {key!r} holds Python objects (dtype object); a pyfa checkpoint "
                "holds only numbers, and pyfa never unpickles"
            ) from None
        raise CheckpointError(f"{where}: array {key!r} cannot be read ({_brief(e)})") from None
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as e:
        raise CheckpointError(f"{where} is damaged: array {key!r} ({_brief(e)})") from None
    return a


def _brief(e: BaseException) -> str:
    """An exception as one short phrase, never advice to load pickled data."""
    text = str(e).split("\n")[0] or type(e).__name__
    if "pickle" in text:
        return "it holds data that only pickle could read"
    return f"{type(e).__name__}: {text}"


def _check_header_against_arrays(info: dict, layers: list[DenseParams], path) -> None:
    sizes = [layers[0].in_features] + [p.out_features for p in layers]
    where = f"checkpoint {os.fspath(path)!r}"
    if info["sizes"] != sizes:
        raise CheckpointError(f"{where}: the header's sizes {info['sizes']} contradict the arrays, "
                              f"whose shapes give sizes {sizes}")
    dtype = str(layers[0].weight.dtype)
    if "dtype" in info and info["dtype"] != dtype:
        raise CheckpointError(f"{where}: the header's dtype {info['dtype']!r} contradicts the "
                              f"arrays, which are {dtype}")


def _meta(z, path) -> dict:
    where = repr(os.fspath(path))
    if _META_KEY not in z.files:
        raise CheckpointError(
            f"{where} is not a pyfa checkpoint (no {_META_KEY} entry; has {z.files[:6]})"
        )
    raw = _array(z, _META_KEY, path)
    try:
        info = json.loads(str(raw[()]))
    except (ValueError, TypeError, IndexError) as e:  # JSONDecodeError is a ValueError
        raise CheckpointError(f"{where}: the {_META_KEY} header is not valid JSON ({e})") from None
    if not isinstance(info, dict):
        raise CheckpointError(
            f"{where}: the {_META_KEY} header is a JSON {type(info).__name__}, not an object"
        )
    if info.get("format") != FORMAT:
        raise CheckpointError(f"{where} is not a pyfa checkpoint (format {info.get('format')!r})")
    version = info.get("format_version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise CheckpointError(f"{where}: header format_version must be an integer, got {version!r}")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{where} has checkpoint format {version}, newer than this pyfa ({FORMAT_VERSION}); "
            "upgrade pyfa"
        )
    expected = {
        "sizes": (list, int), "activations": (list, str), "bias": (list, bool),
        "dtype": (str, None), "mode": (str, None), "meta": (dict, None),
        "training": (dict, None), "training_arrays": (list, str),
        "direct_feedback": (list, bool), "model": (dict, None), "state_keys": (list, str),
    }
    state_dict = "model" in info
    if state_dict and "state_keys" not in info:
        raise CheckpointError(f"{where}: the header names a model but lacks 'state_keys'")
    for key, (kind, item) in expected.items():
        if key not in info:
            if item is None or key in ("training_arrays", "direct_feedback", "state_keys") or (
                    state_dict and key in ("sizes", "activations", "bias")):
                continue  # optional
            raise CheckpointError(f"{where}: the header lacks {key!r}")
        value = info[key]
        ok = isinstance(value, kind) and (
            item is None
            or all(isinstance(v, item) and (item is bool or not isinstance(v, bool)) for v in value)
        )
        if not ok:
            what = f"a list of {item.__name__}" if item else f"a {kind.__name__}"
            raise CheckpointError(f"{where}: header {key!r} must be {what}, got {value!r}")
    if ("training" in info) != ("training_arrays" in info):
        raise CheckpointError(f"{where}: the header has one of 'training' and 'training_arrays' "
                              "without the other")
    if state_dict:
        return info
    n = len(info["activations"])
    if "direct_feedback" in info and len(info["direct_feedback"]) != n:
        raise CheckpointError(f"{where}: header lists {len(info['direct_feedback'])} direct_feedback "
                              f"flags for {n} layers")
    if n == 0 or len(info["bias"]) != n or len(info["sizes"]) != n + 1:
        raise CheckpointError(
            f"{where}: header lists {n} activations, {len(info['bias'])} bias flags and "
            f"{len(info['sizes'])} sizes; expected n >= 1 layers: n, n and n + 1"
        )
    return info


def _check_keys(z, info: dict, path) -> None:
    """The arrays must be exactly those the header's layers call for: none missing, none extra."""
    want = {_TRAINING + k for k in info.get("training_arrays", ())}
    if "model" in info:
        want |= {_STATE + k for k in info["state_keys"]}
        what = f"{len(info['state_keys'])} state dict tensors"
    else:
        direct = info.get("direct_feedback") or [False] * len(info["bias"])
        for i, (has_bias, has_direct) in enumerate(zip(info["bias"], direct, strict=True)):
            want |= {f"layer{i}.weight", f"layer{i}.feedback"} | (
                {f"layer{i}.bias"} if has_bias else set()) | (
                {f"layer{i}.direct_feedback"} if has_direct else set())
        what = f"{len(info['bias'])} layers, bias {info['bias']}"
    have = set(z.files) - {_META_KEY}
    if have != want:
        raise CheckpointError(
            f"checkpoint {os.fspath(path)!r} does not match its header ({what}): missing arrays "
            f"{sorted(want - have)}, arrays not in the header {sorted(have - want)}"
        )


def _shapes(layers: list[DenseParams]) -> list[tuple[int, int]]:
    return [p.weight.shape for p in layers]


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


__all__ = ["save", "load", "load_into", "read_meta", "read_training", "read_state_arrays",
           "load_state_arrays", "TrainingState", "CheckpointError", "FORMAT", "FORMAT_VERSION"]
