"""Kolen-Pollack in the oracle: the gradients by hand, and the contraction law of W − B under SGD with
decoupled weight decay, exactly (dyadic arithmetic) and with real gradients (float64, bounded error)."""

import numpy as np
import pytest

import pyfa
from pyfa import reference as R
from pyfa.network import DenseParams, init_mlp


def test_modes():
    assert R.MODES == pyfa.MODES and "kp" in R.MODES and R.ALL_MODES == R.MODES + ("dfa",)
    assert R.NETWORK_MODES == ("dfa",) and R.ALL_MODES == R.MODES + ("dfa",)
    W, F = np.ones((2, 3)), np.full((2, 3), 0.5)
    assert R.feedback_matrix("kp", W, F) is F
    with pytest.raises(ValueError, match="'dfa' is network-level"):
        R.feedback_matrix("dfa", W, F)


def test_kp_two_layer_by_hand():
    rng = np.random.default_rng(0)
    W1, B1, b1 = rng.normal(size=(5, 4)), rng.normal(size=(5, 4)), rng.normal(size=5)
    W2, B2, b2 = rng.normal(size=(3, 5)), rng.normal(size=(3, 5)), rng.normal(size=3)
    layers = [DenseParams(W1, B1, b1, "tanh"), DenseParams(W2, B2, b2)]
    x, y = rng.normal(size=(6, 4)), rng.normal(size=(6, 3))
    g = R.chain_gradients(layers, x, y, "kp")

    h = np.tanh(x @ W1.T + b1)
    out = h @ W2.T + b2
    d2 = 2 * (out - y) / out.size  # identity top: δ₂ = ∂L/∂ŷ
    d1 = (d2 @ B2) * (1 - h**2)  # the error reaches layer 1 through B₂, as in FA
    want = [{"weight": d1.T @ x, "bias": d1.sum(0)}, {"weight": d2.T @ h, "bias": d2.sum(0)}]
    for got, w in zip(g.layers, want, strict=True):
        assert set(got) == {"weight", "bias", "feedback"}
        np.testing.assert_allclose(got["weight"], w["weight"], rtol=1e-12)
        np.testing.assert_allclose(got["bias"], w["bias"], rtol=1e-12)
        np.testing.assert_array_equal(got["feedback"], got["weight"])  # ∂B := ∂W
        assert got["feedback"] is not got["weight"]  # a copy, safe to update in place
    np.testing.assert_allclose(g.input, d1 @ B1, rtol=1e-12)
    assert g.meta["mode"] == "kp"

    fa = R.chain_gradients(layers, x, y, "fa")  # kp = fa + the feedback gradient
    for a, b in zip(g.layers, fa.layers, strict=True):
        assert {k: v for k, v in a.items() if k != "feedback"}.keys() == b.keys()
        for k in b:
            np.testing.assert_array_equal(a[k], b[k])


def test_sgd_step_by_hand():
    W, B, b = np.array([[1.0, -2.0]]), np.array([[0.5, 4.0]]), np.array([3.0])
    layer = DenseParams(W, B, b)
    g = {"weight": np.array([[2.0, 2.0]]), "bias": np.array([1.0]), "feedback": np.array([[2.0, 2.0]])}
    (new,) = R.sgd_step([layer], [g], 0.5, weight_decay=0.25)
    # W − η(∂W + λW) = [1, -2] − 0.5·([2, 2] + 0.25·[1, -2]) = [1 − 1.125, −2 − 0.75]
    np.testing.assert_array_equal(new.weight, [[-0.125, -2.75]])
    np.testing.assert_array_equal(new.feedback, [[0.5 - 0.5 * (2 + 0.125), 4 - 0.5 * (2 + 1)]])
    np.testing.assert_array_equal(new.bias, [2.5])  # no decay on the bias
    np.testing.assert_array_equal(layer.weight, W)  # the input is left unchanged
    np.testing.assert_array_equal(layer.feedback, B)
    # without a feedback gradient (every mode but kp) B stays where it is
    (fa,) = R.sgd_step([layer], [{"weight": g["weight"]}], 0.5, weight_decay=0.25)
    np.testing.assert_array_equal(fa.feedback, B)
    np.testing.assert_array_equal(fa.bias, b)


def test_contraction_law_is_exact_in_dyadic_arithmetic():
    """W − B after k SGD steps = (1 − ηλ)^k (W − B)₀, compared with ==.

    Exact because every number is a dyadic rational with few significant bits: η = 1/2, λ = 1/4
    (1 − ηλ = 7/8), W₀, B₀ and the gradients multiples of 2⁻⁴ below 2⁴ in magnitude. A step is
    W ← (7/8)·W − g/2, so after k steps every value is a multiple of 2^-(4+3k) below 2⁶ (64 is the
    fixed point of |W| ← 7/8·|W| + 8): at most 10 + 3k significant bits, 40 for k = 10, inside
    float64's 53, and likewise for every intermediate (λW, ∂W + λW, η(…)). Every +, −, · is then exact,
    and so is (7/8)^k · (W − B)₀ (7¹⁰ < 2²⁹), so equality must hold bit for bit. The gradients are
    arbitrary (the law does not depend on them), ∂B = ∂W as in mode kp.
    """
    rng = np.random.default_rng(0)

    def dyadic(shape):
        return rng.integers(-255, 256, size=shape) / 16.0

    layers = [
        DenseParams(dyadic((3, 4)), dyadic((3, 4)), dyadic(3)),
        DenseParams(dyadic((2, 3)), dyadic((2, 3)), None),
    ]
    d0 = [p.weight - p.feedback for p in layers]
    lr, wd, k = 0.5, 0.25, 10
    for _ in range(k):
        grads = []
        for p in layers:
            gw = dyadic(p.weight.shape)
            g = {"weight": gw, "feedback": gw.copy()}
            if p.bias is not None:
                g["bias"] = dyadic(p.bias.shape)
            grads.append(g)
        layers = R.sgd_step(layers, grads, lr, weight_decay=wd)
    for p, d in zip(layers, d0, strict=True):
        np.testing.assert_array_equal(p.weight - p.feedback, (7 / 8) ** k * d)


def test_contraction_law_with_real_kp_gradients():
    """25 steps of KP training (float64, real gradients from the oracle), W − B against (1 − ηλ)^k (W − B)₀.

    Tolerance: each step rounds W and B once each per operation; with |W|, |B| ≤ M and the step's
    terms no larger, one step adds at most ~4·ε·M (ε = 2⁻⁵² ≈ 2.2e-16) to each entry of W − B and the
    contraction only shrinks earlier errors, so after k steps the error is ≤ 4kεM ≈ 1e-13·M for k = 25.
    We allow 1e-12·max|W|: ten times that bound, and far below what a wrong law would give
    (the law's own step, ηλ(W − B), is ~1e-3·M).
    """
    layers = init_mlp([5, 8, 3], activation="tanh", seed=1, dtype=np.float64)
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(16, 5)), rng.normal(size=(16, 3))
    lr, wd, k = 0.1, 0.01, 25
    d0 = [p.weight - p.feedback for p in layers]
    for _ in range(k):
        layers = R.sgd_step(layers, R.chain_gradients(layers, x, y, "kp"), lr, weight_decay=wd)
    for p, d in zip(layers, d0, strict=True):
        m = max(np.abs(p.weight).max(), np.abs(p.feedback).max())
        np.testing.assert_allclose(p.weight - p.feedback, (1 - lr * wd) ** k * d, rtol=0, atol=1e-12 * m)
        assert not np.allclose(p.weight - p.feedback, d, rtol=0, atol=1e-3)  # it did move


def test_kp_aligns_b_with_w():
    layers = init_mlp([5, 8, 3], activation="tanh", seed=1, dtype=np.float64)
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(16, 5)), rng.normal(size=(16, 3))

    def cos(p):
        return np.sum(p.weight * p.feedback) / np.linalg.norm(p.weight) / np.linalg.norm(p.feedback)

    before = [cos(p) for p in layers]
    for _ in range(200):
        layers = R.sgd_step(layers, R.chain_gradients(layers, x, y, "kp"), 0.2, weight_decay=0.05)
    after = [cos(p) for p in layers]
    assert all(a > 0.9 and a > b for a, b in zip(after, before, strict=True)), (before, after)


def test_sgd_step_rejects_bad_input():
    layers = init_mlp([3, 2], seed=0, dtype=np.float64)
    g = R.chain_gradients(layers, np.ones((2, 3)), np.zeros((2, 2)), "kp")
    with pytest.raises(ValueError, match="lr must be a finite number > 0"):
        R.sgd_step(layers, g, 0.0)
    with pytest.raises(ValueError, match="weight_decay must be a finite number >= 0"):
        R.sgd_step(layers, g, 0.1, weight_decay=-1)
    with pytest.raises(ValueError, match="gradients for 1 layers, the network has 2"):
        R.sgd_step(layers + layers, g, 0.1)
    with pytest.raises(ValueError, match=r"layer 0: weight gradient has shape \(3, 2\), the weight \(2, 3\)"):
        R.sgd_step(layers, [{"weight": np.zeros((3, 2))}], 0.1)
    nobias = [DenseParams(np.ones((2, 3)), np.ones((2, 3)), None)]
    with pytest.raises(ValueError, match="layer 0: gradient 'bias' but the layer has no such parameter"):
        R.sgd_step(nobias, [{"weight": np.ones((2, 3)), "bias": np.ones(2)}], 0.1)


def test_kp_on_a_cnn_spec():
    """sgd_step takes a CNN spec too: conv and dense layers step, pooling/flatten pass through, and the
    contraction law holds for the conv kernels (float64; same error bound as above)."""
    layers = R.init_small_cnn(0, input_shape=(1, 8, 8), channels=(2, 3), classes=4, dtype=np.float64)
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(5, 1, 8, 8)), R.one_hot(rng.integers(0, 4, size=5), 4, np.float64)
    d0 = {i: p.weight - p.feedback for i, p in enumerate(layers) if hasattr(p, "weight")}
    lr, wd, k = 0.05, 0.1, 5
    for _ in range(k):
        g = R.cnn_gradients(layers, x, y, "kp", loss="ce")
        assert all(np.array_equal(d["feedback"], d["weight"]) for d in g.layers if d)
        new = R.sgd_step(layers, g, lr, weight_decay=wd)
        assert new[1] is layers[1] and new[4] is layers[4]  # Pool2d, Flatten: unchanged
        layers = new
    for i, d in d0.items():
        m = max(np.abs(layers[i].weight).max(), np.abs(layers[i].feedback).max())
        np.testing.assert_allclose(
            layers[i].weight - layers[i].feedback, (1 - lr * wd) ** k * d, rtol=0, atol=1e-12 * m
        )
