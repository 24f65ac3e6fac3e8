"""Bundled datasets (no download) and user arrays: shapes, dtypes, splits, and clear errors."""

import socket
import warnings

import numpy as np
import pytest

from pyfa.data import DATASETS, Dataset, from_arrays, load_dataset, one_hot


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
                    rng.normal(size=4))
    assert d.task == "regression" and d.y_train.shape == (10, 1) and d.y_test.shape == (4, 1)
    d2 = from_arrays(rng.normal(size=(10, 2)), rng.normal(size=(10, 3)),
                     rng.normal(size=(4, 2)), rng.normal(size=(4, 3)))
    assert d2.n_outputs == 3 and d2.n_classes is None


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
        (dict(y_test=np.array([0.5, 1.0])), TypeError, "both must be integer labels"),
        (dict(x_test=np.zeros((0, 3)), y_test=np.zeros(0, dtype=int)), ValueError, "empty"),
        # finite as float64 but not as float32: checked after the cast, naming the array
        (dict(x_train=np.full((4, 3), 1e300)), ValueError, "x_train contains NaN or infinity once"),
        (dict(y_train=np.array([0.0, 1e300, 0.0, 0.0]), y_test=np.array([0.5, 1.0])),
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
    with pytest.raises(ValueError, match="class label 2 but n_classes=2"):
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
    assert DATASETS == ("digits", "forum")
