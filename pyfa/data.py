"""Datasets that need no download: scikit-learn's bundled digits, the forum's synthetic regression,
and the user's own numpy arrays.

Every dataset is a `Dataset` of float32 arrays, ``x`` of shape (n, features), ``y`` of shape
(n, outputs), ready for either backend:

- classification targets are **one-hot float32** (``n_classes`` is set). Both backends train with
  the mean squared error on the one-hot targets (the Julia bridge's training step is MSE only, so
  PyTorch uses MSE too and the two give the same curves); accuracy is the argmax of the outputs
  against the argmax of the one-hot targets.
- regression targets are float32 (``n_classes`` is None).

``load_dataset("digits")``
    The 1797 8×8 handwritten digits bundled with scikit-learn (``sklearn.datasets.load_digits``,
    read from the installed package: no network). A fixed stratified split, 75 % train (1347) /
    25 % test (450), ``train_test_split(..., stratify=labels, random_state=seed)``. Pixels (0..16)
    are divided by 16, so features lie in [0, 1]: no statistics of the test set leak into
    training, and the same transform works for any new image.
``load_dataset("forum")``
    The Discourse post's setting: 50 inputs -> 2 outputs. Inputs x ~ N(0, 1); targets are a fixed,
    seeded random *teacher* network (50 -> 30 tanh -> 2) of x, standardised to unit variance, plus a
    little noise (std 0.05), so the task is learnable and a student MLP can fit it. 2048 train /
    512 test samples.
``from_arrays(x_train, y_train, x_test, y_test)``
    Your own arrays, checked for shapes and dtypes (see `from_arrays`).

``load_dataset(path)`` with a path to an ``.npz`` file holding ``x_train``, ``y_train``, ``x_test``,
``y_test`` goes through `from_arrays`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

#: Names `load_dataset` knows (besides a path to a .npz file).
DATASETS = ("digits", "forum")


@dataclass(frozen=True)
class Dataset:
    """Train and test arrays (float32) and what kind of task they are.

    ``y_*`` are one-hot when ``n_classes`` is set (classification), plain targets otherwise.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int | None
    name: str

    @property
    def task(self) -> str:
        """``"classification"`` or ``"regression"``."""
        return "regression" if self.n_classes is None else "classification"

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def n_outputs(self) -> int:
        return int(self.y_train.shape[1])

    @property
    def labels_train(self) -> np.ndarray:
        """Integer class labels of the training set (classification only)."""
        return self._labels(self.y_train)

    @property
    def labels_test(self) -> np.ndarray:
        """Integer class labels of the test set (classification only)."""
        return self._labels(self.y_test)

    def _labels(self, y: np.ndarray) -> np.ndarray:
        if self.n_classes is None:
            raise ValueError(f"dataset {self.name!r} is a regression task: it has no class labels")
        return y.argmax(axis=1)

    def __repr__(self) -> str:
        kind = f"{self.n_classes} classes" if self.n_classes else f"{self.n_outputs} outputs"
        return (
            f"Dataset({self.name!r}: {len(self.x_train)} train / {len(self.x_test)} test, "
            f"{self.n_features} features, {kind})"
        )


def load_dataset(name: str | os.PathLike, seed: int = 0) -> Dataset:
    """``"digits"``, ``"forum"``, or a path to an ``.npz`` file (see the module docstring).

    ``seed`` fixes the digits train/test split and the forum's teacher network and samples; the
    default 0 is the split every pyfa result uses.
    """
    if isinstance(name, Dataset):
        return name
    key = os.fspath(name)
    if key == "digits":
        return _digits(seed)
    if key == "forum":
        return _forum(seed)
    if key.endswith(".npz"):
        if not os.path.isfile(key):
            raise FileNotFoundError(f"dataset file {key!r} does not exist")
        with np.load(key, allow_pickle=False) as z:
            missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in z.files]
            if missing:
                raise ValueError(
                    f"dataset file {key!r} lacks array(s) {missing}; it has {sorted(z.files)}"
                )
            return from_arrays(
                z["x_train"], z["y_train"], z["x_test"], z["y_test"],
                name=os.path.splitext(os.path.basename(key))[0],
            )
    raise ValueError(
        f"unknown dataset {key!r}: expected one of {DATASETS} or a path to a .npz file with arrays "
        "x_train, y_train, x_test, y_test"
    )


def one_hot(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """float32 one-hot rows for integer ``labels`` in [0, n_classes)."""
    out = np.zeros((len(labels), n_classes), dtype=np.float32)
    out[np.arange(len(labels)), labels] = 1.0
    return out


def from_arrays(
    x_train,
    y_train,
    x_test,
    y_test,
    *,
    n_classes: int | None = None,
    name: str = "arrays",
) -> Dataset:
    """A `Dataset` from your numpy arrays, checked and converted to float32.

    - ``x_*``: 2-d real arrays (n, features), the same number of features in train and test.
    - ``y_*``, either
        * 1-d **integer** class labels 0..C-1: a classification task, targets become one-hot
          (C = ``n_classes``, or max label + 1 over train and test);
        * 1-d float targets: regression with one output (reshaped to (n, 1));
        * 2-d float targets (n, outputs): regression, or classification if ``n_classes`` is given
          (then the rows must be one-hot, with ``n_classes`` columns).
    - no NaN or infinity anywhere, checked after the conversion to float32 (so a float64 value
      beyond float32's range, about 3.4e38, is refused too); as many rows in ``y`` as in ``x``.

    Raises ValueError/TypeError naming the array and its shape or dtype.
    """
    xs = {"x_train": x_train, "x_test": x_test}
    ys = {"y_train": y_train, "y_test": y_test}
    for k, a in {**xs, **ys}.items():
        if not isinstance(a, np.ndarray):
            raise TypeError(f"{k} must be a numpy array, got {type(a).__name__}")
        if a.dtype.kind not in "biuf":
            raise TypeError(f"{k} must hold real numbers, got dtype {a.dtype}")
        if a.ndim == 0:
            raise ValueError(f"{k} must be an array of samples, got a 0-d array (a scalar: {a!r})")
        if a.size == 0 or len(a) == 0:
            raise ValueError(f"{k} is empty (shape {a.shape})")
    for k, a in xs.items():
        if a.ndim != 2:
            raise ValueError(f"{k} must be 2-d (samples, features), got shape {a.shape}")
    if x_train.shape[1] != x_test.shape[1]:
        raise ValueError(
            f"x_train has {x_train.shape[1]} features (shape {x_train.shape}) but x_test has "
            f"{x_test.shape[1]} (shape {x_test.shape})"
        )
    for (kx, x), (ky, y) in zip(xs.items(), ys.items(), strict=True):
        if y.ndim not in (1, 2):
            raise ValueError(f"{ky} must be 1-d labels/targets or 2-d targets, got shape {y.shape}")
        if len(y) != len(x):
            raise ValueError(f"{ky} has {len(y)} rows (shape {y.shape}) but {kx} has {len(x)}")
    if y_train.ndim != y_test.ndim or (y_train.ndim == 2 and y_train.shape[1] != y_test.shape[1]):
        raise ValueError(
            f"y_train (shape {y_train.shape}) and y_test (shape {y_test.shape}) disagree in shape"
        )
    integer_labels = y_train.ndim == 1 and y_train.dtype.kind in "biu"
    if integer_labels != (y_test.ndim == 1 and y_test.dtype.kind in "biu"):
        raise TypeError(
            f"y_train (dtype {y_train.dtype}, shape {y_train.shape}) and y_test (dtype "
            f"{y_test.dtype}, shape {y_test.shape}): both must be integer labels or both float "
            "targets"
        )
    if integer_labels:
        lo = min(int(y_train.min()), int(y_test.min()))
        hi = max(int(y_train.max()), int(y_test.max()))
        if lo < 0:
            raise ValueError(f"class labels must be >= 0, found {lo}")
        c = hi + 1 if n_classes is None else int(n_classes)
        if hi >= c:
            raise ValueError(f"found class label {hi} but n_classes={c}")
        yt, ye = one_hot(y_train.astype(np.int64), c), one_hot(y_test.astype(np.int64), c)
    elif n_classes is not None:
        c = int(n_classes)
        for k, y in ys.items():
            if y.ndim != 2 or y.shape[1] != c:
                raise ValueError(f"{k}: one-hot targets must have shape (n, {c}), got {y.shape}")
            if not (np.isin(y, (0, 1)).all() and (y.sum(axis=1) == 1).all()):
                raise ValueError(f"{k}: with n_classes given, 2-d targets must be one-hot rows")
        yt, ye = y_train, y_test
    else:
        c = None
        yt, ye = (y.reshape(len(y), -1) for y in (y_train, y_test))
    with np.errstate(over="ignore"):  # an overflow to inf is reported just below, by name
        out = {
            "x_train": np.ascontiguousarray(x_train, dtype=np.float32),
            "y_train": np.array(yt, dtype=np.float32, order="C"),
            "x_test": np.ascontiguousarray(x_test, dtype=np.float32),
            "y_test": np.array(ye, dtype=np.float32, order="C"),
        }
    arrays = {**xs, **ys}
    for k, a in out.items():
        if not np.isfinite(a).all():
            raise ValueError(
                f"{k} contains NaN or infinity once converted to float32 (the {arrays[k].dtype} "
                "values must be finite and within float32's range, about +-3.4e38)"
            )
    return Dataset(out["x_train"], out["y_train"], out["x_test"], out["y_test"], c, name)


def _digits(seed: int) -> Dataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = (bunch.data / 16.0).astype(np.float32)
    labels = bunch.target.astype(np.int64)
    xtr, xte, ltr, lte = train_test_split(
        x, labels, test_size=0.25, stratify=labels, random_state=seed
    )
    return from_arrays(xtr, ltr, xte, lte, n_classes=10, name="digits")


def _forum(seed: int, n_train: int = 2048, n_test: int = 512) -> Dataset:
    rng = np.random.default_rng([seed, 50, 2])
    n_in, n_hidden, n_out = 50, 30, 2
    w1 = rng.normal(0, 1 / np.sqrt(n_in), size=(n_hidden, n_in))
    b1 = rng.normal(0, 0.1, size=n_hidden)
    w2 = rng.normal(0, 1 / np.sqrt(n_hidden), size=(n_out, n_hidden))
    x = rng.normal(size=(n_train + n_test, n_in))
    y = np.tanh(x @ w1.T + b1) @ w2.T
    y = (y - y[:n_train].mean(0)) / y[:n_train].std(0)
    y = y + rng.normal(0, 0.05, size=y.shape)
    return from_arrays(x[:n_train], y[:n_train], x[n_train:], y[n_train:], name="forum")


__all__ = ["DATASETS", "Dataset", "load_dataset", "from_arrays", "one_hot"]
