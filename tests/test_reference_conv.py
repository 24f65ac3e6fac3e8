"""Conv FA in the oracle: bp mode against central finite differences (every parameter and the input,
stride/padding/dilation/groups variants), against torch.nn.functional.conv2d + autograd, fa mode's
∂x against the bp formula with W replaced by B (and torch's conv2d_input with B), pooling against
torch, and a small CNN (conv-relu-pool-conv-relu-pool-dense) end to end."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from test_reference import numeric_grad

from pyfa import reference as R
from pyfa.network import DenseParams, init_mlp
from pyfa.reference import ConvParams, Flatten, Pool2d

#: (stride, padding, dilation, groups) with x (2, 6, 7, 8) and a (6, 6/g, 3, 2) kernel: plain, strided
#: with padding, per-axis pairs with dilation, grouped + dilated, a stride that leaves input columns
#: no window reaches (their gradient must be 0), and depthwise.
VARIANTS = [
    (1, 0, 1, 1),
    (2, 1, 1, 1),
    ((2, 1), (0, 2), (1, 2), 1),
    (1, 1, 2, 2),
    (3, (1, 0), 1, 3),
    (1, 0, 1, 6),
]


def _layer(rng, stride, padding, dilation, groups, act="tanh", dtype=np.float64, cin=6, cout=6, k=(3, 2)):
    shape = (cout, cin // groups) + k
    return ConvParams(
        rng.normal(size=shape).astype(dtype),
        rng.normal(size=shape).astype(dtype),
        rng.normal(size=cout).astype(dtype),
        stride,
        padding,
        dilation,
        groups,
        act,
    )


def _torch_conv(p, x, weight=None):
    return F.conv2d(
        x,
        torch.tensor(p.weight) if weight is None else weight,
        None if p.bias is None else torch.tensor(p.bias),
        p.stride,
        p.padding,
        p.dilation,
        p.groups,
    )


@pytest.mark.parametrize("variant", VARIANTS)
def test_forward_matches_torch(variant):
    rng = np.random.default_rng(0)
    p = _layer(rng, *variant, act="identity")
    x = rng.normal(size=(2, 6, 7, 8))
    z = R.conv2d(x, p.weight, p.bias, p.stride, p.padding, p.dilation, p.groups)
    np.testing.assert_allclose(z, _torch_conv(p, torch.tensor(x)).numpy(), rtol=1e-12, atol=1e-12)
    assert z.shape[1:] == p.output_shape(x.shape)


@pytest.mark.parametrize("variant", VARIANTS)
def test_bp_mode_matches_finite_differences(variant):
    rng = np.random.default_rng(1)
    p = _layer(rng, *variant)
    x = rng.normal(size=(2, 6, 7, 8))
    y = rng.normal(size=(2,) + p.output_shape(x.shape))
    g = R.cnn_gradients([p], x, y, "bp")

    def loss():
        return R.mse(R.cnn_forward([p], x), y)

    assert g.loss == pytest.approx(loss(), rel=1e-15)
    for k in ("weight", "bias"):
        np.testing.assert_allclose(g.layers[0][k], numeric_grad(loss, getattr(p, k)), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(g.input, numeric_grad(loss, x), rtol=1e-6, atol=1e-9)
    if variant[0] == 3:  # W = 8, kw = 2, stride 3: windows cover columns 0-1, 3-4, 6-7
        assert np.all(g.input[:, :, :, [2, 5]] == 0) and np.all(g.input[:, :, :, [0, 1, 3, 4, 6, 7]] != 0)


@pytest.mark.parametrize("variant", VARIANTS)
def test_bp_mode_matches_torch_autograd(variant):
    rng = np.random.default_rng(2)
    p = _layer(rng, *variant)
    x = rng.normal(size=(2, 6, 7, 8))
    y = rng.normal(size=(2,) + p.output_shape(x.shape))
    g = R.cnn_gradients([p], x, y, "bp")
    xt = torch.tensor(x, requires_grad=True)
    wt, bt = torch.tensor(p.weight, requires_grad=True), torch.tensor(p.bias, requires_grad=True)
    out = torch.tanh(F.conv2d(xt, wt, bt, p.stride, p.padding, p.dilation, p.groups))
    F.mse_loss(out, torch.tensor(y)).backward()
    np.testing.assert_allclose(g.layers[0]["weight"], wt.grad.numpy(), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(g.layers[0]["bias"], bt.grad.numpy(), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(g.input, xt.grad.numpy(), rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("variant", VARIANTS)
def test_fa_input_gradient_is_the_bp_formula_with_b(variant):
    """fa: ∂x is what bp gives for a layer whose weight is B; ∂W, ∂b are the true ones; and torch's
    transposed convolution (conv2d_input) with B agrees."""
    rng = np.random.default_rng(3)
    p = _layer(rng, *variant)
    x = rng.normal(size=(2, 6, 7, 8))
    delta = rng.normal(size=(2,) + p.output_shape(x.shape))
    fa_grads, fa_dx = R.conv_backward(p, x, delta, "fa")
    with_b = ConvParams(p.feedback, p.weight, p.bias, p.stride, p.padding, p.dilation, p.groups, p.activation)
    _, bp_dx_b = R.conv_backward(with_b, x, delta, "bp")
    np.testing.assert_array_equal(fa_dx, bp_dx_b)
    bp_grads, bp_dx = R.conv_backward(p, x, delta, "bp")
    for k in ("weight", "bias"):
        np.testing.assert_array_equal(fa_grads[k], bp_grads[k])
    assert not np.allclose(fa_dx, bp_dx)
    want = torch.nn.grad.conv2d_input(
        x.shape, torch.tensor(p.feedback), torch.tensor(delta), p.stride, p.padding, p.dilation, p.groups
    )
    np.testing.assert_allclose(fa_dx, want.numpy(), rtol=1e-10, atol=1e-13)
    # the same through torch's one-call backward that the PyTorch port uses (B in the weight slot)
    gi, gw, gb = torch.ops.aten.convolution_backward(
        torch.tensor(delta),
        torch.tensor(x),
        torch.tensor(p.feedback),
        [p.out_channels],
        list(p.stride),
        list(p.padding),
        list(p.dilation),
        False,
        [0, 0],
        p.groups,
        [True, True, True],
    )
    np.testing.assert_allclose(fa_dx, gi.numpy(), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(fa_grads["weight"], gw.numpy(), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(fa_grads["bias"], gb.numpy(), rtol=1e-10, atol=1e-13)


def test_modes_on_conv_weights():
    rng = np.random.default_rng(4)
    p = _layer(rng, 1, 0, 1, 2)  # weight (6, 3, 3, 2)
    fan_in, fan_out = torch.nn.init._calculate_fan_in_and_fan_out(torch.tensor(p.weight))
    assert R.fans(p.weight.shape) == (fan_in, fan_out) == (18, 36)
    s = np.sqrt(2 / (18 + 36))
    np.testing.assert_allclose(R.feedback_matrix("usf", p.weight, p.feedback), np.sign(p.weight) * s)
    np.testing.assert_array_equal(
        R.feedback_matrix("frsf", p.weight, p.feedback), np.abs(p.feedback) * np.sign(p.weight)
    )
    b = R.feedback_matrix("brsf", p.weight, p.feedback, np.random.default_rng(0))
    assert b.shape == p.weight.shape and np.all(np.sign(b) == np.sign(p.weight))
    x = rng.normal(size=(2, 6, 7, 8))
    delta = rng.normal(size=(2,) + p.output_shape(x.shape))
    grads, dx = R.conv_backward(p, x, delta, "kp")
    np.testing.assert_array_equal(grads["feedback"], grads["weight"])
    np.testing.assert_array_equal(dx, R.conv_backward(p, x, delta, "fa")[1])
    for mode in ("usf", "frsf"):
        m = R.feedback_matrix(mode, p.weight, p.feedback)
        np.testing.assert_array_equal(
            R.conv_backward(p, x, delta, mode)[1], R.conv2d_input_grad(delta, m, x.shape, 1, 0, 1, 2)
        )


@pytest.mark.parametrize("kind", ["avg", "max"])
@pytest.mark.parametrize("kernel,stride", [(2, None), (3, 2), ((2, 3), (1, 2))])
def test_pooling_matches_torch(kind, kernel, stride):
    rng = np.random.default_rng(5)
    spec = Pool2d(kind, kernel, stride)
    x = rng.normal(size=(2, 3, 7, 8))
    g = rng.normal(size=(2,) + spec.output_shape(x.shape))
    xt = torch.tensor(x, requires_grad=True)
    pool = F.avg_pool2d if kind == "avg" else F.max_pool2d
    out = pool(xt, spec.kernel_size, spec.stride)
    out.backward(torch.tensor(g))
    np.testing.assert_allclose(R.pool_forward(spec, x), out.detach().numpy(), rtol=1e-13)
    np.testing.assert_allclose(R.pool_backward(spec, x, g), xt.grad.numpy(), rtol=1e-12, atol=1e-15)


def test_max_pool_ties_go_to_the_first_maximum():
    """Ties (common after relu) go to the window's first maximum in row-major order, as torch's CPU kernel."""
    x = np.array([[[[1.0, 3, 3, 0], [3, 2, 0, 3], [5, 5, 1, 1], [5, 5, 1, 1]]]])
    spec = Pool2d("max", 2, 1)
    dx = R.pool_backward(spec, x, np.ones((1, 1, 3, 3)))
    np.testing.assert_array_equal(dx[0, 0], [[0, 2, 1, 0], [0, 0, 0, 1], [2, 2, 1, 0], [0, 0, 0, 0]])
    xt = torch.tensor(x, requires_grad=True)
    F.max_pool2d(xt, 2, 1).sum().backward()
    np.testing.assert_array_equal(dx, xt.grad.numpy())
    zeros = R.pool_backward(Pool2d("max", 2), np.zeros((1, 1, 2, 2)), np.ones((1, 1, 1, 1)))
    np.testing.assert_array_equal(zeros[0, 0], [[1, 0], [0, 0]])


def _cnn(seed=0, pool="avg", act="tanh", dtype=np.float64, direct_feedback=False):
    layers = R.init_small_cnn(
        seed,
        input_shape=(2, 8, 8),
        channels=(3, 4),
        classes=5,
        activation=act,
        pool=pool,
        dtype=dtype,
        direct_feedback=direct_feedback,
    )
    rng = np.random.default_rng(seed + 100)
    for p in layers:
        if isinstance(p, (ConvParams, DenseParams)):
            p.bias[:] = rng.normal(size=p.bias.shape) * 0.1
    return layers


def test_small_cnn_spec():
    layers = R.init_small_cnn(0)
    kinds = [type(p).__name__ for p in layers]
    assert kinds == ["ConvParams", "Pool2d", "ConvParams", "Pool2d", "Flatten", "DenseParams"]
    assert R.check_cnn(layers, (5, 1, 12, 12)) == [(4, 12, 12), (4, 6, 6), (6, 6, 6), (6, 3, 3), (54,), (10,)]
    again = R.init_small_cnn(0)
    for p, q in zip(layers, again, strict=True):
        if isinstance(p, (ConvParams, DenseParams)):
            np.testing.assert_array_equal(p.weight, q.weight)
            np.testing.assert_array_equal(p.feedback, q.feedback)
    a = np.sqrt(6 / (1 * 9 + 4 * 9))  # Glorot with torch's conv fans
    assert np.abs(layers[0].weight).max() <= a and layers[0].weight.dtype == np.float32
    plain, dfa = R.init_small_cnn(3), R.init_small_cnn(3, direct_feedback=True)
    for p, q in zip(plain, dfa, strict=True):
        if isinstance(p, (ConvParams, DenseParams)):
            np.testing.assert_array_equal(p.weight, q.weight)
    assert dfa[0].direct_feedback.shape == (10, 4, 12, 12) and dfa[2].direct_feedback.shape == (10, 6, 6, 6)
    assert dfa[5].direct_feedback is None


@pytest.mark.parametrize("pool", ["avg", "max"])
@pytest.mark.parametrize("loss", ["mse", "ce"])
def test_small_cnn_bp_matches_finite_differences(pool, loss):
    layers = _cnn(pool=pool)
    rng = np.random.default_rng(6)
    x = rng.normal(size=(3, 2, 8, 8))
    y = R.one_hot(rng.integers(0, 5, size=3), 5, np.float64)
    g = R.cnn_gradients(layers, x, y, "bp", loss=loss)
    f = R.mse if loss == "mse" else R.cross_entropy

    def value():
        return f(R.cnn_forward(layers, x), y)

    for i, p in enumerate(layers):
        if isinstance(p, (ConvParams, DenseParams)):
            for k in ("weight", "bias"):
                np.testing.assert_allclose(
                    g.layers[i][k], numeric_grad(value, getattr(p, k)), rtol=1e-5, atol=1e-9
                )
        else:
            assert g.layers[i] == {}
    np.testing.assert_allclose(g.input, numeric_grad(value, x), rtol=1e-5, atol=1e-9)


class _ConvFA(torch.autograd.Function):
    """An independent FA conv in torch: grad_input with B in the weight slot of convolution_backward."""

    @staticmethod
    def forward(ctx, x, w, b, fb, geom):
        ctx.save_for_backward(x, fb)
        ctx.geom = geom
        return F.conv2d(x, w, b, *geom)

    @staticmethod
    def backward(ctx, g):
        x, fb = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.geom
        gi, gw, gb = torch.ops.aten.convolution_backward(
            g,
            x,
            fb,
            [fb.shape[0]],
            list(stride),
            list(padding),
            list(dilation),
            False,
            [0, 0],
            groups,
            [True, True, True],
        )
        return gi, gw, gb, None, None


class _LinearFA(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, b, fb):
        ctx.save_for_backward(x, fb)
        return x @ w.T + b

    @staticmethod
    def backward(ctx, g):
        x, fb = ctx.saved_tensors
        return g @ fb, g.T @ x, g.sum(0), None


@pytest.mark.parametrize("mode", ["bp", "fa"])
def test_small_cnn_against_torch(mode):
    """conv-relu-pool-conv-relu-pool-flatten-dense, softmax CE: bp against torch autograd, fa against
    torch with an independent FA rule (convolution_backward with B, g @ B for the dense layer)."""
    layers = _cnn(act="relu")
    rng = np.random.default_rng(7)
    x = rng.normal(size=(4, 2, 8, 8))
    y = R.one_hot(rng.integers(0, 5, size=4), 5, np.float64)
    g = R.cnn_gradients(layers, x, y, mode, loss="ce")

    xt = torch.tensor(x, requires_grad=True)
    params = []
    h = xt
    for p in layers:
        if isinstance(p, ConvParams):
            w, b = torch.tensor(p.weight, requires_grad=True), torch.tensor(p.bias, requires_grad=True)
            geom = (p.stride, p.padding, p.dilation, p.groups)
            if mode == "bp":
                h = F.conv2d(h, w, b, *geom)
            else:
                h = _ConvFA.apply(h, w, b, torch.tensor(p.feedback), geom)
            h = torch.relu(h)
            params.append((w, b))
        elif isinstance(p, Pool2d):
            h = F.avg_pool2d(h, p.kernel_size, p.stride)
            params.append(None)
        elif isinstance(p, Flatten):
            h = torch.flatten(h, 1)
            params.append(None)
        else:
            w, b = torch.tensor(p.weight, requires_grad=True), torch.tensor(p.bias, requires_grad=True)
            h = F.linear(h, w, b) if mode == "bp" else _LinearFA.apply(h, w, b, torch.tensor(p.feedback))
            params.append((w, b))
    loss = F.cross_entropy(h, torch.tensor(y))
    loss.backward()
    assert g.loss == pytest.approx(loss.item(), rel=1e-12)
    for got, want in zip(g.layers, params, strict=True):
        if want is None:
            assert got == {}
            continue
        np.testing.assert_allclose(got["weight"], want[0].grad.numpy(), rtol=1e-9, atol=1e-13)
        np.testing.assert_allclose(got["bias"], want[1].grad.numpy(), rtol=1e-9, atol=1e-13)
    np.testing.assert_allclose(g.input, xt.grad.numpy(), rtol=1e-9, atol=1e-13)


def test_cnn_of_dense_layers_is_the_chain():
    layers = init_mlp([4, 6, 5, 3], activation="tanh", seed=0, dtype=np.float64, direct_feedback=True)
    rng = np.random.default_rng(8)
    x, y = rng.normal(size=(5, 4)), rng.normal(size=(5, 3))
    for mode in ("fa", "bp", "usf", "frsf", "kp", "dfa"):
        a, b = R.cnn_gradients(layers, x, y, mode), R.chain_gradients(layers, x, y, mode)
        assert a.loss == b.loss
        for da, db in zip(a.layers, b.layers, strict=True):
            assert da.keys() == db.keys()
            for k in da:
                np.testing.assert_array_equal(da[k], db[k])
        np.testing.assert_array_equal(a.input, b.input)


def test_small_cnn_dfa_by_formula():
    """DFA on the CNN: each conv gets δ_l = reshape(e B_l) ⊙ relu'(z_l); its ∂W is checked against torch
    (autograd of Σ conv2d(x_l, W) ⊙ δ_l), the top layer against BP, the input against layer 0's FA rule."""
    layers = _cnn(act="relu", direct_feedback=True)
    rng = np.random.default_rng(9)
    x = rng.normal(size=(3, 2, 8, 8))
    y = R.one_hot(rng.integers(0, 5, size=3), 5, np.float64)
    g = R.cnn_gradients(layers, x, y, "dfa", loss="ce")
    bp = R.cnn_gradients(layers, x, y, "bp", loss="ce")
    for k in ("weight", "bias"):
        np.testing.assert_allclose(g.layers[5][k], bp.layers[5][k], rtol=1e-13)
    out = R.cnn_forward(layers, x)
    e = (R.softmax(out) - y) / 3
    h = x
    inputs, pre = [], []
    for p in layers:
        inputs.append(h)
        if isinstance(p, ConvParams):
            z = R.conv2d(h, p.weight, p.bias, p.stride, p.padding, p.dilation, p.groups)
            pre.append(z)
            h = np.maximum(z, 0)
        else:
            pre.append(None)
            h = R.pool_forward(p, h) if isinstance(p, Pool2d) else h.reshape(len(h), -1)
    for i in (0, 2):
        p = layers[i]
        delta = (e @ p.direct_feedback.reshape(5, -1)).reshape(pre[i].shape) * (pre[i] > 0)
        wt = torch.tensor(p.weight, requires_grad=True)
        (
            F.conv2d(torch.tensor(inputs[i]), wt, None, p.stride, p.padding) * torch.tensor(delta)
        ).sum().backward()
        np.testing.assert_allclose(g.layers[i]["weight"], wt.grad.numpy(), rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(g.layers[i]["bias"], delta.sum(axis=(0, 2, 3)), rtol=1e-10, atol=1e-14)
        if i == 0:
            want = torch.nn.grad.conv2d_input(
                x.shape, torch.tensor(p.feedback), torch.tensor(delta), 1, p.padding
            )
            np.testing.assert_allclose(g.input, want.numpy(), rtol=1e-10, atol=1e-14)
        assert not np.allclose(g.layers[i]["weight"], bp.layers[i]["weight"])
    fa = R.cnn_gradients(layers, x, y, "fa", loss="ce")
    assert not np.allclose(g.layers[0]["weight"], fa.layers[0]["weight"])


def test_bad_conv_layers_and_specs_are_named():
    w = np.zeros((6, 2, 3, 3))
    with pytest.raises(ValueError, match=r"out_channels 6 is not divisible by groups 4"):
        ConvParams(w, w, None, groups=4)
    with pytest.raises(
        ValueError, match=r"feedback must have the weight's shape \(6, 2, 3, 3\), got \(6, 2, 3, 2\)"
    ):
        ConvParams(w, np.zeros((6, 2, 3, 2)), None)
    with pytest.raises(TypeError, match="feedback dtype float32 != weight dtype float64"):
        ConvParams(w, w.astype(np.float32), None)
    with pytest.raises(TypeError, match="weight must be float32 or float64, got dtype int64"):
        ConvParams(w.astype(np.int64), w.astype(np.int64), None)
    with pytest.raises(ValueError, match=r"weight must be a 4-d numpy array"):
        ConvParams(np.zeros((6, 2)), np.zeros((6, 2)), None)
    with pytest.raises(ValueError, match=r"bias must have shape \(6,\)"):
        ConvParams(w, w, np.zeros(5))
    with pytest.raises(ValueError, match="conv layer: stride must be >= 1"):
        ConvParams(w, w, None, stride=0)
    with pytest.raises(ValueError, match="padding must be an int or a pair of ints"):
        ConvParams(w, w, None, padding="same")
    p = ConvParams(w, w, None, groups=2)
    assert p.in_channels == 4 and p.stride == (1, 1) and p.kernel_size == (3, 3)
    with pytest.raises(ValueError, match=r"x has 6 channels .* with groups=2 takes 4"):
        R.conv_forward(p, np.zeros((1, 6, 5, 5)))
    with pytest.raises(TypeError, match="x dtype float32 != weight dtype float64"):
        R.conv_forward(p, np.zeros((1, 4, 5, 5), np.float32))
    with pytest.raises(ValueError, match=r"kernel \(3, 3\) .* does not fit the input \(2, 5\)"):
        R.conv_forward(p, np.zeros((1, 4, 2, 5)))
    with pytest.raises(ValueError, match="unknown pooling 'min'"):
        Pool2d("min", 2)

    layers = _cnn()
    x = np.zeros((2, 2, 8, 8))
    with pytest.raises(
        ValueError, match=r"layer 2 \(conv\): takes \(in_ch=2, H, W\) inputs, gets \(3, 4, 4\)"
    ):
        R.cnn_forward(
            [layers[0], layers[1], ConvParams(np.zeros((4, 2, 3, 3)), np.zeros((4, 2, 3, 3)), None)], x
        )
    with pytest.raises(ValueError, match=r"layer 4 \(dense\): needs \(batch, features\) inputs.*Flatten"):
        R.cnn_forward(layers[:4] + layers[5:], x)
    with pytest.raises(ValueError, match=r"layer 4 \(dense\): takes 16 inputs but gets 64"):
        R.cnn_forward(layers[:3] + layers[4:], x)
    with pytest.raises(ValueError, match="layer 1: str is not a CNN layer"):
        R.cnn_forward([layers[0], "relu"], x)
    with pytest.raises(TypeError, match="must share one dtype"):
        R.cnn_forward(layers, x.astype(np.float32))
    with pytest.raises(ValueError, match=r"mode 'dfa' needs a direct_feedback matrix .* layers \[0, 2\]"):
        R.cnn_gradients(layers, x, np.zeros((2, 5)), "dfa")
    dfa = _cnn(direct_feedback=True)
    dfa[2].direct_feedback = np.zeros((5, 4, 2, 2))
    with pytest.raises(
        ValueError, match=r"layer 2: direct_feedback has shape \(5, 4, 2, 2\), needs .* \(5, 4, 4, 4\)"
    ):
        R.cnn_gradients(dfa, x, np.zeros((2, 5)), "dfa")
    with pytest.raises(ValueError, match=r"target y has shape \(2, 4\); the network gives \(2, 5\)"):
        R.cnn_gradients(layers, x, np.zeros((2, 4)))


def test_copy_and_astype():
    p = _cnn(direct_feedback=True)[0]
    q = p.copy()
    assert q.stride == p.stride and not np.shares_memory(q.weight, p.weight)
    np.testing.assert_array_equal(q.direct_feedback, p.direct_feedback)
    r = p.astype(np.float32)
    assert r.weight.dtype == r.feedback.dtype == r.bias.dtype == r.direct_feedback.dtype == np.float32


def test_float32_cnn_gives_float32_gradients():
    layers = R.init_small_cnn(1, input_shape=(1, 8, 8), channels=(2, 3), classes=4)
    x = np.random.default_rng(0).normal(size=(2, 1, 8, 8)).astype(np.float32)
    y = R.one_hot([0, 3], 4)
    g = R.cnn_gradients(layers, x, y, "fa", loss="ce")
    assert g.input.dtype == np.float32
    assert all(v.dtype == np.float32 for d in g.layers for v in d.values())


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 3),
    groups=st.integers(1, 3),
    cin_per_group=st.integers(1, 3),
    cout_per_group=st.integers(1, 3),
    kernel=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    padding=st.tuples(st.integers(0, 2), st.integers(0, 2)),
    dilation=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    extra=st.tuples(st.integers(0, 5), st.integers(0, 5)),
    seed=st.integers(0, 2**16),
)
def test_any_geometry_agrees_with_torch(
    n, groups, cin_per_group, cout_per_group, kernel, stride, padding, dilation, extra, seed
):
    """Forward, ∂W, ∂b and ∂x (with B) against torch for random shapes whose kernel fits the input."""
    span = tuple(d * (k - 1) + 1 for d, k in zip(dilation, kernel, strict=True))
    hw = tuple(max(1, s - 2 * p + e) for s, p, e in zip(span, padding, extra, strict=True))
    assume(all(h + 2 * p >= s for h, p, s in zip(hw, padding, span, strict=True)))
    rng = np.random.default_rng(seed)
    shape = (cout_per_group * groups, cin_per_group) + kernel
    p = ConvParams(
        rng.normal(size=shape),
        rng.normal(size=shape),
        rng.normal(size=shape[0]),
        stride,
        padding,
        dilation,
        groups,
    )
    x = rng.normal(size=(n, cin_per_group * groups) + hw)
    z, _ = R.conv_forward(p, x)
    np.testing.assert_allclose(z, _torch_conv(p, torch.tensor(x)).numpy(), rtol=1e-10, atol=1e-12)
    delta = rng.normal(size=z.shape)
    grads, dx = R.conv_backward(p, x, delta, "fa")
    gi, gw, gb = torch.ops.aten.convolution_backward(
        torch.tensor(delta),
        torch.tensor(x),
        torch.tensor(p.feedback),
        [shape[0]],
        list(stride),
        list(padding),
        list(dilation),
        False,
        [0, 0],
        groups,
        [True, True, True],
    )
    np.testing.assert_allclose(dx, gi.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(grads["weight"], gw.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(grads["bias"], gb.numpy(), rtol=1e-10, atol=1e-12)
