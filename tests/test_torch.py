"""The PyTorch port against the numpy oracle, against nn.Linear (mode bp), and on bad input."""

import io

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from pyfa import reference as R
from pyfa.network import DenseParams, init_mlp
from pyfa.torch import (
    LinearFA,
    convert,
    fa_linear,
    mlp_from_params,
    mlp_gradients,
    params_from_mlp,
)

TOL = {np.float32: dict(rtol=2e-4, atol=1e-5), np.float64: dict(rtol=1e-10, atol=1e-12)}


@settings(max_examples=40, deadline=None)
@given(
    batch=st.lists(st.integers(1, 5), min_size=0, max_size=2),
    n_in=st.integers(1, 9),
    n_out=st.integers(1, 9),
    dtype=st.sampled_from([np.float32, np.float64]),
    bias=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_fa_linear_matches_oracle(batch, n_in, n_out, dtype, bias, seed):
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(n_out, n_in)).astype(dtype)
    B = rng.normal(size=(n_out, n_in)).astype(dtype)
    b = rng.normal(size=n_out).astype(dtype) if bias else None
    x = rng.normal(size=(*batch, n_in)).astype(dtype)
    g = rng.normal(size=(*batch, n_out)).astype(dtype)
    xt, Wt = torch.tensor(x, requires_grad=True), torch.tensor(W, requires_grad=True)
    bt = torch.tensor(b, requires_grad=True) if bias else None
    y = fa_linear(xt, Wt, torch.tensor(B), bt)
    y.backward(torch.tensor(g))
    # oracle: one identity layer, batch dims flattened, upstream gradient g
    x2, g2 = x.reshape(-1, n_in), g.reshape(-1, n_out)
    np.testing.assert_allclose(y.detach().numpy().reshape(-1, n_out),
                               x2 @ W.T + (b if bias else 0), **TOL[dtype])
    np.testing.assert_allclose(Wt.grad.numpy(), g2.T @ x2, **TOL[dtype])
    np.testing.assert_allclose(xt.grad.numpy().reshape(-1, n_in), g2 @ B, **TOL[dtype])
    if bias:
        np.testing.assert_allclose(bt.grad.numpy(), g2.sum(0), **TOL[dtype])
    if np.abs(g2 @ (B - W)).max() > 1e-3:
        assert not np.allclose(xt.grad.numpy().reshape(-1, n_in), g2 @ W, **TOL[dtype])


@settings(max_examples=25, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 8), min_size=2, max_size=4),
    act=st.sampled_from(["identity", "relu", "tanh", "sigmoid"]),
    dtype=st.sampled_from([np.float32, np.float64]),
    mode=st.sampled_from(["fa", "bp", "usf", "frsf"]),
    seed=st.integers(0, 1000),
)
def test_mlp_matches_oracle_chain(sizes, act, dtype, mode, seed):
    layers = init_mlp(sizes, activation=act, seed=seed, dtype=dtype)
    rng = np.random.default_rng(seed + 1)
    for p in layers:
        p.bias[:] = rng.normal(size=p.bias.shape)
    x = rng.normal(size=(3, sizes[0])).astype(dtype)
    y = rng.normal(size=(3, sizes[-1])).astype(dtype)
    got = mlp_gradients(mlp_from_params(layers, mode), x, y)
    want = R.chain_gradients(layers, x, y, mode)
    assert got.loss == pytest.approx(want.loss, rel=1e-5)
    for g, w in zip(got.layers, want.layers, strict=True):
        assert g.keys() == w.keys()
        for k in g:
            np.testing.assert_allclose(g[k], w[k], **TOL[dtype])
    np.testing.assert_allclose(got.input, want.input, **TOL[dtype])


def test_forum_network_fa_equals_oracle_and_differs_from_bp():
    """The Discourse post's network: 50-60-40-2, batch 64, MSE."""
    layers = init_mlp([50, 60, 40, 2], activation="relu", seed=0, dtype=np.float64)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 50)), rng.normal(size=(64, 2))
    model = mlp_from_params(layers, "fa")
    got = mlp_gradients(model, x, y)
    fa = R.chain_gradients(layers, x, y, "fa")
    bp = R.chain_gradients(layers, x, y, "bp")
    for g, w in zip(got.layers, fa.layers, strict=True):
        np.testing.assert_allclose(g["weight"], w["weight"], rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(got.input, fa.input, rtol=1e-10, atol=1e-13)
    assert not np.allclose(got.layers[0]["weight"], bp.layers[0]["weight"], rtol=1e-3)
    assert not np.allclose(got.input, bp.input, rtol=1e-3)


def test_bp_mode_gradcheck_and_matches_linear():
    torch.manual_seed(0)
    layer = LinearFA(5, 4, mode="bp", dtype=torch.float64)
    x = torch.randn(3, 2, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (x,))
    lin = nn.Linear(5, 4, dtype=torch.float64)
    with torch.no_grad():
        lin.weight.copy_(layer.weight)
        lin.bias.copy_(layer.bias)
    x1 = x.detach().clone().requires_grad_()
    x2 = x.detach().clone().requires_grad_()
    g = torch.randn(3, 2, 4, dtype=torch.float64)
    layer(x1).backward(g)
    lin(x2).backward(g)
    torch.testing.assert_close(x1.grad, x2.grad)
    torch.testing.assert_close(layer.weight.grad, lin.weight.grad)
    torch.testing.assert_close(layer.bias.grad, lin.bias.grad)


def test_fa_mode_fails_gradcheck():
    """The test above could fail: with a random feedback the rule is not the true derivative."""
    torch.manual_seed(0)
    layer = LinearFA(5, 4, mode="fa", dtype=torch.float64)
    x = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    assert not torch.autograd.gradcheck(layer, (x,), raise_exception=False)


@pytest.mark.parametrize("mode", ["fa", "usf", "frsf", "brsf"])
def test_feedback_gets_no_gradient_and_survives_optimiser(mode):
    torch.manual_seed(1)
    model = nn.Sequential(LinearFA(6, 5, mode=mode), nn.Tanh(), LinearFA(5, 2, mode=mode))
    before = [m.feedback.clone() for m in model if isinstance(m, LinearFA)]
    w_before = model[0].weight.detach().clone()
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    assert all(p is not m.feedback for p in model.parameters() for m in model[::2])
    for _ in range(3):
        opt.zero_grad()
        nn.functional.mse_loss(model(torch.randn(8, 6)), torch.randn(8, 2)).backward()
        opt.step()
    for m, b in zip(model[::2], before, strict=True):
        assert m.feedback.grad is None and not m.feedback.requires_grad
        torch.testing.assert_close(m.feedback, b, rtol=0, atol=0)
    assert not torch.equal(model[0].weight, w_before)
    assert "feedback" not in dict(model.named_parameters())
    assert "0.feedback" in model.state_dict()


def test_state_dict_round_trip_reproduces_outputs_and_gradients(tmp_path):
    torch.manual_seed(2)
    a = nn.Sequential(LinearFA(7, 6), nn.ReLU(), LinearFA(6, 3))
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    torch.manual_seed(99)
    b = nn.Sequential(LinearFA(7, 6), nn.ReLU(), LinearFA(6, 3))
    assert not torch.equal(a[0].feedback, b[0].feedback)
    buf.seek(0)
    b.load_state_dict(torch.load(buf))
    x = torch.randn(5, 7)
    torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)
    for m in (a, b):
        nn.functional.mse_loss(m(x), torch.ones(5, 3)).backward()
    for ma, mb in zip(a[::2], b[::2], strict=True):
        torch.testing.assert_close(ma.weight.grad, mb.weight.grad, rtol=0, atol=0)


def test_seeded_construction_is_reproducible():
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    a, b = LinearFA(4, 3, generator=g1), LinearFA(4, 3, generator=g2)
    torch.testing.assert_close(a.feedback, b.feedback, rtol=0, atol=0)
    torch.testing.assert_close(a.weight, b.weight, rtol=0, atol=0)
    assert not torch.equal(a.weight, a.feedback)
    torch.manual_seed(3)
    c = LinearFA(4, 3)
    torch.manual_seed(3)
    d = LinearFA(4, 3)
    torch.testing.assert_close(c.feedback, d.feedback, rtol=0, atol=0)


def test_convert_keeps_forward_and_counts():
    torch.manual_seed(4)
    model = nn.Sequential(
        nn.Linear(8, 16), nn.ReLU(),
        nn.Sequential(nn.Linear(16, 16), nn.Tanh()), nn.Linear(16, 3),
    )
    x = torch.randn(10, 8)
    before = model(x)
    assert convert(model, mode="fa") == 3
    assert sum(isinstance(m, LinearFA) for m in model.modules()) == 3
    assert not any(type(m) is nn.Linear for m in model.modules())
    torch.testing.assert_close(model(x), before, rtol=0, atol=0)
    assert convert(model) == 0
    with pytest.raises(TypeError, match="from_linear"):
        convert(nn.Linear(2, 2))


def test_from_linear_adopts_the_parameter_objects():
    lin = nn.Linear(3, 2, bias=False, dtype=torch.float64)
    w = lin.weight
    fa = LinearFA.from_linear(lin, mode="usf")
    assert fa.bias is None and fa.mode == "usf" and fa.weight is w
    assert fa.feedback.dtype == torch.float64 and fa.feedback.shape == w.shape
    assert not fa.feedback.requires_grad and fa.feedback.data_ptr() != w.data_ptr()
    bound = (6 / 5) ** 0.5  # Glorot uniform for 3 -> 2
    assert fa.feedback.abs().max() <= bound and not torch.equal(fa.feedback, w.detach())


def test_params_round_trip():
    layers = init_mlp([3, 4, 2], activation="sigmoid", seed=1)
    back = params_from_mlp(mlp_from_params(layers))
    for p, q in zip(layers, back, strict=True):
        np.testing.assert_array_equal(p.weight, q.weight)
        np.testing.assert_array_equal(p.feedback, q.feedback)
        assert p.activation == q.activation


def test_extra_repr():
    assert repr(LinearFA(3, 2, bias=False, mode="frsf")) == (
        "LinearFA(in_features=3, out_features=2, bias=False, mode='frsf')"
    )


# ---- bad input: a clear error naming the layer and the shapes, and nothing changed ----

def _snapshot(layer):
    return {k: v.clone() for k, v in layer.state_dict().items()}


def _unchanged(layer, snap):
    return all(torch.equal(v, snap[k]) for k, v in layer.state_dict().items())


def test_wrong_input_dimension():
    layer = LinearFA(50, 60)
    snap = _snapshot(layer)
    msg = r"LinearFA\(in_features=50, out_features=60.*shape \(64, 40\).*\(\.\.\., 50\)"
    with pytest.raises(ValueError, match=msg):
        layer(torch.randn(64, 40))
    assert _unchanged(layer, snap)


def test_feedback_not_shaped_like_weight():
    msg = r"feedback must have the weight's shape \(out, in\) = \(3, 4\), got \(4, 3\)"
    with pytest.raises(ValueError, match=msg):
        fa_linear(torch.randn(2, 4), torch.randn(3, 4), torch.randn(4, 3))
    layer = LinearFA(4, 3)
    snap = _snapshot(layer)
    with pytest.raises(RuntimeError, match="feedback"):
        layer.load_state_dict({**layer.state_dict(), "feedback": torch.zeros(4, 3)})
    assert _unchanged(layer, snap)


def test_integer_tensors():
    layer = LinearFA(4, 3)
    snap = _snapshot(layer)
    msg = r"LinearFA\(in_features=4.*x must be a floating-point tensor, got dtype torch.int64"
    with pytest.raises(TypeError, match=msg):
        layer(torch.ones(2, 4, dtype=torch.int64))
    with pytest.raises(TypeError, match="weight must be a floating-point"):
        fa_linear(torch.ones(2, 4), torch.ones(3, 4, dtype=torch.int32), torch.ones(3, 4))
    assert _unchanged(layer, snap)


def test_mixed_dtypes():
    with pytest.raises(TypeError, match="share one dtype"):
        LinearFA(4, 3)(torch.ones(2, 4, dtype=torch.float64))


def test_unknown_mode():
    with pytest.raises(ValueError, match=r"LinearFA\(4, 3\): unknown mode 'dfa'"):
        LinearFA(4, 3, mode="dfa")
    layer = LinearFA(4, 3)
    with pytest.raises(ValueError, match="unknown mode 'dfa'.*network-level"):
        layer.mode = "dfa"
    assert layer.mode == "fa"
    with pytest.raises(ValueError, match="unknown mode"):
        convert(nn.Sequential(nn.Linear(2, 2)), mode="nope")


def test_bad_params_for_mlp():
    W = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match="layer 1: takes 4 inputs but layer 0 gives 3"):
        mlp_from_params([DenseParams(W, W.copy(), None), DenseParams(W, W.copy(), None)])


def test_device_and_buffer_mismatches_name_the_layer():
    layer = LinearFA(4, 3)
    with pytest.raises(ValueError,
                       match=r"LinearFA\(in_features=4.*must be on one device, got x on meta, weight on cpu"):
        layer(torch.ones(2, 4, device="meta"))
    layer.feedback = torch.zeros(4, 3)  # a reassigned buffer of the wrong shape
    with pytest.raises(ValueError, match=r"LinearFA\(in_features=4.*feedback must have the weight's shape"):
        layer(torch.ones(2, 4))
    layer.feedback = torch.zeros(3, 4, dtype=torch.float64)
    with pytest.raises(TypeError, match=r"LinearFA\(in_features=4.*share one dtype"):
        layer(torch.ones(2, 4))
    with pytest.raises(TypeError, match="bias must be a torch.Tensor or None, got list"):
        fa_linear(torch.ones(2, 4), torch.ones(3, 4), torch.ones(3, 4), [0.0, 0.0, 0.0])


def test_second_derivative_raises_clearly():
    W = torch.randn(3, 4, requires_grad=True)
    x = torch.randn(2, 4, requires_grad=True)
    y = fa_linear(x, W, torch.randn(3, 4)).pow(2).sum()
    (gx,) = torch.autograd.grad(y, x, create_graph=True)  # first order is fine ...
    with pytest.raises(RuntimeError, match="differentiate twice"):  # ... a second one is refused
        gx.sum().backward()


def test_brsf_draws_only_when_a_backward_can_follow():
    layer = LinearFA(4, 3, mode="brsf", generator=torch.Generator().manual_seed(0))
    state = layer.brsf_state.clone()
    assert state.dtype == torch.int64 and state[1] == 0
    with torch.no_grad():
        y1 = layer(torch.ones(2, 4))
    assert torch.equal(layer.brsf_state, state)  # inference leaves the stream alone
    x = torch.ones(2, 4, requires_grad=True)
    y2 = layer(x)
    assert layer.brsf_state[1] == 1 and layer.brsf_state[0] == state[0]
    torch.testing.assert_close(y1, y2.detach())
    y2.sum().backward()
    # the same R again, independently: a generator seeded from SeedSequence([seed, step])
    seed = int(np.random.SeedSequence([int(state[0]), 0]).generate_state(1, np.uint64)[0])
    r = torch.randn((3, 4), generator=torch.Generator().manual_seed(seed))
    B = r.abs() * (2 / 7) ** 0.5 * torch.sign(layer.weight.detach())
    torch.testing.assert_close(x.grad, torch.ones(2, 3) @ B)
    layer(x).sum().backward()  # the next step draws a different R
    assert layer.brsf_state[1] == 2
    assert not torch.allclose(x.grad, 2 * torch.ones(2, 3) @ B)


def test_brsf_state_only_in_brsf_mode_and_follows_the_mode():
    layer = LinearFA(4, 3, generator=torch.Generator().manual_seed(1))
    assert layer.brsf_state is None and set(layer.state_dict()) == {"weight", "bias", "feedback"}
    layer.mode = "brsf"
    assert set(layer.state_dict()) == {"weight", "bias", "feedback", "brsf_state"}
    layer.mode = "fa"  # leaving brsf: the state goes, and a plain layer loads the state_dict
    assert layer.brsf_state is None
    LinearFA(4, 3).load_state_dict(layer.state_dict())
    a = LinearFA(4, 3, mode="brsf", generator=torch.Generator().manual_seed(2))
    b = LinearFA(4, 3, mode="brsf", generator=torch.Generator().manual_seed(2))
    assert torch.equal(a.brsf_state, b.brsf_state)  # the generator fixes the stream


def test_convert_shared_frozen_lazy_and_attention():
    shared = nn.Linear(4, 4)
    frozen = nn.Linear(4, 2)
    frozen.weight.requires_grad_(False)
    model = nn.Sequential(shared, nn.ReLU(), shared, frozen)
    assert convert(model) == 2
    assert model[0] is model[2] and isinstance(model[0], LinearFA)
    assert not model[3].weight.requires_grad and model[3].bias.requires_grad
    with pytest.raises(ValueError, match="not initialised yet"):
        convert(nn.Sequential(nn.LazyLinear(3)))
    attn = nn.Sequential(nn.MultiheadAttention(8, 2))
    with pytest.warns(UserWarning, match="MultiheadAttention.out_proj"):
        assert convert(attn) == 0
    assert type(attn[0].out_proj) is not LinearFA


def test_mlp_gradients_checks_the_target_and_takes_tensors():
    layers = init_mlp([5, 4, 2], seed=0)
    model = mlp_from_params(layers)
    x = np.ones((8, 5), np.float32)
    with pytest.raises(ValueError, match=r"target y has shape \(8, 1\); the network gives \(8, 2\)"):
        mlp_gradients(model, x, np.ones((8, 1), np.float32))
    with pytest.raises(ValueError, match=r"target y has shape \(8,\)"):
        mlp_gradients(model, x, np.ones(8, np.float32))
    a = mlp_gradients(model, x, np.zeros((8, 2), np.float32))
    b = mlp_gradients(model, torch.ones(8, 5), torch.zeros(8, 2))
    np.testing.assert_array_equal(a.layers[0]["weight"], b.layers[0]["weight"])


def test_non_tensor_input_is_a_type_error():
    with pytest.raises(TypeError, match=r"must be a torch.Tensor, got ndarray .*torch.from_numpy"):
        LinearFA(4, 3)(np.zeros((2, 4)))


def test_complex_weights_are_refused_not_silently_wrong():
    """bp on complex weights would multiply by W, not conj(W): not backprop. Refused by name."""
    layer = LinearFA(3, 2, dtype=torch.complex64, mode="bp")
    with pytest.raises(TypeError, match=r"LinearFA\(in_features=3.*x must be a floating-point tensor, got "
                       r"dtype torch.complex64"):
        layer(torch.ones(2, 3, dtype=torch.complex64))


def test_convert_leaves_overridden_forwards_refuses_parametrizations_and_names_unconverted_layers():
    class Scaled(nn.Linear):
        def forward(self, x):
            return 2 * super().forward(x)

    model = nn.Sequential(Scaled(3, 3), nn.Linear(3, 2))
    x = torch.randn(4, 3)
    before = model(x)
    with pytest.warns(UserWarning, match=r"left 0 \(Scaled\) as it is: it overrides Linear.forward"):
        assert convert(model) == 1
    assert type(model[0]) is Scaled and isinstance(model[1], LinearFA)
    torch.testing.assert_close(model(x), before)
    normed = nn.Sequential(nn.utils.parametrizations.weight_norm(nn.Linear(3, 2)))
    with pytest.raises(TypeError, match=r"convert: 0 \(ParametrizedLinear\) has parametrizations"):
        convert(normed)
    rnn = nn.Sequential(nn.Linear(3, 3), nn.Sequential(nn.Conv1d(3, 3, 1)))
    with pytest.warns(UserWarning, match=r"convert: 1.0 \(Conv1d\) has no FA counterpart"):
        assert convert(rnn) == 1
