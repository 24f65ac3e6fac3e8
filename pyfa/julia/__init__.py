"""The juliacall bridge: FA networks in Julia/Flux (the Julia package PyFA) driven from numpy.

Importing this module starts nothing: neither juliacall nor torch is imported. Julia starts on the
first `load()` (or `available()`, or the first `JuliaChain`), in this process, through juliacall;
juliapkg reads ``pyfa/juliapkg.json`` (Flux, ChainRulesCore, Zygote, Optimisers and PyFA itself)
and, the first time, installs them. Call `load()` before importing torch (see `_import`).

If Julia cannot start (no Julia and no network, ...), `available()` returns False, quickly and
without raising, `unavailable_reason()` says why, and `load()` raises `JuliaUnavailableError` with
that reason and how to fix it. The outcome is cached for the process.

`JuliaChain` is a Flux ``Chain`` of ``PyFA.DenseFA`` layers built from `pyfa.network.DenseParams`.
Layout: numpy ``x`` is (batch, in) in C order and crosses to Julia as ``x.T``, a zero-copy
(in, batch) column-major view, Flux's layout; results come back as numpy copies in (batch, ...).
The loss is ``Flux.mse``, the mean over every element, as in `pyfa.reference`.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from pyfa.julia._import import JuliaUnavailableError, import_juliacall
from pyfa.network import (
    FLOAT_DTYPES,
    MODES,
    DenseParams,
    Gradients,
    check_input,
    check_network,
)

__all__ = [
    "JuliaUnavailableError",
    "available",
    "unavailable_reason",
    "load",
    "enable_gpu",
    "seed",
    "JuliaChain",
    "OPTIMISERS",
    "JULIA_UUIDS",
]

HERE = Path(__file__).resolve().parent
BRIDGE_JL = HERE / "bridge.jl"
OPTIMISERS = ("adam", "sgd", "momentum")

#: Registered UUIDs (from each package's own Project.toml) of what the bridge may add to the
#: environment beyond pyfa/juliapkg.json.
JULIA_UUIDS = {
    "CUDA": "052768ef-5323-5732-b1bb-66c8b64840ba",
    "cuDNN": "02a925ec-e4fe-4b08-9a7e-0d78e3d38ccd",
}
GPU_VERSIONS = {"CUDA": "5, 6", "cuDNN": "1, 6"}

_lock = threading.RLock()
_state: dict = {"main": None, "reason": None, "gpu": False}


def load():
    """Start Julia (once), load ``PyFA`` and ``Flux`` and the bridge; return juliacall's ``Main``.

    Raises JuliaUnavailableError (with the reason and what to do) if Julia or PyFA cannot load.
    """
    with _lock:
        if _state["main"] is not None:
            return _state["main"]
        if _state["reason"] is not None:
            raise JuliaUnavailableError(_state["reason"])
        try:
            juliacall = import_juliacall()
        except JuliaUnavailableError as e:
            _state["reason"] = str(e)
            raise
        main = juliacall.Main
        try:
            main.seval("using PyFA, Flux")
            main.include(str(BRIDGE_JL))
        except Exception as e:
            _state["reason"] = (
                f"Julia started, but the Julia package PyFA or the bridge did not load: "
                f"{type(e).__name__}: {e}. Check that pyfa/juliapkg.json's packages installed "
                "(python -c 'import juliapkg; juliapkg.resolve(force=True)')."
            )
            raise JuliaUnavailableError(_state["reason"]) from e
        _state["main"] = main
        return main


def available() -> bool:
    """True if Julia with PyFA loads in this process (starting it if needed); never raises.

    Without Julia and without network this returns False at once (juliapkg fails to resolve a
    download). With Julia, the first call starts it and may install packages (minutes, once).
    """
    try:
        load()
        return True
    except JuliaUnavailableError:
        return False
    except Exception as e:  # anything unforeseen still means "not available"
        with _lock:
            _state["reason"] = _state["reason"] or f"Julia is unavailable: {type(e).__name__}: {e}"
        return False


def unavailable_reason() -> str | None:
    """Why `available()` is False (checking first if not yet done), or None when Julia works."""
    return None if available() else _state["reason"]


def enable_gpu() -> bool:
    """Add CUDA.jl and cuDNN.jl to the juliapkg environment and load them; ``CUDA.functional()``.

    The packages are recorded with juliapkg (``juliapkg.add``, registered UUIDs in `JULIA_UUIDS`)
    in the environment's own deps file, so later sessions load them too. Call it before Julia
    starts (before `load`, `available` or any `JuliaChain`): re-resolving the environment under a
    running Julia could change packages it has already loaded, so that raises RuntimeError and
    records nothing. Needs network the first time (CUDA artifacts are large). Afterwards
    `JuliaChain.gpu()` moves a model to the GPU (Flux's ``gpu``).
    """
    import juliapkg

    with _lock:
        if _state["main"] is not None and not _state["gpu"]:
            raise RuntimeError(
                "pyfa.julia.enable_gpu() must run before Julia starts: restart Python and call it "
                "before pyfa.julia.load() (or anything that starts Julia)"
            )
        for name, uuid in JULIA_UUIDS.items():
            juliapkg.add(name, uuid, version=GPU_VERSIONS[name])
        main = load()
        main.seval("using CUDA, cuDNN")
        _state["gpu"] = bool(main.seval("CUDA.functional()"))
        return _state["gpu"]


def seed(seed: int) -> None:
    """Seed Julia's default RNG (``Random.seed!``): mode "brsf" redraws its feedback from it."""
    _bridge().seed_b(int(seed))


def _bridge():
    return load().PyFABridge


def _to_host(a, dtype) -> np.ndarray:
    """A C-order numpy copy of a Julia array, same shape (``np.asarray`` alone is a live view)."""
    return np.array(np.asarray(a), dtype=dtype, order="C", copy=True)


def _batch_first(a, dtype) -> np.ndarray:
    """A Julia (features, batch) array as a C-order numpy (batch, features) copy."""
    return np.array(np.asarray(a).T, dtype=dtype, order="C", copy=True)


class JuliaChain:
    """A Flux ``Chain`` of ``PyFA.DenseFA`` layers, built from numpy and used from numpy.

    Build it with `JuliaChain.from_params`. Every method validates its numpy input with
    `pyfa.network`'s checks BEFORE calling Julia, so bad input raises a ValueError/TypeError naming
    the layer and the shapes and leaves the model unchanged.
    """

    def __init__(self, model, spec: list[DenseParams], mode: str, dtype: np.dtype):
        self._model = model  # the Julia Chain
        self._spec = spec  # shapes and activations (its arrays are the initial values; unused)
        self._mode = mode
        self._dtype = dtype
        self._opt = None  # (name, lr, momentum)
        self._state = None  # the Julia optimiser state
        self._on_gpu = False

    @classmethod
    def from_params(
        cls, layers: list[DenseParams], mode: str = "fa", dtype=np.float32
    ) -> JuliaChain:
        """A Julia chain with copies of `layers`' weights, feedback matrices and biases, in `dtype`.

        ``mode`` (one of `pyfa.network.MODES`) picks each layer's feedback matrix B; see
        ``PyFA.feedback_matrix``.
        """
        check_network(layers)
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
        dt = np.dtype(dtype)
        if dt not in FLOAT_DTYPES:
            raise TypeError(f"dtype must be float32 or float64, got {dt}")
        spec = [p.astype(dt) for p in layers]
        bridge = _bridge()
        jl_layers = [
            bridge.dense(p.weight, p.feedback, p.bias, p.activation, mode) for p in spec
        ]
        return cls(bridge.chain(*jl_layers), spec, mode, dt)

    @property
    def mode(self) -> str:
        return self._mode

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    @property
    def julia_model(self):
        """The underlying Flux ``Chain`` (a juliacall object)."""
        return self._model

    def _x(self, x, what: str = "x") -> np.ndarray:
        if not isinstance(x, np.ndarray):
            raise ValueError(
                f"{what} must be a 2-d numpy array (batch, in), got {type(x).__name__}"
            )
        if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
            raise TypeError(f"{what} must hold real numbers, got dtype {x.dtype}")
        check_input(self._spec, x, what)
        return np.ascontiguousarray(x, dtype=self._dtype)

    def _y(self, x: np.ndarray, y) -> np.ndarray:
        want = (x.shape[0], self._spec[-1].out_features)
        if not isinstance(y, np.ndarray) or y.shape != want:
            got = y.shape if isinstance(y, np.ndarray) else type(y).__name__
            raise ValueError(f"target y has shape {got}; the network gives {want}")
        if not (np.issubdtype(y.dtype, np.floating) or np.issubdtype(y.dtype, np.integer)):
            raise TypeError(f"y must hold real numbers, got dtype {y.dtype}")
        return np.ascontiguousarray(y, dtype=self._dtype)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """The network's output (batch, out) for x (batch, in), as a numpy copy."""
        x = self._x(x)
        return _batch_first(_bridge().forward(self._model, x.T), self._dtype)

    __call__ = forward

    def gradients(self, x: np.ndarray, y: np.ndarray) -> Gradients:
        """Loss ``mean((ŷ - y)²)`` and its gradients by Zygote, each layer using its rule.

        ``layers[i]`` has ``"weight"`` (out, in) and ``"bias"`` (out,) (absent without bias);
        ``input`` is dL/dx, (batch, in). The model is not changed.
        """
        x = self._x(x)
        y = self._y(x, y)
        loss, ws, bs, gx = _bridge().gradients(self._model, x.T, y.T)
        layers = []
        for p, w, b in zip(self._spec, ws, bs, strict=True):
            g = {"weight": np.zeros_like(p.weight) if w is None else _to_host(w, self._dtype)}
            if p.bias is not None:
                g["bias"] = np.zeros_like(p.bias) if b is None else _to_host(b, self._dtype)
            layers.append(g)
        return Gradients(
            loss=float(loss),
            layers=layers,
            input=_batch_first(gx, self._dtype),
            meta={"backend": "julia", "mode": self._mode},
        )

    def setup_optimiser(self, name: str = "adam", lr: float = 1e-3, momentum: float = 0.9) -> None:
        """``Flux.setup`` with an Optimisers rule: "adam" (Adam(lr)), "sgd" (Descent(lr)) or
        "momentum" (Momentum(lr, momentum)). Only weights and biases get optimiser state."""
        if name not in OPTIMISERS:
            raise ValueError(f"unknown optimiser {name!r}; expected one of {OPTIMISERS}")
        if not (float(lr) > 0):
            raise ValueError(f"lr must be > 0, got {lr}")
        self._state = _bridge().setup(self._model, name, float(lr), float(momentum))
        self._opt = (name, float(lr), float(momentum))

    def step(self, x: np.ndarray, y: np.ndarray) -> float:
        """One step (``Flux.withgradient``, then ``Flux.update!``); returns the loss before it."""
        if self._state is None:
            raise RuntimeError("call setup_optimiser(...) before step()")
        x = self._x(x)
        y = self._y(x, y)
        loss, self._state, self._model = _bridge().train_step_b(self._model, self._state, x.T, y.T)
        return float(loss)

    def to_params(self) -> list[DenseParams]:
        """Copies of every layer's weight, feedback and bias, as DenseParams."""
        out = []
        for p, (w, fb, b) in zip(self._spec, _bridge().layer_params(self._model), strict=True):
            out.append(
                DenseParams(
                    _to_host(w, self._dtype),
                    _to_host(fb, self._dtype),
                    None if b is None else _to_host(b, self._dtype),
                    p.activation,
                )
            )
        return out

    def gpu(self) -> JuliaChain:
        """Move the model to the GPU (needs `enable_gpu()` to have returned True). Optimiser state
        is set up afresh (Adam/momentum statistics restart)."""
        if not _state["gpu"]:
            raise RuntimeError(
                "no working GPU: call pyfa.julia.enable_gpu() first (it must return True)"
            )
        self._model = _bridge().to_gpu(self._model)
        self._on_gpu = True
        if self._opt is not None:
            self.setup_optimiser(*self._opt)
        return self

    def cpu(self) -> JuliaChain:
        """Move the model back to the CPU (optimiser state set up afresh)."""
        self._model = _bridge().to_cpu(self._model)
        self._on_gpu = False
        if self._opt is not None:
            self.setup_optimiser(*self._opt)
        return self

    def __repr__(self) -> str:
        sizes = [self._spec[0].in_features] + [p.out_features for p in self._spec]
        where = "gpu" if self._on_gpu else "cpu"
        return (f"JuliaChain({'-'.join(map(str, sizes))}, mode={self._mode!r}, "
                f"dtype={self._dtype}, {where})")
