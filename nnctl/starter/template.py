"""The starter spec ``nnctl init`` writes: built as data (a spec dict, what ``tomllib`` reads back from the text),
with a comment per key, then serialised through ``toml_write``'s values.

The network is small on purpose: tables get Dense 64 -> Dense 32, images two Conv2D 3x3 + MaxPooling2D
blocks, Flatten and Dense 64; the output layer and the loss follow the targets (``inspection``).
"""

from __future__ import annotations

import os
import pathlib
import re
from dataclasses import dataclass, field

from nnctl import toml_write
from nnctl.starter.inspection import Facts, inspect_data

Path = tuple  # a key's place in the spec: ("data", "train"), ("model", "layers", 2)

COMMENT_COLUMN = 39  # end-of-line comments line up after this many characters


@dataclass
class Commented:
    """A spec as data, and the comments that go with it when written as TOML."""

    spec: dict = field(default_factory=dict)
    header: list[str] = field(default_factory=list)  # comment lines above everything
    comments: dict[Path, str] = field(default_factory=dict)  # at the end of a key's line (a layer's header)
    after: dict[Path, list[str]] = field(default_factory=dict)  # whole comment lines after a key or a table header
    _last: Path = ()

    def set(self, where: Path, key: str, value, comment: str = "") -> None:
        """``spec[where...][key] = value``, with its comment."""
        table = self.spec
        for part in where:
            table = table.setdefault(part, {})
        table[key] = value
        self._mark((*where, key), comment)

    def table(self, name: str) -> None:
        self.spec.setdefault(name, {})
        self._last = (name,)

    def layer(self, comment: str = "", **keys) -> None:
        layers = self.spec.setdefault("model", {}).setdefault("layers", [])
        layers.append(keys)
        self._mark(("model", "layers", len(layers) - 1), comment)

    def note(self, line: str) -> None:
        """A whole comment line after what was set last."""
        self.after.setdefault(self._last, []).append(line)

    def _mark(self, path: Path, comment: str) -> None:
        if comment:
            self.comments[path] = comment
        self._last = path


def render(doc: Commented) -> str:
    """The TOML text: top-level keys, then one ``[table]`` per section and ``[[model.layers]]`` per layer."""
    lines = [f"# {line}" if line else "" for line in doc.header]

    def notes(path: Path) -> None:
        lines.extend(f"# {line}" for line in doc.after.get(path, []))

    def key_line(path: Path, value) -> None:
        text = f"{toml_write.key(path[-1])} = {toml_write.value(value)}"
        comment = doc.comments.get(path)
        lines.append(f"{text:<{COMMENT_COLUMN}} # {comment}" if comment else text)
        notes(path)

    tables = [(k, v) for k, v in doc.spec.items() if isinstance(v, dict)]
    for k, v in doc.spec.items():
        if not isinstance(v, dict):
            key_line((k,), v)
    for name, table in tables:
        lines += ["", f"[{toml_write.key(name)}]"]
        notes((name,))
        for k, v in table.items():
            if name == "model" and k == "layers":
                for i, entry in enumerate(v):
                    comment = doc.comments.get((name, k, i))
                    head = "[[model.layers]]"
                    lines += ["", f"{head:<{COMMENT_COLUMN}}# {comment}" if comment else head]
                    lines += [f"{toml_write.key(ek)} = {toml_write.value(ev)}" for ek, ev in entry.items()]
                    notes((name, k, i))
            else:
                key_line((name, k), v)
    return "\n".join(lines) + "\n"


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


def _data(doc: Commented, facts: Facts, rel) -> None:
    d = ("data",)
    doc.table("data")
    doc.set(d, "train", rel(facts.train), "training data")
    if facts.test is not None:
        doc.set(d, "test", rel(facts.test), "held-out test set: nnctl evaluate reports on it")
    if facts.kind == "tabular":
        doc.set(d, "target", facts.target, "the column to predict")
        if facts.features:
            doc.set(d, "features", facts.features, "the input columns (the others are left out)")
        if facts.categorical:
            doc.set(d, "categorical", facts.categorical, "text columns, one-hot encoded")
        if facts.missing:
            missing = {"strategy": "median", "columns": {h: {"indicator": True} for h in facts.missing}}
            doc.set(d, "missing", missing, "fill empty cells; mark where they were")
    if facts.kind == "arrays" and (facts.x_key, facts.y_key) != ("x", "y"):
        doc.set(d, "x", facts.x_key, "array of inputs")
        doc.set(d, "y", facts.y_key, "array of targets")
    if facts.image_size:
        doc.set(d, "image_size", facts.image_size, "resize every image to [height, width]")
    if facts.image and facts.n_samples > 10000:
        doc.note(
            f"subset = 5000                         # uncomment for a quick first run on a CPU ({facts.n_samples} images)"
        )
    if facts.uint8:
        doc.set(d, "rescale", "1/255", "0-255 pixels to 0-1, so the first layer sees small inputs")
    else:
        doc.set(d, "normalize", "standard", "each input column to mean 0, std 1 (training split statistics)")
    if facts.task == "regression":
        doc.set(d, "normalize_target", "standard", "learn standardised targets; predictions in original units")
    stratify = facts.classes is not None
    doc.set(
        d,
        "validation",
        {"split": 0.2, **({"stratify": True} if stratify else {})},
        "hold out 20% to watch overfitting" + (" (same class mix)" if stratify else ""),
    )


def _model(doc: Commented, facts: Facts) -> None:
    doc.table("model")
    encoded = " (after encoding the columns)" if facts.categorical or facts.missing else ""
    doc.note(f"input_shape = {list(facts.input_shape)} is read from the data{encoded}")
    if facts.image:
        h, w = facts.input_shape[:2]
        if len(facts.input_shape) == 2:
            doc.layer("(H, W) samples need a channel axis for Conv2D", type="Reshape", target_shape=[h, w, 1])
        blocks = _conv_blocks(h, w)
        for i, filters in enumerate((32, 64)[:blocks]):
            first = "3x3 filters find local patterns (edges, then parts)" if i == 0 else ""
            doc.layer(first, type="Conv2D", filters=filters, kernel_size=3, activation="relu")
            doc.layer("halve height and width", type="MaxPooling2D", pool_size=2)
        if blocks < 2:
            doc.note(
                f"the images ({h}x{w}) are too small for {'two' if blocks == 1 else 'any'} "
                f"3x3 conv + 2x2 pool block{'s' if blocks == 1 else ''}"
            )
        doc.layer("feature maps to one vector", type="Flatten")
        doc.layer(type="Dense", units=64, activation="relu")
    else:
        if len(facts.input_shape) > 1:
            doc.layer(f"samples of shape {list(facts.input_shape)} to one vector", type="Flatten")
        doc.layer("two hidden layers: enough for most tables", type="Dense", units=64, activation="relu")
        doc.layer(type="Dense", units=32, activation="relu")
    if facts.task == "binary":
        doc.layer("probability of the second class", type="Dense", units=1, activation="sigmoid")
    elif facts.task == "categorical":
        doc.layer("one probability per class", type="Dense", units=facts.n_outputs, activation="softmax")
    else:
        doc.layer("linear output: any real value", type="Dense", units=facts.n_outputs)
    if facts.classes is not None:
        shown = ", ".join(map(str, facts.classes[:10])) + (", ..." if len(facts.classes) > 10 else "")
        doc.note(f"classes in output order: {shown}")


LOSS_WHY = {"binary": "for one sigmoid unit", "categorical": "for softmax outputs", "regression": "mean squared error"}


def _train(doc: Commented, facts: Facts, name: str) -> None:
    t = ("train",)
    regression = facts.task == "regression"
    doc.table("train")
    doc.set(t, "loss", facts.loss, LOSS_WHY[facts.task])
    doc.set(t, "optimizer", {"type": "adam", "learning_rate": 0.001}, "a safe default")
    metrics, why = (["mae", "r2"], "reported each epoch in the target's units") if regression else (["accuracy"], "")
    doc.set(t, "metrics", metrics, why or "reported each epoch")
    doc.set(t, "epochs", 50, "an upper bound: early stopping usually ends sooner")
    doc.set(t, "batch_size", 32)
    doc.set(
        t,
        "early_stopping",
        {"monitor": "val_loss", "patience": 10, "restore_best": True},
        "stop after 10 epochs without a better val_loss; keep the best",
    )
    doc.table("output")
    doc.set(("output",), "checkpoint", f"runs/{name}.h5", "weights, preprocessing and history")


def starter_document(facts: Facts, output_dir, source: str, spec_name: str = "spec.toml") -> Commented:
    """The starter spec for ``facts`` as data with its comments; data paths relative to ``output_dir``."""
    out_dir = pathlib.Path(output_dir).resolve()

    def rel(p: pathlib.Path) -> str:
        try:
            return pathlib.Path(os.path.relpath(p, out_dir)).as_posix()
        except ValueError:  # another drive (Windows): keep it absolute
            return p.as_posix()

    doc = Commented()
    task_words = {
        "binary": "binary classification",
        "categorical": f"classification into {facts.n_outputs} classes",
        "regression": "regression",
    }[facts.task]
    doc.header = [
        f"Starter spec written by `nnctl init {source}`. Edit freely:",
        f"  nnctl check {spec_name}   validates it and prints every layer's output shape",
        f"  nnctl train {spec_name}   trains it; nnctl plot <the checkpoint it prints> shows the curves",
        *facts.notes,
        f"Task: {task_words}.",
        "Paths are relative to this file's folder.",
        "",
    ]
    name = _name(facts)
    doc.set((), "name", name, "names the checkpoint runs/<name>.h5")
    doc.set((), "seed", 0, "same seed, same weights and data order: reruns match")
    _data(doc, facts, rel)
    _model(doc, facts)
    _train(doc, facts, name)
    return doc


def starter_spec(
    data, output_dir, target: str | None = None, source_arg: str | None = None, spec_name: str = "spec.toml"
) -> str:
    """The commented TOML text of a starter spec; data paths are relative to ``output_dir`` (the spec's folder)."""
    facts = inspect_data(data, target)
    return render(starter_document(facts, output_dir, source_arg or str(data), spec_name))
