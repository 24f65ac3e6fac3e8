"""Training with the torch backend, the History record, and the `pyfa train` command."""

import importlib
import json
import os
import re
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import pyfa.cli
from pyfa import checkpoint
from pyfa.data import from_arrays, load_dataset
from pyfa.network import init_mlp
from pyfa.torch import params_from_mlp
from pyfa.train import History, train

loop = importlib.import_module("pyfa.train.loop")
rundir = importlib.import_module("pyfa.train.rundir")
SMALL = dict(hidden=(32,), epochs=2, batch_size=64, progress=False)


def test_same_seed_same_history_and_weights():
    h1, m1 = train(seed=3, **SMALL)
    h2, m2 = train(seed=3, **SMALL)
    assert h1.same_curves(h2)
    assert h1.loss == h2.loss and h1.test_acc == h2.test_acc
    assert h1.update_angle == h2.update_angle
    for a, b in zip(params_from_mlp(m1), params_from_mlp(m2), strict=True):
        assert np.array_equal(a.weight, b.weight) and np.array_equal(a.feedback, b.feedback)


def test_different_seed_different_history():
    h1, m1 = train(seed=3, **SMALL)
    h2, m2 = train(seed=4, **SMALL)
    assert not h1.same_curves(h2)
    assert h1.loss != h2.loss
    assert not np.array_equal(params_from_mlp(m1)[0].feedback, params_from_mlp(m2)[0].feedback)


def test_model_starts_from_init_mlp_and_feedback_stays_fixed():
    h, model = train(seed=5, **SMALL)
    init = init_mlp([64, 32, 10], "relu", seed=5)
    trained = params_from_mlp(model)
    for p, q in zip(init, trained, strict=True):
        assert np.array_equal(p.feedback, q.feedback)  # B is never trained
        assert not np.array_equal(p.weight, q.weight)  # W is
    assert [q.activation for q in trained] == ["relu", "identity"]


def test_history_contents_and_json_round_trip(tmp_path):
    h, _ = train(seed=0, **SMALL)
    assert h.epochs == 2 and len(h.test_loss) == len(h.train_acc) == len(h.test_acc) == 2
    assert len(h.epoch_time) == 2 and all(t > 0 for t in h.epoch_time)
    assert [len(r) for r in h.weight_feedback_angle] == [2, 2]
    assert [len(r) for r in h.update_angle] == [2, 2]
    assert [len(r) for r in h.feedback_norm_ratio] == [2, 2]
    assert set(h.initial) == {"test_loss", "train_acc", "test_acc", "weight_feedback_angle",
                              "update_angle", "feedback_norm_ratio"}
    assert h.config["loss"] == "ce" and h.config["model"] == "mlp"  # the classification default
    assert all(0 <= a <= 1 for a in h.train_acc + h.test_acc)
    assert h.config["sizes"] == [64, 32, 10] and h.config["mode"] == "fa"
    assert h.config["dataset"] == "digits" and h.config["seed"] == 0
    h.update_angle[0][0] = float("nan")  # NaN (a zero gradient) survives as null in strict JSON
    text = h.to_json(tmp_path / "h.json")
    assert "NaN" not in text and json.loads(text)["update_angle"][0][0] is None
    back = History.from_json(tmp_path / "h.json")
    assert back.same_curves(h) and back.epoch_time == h.epoch_time
    assert np.isnan(back.update_angle[0][0])
    assert History.from_json(text).same_curves(h)
    s = h.summary()
    assert s["test_acc"] == h.test_acc[-1] and s["epochs"] == 2


def test_fa_aligns_on_digits():
    """FA's signature: the top layer's W turns towards its fixed B, and the first layer's update
    towards backprop's, both well below 90 degrees after a few epochs."""
    h, _ = train(mode="fa", hidden=(256,), epochs=4, seed=0, progress=False)
    wf = [h.initial["weight_feedback_angle"][1]] + [r[1] for r in h.weight_feedback_angle]
    assert all(b < a for a, b in zip(wf, wf[1:], strict=False)), wf  # falls every epoch
    assert wf[0] > 87 and wf[-1] < 86, wf
    assert h.update_angle[-1][0] < 88 and h.update_angle[-1][1] == pytest.approx(0, abs=1e-3)
    # layer 1's B only carries dL/dx, which nothing learns from: it stays unaligned
    assert 85 < h.weight_feedback_angle[-1][0] < 95
    assert h.test_acc[-1] > 0.85


def test_bp_angles_are_zero_and_learns():
    h, _ = train(mode="bp", hidden=(256,), epochs=2, seed=0, progress=False)
    assert np.allclose(h.weight_feedback_angle, 0, atol=1e-3)
    assert np.allclose(h.update_angle, 0, atol=1e-3)
    assert h.test_acc[-1] > 0.85


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_optimizers_reduce_the_loss(optimizer):
    h, _ = train(optimizer=optimizer, hidden=(64,), epochs=2, seed=1, progress=False)
    assert h.test_loss[-1] < h.initial["test_loss"]
    assert h.config["optimizer"] == optimizer and h.config["lr"] > 0


def test_regression_on_forum_and_user_arrays():
    h, model = train(dataset="forum", hidden=(32,), epochs=2, seed=0, progress=False)
    assert h.train_acc == [] and h.test_acc == [] and h.config["task"] == "regression"
    assert h.test_loss[-1] < 0.8 * h.initial["test_loss"]
    d = load_dataset("forum")
    small = from_arrays(d.x_train[:200], d.y_train[:200], d.x_test[:50], d.y_test[:50],
                        task="regression")
    h2, _ = train(dataset=small, hidden=(8,), epochs=1, seed=0, progress=False, mode="usf")
    assert h2.config["dataset"] == "arrays" and h2.config["sizes"] == [50, 8, 2]


def test_threads_are_restored():
    before = torch.get_num_threads()
    train(threads=1, **SMALL)
    assert torch.get_num_threads() == before


def test_progress_bar_shows_loss_and_accuracy(capsys, monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # as on a terminal
    train(hidden=(16,), epochs=1, batch_size=128, seed=0, progress=True)
    err = capsys.readouterr().err
    assert "epoch 1/1" in err and "loss=" in err and "test_acc=" in err
    assert "\r" in err  # a bar, redrawn in place


@pytest.mark.parametrize("dataset, stat", [("digits", "test_acc"), ("forum", "test_loss")])
def test_progress_without_a_terminal_is_one_line_per_epoch(capsys, dataset, stat):
    """A log file or pipe (capsys is not a tty) gets one plain line per epoch, not bar redraws."""
    assert not sys.stderr.isatty()
    train(hidden=(16,), epochs=3, batch_size=128, seed=0, progress=True, dataset=dataset)
    err = capsys.readouterr().err
    assert "\r" not in err and "batch/s" not in err
    lines = err.splitlines()
    assert len(lines) == 3, err
    for epoch, line in enumerate(lines, 1):
        assert line.startswith(f"torch/fa epoch {epoch}/3  loss "), line
        assert f" {stat} " in line and err.count(f"epoch {epoch}/3") == 1
    train(hidden=(16,), epochs=1, batch_size=128, seed=0, progress=False)
    assert capsys.readouterr().err == ""


def test_hidden_may_be_one_int():
    h, model = train(hidden=16, epochs=1, batch_size=128, progress=False)
    assert h.config["sizes"] == [64, 16, 10]
    h, _ = train(hidden=np.int64(8), epochs=1, batch_size=128, progress=False)
    assert h.config["sizes"] == [64, 8, 10]
    h, _ = train(hidden=(), epochs=1, batch_size=128, progress=False)
    assert h.config["sizes"] == [64, 10]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(mode="kp2"), "unknown mode 'kp2'"),
        (dict(backend="jax"), "unknown backend 'jax'"),
        (dict(optimizer="rmsprop"), "unknown optimizer 'rmsprop'"),
        (dict(epochs=-1), "epochs"),
        (dict(batch_size=0), "batch_size"),
        (dict(lr=0.0), "lr must be a finite number > 0"),
        (dict(sizes=(10, 5, 10)), r"sizes \(10, 5, 10\) do not fit dataset 'digits': it has 64"),
        (dict(backend="julia", device="cuda"), "device applies to the torch backend"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        train(**{**SMALL, **kwargs})


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(lr=float("inf")), r"lr must be a finite number > 0, got inf"),
        (dict(lr=float("nan")), r"lr must be a finite number > 0, got nan"),
        (dict(optimizer="momentum", momentum=1.0), r"momentum must be in \[0, 1\), got 1.0"),
        (dict(momentum=-0.1), r"momentum must be in \[0, 1\)"),
        (dict(epochs=0), "epochs must be a whole number >= 1, got 0"),
        (dict(epochs=1.5), "epochs must be a whole number >= 1"),
        (dict(batch_size=float("inf")), "batch_size must be a whole number >= 1"),
        (dict(probe_size=0), "probe_size must be a whole number >= 1, got 0"),
        (dict(threads=0), "threads must be a whole number >= 1 or None"),
        (dict(device="bogus"), "device 'bogus' is not a torch device"),
        (dict(device="cuda"), r"device 'cuda': CUDA is not available here"),
        (dict(hidden=0), r"hidden widths must be whole numbers >= 1, got 0"),
        (dict(hidden=(32, 0)), r"hidden widths must be whole numbers >= 1, got \(32, 0\)"),
        (dict(hidden=(1.5,)), r"hidden widths must be whole numbers >= 1.*bad: 1.5"),
        (dict(hidden="32"), r"hidden must be a width or a sequence of widths"),
        (dict(hidden=None), r"hidden must be a width or a sequence of widths"),
        (dict(sizes=(64, 0, 10)), r"sizes widths must be whole numbers >= 1"),
    ],
)
def test_bad_arguments_are_refused_before_anything_is_loaded(monkeypatch, kwargs, match):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    def not_reached(*args, **kwargs):
        raise AssertionError("the dataset was loaded before the arguments were checked")

    monkeypatch.setattr(loop, "load_dataset", not_reached)
    with pytest.raises(ValueError, match=match):
        train(**{**SMALL, **kwargs})


def test_history_json_writes_every_non_finite_number_as_null(tmp_path):
    inf, nan = float("inf"), float("nan")
    h = History(config={"lr": inf}, loss=[inf, 0.5], test_loss=[-inf, 0.25],
                weight_feedback_angle=[[nan, 1.0], [1.0, 1.0]], update_angle=[[0.0, -inf], [0, 0]],
                epoch_time=[0.1, 0.2], initial={"test_loss": inf, "update_angle": [-inf, 2.0]})
    text = h.to_json(tmp_path / "h.json")  # used to raise ValueError (allow_nan=False) on inf
    d = json.loads(text)
    assert d["loss"] == [None, 0.5] and d["test_loss"] == [None, 0.25]
    assert d["update_angle"][0] == [0.0, None] and d["weight_feedback_angle"][0] == [None, 1.0]
    assert d["initial"] == {"test_loss": None, "update_angle": [None, 2.0]}
    assert d["config"]["lr"] is None
    back = History.from_json(tmp_path / "h.json")
    assert np.isnan(back.loss[0]) and back.loss[1] == 0.5 and np.isnan(back.test_loss[0])
    assert np.isnan(back.update_angle[0][1]) and np.isnan(back.initial["test_loss"])
    assert np.isnan(back.initial["update_angle"][0]) and back.initial["update_angle"][1] == 2.0


def test_history_json_is_written_atomically(tmp_path, monkeypatch):
    path = tmp_path / "history.json"
    History(loss=[1.0]).to_json(path)
    before = path.read_bytes()

    def fail_replace(src, dst):
        raise OSError("rename failed")

    monkeypatch.setattr(checkpoint.os, "replace", fail_replace)
    with pytest.raises(OSError, match="rename failed"):
        History(loss=[2.0]).to_json(path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["history.json"]


def is_png(path):
    data = path.read_bytes()
    return data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_cli_train_writes_history_checkpoint_and_plots(tmp_path, capsys):
    out = tmp_path / "run"
    rc = pyfa.cli.main(["train", "--epochs", "2", "--hidden", "32", "--batch-size", "64",
                        "--seed", "1", "--out", str(out), "--no-progress"])
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "alignment.png", "curves.png", "history.json", "model.npz"]
    h = History.from_json(out / "history.json")
    assert h.epochs == 2 and h.config["sizes"] == [64, 32, 10] and h.config["seed"] == 1
    assert is_png(out / "curves.png") and is_png(out / "alignment.png")
    # the checkpoint holds the trained model, feedback included, and reproduces its test accuracy
    model = checkpoint.load(out / "model.npz", backend="torch")
    d = load_dataset("digits")
    with torch.no_grad():
        pred = model(torch.from_numpy(d.x_test)).numpy()
    assert np.mean(pred.argmax(1) == d.labels_test) == pytest.approx(h.test_acc[-1])
    assert checkpoint.read_meta(out / "model.npz")["mode"] == "fa"
    printed = capsys.readouterr().out
    assert "test acc" in printed and str(out) in printed


def test_cli_compare_trains_each_mode_from_the_same_start(tmp_path):
    out = tmp_path / "cmp"
    rc = pyfa.cli.main(["train", "--compare", "fa,bp", "--epochs", "1", "--hidden", "16",
                        "--batch-size", "128", "--out", str(out), "--no-progress"])
    assert rc == 0
    for mode in ("fa", "bp"):
        assert (out / mode / "history.json").is_file() and (out / mode / "model.npz").is_file()
    assert is_png(out / "compare_curves.png") and is_png(out / "compare_alignment.png")
    hs = {m: History.from_json(json.dumps(v))
          for m, v in json.loads((out / "histories.json").read_text()).items()}
    assert list(hs) == ["fa", "bp"]
    # same seed: same initial weights, so the same loss before training; then they differ
    assert hs["fa"].initial["test_loss"] == hs["bp"].initial["test_loss"]
    assert hs["fa"].loss != hs["bp"].loss
    fa_b = checkpoint.load(out / "fa" / "model.npz")[0].feedback
    bp_b = checkpoint.load(out / "bp" / "model.npz")[0].feedback
    assert np.array_equal(fa_b, bp_b)


def test_cli_errors(tmp_path, capsys):
    assert pyfa.cli.main(["train", "--compare", "fa,nope", "--no-progress"]) == 2
    assert "nope" in capsys.readouterr().err
    assert pyfa.cli.main(["train", "--dataset", "mnist", "--no-progress"]) == 2
    assert "unknown dataset 'mnist'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        pyfa.cli.main(["train", "--hidden", "12,x"])


def test_cli_julia_unavailable_exits_2_with_reason(tmp_path, capsys):
    from pyfa import julia

    if julia.available():
        pytest.skip("Julia is available here: the unavailable path cannot be exercised")
    rc = pyfa.cli.main(["train", "--backend", "julia", "--epochs", "1", "--out",
                        str(tmp_path / "j"), "--no-progress"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "pyfa train --backend julia: " in err and julia.unavailable_reason() in err
    assert not (tmp_path / "j").exists()
    with pytest.raises(julia.JuliaUnavailableError):
        train(backend="julia", **SMALL)


def not_trained(*args, **kwargs):
    raise AssertionError("training started before the options were checked")


@pytest.mark.parametrize(
    "argv, match",
    [
        (["--lr", "inf"], "lr must be a finite number > 0"),
        (["--lr", "nan"], "lr must be a finite number > 0"),
        (["--lr", "-1"], "lr must be a finite number > 0"),
        (["--optimizer", "momentum", "--momentum", "1"], r"momentum must be in \[0, 1\)"),
        (["--batch-size", "0"], "batch_size must be a whole number >= 1"),
        (["--device", "bogus"], "device 'bogus' is not a torch device"),
        (["--device", "cuda"], "CUDA is not available here"),
    ],
)
def test_cli_bad_options_exit_2_before_training(tmp_path, capsys, monkeypatch, argv, match):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(loop, "fit", not_trained)
    out = tmp_path / "run"
    rc = pyfa.cli.main(["train", "--epochs", "1", "--out", str(out), "--no-progress", *argv])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.startswith("pyfa train: ") and "Traceback" not in err
    assert re.search(match, err), err
    assert not out.exists()


def test_cli_out_refuses_an_existing_file_before_training(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(loop, "fit", not_trained)
    f = tmp_path / "notes.txt"
    f.write_text("keep me")
    for out in (f, f / "run"):
        assert pyfa.cli.main(["train", "--out", str(out), "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"pyfa train: --out {out}") and "file" in err
    assert f.read_text() == "keep me"


def test_cli_out_refuses_a_non_empty_folder_unless_forced(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()  # an empty folder is fine
    base = ["train", "--epochs", "1", "--hidden", "16", "--batch-size", "128", "--no-progress",
            "--out", str(out)]
    assert pyfa.cli.main([*base, "--seed", "1"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    # a second run, or a --compare, into the same folder would overwrite or mix: refused
    for extra in (["--seed", "2"], ["--compare", "fa,bp"]):
        assert pyfa.cli.main([*base, *extra]) == 2
        err = capsys.readouterr().err
        assert f"--out {out} is not empty" in err and "history.json" in err and "--force" in err
        assert f"or --resume {out} to continue the run it holds" in err
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert pyfa.cli.main([*base, "--seed", "2", "--force"]) == 0
    assert History.from_json(out / "history.json").config["seed"] == 2
    assert checkpoint.read_meta(out / "model.npz")["meta"]["seed"] == 2
    assert sorted(p.name for p in out.iterdir()) == sorted(before)


def test_demo_can_be_rerun_into_its_own_folder(tmp_path, monkeypatch):
    from pyfa import crosscheck, demo

    monkeypatch.setattr(crosscheck, "crosscheck", lambda *a, **k: SimpleNamespace(ok=True))
    monkeypatch.setattr(crosscheck, "format_report", lambda report: "(cross-check skipped)")
    args = SimpleNamespace(out=str(tmp_path / "demo"), epochs=1, skip_train=False, force=False)
    assert demo.run(args) == 0
    assert demo.run(args) == 0  # make demo twice: the second run overwrites the first
    assert History.from_json(tmp_path / "demo" / "fa" / "history.json").epochs == 1


def test_cli_compare_refuses_a_mode_given_twice(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(loop, "fit", not_trained)
    for compare in ("fa,fa", "fa,bp,fa", " bp , bp"):
        out = tmp_path / "cmp"
        rc = pyfa.cli.main(["train", "--compare", compare, "--out", str(out), "--no-progress"])
        err = capsys.readouterr().err
        assert rc == 2, err
        assert err.startswith(f"pyfa train: --compare {compare}: ") and "more than once" in err
        assert not out.exists()


def test_cli_out_that_cannot_be_created_stops_before_training(tmp_path, capsys, monkeypatch):
    """An --out that cannot be made (under /proc) used to train every epoch, then crash."""
    monkeypatch.setattr(loop, "fit", not_trained)
    if not os.path.isdir("/proc/self"):
        pytest.skip("no /proc here")
    out = "/proc/pyfa-no-such-folder/run"
    rc = pyfa.cli.main(["train", "--out", out, "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.startswith(f"pyfa train: --out {out}: cannot create the folder (") and (
        "Traceback" not in err)


def test_cli_out_that_cannot_be_written_stops_before_training(tmp_path, capsys, monkeypatch):
    """A folder pyfa can make but not write in (read-only; simulated: tests may run as root)."""
    monkeypatch.setattr(loop, "fit", not_trained)

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(rundir, "_lock", read_only)
    out = tmp_path / "new" / "run"
    rc = pyfa.cli.main(["train", "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err == f"pyfa train: --out {out}: cannot write files there (Permission denied)\n"
    assert not (tmp_path / "new").exists()  # the folders it made are taken away again
    (tmp_path / "empty").mkdir()
    assert pyfa.cli.main(["train", "--out", str(tmp_path / "empty"), "--no-progress"]) == 2
    assert (tmp_path / "empty").is_dir()  # a folder that was there stays


def test_cli_without_out_says_nothing_was_saved(tmp_path, capsys):
    base = ["train", "--epochs", "1", "--hidden", "8", "--batch-size", "256", "--no-progress"]
    assert pyfa.cli.main(base) == 0
    captured = capsys.readouterr()
    assert "test acc" in captured.out
    assert captured.err == (
        "(nothing saved: pass --out DIR to keep the history, checkpoint and plots)\n")
    assert pyfa.cli.main([*base, "--out", str(tmp_path / "run")]) == 0
    assert "nothing saved" not in capsys.readouterr().err


# ----------------------------------------------------------- options that used to be reinterpreted


@pytest.mark.parametrize("seed, match", [(-1, "seed must be a whole number from 0 to 2"),
                                         (2**64, "seed must be a whole number from 0 to 2"),
                                         (1.5, "seed must be")])
def test_train_refuses_a_bad_seed_naming_it(monkeypatch, seed, match):
    monkeypatch.setattr(loop, "load_dataset", not_trained)
    with pytest.raises(ValueError, match=match):
        train(seed=seed, **SMALL)


@pytest.mark.parametrize("argv, match", [
    (["--compare", ""], r"--compare '': an empty mode name"),
    (["--compare", "fa,"], r"--compare 'fa,': an empty mode name"),
    (["--out", ""], r"--out '' names no folder"),
    (["--out", "  "], r"--out '  ' names no folder|--out '' names no folder"),
])
def test_cli_empty_values_are_refused_not_reinterpreted(capsys, monkeypatch, argv, match):
    """`--compare ''` used to train --mode, `--out ""` to save nothing, both without a word."""
    monkeypatch.setattr(loop, "fit", not_trained)
    assert pyfa.cli.main(["train", "--no-progress", *argv]) == 2
    assert re.search(match, capsys.readouterr().err)


@pytest.mark.parametrize("hidden", ["10,,20", ",10", "10,"])
def test_cli_hidden_with_an_empty_width_is_refused(capsys, hidden):
    """`--hidden 10,,20` used to become 10,20."""
    with pytest.raises(SystemExit) as e:
        pyfa.cli.main(["train", "--hidden", hidden])
    assert e.value.code == 2
    assert "an empty width between commas" in capsys.readouterr().err


def test_cli_hidden_empty_means_no_hidden_layer():
    from pyfa.train.command import _hidden_arg

    assert _hidden_arg("") == () and _hidden_arg(" 64 , 32 ") == (64, 32)


def test_init_mlp_and_train_start_from_the_same_network_by_default():
    """init_mlp's default activation was tanh, train's relu: init_mlp(sizes, seed=s) was not the
    network train(seed=s) starts from."""
    import inspect

    import pyfa.cli

    assert (inspect.signature(init_mlp).parameters["activation"].default
            == inspect.signature(train).parameters["activation"].default == "relu")
    sub = next(a for a in pyfa.cli.build_parser()._subparsers._actions if a.choices)
    assert sub.choices["train"].get_default("activation") == "relu"
    _, model = train(hidden=(8,), epochs=1, batch_size=2000, lr=1e-12, progress=False)
    for p, q in zip(init_mlp([64, 8, 10], seed=0), params_from_mlp(model), strict=True):
        assert p.activation == q.activation and np.array_equal(p.feedback, q.feedback)


# ------------------------------------------------------------------- History.from_json is strict


@pytest.mark.parametrize("text, match", [
    ("{}", "lacks config, loss"),
    ('{"foo": 1}', "lacks config"),
    ("[1, 2]", "expected a JSON object, got a list"),
    ("{not json", "is not valid JSON"),
])
def test_history_from_json_refuses_what_is_not_a_history(text, match):
    """Any JSON dict used to load as an empty history."""
    with pytest.raises(ValueError, match=match):
        History.from_json(text)


def test_history_from_json_checks_types_and_lengths(tmp_path):
    h, _ = train(epochs=2, **{k: v for k, v in SMALL.items() if k != "epochs"})
    good = json.loads(h.to_json())
    for change, match in [
        (dict(loss=[0.1]), "'test_loss' has 2 entries but 'loss' has 1 epochs"),
        (dict(loss="0.1"), "'loss' must be a list of numbers"),
        (dict(test_acc=[0.5, "high"]), "expected a number or null, got 'high'"),
        (dict(train_acc=[0.5]), "'train_acc' has 1 entries; expected 2"),
        (dict(config=[]), "'config' and 'initial' must be JSON objects"),
    ]:
        with pytest.raises(ValueError, match=match):
            History.from_dict({**good, **change})
    (tmp_path / "histories.json").write_text(json.dumps({"fa": good, "bp": good}))
    with pytest.raises(ValueError, match=r"histories.json.*one history per run \(fa, bp\)"):
        History.from_json(tmp_path / "histories.json")
    assert History.from_dict({**good, "later_field": 1}).same_curves(h)  # newer keys: ignored
