"""Alignment metrics against hand computations."""

import math

import numpy as np
import pytest

from pyfa import reference as R
from pyfa.metrics import (
    accuracy,
    angle,
    update_angles,
    weight_feedback_angle,
    weight_feedback_angles,
)
from pyfa.network import DenseParams, init_mlp


def layer(w, b, act="identity"):
    w = np.asarray(w, dtype=np.float64)
    return DenseParams(w, np.asarray(b, dtype=np.float64), None, act)


def test_angle_hand_values():
    assert angle(np.array([1.0, 0.0]), np.array([0.0, 3.0])) == pytest.approx(90.0)
    assert angle(np.array([1.0, 0.0]), np.array([1.0, 1.0])) == pytest.approx(45.0)
    assert angle(np.array([2.0, 2.0]), np.array([5.0, 5.0])) == pytest.approx(0.0, abs=1e-6)
    assert angle(np.array([1.0, -2.0]), np.array([-1.0, 2.0])) == pytest.approx(180.0)
    # 60 degrees: cos = 1/2
    assert angle(np.array([1.0, 0.0]), np.array([0.5, math.sqrt(3) / 2])) == pytest.approx(60.0)
    # flattened: matrices compare as vectors
    assert angle(np.eye(2), np.array([[0.0, 1.0], [1.0, 0.0]])) == pytest.approx(90.0)
    assert math.isnan(angle(np.zeros(3), np.ones(3)))
    with pytest.raises(ValueError, match="3 and 2 elements"):
        angle(np.ones(3), np.ones(2))


def test_weight_feedback_angle_hand_values():
    W = [[1.0, 2.0], [3.0, 4.0]]
    assert weight_feedback_angle(layer(W, W)) == pytest.approx(0.0, abs=1e-6)
    assert weight_feedback_angle(layer(W, -np.array(W))) == pytest.approx(180.0)
    assert weight_feedback_angle(layer([[1.0, 0.0]], [[0.0, 1.0]])) == pytest.approx(90.0)
    # cos = (1*4 + 2*3 + 3*2 + 4*1) / (|W| |B|) = 20 / 30
    expected = math.degrees(math.acos(20 / 30))
    assert weight_feedback_angle(layer(W, [[4.0, 3.0], [2.0, 1.0]])) == pytest.approx(expected)
    # bp: B = W whatever the stored feedback
    bp = weight_feedback_angle(layer(W, [[4.0, 3.0], [2.0, 1.0]]), "bp")
    assert bp == pytest.approx(0, abs=1e-6)
    # usf: B = sign(W)*s; W = [3, -4]: cos = (3 + 4) / (5 sqrt 2)
    usf = math.degrees(math.acos(7 / (5 * math.sqrt(2))))
    assert weight_feedback_angle(layer([[3.0, -4.0]], [[1.0, 1.0]]), "usf") == pytest.approx(usf)
    # frsf: B = |R| sign(W); R = [1, 1] -> B = [1, -1]: same as usf here
    assert weight_feedback_angle(layer([[3.0, -4.0]], [[1.0, 1.0]]), "frsf") == pytest.approx(usf)
    # brsf: sign-concordant, so under 90 degrees, and reproducible by default
    p = layer([[3.0, -4.0, 1.0]], [[1.0, 1.0, 1.0]])
    assert weight_feedback_angle(p, "brsf") < 90
    assert weight_feedback_angle(p, "brsf") == weight_feedback_angle(p, "brsf")


def test_weight_feedback_angles_independent_random_near_90():
    layers = init_mlp([400, 300, 200], seed=0)
    angles = weight_feedback_angles(layers)
    assert len(angles) == 2 and all(85 < a < 95 for a in angles), angles
    assert weight_feedback_angles(layers, "bp") == pytest.approx([0.0, 0.0], abs=1e-5)


def two_layer(B2, act="tanh"):
    rng = np.random.default_rng(0)
    W1, W2 = rng.normal(size=(4, 3)), rng.normal(size=(2, 4))
    return [
        DenseParams(W1, rng.normal(size=(4, 3)), rng.normal(size=4), act),
        DenseParams(W2, B2(W2), rng.normal(size=2), "identity"),
    ]


def test_update_angles_feedback_minus_w_is_180():
    """B2 = -W2 flips the hidden error, so layer 1's update is exactly the negated true gradient."""
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(5, 3)), rng.normal(size=(5, 2))
    for act in ("identity", "tanh", "sigmoid"):
        a = update_angles(two_layer(lambda w: -w, act), x, y, "fa")
        assert a[0] == pytest.approx(180.0, abs=1e-4) and a[1] == pytest.approx(0.0, abs=1e-4)
        same = update_angles(two_layer(lambda w: w.copy(), act), x, y, "fa")
        assert same == pytest.approx([0.0, 0.0], abs=1e-4)


def test_update_angles_against_a_hand_written_two_layer_net():
    rng = np.random.default_rng(2)
    layers = two_layer(lambda w: rng.normal(size=w.shape))
    x, y = rng.normal(size=(6, 3)), rng.normal(size=(6, 2))
    (W1, B1, b1), (W2, B2, b2) = [(p.weight, p.feedback, p.bias) for p in layers]
    z1 = x @ W1.T + b1
    h = np.tanh(z1)
    out = h @ W2.T + b2
    g = 2 * (out - y) / out.size
    d1_fa = (g @ B2) * (1 - np.tanh(z1) ** 2)
    d1_bp = (g @ W2) * (1 - np.tanh(z1) ** 2)
    gw_fa, gw_bp = d1_fa.T @ x, d1_bp.T @ x
    cos = np.sum(gw_fa * gw_bp) / (np.linalg.norm(gw_fa) * np.linalg.norm(gw_bp))
    expected = math.degrees(math.acos(cos))
    got = update_angles(layers, x, y, "fa")
    assert got[0] == pytest.approx(expected, rel=1e-9)
    assert got[1] == pytest.approx(0.0, abs=1e-6)
    assert 1.0 < got[0] < 179.0  # a random B really gives another direction


def test_update_angles_bp_is_zero_and_deeper_layers_differ_most():
    layers = init_mlp([8, 16, 16, 3], "tanh", seed=3, dtype=np.float64)
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(32, 8)), rng.normal(size=(32, 3))
    assert update_angles(layers, x, y, "bp") == pytest.approx([0, 0, 0], abs=1e-5)
    fa = update_angles(layers, x, y, "fa")
    assert fa[-1] == pytest.approx(0.0, abs=1e-5) and fa[0] > 20 and fa[1] > 20
    brsf = update_angles(layers, x, y, "brsf")
    assert brsf == update_angles(layers, x, y, "brsf")  # default rng is fixed
    # mode gradients are the oracle's
    g = R.chain_gradients(layers, x, y, "fa")
    gb = R.chain_gradients(layers, x, y, "bp")
    assert fa[0] == pytest.approx(angle(g.layers[0]["weight"], gb.layers[0]["weight"]))


def test_accuracy():
    out = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    assert accuracy(out, np.array([1, 0, 0, 0])) == 0.75
    assert accuracy(out, np.eye(2)[[1, 0, 1, 0]]) == 1.0
    with pytest.raises(ValueError, match="outputs have shape"):
        accuracy(out, np.array([1, 0]))
    with pytest.raises(ValueError, match=r"must be \(n, classes\)"):
        accuracy(np.zeros(4), np.zeros(4))


# ----------------------------------------------------------- ‖B‖/‖W‖, DFA's pairs, ce, CNN specs


def test_feedback_norm_ratios_hand_values():
    from pyfa.metrics import feedback_norm_ratios

    W = [[3.0, 4.0]]  # ‖W‖ = 5
    assert feedback_norm_ratios([layer(W, [[0.0, 10.0]])]) == pytest.approx([2.0])
    assert feedback_norm_ratios([layer(W, [[0.0, 10.0]])], "bp") == pytest.approx([1.0])
    # usf: B = sign(W)·s, s = sqrt(2 / (2 + 1)): ‖B‖ = sqrt(2)·s
    s = math.sqrt(2 / 3)
    assert feedback_norm_ratios([layer(W, [[1.0, 1.0]])], "usf") == pytest.approx([math.sqrt(2) * s / 5])
    assert feedback_norm_ratios([layer(W, [[7.0, 7.0]])], "kp") == pytest.approx([math.sqrt(98) / 5])


def dfa_net():
    rng = np.random.default_rng(5)
    sizes = [4, 5, 3, 2]
    layers = [DenseParams(rng.normal(size=(o, i)), rng.normal(size=(o, i)), rng.normal(size=o), "tanh")
              for i, o in zip(sizes[:-1], sizes[1:], strict=True)]
    layers[-1].activation = "identity"
    layers[0].direct_feedback = rng.normal(size=(2, 5))
    layers[1].direct_feedback = rng.normal(size=(2, 3))
    return layers


def test_dfa_pairs_compare_b_l_with_the_forward_path():
    """Hidden layer l: B_l (C, h_l) against P_l = W_L ⋯ W_{l+1}; the top layer: NaN (no B)."""
    from pyfa.metrics import feedback_norm_ratios, feedback_pairs

    layers = dfa_net()
    W1, W2 = layers[1].weight, layers[2].weight
    P0, P1 = W2 @ W1, W2  # (2, 5) and (2, 3)
    pairs = feedback_pairs(layers, "dfa")
    assert pairs[2] is None
    np.testing.assert_allclose(pairs[0][1], P0) and np.testing.assert_allclose(pairs[1][1], P1)
    B0, B1 = layers[0].direct_feedback, layers[1].direct_feedback
    cos0 = np.sum(B0 * P0) / (np.linalg.norm(B0) * np.linalg.norm(P0))
    got = weight_feedback_angles(layers, "dfa")
    assert got[0] == pytest.approx(math.degrees(math.acos(cos0)))
    assert got[1] == pytest.approx(angle(B1, P1)) and math.isnan(got[2])
    ratios = feedback_norm_ratios(layers, "dfa")
    assert ratios[1] == pytest.approx(np.linalg.norm(B1) / np.linalg.norm(P1)) and math.isnan(ratios[2])
    # B_l = P_l: perfectly aligned
    layers[1].direct_feedback = P1.copy()
    assert weight_feedback_angles(layers, "dfa")[1] == pytest.approx(0, abs=1e-6)
    with pytest.raises(ValueError, match="network-level"):
        weight_feedback_angle(layers[0], "dfa")


def test_dfa_update_angles_against_a_hand_written_net():
    layers = dfa_net()
    rng = np.random.default_rng(6)
    x = rng.normal(size=(7, 4))
    y = R.one_hot(rng.integers(0, 2, 7), 2).astype(np.float64)
    (W0, _, b0), (W1, _, b1), (W2, _, b2) = [(p.weight, p.feedback, p.bias) for p in layers]
    z0 = x @ W0.T + b0
    h0 = np.tanh(z0)
    z1 = h0 @ W1.T + b1
    h1 = np.tanh(z1)
    out = h1 @ W2.T + b2
    e = (R.softmax(out) - y) / len(x)  # cross-entropy's output error
    d1_bp = (e @ W2) * (1 - h1 ** 2)
    d0_bp = (d1_bp @ W1) * (1 - h0 ** 2)
    d1_dfa = (e @ layers[1].direct_feedback) * (1 - h1 ** 2)
    d0_dfa = (e @ layers[0].direct_feedback) * (1 - h0 ** 2)
    got = update_angles(layers, x, y, "dfa", loss="ce")
    assert got[0] == pytest.approx(angle(d0_dfa.T @ x, d0_bp.T @ x), rel=1e-9)
    assert got[1] == pytest.approx(angle(d1_dfa.T @ h0, d1_bp.T @ h0), rel=1e-9)
    assert got[2] == pytest.approx(0, abs=1e-6)


def test_update_angles_of_a_cnn_spec_are_per_parametrised_layer():
    layers = R.init_small_cnn(1, input_shape=(1, 8, 8), channels=(2, 3), dtype=np.float64)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 1, 8, 8))
    y = R.one_hot(rng.integers(0, 10, 5), 10).astype(np.float64)
    assert update_angles(layers, x, y, "bp", loss="ce") == pytest.approx([0, 0, 0], abs=1e-5)
    fa = update_angles(layers, x, y, "fa", loss="ce")
    assert len(fa) == 3 and fa[-1] == pytest.approx(0, abs=1e-5) and fa[0] > 1
    g, gb = R.cnn_gradients(layers, x, y, "fa", loss="ce"), R.cnn_gradients(layers, x, y, "bp", loss="ce")
    assert fa[1] == pytest.approx(angle(g.layers[2]["weight"], gb.layers[2]["weight"]))
    assert len(weight_feedback_angles(layers)) == 3  # conv, conv, dense: pools and flatten have none
