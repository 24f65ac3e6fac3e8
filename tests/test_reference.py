"""The numpy oracle against independent computations: finite differences (where FA equals BP) and
the one-layer formulas written out by hand."""

import numpy as np
import pytest

from pyfa import reference as R
from pyfa.network import ACTIVATIONS, DenseParams, init_mlp


def numeric_grad(f, a, eps=1e-6):
    """Central finite differences of scalar f() with respect to array a (modified in place)."""
    g = np.zeros_like(a)
    it = np.nditer(a, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = a[i]
        a[i] = old + eps
        fp = f()
        a[i] = old - eps
        fm = f()
        a[i] = old
        g[i] = (fp - fm) / (2 * eps)
    return g


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_bp_mode_matches_finite_differences(act):
    layers = init_mlp([4, 5, 3, 2], activation=act, seed=3, dtype=np.float64)
    for p in layers:
        p.bias[:] = np.random.default_rng(7).normal(size=p.bias.shape)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 4))
    y = rng.normal(size=(6, 2))
    g = R.chain_gradients(layers, x, y, mode="bp")

    def loss():
        return R.mse(R.chain_forward(layers, x), y)

    for i, p in enumerate(layers):
        np.testing.assert_allclose(g.layers[i]["weight"], numeric_grad(loss, p.weight), atol=1e-7)
        np.testing.assert_allclose(g.layers[i]["bias"], numeric_grad(loss, p.bias), atol=1e-7)
    np.testing.assert_allclose(g.input, numeric_grad(loss, x), atol=1e-7)


def test_fa_single_layer_by_hand():
    rng = np.random.default_rng(1)
    W, B = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    b = rng.normal(size=3)
    x, y = rng.normal(size=(5, 4)), rng.normal(size=(5, 3))
    g = R.chain_gradients([DenseParams(W, B, b, "tanh")], x, y, mode="fa")
    z = x @ W.T + b
    delta = 2 * (np.tanh(z) - y) / y.size * (1 - np.tanh(z) ** 2)
    np.testing.assert_allclose(g.layers[0]["weight"], delta.T @ x)
    np.testing.assert_allclose(g.layers[0]["bias"], delta.sum(0))
    np.testing.assert_allclose(g.input, delta @ B)
    assert not np.allclose(g.input, delta @ W)


def test_fa_changes_only_what_flows_below_the_top_layer():
    layers = init_mlp([5, 7, 3], seed=2, dtype=np.float64)
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(8, 5)), rng.normal(size=(8, 3))
    fa = R.chain_gradients(layers, x, y, "fa")
    bp = R.chain_gradients(layers, x, y, "bp")
    np.testing.assert_allclose(fa.layers[-1]["weight"], bp.layers[-1]["weight"])
    assert not np.allclose(fa.layers[0]["weight"], bp.layers[0]["weight"])
    assert fa.loss == bp.loss


def test_modes_feedback_matrices():
    rng = np.random.default_rng(4)
    W, F = rng.normal(size=(3, 5)), rng.normal(size=(3, 5))
    s = np.sqrt(2 / 8)
    np.testing.assert_array_equal(R.feedback_matrix("fa", W, F), F)
    np.testing.assert_array_equal(R.feedback_matrix("bp", W, F), W)
    np.testing.assert_allclose(R.feedback_matrix("usf", W, F), np.sign(W) * s)
    np.testing.assert_allclose(R.feedback_matrix("frsf", W, F), np.abs(F) * np.sign(W))
    b1 = R.feedback_matrix("brsf", W, F, np.random.default_rng(0))
    b2 = R.feedback_matrix("brsf", W, F, np.random.default_rng(1))
    assert np.all(np.sign(b1) == np.sign(W)) and not np.allclose(b1, b2)
    with pytest.raises(ValueError, match="brsf"):
        R.feedback_matrix("brsf", W, F)
    with pytest.raises(ValueError, match="unknown mode 'xx'"):
        R.feedback_matrix("xx", W, F)


def test_bad_networks_are_named():
    W = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match=r"feedback must have the weight's shape .*\(3, 4\).*\(4, 3\)"):
        DenseParams(W, np.zeros((4, 3), np.float32), None)
    with pytest.raises(TypeError, match="float32 or float64"):
        DenseParams(W.astype(int), W.astype(int), None)
    layers = init_mlp([4, 3, 2], seed=0)
    layers[1] = DenseParams(np.zeros((2, 5), np.float32), np.zeros((2, 5), np.float32), None)
    with pytest.raises(ValueError, match="layer 1: takes 5 inputs but layer 0 gives 3"):
        R.chain_gradients(layers, np.zeros((2, 4), np.float32), np.zeros((2, 2), np.float32))
    good = init_mlp([4, 3, 2], seed=0)
    with pytest.raises(ValueError, match="layer 0: x has 5 features"):
        R.chain_gradients(good, np.zeros((2, 5), np.float32), np.zeros((2, 2), np.float32))


def test_init_is_seeded_and_feedback_independent():
    a, b, c = init_mlp([6, 4, 2], seed=1), init_mlp([6, 4, 2], seed=1), init_mlp([6, 4, 2], seed=2)
    for p, q in zip(a, b, strict=True):
        np.testing.assert_array_equal(p.weight, q.weight)
        np.testing.assert_array_equal(p.feedback, q.feedback)
    assert not np.array_equal(a[0].weight, c[0].weight)
    assert not np.allclose(a[0].weight, a[0].feedback)
    assert a[0].weight.dtype == np.float32 and a[-1].activation == "identity"


def test_names_existing_callers_use_stay():
    """pyfa.reference became a package; everything callers used from the module is still there."""
    for name in (
        "activate",
        "activation_derivative",
        "feedback_matrix",
        "dense_forward",
        "chain_forward",
        "chain_gradients",
        "mse",
    ):
        assert callable(getattr(R, name))
    assert R.activate("relu", np.array([-1.0, 2.0])).tolist() == [0.0, 2.0]
