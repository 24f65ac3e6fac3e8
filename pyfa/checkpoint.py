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
import warnings
from pathlib import Path

import numpy as np

from pyfa.network import MODES, DenseParams, check_network

FORMAT = "pyfa.checkpoint"
FORMAT_VERSION = 1
BACKENDS = ("numpy", "torch", "julia")
_META_KEY = "__meta__"
_MIXED = "<mixed>"  # _to_params: the torch model's LinearFA layers have different modes


class CheckpointError(ValueError):
    """A file that is not a readable pyfa checkpoint, or one that does not fit the target model."""


def save(path, model, meta: dict | None = None, *, mode: str | None = None) -> Path:
    """Write `model` to `path` (exactly that name; ``.npz`` is the usual suffix) atomically.

    Args:
        model: a list of `DenseParams`, an ``nn.Sequential`` of `LinearFA` layers and activation
            modules (e.g. from `pyfa.torch.mlp_from_params`), or a Julia chain with
            ``to_params()``. Other modules (e.g. a custom ``nn.Module`` after
            `pyfa.torch.convert`) raise TypeError: save their ``state_dict()`` with torch.
        meta: JSON-serialisable extras kept in the file (e.g. the training config); read them back
            with `read_meta`.
        mode: the FA mode to record (default: ``meta["mode"]``, else the torch model's mode, else
            ``"fa"``). `load` builds models in that mode unless told otherwise. A torch model whose
            layers have different modes is refused (ValueError) unless `mode` is given.
    Returns the path written.
    """
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

    return atomic_write(path, lambda f: np.savez(f, **arrays))


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
        _check_keys(z, info, path)
        layers = []
        for i, act in enumerate(info["activations"]):
            w, fb = z[f"layer{i}.weight"], z[f"layer{i}.feedback"]
            b = z[f"layer{i}.bias"] if info["bias"][i] else None
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
    unchanged. Values are cast to the model's dtype, with a UserWarning naming both dtypes when they
    differ (e.g. a float64 checkpoint into a float32 model). Returns `model`.
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


def _open(path):
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist")
    try:
        return np.load(path, allow_pickle=False)
    except Exception as e:
        raise CheckpointError(f"{path!r} is not a readable .npz checkpoint: {e}") from None


def _meta(z, path) -> dict:
    where = repr(os.fspath(path))
    if _META_KEY not in z.files:
        raise CheckpointError(
            f"{where} is not a pyfa checkpoint (no {_META_KEY} entry; has {z.files[:6]})"
        )
    try:
        info = json.loads(str(z[_META_KEY][()]))
    except (ValueError, TypeError) as e:  # JSONDecodeError is a ValueError
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
    }
    for key, (kind, item) in expected.items():
        if key not in info:
            if item is None:
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
    n = len(info["activations"])
    if n == 0 or len(info["bias"]) != n or len(info["sizes"]) != n + 1:
        raise CheckpointError(
            f"{where}: header lists {n} activations, {len(info['bias'])} bias flags and "
            f"{len(info['sizes'])} sizes; expected n >= 1 layers: n, n and n + 1"
        )
    return info


def _check_keys(z, info: dict, path) -> None:
    """The arrays must be exactly those the header's layers call for: none missing, none extra."""
    want = set()
    for i, has_bias in enumerate(info["bias"]):
        want |= {f"layer{i}.weight", f"layer{i}.feedback"} | ({f"layer{i}.bias"} if has_bias else set())
    have = set(z.files) - {_META_KEY}
    if have != want:
        raise CheckpointError(
            f"checkpoint {os.fspath(path)!r} does not match its header ({len(info['bias'])} "
            f"layers, bias {info['bias']}): missing arrays {sorted(want - have)}, arrays not in "
            f"the header {sorted(have - want)}"
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


__all__ = ["save", "load", "load_into", "read_meta", "CheckpointError", "FORMAT", "FORMAT_VERSION"]
