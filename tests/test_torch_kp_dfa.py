"""Kolen-Pollack (mode kp) and Direct Feedback Alignment (DFASequential) in PyTorch, against the oracle."""

import numpy as np
import pytest
import torch
from torch import nn

from pyfa import reference as R
from pyfa.crosscheck import _rel_dist
from pyfa.network import init_mlp
from pyfa.torch import DFASequential, LinearFA, fa_layers, mlp_from_params, mlp_gradients
from pyfa.torch.network import params_from_mlp


def _data(sizes, seed=0, *, classes=True):
    rng = np.random.default_rng(seed + 1)
    x = rng.normal(size=(9, sizes[0]))
    if classes:
        y = R.one_hot(rng.integers(0, sizes[-1], 9), sizes[-1], np.float64)
    else:
        y = rng.normal(size=(9, sizes[-1]))
    return x, y


def _assert_same(got, want, rtol=1e-10):
    assert len(got.layers) == len(want.layers)
    for i, (g, w) in enumerate(zip(got.layers, want.layers, strict=True)):
        assert sorted(g) == sorted(w), i
        for k in w:
            np.testing.assert_allclose(g[k], w[k], rtol=rtol, atol=1e-14, err_msg=f"layer {i} {k}")
    np.testing.assert_allclose(got.input, want.input, rtol=rtol, atol=1e-14)


# ---------------------------------------------------------------- Kolen-Pollack


@pytest.mark.parametrize("loss", ["mse", "ce"])
def test_kp_gradients_equal_the_oracle_and_feedback_gets_the_weight_gradient(loss):
    layers = init_mlp((5, 7, 6, 3), activation="tanh", seed=0, dtype=np.float64)
    x, y = _data((5, 7, 6, 3))
    model = mlp_from_params(layers, "kp")
    got = mlp_gradients(model, x, y, loss=loss)
    _assert_same(got, R.chain_gradients(layers, x, y, "kp", loss=loss))
    for g in got.layers:
        np.testing.assert_array_equal(g["feedback"], g["weight"])
    fa = R.chain_gradients(layers, x, y, "fa", loss=loss)
    np.testing.assert_allclose(got.input, fa.input, rtol=1e-10)  # the signal is FA's


def test_kp_feedback_is_a_parameter_only_in_kp_and_keeps_its_state_dict_key():
    layer = LinearFA(4, 3, generator=torch.Generator().manual_seed(0))
    fb = layer.feedback.clone()
    assert [n for n, _ in layer.named_parameters()] == ["weight", "bias"]
    layer.mode = "kp"
    assert isinstance(layer.feedback, nn.Parameter) and layer.feedback.requires_grad
    assert [n for n, _ in layer.named_parameters()] == ["weight", "bias", "feedback"]
    assert set(layer.state_dict()) == {"weight", "bias", "feedback"}
    assert torch.equal(layer.feedback, fb)
    layer.mode = "fa"
    assert not isinstance(layer.feedback, nn.Parameter) and "feedback" in dict(layer.named_buffers())
    assert torch.equal(layer.feedback, fb)
    kp = LinearFA.from_linear(nn.Linear(4, 3), "kp")
    assert isinstance(kp.feedback, nn.Parameter) and kp.feedback.device.type == "cpu"


def test_kp_sgd_with_weight_decay_equals_the_oracle_and_contracts_w_minus_b():
    """λ is the optimiser's weight decay on weight and feedback (biases undecayed, as the oracle)."""
    layers = init_mlp((5, 7, 3), activation="tanh", seed=2, dtype=np.float64)
    x, y = _data((5, 7, 3), classes=False)
    model = mlp_from_params(layers, "kp")
    lr, lam = 0.1, 0.5
    decayed = [p for n, p in model.named_parameters() if not n.endswith("bias")]
    biases = [p for n, p in model.named_parameters() if n.endswith("bias")]
    opt = torch.optim.SGD([{"params": decayed, "weight_decay": lam}, {"params": biases}], lr=lr)
    diff0 = [(m.weight - m.feedback).detach().clone() for m in fa_layers(model)]
    want = layers
    for _ in range(3):
        want = R.sgd_step(want, R.chain_gradients(want, x, y, "kp"), lr, weight_decay=lam)
        opt.zero_grad()
        nn.functional.mse_loss(model(torch.from_numpy(x)), torch.from_numpy(y)).backward()
        opt.step()
    for m, w, d0 in zip(fa_layers(model), want, diff0, strict=True):
        np.testing.assert_allclose(m.weight.detach().numpy(), w.weight, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(m.feedback.detach().numpy(), w.feedback, rtol=1e-12, atol=1e-15)
        torch.testing.assert_close(m.weight - m.feedback, d0 * (1 - lr * lam) ** 3, rtol=1e-12, atol=1e-15)


def test_kp_adamw_decoupled_decay_contracts_w_minus_b_too():
    """Identical gradients give W and B identical Adam moments, so only the decay separates them."""
    layers = init_mlp((5, 7, 3), activation="tanh", seed=3, dtype=np.float64)
    x, y = _data((5, 7, 3), classes=False)
    model = mlp_from_params(layers, "kp")
    lr, lam = 1e-2, 0.1
    opt = torch.optim.AdamW([p for n, p in model.named_parameters() if not n.endswith("bias")],
                            lr=lr, weight_decay=lam)
    diff0 = [(m.weight - m.feedback).detach().clone() for m in fa_layers(model)]
    for _ in range(4):
        opt.zero_grad()
        nn.functional.mse_loss(model(torch.from_numpy(x)), torch.from_numpy(y)).backward()
        opt.step()
    for m, d0 in zip(fa_layers(model), diff0, strict=True):
        torch.testing.assert_close(m.weight - m.feedback, d0 * (1 - lr * lam) ** 4, rtol=1e-12, atol=1e-15)


def test_kp_under_autocast_gives_fp32_feedback_gradients_equal_to_the_weights():
    model = mlp_from_params(init_mlp((6, 8, 3), seed=0), "kp")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.randn(5, 6))
    out.float().sum().backward()
    for m in fa_layers(model):
        assert m.feedback.grad.dtype == torch.float32
        torch.testing.assert_close(m.feedback.grad, m.weight.grad, rtol=0, atol=0)
        assert m.feedback.grad.data_ptr() != m.weight.grad.data_ptr()  # two tensors, not one


# ---------------------------------------------------------------- DFA


@pytest.mark.parametrize("sizes", [(5, 7, 6, 4, 3), (5, 6, 3), (5, 3)])
@pytest.mark.parametrize("loss", ["mse", "ce"])
def test_dfa_gradients_equal_the_oracle(sizes, loss):
    layers = init_mlp(sizes, activation="tanh", seed=0, dtype=np.float64, direct_feedback=True)
    x, y = _data(sizes)
    model = mlp_from_params(layers, "dfa")
    assert isinstance(model, DFASequential)
    got = mlp_gradients(model, x, y, loss=loss)
    assert got.meta["mode"] == "dfa"
    _assert_same(got, R.dfa_gradients(layers, x, y, loss=loss))


def test_dfa_differs_from_fa_and_bp_below_the_top_and_top_is_true():
    sizes = (5, 7, 6, 4, 3)
    layers = init_mlp(sizes, activation="tanh", seed=1, dtype=np.float64, direct_feedback=True)
    x, y = _data(sizes)
    got = mlp_gradients(mlp_from_params(layers, "dfa"), x, y)
    fa, bp = (R.chain_gradients(layers, x, y, m) for m in ("fa", "bp"))
    np.testing.assert_allclose(got.layers[-1]["weight"], bp.layers[-1]["weight"], rtol=1e-12)
    for ref in (fa, bp):
        assert _rel_dist(got.layers[0]["weight"], ref.layers[0]["weight"]) > 0.05


def test_two_layer_dfa_is_fa_when_b0_is_the_top_feedback():
    layers = init_mlp((5, 6, 3), activation="relu", seed=4, dtype=np.float64, direct_feedback=True)
    layers[0].direct_feedback = layers[1].feedback.copy()
    x, y = _data((5, 6, 3))
    _assert_same(mlp_gradients(mlp_from_params(layers, "dfa"), x, y), R.chain_gradients(layers, x, y, "fa"))


def test_dfa_from_sequential_adopts_parameters_and_round_trips():
    torch.manual_seed(0)
    seq = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 6), nn.ReLU(), nn.Linear(6, 3))
    opt = torch.optim.SGD(seq.parameters(), lr=0.1)
    ids = [id(p) for p in seq.parameters()]
    x = torch.randn(4, 5)
    before = seq(x)
    dfa = DFASequential.from_sequential(seq, generator=torch.Generator().manual_seed(1))
    assert [id(p) for p in dfa.parameters()] == ids and isinstance(dfa[0], LinearFA)
    torch.testing.assert_close(dfa(x), before, rtol=0, atol=0)
    assert dfa.direct_feedback.shape == (3, 13) and not dfa.direct_feedback.requires_grad
    assert "direct_feedback" in dfa.state_dict() and "direct_feedback" not in dict(dfa.named_parameters())
    w0 = dfa[0].weight.detach().clone()
    dfa(x).sum().backward()
    opt.step()
    assert not torch.equal(dfa[0].weight, w0) and dfa.direct_feedback.grad is None
    back = params_from_mlp(dfa)
    np.testing.assert_array_equal(back[1].direct_feedback, dfa.direct_feedback_of(1).numpy())
    assert back[2].direct_feedback is None
    a = 6 ** 0.5 / (3 + 7) ** 0.5
    assert dfa.direct_feedback_of(0).abs().max() <= a
    assert isinstance(dfa[:2], nn.Sequential) and not isinstance(dfa[:2], DFASequential)


def test_dfa_uses_no_hooks_or_global_state():
    """Two DFA networks, forward passes interleaved and backward passes in the other order: each
    still gets its own oracle gradients (a shared stash of "the" output error would mix them)."""
    nets, data = [], []
    for seed in (0, 1):
        layers = init_mlp((5, 7, 6, 3), activation="tanh", seed=seed, dtype=np.float64,
                          direct_feedback=True)
        nets.append((layers, mlp_from_params(layers, "dfa")))
        data.append(_data((5, 7, 6, 3), seed))
    losses = [nn.functional.mse_loss(m(torch.from_numpy(x)), torch.from_numpy(y))
              for (_, m), (x, y) in zip(nets, data, strict=True)]
    for v in reversed(losses):
        v.backward()
    for (layers, m), (x, y) in zip(nets, data, strict=True):
        want = R.dfa_gradients(layers, x, y)
        for lay, w in zip(fa_layers(m), want.layers, strict=True):
            np.testing.assert_allclose(lay.weight.grad.numpy(), w["weight"], rtol=1e-10)
        assert not any(mod._backward_hooks or mod._backward_pre_hooks for mod in m.modules())


def test_dfa_bad_construction_is_refused_clearly():
    with pytest.raises(ValueError, match="needs a linear or conv layer"):
        DFASequential(nn.Tanh(), nn.Flatten())
    with pytest.raises(ValueError, match=r"module 1 \(BatchNorm1d\) has parameters"):
        DFASequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    with pytest.raises(ValueError, match="gives 4 features but"):
        DFASequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(5, 2))
    with pytest.raises(ValueError, match=r"direct_feedback must have shape \(2, 4\)"):
        DFASequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2), direct_feedback=torch.zeros(4, 2))
    with pytest.raises(ValueError, match="network-level"):
        LinearFA(3, 2, mode="dfa")
    layers = init_mlp((5, 6, 3), seed=0)
    with pytest.raises(ValueError, match="direct_feedback=True"):
        mlp_from_params(layers, "dfa")


def test_dfa_autocast_bf16_and_torch_func_per_sample():
    from torch.func import functional_call, grad, vmap

    sizes = (6, 8, 7, 3)
    layers = init_mlp(sizes, activation="tanh", seed=0, direct_feedback=True)
    x, y = (a.astype(np.float32) for a in _data(sizes))
    model = mlp_from_params(layers, "dfa")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.from_numpy(x))
    assert out.dtype == torch.bfloat16
    nn.functional.mse_loss(out.float(), torch.from_numpy(y)).backward()
    want = R.dfa_gradients(layers, x, y)
    for m, w in zip(fa_layers(model), want.layers, strict=True):
        assert m.weight.grad.dtype == torch.float32
        assert _rel_dist(m.weight.grad.numpy(), w["weight"]) < 0.05

    model64 = mlp_from_params(init_mlp(sizes, activation="tanh", seed=0, dtype=np.float64,
                                       direct_feedback=True), "dfa")
    params = {k: v.detach() for k, v in model64.named_parameters()}
    buffers = dict(model64.named_buffers())

    def loss(p, xi, yi):
        return ((functional_call(model64, (p, buffers), (xi[None],))[0] - yi) ** 2).sum()

    x64, y64 = (torch.from_numpy(a) for a in _data(sizes))
    per_sample = vmap(grad(loss), in_dims=(None, 0, 0))(params, x64, y64)
    layers64 = init_mlp(sizes, activation="tanh", seed=0, dtype=np.float64, direct_feedback=True)
    want = R.dfa_gradients(layers64, x64.numpy(), y64.numpy())  # of mean((ŷ - y)²) = Σ / y.size
    for i, name in enumerate(("0", "2", "4")):
        np.testing.assert_allclose(per_sample[f"{name}.weight"].sum(0).numpy() / y64.numel(),
                                   want.layers[i]["weight"], rtol=1e-10, atol=1e-14)
    model64.zero_grad()
    ((model64(x64) - y64) ** 2).sum().backward()
    for name, p in model64.named_parameters():
        torch.testing.assert_close(per_sample[name].sum(0), p.grad, rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match=r"input has shape \(6,\); DFA needs a batch of samples"):
        model64(x64[0])


def test_dfa_compiles_fullgraph_and_equals_eager():
    torch._dynamo.reset()
    sizes = (6, 8, 7, 3)
    layers = init_mlp(sizes, activation="relu", seed=0, dtype=np.float64, direct_feedback=True)
    eager, compiled_model = mlp_from_params(layers, "dfa"), mlp_from_params(layers, "dfa")
    compiled = torch.compile(compiled_model, fullgraph=True)
    x, y = (torch.from_numpy(a) for a in _data(sizes))
    for m in (eager, compiled):
        nn.functional.mse_loss(m(x), y).backward()
    for a, b in zip(fa_layers(eager), fa_layers(compiled_model), strict=True):
        torch.testing.assert_close(b.weight.grad, a.weight.grad, rtol=1e-10, atol=1e-13)
