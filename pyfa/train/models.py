"""The models ``pyfa train`` builds: an MLP, or LeNet-5; in numpy first, then in torch.

Every run starts from a seeded numpy network, so that every mode (and, for the MLP, both backends)
starts from the very same weights and feedback matrices, and so that the metrics (`pyfa.metrics`)
can run the numpy oracle on it:

- ``mlp``: `pyfa.network.init_mlp` (sizes from the dataset and ``hidden``); in mode ``dfa`` with the
  DFA matrices, drawn from a stream of their own (`pyfa.network.init_direct_feedback`), so the
  weights are the same arrays as in every other mode.
- ``lenet``: LeNet-5 as in BioTorch's benchmarks (``biotorch/models/le_net.py``, ``LeNetMNIST``),
  for 32×32 single-channel inputs: conv 5×5 (6) - relu - max-pool 2 - conv 5×5 (16) - relu -
  max-pool 2 - conv 5×5 (120) - relu - flatten - dense 84 - relu - dense C. Smaller images
  (Fashion-MNIST's 28×28) are zero-padded to 32×32 by the first convolution's padding (2 on each
  side for 28×28), which is the same network as padding the images. Its numpy form is a CNN spec of
  the oracle (`lenet_spec`: `ConvParams`, `Pool2d`, `Flatten`, `DenseParams`), Glorot-uniform
  weights and feedback from ``numpy.random.default_rng(seed)``, zero biases; in mode ``dfa`` with
  DFA matrices from a stream of their own, as for the MLP.

`pyfa.train.torch_models` builds the torch models from these numpy networks. This module imports
neither torch nor juliacall.
"""

from __future__ import annotations

import numpy as np

from pyfa.network import DFA_STREAM, DenseParams, init_mlp
from pyfa.reference import ConvParams, Flatten, Pool2d, check_cnn, init_conv

#: LeNet-5's input size: images are zero-padded up to LENET_SIZE × LENET_SIZE.
LENET_SIZE = 32


def initial_network(config, ds) -> list:
    """The seeded numpy network `config` (a checked `TrainConfig`) starts from on dataset `ds`."""
    if config.model == "lenet":
        if ds.image_shape is None:
            raise ValueError(
                f"--model lenet needs images, but dataset {ds.name!r} has flat rows of "
                f"{ds.n_features} features and no image shape: use fashion-mnist (or digits), or "
                "--model mlp")
        return lenet_spec(ds.image_shape, ds.n_outputs, seed=config.seed, activation=config.activation,
                          direct_feedback=config.mode == "dfa")
    sizes = config.sizes if config.sizes is not None else (ds.n_features, *config.hidden, ds.n_outputs)
    if sizes[0] != ds.n_features or sizes[-1] != ds.n_outputs:
        raise ValueError(
            f"sizes {tuple(sizes)} do not fit dataset {ds.name!r}: it has {ds.n_features} "
            f"inputs and {ds.n_outputs} outputs"
        )
    return init_mlp(sizes, config.activation, "identity", seed=config.seed, dtype=np.float32,
                    direct_feedback=config.mode == "dfa")


def lenet_spec(image_shape, classes: int, *, seed: int = 0, activation: str = "relu",
               dtype=np.float32, direct_feedback: bool = False) -> list:
    """LeNet-5 (module docstring) for images of `image_shape` (C, H, W), H and W at most 32 and of
    the same parity as 32, as an oracle CNN spec with `classes` outputs (logits).

    ``direct_feedback=True`` adds DFA's matrices to the hidden conv and dense layers, shaped
    (classes, that layer's output shape), Glorot uniform U(±sqrt(6 / (classes + units))) from
    ``numpy.random.default_rng([seed, DFA_STREAM])``: a stream of their own, as for the MLP."""
    c, h, w = (int(v) for v in image_shape)
    bad = [v for v in (h, w) if v > LENET_SIZE or (LENET_SIZE - v) % 2]
    if bad or min(h, w) < 1:
        raise ValueError(
            f"LeNet-5 takes {LENET_SIZE}×{LENET_SIZE} images, zero-padded equally on both sides: "
            f"images of {h}×{w} cannot be (each side must be at most {LENET_SIZE} and differ "
            "from it by an even number)")
    rng = np.random.default_rng(seed)
    pad = ((LENET_SIZE - h) // 2, (LENET_SIZE - w) // 2)
    conv = dict(rng=rng, activation=activation, dtype=dtype)
    spec = [
        init_conv(c, 6, 5, padding=pad, **conv),
        Pool2d("max", 2),
        init_conv(6, 16, 5, **conv),
        Pool2d("max", 2),
        init_conv(16, 120, 5, **conv),
        Flatten(),
        _dense(rng, 120, 84, activation, dtype),
        _dense(rng, 84, classes, "identity", dtype),
    ]
    if direct_feedback:
        shapes = check_cnn(spec, (1, c, h, w))
        dfa_rng = np.random.default_rng([seed, DFA_STREAM])
        hidden = [i for i, p in enumerate(spec) if isinstance(p, (ConvParams, DenseParams))][:-1]
        for i in hidden:
            a = np.sqrt(6.0 / (classes + int(np.prod(shapes[i]))))
            spec[i].direct_feedback = dfa_rng.uniform(-a, a, size=(classes, *shapes[i])).astype(dtype)
    return spec


def _dense(rng, n_in: int, n_out: int, activation: str, dtype) -> DenseParams:
    """A dense layer as `init_mlp` draws it: weight, then feedback, Glorot uniform; zero bias."""
    a = np.sqrt(6.0 / (n_in + n_out))
    w = rng.uniform(-a, a, size=(n_out, n_in)).astype(dtype)
    b = rng.uniform(-a, a, size=(n_out, n_in)).astype(dtype)
    return DenseParams(w, b, np.zeros(n_out, dtype=dtype), activation)


def layer_names(network: list) -> list[str]:
    """One name per parametrised layer, for plots and tables: ``conv1 (1→6, 5×5)``, ``fc (120→84)``."""
    names, n_conv, n_dense = [], 0, 0
    for p in network:
        if isinstance(p, ConvParams):
            n_conv += 1
            kh, kw = p.kernel_size
            names.append(f"conv{n_conv} ({p.in_channels}→{p.out_channels}, {kh}×{kw})")
        elif isinstance(p, DenseParams):
            n_dense += 1
            names.append(f"{'fc' if n_conv else 'layer '}{n_dense} ({p.in_features}→{p.out_features})")
    return names


def describe(config, network: list) -> str:
    """A short name of the architecture for titles: ``MLP 64-256-10 relu`` or ``LeNet-5 relu``."""
    if config.model == "lenet":
        return f"LeNet-5 {config.activation}"
    sizes = [network[0].in_features] + [p.out_features for p in network]
    return f"MLP {'-'.join(map(str, sizes))} {config.activation}"


__all__ = ["LENET_SIZE", "initial_network", "lenet_spec", "layer_names", "describe"]
