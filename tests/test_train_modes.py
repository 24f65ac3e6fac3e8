"""`pyfa train` with the losses, modes and models of issues 10 and 11: cross-entropy, Kolen-Pollack
(with its weight decay), DFA, LeNet-5, and the Julia runner's refusals. Each checked against an
independent computation: the numpy oracle, or KP's contraction law in closed form."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import pyfa.cli
from pyfa import metrics
from pyfa import reference as R
from pyfa.data import from_arrays, load_dataset
from pyfa.network import init_mlp
from pyfa.torch import DFASequential, params_from_mlp
from pyfa.train import TRAIN_MODES, History, TrainConfig, train
from pyfa.train.config import check_config, weight_decay_of
from pyfa.train.models import initial_network, lenet_spec
from pyfa.train.runners import TorchRunner, julia_support_problem

SMALL = dict(hidden=(32,), epochs=2, batch_size=64, progress=False)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def tiny_images(n_train=96, n_test=32, side=28, seed=0):
    """A 10-class image dataset (flat rows + image_shape): a bright square per class."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n_train + n_test) % 10
    x = rng.uniform(0, 0.2, size=(len(labels), 1, side, side)).astype(np.float32)
    for i, c in enumerate(labels):
        r, q = divmod(int(c), 5)
        x[i, 0, 4 + 10 * r: 10 + 10 * r, 2 + 5 * q: 6 + 5 * q] += 0.8
    flat = x.reshape(len(labels), -1)
    return from_arrays(flat[:n_train], labels[:n_train], flat[n_train:], labels[n_train:],
                       name="squares", image_shape=(1, side, side))


# ------------------------------------------------------------------------------------ the modes


def test_every_mode_trains_from_the_same_weights_and_records_every_metric(digits):
    init = init_mlp([64, 32, 10], "relu", seed=4)
    for mode in TRAIN_MODES:
        h, model = train(mode=mode, dataset=digits, seed=4, **{**SMALL, "lr": 0.01})
        assert h.epochs == 2 and h.config["mode"] == mode and h.config["loss"] == "ce"
        for key in ("weight_feedback_angle", "update_angle", "feedback_norm_ratio"):
            rows = getattr(h, key)
            assert len(rows) == 2 and all(len(r) == 2 for r in rows) and len(h.initial[key]) == 2
        assert h.update_angle[-1][-1] == pytest.approx(0, abs=1e-3)  # the top layer: true gradient
        # epoch 0 is the untrained network: its angles are those of init_mlp(seed), in every mode
        start = init_mlp([64, 32, 10], "relu", seed=4, direct_feedback=mode == "dfa")
        assert h.initial["weight_feedback_angle"] == pytest.approx(
            metrics.weight_feedback_angles(start, mode), nan_ok=True)
        assert h.test_acc[-1] > 0.5, (mode, h.test_acc)
        trained = params_from_mlp(model)
        if mode == "kp":
            assert not np.array_equal(trained[0].feedback, init[0].feedback)  # B learns
        else:
            assert np.array_equal(trained[0].feedback, init[0].feedback)  # B stays fixed
    assert isinstance(model, DFASequential)  # the last mode: dfa


def test_dfa_gets_its_matrices_from_a_stream_of_its_own(digits):
    config = check_config(TrainConfig(mode="dfa", hidden=(32, 16), seed=7))
    dfa = initial_network(config, digits)
    fa = initial_network(check_config(TrainConfig(mode="fa", hidden=(32, 16), seed=7)), digits)
    for p, q in zip(dfa, fa, strict=True):
        assert np.array_equal(p.weight, q.weight) and np.array_equal(p.feedback, q.feedback)
    assert [p.direct_feedback.shape for p in dfa[:-1]] == [(10, 32), (10, 16)]
    assert dfa[-1].direct_feedback is None and all(p.direct_feedback is None for p in fa)


@pytest.mark.parametrize("mode", ["dfa", "kp", "usf"])
@pytest.mark.parametrize("loss", ["ce", "mse"])
def test_the_runners_gradients_are_the_oracles(digits, mode, loss):
    """One training batch through TorchRunner's model and loss against pyfa.reference."""
    config = check_config(TrainConfig(mode=mode, hidden=(16, 12), loss=loss, seed=2))
    network = initial_network(config, digits)
    runner = TorchRunner(config, network)
    x, y = digits.x_train[:50], digits.y_train[:50]
    xt = torch.from_numpy(x)
    out = runner.model(xt)
    value = runner._loss_value(loss, out, torch.from_numpy(y))
    value.backward()
    want = R.chain_gradients([p.astype(np.float64) for p in network], x.astype(np.float64),
                             y.astype(np.float64), mode, loss=loss)
    assert value.item() == pytest.approx(want.loss, rel=1e-5)
    linears = [m for m in runner.model if hasattr(m, "weight")]
    for m, g in zip(linears, want.layers, strict=True):
        np.testing.assert_allclose(m.weight.grad.numpy(), g["weight"], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(m.bias.grad.numpy(), g["bias"], rtol=1e-4, atol=1e-6)
        if mode == "kp":  # B's gradient is W's
            np.testing.assert_allclose(m.feedback.grad.numpy(), g["feedback"], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("optimizer, lr", [("sgd", 0.05), ("adam", 1e-3)])
def test_kp_contraction_law_holds_in_training(digits, optimizer, lr):
    """W − B after k steps is (1 − lr·λ)^k (W − B) at the start, in every layer: W and B receive the
    same gradient and the same (SGD or Adam) step, and the decoupled decay shrinks both."""
    lam = 0.5
    config = check_config(TrainConfig(mode="kp", hidden=(16,), optimizer=optimizer, lr=lr,
                                      weight_decay=lam, seed=1))
    network = initial_network(config, digits)
    runner = TorchRunner(config, network)
    assert type(runner.opt).__name__ == ("AdamW" if optimizer == "adam" else "SGD")
    k = 30
    rng = np.random.default_rng(0)
    for _ in range(k):
        idx = rng.choice(len(digits.x_train), 32, replace=False)
        runner.step(digits.x_train[idx], digits.y_train[idx])
    factor = (1 - lr * lam) ** k
    for p0, p in zip(network, runner.params(), strict=True):
        want = factor * (p0.weight.astype(np.float64) - p0.feedback)
        np.testing.assert_allclose(p.weight - p.feedback, want, rtol=1e-4, atol=1e-5)
        assert not np.allclose(p.weight, p0.weight)  # and W did move


def test_weight_decay_defaults_and_groups(digits):
    kp = check_config(TrainConfig(mode="kp"))
    assert weight_decay_of(kp) == pytest.approx(1e-4 / 1e-3)  # a shrink of 1e-4 a step
    assert weight_decay_of(check_config(TrainConfig(mode="kp", optimizer="sgd"))) == pytest.approx(
        1e-4 / 0.1)
    assert weight_decay_of(check_config(TrainConfig(mode="fa"))) == 0
    assert weight_decay_of(check_config(TrainConfig(mode="fa", weight_decay=0.3))) == 0.3
    runner = TorchRunner(check_config(TrainConfig(mode="kp", hidden=(8,))),
                         initial_network(check_config(TrainConfig(mode="kp", hidden=(8,))), digits))
    names = {id(p): n for n, p in runner.model.named_parameters()}
    decayed = {names[id(p)] for g in runner.opt.param_groups if g["weight_decay"] > 0
               for p in g["params"]}
    assert decayed == {"0.weight", "0.feedback", "2.weight", "2.feedback"}  # never a bias
    with pytest.raises(ValueError, match="weight_decay must be a finite number >= 0"):
        check_config(TrainConfig(weight_decay=-1))


def test_kp_aligns_b_with_w(digits):
    h, _ = train(mode="kp", dataset=digits, hidden=(64,), epochs=6, seed=0, progress=False,
                 weight_decay=2.0)
    first, last = h.initial["weight_feedback_angle"], h.weight_feedback_angle[-1]
    assert first[1] > 85 and last[1] < first[1] - 15, (first, last)
    assert last[0] < first[0] - 5  # kp's layer 1 learns its B too, unlike fa's


# ------------------------------------------------------------------------------------- the loss


def test_default_loss_is_ce_for_classification_and_mse_for_regression(digits):
    h, _ = train(dataset=digits, **SMALL)
    assert h.config["loss"] == "ce"
    h2, _ = train(dataset="forum", **SMALL)
    assert h2.config["loss"] == "mse"
    with pytest.raises(ValueError, match="loss 'ce' .* needs class labels"):
        train(dataset="forum", loss="ce", **SMALL)
    with pytest.raises(ValueError, match="unknown loss 'l1'"):
        train(dataset=digits, loss="l1", **SMALL)


@pytest.mark.parametrize("loss", ["ce", "mse"])
def test_the_test_loss_is_the_oracles_on_the_models_outputs(digits, loss):
    h, model = train(dataset=digits, loss=loss, **SMALL)
    with torch.no_grad():
        out = model(torch.from_numpy(digits.x_test)).numpy().astype(np.float64)
    want = R.cross_entropy(out, digits.y_test) if loss == "ce" else R.mse(out, digits.y_test)
    assert h.test_loss[-1] == pytest.approx(want, rel=1e-6)


# ---------------------------------------------------------------------------------------- LeNet


def test_lenet_spec_is_biotorchs_lenet_on_32x32():
    spec = lenet_spec((1, 28, 28), 10, seed=0)
    shapes = R.check_cnn(spec, (1, 1, 28, 28))
    assert shapes == [(6, 28, 28), (6, 14, 14), (16, 10, 10), (16, 5, 5), (120, 1, 1), (120,),
                      (84,), (10,)]
    assert spec[0].padding == (2, 2)  # 28 + 2·2 = 32: the zero-padded 32×32 input
    assert R.check_cnn(lenet_spec((1, 32, 32), 10), (1, 1, 32, 32))[0] == (6, 28, 28)
    with pytest.raises(ValueError, match="LeNet-5 takes 32×32 images"):
        lenet_spec((1, 27, 28), 10)


@pytest.mark.parametrize("mode", ["fa", "kp", "brsf"])
def test_lenet_in_torch_computes_the_oracles_gradients(mode):
    from pyfa.train.torch_models import cnn_from_spec, spec_from_torch

    spec = lenet_spec((1, 28, 28), 10, seed=3)
    model = cnn_from_spec(spec, mode, (1, 28, 28))
    back = spec_from_torch(model)
    for p, q in zip(spec, back, strict=True):
        assert type(p) is type(q)
        if hasattr(p, "weight"):
            assert np.array_equal(p.weight, q.weight) and p.activation == q.activation
    rng = np.random.default_rng(1)
    x = rng.uniform(size=(8, 784)).astype(np.float32)
    y = R.one_hot(rng.integers(0, 10, 8), 10)
    out = model(torch.from_numpy(x))
    np.testing.assert_allclose(out.detach().numpy(), R.cnn_forward(spec, x.reshape(8, 1, 28, 28)),
                               rtol=1e-4, atol=1e-5)
    torch.nn.functional.cross_entropy(out, torch.from_numpy(y)).backward()
    oracle_mode = "fa" if mode == "brsf" else mode  # brsf: compare the weight gradients only
    want = R.cnn_gradients(spec, x.reshape(8, 1, 28, 28), y, oracle_mode, loss="ce")
    layers = [m for m in model if hasattr(m, "weight")]
    grads = [g for g in want.layers if g]
    np.testing.assert_allclose(layers[-1].weight.grad.numpy(), grads[-1]["weight"], rtol=1e-4,
                               atol=1e-6)  # the top layer: the true gradient in every mode
    if mode != "brsf":
        for m, g in zip(layers, grads, strict=True):
            np.testing.assert_allclose(m.weight.grad.numpy(), g["weight"], rtol=1e-3, atol=1e-6)


def test_lenet_trains_in_every_layer_mode_and_reports_per_layer_metrics():
    data = tiny_images()
    for mode in ("fa", "kp", "bp"):
        h, model = train(model="lenet", mode=mode, dataset=data, epochs=3, batch_size=16, seed=0,
                         lr=3e-3, progress=False)
        assert h.config["model"] == "lenet" and h.config["sizes"] is None
        assert h.config["layer_names"][0] == "conv1 (1→6, 5×5)" and len(h.update_angle[-1]) == 5
        assert h.config["architecture"] == "LeNet-5 relu"
        assert model.input_shape == (1, 28, 28)
        assert [m.mode for m in model if hasattr(m, "feedback")] == [mode] * 5
        assert h.update_angle[-1][-1] == pytest.approx(0, abs=1e-3)
    assert h.test_loss[-1] < h.initial["test_loss"]  # bp learns the squares


def test_lenet_trains_by_dfa_as_the_oracle_says_and_resumes_from_its_checkpoint(tmp_path):
    """LeNet in mode dfa is a DFACNN: its gradients are the oracle's cnn_gradients(mode="dfa"), its
    DFA matrices come from their own stream, and a checkpoint rebuilds it with the same matrices."""
    from pyfa import checkpoint
    from pyfa.torch import DFASequential
    from pyfa.train.models import lenet_spec
    from pyfa.train.torch_models import cnn_from_spec

    spec = lenet_spec((1, 28, 28), 10, seed=3, dtype=np.float64, direct_feedback=True)
    plain = lenet_spec((1, 28, 28), 10, seed=3, dtype=np.float64)
    assert all(np.array_equal(p.weight, q.weight) for p, q in zip(spec, plain, strict=True)
               if hasattr(p, "weight"))  # the DFA stream left the weights alone
    model = cnn_from_spec(spec, "dfa", (1, 28, 28))
    assert isinstance(model, DFASequential)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 784))
    y = R.one_hot(rng.integers(0, 10, 4), 10, np.float64)
    torch.nn.functional.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y)).backward()
    want = [g for g in R.cnn_gradients(spec, x.reshape(4, 1, 28, 28), y, "dfa", loss="ce").layers if g]
    for m, g in zip([m for m in model if hasattr(m, "weight")], want, strict=True):
        np.testing.assert_allclose(m.weight.grad.numpy(), g["weight"], rtol=1e-9, atol=1e-14)
    h, trained = train(model="lenet", mode="dfa", dataset=tiny_images(), epochs=2, batch_size=16,
                       seed=0, lr=3e-3, progress=False)
    assert isinstance(trained, DFASequential) and h.epochs == 2
    checkpoint.save(tmp_path / "m.npz", trained, mode="dfa")
    back = checkpoint.load(tmp_path / "m.npz", backend="torch")
    assert isinstance(back, DFASequential)
    assert torch.equal(back.direct_feedback, trained.direct_feedback)


def test_lenet_refusals(tmp_path, capsys):
    flat = from_arrays(np.zeros((20, 5), np.float32), np.arange(20) % 2,
                       np.zeros((4, 5), np.float32), np.arange(4) % 2)
    with pytest.raises(ValueError, match="--model lenet needs images"):
        train(model="lenet", dataset=flat, **SMALL)
    np.savez(tmp_path / "flat.npz", x_train=np.zeros((20, 5)), y_train=np.arange(20) % 2,
             x_test=np.zeros((4, 5)), y_test=np.arange(4) % 2)
    out = tmp_path / "run"
    assert pyfa.cli.main(["train", "--model", "lenet", "--dataset", str(tmp_path / "flat.npz"),
                          "--out", str(out)]) == 2
    assert "--model lenet needs images" in capsys.readouterr().err and not out.exists()


# ---------------------------------------------------------------------------------- the command


def test_cli_compare_with_kp_and_dfa_writes_every_run_and_plot(tmp_path, capsys):
    out = tmp_path / "cmp"
    rc = pyfa.cli.main(["train", "--compare", "fa,bp,kp,dfa", "--hidden", "16,16", "--epochs", "1",
                        "--batch-size", "128", "--out", str(out), "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    for mode in ("fa", "bp", "kp", "dfa"):
        h = History.from_json(out / mode / "history.json")
        assert h.mode == mode and h.epochs == 1 and h.config["loss"] == "ce"
    assert History.from_json(out / "kp" / "history.json").config["weight_decay"] == pytest.approx(0.1)
    assert History.from_json(out / "fa" / "history.json").config["weight_decay"] == 0
    for png in ("compare_curves.png", "compare_alignment.png"):
        assert (out / png).stat().st_size > 20_000


def test_cli_options_of_the_new_features(tmp_path, capsys):
    assert pyfa.cli.main(["train", "--loss", "ce", "--dataset", "forum", "--epochs", "1"]) == 2
    assert "needs class labels" in capsys.readouterr().err
    assert pyfa.cli.main(["train", "--weight-decay", "-1"]) == 2
    assert "weight_decay must be a finite number >= 0" in capsys.readouterr().err
    assert pyfa.cli.main(["train", "--dataset", "digits", "--data-dir", str(tmp_path)]) == 2
    assert "does not read one" in capsys.readouterr().err
    rc = pyfa.cli.main(["train", "--mode", "kp", "--loss", "mse", "--weight-decay", "0.5",
                        "--hidden", "8", "--epochs", "1", "--out", str(tmp_path / "kp"),
                        "--no-progress"])
    assert rc == 0
    h = History.from_json(tmp_path / "kp" / "history.json")
    assert h.config["loss"] == "mse" and h.config["weight_decay"] == 0.5
    assert "kp:" in capsys.readouterr().out


# ------------------------------------------------------------------------ the Julia runner's offer


class _Chain:
    """A stand-in for the Python signatures of pyfa.julia's JuliaChain before it took a loss (no
    Julia is started: nothing here is called)."""

    @classmethod
    def from_params(cls, layers, mode="fa", dtype=None, ad="zygote"):
        raise AssertionError("not called")

    def setup_optimiser(self, name="adam", lr=1e-3, momentum=0.9):
        raise AssertionError("not called")

    def step(self, x, y, ad=None):
        raise AssertionError("not called")


class _ChainWithLoss(_Chain):
    """... and after: a loss for each step, weight decay in the optimiser."""

    def setup_optimiser(self, name="adam", lr=1e-3, momentum=0.9, weight_decay=0.0):
        raise AssertionError("not called")

    def step(self, x, y, ad=None, loss="mse"):
        raise AssertionError("not called")


def test_julia_runner_refuses_what_the_bridge_cannot_train(monkeypatch):
    """Read from the bridge's Python signatures, never by starting Julia; never silently MSE."""
    from pyfa import julia
    from pyfa.train.config import resolve_loss
    from pyfa.train.runners import _julia_takes

    monkeypatch.setattr(julia, "JuliaChain", _Chain)
    monkeypatch.delattr(julia, "JuliaCNN", raising=False)
    monkeypatch.setattr(julia, "CHAIN_MODES", ("fa", "bp", "usf", "brsf", "frsf"), raising=False)
    jl = dict(backend="julia")
    assert julia_support_problem(TrainConfig(**jl, loss="mse")) is None
    assert "the Julia bridge's training step is the MSE only" in julia_support_problem(
        TrainConfig(**jl, loss="ce"))
    assert "cannot train mode 'kp' yet" in julia_support_problem(TrainConfig(**jl, mode="kp"))
    assert "cannot train mode 'dfa' yet" in julia_support_problem(TrainConfig(**jl, mode="dfa"))
    assert "weight decay" in julia_support_problem(TrainConfig(**jl, loss="mse", weight_decay=0.1))
    assert "has no CNN" in julia_support_problem(TrainConfig(**jl, model="lenet"))
    with pytest.raises(ValueError, match="MSE only"):  # the classification default, once known
        resolve_loss(check_config(TrainConfig(**jl)), "classification")
    assert resolve_loss(check_config(TrainConfig(**jl)), "regression").loss == "mse"

    monkeypatch.setattr(julia, "JuliaChain", _ChainWithLoss)
    monkeypatch.setattr(julia, "JuliaCNN", _ChainWithLoss, raising=False)
    monkeypatch.setattr(julia, "CHAIN_MODES", ("fa", "kp", "dfa"), raising=False)
    monkeypatch.setattr(julia, "CNN_MODES", ("fa", "kp"), raising=False)
    assert julia_support_problem(TrainConfig(**jl, loss="ce", mode="kp")) is None
    assert julia_support_problem(TrainConfig(**jl, loss="ce", mode="dfa")) is None
    assert julia_support_problem(TrainConfig(**jl, loss="ce", mode="kp", model="lenet")) is None
    assert "cannot train mode 'usf' on --model lenet" in julia_support_problem(
        TrainConfig(**jl, mode="usf", model="lenet"))
    assert _julia_takes(_ChainWithLoss, "loss") == "step"
    assert _julia_takes(_ChainWithLoss, "weight_decay") == "setup_optimiser"
    assert _julia_takes(_Chain, "loss") is None


def test_the_real_bridge_is_asked_without_starting_julia():
    """Whatever today's bridge offers, the answer is read from its Python side: a config it lists
    passes, and cross-entropy passes exactly when its step takes a loss."""
    from pyfa import julia
    from pyfa.train.runners import _julia_takes

    chain = julia.JuliaChain
    problem = julia_support_problem(TrainConfig(backend="julia", loss="ce"))
    assert (problem is None) == (_julia_takes(chain, "loss") is not None), problem
    assert julia_support_problem(TrainConfig(backend="julia", loss="mse")) is None


# ------------------------------------------------------------------------- history and plots


def test_a_history_without_norm_ratios_reads_back_with_nan_rows(digits, tmp_path):
    import json

    h, _ = train(dataset=digits, **SMALL)
    d = json.loads(h.to_json())
    del d["feedback_norm_ratio"]  # as pyfa wrote it before the metric existed
    del d["initial"]["feedback_norm_ratio"]
    back = History.from_dict(d)
    assert len(back.feedback_norm_ratio) == 2 and all(np.isnan(v) for r in back.feedback_norm_ratio
                                                       for v in r)
    assert back.weight_feedback_angle == h.weight_feedback_angle
    from pyfa import plots

    fig = plots.plot_alignment(back)  # draws, with "not recorded" where the ratios would be
    assert [t.get_text() for t in fig.axes[2].texts] == ["not recorded"]
    d["feedback_norm_ratio"] = [[1.0]]  # but a wrong length is still refused
    with pytest.raises(ValueError, match="'feedback_norm_ratio' has 1 entries"):
        History.from_dict(d)


def test_alignment_plots_show_three_metrics_per_layer_with_legends_off_the_axes(digits):
    from matplotlib.legend import Legend
    from matplotlib.text import Text

    from pyfa import plots

    hs = {m: train(mode=m, dataset=digits, **{**SMALL, "hidden": (16, 16)})[0]
          for m in ("fa", "kp", "dfa")}
    fig = plots.plot_alignment(hs["dfa"])
    assert [ax.get_title() for ax in fig.axes] == [  # DFA's top layer has no W–B pair or ratio
        "W–B angle\n(none for layer 3: not defined)", "Update angle (vs backprop)",
        "‖B‖ / ‖W‖\n(none for layer 3: not defined)"]
    grid = plots.plot_compare_alignment(hs)
    assert len(grid.axes) == 3 * 3  # a row per metric, a column per layer
    assert grid.axes[2].get_title() == "layer 3 (16→10)\n(none for dfa: not defined)"
    assert grid.axes[5].get_title() == "layer 3 (16→10)"  # the update angle: every mode has one
    caption = " ".join(t.get_text() for t in grid.findobj(Text))
    assert "kp: B learns" in caption and "forward path" in caption
    for f in (fig, grid):
        f.canvas.draw()
        renderer = f.canvas.get_renderer()
        legends = f.findobj(Legend)
        assert len(legends) == 1
        for legend in legends:
            box = legend.get_window_extent(renderer)
            assert box.x1 <= f.bbox.x1 + 0.5
            assert not any(box.overlaps(ax.get_window_extent(renderer)) for ax in f.axes)
    # DFA's top layer has no W–B pair: nothing drawn there, the rest is
    top = fig.axes[0].lines[2]
    assert np.isnan(np.asarray(top.get_ydata(), float)).all()
