"""The juliacall bridge: FA networks in Julia/Flux (the Julia package PyFA) driven from numpy.

Importing this module starts nothing: neither juliacall nor torch is imported. Julia starts on the
first `load()` (or `available()`, or the first `JuliaChain`/`JuliaCNN`), in this process, through
juliacall; juliapkg reads ``pyfa/juliapkg.json`` (Flux, ChainRulesCore, Zygote, Optimisers and
PyFA itself). Nothing is downloaded unless asked (``make julia``, ``PYFA_JULIA_INSTALL=1``) or a
Julia of your own is there to use: see `_import` for the exact rule. Call `load()` before
importing torch.

If Julia cannot start, `available()` returns False, quickly and without raising,
`unavailable_reason()` says why and how to fix it, and `load()` raises `JuliaUnavailableError` with
that reason. The outcome is cached for the process.

AD backends: gradients and training steps run under ``ad="zygote"`` (Flux's default),
``"enzyme"`` or ``"mooncake"`` (Flux's ``AutoEnzyme()``/``AutoMooncake()``). Before its first use
in a process each one is loaded and proven to apply every PyFA rule (the dense product, the
convolution and the DFA rules) on small cases whose FA (DFA) and backprop gradients differ
(`ad_unavailable_reason`); an AD that is not installed, or that would compute backprop for any of
them, raises `ADUnavailableError` instead of answering.

Models: `JuliaChain` is a Flux ``Chain`` of ``PyFA.DenseFA`` layers (modes fa, bp, usf, brsf,
frsf, kp) or a ``PyFA.DFAChain`` of them (mode dfa), built from `pyfa.network.DenseParams`;
`JuliaCNN` a ``Chain`` of ``PyFA.ConvFA``, pooling, flatten and ``DenseFA`` layers (or, in mode
dfa, a ``PyFA.DFAChain`` of them), built from the oracle's CNN specs
(`pyfa.reference.ConvParams`, `Pool2d`, `Flatten`, `DenseParams`). Both return `pyfa.Gradients`
in the oracle's layout.

Layout: every numpy array crosses to Julia as ``a.T`` of a C-order array, every axis reversed: a
zero-copy column-major view in Flux's layout, (batch, in) as (in, batch), NCHW images as WHCN, conv
weights (out, in/groups, kh, kw) as (kw, kh, in/groups, out); dense weights (out, in) cross as they
are, and so do DFA matrices, flattened per layer to (C, units): a conv layer's B_l of shape
(C, out_ch, H_out, W_out) crosses as ``B_l.reshape(C, -1)``, whose C-order columns are the
column-major order of that layer's WHC output in Julia. Results come back as numpy copies with the
axes reversed again. Losses: ``"mse"``
(``Flux.mse``, the mean over every element) and ``"ce"`` (``Flux.logitcrossentropy``, softmax
cross-entropy averaged over the batch), as in `pyfa.reference`.
"""

from __future__ import annotations

import math
import os
import threading
from pathlib import Path

import numpy as np

from pyfa.julia._import import (
    INSTALL_COMMAND,
    INSTALL_VAR,
    JuliaUnavailableError,
    download_policy,
    import_juliacall,
)
from pyfa.network import (
    FLOAT_DTYPES,
    MODES,
    DenseParams,
    Gradients,
    check_input,
    check_layer,
    check_network,
)
from pyfa.reference.cnn import check_cnn
from pyfa.reference.conv import ConvParams, check_conv_layer
from pyfa.reference.dfa import check_dfa_network
from pyfa.reference.losses import LOSSES, check_target
from pyfa.reference.pool import Flatten, Pool2d

__all__ = [
    "JuliaUnavailableError",
    "ADUnavailableError",
    "available",
    "unavailable_reason",
    "load",
    "install",
    "enable_gpu",
    "seed",
    "AD_BACKENDS",
    "download_policy",
    "ad_available",
    "ad_unavailable_reason",
    "JuliaChain",
    "JuliaCNN",
    "OPTIMISERS",
    "LAYER_MODES",
    "CHAIN_MODES",
    "CNN_MODES",
    "LOSSES",
    "JULIA_UUIDS",
]

HERE = Path(__file__).resolve().parent
BRIDGE_JL = HERE / "bridge.jl"
OPTIMISERS = ("adam", "sgd", "momentum")
#: Layer modes of PyFA's DenseFA and ConvFA: `pyfa.network.MODES` (kp, Kolen-Pollack, included).
LAYER_MODES = MODES
#: What `JuliaChain` takes: the layer modes and "dfa" (a ``PyFA.DFAChain``).
CHAIN_MODES = LAYER_MODES + ("dfa",)
#: What `JuliaCNN` takes: the layer modes and "dfa" (a ``PyFA.DFAChain`` of conv and dense layers).
CNN_MODES = LAYER_MODES + ("dfa",)
#: Flux's AD backends, by the name `JuliaChain` takes (``ad=``).
AD_BACKENDS = ("zygote", "enzyme", "mooncake")

#: Registered UUIDs (from each package's own Project.toml) of what the bridge may add to the
#: environment beyond pyfa/juliapkg.json.
JULIA_UUIDS = {
    "CUDA": "052768ef-5323-5732-b1bb-66c8b64840ba",
    "cuDNN": "02a925ec-e4fe-4b08-9a7e-0d78e3d38ccd",
    "Enzyme": "7da242da-08ed-463a-9acd-ee780be4f1d9",
    "Mooncake": "da2b9cff-9c12-43a0-ae48-6db2b0edb7d6",
}
GPU_VERSIONS = {"CUDA": "5, 6", "cuDNN": "1, 6"}
#: The Julia package behind each AD backend but Zygote, and its versions (julia/PyFA's [compat]).
AD_PACKAGES = {"enzyme": ("Enzyme", "0.13"), "mooncake": ("Mooncake", "0.5")}


class ADUnavailableError(JuliaUnavailableError):
    """An AD backend cannot be used for FA in this process: not installed, or it failed PyFA's
    check that it applies the FA rule (then it would have computed backprop)."""


_lock = threading.RLock()
_state: dict = {"main": None, "reason": None, "gpu": False, "ad": {}}


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
                f"Julia is unavailable: Julia started, but the Julia package PyFA or the bridge did "
                f"not load: {type(e).__name__}: {e}. If pyfa's Julia packages are not installed "
                f"yet (pyfa downloads nothing unless asked: {download_policy().why}), install them "
                f"with `{INSTALL_COMMAND}` (or {INSTALL_VAR}=1)."
            )
            raise JuliaUnavailableError(_state["reason"]) from e
        _state["main"] = main
        return main


def available() -> bool:
    """True if Julia with PyFA loads in this process (starting it if needed); never raises.

    Without Julia (and without an opt-in to downloads) this returns False at once. With Julia,
    the first call starts it, and may install pyfa's Julia packages (minutes, once) where the
    download policy allows it (`download_policy`).
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


def check_ad(ad: str) -> str:
    """`ad` if it names an AD backend; else a ValueError listing them (no Julia needed)."""
    if ad not in AD_BACKENDS:
        raise ValueError(f"unknown AD backend {ad!r}; expected one of {AD_BACKENDS}")
    return ad


def ad_unavailable_reason(ad: str) -> str | None:
    """Why `ad` cannot give FA gradients here, or None when it can (starting Julia if needed).

    The first call per backend loads its package (Enzyme, Mooncake), checks that PyFA's extension
    for it loaded, and computes, in float32 and float64, the gradients of three small cases whose
    FA (DFA) and backprop gradients differ: a dense product, a convolution and a DFA chain of conv
    and dense layers (``PyFABridge.check_fa``). Anything but the rules' answers, for any of them,
    makes the backend unavailable, with what came out as the reason. Cached.
    """
    check_ad(ad)
    with _lock:
        if ad in _state["ad"]:
            return _state["ad"][ad]
        if not available():
            return unavailable_reason()
        bridge = _bridge()
        try:
            reason = bridge.load_ad(ad)
            if reason is None:
                reason = bridge.check_fa(ad)
        except Exception as e:  # a JuliaError while loading or differentiating
            reason = f"{type(e).__name__}: {e}"
        if reason is not None:
            reason = str(reason)
            if ad in AD_PACKAGES and "not installed" in reason:
                reason += f" It is installed by `{INSTALL_COMMAND}` (or pyfa.julia.install())."
            reason = f"AD backend {ad!r} unavailable: {reason}"
        _state["ad"][ad] = reason
        return reason


def ad_available(ad: str) -> bool:
    """True if `ad` gives PyFA's FA gradients in this process (see `ad_unavailable_reason`)."""
    return ad_unavailable_reason(ad) is None


def _ensure_ad(ad: str) -> None:
    reason = ad_unavailable_reason(ad)
    if reason is not None:
        raise ADUnavailableError(reason)


def install(ad=("enzyme", "mooncake")) -> dict:
    """Opt in to downloads for this process, install what the Julia backend needs, and report.

    What ``make julia`` runs (through ``python -m pyfa.julia install``). Sets ``PYFA_JULIA_INSTALL=1``
    here, records the packages of the AD backends `ad` (Enzyme, Mooncake) with ``juliapkg.add``
    in the environment's own deps file (so later sessions load them too), then starts Julia:
    juliapkg downloads Julia if none is found and installs and precompiles every package
    (minutes, once). If that fails with the AD packages, they are taken out again and the rest is
    installed alone. Must run before Julia starts in the process. Returns ``{ad: None or the
    reason it is unavailable}`` for every backend; raises JuliaUnavailableError if Julia itself
    cannot start.
    """
    wanted = [check_ad(a) for a in ad]
    with _lock:
        if _state["main"] is not None:
            raise RuntimeError(
                "pyfa.julia.install() must run before Julia starts in this process: restart "
                "Python and call it first (or run `make julia`)")
        os.environ[INSTALL_VAR] = "1"
        _state["reason"], _state["ad"] = None, {}  # an earlier failure here was without the opt-in
        packages = {AD_PACKAGES[a][0]: AD_PACKAGES[a][1] for a in wanted if a in AD_PACKAGES}
        again = False
        try:
            _with_packages(packages, load)
        except JuliaUnavailableError:
            if not packages:
                raise
            again = True
        if again:  # without the AD packages (outside the except: no chained first failure)
            _state["reason"] = None
            load()
    return {a: ad_unavailable_reason(a) for a in AD_BACKENDS}


def enable_gpu() -> bool:
    """Add CUDA.jl and cuDNN.jl to the juliapkg environment and load them; ``CUDA.functional()``.

    The packages are recorded with juliapkg (``juliapkg.add``, registered UUIDs in `JULIA_UUIDS`)
    in the environment's own deps file, so later sessions load them too; if Julia cannot start or
    they cannot be loaded, that file is restored as it was and the error raised. Call it before
    Julia starts (before `load`, `available` or any `JuliaChain`): re-resolving the environment
    under a running Julia could change packages it has already loaded, so that raises
    RuntimeError and records nothing. Needs network the first time (CUDA artifacts are large).
    Afterwards `JuliaChain.gpu()` moves a model to the GPU (Flux's ``gpu``).
    """
    with _lock:
        if _state["main"] is not None and not _state["gpu"]:
            raise RuntimeError(
                "pyfa.julia.enable_gpu() must run before Julia starts: restart Python and call it "
                "before pyfa.julia.load() (or anything that starts Julia)"
            )

        def start():
            main = load()
            main.seval("using CUDA, cuDNN")
            return bool(main.seval("CUDA.functional()"))

        _state["gpu"] = _with_packages(GPU_VERSIONS, start)
        return _state["gpu"]


def _with_packages(versions: dict, start):
    """Record `versions` (name -> compat) with juliapkg, then `start()`; if that raises, put the
    environment's deps file back as it was (so no later start installs them) and re-raise."""
    from pyfa.julia._import import apply_download_policy

    if not versions:
        return start()
    apply_download_policy()  # before juliapkg is imported
    import juliapkg
    from juliapkg.deps import cur_deps_file

    path = Path(cur_deps_file())
    before = path.read_bytes() if path.is_file() else None
    for name, version in versions.items():
        juliapkg.add(name, JULIA_UUIDS[name], version=version)
    try:
        return start()
    except BaseException:
        if before is None:
            path.unlink(missing_ok=True)
        else:
            path.write_bytes(before)
        raise


def seed(seed: int) -> None:
    """Seed Julia's default RNG (``Random.seed!``): mode "brsf" redraws its feedback from it."""
    _bridge().seed_b(int(seed))


def _bridge():
    return load().PyFABridge


def _to_host(a, dtype) -> np.ndarray:
    """A C-order numpy copy of a Julia array, same shape (``np.asarray`` alone is a live view)."""
    return np.array(np.asarray(a), dtype=dtype, order="C", copy=True)


def _reversed(a, dtype) -> np.ndarray:
    """A Julia array with every axis reversed, as a C-order numpy copy: Flux's (features, batch)
    as (batch, features), WHCN as NCHW, a (kw, kh, in/groups, out) kernel as (out, in/groups, kh, kw)."""
    return np.array(np.asarray(a).T, dtype=dtype, order="C", copy=True)


def _real_array(a, what: str, layout: str) -> np.ndarray:
    if not isinstance(a, np.ndarray):
        raise ValueError(f"{what} must be a numpy array {layout}, got {type(a).__name__}")
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise TypeError(f"{what} must hold real numbers, got dtype {a.dtype}")
    return a


def _check_loss(loss: str) -> str:
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; expected one of {LOSSES}")
    return loss


def _check_optimiser(name: str, lr, weight_decay) -> tuple[float, float]:
    if name not in OPTIMISERS:
        raise ValueError(f"unknown optimiser {name!r}; expected one of {OPTIMISERS}")
    if not (math.isfinite(float(lr)) and float(lr) > 0):
        raise ValueError(f"lr must be a finite number > 0, got {lr}")
    if not (math.isfinite(float(weight_decay)) and float(weight_decay) >= 0):
        raise ValueError(f"weight_decay must be a finite number >= 0, got {weight_decay}")
    return float(lr), float(weight_decay)


def _check_dtype(dtype) -> np.dtype:
    dt = np.dtype(dtype)
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"dtype must be float32 or float64, got {dt}")
    return dt


class _JuliaModel:
    """What `JuliaChain` and `JuliaCNN` share: the AD backend, the optimiser, training steps and
    moving between CPU and GPU. Subclasses check and lay out the data (`_x`, `_y`)."""

    def __init__(self, model, spec: list, mode: str, dtype: np.dtype, ad: str = "zygote"):
        self._model = model  # the Julia model
        self._spec = spec  # layer specs (their arrays are the initial values; unused)
        self._mode = mode
        self._dtype = dtype
        self._ad = check_ad(ad)
        self._opt = None  # (name, lr, momentum, weight_decay)
        self._state = None  # the Julia optimiser state
        self._on_gpu = False

    @property
    def mode(self) -> str:
        return self._mode

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    @property
    def ad(self) -> str:
        """The AD backend `gradients` and `step` use by default."""
        return self._ad

    @property
    def julia_model(self):
        """The underlying Flux model (a juliacall object)."""
        return self._model

    def _ad_for(self, ad: str | None) -> str:
        ad = self._ad if ad is None else check_ad(ad)
        _ensure_ad(ad)
        return ad

    def _x(self, x) -> np.ndarray:
        raise NotImplementedError

    def _y(self, x: np.ndarray, y, loss: str) -> np.ndarray:
        raise NotImplementedError

    def forward(self, x: np.ndarray) -> np.ndarray:
        """The network's output for `x`, as a numpy copy in the Python layout (batch first)."""
        x = self._x(x)
        return _reversed(_bridge().forward(self._model, x.T), self._dtype)

    __call__ = forward

    def _gradients(self, x, y, ad: str | None, loss: str):
        """(loss, per-layer Julia gradients, input gradient, ad, loss) from the bridge."""
        _check_loss(loss)
        x = self._x(x)
        y = self._y(x, y, loss)
        ad = self._ad_for(ad)
        value, grads, gx = _bridge().gradients(self._model, x.T, y.T, ad, loss)
        return float(value), list(grads), _reversed(gx, self._dtype), ad

    def _param_grads(self, index: int, grads, has_bias: bool, ad: str, convert) -> dict:
        """One parametrised layer's gradients as numpy (`convert` lays each array out), checking
        that the feedback got exactly what the mode says: ∂W in kp, nothing otherwise."""
        w, b, fb = grads
        g = {"weight": convert(w) if w is not None else None}
        if g["weight"] is None:
            raise RuntimeError(f"layer {index}: no weight gradient came back under ad={ad!r} "
                               "(this is a bug in pyfa; please report it)")
        if has_bias:
            g["bias"] = _to_host(b, self._dtype) if b is not None else np.zeros(
                g["weight"].shape[0], dtype=self._dtype)
        if self._mode == "kp":
            if fb is None:
                raise RuntimeError(
                    f"layer {index}: mode 'kp' but the feedback matrix received no gradient under "
                    f"ad={ad!r}: PyFA's rule was not applied (this is a bug in pyfa; please report it)")
            g["feedback"] = convert(fb)
        elif fb is not None and np.any(np.asarray(fb)):
            raise RuntimeError(
                f"layer {index}: a feedback matrix received a gradient under ad={ad!r}: PyFA's FA "
                "rule was not applied (this is a bug in pyfa; please report it)")
        return g

    def setup_optimiser(self, name: str = "adam", lr: float = 1e-3, momentum: float = 0.9,
                        weight_decay: float = 0.0) -> None:
        """``Flux.setup`` with an Optimisers rule: "adam" (``Adam(lr)``), "sgd" (``Descent(lr)``) or
        "momentum" (``Momentum(lr, momentum)``). Optimiser state is made for what ``Flux.trainable``
        gives: weights and biases, and in mode "kp" the feedback matrices too (never the fixed ones,
        nor DFA's direct feedback).

        ``weight_decay`` λ > 0 decays weights and (in kp) feedback matrices, never biases, as
        `pyfa.reference.sgd_step` does: "sgd" and "momentum" become
        ``OptimiserChain(WeightDecay(λ), Descent(lr))`` (``Momentum``), i.e. ``W ← W − lr (∂W + λW)``
        under plain SGD, so that in kp ``W − B`` shrinks by ``(1 − lr·λ)`` per step; "adam" becomes
        ``AdamW(lr, (0.9, 0.999), λ)`` (Optimisers' default ``couple=true``: PyTorch's AdamW,
        ``W ← W − lr (adam + λW)``). The biases' rules get ``lambda = 0`` (``Flux.adjust!``).
        """
        lr, weight_decay = _check_optimiser(name, lr, weight_decay)
        self._state = _bridge().setup(self._model, name, lr, float(momentum), weight_decay)
        self._opt = (name, lr, float(momentum), weight_decay)

    def step(self, x: np.ndarray, y: np.ndarray, ad: str | None = None, loss: str = "mse") -> float:
        """One step (``Flux.withgradient`` of ``loss`` under ``ad``, default the model's `ad`, then
        ``Flux.update!``); returns the loss before it."""
        if self._state is None:
            raise RuntimeError("call setup_optimiser(...) before step()")
        _check_loss(loss)
        x = self._x(x)
        y = self._y(x, y, loss)
        ad = self._ad_for(ad)
        value, self._state, self._model = _bridge().train_step_b(self._model, self._state, x.T,
                                                                 y.T, ad, loss)
        return float(value)

    def gpu(self):
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

    def cpu(self):
        """Move the model back to the CPU (optimiser state set up afresh)."""
        self._model = _bridge().to_cpu(self._model)
        self._on_gpu = False
        if self._opt is not None:
            self.setup_optimiser(*self._opt)
        return self


class JuliaChain(_JuliaModel):
    """A dense FA network in Julia, built from numpy and used from numpy: a Flux ``Chain`` of
    ``PyFA.DenseFA`` layers, or for mode "dfa" a ``PyFA.DFAChain`` of them.

    Build it with `JuliaChain.from_params`. Every method validates its numpy input with
    `pyfa.network`'s (and the oracle's) checks BEFORE calling Julia, so bad input raises a
    ValueError/TypeError naming the layer and the shapes and leaves the model unchanged.
    """

    @classmethod
    def from_params(
        cls, layers: list[DenseParams], mode: str = "fa", dtype=np.float32, ad: str = "zygote"
    ) -> JuliaChain:
        """A Julia network with copies of `layers`' weights, feedback matrices and biases, in `dtype`.

        ``mode`` (one of `CHAIN_MODES`): a layer mode (``"fa"``, ``"bp"``, ``"usf"``, ``"brsf"``,
        ``"frsf"``, ``"kp"``; see ``PyFA.feedback_matrix``) gives a ``Chain`` of ``DenseFA`` in that
        mode; ``"dfa"`` a ``DFAChain`` of ``DenseFA`` (mode fa: the first layer's FA rule gives the
        input gradient) whose hidden layers hear the output error through their
        ``direct_feedback`` matrices (C, h_l), which every hidden layer must carry
        (`pyfa.network.init_direct_feedback`). In mode ``"kp"`` the feedback matrices are trained
        (`setup_optimiser`) and `gradients` reports them. ``ad`` (one of `AD_BACKENDS`) is the AD
        backend `gradients` and `step` use unless told otherwise; it must be available
        (`ad_unavailable_reason`), else ADUnavailableError.
        """
        check_network(layers)
        if mode not in CHAIN_MODES:
            raise ValueError(f"unknown mode {mode!r}; expected one of {CHAIN_MODES}")
        if mode == "dfa":
            check_dfa_network(layers)
        dt = _check_dtype(dtype)
        check_ad(ad)
        spec = [p.astype(dt) for p in layers]
        bridge = _bridge()
        _ensure_ad(ad)
        layer_mode = "fa" if mode == "dfa" else mode
        jl_layers = [
            bridge.dense(p.weight, p.feedback, p.bias, p.activation, layer_mode) for p in spec
        ]
        model = bridge.chain(*jl_layers)
        if mode == "dfa":
            model = bridge.dfa_chain(model, *[p.direct_feedback for p in spec[:-1]])
        return cls(model, spec, mode, dt, ad)

    def _x(self, x, what: str = "x") -> np.ndarray:
        _real_array(x, what, "(batch, in)")
        check_input(self._spec, x, what)
        return np.ascontiguousarray(x, dtype=self._dtype)

    def _y(self, x: np.ndarray, y, loss: str = "mse") -> np.ndarray:
        want = (x.shape[0], self._spec[-1].out_features)
        if isinstance(y, np.ndarray):
            _real_array(y, "y", "(batch, out)")
        check_target(loss, y, want)
        return np.ascontiguousarray(y, dtype=self._dtype)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """The network's output (batch, out) for x (batch, in), as a numpy copy."""
        return super().forward(x)

    __call__ = forward

    def gradients(self, x: np.ndarray, y: np.ndarray, ad: str | None = None,
                  loss: str = "mse") -> Gradients:
        """Loss and gradients, each layer using its rule (DFA's for mode "dfa").

        ``loss``: ``"mse"`` (``Flux.mse``, mean((ŷ − y)²) over every element) or ``"ce"``
        (``Flux.logitcrossentropy``: softmax cross-entropy of the output taken as logits, averaged
        over the batch, for targets whose rows are probabilities, one-hot for labels: the oracle's
        ``ce``). ``ad`` picks Flux's AD backend ("zygote", "enzyme", "mooncake"; default: the
        chain's `ad`). ``layers[i]`` has ``"weight"`` (out, in), ``"bias"`` (out,) (absent without
        bias) and in mode kp ``"feedback"`` (= the weight's gradient); ``input`` is dL/dx, (batch,
        in); ``meta`` names the backend, mode, AD backend and loss. The model is not changed. A
        feedback matrix that received a gradient it should not have (or, in kp, none) raises
        RuntimeError: PyFA's rule was bypassed.
        """
        value, grads, gx, ad = self._gradients(x, y, ad, loss)
        layers = [
            self._param_grads(i, g, p.bias is not None, ad, lambda a: _to_host(a, self._dtype))
            for i, (p, g) in enumerate(zip(self._spec, grads, strict=True))
        ]
        return Gradients(loss=value, layers=layers, input=gx,
                         meta={"backend": "julia", "mode": self._mode, "ad": ad, "loss": loss})

    def to_params(self) -> list[DenseParams]:
        """Copies of every layer's weight, feedback and bias (and in mode dfa each hidden layer's
        ``direct_feedback``), as DenseParams."""
        bridge = _bridge()
        out = []
        for p, (w, fb, b) in zip(self._spec, bridge.layer_params(self._model), strict=True):
            out.append(
                DenseParams(
                    _to_host(w, self._dtype),
                    _to_host(fb, self._dtype),
                    None if b is None else _to_host(b, self._dtype),
                    p.activation,
                )
            )
        if self._mode == "dfa":
            direct = _to_host(bridge.direct_feedback(self._model), self._dtype)
            start = 0
            for q in out[:-1]:
                stop = start + q.out_features
                q.direct_feedback = np.ascontiguousarray(direct[:, start:stop])
                start = stop
        return out

    def __repr__(self) -> str:
        sizes = [self._spec[0].in_features] + [p.out_features for p in self._spec]
        where = "gpu" if self._on_gpu else "cpu"
        return (f"JuliaChain({'-'.join(map(str, sizes))}, mode={self._mode!r}, "
                f"dtype={self._dtype}, ad={self._ad!r}, {where})")


_CNN_LAYERS = (ConvParams, Pool2d, Flatten, DenseParams)


class JuliaCNN(_JuliaModel):
    """A CNN in Julia, built from the oracle's layer specs and used from numpy: a Flux ``Chain`` of
    ``PyFA.ConvFA`` (cross-correlation, as PyTorch and the oracle), ``MeanPool``/``MaxPool``,
    ``Flux.flatten`` and ``PyFA.DenseFA``; in mode "dfa" a ``PyFA.DFAChain`` of the same layers.

    Layout: numpy takes images NCHW (C order) and conv weights (out_ch, in_ch/groups, kh, kw);
    Flux takes WHCN and (kw, kh, in_ch/groups, out_ch). Both cross as ``a.T`` (every axis reversed:
    a zero-copy column-major view), so the kernel is not flipped and the numbers are the same;
    (h, w) pairs (stride, padding, dilation, pool window) are handed over as Flux's (w, h).
    Flatten needs no permutation: Flux's column-major flatten of WHCN orders the features as the
    oracle's C-order flatten of NCHW does. The same fact places DFA's signal: a hidden conv layer's
    ``direct_feedback`` (C, out_ch, H_out, W_out) crosses as the (C, units) matrix
    ``B.reshape(C, -1)``, not reversed, and ``reshape(B_lᵀ e)`` lands on the WHCN entries the NCHW
    ones are the reverse of. Results come back with the axes reversed again.
    """

    @classmethod
    def from_params(cls, layers: list, mode: str = "fa", dtype=np.float32,
                    ad: str = "zygote") -> JuliaCNN:
        """A Julia CNN from a list of `pyfa.reference.ConvParams`, `Pool2d`, `Flatten` and
        `pyfa.DenseParams` (e.g. `pyfa.reference.init_small_cnn`), with copies of their arrays in
        `dtype`. ``mode``: one of `CNN_MODES`: a layer mode (kp included), or "dfa", which builds a
        ``PyFA.DFAChain`` whose layers are in mode fa (the first one's FA rule gives the input
        gradient, as in `pyfa.reference.cnn_gradients`) and whose hidden conv and dense layers
        hear the top layer's pre-activation error through their ``direct_feedback`` matrices,
        right after their activations, before any pooling (every hidden conv/dense layer must
        carry one, the top layer must be conv or dense and carry none:
        ``init_small_cnn(..., direct_feedback=True)``). ``ad``: as for `JuliaChain.from_params`.
        Shapes that depend on the input (does each layer fit the one below? is each DFA matrix
        ``(C, *that layer's output shape)``?) are checked on the first input, before Julia is called.
        """
        if not isinstance(layers, (list, tuple)) or not layers:
            raise ValueError("a CNN spec is a non-empty list of ConvParams, Pool2d, Flatten and "
                             "DenseParams")
        if mode not in CNN_MODES:
            raise ValueError(f"unknown mode {mode!r}; expected one of {CNN_MODES}")
        dtypes = set()
        for i, p in enumerate(layers):
            if not isinstance(p, _CNN_LAYERS):
                raise ValueError(f"layer {i}: {type(p).__name__} is not a CNN layer (ConvParams, "
                                 "Pool2d, Flatten, DenseParams)")
            if isinstance(p, ConvParams):
                check_conv_layer(p, i)
                dtypes.add(p.weight.dtype)
            elif isinstance(p, DenseParams):
                check_layer(p, i)
                dtypes.add(p.weight.dtype)
        if not dtypes:
            raise ValueError("a CNN spec needs at least one ConvParams or DenseParams layer")
        if len(dtypes) > 1:
            raise TypeError(f"all layers must share one dtype, got {sorted(map(str, dtypes))}")
        if mode == "dfa":
            _check_cnn_dfa(layers)
        dt = _check_dtype(dtype)
        check_ad(ad)
        spec = [p.astype(dt) if isinstance(p, (ConvParams, DenseParams)) else p for p in layers]
        bridge = _bridge()
        _ensure_ad(ad)
        layer_mode = "fa" if mode == "dfa" else mode
        model = bridge.chain(*[_julia_layer(bridge, p, layer_mode) for p in spec])
        if mode == "dfa":
            model = bridge.dfa_chain(model, *[_flat_direct_feedback(p) for p in _hidden(spec)])
        return cls(model, spec, mode, dt, ad)

    def _shapes(self, x: np.ndarray) -> list[tuple[int, ...]]:
        return check_cnn(self._spec, x.shape)

    def _x(self, x, what: str = "x") -> np.ndarray:
        _real_array(x, what, "(N, C, H, W)")
        self._shapes(x)  # a ValueError naming the layer where x or a layer does not fit
        return np.ascontiguousarray(x, dtype=self._dtype)

    def _y(self, x: np.ndarray, y, loss: str = "mse") -> np.ndarray:
        want = (x.shape[0],) + tuple(self._shapes(x)[-1])
        if isinstance(y, np.ndarray):
            _real_array(y, "y", str(want))
        check_target(loss, y, want)
        return np.ascontiguousarray(y, dtype=self._dtype)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """The network's output for x (N, C, H, W): (N, classes) after a dense top layer, NCHW
        after a conv top layer; a numpy copy."""
        return super().forward(x)

    __call__ = forward

    def gradients(self, x: np.ndarray, y: np.ndarray, ad: str | None = None,
                  loss: str = "mse") -> Gradients:
        """Loss and gradients in the oracle's layout (`pyfa.reference.cnn_gradients`): per conv
        layer ``"weight"`` (out_ch, in_ch/groups, kh, kw) and ``"bias"`` (out_ch,), per dense layer
        ``"weight"`` (out, in) and ``"bias"``, in mode kp also ``"feedback"``; an empty dict for
        pooling and flatten; ``input`` is dL/dx, (N, C, H, W). ``loss`` and ``ad`` as for
        `JuliaChain.gradients`. The model is not changed.
        """
        value, grads, gx, ad = self._gradients(x, y, ad, loss)
        layers = []
        for i, (p, g) in enumerate(zip(self._spec, grads, strict=True)):
            if isinstance(p, ConvParams):
                layers.append(self._param_grads(i, g, p.bias is not None, ad,
                                                lambda a: _reversed(a, self._dtype)))
            elif isinstance(p, DenseParams):
                layers.append(self._param_grads(i, g, p.bias is not None, ad,
                                                lambda a: _to_host(a, self._dtype)))
            else:
                layers.append({})
        return Gradients(loss=value, layers=layers, input=gx,
                         meta={"backend": "julia", "mode": self._mode, "ad": ad, "loss": loss})

    def to_params(self) -> list:
        """The spec with copies of every conv and dense layer's current weight, feedback and bias
        (conv arrays back in (out_ch, in_ch/groups, kh, kw)), and in mode dfa each hidden layer's
        ``direct_feedback`` in its numpy shape; pooling and flatten as they were."""
        bridge = _bridge()
        out = []
        for p, params in zip(self._spec, bridge.layer_params(self._model), strict=True):
            if isinstance(p, ConvParams):
                w, fb, b = params
                out.append(ConvParams(_reversed(w, self._dtype), _reversed(fb, self._dtype),
                                      None if b is None else _to_host(b, self._dtype), p.stride,
                                      p.padding, p.dilation, p.groups, p.activation))
            elif isinstance(p, DenseParams):
                w, fb, b = params
                out.append(DenseParams(_to_host(w, self._dtype), _to_host(fb, self._dtype),
                                       None if b is None else _to_host(b, self._dtype),
                                       p.activation))
            else:
                out.append(p)
        if self._mode == "dfa":
            direct = _to_host(bridge.direct_feedback(self._model), self._dtype)
            start = 0
            for q, p in zip(_hidden(out), _hidden(self._spec), strict=True):
                shape = p.direct_feedback.shape
                stop = start + math.prod(shape[1:])
                q.direct_feedback = np.ascontiguousarray(direct[:, start:stop].reshape(shape))
                start = stop
        return out

    def __repr__(self) -> str:
        kinds = {ConvParams: "conv", DenseParams: "dense", Flatten: "flatten"}
        names = [f"{p.kind}pool" if isinstance(p, Pool2d) else kinds[type(p)] for p in self._spec]
        where = "gpu" if self._on_gpu else "cpu"
        return (f"JuliaCNN({'-'.join(names)}, mode={self._mode!r}, dtype={self._dtype}, "
                f"ad={self._ad!r}, {where})")


def _hidden(spec: list) -> list:
    """DFA's hidden layers of a CNN spec: every conv and dense layer but the top (the last)."""
    return [p for p in spec[:-1] if isinstance(p, (ConvParams, DenseParams))]


def _check_cnn_dfa(layers: list) -> None:
    """What mode "dfa" needs of a CNN spec and can be checked without an input (the oracle's
    rules): a conv or dense top layer without a DFA matrix, one on every hidden conv/dense layer,
    all with the same C (the top's outputs, for a dense top). Shapes that depend on the input are
    checked with it (`pyfa.reference.check_cnn`)."""
    top = layers[-1]
    if not isinstance(top, (ConvParams, DenseParams)):
        raise ValueError(f"mode 'dfa' needs a conv or dense top layer (its pre-activation error is e); "
                         f"layer {len(layers) - 1} is {type(top).__name__}")
    if top.direct_feedback is not None:
        raise ValueError(f"layer {len(layers) - 1}: the top layer gets its true gradient under DFA; its "
                         "direct_feedback must be None")
    hidden = [i for i, p in enumerate(layers[:-1]) if isinstance(p, (ConvParams, DenseParams))]
    missing = [i for i in hidden if layers[i].direct_feedback is None]
    if missing:
        raise ValueError("mode 'dfa' needs a direct_feedback matrix on every hidden conv/dense layer; "
                         f"layers {missing} have none (see init_small_cnn(..., direct_feedback=True))")
    rows = {i: layers[i].direct_feedback.shape[0] for i in hidden}
    want = top.out_features if isinstance(top, DenseParams) else next(iter(rows.values()), None)
    wrong = {i: c for i, c in rows.items() if c != want}
    if wrong:
        raise ValueError(f"every direct_feedback matrix must have C = {want} rows (the top layer's "
                         f"outputs); layers {sorted(wrong)} have {sorted(set(wrong.values()))}")


def _flat_direct_feedback(p) -> np.ndarray:
    """A hidden layer's B_l as the (C, units) matrix Julia takes: (C, out) as it is, a conv layer's
    (C, out_ch, H_out, W_out) as its C-order reshape, not reversed (the column-major order of the
    layer's (w, h, c) output per sample in Julia is the C order of (c, h, w) here)."""
    b = p.direct_feedback
    return np.ascontiguousarray(b.reshape(b.shape[0], -1))


def _julia_layer(bridge, p, mode: str):
    """The Julia layer for one spec entry; conv arrays cross as ``a.T`` (Flux's layout)."""
    if isinstance(p, ConvParams):
        (sh, sw), (ph, pw), (dh, dw) = p.stride, p.padding, p.dilation
        return bridge.conv_layer(p.weight.T, p.feedback.T, p.bias, p.activation, mode,
                                 sh, sw, ph, pw, dh, dw, p.groups)
    if isinstance(p, Pool2d):
        (kh, kw), (sh, sw) = p.kernel_size, p.stride
        return bridge.pool_layer(p.kind, kh, kw, sh, sw)
    if isinstance(p, Flatten):
        return bridge.flatten_layer()
    return bridge.dense(p.weight, p.feedback, p.bias, p.activation, mode)
