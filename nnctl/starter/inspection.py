"""What ``nnctl init`` learns from a data file: its kind, shapes, the loss its targets call for, the classes in
the order the data layer encodes them, and the notes the starter spec opens with.

The loss comes from the targets: text labels, or a few distinct integers (at most 20, and at most half the
number of samples), mean classification (2 classes: binary cross-entropy; more: categorical cross-entropy);
anything else is regression (MSE). Everything downstream of that choice (whether there are classes, their
order) is the data layer's own reading of the loss (``preprocess.task_of``, ``Preprocessor.fit_y``), so the
spec ``init`` writes and the run that trains it agree by construction.
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass, field

import numpy as np

from nnctl.data import idx_labels_path, resolve_kind
from nnctl.data.csvfile import is_missing
from nnctl.data.images import list_folder
from nnctl.data.preprocess import Preprocessor, task_of
from nnctl.data.readers import read_arrays, read_csv_table, read_idx
from nnctl.errors import DataError

MAX_CLASSES = 20
MAX_LEVELS = 50  # a text column with more distinct values is free text or an identifier (data.max_categories)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
X_KEYS = ("x", "X", "inputs", "features", "data", "images", "x_train", "X_train")
Y_KEYS = ("y", "Y", "labels", "targets", "target", "y_train", "Y_train")


@dataclass
class Facts:
    """What ``init`` learned about the data; ``notes`` become comments at the top of the spec."""

    kind: str  # tabular, arrays, idx or images
    train: pathlib.Path
    n_samples: int
    input_shape: tuple
    loss: str  # binary_crossentropy, categorical_crossentropy or mse
    n_outputs: int  # units of the last layer
    classes: list | None = None
    test: pathlib.Path | None = None
    target: str | None = None
    features: list | None = None  # only when some columns had to be left out
    categorical: list | None = None  # CSV text columns with few levels: one-hot encoded
    missing: list | None = None  # CSV feature columns with empty cells: filled, with an indicator
    x_key: str = "x"
    y_key: str = "y"
    uint8: bool = False  # raw 0-255 pixels: rescale by 1/255
    image: bool = False  # (H, W, C) or (H, W) samples: a small convolutional network
    image_size: list | None = None
    notes: list = field(default_factory=list)

    @property
    def task(self) -> str:
        """How the loss wants its targets, as the data layer reads it: binary, categorical or regression."""
        return task_of(self.loss)


# -- looking at the data ---------------------------------------------------------------------------
BINARY, CATEGORICAL, REGRESSION = "binary_crossentropy", "categorical_crossentropy", "mse"


def _loss_of_targets(y: np.ndarray, where: str) -> tuple[str, list | None, int, str]:
    """(loss, classes in output order, output units, why) from the training targets."""
    n = len(y)
    if y.ndim == 2 and y.shape[1] > 1:
        onehot = np.isin(y, (0, 1)).all() and np.all(y.sum(axis=1) == 1)
        if onehot:
            return CATEGORICAL, None, y.shape[1], f"the targets are one-hot rows of {y.shape[1]} classes"
        return REGRESSION, None, y.shape[1], f"the targets are {y.shape[1]} numbers per sample"
    flat = y.reshape(n)
    if flat.dtype.kind in "USO":
        distinct = len(set(flat.tolist()))
        why = f"the targets are text labels ({distinct} distinct)"
    else:
        values = flat.astype(np.float64)
        distinct = len(np.unique(values))
        integral = np.all(np.isfinite(values)) and np.all(values == np.round(values))
        if not (integral and distinct <= MAX_CLASSES and distinct <= max(n // 2, 2)):
            return (
                REGRESSION,
                None,
                1,
                f"the targets are numbers with {distinct} distinct values" + ("" if integral else ", not all integers"),
            )
        why = f"the targets are {distinct} distinct integers"
    if distinct < 2:
        raise DataError(f"{where}: the target has a single value ({_shown(flat[0])!r}); nothing to learn")
    if y.ndim == 2 and distinct > 2:
        # a (N, 1) column of class ids is read as already encoded, which softmax cannot use
        raise DataError(f"{where}: targets have shape {list(y.shape)}; store class labels as a 1-D array of length {n}")
    loss = BINARY if distinct == 2 else CATEGORICAL
    classes = _classes(y, loss, where)
    return loss, classes, 1 if loss == BINARY else len(classes), why


def _classes(y: np.ndarray, loss: str, where: str) -> list:
    """The classes in the order the data layer encodes them (its Preprocessor fitted on the same targets)."""
    prep = Preprocessor(task=task_of(loss))
    prep.fit_y(y, where)
    assert prep.classes is not None  # 1-D labels, or a binary (N, 1) column: fit_y always finds classes
    return [_shown(c) for c in prep.classes.tolist()]


def _shown(label):
    """A label as a spec comment shows it: integral numbers as integers, text as itself."""
    if isinstance(label, (float, np.floating)) and float(label) == round(float(label)):
        return int(label)
    return label.item() if isinstance(label, np.generic) else label


def _numeric(rows, col) -> bool:
    try:
        for r in rows:
            float(r[col])
    except ValueError:
        return False
    return True


def _column_kind(rows, col) -> tuple[str, int, int]:
    """(kind, missing cells, distinct present values) of a CSV column: ``number`` (every present cell a
    number), ``category`` (text with at most ``MAX_LEVELS`` levels, fewer than half the rows), ``text``
    (free text or identifiers: left out) or ``empty``; missing cells are the data layer's tokens."""
    present = [r[col].strip() for r in rows if not is_missing(r[col])]
    n_missing = len(rows) - len(present)
    if not present:
        return "empty", n_missing, 0
    try:
        for cell in present:
            float(cell)
        return "number", n_missing, len(set(present))
    except ValueError:
        pass
    levels = len(set(present))
    kind = "category" if levels <= MAX_LEVELS and levels <= max(len(rows) // 2, 2) else "text"
    return kind, n_missing, levels


def _sibling_test(train: pathlib.Path) -> pathlib.Path | None:
    """A test file beside the training file by the usual names (iris.csv -> iris-test.csv, train -> test)."""
    name = train.name
    stem = name[: -len("".join(train.suffixes))] if train.suffixes else name
    suffix = name[len(stem) :]
    candidates = []
    if "train" in name:
        candidates += [name.replace("train", "t10k"), name.replace("train", "test")]
    candidates += [f"{stem}-test{suffix}", f"{stem}_test{suffix}", f"{stem}.test{suffix}"]
    for c in candidates:
        p = train.with_name(c)
        if c != name and p.exists():
            return p
    return None


def _inspect_csv(path: pathlib.Path, target: str | None) -> Facts:
    header, rows = read_csv_table(path)
    target = target if target is not None else header[-1]
    if target not in header:
        raise DataError(f"{path}: no target column {target!r}; columns are {', '.join(header)}")
    t = header.index(target)
    raw = np.array([r[t].strip() for r in rows])
    try:
        y = raw.astype(np.float64)
    except ValueError:
        y = raw

    unlabelled = sum(is_missing(r[t]) for r in rows)
    if unlabelled:
        raise DataError(
            f"{path}: the target column {target!r} is empty in {unlabelled} of {len(rows)} rows; "
            f"remove the rows without a target first"
        )
    loss, classes, units, why = _loss_of_targets(y, str(path))
    kinds = {h: _column_kind(rows, i) for i, h in enumerate(header) if i != t}
    numeric = [h for h, k in kinds.items() if k[0] == "number"]
    categorical = [h for h, k in kinds.items() if k[0] == "category"]
    features = [h for h in kinds if h in numeric or h in categorical]  # in the file's order
    left_out = [h for h in kinds if h not in features]
    missing = [h for h in features if kinds[h][1]]
    if not features:
        raise DataError(
            f"{path}: no usable feature column besides the target {target!r} (numbers, or text with "
            f"at most {MAX_LEVELS} distinct values)"
        )
    width = len(numeric) + sum(1 + kinds[h][2] for h in categorical) + len(missing)  # data/columns.py's widths
    facts = Facts(
        "tabular",
        path,
        len(rows),
        (width,),
        loss,
        units,
        classes,
        target=target,
        features=features if left_out else None,
        categorical=categorical or None,
        missing=missing or None,
    )
    facts.notes.append(
        f"{path.name}: {len(rows)} rows, {len(numeric)} numeric feature columns"
        + (f", {len(categorical)} categorical" if categorical else "")
        + f", target column {target!r}: {why}."
    )
    if categorical:
        facts.notes.append(
            "Categorical (one-hot, with a slot for values unseen in training): "
            + ", ".join(f"{h} ({kinds[h][2]} levels)" for h in categorical)
            + "."
        )
    if missing:
        facts.notes.append(
            "Empty cells, filled from the training split (median; the most frequent level for "
            "categories), with a 0/1 column saying so: " + ", ".join(f"{h} ({kinds[h][1]})" for h in missing) + "."
        )
    for h in left_out:
        kind, _, levels = kinds[h]
        why_out = "has no values" if kind == "empty" else f"is free text or an identifier ({levels} distinct values)"
        facts.notes.append(f"Left out the column {h!r}: it {why_out}.")
    test = _sibling_test(path)
    if test is not None:
        test_header, test_rows = read_csv_table(test)
        usable = target in test_header and all(f in test_header for f in features)
        if usable and classes is not None:
            seen = {str(c) for c in classes}
            usable = all(_label_text(r[test_header.index(target)]) in seen for r in test_rows)
        if usable:
            facts.test = test
        else:
            facts.notes.append(f"{test.name} looks like a test file but its columns or labels differ; not used.")
    return facts


def _label_text(cell: str) -> str:
    """A CSV label as the training side spells it (integral numbers as integers)."""
    cell = cell.strip()
    try:
        v = float(cell)
        return str(int(v)) if v == round(v) else cell
    except ValueError:
        return cell


def _pick_key(keys: list[str], wanted: tuple, path, what: str) -> str:
    for k in wanted:
        if k in keys:
            return k
    raise DataError(
        f"{path}: cannot tell which array holds the {what}; found {', '.join(keys) or 'none'} "
        f"(expected one of {', '.join(wanted[:4])})"
    )


def _array_keys(path: pathlib.Path) -> list[str]:
    if path.suffix.lower() == ".npz":
        with np.load(path, allow_pickle=False) as z:
            return list(z.keys())
    import h5py

    with h5py.File(path, "r") as f:
        return [k for k in f.keys() if isinstance(f[k], h5py.Dataset)]


def _facts_from_arrays(kind, path, x, y, x_key="x", y_key="y") -> Facts:
    loss, classes, units, why = _loss_of_targets(y, str(path))
    facts = Facts(
        kind,
        path,
        len(x),
        tuple(x.shape[1:]),
        loss,
        units,
        classes,
        x_key=x_key,
        y_key=y_key,
        uint8=x.dtype == np.uint8,
    )
    shape = tuple(x.shape[1:])
    facts.image = (len(shape) == 3 and shape[-1] in (1, 3, 4)) or (len(shape) == 2 and x.dtype == np.uint8)
    what = "images" if facts.image else "samples"
    facts.notes.append(f"{path.name}: {len(x)} {what} of shape {list(shape)} ({x.dtype}); {why}.")
    return facts


def _inspect_arrays(path: pathlib.Path) -> Facts:
    if path.suffix.lower() == ".npy":
        raise DataError(f"{path}: a .npy file holds only inputs; init needs inputs and targets (.npz or .h5)")
    try:
        keys = _array_keys(path)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable array file ({exc})") from None
    xk, yk = _pick_key(keys, X_KEYS, path, "inputs"), _pick_key(keys, Y_KEYS, path, "targets")
    x, y = read_arrays(path, (xk, yk))
    assert x is not None and y is not None  # both keys were picked from the file's own keys
    if len(x) != len(y):
        raise DataError(f"{path}: {xk!r} has {len(x)} samples but {yk!r} has {len(y)}")
    facts = _facts_from_arrays("arrays", path, x, y, xk, yk)
    test = _sibling_test(path)
    if test is not None:
        try:
            tx, ty = read_arrays(test, (xk, yk))
            ok = (
                tx is not None
                and ty is not None
                and tx.shape[1:] == x.shape[1:]
                and (facts.classes is None or set(np.unique(ty).tolist()) <= set(facts.classes))
            )
        except DataError:
            ok = False
        if ok:
            facts.test = test
    return facts


def _inspect_idx(path: pathlib.Path) -> Facts:
    x, y = read_idx(path), read_idx(idx_labels_path(str(path)))
    if len(x) != len(y):
        raise DataError(f"{path}: {len(x)} images but {len(y)} labels")
    x = x[..., None] if x.ndim == 3 else x  # the idx loader adds the channel axis the same way
    facts = _facts_from_arrays("idx", path, x, y.astype(np.int64))
    test = _sibling_test(path)
    if test is not None and idx_labels_path(str(test)).exists():
        facts.test = test
    return facts


def _inspect_folder(path: pathlib.Path) -> Facts:
    root = path
    test = None
    if (path / "train").is_dir():  # data/train/<class>/..., data/test/<class>/...
        root = path / "train"
        test = next((path / t for t in ("test", "val", "validation") if (path / t).is_dir()), None)
    classes, files, _ = list_folder(root)
    files = [f for f in files if f.suffix.lower() in IMAGE_SUFFIXES] or files
    if len(classes) < 2:
        raise DataError(f"{root}: one class folder ({classes[0]!r}); a classifier needs at least two")
    try:
        from PIL import Image
    except ImportError:
        raise DataError(
            "image folders need Pillow: Pillow, a core dependency: reinstall nnctl, or pip install Pillow"
        ) from None
    sizes, colour = set(), False
    for p in files[:: max(len(files) // 200, 1)]:  # headers of a sample: cheap even for big folders
        try:
            with Image.open(p) as im:
                sizes.add((im.size[1], im.size[0]))
                colour = colour or Image.getmodebase(im.mode) != "L"
        except Exception as exc:  # noqa: BLE001 - Pillow raises several kinds for a bad file
            raise DataError(f"{p}: not a readable image ({type(exc).__name__}: {exc})") from None
    h, w = next(iter(sizes)) if len(sizes) == 1 else (0, 0)
    size = None
    if len(sizes) > 1 or max(h, w) > 128:
        size = [64, 64]
        h = w = 64
    loss = BINARY if len(classes) == 2 else CATEGORICAL
    facts = Facts(
        "images",
        root,
        len(files),
        (h, w, 3 if colour else 1),
        loss,
        1 if loss == BINARY else len(classes),
        _classes(np.array(classes), loss, str(root)),
        test=test,
        uint8=True,
        image=True,
        image_size=size,
    )
    facts.notes.append(
        f"{root.name}/: {len(files)} images in {len(classes)} class folders "
        f"({', '.join(classes[:8])}{', ...' if len(classes) > 8 else ''}), "
        f"{'colour' if colour else 'grayscale'}."
    )
    if size:
        facts.notes.append(
            "The images differ in size or are large, so they are resized to 64x64 "
            "(data.image_size); bigger sizes keep more detail but train slower."
        )
    return facts


def inspect_data(data, target: str | None = None) -> Facts:
    """Facts about a CSV file, .npz/.h5 arrays, an IDX file or an image folder."""
    path = pathlib.Path(data).expanduser().resolve()
    if not path.exists():
        raise DataError(f"{data}: not found")
    try:
        kind = resolve_kind({"train": str(path)})
    except DataError:
        raise DataError(f"{data}: init reads CSV files, .npz/.h5 arrays, IDX files and image folders") from None
    if target is not None and kind != "tabular":
        raise DataError(f"--target: only CSV files have columns; {data} is {kind} data")
    return {
        "tabular": lambda: _inspect_csv(path, target),
        "arrays": lambda: _inspect_arrays(path),
        "idx": lambda: _inspect_idx(path),
        "images": lambda: _inspect_folder(path),
    }[kind]()
