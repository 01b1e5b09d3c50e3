"""Load the spec's data into train/validation/test arrays with fitted preprocessing.

Each data kind has a loader ``load(data, prep, seed) -> Splits`` of raw arrays (registered in
``nnctl.data_kinds.KINDS``);
the shared code here takes a seeded subset, splits off validation, fits the preprocessing on the
training split only, and encodes inputs and targets for the loss.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from nnctl.data.arrays import arrays_xy
from nnctl.data.idx import idx_labels_path, idx_xy
from nnctl.data.preprocess import Preprocessor, task_of
from nnctl.data.splits import Dataset, Splits
from nnctl.data.streaming import rows_of
from nnctl.data.tabular import csv_xy
from nnctl.data_kinds import loader
from nnctl.errors import DataError
from nnctl.spec_model import Spec

if TYPE_CHECKING:
    from nnctl.spec_sections import DataSection

__all__ = [
    "Dataset",
    "Splits",
    "idx_labels_path",
    "load_dataset",
    "load_split",
    "loader",
    "reconstructs",
    "resolve_kind",
]


ARRAY_KINDS = ("tabular", "arrays", "idx", "images")  # kinds whose files can stand in for one another


def typed(spec: Spec | Mapping) -> Spec:
    """The typed spec of ``spec``: itself, or a stored spec (a checkpoint's ``/spec`` dict) read back."""
    return spec if isinstance(spec, Spec) else Spec.from_dict(dict(spec))


def resolve_kind(data: DataSection | Mapping) -> str:
    """The data kind: ``data.kind``, or (``auto``) the one the training path's name or folder says; ``data`` may
    also be a plain ``{"train": path}``."""
    kind = data.get("kind", "auto") if not hasattr(data, "kind") else data.kind
    if kind != "auto":
        return kind
    return kind_of_path(data["train"] if not hasattr(data, "train") else data.train)


def kind_of_path(path) -> str:
    """The kind a training path's name or folder says: images, idx, tabular or arrays; DataError otherwise."""
    p = pathlib.Path(path)
    name = p.name.lower()
    if p.is_dir():
        return "images"
    if "idx" in name or name.endswith("-ubyte"):
        return "idx"
    if name.endswith(".csv"):
        return "tabular"
    if name.endswith((".npz", ".npy", ".h5", ".hdf5")):
        return "arrays"
    raise DataError(f"{p}: cannot tell the data kind from the name; set data.kind")


def _path_kind(path, fallback: str) -> str:
    try:
        return kind_of_path(path)
    except DataError:
        return fallback


def match_labels(y, classes):
    """Labels in the type of the training classes: "3" for a folder-trained model given IDX label 3, 3 for
    an IDX-trained model given the folder name "3"."""
    if classes is None or y is None or y.ndim != 1:
        return y
    text = classes.dtype.kind in "USO"
    if text and y.dtype.kind in "iu":
        return y.astype(str)
    if text and y.dtype.kind == "f" and np.all(y == np.round(y)):
        return y.astype(np.int64).astype(str)
    if not text and y.dtype.kind in "USO":
        try:
            v = y.astype(np.float64)
        except ValueError:
            return y  # encode_y names the first label that is not a class
        return v.astype(np.int64) if classes.dtype.kind in "iu" and np.all(v == np.round(v)) else v
    return y


def read_labelled(path, data: DataSection, prep: Preprocessor, train_kind: str, sample_shape, classes=None):
    """Raw inputs and labels of one labelled file or folder of any array kind (CSV, .npz/.h5, IDX, an image
    folder), shaped like the training samples (channel axis added, images decoded to their size)."""
    from nnctl.data.inputs import conform, image_geometry

    kind = _path_kind(path, train_kind)
    if kind not in ARRAY_KINDS:
        raise DataError(f"{path}: {kind} data cannot stand in for the {train_kind} training data")
    if kind == "tabular":
        x, y = csv_xy(path, data, prep, "other")
    elif kind == "arrays":
        x, y = arrays_xy(path, data)
    elif kind == "idx":
        x, y = idx_xy(path)
    else:
        from nnctl.data.images import list_folder, read_images

        _, files, labels = list_folder(path)
        mode, size = image_geometry(prep, sample_shape, str(path))
        x, y = read_images(files, mode, size), np.array(labels)
    return conform(x, sample_shape), match_labels(y, classes)


# -- assembly --------------------------------------------------------------------------------------
def _validation_split(s: Splits, split: float, stratify: bool, rng, name: str) -> None:
    n = len(s.x_train)
    n_val = int(round(n * split))
    if not 0 < n_val < n:
        raise DataError(f"{name}: validation split {split} of {n} samples leaves an empty split")
    if s.ordered:  # time series: the end of the series, never shuffled into training
        cut = n - n_val
        s.x_val, s.y_val = rows_of(s.x_train, np.arange(cut, n)), s.y_train[cut:]
        s.x_train, s.y_train = rows_of(s.x_train, np.arange(cut)), s.y_train[:cut]
        return
    if stratify and s.y_train is not None and s.y_train.ndim == 1:
        val_idx = []
        for c in np.unique(s.y_train):
            members = rng.permutation(np.nonzero(s.y_train == c)[0])
            val_idx.extend(members[: int(round(len(members) * split))])
        val_mask = np.zeros(n, bool)
        val_mask[np.asarray(val_idx, dtype=int)] = True
    else:
        val_mask = np.zeros(n, bool)
        val_mask[rng.permutation(n)[:n_val]] = True
    s.x_val, s.y_val = rows_of(s.x_train, val_mask), s.y_train[val_mask]
    s.x_train, s.y_train = rows_of(s.x_train, ~val_mask), s.y_train[~val_mask]
    if s.w_train is not None:  # validation stays unweighted (Keras's sample_weight is the training loss's)
        s.w_train = s.w_train[~val_mask]


def unfitted_preprocessor(spec: Spec | Mapping, kind: str) -> Preprocessor:
    """The spec's preprocessing for data of ``kind``, before anything is fitted: the task its loss wants,
    the normalisation and rescale it asks for."""
    spec = typed(spec)
    data = spec.data
    return Preprocessor(
        kind, task_of(spec.train.loss.type), data.normalize, data.normalize_target, parse_rescale(data.rescale)
    )


def load_dataset(spec: Spec | Mapping, with_test: bool = True) -> Dataset:
    """Everything ``train`` needs: encoded arrays of each split and the fitted preprocessing; ``spec`` may be
    the stored spec of a checkpoint (evaluate)."""
    spec = typed(spec)
    if spec.model.inputs or spec.model.outputs:  # named inputs or outputs: {name: array} per split (data.multi)
        return _load_named(spec)
    data = spec.data
    kind = resolve_kind(data)
    prep = unfitted_preprocessor(spec, kind)
    if data.sample_weight is not None and kind not in ("tabular", "arrays"):
        raise DataError(
            f"{data.train}: data.sample_weight: expected tabular (CSV) or arrays (.npz/.h5/.npy) "
            f"data, found {kind} data"
        )
    s = loader(kind)(data, prep, spec.seed)  # text splits before building its vocabulary
    rng = np.random.default_rng(np.random.SeedSequence(spec.seed, spawn_key=(2,)))
    name = data.train
    if data.subset and data.subset < len(s.x_train):
        keep = np.sort(rng.permutation(len(s.x_train))[: data.subset])
        s.x_train, s.y_train = rows_of(s.x_train, keep), s.y_train[keep]
        s.w_train = None if s.w_train is None else s.w_train[keep]
    val = data.validation
    val_path = val if isinstance(val, str) else (val.path if val is not None else None)
    shape, classes = s.x_train.shape[1:], _label_classes(s.y_train, prep)
    if val_path and s.x_val is None:  # a file the training kind's loader does not read itself
        if kind not in ARRAY_KINDS:
            raise DataError(
                f"data.validation: {kind} data takes its validation file in its own format; {val_path} was not read"
            )
        s.x_val, s.y_val = read_labelled(val_path, data, prep, kind, shape, classes)
    elif val is not None and not isinstance(val, str) and s.x_val is None:
        _validation_split(s, float(val.split), bool(val.stratify), rng, name)
    if with_test and data.test and s.x_test is None and kind in ARRAY_KINDS:
        s.x_test, s.y_test = read_labelled(data.test, data, prep, kind, shape, classes)
    dtype = np.dtype(spec.dtype)
    prep.fit_x(s.x_train)
    if data.target == "input":
        _check_reconstruct(data, kind, prep)
        prep.meta["target"] = "input"
        prep.target_names = []
    else:
        prep.fit_y(s.y_train, name)
    enc = lambda x, y, where: _encode(prep, x, y, where, dtype)  # noqa: E731
    x_train, y_train = enc(s.x_train, s.y_train, name)
    x_val = y_val = x_test = y_test = None
    if s.x_val is not None:
        x_val, y_val = enc(s.x_val, s.y_val, f"{name} (validation)" if not isinstance(val, str) else val)
    if with_test and s.x_test is not None:
        x_test, y_test = enc(s.x_test, s.y_test, data.test or name)
    for split_name, x in (("test", x_test), ("validation", x_val)):
        where = getattr(data, split_name)
        if x is not None and x.shape[1:] != x_train.shape[1:]:
            raise DataError(
                f"{where if isinstance(where, str) else name}: "
                f"{split_name} inputs have shape {list(x.shape[1:])}, training inputs {list(x_train.shape[1:])}"
            )
    return Dataset(x_train, y_train, x_val, y_val, x_test, y_test, prep, s.defaults, s.w_train)


def _load_named(spec: Spec) -> Dataset:
    from nnctl.data import multi

    return multi.load(spec, lambda x: multi.output_shapes(spec, x))


def _check_reconstruct(data: DataSection, kind: str, prep: Preprocessor) -> None:
    """An autoencoder's target is its scaled input: only array kinds, and no separate target scaling."""
    if kind not in ARRAY_KINDS:
        raise DataError(
            f"data.target: expected a target column for {kind} data, found 'input' "
            f"(kinds {', '.join(ARRAY_KINDS)} can reconstruct their input)"
        )
    if data.normalize_target != "none":
        raise DataError(
            "data.normalize_target: expected none with target = 'input' (the target is the input, "
            f"scaled by data.normalize), found {data.normalize_target!r}"
        )
    if prep.task not in ("regression", "binary"):
        raise DataError(
            f"train.loss: expected a regression loss (mse, mae) or binary_crossentropy with "
            f"target = 'input', found a {prep.task} loss"
        )


def reconstructs(prep: Preprocessor) -> bool:
    """Whether the model was trained with ``data.target = "input"``."""
    return prep.meta.get("target") == "input"


def _encode(prep: Preprocessor, x, y, where: str, dtype):
    """(inputs, targets) as the model and loss see them; the target of an autoencoder is the very array of
    its inputs (no copy), so the trainer's augmentation, which works on its own gathered batch, leaves it clean."""
    x = prep.transform_x(x, dtype)
    return (x, x) if reconstructs(prep) else (x, prep.encode_y(y, where, dtype))


def _label_classes(y, prep: Preprocessor):
    """The training labels' classes (for matching label types across files), or None for regression."""
    if prep.task == "regression" or y is None or y.ndim != 1:
        return None
    return np.unique(y)


def parse_rescale(value) -> float | None:
    """``rescale = 0.0039...`` or the string ``"1/255"``."""
    if value is None or isinstance(value, (int, float)):
        return value
    num, sep, den = str(value).partition("/")
    try:
        return float(num) / float(den) if sep else float(num)
    except (ValueError, ZeroDivisionError):
        raise DataError(f"data.rescale: expected a number or 'a/b', found {value!r}") from None


def load_split(
    spec: Spec | Mapping, prep: Preprocessor, path: str, preprocessed: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Encode another labelled file or folder (``evaluate --data``), of any kind the training kind's
    samples can come from, with an already fitted preprocessing (skipped for inputs ``preprocessed``);
    ``spec`` may be the stored spec of a checkpoint."""
    spec = typed(spec)
    data = dataclasses.replace(spec.data, train=path, test=None, validation=None)
    fresh = Preprocessor.from_arrays(prep.to_arrays())
    if prep.kind in ARRAY_KINDS:
        x, y = read_labelled(path, data, fresh, prep.kind, tuple(spec.model.input_shape or ()), prep.classes)
    else:
        s = loader(prep.kind)(data, fresh, spec.seed)
        x, y = s.x_train, s.y_train
    for k, v in fresh.unseen.items():
        prep.unseen[k] = prep.unseen.get(k, 0) + v
    dtype = np.dtype(spec.dtype)
    if preprocessed:
        x = x if x.dtype.kind in "iu" and prep.kind == "text" else x.astype(dtype, copy=False)
    else:
        x = prep.transform_x(x, dtype)
    return x, (x if reconstructs(prep) else prep.encode_y(y, path, dtype))
