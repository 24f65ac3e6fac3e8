"""Checkpoints: exact round trips (weights AND feedback), atomic writes, refusing wrong shapes."""

import os
import warnings
import zipfile

import numpy as np
import pytest
import torch

from pyfa import checkpoint
from pyfa.checkpoint import CheckpointError, load, load_into, read_meta, save
from pyfa.network import DenseParams, init_mlp
from pyfa.torch import LinearFA, mlp_from_params, params_from_mlp


def scrambled(sizes, seed, dtype=np.float32, bias=True):
    """init_mlp with non-zero biases, so that nothing is trivially zero."""
    layers = init_mlp(sizes, "tanh", seed=seed, dtype=dtype, bias=bias)
    rng = np.random.default_rng(seed + 100)
    for p in layers:
        if p.bias is not None:
            p.bias[:] = rng.normal(size=p.bias.shape)
    return layers


def assert_same_layers(a, b):
    assert len(a) == len(b)
    for p, q in zip(a, b, strict=True):
        for k in ("weight", "feedback", "bias"):
            x, y = getattr(p, k), getattr(q, k)
            if x is None:
                assert y is None
            else:
                assert x.dtype == y.dtype and np.array_equal(x, y), k
        assert p.activation == q.activation


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numpy_round_trip_is_exact(tmp_path, dtype):
    layers = scrambled([5, 7, 3], 0, dtype)
    layers[1].activation = "sigmoid"
    layers.append(DenseParams(np.ones((2, 3), dtype), np.full((2, 3), -0.5, dtype), None, "relu"))
    path = save(tmp_path / "m.npz", layers, {"note": "hello", "epochs": 3}, mode="frsf")
    assert path == tmp_path / "m.npz"
    back = load(path)
    assert_same_layers(layers, back)
    meta = read_meta(path)
    assert meta["sizes"] == [5, 7, 3, 2] and meta["mode"] == "frsf"
    assert meta["activations"] == ["tanh", "sigmoid", "relu"]
    assert meta["bias"] == [True, True, False] and meta["dtype"] == np.dtype(dtype).name
    assert meta["meta"] == {"note": "hello", "epochs": 3}
    from pyfa import __version__

    assert meta["pyfa_version"] == __version__
    # plain numpy can read it without pickle
    with np.load(path, allow_pickle=False) as z:
        assert np.array_equal(z["layer0.feedback"], layers[0].feedback)


def test_torch_round_trip_is_exact(tmp_path):
    model = mlp_from_params(scrambled([6, 8, 4], 1), "fa")
    # train a little so the weights are not the initial ones
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(16, 6, generator=torch.Generator().manual_seed(0)), torch.zeros(16, 4)
    for _ in range(3):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    save(tmp_path / "t.npz", model)
    assert read_meta(tmp_path / "t.npz")["mode"] == "fa"
    back = load(tmp_path / "t.npz", backend="torch")
    assert isinstance(back, torch.nn.Sequential)
    sd, sd2 = model.state_dict(), back.state_dict()
    assert sd.keys() == sd2.keys()
    for k in sd:
        assert torch.equal(sd[k], sd2[k]), k
    assert any("feedback" in k for k in sd)
    assert [m.mode for m in back if isinstance(m, LinearFA)] == ["fa", "fa"]
    assert torch.equal(model(x), back(x))
    # numpy view of the same file equals the torch model's parameters
    assert_same_layers(params_from_mlp(model), load(tmp_path / "t.npz"))
    # mode override and dtype conversion
    bp = load(tmp_path / "t.npz", backend="torch", mode="bp", dtype=np.float64)
    assert bp[0].mode == "bp" and bp[0].weight.dtype == torch.float64


def test_numpy_to_torch_and_back_is_exact(tmp_path):
    layers = scrambled([4, 5, 2], 2)
    save(tmp_path / "a.npz", layers, mode="usf")
    model = load(tmp_path / "a.npz", backend="torch")
    assert model[0].mode == "usf"
    save(tmp_path / "b.npz", model)
    assert_same_layers(layers, load(tmp_path / "b.npz"))
    assert read_meta(tmp_path / "b.npz")["mode"] == "usf"


def files_in(d):
    return sorted(os.listdir(d))


@pytest.mark.parametrize("where", ["savez", "replace", "interrupt"])
def test_interrupted_save_leaves_old_file_and_no_temp(tmp_path, monkeypatch, where):
    path = tmp_path / "model.npz"
    save(path, scrambled([3, 4, 2], 0))
    before = path.read_bytes()
    new = scrambled([3, 4, 2], 9)

    real_savez = np.savez

    def savez_then_fail(f, **arrays):
        real_savez(f, **arrays)  # a complete write to the temporary file...
        f.write(b"half")  # ...and then a failure mid-way
        raise OSError("disk full")

    if where == "savez":
        monkeypatch.setattr(checkpoint.np, "savez", savez_then_fail)
        err = OSError
    elif where == "replace":
        def fail_replace(src, dst):
            assert os.path.exists(src)  # the new file was fully written before the rename
            raise OSError("rename failed")

        monkeypatch.setattr(checkpoint.os, "replace", fail_replace)
        err = OSError
    else:
        def interrupted(f, **arrays):
            f.write(b"PK\x03\x04 partial")
            raise KeyboardInterrupt

        monkeypatch.setattr(checkpoint.np, "savez", interrupted)
        err = KeyboardInterrupt
    with pytest.raises(err):
        save(path, new)
    assert path.read_bytes() == before
    assert files_in(tmp_path) == ["model.npz"]
    assert_same_layers(load(path), scrambled([3, 4, 2], 0))


def test_interrupted_first_save_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint.os, "replace", lambda s, d: (_ for _ in ()).throw(OSError("x")))
    with pytest.raises(OSError):
        save(tmp_path / "new.npz", scrambled([2, 2], 0))
    assert files_in(tmp_path) == []


def test_save_overwrites_and_is_readable_by_others(tmp_path):
    path = tmp_path / "m.npz"
    save(path, scrambled([3, 2], 0))
    save(path, scrambled([3, 2], 1))
    assert_same_layers(load(path), scrambled([3, 2], 1))
    assert files_in(tmp_path) == ["m.npz"]
    assert path.stat().st_mode & 0o777 == 0o644


def snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_unchanged(model, snap):
    now = model.state_dict()
    assert now.keys() == snap.keys()
    for k in snap:
        assert torch.equal(now[k], snap[k]), k


def test_load_into_refuses_other_shapes_and_leaves_model_unchanged(tmp_path):
    save(tmp_path / "m.npz", scrambled([6, 8, 4], 0))
    other = mlp_from_params(scrambled([6, 9, 4], 5))
    snap = snapshot(other)
    msg = r"layer 0 weight has shape \(8, 6\) .* \(9, 6\)"
    with pytest.raises(CheckpointError, match=msg) as e:
        load_into(other, tmp_path / "m.npz")
    assert "m.npz" in str(e.value)
    assert_unchanged(other, snap)

    deeper = mlp_from_params(scrambled([6, 8, 8, 4], 5))
    snap = snapshot(deeper)
    with pytest.raises(CheckpointError, match="has 2 layers .* model has 3 LinearFA layers"):
        load_into(deeper, tmp_path / "m.npz")
    assert_unchanged(deeper, snap)

    # the last layer differs only: nothing is copied into the first one either
    last = mlp_from_params(scrambled([6, 8, 5], 5))
    snap = snapshot(last)
    with pytest.raises(CheckpointError, match=r"layer 1 weight has shape \(4, 8\)"):
        load_into(last, tmp_path / "m.npz")
    assert_unchanged(last, snap)

    no_bias = mlp_from_params(scrambled([6, 8, 4], 5, bias=False))
    snap = snapshot(no_bias)
    with pytest.raises(CheckpointError, match="layer 0 has bias but the model's layer 0"):
        load_into(no_bias, tmp_path / "m.npz")
    assert_unchanged(no_bias, snap)

    relu = scrambled([6, 8, 4], 5)
    relu[0].activation = "relu"
    relu_model = mlp_from_params(relu)
    snap = snapshot(relu_model)
    with pytest.raises(CheckpointError, match="layer 0 has activation 'tanh' .* 'relu'"):
        load_into(relu_model, tmp_path / "m.npz")
    assert_unchanged(relu_model, snap)

    with pytest.raises(TypeError, match="PyTorch model"):
        load_into(scrambled([6, 8, 4], 0), tmp_path / "m.npz")


def test_load_into_copies_weights_and_feedback(tmp_path):
    src = scrambled([6, 8, 4], 0)
    save(tmp_path / "m.npz", src)
    model = mlp_from_params(scrambled([6, 8, 4], 7), mode="bp")
    assert load_into(model, tmp_path / "m.npz") is model
    assert_same_layers(params_from_mlp(model), src)
    assert model[0].mode == "bp"  # the model keeps its own mode


def test_load_rejects_non_checkpoints(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load(tmp_path / "nope.npz")
    np.savez(tmp_path / "plain.npz", w=np.zeros(3))
    with pytest.raises(CheckpointError, match="not a pyfa checkpoint"):
        load(tmp_path / "plain.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    with pytest.raises(CheckpointError, match="junk.npz' is not a pyfa checkpoint: not an .npz"):
        load(tmp_path / "junk.npz")
    good = tmp_path / "good.npz"
    save(good, scrambled([3, 2], 0))
    truncated = tmp_path / "trunc.npz"
    truncated.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    with pytest.raises(CheckpointError):
        load(truncated)
    with pytest.raises(ValueError, match="unknown backend"):
        load(good, backend="jax")
    with pytest.raises(TypeError, match="expected a list of DenseParams"):
        save(tmp_path / "x.npz", {"weight": 1})
    with pytest.raises(TypeError, match="JSON"):
        save(tmp_path / "x.npz", scrambled([3, 2], 0), {"bad": object()})


def test_save_refuses_a_custom_module_with_what_it_accepts(tmp_path):
    from pyfa.torch import convert

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = torch.nn.Linear(4, 3), torch.nn.Linear(3, 2)

        def forward(self, x):
            return self.b(torch.relu(self.a(x)))

    net = Net()
    convert(net)
    with pytest.raises(TypeError, match=r"cannot save a Net .*save accepts a list of DenseParams, "
                                        r"an nn.Sequential of LinearFA .*JuliaChain"):
        save(tmp_path / "net.npz", net)
    assert files_in(tmp_path) == []


def test_save_refuses_mixed_modes_unless_one_is_given(tmp_path):
    model = mlp_from_params(scrambled([4, 5, 2], 0), "fa")
    model[2].mode = "bp"
    with pytest.raises(ValueError, match=r"different modes \['fa', 'bp'\].*pass mode="):
        save(tmp_path / "m.npz", model)
    assert files_in(tmp_path) == []
    save(tmp_path / "m.npz", model, mode="bp")  # an explicit choice is recorded
    assert read_meta(tmp_path / "m.npz")["mode"] == "bp"


def rewrite(path, header=None, drop=(), **extra):
    """Rewrite the checkpoint at `path` with `header` (JSON text or a function of the header dict)
    as __meta__, without the arrays in `drop` and with the `extra` arrays."""
    import json

    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files if k not in drop}
    if callable(header):
        info = json.loads(str(arrays["__meta__"][()]))
        header(info)
        header = json.dumps(info)
    if header is not None:
        arrays["__meta__"] = np.array(header)
    np.savez(path, **arrays, **extra)


@pytest.mark.parametrize(
    "header, match",
    [
        ("{not json", "header is not valid JSON"),
        ("[1, 2]", "header is a JSON list, not an object"),
        (lambda h: h.pop("activations"), "the header lacks 'activations'"),
        (lambda h: h.update(activations="tanh"), "'activations' must be a list of str"),
        (lambda h: h.update(bias=[1, 1]), "'bias' must be a list of bool"),
        (lambda h: h.update(sizes=[3, "4", 2]), "'sizes' must be a list of int"),
        (lambda h: h.update(meta=[]), "'meta' must be a dict"),
        (lambda h: h.update(format_version="1"), "format_version must be an integer"),
        (lambda h: h.update(bias=[True]), "1 bias flags"),
    ],
)
def test_malformed_header_is_a_checkpoint_error(tmp_path, header, match):
    path = tmp_path / "m.npz"
    save(path, scrambled([3, 4, 2], 0))
    rewrite(path, header)
    for read in (load, read_meta):
        with pytest.raises(CheckpointError, match=match) as e:
            read(path)
        assert "m.npz" in str(e.value)


def test_arrays_must_match_the_header_exactly(tmp_path):
    path = tmp_path / "m.npz"
    save(path, scrambled([3, 4, 5, 2], 0))

    def two_layers(h):  # a header that lists fewer layers than the file holds
        h.update(sizes=[3, 4, 5], activations=["tanh", "tanh"], bias=[True, True])

    rewrite(path, two_layers)
    with pytest.raises(CheckpointError, match=r"m.npz.*2 layers.*not in the header \['layer2.bias', "
                                              r"'layer2.feedback', 'layer2.weight'\]"):
        load(path)
    save(path, scrambled([3, 4, 2], 0))
    rewrite(path, drop=["layer1.feedback"])
    with pytest.raises(CheckpointError, match=r"missing arrays \['layer1.feedback'\]"):
        load(path)
    save(path, scrambled([3, 4, 2], 0))
    rewrite(path, **{"layer0.extra": np.zeros(2)})
    with pytest.raises(CheckpointError, match=r"not in the header \['layer0.extra'\]"):
        load(path)


def test_load_into_warns_when_it_casts(tmp_path):
    save(tmp_path / "m64.npz", scrambled([6, 8, 4], 0, np.float64))
    model = mlp_from_params(scrambled([6, 8, 4], 7))  # float32
    with pytest.warns(UserWarning, match="m64.npz.* holds float64 arrays .* layers are float32"):
        load_into(model, tmp_path / "m64.npz")
    assert model[0].weight.dtype == torch.float32
    save(tmp_path / "m32.npz", scrambled([6, 8, 4], 0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_into(model, tmp_path / "m32.npz")  # same dtype: no warning


# ---------------------------------------------- every unreadable file is a CheckpointError naming it


def test_a_text_file_named_npz_gets_no_pickle_advice(tmp_path):
    path = tmp_path / "model.npz"
    path.write_text("this is not a checkpoint\n")
    with pytest.raises(CheckpointError) as e:
        load(path)
    assert "model.npz" in str(e.value) and "not an .npz (zip) archive" in str(e.value)
    assert "pickle" not in str(e.value)  # numpy says to load it "unsafely with allow_pickle"


@pytest.mark.parametrize("where", ["weight", "meta"])
def test_a_bit_flipped_checkpoint_is_a_checkpoint_error_naming_the_file(tmp_path, where):
    path = tmp_path / "m.npz"
    save(path, scrambled([6, 8, 4], 0))
    member = "layer0.weight.npy" if where == "weight" else "__meta__.npy"
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(member)
    # a bit flipped near the end of the member's (stored, uncompressed) bytes: its CRC fails
    offset = info.header_offset + 30 + len(info.filename) + len(info.extra) + info.file_size - 5
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"m.npz.* damaged"):  # was a raw BadZipFile
        load(path)


def test_object_arrays_are_a_checkpoint_error(tmp_path):
    path = tmp_path / "m.npz"
    save(path, scrambled([3, 2], 0))
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["layer0.bias"] = np.array([1, "x"], dtype=object)
    np.savez(path, **arrays)
    with pytest.raises(CheckpointError, match=r"m.npz': array 'layer0.bias' holds Python objects"):
        load(path)  # was a raw ValueError


def test_load_dtype_takes_torch_dtypes_and_names(tmp_path):
    path = save(tmp_path / "m.npz", scrambled([3, 4, 2], 0))
    for dt in (torch.float64, "float64", np.float64):  # torch.float64 used to fail in numpy
        assert load(path, dtype=dt)[0].weight.dtype == np.float64
    model = load(path, backend="torch", dtype=torch.float64)
    assert model[0].weight.dtype == torch.float64
    for bad in (torch.float16, "int32", np.int64, "bogus"):
        with pytest.raises(ValueError, match="dtype must be float32 or float64"):
            load(path, dtype=bad)


def test_load_device_cuda_without_cuda_is_a_clear_error(tmp_path, monkeypatch):
    path = save(tmp_path / "m.npz", scrambled([3, 4, 2], 0))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"load: device 'cuda': CUDA is not available here"):
        load(path, backend="torch", device="cuda")  # was a raw AssertionError from torch
    with pytest.raises(ValueError, match="load: device 'bogus' is not a torch device"):
        load(path, backend="torch", device="bogus")
    with pytest.raises(ValueError, match="device='cpu' applies to backend='torch' only"):
        load(path, device="cpu")


def test_a_folder_is_not_said_to_be_missing(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(CheckpointError, match="run' is a folder, not a file; give the checkpoint"):
        load(run)
    save(run / "model.npz", scrambled([3, 2], 0))
    with pytest.raises(CheckpointError, match=r"is a folder, not a file; it holds '.*run/model.npz'"):
        load(run)


def test_header_sizes_that_contradict_the_arrays_are_refused(tmp_path):
    path = tmp_path / "m.npz"
    save(path, scrambled([3, 4, 2], 0))
    rewrite(path, lambda h: h.update(sizes=[3, 5, 2]))
    with pytest.raises(CheckpointError, match=r"m.npz.* sizes \[3, 5, 2\] contradict the arrays, "
                                              r"whose shapes give sizes \[3, 4, 2\]"):
        load(path)
    save(path, scrambled([3, 4, 2], 0))
    rewrite(path, lambda h: h.update(dtype="float64"))
    with pytest.raises(CheckpointError, match="dtype 'float64' contradicts the arrays"):
        load(path)


def test_training_state_round_trip_and_format_versions(tmp_path):
    from pyfa.checkpoint import TrainingState, read_training

    layers = scrambled([3, 4, 2], 0)
    plain = save(tmp_path / "plain.npz", layers)
    assert read_meta(plain)["format_version"] == 1 and read_training(plain) is None
    state = TrainingState({"epoch": 3, "rng": {"state": 2**100}},
                          {"opt.m": np.arange(4.0), "gen": np.arange(5, dtype=np.uint8)})
    path = save(tmp_path / "t.npz", layers, training=state)
    assert read_meta(path)["format_version"] == 2
    back = read_training(path)
    assert back.info == state.info and back.info["rng"]["state"] == 2**100
    assert set(back.arrays) == {"opt.m", "gen"} and back.arrays["gen"].dtype == np.uint8
    assert np.array_equal(back.arrays["opt.m"], np.arange(4.0))
    assert_same_layers(load(path), layers)  # the model loads as ever
    rewrite(path, drop=["training.gen"])
    with pytest.raises(CheckpointError, match=r"missing arrays \['training.gen'\]"):
        load(path)
    with pytest.raises(ValueError, match="training array name 'a b'"):
        save(tmp_path / "x.npz", layers, training=TrainingState({}, {"a b": np.zeros(1)}))


# --------------------------------------------------------------- DFA matrices, kp's learnt feedback


def test_dfa_matrices_round_trip_and_are_never_dropped(tmp_path):
    from pyfa.torch import DFASequential

    layers = init_mlp([6, 5, 4, 3], "tanh", seed=2, direct_feedback=True)
    path = save(tmp_path / "dfa.npz", layers, mode="dfa")
    info = read_meta(path)
    assert info["format_version"] == 3 and info["direct_feedback"] == [True, True, False]
    back = load(path)
    assert_same_layers(back, layers)
    for p, q in zip(back, layers, strict=True):
        assert (p.direct_feedback is None) == (q.direct_feedback is None)
        if q.direct_feedback is not None:
            assert np.array_equal(p.direct_feedback, q.direct_feedback)
    model = load(path, backend="torch")
    assert isinstance(model, DFASequential)  # the saved mode, dfa, with the saved matrices
    for i in range(2):
        assert np.array_equal(model.direct_feedback_of(i).numpy(), layers[i].direct_feedback)
    # a DFASequential saved from torch: mode dfa, its matrices, read back bit for bit
    again = save(tmp_path / "again.npz", model)
    assert read_meta(again)["mode"] == "dfa"
    for p, q in zip(load(again), layers, strict=True):
        if q.direct_feedback is not None:
            assert np.array_equal(p.direct_feedback, q.direct_feedback)


def test_load_into_a_dfa_model_fills_its_matrices_or_refuses(tmp_path):
    layers = init_mlp([6, 5, 3], "relu", seed=1, direct_feedback=True)
    path = save(tmp_path / "dfa.npz", layers, mode="dfa")
    other = mlp_from_params(init_mlp([6, 5, 3], "relu", seed=9, direct_feedback=True), "dfa")
    load_into(other, path)
    assert np.array_equal(other.direct_feedback_of(0).numpy(), layers[0].direct_feedback)
    assert np.array_equal(other[0].weight.detach().numpy(), layers[0].weight)
    plain = save(tmp_path / "plain.npz", init_mlp([6, 5, 3], "relu", seed=1))
    target = mlp_from_params(init_mlp([6, 5, 3], "relu", seed=9, direct_feedback=True), "dfa")
    before = target.direct_feedback.clone()
    with pytest.raises(CheckpointError, match="needs a DFA matrix \\(3, 5\\), but the checkpoint's "
                       "layer 0 has none"):
        load_into(target, plain)
    assert torch.equal(target.direct_feedback, before)


def test_a_header_that_lies_about_dfa_matrices_is_refused(tmp_path):
    layers = init_mlp([4, 3, 2], "relu", seed=0, direct_feedback=True)
    path = save(tmp_path / "dfa.npz", layers, mode="dfa")
    with np.load(path) as z:
        arrays = dict(z)
    del arrays["layer0.direct_feedback"]
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(CheckpointError, match=r"missing arrays \['layer0.direct_feedback'\]"):
        load(tmp_path / "bad.npz")


def test_kp_feedback_is_saved_and_trainable_again_after_load(tmp_path):
    layers = init_mlp([5, 4, 3], "relu", seed=3)
    model = mlp_from_params(layers, "kp")
    with torch.no_grad():
        model[0].feedback.add_(1.0)  # as training would have changed it
    path = save(tmp_path / "kp.npz", model)
    assert read_meta(path)["mode"] == "kp"
    back = load(path, backend="torch")
    assert isinstance(back[0].feedback, torch.nn.Parameter)  # trainable again in kp
    assert torch.equal(back[0].feedback, model[0].feedback)


# ------------------------------------------------------------------- LeNet: a state-dict checkpoint


def lenet(mode="fa", seed=0):
    from pyfa.train.models import lenet_spec
    from pyfa.train.torch_models import cnn_from_spec

    return cnn_from_spec(lenet_spec((1, 28, 28), 10, seed=seed), mode, (1, 28, 28),
                         architecture="lenet")


@pytest.mark.parametrize("mode", ["fa", "kp", "brsf"])
def test_lenet_round_trip_through_its_state_dict(tmp_path, mode):
    model = lenet(mode)
    x = torch.rand(4, 784)
    model(x).sum().backward()  # brsf: advances its draw counters, which must come back too
    path = save(tmp_path / "lenet.npz", model, {"note": "x"})
    info = read_meta(path)
    assert info["format_version"] == 3 and info["mode"] == mode and info["meta"] == {"note": "x"}
    assert info["model"] == {"name": "lenet", "input_shape": [1, 28, 28], "classes": 10,
                             "activation": "relu"}
    back = load(path, backend="torch")
    assert type(back).__name__ == "CNN" and back.input_shape == (1, 28, 28)
    for (k, a), (k2, b) in zip(model.state_dict().items(), back.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(a, b), k
    with torch.no_grad():
        assert torch.equal(back(x), model(x))
    with pytest.raises(CheckpointError, match="load it with backend='torch'"):
        load(path)


def test_lenet_load_into_checks_every_tensor_first(tmp_path):
    model = lenet(seed=1)
    path = save(tmp_path / "lenet.npz", model)
    target = lenet(seed=2)
    load_into(target, path)
    assert torch.equal(target[1].weight, model[1].weight)
    wrong = lenet(seed=3)
    wrong[-1] = LinearFA(84, 7)  # another number of classes
    before = {k: v.clone() for k, v in wrong.state_dict().items()}
    with pytest.raises(CheckpointError, match=r"12\.(bias|weight|feedback) has shape \(10,"):
        load_into(wrong, path)
    assert all(torch.equal(before[k], v) for k, v in wrong.state_dict().items())


def test_lenet_checkpoint_without_its_state_keys_is_refused(tmp_path):
    import json

    path = save(tmp_path / "lenet.npz", lenet())
    with np.load(path) as z:
        arrays = dict(z)
    info = json.loads(str(arrays["__meta__"][()]))
    del info["state_keys"]
    arrays["__meta__"] = np.array(json.dumps(info))
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(CheckpointError, match="names a model but lacks 'state_keys'"):
        load(tmp_path / "bad.npz", backend="torch")
