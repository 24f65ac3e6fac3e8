"""The oracle's losses: softmax cross-entropy against its definition, a stable log-sum-exp, finite
differences through a network, and PyTorch's cross_entropy as an independent implementation."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_reference import numeric_grad

import pyfa
from pyfa import reference as R
from pyfa.network import init_mlp


def test_cross_entropy_is_its_definition():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(5, 4))
    labels = np.array([0, 3, 1, 1, 2])
    y = R.one_hot(labels, 4, np.float64)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)  # naive softmax, fine at this scale
    want = -np.mean(np.log(p[np.arange(5), labels]))
    assert R.cross_entropy(z, y) == pytest.approx(want, rel=1e-13)
    np.testing.assert_allclose(R.softmax(z), p, rtol=1e-13)
    np.testing.assert_allclose(R.log_softmax(z), np.log(p), rtol=1e-12)
    value, grad = R.loss_and_grad("ce", z, y)
    assert value == R.cross_entropy(z, y)
    np.testing.assert_allclose(grad, (p - y) / 5, rtol=1e-12)


def test_cross_entropy_is_stable_for_huge_logits():
    """log-sum-exp: shifting a row of logits by a constant changes nothing, even beyond exp's range."""
    z = np.array([[1000.0, 999.0, -1000.0], [-800.0, -801.0, -799.0]])
    y = np.array([[1.0, 0, 0], [0, 0.5, 0.5]])
    shifted = z - z.max(axis=1, keepdims=True)
    for dtype in (np.float32, np.float64):
        a = R.loss_and_grad("ce", z.astype(dtype), y.astype(dtype))
        b = R.loss_and_grad("ce", shifted.astype(dtype), y.astype(dtype))
        assert np.isfinite(a[0]) and a[0] == pytest.approx(b[0], rel=1e-6)
        assert np.all(np.isfinite(a[1])) and a[1].dtype == dtype
        np.testing.assert_allclose(a[1], b[1], rtol=1e-6, atol=1e-7)
    # by hand for row 0: log softmax = [0, -1, -2000] - log(1 + e^-1 + e^-2000)
    assert R.log_softmax(z)[0, 0] == pytest.approx(-np.log1p(np.exp(-1.0)), rel=1e-14)


@pytest.mark.parametrize("targets", ["one-hot", "soft"])
def test_against_torch_cross_entropy(targets):
    rng = np.random.default_rng(1)
    z = rng.normal(size=(6, 5)) * 3
    if targets == "one-hot":
        y = R.one_hot(rng.integers(0, 5, size=6), 5, np.float64)
    else:
        y = rng.random(size=(6, 5))
        y /= y.sum(axis=1, keepdims=True)
    zt = torch.tensor(z, requires_grad=True)
    lt = F.cross_entropy(zt, torch.tensor(y))  # probability targets, mean over batch
    lt.backward()
    value, grad = R.loss_and_grad("ce", z, y)
    assert value == pytest.approx(lt.item(), rel=1e-12)
    np.testing.assert_allclose(grad, zt.grad.numpy(), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("out_act", ["identity", "tanh"])
def test_ce_bp_gradients_match_finite_differences(out_act):
    layers = init_mlp([4, 6, 3], activation="sigmoid", out_activation=out_act, seed=5, dtype=np.float64)
    rng = np.random.default_rng(2)
    for p in layers:
        p.bias[:] = rng.normal(size=p.bias.shape)
    x = rng.normal(size=(7, 4))
    y = R.one_hot(rng.integers(0, 3, size=7), 3, np.float64)
    g = R.chain_gradients(layers, x, y, "bp", loss="ce")
    assert g.meta["loss"] == "ce"

    def loss():
        return R.cross_entropy(R.chain_forward(layers, x), y)

    assert g.loss == pytest.approx(loss(), rel=1e-14)
    for i, p in enumerate(layers):
        np.testing.assert_allclose(g.layers[i]["weight"], numeric_grad(loss, p.weight), atol=1e-8)
        np.testing.assert_allclose(g.layers[i]["bias"], numeric_grad(loss, p.bias), atol=1e-8)
    np.testing.assert_allclose(g.input, numeric_grad(loss, x), atol=1e-8)


def test_ce_fa_single_layer_by_hand():
    rng = np.random.default_rng(3)
    W, B, b = rng.normal(size=(3, 4)), rng.normal(size=(3, 4)), rng.normal(size=3)
    x = rng.normal(size=(5, 4))
    y = R.one_hot(np.array([0, 2, 2, 1, 0]), 3, np.float64)
    g = R.chain_gradients([pyfa.DenseParams(W, B, b)], x, y, "fa", loss="ce")
    z = x @ W.T + b
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    delta = (p - y) / 5
    np.testing.assert_allclose(g.layers[0]["weight"], delta.T @ x)
    np.testing.assert_allclose(g.layers[0]["bias"], delta.sum(0))
    np.testing.assert_allclose(g.input, delta @ B)


def test_mse_stays_the_default():
    layers = init_mlp([3, 4, 2], seed=0, dtype=np.float64)
    x, y = np.ones((2, 3)), np.zeros((2, 2))
    g = R.chain_gradients(layers, x, y, "fa")
    assert g.meta["loss"] == "mse" and g.loss == R.mse(R.chain_forward(layers, x), y)


def test_targets_are_checked():
    layers = init_mlp([3, 2], seed=0, dtype=np.float64)
    x = np.ones((2, 3))
    with pytest.raises(ValueError, match="unknown loss 'nll'"):
        R.chain_gradients(layers, x, np.zeros((2, 2)), loss="nll")
    with pytest.raises(ValueError, match=r"target y has shape \(2, 3\); the network gives \(2, 2\)"):
        R.chain_gradients(layers, x, np.zeros((2, 3)), loss="ce")
    with pytest.raises(ValueError, match=r"probability targets.*row 1 is \[0.5, 0.0\]"):
        R.chain_gradients(layers, x, np.array([[1.0, 0.0], [0.5, 0.0]]), loss="ce")
    with pytest.raises(ValueError, match="row 0"):
        R.chain_gradients(layers, x, np.array([[1.5, -0.5], [0.5, 0.5]]), loss="ce")
    R.chain_gradients(layers, x, np.array([[0.25, 0.75], [0.5, 0.5]]), loss="ce")  # soft targets are fine


def test_one_hot():
    np.testing.assert_array_equal(R.one_hot([2, 0], 3), [[0, 0, 1], [1, 0, 0]])
    assert R.one_hot([1], 2).dtype == np.float32
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        R.one_hot([3], 3)
    with pytest.raises(ValueError, match="1-d integer"):
        R.one_hot([0.5], 3)
