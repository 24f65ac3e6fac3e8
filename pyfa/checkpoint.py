"""Checkpoints: a model's weights, biases AND feedback matrices in one ``.npz``, saved atomically.

The feedback matrices are part of an FA model: training on with other B's silently changes what the
network learns, so a checkpoint always carries them, and loading gives back the very same B.

File layout (plain numpy, ``np.load(path, allow_pickle=False)`` reads it)::

    layer0.weight    (out, in)      layer0.feedback  (out, in)     layer0.bias  (out,)  [if any]
    layer1.weight    ...
    __meta__         0-d unicode array: JSON {"format": "pyfa.checkpoint", "format_version": 1,
                     "pyfa_version", "sizes", "activations", "bias", "dtype", "mode", "meta": {...}}

`save` writes to a temporary file in the target's folder, flushes and fsyncs it, then renames it
over the target (``os.replace``): a crash or error mid-way leaves the old file as it was and no
temporary file behind. `load` gives numpy `DenseParams`, a PyTorch ``nn.Sequential`` or a Julia
``JuliaChain``; `load_into` fills an existing PyTorch model, refusing (and leaving it unchanged) if
shapes differ.

This module imports neither torch nor juliacall at import time.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from pyfa.network import MODES, DenseParams, check_network

FORMAT = "pyfa.checkpoint"
FORMAT_VERSION = 1
BACKENDS = ("numpy", "torch", "julia")
_META_KEY = "__meta__"


class CheckpointError(ValueError):
    """A file that is not a readable pyfa checkpoint, or one that does not fit the target model."""


def save(path, model, meta: dict | None = None, *, mode: str | None = None) -> Path:
    """Write `model` to `path` (exactly that name; ``.npz`` is the usual suffix) atomically.

    Args:
        model: a list of `DenseParams`, a PyTorch model of `LinearFA` layers (e.g. from
            `pyfa.torch.mlp_from_params`), or a Julia chain with ``to_params()``.
        meta: JSON-serialisable extras kept in the file (e.g. the training config); read them back
            with `read_meta`.
        mode: the FA mode to record (default: ``meta["mode"]``, else the torch model's mode, else
            ``"fa"``). `load` builds models in that mode unless told otherwise.
    Returns the path written.
    """
    layers, model_mode = _to_params(model)
    check_network(layers)
    meta = dict(meta or {})
    mode = mode or meta.get("mode") or model_mode or "fa"
    if mode not in MODES:
        raise ValueError(f"save: unknown mode {mode!r}; expected one of {MODES}")
    from pyfa import __version__

    info = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "pyfa_version": __version__,
        "sizes": [layers[0].in_features] + [p.out_features for p in layers],
        "activations": [p.activation for p in layers],
        "bias": [p.bias is not None for p in layers],
        "dtype": str(layers[0].weight.dtype),
        "mode": mode,
        "meta": meta,
    }
    try:
        meta_json = json.dumps(info, allow_nan=True)
    except TypeError as e:
        raise TypeError(f"save: meta must be JSON-serialisable: {e}") from None
    arrays: dict[str, np.ndarray] = {_META_KEY: np.array(meta_json)}
    for i, p in enumerate(layers):
        arrays[f"layer{i}.weight"] = p.weight
        arrays[f"layer{i}.feedback"] = p.feedback
        if p.bias is not None:
            arrays[f"layer{i}.bias"] = p.bias

    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    folder.mkdir(parents=True, exist_ok=True)
    # mkstemp makes the file 0600; give the checkpoint the old file's mode, or rw-r--r--.
    file_mode = os.stat(path).st_mode & 0o777 if path.is_file() else 0o644
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, file_mode)
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
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


def load(path, backend: str | None = None, mode: str | None = None, *, device=None, dtype=None):
    """Read a checkpoint written by `save`.

    Args:
        backend: ``None`` or ``"numpy"``: a list of `DenseParams` (weights, feedback, biases,
            activations). ``"torch"``: an ``nn.Sequential`` of `LinearFA` layers
            (`pyfa.torch.mlp_from_params`) on `device`. ``"julia"``: a ``pyfa.julia.JuliaChain``
            (raises ``pyfa.julia.JuliaUnavailableError`` if Julia cannot start).
        mode: the FA mode of the built model; default the one saved in the checkpoint.
        dtype: convert the arrays (e.g. ``np.float64``); default as saved.
    """
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"load: unknown backend {backend!r}; expected None or one of {BACKENDS}")
    with _open(path) as z:
        info = _meta(z, path)
        layers = []
        for i, act in enumerate(info["activations"]):
            try:
                w, fb = z[f"layer{i}.weight"], z[f"layer{i}.feedback"]
                b = z[f"layer{i}.bias"] if info["bias"][i] else None
            except KeyError as e:
                raise CheckpointError(
                    f"checkpoint {os.fspath(path)!r} is incomplete: layer {i} lacks {e}"
                ) from None
            try:
                layers.append(DenseParams(w, fb, b, act))
            except (ValueError, TypeError) as e:
                raise CheckpointError(f"checkpoint {os.fspath(path)!r}, layer {i}: {e}") from None
    try:
        check_network(layers)
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"checkpoint {os.fspath(path)!r}: {e}") from None
    if dtype is not None:
        layers = [p.astype(dtype) for p in layers]
    mode = mode or info.get("mode", "fa")
    if mode not in MODES:
        raise ValueError(f"load: unknown mode {mode!r}; expected one of {MODES}")
    if backend in (None, "numpy"):
        return layers
    if backend == "torch":
        from pyfa.torch import mlp_from_params

        return mlp_from_params(layers, mode, device=device)
    from pyfa import julia

    return julia.JuliaChain.from_params(layers, mode=mode, dtype=layers[0].weight.dtype)


def load_into(model, path):
    """Copy a checkpoint's weights, feedback matrices and biases into an existing PyTorch `model`.

    The model's `LinearFA` layers are filled in order. Every shape (and the presence of biases, and,
    for an MLP from `pyfa.torch.mlp_from_params`, the activations) is checked BEFORE anything is
    copied: on a mismatch a `CheckpointError` names the layer and both shapes and the model is left
    unchanged. Returns `model`.
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

    layers = load(path)
    targets = fa_layers(model)
    where = f"checkpoint {os.fspath(path)!r}"
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
    with torch.no_grad():
        for m, p in zip(targets, layers, strict=True):
            m.weight.copy_(torch.from_numpy(p.weight))
            m.feedback.copy_(torch.from_numpy(p.feedback))
            if p.bias is not None:
                m.bias.copy_(torch.from_numpy(p.bias))
    return model


def _to_params(model) -> tuple[list[DenseParams], str | None]:
    if isinstance(model, (list, tuple)) and all(isinstance(p, DenseParams) for p in model):
        return [p for p in model], None
    if hasattr(model, "to_params"):  # a Julia chain from pyfa.julia
        return list(model.to_params()), getattr(model, "mode", None)
    mod = type(model).__module__ or ""
    if mod.startswith("torch") or hasattr(model, "state_dict"):
        from pyfa.torch import fa_layers, params_from_mlp

        modes = {m.mode for m in fa_layers(model)}
        return params_from_mlp(model), (modes.pop() if len(modes) == 1 else None)
    raise TypeError(
        f"save: expected a list of DenseParams, a PyTorch LinearFA model or a Julia chain, "
        f"got {type(model).__name__}"
    )


def _open(path):
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist")
    try:
        return np.load(path, allow_pickle=False)
    except Exception as e:
        raise CheckpointError(f"{path!r} is not a readable .npz checkpoint: {e}") from None


def _meta(z, path) -> dict:
    if _META_KEY not in z.files:
        raise CheckpointError(
            f"{os.fspath(path)!r} is not a pyfa checkpoint (no {_META_KEY} entry; "
            f"has {z.files[:6]})"
        )
    info = json.loads(str(z[_META_KEY][()]))
    if info.get("format") != FORMAT:
        raise CheckpointError(
            f"{os.fspath(path)!r} is not a pyfa checkpoint (format {info.get('format')!r})"
        )
    if info.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"{os.fspath(path)!r} has checkpoint format {info['format_version']}, newer than this "
            f"pyfa ({FORMAT_VERSION}); upgrade pyfa"
        )
    return info


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


__all__ = ["save", "load", "load_into", "read_meta", "CheckpointError", "FORMAT", "FORMAT_VERSION"]
