"""Direct feedback alignment in the oracle: values worked out by hand, formulas written out for a
3-layer network (as bioflax's analytic tests do), what DFA must equal and differ from, and the DFA
matrices' representation, checks and seeded initialisation."""

import numpy as np
import pytest

from pyfa import reference as R
from pyfa.network import DFA_STREAM, DenseParams, check_network, init_direct_feedback, init_mlp


def _dense(w, f, b, act, d=None):
    a = np.asarray
    return DenseParams(a(w, float), a(f, float), a(b, float), act, None if d is None else a(d, float))


def test_dfa_values_by_hand():
    """2 → 3 → 2 → 2, relu hidden, MSE, one sample; every number below worked out on paper.

    z₀ = W₀x = [1, 2, −1], h₀ = [1, 2, 0], σ₀' = [1, 1, 0]
    z₁ = W₁h₀ + b₁ = [3, −1], h₁ = [3, 0], σ₁' = [1, 0]
    ŷ = W₂h₁ = [3, 3], y = [1, 3]: L = (2² + 0²)/2 = 2, e = 2(ŷ − y)/2 = [2, 0]
    δ₁ = (e B₁) ⊙ σ₁' = [2, 4] ⊙ [1, 0] = [2, 0]
    δ₀ = (e B₀) ⊙ σ₀' = [2, −2, 4] ⊙ [1, 1, 0] = [2, −2, 0]     (BP would give [2, 2, 0])
    ∂W₂ = eᵀh₁, ∂W₁ = δ₁ᵀh₀, ∂W₀ = δ₀ᵀx, ∂b = δ; ∂x = δ₀ F₀ = [2, −2]
    """
    layers = [
        _dense(
            [[1, 0], [0, 1], [1, -1]], [[1, 1], [0, 2], [3, 0]], [0, 0, 0], "relu", [[1, -1, 2], [5, 5, 5]]
        ),
        _dense([[1, 1, 0], [0, -1, 1]], [[9, 9, 9], [9, 9, 9]], [0, 1], "relu", [[1, 2], [3, 4]]),
        _dense([[1, 0], [1, 1]], [[7, 7], [7, 7]], [0, 0], "identity"),
    ]
    g = R.dfa_gradients(layers, np.array([[1.0, 2.0]]), np.array([[1.0, 3.0]]))
    assert g.loss == 2.0
    np.testing.assert_array_equal(g.layers[2]["weight"], [[6, 0], [0, 0]])
    np.testing.assert_array_equal(g.layers[2]["bias"], [2, 0])
    np.testing.assert_array_equal(g.layers[1]["weight"], [[2, 4, 0], [0, 0, 0]])
    np.testing.assert_array_equal(g.layers[1]["bias"], [2, 0])
    np.testing.assert_array_equal(g.layers[0]["weight"], [[2, 4], [-2, -4], [0, 0]])
    np.testing.assert_array_equal(g.layers[0]["bias"], [2, -2, 0])
    np.testing.assert_array_equal(g.input, [[2, -2]])
    assert g.meta == {"backend": "reference", "mode": "dfa", "loss": "mse"}
    bp = R.chain_gradients(layers, np.array([[1.0, 2.0]]), np.array([[1.0, 3.0]]), "bp")
    np.testing.assert_array_equal(bp.layers[0]["bias"], [2, 2, 0])


@pytest.mark.parametrize("loss", ["mse", "ce"])
def test_dfa_three_layers_by_formula(loss):
    rng = np.random.default_rng(0)
    sizes = [4, 5, 3, 2]
    layers = init_mlp(sizes, activation="tanh", seed=1, dtype=np.float64, direct_feedback=True)
    for p in layers:
        p.bias[:] = rng.normal(size=p.bias.shape)
    x = rng.normal(size=(6, 4))
    y = R.one_hot(rng.integers(0, 2, size=6), 2, np.float64) if loss == "ce" else rng.normal(size=(6, 2))
    g = R.chain_gradients(layers, x, y, "dfa", loss=loss)

    (W0, b0, B0, F0), (W1, b1, B1, _), (W2, b2, _, _) = [
        (p.weight, p.bias, p.direct_feedback, p.feedback) for p in layers
    ]
    assert B0.shape == (2, 5) and B1.shape == (2, 3)  # (C, h_l)
    h0 = np.tanh(x @ W0.T + b0)
    h1 = np.tanh(h0 @ W1.T + b1)
    out = h1 @ W2.T + b2
    if loss == "mse":
        e = 2 * (out - y) / out.size
    else:
        p = np.exp(out) / np.exp(out).sum(axis=1, keepdims=True)
        e = (p - y) / len(y)
    d1 = (e @ B1) * (1 - h1**2)
    d0 = (e @ B0) * (1 - h0**2)
    want = [(d0.T @ x, d0.sum(0)), (d1.T @ h0, d1.sum(0)), (e.T @ h1, e.sum(0))]
    for got, (w, b) in zip(g.layers, want, strict=True):
        assert set(got) == {"weight", "bias"}
        np.testing.assert_allclose(got["weight"], w, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(got["bias"], b, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(g.input, d0 @ F0, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("sizes", [[3, 4], [3, 5, 2], [4, 6, 5, 3], [2, 3, 3, 3, 2]])
@pytest.mark.parametrize("loss", ["mse", "ce"])
def test_dfa_top_layer_gets_the_true_gradient(sizes, loss):
    layers = init_mlp(sizes, activation="sigmoid", seed=2, dtype=np.float64, direct_feedback=True)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(5, sizes[0]))
    y = R.one_hot(rng.integers(0, sizes[-1], size=5), sizes[-1], np.float64)
    dfa = R.chain_gradients(layers, x, y, "dfa", loss=loss)
    bp = R.chain_gradients(layers, x, y, "bp", loss=loss)
    assert dfa.loss == bp.loss
    for k in ("weight", "bias"):
        np.testing.assert_allclose(dfa.layers[-1][k], bp.layers[-1][k], rtol=1e-14)


@pytest.mark.parametrize("depth", [3, 4])
def test_dfa_differs_from_fa_and_bp_in_deeper_networks(depth):
    """For L ≥ 3 the layers below the second-from-top differ from FA's and from BP's. The layer right
    under the top agrees with FA when its B is the top layer's feedback (the two-layer identity, locally)."""
    sizes = [4] + [6] * (depth - 1) + [3]
    layers = init_mlp(sizes, activation="tanh", seed=3, dtype=np.float64, direct_feedback=True)
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(8, 4)), rng.normal(size=(8, 3))
    dfa, fa, bp = (R.chain_gradients(layers, x, y, m) for m in ("dfa", "fa", "bp"))
    for other in (fa, bp):
        for i in range(len(layers) - 1):
            assert not np.allclose(dfa.layers[i]["weight"], other.layers[i]["weight"], rtol=1e-3, atol=0)
        assert not np.allclose(dfa.input, other.input, rtol=1e-3, atol=0)
    layers[-2].direct_feedback = layers[-1].feedback.copy()
    dfa = R.chain_gradients(layers, x, y, "dfa")
    np.testing.assert_allclose(dfa.layers[-2]["weight"], fa.layers[-2]["weight"], rtol=1e-13)
    assert not np.allclose(dfa.layers[0]["weight"], fa.layers[0]["weight"], rtol=1e-3, atol=0)


@pytest.mark.parametrize("act", ["tanh", "relu", "sigmoid", "identity"])
@pytest.mark.parametrize("loss", ["mse", "ce"])
def test_two_layer_dfa_is_fa_when_b0_is_the_top_feedback(act, loss):
    """The identity, proved: with two layers, FA gives layer 0 the error δ₀ = (δ₁ F₁) ⊙ σ₀'(z₀), and δ₁
    is the output error e (the top layer's pre-activation error); DFA gives δ₀ = (e B₀) ⊙ σ₀'(z₀).
    So B₀ = F₁ (both (C, h₀)) gives the same δ₀, hence the same ∂W₀, ∂b₀, and — since DFA's input
    gradient is layer 0's FA rule δ₀ F₀ — the same ∂x; the top layer is exact in both. All equal."""
    layers = init_mlp([5, 7, 3], activation=act, seed=4, dtype=np.float64)
    layers[0].direct_feedback = layers[1].feedback.copy()
    rng = np.random.default_rng(3)
    x = rng.normal(size=(6, 5))
    y = R.one_hot(rng.integers(0, 3, size=6), 3, np.float64)
    dfa, fa = (
        R.chain_gradients(layers, x, y, "dfa", loss=loss),
        R.chain_gradients(layers, x, y, "fa", loss=loss),
    )
    assert dfa.loss == fa.loss
    for a, b in zip(dfa.layers, fa.layers, strict=True):
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_allclose(a[k], b[k], rtol=1e-13, atol=1e-16)
    np.testing.assert_allclose(dfa.input, fa.input, rtol=1e-13, atol=1e-16)
    bp = R.chain_gradients(layers, x, y, "bp", loss=loss)
    assert not np.allclose(dfa.input, bp.input)  # and still not backprop


def test_one_layer_dfa_is_fa():
    layers = init_mlp([4, 3], seed=0, dtype=np.float64, direct_feedback=True)
    assert layers[0].direct_feedback is None
    x, y = np.ones((2, 4)), np.zeros((2, 3))
    dfa, fa = R.chain_gradients(layers, x, y, "dfa"), R.chain_gradients(layers, x, y, "fa")
    np.testing.assert_array_equal(dfa.layers[0]["weight"], fa.layers[0]["weight"])
    np.testing.assert_array_equal(dfa.input, fa.input)


def test_dfa_needs_its_matrices():
    layers = init_mlp([4, 5, 3], seed=0, dtype=np.float64)
    with pytest.raises(
        ValueError, match=r"mode 'dfa' needs a direct_feedback matrix .* layers \[0\] have none"
    ):
        R.chain_gradients(layers, np.ones((2, 4)), np.zeros((2, 3)), "dfa")


def test_direct_feedback_is_checked():
    W = np.zeros((3, 4))
    with pytest.raises(ValueError, match=r"direct_feedback must be a 2-d array \(C, out\) = \(C, 3\)"):
        DenseParams(W, W, None, direct_feedback=np.zeros((2, 4)))
    with pytest.raises(ValueError, match="direct_feedback must be a 2-d array"):
        DenseParams(W, W, None, direct_feedback=np.zeros(3))
    with pytest.raises(TypeError, match="direct_feedback dtype float32 != weight dtype float64"):
        DenseParams(W, W, None, direct_feedback=np.zeros((2, 3), np.float32))
    good = init_mlp([4, 5, 6, 3], seed=0, dtype=np.float64, direct_feedback=True)
    check_network(good)
    bad = [p.copy() for p in good]
    bad[1].direct_feedback = np.zeros((2, 6))
    with pytest.raises(
        ValueError, match=r"layer 1: direct_feedback has shape \(2, 6\) but must be .*\(3, 6\)"
    ):
        check_network(bad)
    bad = [p.copy() for p in good]
    bad[0].direct_feedback = None
    with pytest.raises(
        ValueError, match=r"every hidden layer or on none: layers \[1\] have it, layers \[0\] do not"
    ):
        check_network(bad)
    bad = [p.copy() for p in good]
    bad[2].direct_feedback = np.zeros((3, 3))
    with pytest.raises(ValueError, match="layer 2: the top layer gets its true gradient under DFA"):
        check_network(bad)


def test_copy_and_astype_carry_direct_feedback():
    p = init_mlp([4, 5, 3], seed=0, dtype=np.float64, direct_feedback=True)[0]
    c = p.copy()
    np.testing.assert_array_equal(c.direct_feedback, p.direct_feedback)
    assert not np.shares_memory(c.direct_feedback, p.direct_feedback)
    f = p.astype(np.float32)
    assert f.direct_feedback.dtype == np.float32
    np.testing.assert_allclose(f.direct_feedback, p.direct_feedback, rtol=1e-7)


def test_init_direct_feedback_is_seeded_scaled_and_a_stream_of_its_own():
    sizes = [6, 300, 200, 10]
    plain = init_mlp(sizes, seed=7)
    dfa = init_mlp(sizes, seed=7, direct_feedback=True)
    for p, q in zip(plain, dfa, strict=True):  # weights and feedback stay bit-identical
        np.testing.assert_array_equal(p.weight, q.weight)
        np.testing.assert_array_equal(p.feedback, q.feedback)
        assert p.direct_feedback is None
    assert [None if q.direct_feedback is None else q.direct_feedback.shape for q in dfa] == [
        (10, 300),
        (10, 200),
        None,
    ]
    assert dfa[0].direct_feedback.dtype == np.float32
    again = init_direct_feedback(plain, seed=7)
    for q, r in zip(dfa, again[:-1], strict=False):
        np.testing.assert_array_equal(q.direct_feedback, r.direct_feedback)
    assert all(p.direct_feedback is None for p in plain)  # the input is left unchanged
    other = init_direct_feedback(plain, seed=8)
    assert not np.allclose(other[0].direct_feedback, dfa[0].direct_feedback)
    # the stream: default_rng([seed, DFA_STREAM]), bottom layer first, U(−a, a) with a = √(6 / (C + h))
    rng = np.random.default_rng([7, DFA_STREAM])
    for q, h in zip(dfa[:-1], sizes[1:-1], strict=True):
        a = np.sqrt(6 / (10 + h))
        np.testing.assert_array_equal(q.direct_feedback, rng.uniform(-a, a, size=(10, h)).astype(np.float32))
        assert np.abs(q.direct_feedback).max() <= a
        assert q.direct_feedback.std() == pytest.approx(a / np.sqrt(3), rel=0.05)
