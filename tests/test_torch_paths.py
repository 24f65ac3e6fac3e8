"""FA on every path PyTorch users train on: converted models, autocast, torch.func, compile, DDP.

Each test holds the path's gradients against an independent computation (the numpy oracle, a loop
of single-sample gradients, the eager model, a single-process run) and checks that they are FA's,
not backprop's.
"""

import numpy as np
import pytest
import torch
from torch import nn
from torch_helpers import assert_compiled_equals_eager_and_differs_from_bp

from pyfa import reference as R
from pyfa.crosscheck import _rel_dist
from pyfa.network import init_mlp
from pyfa.torch import MODES, LinearFA, convert, fa_layers, fa_linear, mlp_from_params
from pyfa.torch.network import ACTIVATION_MODULES

# ---------------------------------------------------------------- convert adopts the Parameters


def _plain_mlp(layers, dtype=torch.float64) -> nn.Sequential:
    """nn.Linear + activation modules holding `layers`' weights and biases."""
    mods = []
    for p in layers:
        lin = nn.Linear(p.in_features, p.out_features, dtype=dtype)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(p.weight))
            lin.bias.copy_(torch.from_numpy(p.bias))
        mods.append(lin)
        if p.activation != "identity":
            mods.append(ACTIVATION_MODULES[p.activation]())
    return nn.Sequential(*mods)


def test_optimiser_built_before_convert_trains_the_converted_model_with_fa():
    layers = init_mlp([5, 7, 3], activation="tanh", seed=0, dtype=np.float64)
    model = _plain_mlp(layers)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)  # built BEFORE convert
    ids = [id(p) for p in model.parameters()]
    assert convert(model, "fa") == 2
    assert [id(p) for p in model.parameters()] == ids
    with torch.no_grad():
        for m, p in zip(fa_layers(model), layers, strict=True):
            m.feedback.copy_(torch.from_numpy(p.feedback))
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(6, 5)), rng.normal(size=(6, 3))
    nn.functional.mse_loss(model(torch.from_numpy(x)), torch.from_numpy(y)).backward()
    opt.step()
    want = R.chain_gradients(layers, x, y, "fa")
    for m, p, g in zip(fa_layers(model), layers, want.layers, strict=True):
        np.testing.assert_allclose(m.weight.detach().numpy(), p.weight - 0.5 * g["weight"], rtol=1e-12)
        np.testing.assert_allclose(m.bias.detach().numpy(), p.bias - 0.5 * g["bias"], rtol=1e-12)


def test_convert_keeps_tied_weights_names_requires_grad_and_state_dict_keys():
    class TinyLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(11, 8)
            self.mix = nn.Linear(8, 8)
            self.head = nn.Linear(8, 11, bias=False)
            self.head.weight = self.embed.weight  # tied, as in most language models

        def forward(self, tokens):
            return self.head(torch.tanh(self.mix(self.embed(tokens))))

    torch.manual_seed(0)
    lm = TinyLM()
    lm.mix.bias.requires_grad_(False)
    names = [n for n, _ in lm.named_parameters()]
    count = sum(p.numel() for p in lm.parameters())
    keys = set(lm.state_dict())
    assert convert(lm) == 2
    assert lm.head.weight is lm.embed.weight and isinstance(lm.head, LinearFA)
    assert [n for n, _ in lm.named_parameters()] == names
    assert sum(p.numel() for p in lm.parameters()) == count
    assert set(lm.state_dict()) == keys | {"mix.feedback", "head.feedback"}
    assert not lm.mix.bias.requires_grad and lm.mix.weight.requires_grad
    lm(torch.tensor([[1, 2, 3]])).sum().backward()
    assert lm.embed.weight.grad is not None and lm.mix.bias.grad is None


def test_convert_shared_layer_stays_shared_and_brsf_state_is_a_buffer():
    shared = nn.Linear(4, 4)
    model = nn.Sequential(shared, nn.Tanh(), shared)
    w = shared.weight
    convert(model, "brsf", generator=torch.Generator().manual_seed(0))
    assert model[0] is model[2] and model[0].weight is w
    names = ("weight", "bias", "feedback", "brsf_state")
    assert set(model.state_dict()) == {f"{i}.{n}" for i in (0, 2) for n in names}  # two names, one layer


# ---------------------------------------------------------------- autocast


def _mlp_and_data(sizes=(12, 16, 16, 4), seed=0, dtype=np.float32):
    layers = init_mlp(sizes, activation="relu", seed=seed, dtype=dtype)
    rng = np.random.default_rng(seed + 1)
    for p in layers:
        p.bias[:] = rng.uniform(-0.1, 0.1, size=p.bias.shape)
    x = rng.normal(size=(32, sizes[0])).astype(dtype)
    y = rng.normal(size=(32, sizes[-1])).astype(dtype)
    return layers, x, y


def _grads(model):
    return [m.weight.grad for m in fa_layers(model)]


def test_autocast_cpu_bf16_runs_like_linear_and_keeps_fa():
    layers, x, y = _mlp_and_data()
    converted = _plain_mlp(layers, torch.float32)
    plain = _plain_mlp(layers, torch.float32)
    convert(converted)
    with torch.no_grad():
        for m, p in zip(fa_layers(converted), layers, strict=True):
            m.feedback.copy_(torch.from_numpy(p.feedback))
    xt = torch.from_numpy(x).requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = converted(xt)  # raised before: bf16 activation against fp32 weights
        ref = plain(torch.from_numpy(x))
    assert out.dtype == ref.dtype == torch.bfloat16
    torch.testing.assert_close(out, ref, rtol=0, atol=0)  # the same bf16 forward as nn.Linear
    nn.functional.mse_loss(out.float(), torch.from_numpy(y)).backward()
    assert all(g.dtype == torch.float32 for g in _grads(converted)) and xt.grad.dtype == torch.float32
    fa = R.chain_gradients(layers, x, y, "fa")
    bp = R.chain_gradients(layers, x, y, "bp")
    for g, want in zip(_grads(converted), fa.layers, strict=True):  # bf16 tolerance
        np.testing.assert_allclose(g.numpy(), want["weight"], atol=5e-2 * np.abs(want["weight"]).max())
    got = [g.numpy() for g in _grads(converted)][:-1]  # below the top layer, where the rules differ
    d_fa = [_rel_dist(a, b["weight"]) for a, b in zip(got, fa.layers[:-1], strict=True)]
    d_bp = [_rel_dist(a, b["weight"]) for a, b in zip(got, bp.layers[:-1], strict=True)]
    assert _rel_dist(xt.grad.numpy(), fa.input) < 0.05 < _rel_dist(xt.grad.numpy(), bp.input)
    assert max(d_fa) < 0.05 and min(d_bp) > 10 * max(d_fa)


def test_autocast_refuses_dtypes_it_would_not_produce_and_mixed_dtypes_outside_it():
    layer = LinearFA(4, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert layer(torch.ones(2, 4, dtype=torch.bfloat16)).dtype == torch.bfloat16
        with pytest.raises(TypeError, match="float16.*autocast to torch.bfloat16"):
            layer(torch.ones(2, 4, dtype=torch.float16))
    with pytest.raises(TypeError, match=r"LinearFA\(in_features=4.*x torch.bfloat16, weight torch.float32"):
        layer(torch.ones(2, 4, dtype=torch.bfloat16))
    with pytest.raises(TypeError, match="share one dtype"):
        fa_linear(torch.ones(2, 4, dtype=torch.float64), layer.weight, layer.feedback)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_autocast_cuda_fp16_with_grad_scaler_keeps_fa():
    layers, x, y = _mlp_and_data()
    model = mlp_from_params(layers, device="cuda")
    scaler = torch.amp.GradScaler("cuda")
    xt = torch.tensor(x, device="cuda", requires_grad=True)
    with torch.autocast("cuda", dtype=torch.float16):
        out = model(xt)
    assert out.dtype == torch.float16
    scaler.scale(nn.functional.mse_loss(out.float(), torch.tensor(y, device="cuda"))).backward()
    inv = 1 / scaler.get_scale()
    fa = R.chain_gradients(layers, x, y, "fa")
    bp = R.chain_gradients(layers, x, y, "bp")
    gx = (xt.grad * inv).cpu().numpy()
    assert _rel_dist(gx, fa.input) < 1e-2 < 0.5 < _rel_dist(gx, bp.input)
    for m, want in zip(fa_layers(model), fa.layers, strict=True):
        assert m.weight.grad.dtype == torch.float32
        assert _rel_dist((m.weight.grad * inv).cpu().numpy(), want["weight"]) < 1e-2


# ---------------------------------------------------------------- torch.func


def test_vmap_grad_per_sample_gradients_equal_a_loop_of_single_sample_fa_gradients():
    """Equal to float64 rounding: vmap runs batched BLAS kernels where the loop runs single-row
    ones, so even nn.Linear's per-sample gradients differ from its loop's by about 1e-15."""
    from torch.func import functional_call, grad, vmap

    layers, x, y = _mlp_and_data(sizes=(6, 8, 5, 3), dtype=np.float64)
    model = mlp_from_params(layers, "fa")
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = dict(model.named_buffers())

    def loss(p, xi, yi):
        return ((functional_call(model, (p, buffers), (xi.unsqueeze(0),)).squeeze(0) - yi) ** 2).sum()

    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    per_sample = vmap(grad(loss), in_dims=(None, 0, 0))(params, xt, yt)
    for i in range(len(x)):
        model.zero_grad()
        ((model(xt[i : i + 1]).squeeze(0) - yt[i]) ** 2).sum().backward()
        for name, p in model.named_parameters():
            torch.testing.assert_close(per_sample[name][i], p.grad, rtol=1e-13, atol=1e-15)
    # ... and they are FA's: summed, they give the oracle's batch gradient of Σ (ŷ - y)²
    want = R.chain_gradients(layers, x, y, "fa")
    n = y.size  # the oracle's loss is the mean
    for i, g in enumerate(want.layers):
        np.testing.assert_allclose(per_sample[f"{2 * i}.weight"].sum(0).numpy() / n, g["weight"],
                                   rtol=1e-10, atol=1e-14)


def test_func_grad_of_the_batch_loss_is_the_oracle_fa_gradient_not_bp():
    from torch.func import functional_call, grad

    layers, x, y = _mlp_and_data(sizes=(6, 8, 5, 3), dtype=np.float64)
    model = mlp_from_params(layers, "fa")
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = dict(model.named_buffers())

    def loss(p):
        return nn.functional.mse_loss(functional_call(model, (p, buffers), (torch.from_numpy(x),)),
                                      torch.from_numpy(y))

    g = grad(loss)(params)
    fa = R.chain_gradients(layers, x, y, "fa")
    bp = R.chain_gradients(layers, x, y, "bp")
    np.testing.assert_allclose(g["0.weight"].numpy(), fa.layers[0]["weight"], rtol=1e-10)
    assert not np.allclose(g["0.weight"].numpy(), bp.layers[0]["weight"], rtol=1e-3)


# ---------------------------------------------------------------- torch.compile


def test_compile_fullgraph_every_mode_equals_eager_and_differs_from_bp():
    """One compiled network with a layer in every mode: no graph break (fullgraph=True raises on
    one), the same gradients as the same network run eagerly (brsf's draws included, from the same
    state), and not backprop's."""
    torch._dynamo.reset()
    widths = [6, 7, 8, 7, 6, 5, 4, 3]
    modes = [*MODES, "fa"][: len(widths) - 1]
    assert set(MODES) <= set(modes) and "kp" in modes

    def build():
        torch.manual_seed(0)
        mods = []
        for i, m in enumerate(modes):
            mods.append(LinearFA(widths[i], widths[i + 1], mode=m, dtype=torch.float64,
                                 generator=torch.Generator().manual_seed(i)))
            mods.append(nn.Tanh())
        return nn.Sequential(*mods[:-1])

    x = torch.randn(9, widths[0], dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    y = torch.randn(9, widths[-1], dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    assert_compiled_equals_eager_and_differs_from_bp(build, x, y, fa_layers)


# ---------------------------------------------------------------- DDP


@pytest.mark.parametrize("mode", ["fa", "brsf"])
def test_ddp_two_processes_equal_a_single_process_run_on_the_full_batch(mode):
    from pyfa.torch.ddp import _rank_model, ddp_run

    layers, x, y = _mlp_and_data(sizes=(6, 8, 5, 3), dtype=np.float64)
    x, y = x[:10], y[:10]
    steps, lr = 3, 0.2
    # each rank converts with its own generator: different feedback, which DDP must unify
    out = ddp_run(layers, x, y, mode, steps=steps, lr=lr, convert_seeds=(1, 2))
    single = _rank_model(layers, mode, 1)  # rank 0's conversion, on one process
    other = _rank_model(layers, mode, 2)
    opt = torch.optim.SGD(single.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.mse_loss(single(torch.from_numpy(x)), torch.from_numpy(y)).backward()
        opt.step()
    r0, r1 = out["ranks"]
    for i, m in enumerate(fa_layers(single)):
        np.testing.assert_array_equal(r0["feedback"][i], r1["feedback"][i])
        np.testing.assert_array_equal(r0["feedback"][i], m.feedback.numpy())
        assert not np.array_equal(r0["feedback"][i], fa_layers(other)[i].feedback.numpy())
        for r in (r0, r1):
            np.testing.assert_allclose(r["weight"][i], m.weight.detach().numpy(), rtol=1e-12, atol=1e-15)
            np.testing.assert_allclose(r["bias"][i], m.bias.detach().numpy(), rtol=1e-12, atol=1e-15)


# ---------------------------------------------------------------- the cross-check proves each path


def test_crosscheck_path_rows_pass_with_fa_and_say_what_cannot_run():
    from pyfa.crosscheck import VERDICT_FA, crosscheck, format_report

    r = crosscheck(["torch"], sizes=(6, 7, 5, 3), batch=8,
                   paths=["eager", "autocast", "autocast-cuda", "func"])
    rows = {b.path: b for b in r.paths}
    assert r.ok and [b.path for b in r.paths] == ["eager", "autocast", "autocast-cuda", "func"]
    for name in ("eager", "autocast", "func"):
        assert rows[name].verdict == VERDICT_FA and rows[name].agrees, name
    assert rows["autocast"].compute_dtype == "bfloat16"
    assert rows["autocast"].worst.max_rel > 1e-4  # really computed in bf16 ...
    text = format_report(r)
    if torch.cuda.is_available():
        assert rows["autocast-cuda"].verdict == VERDICT_FA
    else:
        assert rows["autocast-cuda"].unavailable
        assert [ln for ln in text.splitlines() if "autocast-cuda" in ln] == [
            "  autocast-cuda       unavailable: no CUDA device here"]


def test_crosscheck_path_row_catches_a_path_that_computes_backprop(monkeypatch):
    from pyfa.crosscheck import VERDICT_BP, crosscheck, format_report
    from pyfa.torch import paths

    real = paths.path_gradients
    monkeypatch.setattr(paths, "path_gradients",
                        lambda p, layers, x, y, mode, **kw: real(p, layers, x, y, "bp", **kw))
    r = crosscheck(["torch"], sizes=(6, 7, 5, 3), batch=8, paths=["func"])
    assert not r.ok and r.paths[0].verdict == VERDICT_BP
    assert "SILENT FALLBACK" in format_report(r) and "result: FAIL: torch/func" in format_report(r)


def test_crosscheck_cli_paths_option(capsys):
    from pyfa import cli

    assert cli.main(["crosscheck", "--backends", "torch", "--paths", "eager,func"]) == 0
    out = capsys.readouterr().out
    assert "  eager " in out and "  func " in out and "  ddp " not in out
    assert cli.main(["crosscheck", "--backends", "torch", "--paths", "eager,warp"]) == 2
    assert "unknown path(s) ['warp']" in capsys.readouterr().err
    assert cli.main(["crosscheck", "--backends", "torch", "--paths", "eager,,func"]) == 2
    assert "without empty items" in capsys.readouterr().err
    assert cli.main(["crosscheck", "--backends", "torch", "--paths", "none"]) == 0
    assert "execution paths" not in capsys.readouterr().out


# ---------------------------------------------------------------- saving whole modules


def test_torch_load_reads_a_whole_saved_model_with_weights_only(tmp_path):
    model = mlp_from_params(init_mlp([4, 5, 3], activation="relu", seed=0), "brsf",
                            generator=torch.Generator().manual_seed(0))
    model(torch.ones(2, 4, requires_grad=True)).sum().backward()  # brsf_state advances
    torch.save(model, tmp_path / "model.pt")
    back = torch.load(tmp_path / "model.pt")  # weights_only=True, torch's default
    assert [type(m).__name__ for m in back] == ["LinearFA", "ReLU", "LinearFA"]
    for a, b in zip(fa_layers(model), fa_layers(back), strict=True):
        assert b.mode == "brsf" and b.generator is None
        for k, v in a.state_dict().items():
            assert torch.equal(v, b.state_dict()[k]), k
    x = torch.randn(3, 4, requires_grad=True)
    torch.testing.assert_close(model(x), back(x))


def test_torch_load_reads_saved_dfa_and_cnn_models_with_weights_only(tmp_path):
    from pyfa import reference as R
    from pyfa.torch.network import cnn_from_params

    dfa = mlp_from_params(init_mlp([4, 5, 3], seed=0, direct_feedback=True), "dfa")
    cnn = cnn_from_params(R.init_small_cnn(0, pool="max"), "fa")
    for i, model in enumerate((dfa, cnn)):
        torch.save(model, tmp_path / f"{i}.pt")
        back = torch.load(tmp_path / f"{i}.pt")
        assert type(back) is type(model)
        for k, v in model.state_dict().items():
            assert torch.equal(v, back.state_dict()[k]), k


def test_the_crosscheck_knows_every_torch_path_by_name():
    from pyfa.crosscheck import TORCH_PATHS
    from pyfa.torch.paths import COMPUTE_DTYPE, PATHS

    assert TORCH_PATHS == PATHS and set(COMPUTE_DTYPE) <= set(PATHS)
