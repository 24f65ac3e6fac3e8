"""Datasets that need no download at run time: scikit-learn's bundled digits, MNIST-1D (made by its
generator), Fashion-MNIST (from the IDX files of Debian's package, or a folder of your own), the
forum's synthetic regression, and the user's own numpy arrays.

Every dataset is a `Dataset` of float32 arrays, ``x`` of shape (n, features), ``y`` of shape
(n, outputs), ready for either backend. Its task is one of two, and a regression is never guessed:

- **classification** (``n_classes`` is set): the labels are integers 0..K-1, and the targets are
  **one-hot float32** rows. `pyfa.train` trains on them with softmax cross-entropy by default (or
  the mean squared error, ``loss="mse"``); accuracy is the argmax of the outputs against the label.
- **regression** (``n_classes`` is None): float32 targets, asked for with ``task="regression"``
  (the bundled ``forum`` dataset is one).

Label rules (`from_arrays`), all checked before any one-hot array is allocated:

- labels are a 1-d array of integers (or booleans). Float labels, even 0.0/1.0, are refused: cast
  them (``y.astype(np.int64)``) for classification, or pass ``task="regression"``;
- K, the number of classes, is inferred from the **training** labels: they must be exactly
  0..K-1, each class present at least once (or K is given as ``n_classes``);
- 2 <= K <= the number of training samples, and K <= `MAX_CLASSES` (1000). A larger K is
  almost always a column of ids or values read as labels (one-hot targets of 10 million classes
  would take gigabytes), and MSE on one-hot targets does not suit so many classes anyway;
- every test label occurs among the training labels (a class never trained on cannot be learnt).

``load_dataset("digits")``
    The 1797 8×8 handwritten digits bundled with scikit-learn (``sklearn.datasets.load_digits``,
    read from the installed package: no network). A fixed stratified split, 75 % train (1347) /
    25 % test (450), ``train_test_split(..., stratify=labels, random_state=seed)``. Pixels (0..16)
    are divided by 16, so features lie in [0, 1]: no statistics of the test set leak into
    training, and the same transform works for any new image.
``load_dataset("mnist1d")``
    MNIST-1D (Greydanus 2020), made offline by the PyPI package ``mnist1d``'s generator
    (``mnist1d.data.make_dataset``) with its default arguments: 5000 signals of length 40 from 10
    digit templates, seed 42, the first 80 % (4000) for training and the last 1000 for testing,
    standardised by the generator itself. Never its ``get_dataset``, which downloads a pickle.
``load_dataset("fashion-mnist")``
    Fashion-MNIST (Xiao et al. 2017): 60,000 training and 10,000 test 28×28 greyscale images of 10
    kinds of clothing, read from the four standard IDX files (``train-images-idx3-ubyte``, ...,
    each possibly gzipped) in ``data_dir``, by default `FASHION_MNIST_DIR`, where Debian's package
    ``dataset-fashion-mnist`` puts them. Pixels are divided by 255 (features in [0, 1]); the images
    are flattened to 784 features, with ``image_shape`` (1, 28, 28) for convolutional models.
``load_dataset("forum")``
    The Discourse post's setting, a regression: 50 inputs -> 2 outputs. Inputs x ~ N(0, 1); targets
    are a fixed, seeded random *teacher* network (50 -> 30 tanh -> 2) of x, standardised to unit
    variance, plus a little noise (std 0.05), so the task is learnable and a student MLP can fit
    it. 2048 train / 512 test samples.
``from_arrays(x_train, y_train, x_test, y_test)``
    Your own arrays, checked for shapes, dtypes and the label rules above.

``load_dataset(path)`` with a path to an ``.npz`` file holding ``x_train``, ``y_train``, ``x_test``,
``y_test`` goes through `from_arrays` (classification unless ``task="regression"``). The file is
read without pickle: a file that is not an ``.npz``, a damaged one, or one holding object arrays
raises a `DatasetError` naming it.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
import zlib
from dataclasses import dataclass

import numpy as np

#: Names `load_dataset` knows (besides a path to a .npz file).
DATASETS = ("digits", "mnist1d", "fashion-mnist", "forum")
#: Where Debian's ``dataset-fashion-mnist`` package installs the Fashion-MNIST IDX files.
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
#: The four IDX files of (Fashion-)MNIST, each read as it is or with ``.gz`` appended.
IDX_FILES = {"x_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte",
             "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte"}
#: What `from_arrays` and `load_dataset` can be asked for.
TASKS = ("classification", "regression")
#: The most classes a dataset may have (see the module docstring).
MAX_CLASSES = 1000
#: The arrays a dataset .npz file holds.
ARRAYS = ("x_train", "y_train", "x_test", "y_test")
_BUILTIN_TASKS = {"digits": "classification", "mnist1d": "classification",
                  "fashion-mnist": "classification", "forum": "regression"}
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip archive (an .npz), or an empty one


class DatasetError(ValueError):
    """A dataset file that cannot be read, or arrays that break the rules of `from_arrays`."""


@dataclass(frozen=True)
class Dataset:
    """Train and test arrays (float32) and what kind of task they are.

    ``y_*`` are one-hot when ``n_classes`` is set (classification), plain targets otherwise.
    ``image_shape`` (C, H, W), when set, says that each row of ``x_*`` is an image flattened in C
    order (``x.reshape(n, C, H, W)`` gives it back): what a convolutional model needs.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int | None
    name: str
    image_shape: tuple[int, int, int] | None = None

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

    def fingerprint(self) -> str:
        """SHA-256 of the four arrays (shapes, dtypes and bytes): the same data gives the same
        string, so a resumed run can tell that it trains on what it started with."""
        h = hashlib.sha256()
        for a in (self.x_train, self.y_train, self.x_test, self.y_test):
            h.update(f"{a.dtype.str}{a.shape};".encode())
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()

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


def load_dataset(name: str | os.PathLike | Dataset, seed: int = 0, *, task: str | None = None,
                 data_dir: str | os.PathLike | None = None) -> Dataset:
    """``"digits"``, ``"mnist1d"``, ``"fashion-mnist"``, ``"forum"``, or a path to an ``.npz`` file
    (see the module docstring).

    ``seed`` fixes the digits train/test split and the forum's teacher network and samples; the
    default 0 is the split every pyfa result uses (MNIST-1D and Fashion-MNIST have fixed splits of
    their own). ``task`` (``"classification"`` or ``"regression"``) must match a bundled dataset's
    own task; for an ``.npz`` file it says how to read ``y`` (default: classification, integer
    labels). ``data_dir`` is where the Fashion-MNIST IDX files are (default `FASHION_MNIST_DIR`);
    other datasets refuse it. A `Dataset` is returned as it is (its task must match `task` if
    given).
    """
    if task is not None and task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
    if isinstance(name, Dataset):
        _check_task(name.name, name.task, task)
        return name
    key = os.fspath(name)
    if data_dir is not None and key != "fashion-mnist":
        raise ValueError(f"data_dir (--data-dir) is where the Fashion-MNIST files are; dataset "
                         f"{key!r} does not read one")
    if key in _BUILTIN_TASKS:
        _check_task(key, _BUILTIN_TASKS[key], task)
        if key == "fashion-mnist":
            return _fashion_mnist(data_dir)
        return {"digits": _digits, "mnist1d": _mnist1d, "forum": _forum}[key](seed)
    if key.endswith(".npz"):
        return _load_npz(key, task)
    raise ValueError(
        f"unknown dataset {key!r}: expected one of {DATASETS} or a path to a .npz file with arrays "
        "x_train, y_train, x_test, y_test"
    )


def source_of(dataset: str | os.PathLike | Dataset) -> str | None:
    """How `load_dataset` can find `dataset` again: its name, the absolute path of its ``.npz``
    file, or None for a `Dataset` made in Python (recorded so that a run can be resumed)."""
    if isinstance(dataset, Dataset):
        return None
    key = os.fspath(dataset)
    return key if key in _BUILTIN_TASKS else os.path.abspath(key)


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
    task: str | None = None,
    n_classes: int | None = None,
    name: str = "arrays",
    image_shape: tuple[int, int, int] | None = None,
) -> Dataset:
    """A `Dataset` from your numpy arrays, checked and converted to float32.

    - ``x_*``: 2-d real arrays (n, features), the same number of features in train and test.
    - ``task="classification"`` (the default, also ``task=None``): ``y_*`` are 1-d **integer**
      labels, following the label rules of the module docstring; the targets become one-hot.
      ``n_classes`` may fix K (2 <= K <= min(n_train, `MAX_CLASSES`)); the labels must then lie
      in 0..K-1. With ``n_classes`` given, ``y_*`` may instead be 2-d one-hot float rows with
      ``n_classes`` columns.
    - ``task="regression"``: ``y_*`` are real targets, 1-d (one output, reshaped to (n, 1)) or
      2-d (n, outputs).
    - no NaN or infinity anywhere, checked after the conversion to float32 (so a float64 value
      beyond float32's range, about 3.4e38, is refused too); as many rows in ``y`` as in ``x``.
    - ``image_shape`` (C, H, W), if given, must multiply out to the number of features: each row
      of ``x_*`` is then an image flattened in C order (see `Dataset`).

    Raises ValueError/TypeError naming the array and its shape, dtype or offending labels, before
    any large array is allocated.
    """
    if task is not None and task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
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
    if image_shape is not None:
        image_shape = _check_image_shape(image_shape, x_train.shape[1])
    for (kx, x), (ky, y) in zip(xs.items(), ys.items(), strict=True):
        if y.ndim not in (1, 2):
            raise ValueError(f"{ky} must be 1-d labels/targets or 2-d targets, got shape {y.shape}")
        if len(y) != len(x):
            raise ValueError(f"{ky} has {len(y)} rows (shape {y.shape}) but {kx} has {len(x)}")
    if y_train.ndim != y_test.ndim or (y_train.ndim == 2 and y_train.shape[1] != y_test.shape[1]):
        raise ValueError(
            f"y_train (shape {y_train.shape}) and y_test (shape {y_test.shape}) disagree in shape"
        )

    if task == "regression":
        if n_classes is not None:
            raise ValueError("n_classes is for classification; a regression has none")
        c = None
        yt, ye = (y.reshape(len(y), -1) for y in (y_train, y_test))
    elif n_classes is not None and y_train.ndim == 2:
        c = _check_n_classes(n_classes, len(x_train))
        for k, y in ys.items():
            if y.shape[1] != c:
                raise ValueError(f"{k}: one-hot targets must have shape (n, {c}), got {y.shape}")
            if not (np.isin(y, (0, 1)).all() and (y.sum(axis=1) == 1).all()):
                raise ValueError(f"{k}: with n_classes given, 2-d targets must be one-hot rows")
        _check_test_labels(y_train.argmax(1), y_test.argmax(1))
        yt, ye = y_train, y_test
    else:
        c = _check_labels(y_train, y_test, n_classes)
        yt, ye = one_hot(y_train.astype(np.int64), c), one_hot(y_test.astype(np.int64), c)
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
    return Dataset(out["x_train"], out["y_train"], out["x_test"], out["y_test"], c, name,
                   image_shape)


def _check_image_shape(image_shape, n_features: int) -> tuple[int, int, int]:
    try:
        shape = tuple(int(v) for v in image_shape)
        ok = len(shape) == 3 and all(v >= 1 for v in shape) and all(
            int(v) == v for v in image_shape)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"image_shape must be (channels, height, width), three whole numbers "
                         f">= 1, got {image_shape!r}")
    if int(np.prod(shape)) != n_features:
        raise ValueError(f"image_shape {shape} holds {int(np.prod(shape))} values but x has "
                         f"{n_features} features")
    return shape


# --------------------------------------------------------------------------------- label checks


def _check_labels(y_train: np.ndarray, y_test: np.ndarray, n_classes) -> int:
    """K for integer labels `y_train`, `y_test` (1-d), or a clear error; allocates nothing of K's
    size (only `np.unique` of the labels, as large as the labels themselves)."""
    for k, y in (("y_train", y_train), ("y_test", y_test)):
        if y.ndim != 1 or y.dtype.kind not in "biu":
            raise TypeError(_not_labels(k, y))
    n_train = len(y_train)
    lo = min(int(y_train.min()), int(y_test.min()))
    if lo < 0:
        where = "y_train" if int(y_train.min()) < 0 else "y_test"
        raise ValueError(f"class labels must be >= 0, found {lo} in {where}")
    hi = int(y_train.max())
    if n_classes is not None:
        c = _check_n_classes(n_classes, n_train)
        if hi >= c:
            raise ValueError(f"found class label {hi} in y_train but n_classes={c} "
                             f"(labels must be 0..{c - 1})")
    else:
        c = hi + 1
        if c > MAX_CLASSES or c > n_train:
            raise ValueError(
                f"y_train holds label {hi}, which would make {c} classes for {n_train} training "
                f"samples; labels must be 0..K-1 with K <= the number of training samples and "
                f"K <= {MAX_CLASSES} (pyfa.data.MAX_CLASSES). Are these class labels? For "
                "real-valued targets pass task='regression' (--task regression)"
            )
        seen = np.unique(y_train)
        if len(seen) != c:
            missing = np.setdiff1d(np.arange(c), seen)
            hint = (" (do the labels start at 1? subtract 1)"
                    if missing.tolist() == [0] and c > 1 else "")
            raise ValueError(
                f"y_train: labels must be 0..K-1 with every class present; labels "
                f"{_few(missing)} of 0..{c - 1} never occur{hint}"
            )
        if c < 2:
            raise ValueError("y_train holds a single class (every label is 0): nothing to classify")
    _check_test_labels(y_train, y_test)
    return c


def _check_test_labels(train: np.ndarray, test: np.ndarray) -> None:
    unseen = np.setdiff1d(np.unique(test), np.unique(train))
    if len(unseen):
        raise ValueError(
            f"y_test holds label(s) {_few(unseen)} that never occur in y_train: a class the network "
            "is never trained on cannot be learnt (check the split, e.g. stratify by label)"
        )


def _check_n_classes(n_classes, n_train: int) -> int:
    try:
        ok = not isinstance(n_classes, bool) and int(n_classes) == n_classes
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok or not 2 <= int(n_classes) <= min(n_train, MAX_CLASSES):
        raise ValueError(
            f"n_classes must be a whole number from 2 to min(number of training samples "
            f"{n_train}, MAX_CLASSES {MAX_CLASSES}), got {n_classes!r}"
        )
    return int(n_classes)


def _not_labels(k: str, y: np.ndarray) -> str:
    if y.dtype.kind == "f" and y.ndim == 1:
        whole = bool(np.all(np.isfinite(y)) and np.all(y == np.round(y)))
        cast = (f"if they are class labels, cast them ({k}.astype(np.int64))" if whole else
                "class labels must be whole numbers")
        return (f"{k} holds floats (dtype {y.dtype}), but classification needs integer labels "
                f"0..K-1: {cast}; for real-valued targets pass task='regression' "
                "(--task regression)")
    return (f"{k} (shape {y.shape}, dtype {y.dtype}): classification needs 1-d integer labels "
            "0..K-1 (or 2-d one-hot rows with n_classes given); for real-valued targets pass "
            "task='regression' (--task regression)")


def _few(values: np.ndarray, n: int = 8) -> str:
    vals = [int(v) for v in values[:n]]
    return str(vals)[:-1] + (f", ... ({len(values)} in all)]" if len(values) > n else "]")


def _check_task(name: str, actual: str, wanted: str | None) -> None:
    if wanted is not None and wanted != actual:
        raise ValueError(f"dataset {name!r} is a {actual} task, not {wanted}")


# ------------------------------------------------------------------------------ the .npz reader


def _load_npz(path: str, task: str | None) -> Dataset:
    where = f"dataset file {path!r}"
    if os.path.isdir(path):
        raise DatasetError(f"{where} is a folder; give the .npz file itself")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{where} does not exist")
    with open(path, "rb") as f:
        head = f.read(4)
    if head not in _ZIP_MAGIC:
        raise DatasetError(
            f"{where} is not an .npz archive (a zip file, as numpy.savez writes): it starts with "
            f"{head!r}"
        )
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in ARRAYS if k not in z.files]
            if missing:
                raise DatasetError(f"{where} lacks array(s) {missing}; it has {sorted(z.files)}")
            arrays = {k: _read_array(z, k, where) for k in ARRAYS}
    except DatasetError:
        raise
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError) as e:
        raise DatasetError(f"{where} is damaged or not a numpy .npz ({_brief(e)})") from None
    try:
        return from_arrays(*arrays.values(), task=task,
                           name=os.path.splitext(os.path.basename(path))[0])
    except (ValueError, TypeError) as e:
        raise DatasetError(f"{where}: {e}") from None


def _read_array(z, key: str, where: str) -> np.ndarray:
    """One array of an open .npz: an object array (which would need pickle) or a damaged member
    is a `DatasetError` naming the file and the array."""
    try:
        return z[key]
    except ValueError as e:
        if "allow_pickle" in str(e) or "object" in str(e).lower():
            raise DatasetError(
                f"{where}: array {key!r} holds Python objects (dtype object), which pyfa does not "
                "load (that would mean unpickling); save it as numbers, e.g. "
                f"np.asarray({key}, dtype=np.float32)"
            ) from None
        raise DatasetError(f"{where}: array {key!r} cannot be read ({_brief(e)})") from None
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as e:
        raise DatasetError(f"{where}: array {key!r} is damaged ({_brief(e)})") from None


def _brief(e: BaseException) -> str:
    """An exception as one short phrase, never advice to load pickled data."""
    text = str(e).split("\n")[0] or type(e).__name__
    if "pickle" in text:
        return "it holds data that only pickle could read"
    return f"{type(e).__name__}: {text}"


# -------------------------------------------------------------------------- the bundled datasets


def _digits(seed: int) -> Dataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = (bunch.data / 16.0).astype(np.float32)
    labels = bunch.target.astype(np.int64)
    xtr, xte, ltr, lte = train_test_split(
        x, labels, test_size=0.25, stratify=labels, random_state=seed
    )
    return from_arrays(xtr, ltr, xte, lte, n_classes=10, name="digits", image_shape=(1, 8, 8))


def _mnist1d(seed: int = 0) -> Dataset:
    """MNIST-1D from its generator with the package's default arguments (module docstring).

    ``mnist1d.data.make_dataset`` seeds numpy's and Python's global generators (``set_seed``):
    their states are saved before and restored after, so loading the data changes no other random
    stream in the process. `seed` is not used: the split and seed are MNIST-1D's own.
    """
    import random

    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as e:  # pragma: no cover - a dependency of pyfa
        raise DatasetError(f"dataset 'mnist1d' needs the PyPI package mnist1d ({e}): pip install "
                           "mnist1d") from None
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        d = make_dataset(get_dataset_args())  # the generator: no file, no network
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    return from_arrays(d["x"], np.asarray(d["y"], dtype=np.int64), d["x_test"],
                       np.asarray(d["y_test"], dtype=np.int64), n_classes=10, name="mnist1d")


def _fashion_mnist(data_dir=None) -> Dataset:
    """Fashion-MNIST from its four IDX files in `data_dir` (default `FASHION_MNIST_DIR`)."""
    folder = os.fspath(data_dir) if data_dir is not None else FASHION_MNIST_DIR
    paths = {k: _find_idx(folder, f) for k, f in IDX_FILES.items()}
    missing = [IDX_FILES[k] for k, p in paths.items() if p is None]
    if missing:
        where = (f"the folder {folder!r} does not exist" if not os.path.isdir(folder) else
                 f"{folder!r} lacks {', '.join(f'{m}[.gz]' for m in missing)}")
        raise FileNotFoundError(
            f"dataset 'fashion-mnist': {where}. Get the four IDX files (train-images-idx3-ubyte, "
            "train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, gzipped or "
            f"not): on Debian or Ubuntu `sudo apt-get install dataset-fashion-mnist` puts them in "
            f"{FASHION_MNIST_DIR}; or download them from "
            "https://github.com/zalandoresearch/fashion-mnist (data/fashion) and pass --data-dir "
            "DIR (data_dir=DIR)"
        )
    arrays = {k: read_idx(p) for k, p in paths.items()}
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim != 3 or y.ndim != 1:
            bad = paths[f"x_{split}"] if x.ndim != 3 else paths[f"y_{split}"]
            raise DatasetError(f"IDX file {bad!r} has shape {(x if x.ndim != 3 else y).shape}: "
                               "expected images (n, rows, cols) and labels (n,)")
        if len(x) != len(y):
            raise DatasetError(f"IDX files {paths[f'x_{split}']!r} and {paths[f'y_{split}']!r} hold "
                               f"{len(x)} images but {len(y)} labels")
    if arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:]:
        raise DatasetError(f"the training images are {arrays['x_train'].shape[1:]} but the test "
                           f"images {arrays['x_test'].shape[1:]}")
    h, w = arrays["x_train"].shape[1:]
    xs = {k: arrays[k].reshape(len(arrays[k]), h * w).astype(np.float32) / 255.0
          for k in ("x_train", "x_test")}
    try:
        return from_arrays(xs["x_train"], arrays["y_train"].astype(np.int64), xs["x_test"],
                           arrays["y_test"].astype(np.int64), name="fashion-mnist",
                           image_shape=(1, h, w))
    except (ValueError, TypeError) as e:
        raise DatasetError(f"dataset 'fashion-mnist' in {folder!r}: {e}") from None


def _find_idx(folder: str, name: str) -> str | None:
    for candidate in (name, name + ".gz"):
        path = os.path.join(folder, candidate)
        if os.path.isfile(path):
            return path
    return None


#: IDX element types: the third byte of the magic number -> numpy big-endian dtype.
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """The array in an IDX file (LeCun's MNIST format; gzipped if the name ends in ``.gz``).

    Layout: two zero bytes, a type byte (0x08 unsigned byte, ... 0x0E float64), the number of
    dimensions d, then d big-endian uint32 sizes, then the values, big-endian, in C order. A file
    that does not follow it (a wrong magic number, a truncated or overlong body, a damaged gzip
    stream) raises a `DatasetError` naming the file and what is wrong.
    """
    import gzip
    import zlib as _zlib

    path = os.fspath(path)
    where = f"IDX file {path!r}"
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                data = f.read()
        else:
            with open(path, "rb") as f:
                data = f.read()
    except (EOFError, OSError, _zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise DatasetError(f"{where} cannot be read: it is damaged or truncated "
                           f"({_brief(e)})") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES:
        raise DatasetError(f"{where} is not an IDX file: it starts with {data[:4]!r}, not the magic "
                           "number 00 00 <type> <dimensions>")
    ndim = data[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise DatasetError(f"{where}: its header announces {ndim} dimensions but the file ends "
                           f"after {len(data)} bytes")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_TYPES[data[2]])
    want = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != want:
        what = "truncated" if len(data) < want else "longer than its header says"
        raise DatasetError(f"{where} is {what}: its header announces shape {shape} of {dtype.name} "
                           f"({want} bytes in all), the file has {len(data)} bytes")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


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
    return from_arrays(x[:n_train], y[:n_train], x[n_train:], y[n_train:], task="regression",
                       name="forum")


__all__ = ["DATASETS", "TASKS", "MAX_CLASSES", "FASHION_MNIST_DIR", "IDX_FILES", "Dataset",
           "DatasetError", "load_dataset", "from_arrays", "one_hot", "source_of", "read_idx"]
