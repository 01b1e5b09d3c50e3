"""``nnctl init``: look at a data file and write a commented starter spec that trains as written.

The task comes from the targets: text labels, or a few distinct integers (at most 20, and at most
half the number of samples), mean classification (2 classes: one sigmoid unit and binary
cross-entropy; more: softmax and categorical cross-entropy); anything else is regression (MSE on
standardised targets). The network is small on purpose: tables get Dense 64 -> Dense 32, images get
two Conv2D 3x3 + MaxPooling2D blocks, Flatten and Dense 64.
"""

from __future__ import annotations

import os
import pathlib
import re
from dataclasses import dataclass, field

import numpy as np

from nnctl import toml_write
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
    task: str  # binary, multiclass or regression
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


# -- looking at the data ---------------------------------------------------------------------------
def _task_of_labels(y: np.ndarray, where: str) -> tuple[str, list | None, int, str]:
    """(task, classes, output units, why) from the training targets."""
    n = len(y)
    if y.ndim == 2 and y.shape[1] > 1:
        onehot = np.isin(y, (0, 1)).all() and np.all(y.sum(axis=1) == 1)
        if onehot:
            return ("multiclass", None, y.shape[1], f"the targets are one-hot rows of {y.shape[1]} classes")
        return "regression", None, y.shape[1], f"the targets are {y.shape[1]} numbers per sample"
    flat = y.reshape(n)
    if flat.dtype.kind in "USO":
        classes = sorted(set(flat.tolist()))
        why = f"the targets are text labels ({len(classes)} distinct)"
    else:
        values = flat.astype(np.float64)
        classes = np.unique(values)
        integral = np.all(np.isfinite(values)) and np.all(values == np.round(values))
        if not (integral and len(classes) <= MAX_CLASSES and len(classes) <= max(n // 2, 2)):
            return (
                "regression",
                None,
                1,
                (
                    f"the targets are numbers with {len(classes)} distinct values"
                    + ("" if integral else ", not all integers")
                ),
            )
        classes = [int(c) for c in classes]
        why = f"the targets are {len(classes)} distinct integers"
    if len(classes) < 2:
        raise DataError(f"{where}: the target has a single value ({classes[0]!r}); nothing to learn")
    if y.ndim == 2 and len(classes) > 2:
        # a (N, 1) column of class ids is read as already encoded, which softmax cannot use
        raise DataError(f"{where}: targets have shape {list(y.shape)}; store class labels as a 1-D array of length {n}")
    task = "binary" if len(classes) == 2 else "multiclass"
    return task, classes, 1 if task == "binary" else len(classes), why


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
    from nnctl.data.csvfile import is_missing  # noqa: PLC0415

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
    from nnctl.data.readers import read_csv_table  # noqa: PLC0415

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
    from nnctl.data.csvfile import is_missing  # noqa: PLC0415

    unlabelled = sum(is_missing(r[t]) for r in rows)
    if unlabelled:
        raise DataError(
            f"{path}: the target column {target!r} is empty in {unlabelled} of {len(rows)} rows; "
            f"remove the rows without a target first"
        )
    task, classes, units, why = _task_of_labels(y, str(path))
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
        task,
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
    import h5py  # noqa: PLC0415

    with h5py.File(path, "r") as f:
        return [k for k in f.keys() if isinstance(f[k], h5py.Dataset)]


def _facts_from_arrays(kind, path, x, y, x_key="x", y_key="y") -> Facts:
    task, classes, units, why = _task_of_labels(y, str(path))
    facts = Facts(
        kind,
        path,
        len(x),
        tuple(x.shape[1:]),
        task,
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
    from nnctl.data.readers import read_arrays  # noqa: PLC0415

    if path.suffix.lower() == ".npy":
        raise DataError(f"{path}: a .npy file holds only inputs; init needs inputs and targets (.npz or .h5)")
    try:
        keys = _array_keys(path)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable array file ({exc})") from None
    xk, yk = _pick_key(keys, X_KEYS, path, "inputs"), _pick_key(keys, Y_KEYS, path, "targets")
    x, y = read_arrays(path, (xk, yk))
    if len(x) != len(y):
        raise DataError(f"{path}: {xk!r} has {len(x)} samples but {yk!r} has {len(y)}")
    facts = _facts_from_arrays("arrays", path, x, y, xk, yk)
    test = _sibling_test(path)
    if test is not None:
        try:
            tx, ty = read_arrays(test, (xk, yk))
            ok = tx.shape[1:] == x.shape[1:] and (
                facts.classes is None or set(np.unique(ty).tolist()) <= set(facts.classes)
            )
        except DataError:
            ok = False
        if ok:
            facts.test = test
    return facts


def _inspect_idx(path: pathlib.Path) -> Facts:
    from nnctl.data import idx_labels_path  # noqa: PLC0415
    from nnctl.data.readers import read_idx  # noqa: PLC0415

    x, y = read_idx(path), read_idx(idx_labels_path(path))
    if len(x) != len(y):
        raise DataError(f"{path}: {len(x)} images but {len(y)} labels")
    x = x[..., None] if x.ndim == 3 else x  # the idx loader adds the channel axis the same way
    facts = _facts_from_arrays("idx", path, x, y.astype(np.int64))
    test = _sibling_test(path)
    if test is not None and idx_labels_path(test).exists():
        facts.test = test
    return facts


def _inspect_folder(path: pathlib.Path) -> Facts:
    from nnctl.data.images import list_folder  # noqa: PLC0415

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
        from PIL import Image  # noqa: PLC0415
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
    units = 1 if len(classes) == 2 else len(classes)
    facts = Facts(
        "images",
        root,
        len(files),
        (h, w, 3 if colour else 1),
        "binary" if len(classes) == 2 else "multiclass",
        units,
        classes,
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
    from nnctl.data import resolve_kind  # noqa: PLC0415

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


# -- writing the spec ------------------------------------------------------------------------------
def _line(key: str, value, comment: str = "") -> str:
    text = f"{key} = {toml_write.value(value)}"
    return f"{text:<39} # {comment}" if comment else text


def _name(facts: Facts) -> str:
    """Run name from the data: iris.csv -> iris, digits-train.csv -> digits, mnist/train-images... -> mnist."""
    p = facts.train
    if facts.kind == "idx":
        stem = p.parent.name
    elif p.is_dir():
        stem = p.parent.name if p.name.lower() == "train" else p.name
    else:
        stem = p.name.split(".")[0]
    stem = re.sub(r"(^|[-_.])train(ing)?(?=$|[-_.])", "", stem, flags=re.IGNORECASE) or p.parent.name
    return re.sub(r"[^A-Za-z0-9_-]+", "-", stem).strip("-") or "model"


def _conv_blocks(h: int, w: int) -> int:
    """3x3 'valid' conv then 2x2 pool maps n to (n - 2) // 2: two blocks need n >= 10, one n >= 4."""
    n = min(h, w)
    return 2 if n >= 10 else 1 if n >= 4 else 0


def _layer(lines: list, comment: str, **keys) -> None:
    lines += ["", "[[model.layers]]" + (f"                       # {comment}" if comment else "")]
    lines += [_line(k, v) for k, v in keys.items()]


def starter_spec(
    data, output_dir, target: str | None = None, source_arg: str | None = None, spec_name: str = "spec.toml"
) -> str:
    """The commented TOML text of a starter spec; data paths are relative to ``output_dir`` (the spec's folder)."""
    facts = inspect_data(data, target)
    out_dir = pathlib.Path(output_dir).resolve()

    def rel(p: pathlib.Path) -> str:
        try:
            return pathlib.Path(os.path.relpath(p, out_dir)).as_posix()
        except ValueError:  # another drive (Windows): keep it absolute
            return p.as_posix()

    name = _name(facts)
    L: list[str] = [
        f"# Starter spec written by `nnctl init {source_arg or data}`. Edit freely:",
        f"#   nnctl check {spec_name}   validates it and prints every layer's output shape",
        f"#   nnctl train {spec_name}   trains it; nnctl plot <the checkpoint it prints> shows the curves",
    ]
    L += [f"# {n}" for n in facts.notes]
    task_words = {
        "binary": "binary classification",
        "multiclass": f"classification into {facts.n_outputs} classes",
        "regression": "regression",
    }[facts.task]
    L += [f"# Task: {task_words}.", "# Paths are relative to this file's folder.", ""]
    L.append(_line("name", name, "names the checkpoint runs/<name>.h5"))
    L.append(_line("seed", 0, "same seed, same weights and data order: reruns match"))

    # [data]
    L += ["", "[data]", _line("train", rel(facts.train), "training data")]
    if facts.test is not None:
        L.append(_line("test", rel(facts.test), "held-out test set: nnctl evaluate reports on it"))
    if facts.kind == "tabular":
        L.append(_line("target", facts.target, "the column to predict"))
        if facts.features:
            L.append(_line("features", facts.features, "the input columns (the others are left out)"))
        if facts.categorical:
            L.append(_line("categorical", facts.categorical, "text columns, one-hot encoded"))
        if facts.missing:
            L.append(
                _line(
                    "missing",
                    {"strategy": "median", "columns": {h: {"indicator": True} for h in facts.missing}},
                    "fill empty cells; mark where they were",
                )
            )
    if facts.kind == "arrays" and (facts.x_key, facts.y_key) != ("x", "y"):
        L.append(_line("x", facts.x_key, "array of inputs"))
        L.append(_line("y", facts.y_key, "array of targets"))
    if facts.image_size:
        L.append(_line("image_size", facts.image_size, "resize every image to [height, width]"))
    if facts.image and facts.n_samples > 10000:
        L.append(
            f"# subset = 5000                         # uncomment for a quick first run on a CPU "
            f"({facts.n_samples} images)"
        )
    if facts.uint8:
        L.append(_line("rescale", "1/255", "0-255 pixels to 0-1, so the first layer sees small inputs"))
    else:
        L.append(_line("normalize", "standard", "each input column to mean 0, std 1 (training split statistics)"))
    if facts.task == "regression":
        L.append(_line("normalize_target", "standard", "learn standardised targets; predictions in original units"))
    stratify = facts.classes is not None
    L.append(
        _line(
            "validation",
            {"split": 0.2, **({"stratify": True} if stratify else {})},
            "hold out 20% to watch overfitting" + (" (same class mix)" if stratify else ""),
        )
    )

    # [model]
    L += [
        "",
        "[model]",
        f"# input_shape = {list(facts.input_shape)} is read from the data"
        + (" (after encoding the columns)" if facts.categorical or facts.missing else ""),
    ]
    if facts.image:
        h, w = facts.input_shape[:2]
        if len(facts.input_shape) == 2:
            _layer(L, "(H, W) samples need a channel axis for Conv2D", type="Reshape", target_shape=[h, w, 1])
        blocks = _conv_blocks(h, w)
        for i, filters in enumerate((32, 64)[:blocks]):
            _layer(
                L,
                "3x3 filters find local patterns (edges, then parts)" if i == 0 else "",
                type="Conv2D",
                filters=filters,
                kernel_size=3,
                activation="relu",
            )
            _layer(L, "halve height and width", type="MaxPooling2D", pool_size=2)
        if blocks < 2:
            L.append(
                f"# the images ({h}x{w}) are too small for {'two' if blocks == 1 else 'any'} "
                f"3x3 conv + 2x2 pool block{'s' if blocks == 1 else ''}"
            )
        _layer(L, "feature maps to one vector", type="Flatten")
        _layer(L, "", type="Dense", units=64, activation="relu")
    else:
        if len(facts.input_shape) > 1:
            _layer(L, f"samples of shape {list(facts.input_shape)} to one vector", type="Flatten")
        _layer(L, "two hidden layers: enough for most tables", type="Dense", units=64, activation="relu")
        _layer(L, "", type="Dense", units=32, activation="relu")
    if facts.task == "binary":
        _layer(L, "probability of the second class", type="Dense", units=1, activation="sigmoid")
    elif facts.task == "multiclass":
        _layer(L, "one probability per class", type="Dense", units=facts.n_outputs, activation="softmax")
    else:
        _layer(L, "linear output: any real value", type="Dense", units=facts.n_outputs)
    if facts.classes is not None:
        shown = ", ".join(map(str, facts.classes[:10])) + (", ..." if len(facts.classes) > 10 else "")
        L.append(f"# classes in output order: {shown}")

    # [train]
    loss = {"binary": "binary_crossentropy", "multiclass": "categorical_crossentropy", "regression": "mse"}[facts.task]
    L += [
        "",
        "[train]",
        _line(
            "loss",
            loss,
            {"binary": "for one sigmoid unit", "multiclass": "for softmax outputs", "regression": "mean squared error"}[
                facts.task
            ],
        ),
        _line("optimizer", {"type": "adam", "learning_rate": 0.001}, "a safe default"),
        _line(
            "metrics",
            ["accuracy"] if facts.task != "regression" else ["mae", "r2"],
            "reported each epoch" + (" in the target's units" if facts.task == "regression" else ""),
        ),
        _line("epochs", 50, "an upper bound: early stopping usually ends sooner"),
        _line("batch_size", 32),
        _line(
            "early_stopping",
            {"monitor": "val_loss", "patience": 10, "restore_best": True},
            "stop after 10 epochs without a better val_loss; keep the best",
        ),
        "",
        "[output]",
        _line("checkpoint", f"runs/{name}.h5", "weights, preprocessing and history"),
    ]
    return "\n".join(L) + "\n"
