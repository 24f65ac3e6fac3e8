"""Checkpoints: exact round trips (weights AND feedback), atomic writes, refusing wrong shapes."""

import os
import warnings

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
    with pytest.raises(CheckpointError, match="not a readable .npz"):
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
