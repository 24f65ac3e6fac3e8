"""Bundled datasets (no download) and user arrays: shapes, dtypes, splits, and clear errors."""

import os
import socket
import warnings

import numpy as np
import pytest

from pyfa.data import (
    DATASETS,
    MAX_CLASSES,
    Dataset,
    DatasetError,
    from_arrays,
    load_dataset,
    one_hot,
)


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test: datasets must not download."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"a dataset tried to use the network: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_digits_split_shapes_and_scaling(no_network):
    d = load_dataset("digits")
    assert isinstance(d, Dataset) and d.name == "digits" and d.task == "classification"
    assert d.x_train.shape == (1347, 64) and d.x_test.shape == (450, 64)
    assert d.y_train.shape == (1347, 10) and d.y_test.shape == (450, 10)
    assert d.n_classes == 10 and d.n_features == 64 and d.n_outputs == 10
    for a in (d.x_train, d.y_train, d.x_test, d.y_test):
        assert a.dtype == np.float32 and a.flags.c_contiguous
    assert d.x_train.min() == 0.0 and d.x_train.max() == 1.0  # pixels 0..16 divided by 16
    assert np.all(d.x_test <= 1.0) and np.all(d.x_test >= 0.0)
    # one-hot rows, labels recoverable
    assert set(np.unique(d.y_train)) == {0.0, 1.0} and np.all(d.y_train.sum(1) == 1)
    assert np.array_equal(d.labels_train, d.y_train.argmax(1))
    # stratified: every class's test share is within one sample of 25 %
    counts_tr = np.bincount(d.labels_train, minlength=10)
    counts_te = np.bincount(d.labels_test, minlength=10)
    total = counts_tr + counts_te
    assert np.all(np.abs(counts_te - 0.25 * total) <= 1.0), (counts_te, total)


def test_digits_split_is_fixed():
    a, b = load_dataset("digits"), load_dataset("digits")
    for k in ("x_train", "y_train", "x_test", "y_test"):
        assert np.array_equal(getattr(a, k), getattr(b, k))
    c = load_dataset("digits", seed=1)
    assert not np.array_equal(a.x_test, c.x_test)


def test_forum_regression(no_network):
    d = load_dataset("forum")
    assert d.task == "regression" and d.n_classes is None
    assert d.x_train.shape == (2048, 50) and d.y_train.shape == (2048, 2)
    assert d.x_test.shape == (512, 50) and d.y_test.shape == (512, 2)
    assert all(a.dtype == np.float32 for a in (d.x_train, d.y_train, d.x_test, d.y_test))
    # targets standardised on the training set
    np.testing.assert_allclose(d.y_train.std(0), 1.0, atol=0.01)
    np.testing.assert_allclose(d.y_train.mean(0), 0.0, atol=0.01)
    again = load_dataset("forum")
    assert np.array_equal(d.y_test, again.y_test)
    assert not np.array_equal(d.y_train, load_dataset("forum", seed=3).y_train)
    with pytest.raises(ValueError, match="regression"):
        d.labels_train  # noqa: B018


def test_forum_targets_are_a_learnable_nonlinear_function():
    d = load_dataset("forum")
    # a linear fit explains part of the variance but not all: the teacher is nonlinear
    X = np.c_[d.x_train, np.ones(len(d.x_train))]
    coef, *_ = np.linalg.lstsq(X, d.y_train, rcond=None)
    Xt = np.c_[d.x_test, np.ones(len(d.x_test))]
    mse_linear = np.mean((Xt @ coef - d.y_test) ** 2)
    assert 0.05 < mse_linear < 0.9, mse_linear


def test_from_arrays_integer_labels_become_one_hot():
    rng = np.random.default_rng(0)
    x, xt = rng.normal(size=(20, 3)), rng.normal(size=(6, 3))
    y, yt = np.arange(20) % 4, np.array([0, 1, 2, 3, 3, 1])
    d = from_arrays(x, y, xt, yt)
    assert d.n_classes == 4 and d.y_train.shape == (20, 4) and d.y_train.dtype == np.float32
    assert d.x_train.dtype == np.float32
    assert np.array_equal(d.labels_train, y) and np.array_equal(d.labels_test, yt)
    d5 = from_arrays(x, y, xt, yt, n_classes=5, name="mine")
    assert d5.y_test.shape == (6, 5) and d5.name == "mine"


def test_from_arrays_regression_targets():
    rng = np.random.default_rng(1)
    d = from_arrays(rng.normal(size=(10, 2)), rng.normal(size=10), rng.normal(size=(4, 2)),
                    rng.normal(size=4), task="regression")
    assert d.task == "regression" and d.y_train.shape == (10, 1) and d.y_test.shape == (4, 1)
    d2 = from_arrays(rng.normal(size=(10, 2)), rng.normal(size=(10, 3)),
                     rng.normal(size=(4, 2)), rng.normal(size=(4, 3)), task="regression")
    assert d2.n_outputs == 3 and d2.n_classes is None
    # integer targets are fine for a regression, when asked for
    d3 = from_arrays(np.zeros((4, 2)), np.arange(4) * 7, np.zeros((2, 2)), np.array([50, 3]),
                     task="regression")
    assert d3.task == "regression" and d3.y_test[0, 0] == 50.0


def test_from_arrays_one_hot_float_with_n_classes():
    y = one_hot(np.array([0, 2, 1]), 3)
    d = from_arrays(np.zeros((3, 2)), y, np.zeros((3, 2)), y, n_classes=3)
    assert d.task == "classification"
    with pytest.raises(ValueError, match="one-hot"):
        from_arrays(np.zeros((3, 2)), y * 2, np.zeros((3, 2)), y, n_classes=3)


@pytest.mark.parametrize(
    "change, exc, match",
    [
        (dict(x_train=[[1.0, 2.0]]), TypeError, "x_train must be a numpy array"),
        (dict(x_train=np.array([["a", "b"]] * 4)), TypeError, "x_train must hold real numbers"),
        (dict(x_test=np.zeros((2, 5))), ValueError, "x_train has 3 features"),
        (dict(x_train=np.zeros(4)), ValueError, r"x_train must be 2-d .* shape \(4,\)"),
        (dict(y_train=np.zeros(3, dtype=int)), ValueError, "y_train has 3 rows"),
        (dict(y_test=np.zeros((2, 1))), ValueError, "disagree in shape"),
        (dict(y_train=np.array([0, 1, -1, 0])), ValueError, "labels must be >= 0"),
        (dict(x_test=np.array([[np.nan, 0, 0], [0, 0, 0]])), ValueError, "x_test contains NaN"),
        (dict(y_test=np.array([0.5, 1.0])), TypeError, "y_test holds floats"),
        (dict(x_test=np.zeros((0, 3)), y_test=np.zeros(0, dtype=int)), ValueError, "empty"),
        # finite as float64 but not as float32: checked after the cast, naming the array
        (dict(x_train=np.full((4, 3), 1e300)), ValueError, "x_train contains NaN or infinity once"),
        (dict(y_train=np.array([0.0, 1e300, 0.0, 0.0]), y_test=np.array([0.5, 1.0]),
              task="regression"),
         ValueError, "y_train contains NaN or infinity once converted to float32 .*float64"),
        (dict(x_train=np.array(1.0)), ValueError, "x_train must be an array of samples, got a 0-d"),
        (dict(y_test=np.array(1)), ValueError, "y_test must be an array of samples, got a 0-d"),
    ],
)
def test_from_arrays_rejects_bad_input(change, exc, match):
    args = dict(
        x_train=np.zeros((4, 3)), y_train=np.array([0, 1, 2, 0]),
        x_test=np.zeros((2, 3)), y_test=np.array([1, 2]),
    )
    args.update(change)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a clear error, not a numpy overflow warning first
        with pytest.raises(exc, match=match):
            from_arrays(**args)


def test_from_arrays_label_beyond_n_classes():
    with pytest.raises(ValueError, match="class label 2 in y_train but n_classes=2"):
        from_arrays(np.zeros((3, 1)), np.array([0, 1, 2]), np.zeros((1, 1)), np.array([0]),
                    n_classes=2)


def test_load_dataset_npz_and_unknown(tmp_path):
    rng = np.random.default_rng(2)
    f = tmp_path / "toy.npz"
    np.savez(f, x_train=rng.normal(size=(8, 2)), y_train=np.arange(8) % 2,
             x_test=rng.normal(size=(3, 2)), y_test=np.array([0, 1, 1]))
    d = load_dataset(str(f))
    assert d.name == "toy" and d.n_classes == 2 and d.x_train.shape == (8, 2)
    np.savez(tmp_path / "bad.npz", x_train=np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"lacks array\(s\) \['y_train', 'x_test', 'y_test'\]"):
        load_dataset(str(tmp_path / "bad.npz"))
    with pytest.raises(FileNotFoundError):
        load_dataset(str(tmp_path / "missing.npz"))
    with pytest.raises(ValueError, match="unknown dataset 'mnist'"):
        load_dataset("mnist")
    assert DATASETS == ("digits", "mnist1d", "fashion-mnist", "forum")


# ------------------------------------------------------------------ labels: integers 0..K-1, bounded


def xy(n):
    return np.random.default_rng(n).normal(size=(n, 3))


def no_one_hot(monkeypatch):
    """A label check that comes too late would build the one-hot targets first: forbid it."""
    import pyfa.data

    def refuse(*args, **kwargs):
        raise AssertionError("one-hot targets were allocated before the labels were checked")

    monkeypatch.setattr(pyfa.data, "one_hot", refuse)


@pytest.mark.parametrize("big", [100_000, 10_000_000, 2**62])
def test_a_huge_label_is_refused_before_any_allocation(monkeypatch, big):
    """Used to build a 10M-class one-hot array (OOM at 24 GB), or a 100,001-output net silently."""
    no_one_hot(monkeypatch)
    y = np.arange(200) % 3
    y[17] = big
    with pytest.raises(ValueError, match=rf"y_train holds label {big}, which would make {big + 1} "
                                         r"classes for 200 training samples.*task='regression'"):
        from_arrays(xy(200), y, xy(5), np.zeros(5, dtype=int))


def test_classes_are_bounded_by_the_samples_and_the_cap(monkeypatch):
    no_one_hot(monkeypatch)
    y = np.arange(30)  # 30 classes for 30 samples: fine; 31 would not be
    assert from_arrays.__kwdefaults__["task"] is None  # classification unless asked otherwise
    with pytest.raises(ValueError, match="K <= the number of training samples"):
        from_arrays(xy(30), np.r_[y[:-1], 30], xy(2), np.array([0, 1]))
    n = MAX_CLASSES + 1
    with pytest.raises(ValueError, match=f"K <= {MAX_CLASSES}"):
        from_arrays(xy(n), np.arange(n), xy(2), np.array([0, 1]))
    with pytest.raises(ValueError, match="n_classes must be a whole number from 2 to"):
        from_arrays(xy(30), y, xy(2), np.array([0, 1]), n_classes=5000)


def test_test_labels_never_seen_in_training_are_refused(monkeypatch):
    no_one_hot(monkeypatch)
    y = np.arange(40) % 4
    with pytest.raises(ValueError, match=r"y_test holds label\(s\) \[7\] that never occur in y_train"):
        from_arrays(xy(40), y, xy(3), np.array([0, 7, 1]))
    # with n_classes given, class 3 may be absent from training, but then not from the test set
    no_three = np.where(y == 3, 4, y)
    with pytest.raises(ValueError, match=r"y_test holds label\(s\) \[3\]"):
        from_arrays(xy(40), no_three, xy(3), np.array([0, 3, 1]), n_classes=5)
    monkeypatch.undo()
    assert from_arrays(xy(40), no_three, xy(3), np.array([0, 4, 1]), n_classes=5).n_classes == 5


def test_training_labels_must_be_0_to_k_minus_1_each_present(monkeypatch):
    no_one_hot(monkeypatch)
    with pytest.raises(ValueError, match=r"labels \[2\] of 0..4 never occur"):
        from_arrays(xy(8), np.array([0, 1, 3, 4, 0, 1, 3, 4]), xy(2), np.array([0, 1]))
    with pytest.raises(ValueError, match=r"labels \[0\] of 0..3 never occur \(do the labels start "
                                         r"at 1\? subtract 1\)"):
        from_arrays(xy(6), np.array([1, 2, 3, 1, 2, 3]), xy(2), np.array([1, 2]))
    with pytest.raises(ValueError, match="a single class"):
        from_arrays(xy(6), np.zeros(6, dtype=int), xy(2), np.zeros(2, dtype=int))


@pytest.mark.parametrize("y", [np.array([0.0, 1.0] * 10), np.array([0, 1] * 10, dtype=np.float32)])
def test_float_labels_need_a_cast_or_task_regression(y):
    """Float 0/1 labels used to become a one-output regression without a word."""
    with pytest.raises(TypeError, match=r"y_train holds floats .* cast them \(y_train.astype"
                                        r"\(np.int64\)\).*task='regression'"):
        from_arrays(xy(20), y, xy(2), np.array([0.0, 1.0]))
    d = from_arrays(xy(20), y, xy(2), np.array([0.0, 1.0]), task="regression")
    assert d.task == "regression" and d.n_outputs == 1
    d = from_arrays(xy(20), y.astype(np.int64), xy(2), np.array([0, 1]))
    assert d.task == "classification" and d.n_classes == 2


def test_2d_float_targets_need_task_regression():
    with pytest.raises(TypeError, match=r"classification needs 1-d integer labels .*"
                                        r"task='regression'"):
        from_arrays(xy(10), xy(10), xy(2), xy(2))
    with pytest.raises(ValueError, match="unknown task 'regresion'"):
        from_arrays(xy(10), xy(10), xy(2), xy(2), task="regresion")
    with pytest.raises(ValueError, match="n_classes is for classification"):
        from_arrays(xy(10), xy(10), xy(2), xy(2), task="regression", n_classes=3)


def test_bundled_datasets_have_their_own_task():
    assert load_dataset("forum", task="regression").task == "regression"
    assert load_dataset("digits", task="classification").task == "classification"
    with pytest.raises(ValueError, match="dataset 'forum' is a regression task, not classification"):
        load_dataset("forum", task="classification")
    with pytest.raises(ValueError, match="unknown task"):
        load_dataset("digits", task="clustering")


def test_npz_regression_needs_task(tmp_path):
    f = tmp_path / "reg.npz"
    np.savez(f, x_train=xy(10), y_train=np.linspace(0, 1, 10), x_test=xy(3),
             y_test=np.array([0.1, 0.2, 0.3]))
    with pytest.raises(DatasetError, match=r"dataset file '.*reg.npz': y_train holds floats"):
        load_dataset(str(f))
    d = load_dataset(str(f), task="regression")
    assert d.task == "regression" and d.name == "reg"


# ---------------------------------------------------------------- .npz files: clear, never pickle


def test_a_text_file_named_npz_is_a_dataset_error_without_pickle_advice(tmp_path):
    f = tmp_path / "data.npz"
    f.write_text("x_train,y_train\n1,2\n")
    with pytest.raises(DatasetError) as e:
        load_dataset(str(f))
    msg = str(e.value)
    assert "data.npz" in msg and "not an .npz archive" in msg
    assert "pickle" not in msg  # numpy's advice was to load it "unsafely with allow_pickle"


def test_object_arrays_are_a_dataset_error(tmp_path):
    f = tmp_path / "obj.npz"
    np.savez(f, x_train=np.zeros((4, 2)), y_train=np.array([0, 1, "a", None], dtype=object),
             x_test=np.zeros((2, 2)), y_test=np.array([0, 1]))
    with pytest.raises(DatasetError, match=r"obj.npz': array 'y_train' holds Python objects") as e:
        load_dataset(str(f))
    assert "allow_pickle" not in str(e.value)


def test_a_damaged_npz_is_a_dataset_error_naming_the_file(tmp_path):
    f = tmp_path / "flip.npz"
    np.savez(f, x_train=np.zeros((40, 2)), y_train=np.arange(40) % 2, x_test=np.zeros((2, 2)),
             y_test=np.array([0, 1]))
    data = bytearray(f.read_bytes())
    data[300] ^= 0x10  # a bit flipped in x_train's bytes: its CRC no longer matches
    f.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match=r"flip.npz.* damaged"):
        load_dataset(str(f))
    (tmp_path / "folder.npz").mkdir()
    with pytest.raises(DatasetError, match="folder.npz' is a folder"):
        load_dataset(str(tmp_path / "folder.npz"))


# ----------------------------------------------------------------------- MNIST-1D, from its generator


def test_mnist1d_is_made_offline_by_its_generator(no_network, monkeypatch):
    import random

    import mnist1d.data

    def no_download(*args, **kwargs):
        raise AssertionError("mnist1d's get_dataset (download, pickle) must never be called")

    monkeypatch.setattr(mnist1d.data, "get_dataset", no_download)
    np.random.seed(123)
    random.seed(456)
    before = np.random.random(), random.random()
    np.random.seed(123)
    random.seed(456)
    d = load_dataset("mnist1d")
    # make_dataset reseeds numpy's and Python's global generators: pyfa puts them back
    assert (np.random.random(), random.random()) == before
    assert d.name == "mnist1d" and d.task == "classification" and d.n_classes == 10
    assert d.x_train.shape == (4000, 40) and d.x_test.shape == (1000, 40)
    assert d.y_train.shape == (4000, 10) and d.y_test.shape == (1000, 10)
    assert d.x_train.dtype == np.float32 and d.image_shape is None
    assert np.all(np.bincount(d.labels_train, minlength=10) > 300)
    # the generator's own standardisation (over all 5000 signals)
    both = np.concatenate([d.x_train, d.x_test])
    assert abs(float(both.mean())) < 1e-4 and abs(float(both.std()) - 1) < 1e-4
    again = load_dataset("mnist1d")
    assert again.fingerprint() == d.fingerprint()  # fixed split and seed


def test_mnist1d_matches_its_generator_called_directly():
    """The pyfa loader is make_dataset with its default arguments (seed 42, 80 % train)."""
    from mnist1d.data import get_dataset_args, make_dataset

    d = load_dataset("mnist1d")
    state = np.random.get_state()
    try:
        raw = make_dataset(get_dataset_args())
    finally:
        np.random.set_state(state)
    np.testing.assert_array_equal(d.x_test, raw["x_test"].astype(np.float32))
    np.testing.assert_array_equal(d.labels_train, raw["y"])


# ------------------------------------------------------------------ Fashion-MNIST: the IDX files


def write_idx(path, array: np.ndarray, *, gz: bool = False, code: int = 0x08) -> None:
    """An IDX file of `array` (uint8 unless `code` says otherwise), gzipped if `gz`."""
    import gzip

    dtype = {0x08: ">u1", 0x0D: ">f4"}[code]
    body = bytes([0, 0, code, array.ndim]) + b"".join(
        int(n).to_bytes(4, "big") for n in array.shape) + array.astype(dtype).tobytes()
    if gz:
        with gzip.open(path, "wb") as f:
            f.write(body)
    else:
        path.write_bytes(body)


def tiny_fashion(folder, n_train=30, n_test=10, side=28, gz=False):
    from pyfa.data import IDX_FILES

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (n_train, side, side)),
        "y_train": np.arange(n_train) % 10,
        "x_test": rng.integers(0, 256, (n_test, side, side)),
        "y_test": np.arange(n_test) % 10,
    }
    for k, name in IDX_FILES.items():
        write_idx(folder / (name + (".gz" if gz else "")), arrays[k], gz=gz)
    return arrays


@pytest.mark.parametrize("gz", [False, True])
def test_fashion_mnist_reads_idx_files_from_data_dir(tmp_path, no_network, gz):
    arrays = tiny_fashion(tmp_path / "fm", gz=gz)
    d = load_dataset("fashion-mnist", data_dir=tmp_path / "fm")
    assert d.name == "fashion-mnist" and d.n_classes == 10 and d.image_shape == (1, 28, 28)
    assert d.x_train.shape == (30, 784) and d.x_test.shape == (10, 784)
    np.testing.assert_array_equal(d.x_train.reshape(30, 28, 28) * 255, arrays["x_train"])
    np.testing.assert_array_equal(d.labels_test, arrays["y_test"])
    assert d.x_train.dtype == np.float32 and 0 <= d.x_train.min() and d.x_train.max() <= 1


def test_read_idx_hand_made_file(tmp_path):
    from pyfa.data import read_idx

    f = tmp_path / "a-idx2-float"
    f.write_bytes(bytes([0, 0, 0x0D, 2, 0, 0, 0, 2, 0, 0, 0, 3])
                  + np.arange(6, dtype=">f4").tobytes())
    a = read_idx(f)
    assert a.shape == (2, 3) and a.dtype == np.float32 and a.tolist() == [[0, 1, 2], [3, 4, 5]]


def test_damaged_idx_files_are_clear_errors_naming_the_file(tmp_path):
    from pyfa.data import read_idx

    folder = tmp_path / "fm"
    tiny_fashion(folder)
    images = folder / "train-images-idx3-ubyte"
    whole = images.read_bytes()
    images.write_bytes(whole[:-5])  # truncated
    with pytest.raises(DatasetError, match=r"IDX file '.*train-images-idx3-ubyte' is truncated: its "
                       r"header announces shape \(30, 28, 28\)"):
        load_dataset("fashion-mnist", data_dir=folder)
    images.write_bytes(whole + b"\0")
    with pytest.raises(DatasetError, match="longer than its header says"):
        read_idx(images)
    images.write_bytes(b"GIF89a" + whole)
    with pytest.raises(DatasetError, match=r"'.*train-images-idx3-ubyte' is not an IDX file"):
        read_idx(images)
    images.write_bytes(whole[:6])
    with pytest.raises(DatasetError, match="announces 3 dimensions but the file ends"):
        read_idx(images)
    # a gzip stream cut short
    images.unlink()
    gz = folder / "train-images-idx3-ubyte.gz"
    write_idx(gz, np.zeros((30, 28, 28)), gz=True)
    gz.write_bytes(gz.read_bytes()[:40])
    with pytest.raises(DatasetError, match=r"'.*train-images-idx3-ubyte.gz' cannot be read: it is "
                       "damaged or truncated"):
        load_dataset("fashion-mnist", data_dir=folder)
    # images and labels that disagree
    gz.unlink()
    write_idx(images, np.zeros((29, 28, 28)))
    with pytest.raises(DatasetError, match="hold 29 images but 30 labels"):
        load_dataset("fashion-mnist", data_dir=folder)


def test_missing_fashion_mnist_says_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        load_dataset("fashion-mnist", data_dir=tmp_path / "nowhere")
    msg = str(e.value)
    assert "does not exist" in msg and "apt-get install dataset-fashion-mnist" in msg
    assert "--data-dir" in msg and "zalandoresearch/fashion-mnist" in msg
    (tmp_path / "half").mkdir()
    write_idx(tmp_path / "half" / "train-images-idx3-ubyte", np.zeros((2, 28, 28)))
    with pytest.raises(FileNotFoundError, match=r"lacks train-labels-idx1-ubyte\[\.gz\], "
                       r"t10k-images-idx3-ubyte\[\.gz\], t10k-labels-idx1-ubyte\[\.gz\]"):
        load_dataset("fashion-mnist", data_dir=tmp_path / "half")
    with pytest.raises(ValueError, match="does not read one"):
        load_dataset("digits", data_dir=tmp_path)


def test_fashion_mnist_from_debians_package(no_network):
    """The real 70,000 images, where Debian's dataset-fashion-mnist put them (CI installs it)."""
    from pyfa.data import FASHION_MNIST_DIR

    if not os.path.isdir(FASHION_MNIST_DIR):
        pytest.skip(f"Fashion-MNIST is not installed in {FASHION_MNIST_DIR} (apt-get install "
                    "dataset-fashion-mnist, as .ci/run does where it runs as root)")
    d = load_dataset("fashion-mnist")
    assert d.x_train.shape == (60000, 784) and d.x_test.shape == (10000, 784)
    assert d.image_shape == (1, 28, 28) and d.n_classes == 10
    assert np.array_equal(np.bincount(d.labels_train), np.full(10, 6000))
    assert np.array_equal(np.bincount(d.labels_test), np.full(10, 1000))
    assert 0.28 < float(d.x_train.mean()) < 0.29  # the known pixel mean, 0.2860


def test_image_shape_is_checked():
    x = np.zeros((4, 12), np.float32)
    d = from_arrays(x, np.array([0, 1, 0, 1]), x, np.array([0, 1, 0, 1]), image_shape=(3, 2, 2))
    assert d.image_shape == (3, 2, 2)
    with pytest.raises(ValueError, match=r"image_shape \(1, 3, 3\) holds 9 values but x has 12"):
        from_arrays(x, np.array([0, 1, 0, 1]), x, np.array([0, 1, 0, 1]), image_shape=(1, 3, 3))
    with pytest.raises(ValueError, match="three whole numbers"):
        from_arrays(x, np.array([0, 1, 0, 1]), x, np.array([0, 1, 0, 1]), image_shape=(12,))
    assert load_dataset("digits").image_shape == (1, 8, 8)
