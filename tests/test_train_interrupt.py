"""`pyfa train` under interruption, divergence and concurrency: nothing lost, nothing half-written.

- SIGINT/SIGTERM (real signals, sent by the process to itself mid-epoch, or by a parent to a child
  process) stop the run between two minibatches; the last complete epoch is on disk; `--resume`
  continues it to exactly what an uninterrupted run gives (weights and history, bit for bit).
- A NaN/inf loss stops training with exit status 1, keeping the last finite epoch.
- `--out` is locked while a run uses it: a second run on it is refused.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import pyfa.cli
from pyfa import checkpoint
from pyfa.network import DenseParams
from pyfa.torch import params_from_mlp
from pyfa.train import History, NonFiniteLoss, resume, train
from pyfa.train.rundir import LOCK_NAME, RunFolder
from pyfa.train.runners import TorchRunner

ROOT = Path(__file__).resolve().parents[1]
# digits, 1347 training samples: 11 minibatches of 128 an epoch
RUN = ["--hidden", "16", "--batch-size", "128", "--no-progress"]
RUN_KW = dict(hidden=(16,), batch_size=128, progress=False)
RUN_FILES = ["alignment.png", "curves.png", "history.json", "model.npz"]


def signal_at_step(monkeypatch, k: int, signum: int) -> None:
    """The process sends itself `signum` (a real signal) right after its k-th minibatch step."""
    real = TorchRunner.step
    calls = []

    def step(self, x, y):
        loss = real(self, x, y)
        calls.append(1)
        if len(calls) == k:
            os.kill(os.getpid(), signum)
        return loss

    monkeypatch.setattr(TorchRunner, "step", step)


def assert_same_layers(a: list[DenseParams], b: list[DenseParams]) -> None:
    assert len(a) == len(b)
    for p, q in zip(a, b, strict=True):
        for k in ("weight", "feedback", "bias"):
            assert np.array_equal(getattr(p, k), getattr(q, k)), k  # bit for bit
        assert p.activation == q.activation
        if q.direct_feedback is None:  # DFA's matrices: kept, never dropped
            assert p.direct_feedback is None
        else:
            assert np.array_equal(p.direct_feedback, q.direct_feedback)


def saved_epoch(run_dir: Path) -> int:
    return checkpoint.read_training(run_dir / "model.npz").info["epoch"]


@pytest.mark.parametrize("mode, optimizer, signum", [
    ("brsf", "adam", signal.SIGINT),      # brsf: the torch generator's state must carry over
    ("fa", "momentum", signal.SIGTERM),   # momentum buffers must carry over
    ("kp", "adam", signal.SIGINT),        # kp: the learnt feedback, its AdamW moments and decay
    ("dfa", "momentum", signal.SIGTERM),  # dfa: the DFA matrices (a buffer of DFASequential)
])
def test_interrupt_saves_the_last_complete_epoch_and_resume_is_exact(
        tmp_path, capsys, monkeypatch, mode, optimizer, signum):
    out = tmp_path / "run"
    argv = ["train", "--mode", mode, "--optimizer", optimizer, "--epochs", "4", "--seed", "3",
            "--out", str(out), *RUN]
    signal_at_step(monkeypatch, 25, signum)  # minibatch 3 of epoch 3
    before = signal.getsignal(signum)
    try:
        rc = pyfa.cli.main(argv)
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C escaped from pyfa train as a traceback")
    assert rc == 128 + signum  # 130 for SIGINT, 143 for SIGTERM
    assert signal.getsignal(signum) == before  # the handlers are put back
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"interrupted at epoch 3; saved epoch 2 to {out}; "
                   f"resume with: pyfa train --resume {out}"]
    assert sorted(os.listdir(out)) == RUN_FILES  # no lock file left, no temporary file
    assert History.from_json(out / "history.json").epochs == 2 and saved_epoch(out) == 2
    # nothing half-way: the checkpoint is the model after exactly 2 epochs
    _, after_two = train(mode=mode, optimizer=optimizer, epochs=2, seed=3, **RUN_KW)
    assert_same_layers(checkpoint.load(out / "model.npz"), params_from_mlp(after_two))

    monkeypatch.undo()
    assert pyfa.cli.main(["train", "--resume", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    want, model = train(mode=mode, optimizer=optimizer, epochs=4, seed=3, **RUN_KW)
    got = History.from_json(out / "history.json")
    assert got.epochs == 4 and got.same_curves(want)
    assert_same_layers(checkpoint.load(out / "model.npz"), params_from_mlp(model))
    assert sorted(os.listdir(out)) == RUN_FILES


def tiny_npz(path: Path) -> Path:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(260, 6)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + 2 * (x[:, 1] > 0)
    np.savez(path, x_train=x[:200], y_train=y[:200], x_test=x[200:], y_test=y[200:])
    return path


def child(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "pyfa.cli", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_a_signal_from_outside_stops_a_child_run_cleanly_and_it_resumes_exactly(
        tmp_path, capsys, signum):
    data = tiny_npz(tmp_path / "data.npz")
    out = tmp_path / "run"
    proc = child(["train", "--dataset", str(data), "--hidden", "8", "--batch-size", "25",
                  "--epochs", "100000", "--seed", "5", "--out", str(out)])
    seen = []
    for line in proc.stderr:  # one plain line per epoch: a pipe is not a terminal
        seen.append(line)
        if line.startswith("torch/fa epoch"):
            break
    proc.send_signal(signum)
    _, rest = proc.communicate(timeout=120)
    err = "".join(seen) + rest
    assert "Traceback" not in err
    if signum == signal.SIGKILL:  # no chance to clean up: still, the last epoch is on disk
        assert proc.returncode == -signal.SIGKILL and LOCK_NAME in os.listdir(out)
        done = saved_epoch(out)
    else:
        assert proc.returncode == 128 + signum, err
        last = err.strip().splitlines()[-1]
        m = re.fullmatch(rf"interrupted at epoch (\d+); saved epoch (\d+) to {re.escape(str(out))}; "
                         rf"resume with: pyfa train --resume {re.escape(str(out))}", last)
        assert m, last
        done = int(m.group(2))
        assert int(m.group(1)) == done + 1 and sorted(os.listdir(out)) == RUN_FILES
    assert done >= 1 and History.from_json(out / "history.json").epochs == done
    # resume (a stale lock file of a killed run does not block it) and train two more epochs
    assert pyfa.cli.main(["train", "--resume", str(out), "--epochs", str(done + 2),
                          "--no-progress"]) == 0
    capsys.readouterr()
    want, model = train(dataset=str(data), hidden=(8,), batch_size=25, epochs=done + 2, seed=5,
                        progress=False)
    assert History.from_json(out / "history.json").same_curves(want)
    assert_same_layers(checkpoint.load(out / "model.npz"), params_from_mlp(model))
    assert LOCK_NAME not in os.listdir(out)


def test_an_interrupted_compare_resumes_each_mode_where_it_stood(tmp_path, capsys, monkeypatch):
    out, whole = tmp_path / "cmp", tmp_path / "whole"
    argv = ["train", "--compare", "fa,bp", "--epochs", "3", *RUN]
    signal_at_step(monkeypatch, 33 + 15, signal.SIGINT)  # fa done (33 steps), bp in its epoch 2
    assert pyfa.cli.main([*argv, "--out", str(out)]) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"interrupted at epoch 2 of mode bp; saved epoch 1 to {out / 'bp'}; "
        f"resume with: pyfa train --resume {out}")
    assert saved_epoch(out / "fa") == 3 and saved_epoch(out / "bp") == 1
    monkeypatch.undo()
    assert pyfa.cli.main(["train", "--resume", str(out), "--no-progress"]) == 0
    assert pyfa.cli.main([*argv, "--out", str(whole)]) == 0
    capsys.readouterr()
    for mode in ("fa", "bp"):
        a = History.from_json(out / mode / "history.json")
        assert a.epochs == 3 and a.same_curves(History.from_json(whole / mode / "history.json"))
        assert_same_layers(checkpoint.load(out / mode / "model.npz"),
                           checkpoint.load(whole / mode / "model.npz"))
    assert (out / "histories.json").is_file() and (out / "compare_curves.png").is_file()


def test_resume_from_python_continues_exactly(tmp_path, capsys):
    out = tmp_path / "run"
    assert pyfa.cli.main(["train", "--epochs", "1", "--seed", "2", "--out", str(out), *RUN]) == 0
    capsys.readouterr()
    got, model = resume(out, epochs=3, progress=False)  # in memory: nothing written
    want, ref = train(epochs=3, seed=2, **RUN_KW)
    assert got.same_curves(want)
    assert_same_layers(params_from_mlp(model), params_from_mlp(ref))
    assert History.from_json(out / "history.json").epochs == 1


# -------------------------------------------------------------------------------------- refusals


def test_resume_refuses_what_it_cannot_continue_exactly(tmp_path, capsys):
    data = tiny_npz(tmp_path / "data.npz")
    out = tmp_path / "run"
    base = ["train", "--dataset", str(data), "--hidden", "8", "--epochs", "2", "--no-progress"]
    assert pyfa.cli.main([*base, "--out", str(out)]) == 0
    capsys.readouterr()

    def refused(argv, match):
        assert pyfa.cli.main(["train", *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith("pyfa train: ") and re.search(match, err), err

    refused(["--resume", str(out), "--lr", "0.1", "--seed", "3"],
            r"leave out --lr, --seed \(only --epochs and --no-progress may be given\)")
    refused(["--resume", str(out), "--out", str(out)], "leave out --out")
    refused(["--resume", str(out), "--epochs", "1"], "has trained 2 epochs already")
    refused(["--resume", str(tmp_path / "nowhere")], "no such folder")
    (tmp_path / "empty").mkdir()
    refused(["--resume", str(tmp_path / "empty")], "holds no run to continue")
    # a model saved with pyfa.save has no training state
    plain = tmp_path / "plain"
    checkpoint.save(plain / "model.npz", checkpoint.load(out / "model.npz"))
    refused(["--resume", str(plain)], "holds a model but no training state")
    # a run whose backend cannot save its optimiser state (Julia's), written by hand
    state = checkpoint.read_training(out / "model.npz")
    state.info["runner"] = None
    julia_run = tmp_path / "julia"
    checkpoint.save(julia_run / "model.npz", checkpoint.load(out / "model.npz"),
                    checkpoint.read_meta(out / "model.npz")["meta"], training=state)
    refused(["--resume", str(julia_run)], "cannot resume yet")
    # the data changed since the run started
    with np.load(data) as z:
        arrays = dict(z)
    arrays["x_train"][0, 0] += 1
    np.savez(data, **arrays)
    refused(["--resume", str(out)], "not those the run started with")
    # nothing left to train is no error
    tiny_npz(data)  # the original data again
    assert pyfa.cli.main(["train", "--resume", str(out)]) == 0
    assert "has trained all its 2 epochs: nothing to resume" in capsys.readouterr().err


# ------------------------------------------------------------------------------ non-finite loss


def test_a_diverging_run_stops_with_status_1_and_keeps_the_last_finite_epoch(tmp_path, capsys):
    """It used to log `loss nan` every epoch, exit 0, save NaN weights and draw empty plots.
    (MSE: its gradient grows with the outputs, so a too-large step diverges; cross-entropy's is
    bounded, and the same step only saturates the softmax.)"""
    out = tmp_path / "run"
    rc = pyfa.cli.main(["train", "--optimizer", "sgd", "--lr", "50", "--hidden", "32", "--loss",
                        "mse", "--epochs", "3", "--batch-size", "64", "--out", str(out),
                        "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1, err
    m = re.search(r"pyfa train: the training loss became (nan|inf|-inf) at epoch (\d+), minibatch "
                  r"\d+ of 22: training stopped; kept epoch (\d+).*, the last finite one, in "
                  rf"{re.escape(str(out))}\. The learning rate \(lr 50\) is probably too large", err)
    assert m, err
    stopped, kept = int(m.group(2)), int(m.group(3))
    assert kept == stopped - 1 and sorted(os.listdir(out)) == RUN_FILES
    h = History.from_json(out / "history.json")
    assert h.epochs == kept == saved_epoch(out)
    assert all(np.isfinite(h.loss)) and all(np.isfinite(h.test_loss))
    for p in checkpoint.load(out / "model.npz"):
        assert np.isfinite(p.weight).all() and np.isfinite(p.bias).all()
    for png in ("curves.png", "alignment.png"):
        assert (out / png).stat().st_size > 10_000

    with pytest.raises(NonFiniteLoss, match="the training loss became") as e:
        train(optimizer="sgd", lr=50, hidden=(32,), epochs=3, batch_size=64, progress=False,
              loss="mse")
    assert e.value.epoch == stopped and e.value.history.epochs == kept


# ------------------------------------------------------------------------------- claiming --out


def test_a_folder_in_use_is_refused_even_with_force(tmp_path, capsys):
    out = tmp_path / "run"
    folder = RunFolder.claim(out, ["fa"])  # as a run in progress holds it
    try:
        for extra in ([], ["--force"]):
            rc = pyfa.cli.main(["train", "--epochs", "1", "--out", str(out), *RUN, *extra])
            err = capsys.readouterr().err
            assert rc == 2, err
            assert f"pyfa train: --out {out} is in use by another pyfa train (pid {os.getpid()}" in err
        assert os.listdir(out) == [LOCK_NAME]
    finally:
        folder.release()
    assert os.listdir(out) == []
    assert pyfa.cli.main(["train", "--epochs", "1", "--out", str(out), *RUN]) == 0
    capsys.readouterr()
    folder = RunFolder.claim(out, ["fa"], resume=True)
    try:
        assert pyfa.cli.main(["train", "--resume", str(out), "--epochs", "2"]) == 2
        assert "is in use by another pyfa train" in capsys.readouterr().err
    finally:
        folder.release()


def test_two_runs_started_at_once_on_one_folder_one_is_refused(tmp_path):
    """Both used to pass the empty-folder check, and the second overwrote the first."""
    data = tiny_npz(tmp_path / "data.npz")
    out = tmp_path / "run"
    procs = [child(["train", "--dataset", str(data), "--hidden", "8", "--epochs", "3", "--seed",
                    str(seed), "--out", str(out), "--no-progress"]) for seed in (1, 2)]
    results = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    codes = sorted(rc for rc, _ in results)
    assert codes == [0, 2], results
    loser = next(err for rc, err in results if rc == 2)
    assert re.search(rf"--out {re.escape(str(out))} (is in use by another pyfa train|is not empty)",
                     loser), loser
    winner = next(seed for (rc, _), seed in zip(results, (1, 2), strict=True) if rc == 0)
    h = History.from_json(out / "history.json")
    assert h.config["seed"] == winner and h.epochs == 3 and saved_epoch(out) == 3
    assert sorted(os.listdir(out)) == RUN_FILES


def test_an_interrupted_lenet_run_resumes_exactly(tmp_path, capsys, monkeypatch):
    """LeNet's checkpoint is its state dict (with kp's learnt feedback): resume continues bit for
    bit. On digits (8×8 images, zero-padded to 32×32), 3 epochs of 11 minibatches."""
    out = tmp_path / "lenet"
    argv = ["train", "--model", "lenet", "--mode", "kp", "--epochs", "3", "--seed", "1",
            "--batch-size", "128", "--no-progress"]
    signal_at_step(monkeypatch, 15, signal.SIGINT)  # minibatch 4 of epoch 2
    assert pyfa.cli.main([*argv, "--out", str(out)]) == 130
    assert saved_epoch(out) == 1 and "model" in checkpoint.read_meta(out / "model.npz")
    monkeypatch.undo()
    assert pyfa.cli.main(["train", "--resume", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    want, model = train(model="lenet", mode="kp", epochs=3, seed=1, batch_size=128,
                        progress=False)
    assert History.from_json(out / "history.json").same_curves(want)
    got = checkpoint.read_state_arrays(out / "model.npz")
    for k, v in model.state_dict().items():
        assert np.array_equal(got[k], v.numpy()), k
