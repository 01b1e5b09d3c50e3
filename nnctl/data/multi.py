"""Data of a model with named inputs or outputs: ``{name: array}`` per split, from CSV column groups or npz/HDF5.

``data.inputs`` maps each input to its CSV columns (``user = ["user_id"]``) or to an array of a
.npz/.h5 file (``image = "images"``; default: the array of the input's name); ``data.targets`` maps each
output the same way. A model with one unnamed input reads ``data.features`` / ``data.x``, and one
unnamed output ``data.target`` / ``data.y``, as before. Values are fed as stored (no scaling): ids stay
integers, class targets are integer ids 0..K-1 (one-hot for a categorical loss), other targets floats.
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from nnctl.build import build_model
from nnctl.data import typed
from nnctl.data.csvfile import header_of, read_columns
from nnctl.data.preprocess import Preprocessor, task_of
from nnctl.data.readers import read_arrays
from nnctl.data.splits import Dataset, check_finite
from nnctl.errors import DataError
from nnctl.registry import suggestion
from nnctl.spec_table import Table

if TYPE_CHECKING:
    from nnctl.spec_model import Spec

UNSUPPORTED = (
    "normalize",
    "normalize_target",
    "rescale",
    "sample_weight",
    "augment",
    "categorical",
    "missing",
    "subset",
)


def _outputs(spec: Spec) -> dict[str, tuple[str, str]]:
    """{output name: (its layer, its loss's name)}; the one unnamed output is "" with train.loss."""
    named = spec.model.outputs
    if named:
        return {name: (out.layer, out.loss.type) for name, out in named.items()}
    layers = spec.model.layers or []  # a validated one-output spec has its layers
    return {"": (layers[-1]["name"], spec.train.loss.type)}


def sources(spec: Spec, csv: bool) -> tuple[dict, dict]:
    """Where each input and target comes from: {name: [columns]} for CSV, {name: array name} otherwise."""
    data, model = spec.data, spec.model
    given_x, given_y = data.inputs or {}, data.targets or {}
    inputs = {k: given_x.get(k) for k in (model.inputs or ["input"])}
    targets = {k: given_y.get(k) for k in _outputs(spec)}
    for name in inputs:
        if inputs[name] is None:
            inputs[name] = (
                (data.features if name == "input" else None) if csv else (data.x if name == "input" else name)
            )
    for name in targets:
        if targets[name] is None:
            targets[name] = (
                ([data.target] if isinstance(data.target, (str, int)) else data.target)
                if name == ""
                else (None if csv else name)
            )
            if not csv and name == "":
                targets[name] = data.y
    return inputs, targets


def _label(kind: str, name: str) -> str:
    return (
        f"data.{kind}.{name}" if name not in ("", "input") else ("data.features" if kind == "inputs" else "data.target")
    )


def read_inputs(path, spec: Spec | Mapping):
    """The inputs alone (``nnctl predict``), shaped and typed for the model: {name: array}, or one array;
    ``spec`` may be a checkpoint's stored spec."""
    spec = typed(spec)
    x, _ = read(path, spec, with_targets=False)
    x = conform_inputs(spec, x, str(path))
    return x if spec.model.inputs else x["input"]


def read(path, spec: Spec, with_targets: bool = True, resolved: dict | None = None) -> tuple[dict, dict]:
    """({input: array}, {output name: array}) of one CSV or .npz/.h5 file, each with the same rows; a CSV's
    input column groups, as resolved, go into ``resolved`` when given."""
    p = pathlib.Path(path)
    if str(path) == "-" or not p.is_file():
        raise DataError(f"{path}: expected a CSV or .npz/.h5 file holding the named inputs (not stdin)")
    csv = p.suffix.lower() == ".csv"
    inputs, targets = sources(spec, csv)
    if not with_targets:
        targets = {}
    if csv:
        x, y = _read_csv(p, inputs, targets)
        if resolved is not None:
            resolved.update(inputs)
    else:
        x, y = _read_arrays(p, inputs, targets)
    counts = {
        **{_label("inputs", k): len(v) for k, v in x.items()},
        **{_label("targets", k): len(v) for k, v in y.items()},
    }
    if len(set(counts.values())) > 1:
        first = next(iter(counts))
        other = next(k for k, v in counts.items() if v != counts[first])
        raise DataError(f"{p}: {other}: expected {counts[first]} rows (as {first}), found {counts[other]}")
    for k, v in {**x, **y}.items():
        check_finite(v, str(p), k or "target")
    return x, y


def _read_csv(p: pathlib.Path, inputs: dict, targets: dict) -> tuple[dict, dict]:
    header = header_of(p)
    for kind, table in (("targets", targets), ("inputs", inputs)):
        for name, cols in table.items():
            if cols is None and name == "":
                cols = table[name] = [header[-1]]  # the one unnamed target: the last column, as for one model
            if cols is None and kind == "targets":
                raise DataError(f"{p}: data.targets.{name}: required for CSV data (the output's columns)")
            if cols is None:
                if name != "input":
                    raise DataError(f"{p}: data.inputs.{name}: required for CSV data (the input's columns)")
                used = {c for v in targets.values() for c in v or []}
                table[name] = [c for c in header if c not in used]
                continue
            cols = table[name] = [
                c if isinstance(c, str) else header[c] if -len(header) <= c < len(header) else str(c)
                for c in (cols if isinstance(cols, list) else [cols])
            ]
            for c in cols:
                if c not in header:
                    raise DataError(
                        f"{p}: {_label(kind, name)}: column {c!r} is not in the header{suggestion(c, header)}"
                    )
    every = list(dict.fromkeys(c for t in (inputs, targets) for v in t.values() for c in v))
    cols = read_columns(p, every, [])

    def group(names):
        return np.stack([cols.numbers[c] for c in names], axis=1)

    return {k: group(v) for k, v in inputs.items()}, {k: group(v) for k, v in targets.items()}


def _read_arrays(p: pathlib.Path, inputs: dict, targets: dict) -> tuple[dict, dict]:
    for kind, table in (("inputs", inputs), ("targets", targets)):
        for name, key in table.items():
            if not isinstance(key, str):
                raise DataError(
                    f"{p}: {_label(kind, name)}: expected an array name for .npz/.h5 data, found columns {key!r}"
                )
    names = list(dict.fromkeys([*inputs.values(), *targets.values()]))
    arrays = dict(zip(names, read_arrays(p, tuple(names))))
    return {k: np.asarray(arrays[v]) for k, v in inputs.items()}, {k: np.asarray(arrays[v]) for k, v in targets.items()}


# -- fitting the arrays to the model -----------------------------------------------------------
def conform_inputs(spec: Spec, x: dict, where: str) -> dict:
    """Each input reshaped to its declared shape and cast to its dtype (ids must be whole numbers)."""
    named = spec.model.inputs
    dtype = np.dtype(spec.dtype)
    out = {}
    for name, a in x.items():
        shape = tuple(named[name].shape) if named else tuple(spec.model.input_shape or a.shape[1:])
        dt = np.dtype(named[name].dtype or dtype) if named else dtype
        if int(np.prod(a.shape[1:], dtype=np.int64)) != int(np.prod(shape, dtype=np.int64)):
            raise DataError(
                f"{where}: {_label('inputs', name)}: samples have shape {list(a.shape[1:])}, "
                f"the input's shape is {list(shape)}"
            )
        a = a.reshape(len(a), *shape)
        if dt.kind in "iu":
            if a.dtype.kind == "f" and not np.all(a == np.round(a)):
                raise DataError(
                    f"{where}: {_label('inputs', name)}: expected whole-number ids for dtype {dt}, "
                    f"found {a[a != np.round(a)].ravel()[0]}"
                )
        out[name] = a.astype(dt, copy=False)
    return out


def encode_targets(spec: Spec, y: dict, output_shapes: dict, where: str) -> dict:
    """Targets as each output's loss takes them: class ids (sparse), one-hot (categorical), else floats of
    the output's shape."""
    dtype = np.dtype(spec.dtype)
    out = {}
    for name, (layer, loss) in _outputs(spec).items():
        a, shape, task = y[name], tuple(output_shapes[layer]), task_of(loss)
        label = _label("targets", name)
        if task in ("sparse", "categorical") and (a.ndim == 1 or a.shape[1:] in ((1,), shape[:-1])):
            ids = a.reshape(len(a), *shape[:-1])
            if not np.all(ids == np.round(ids)) or (len(ids) and (ids.min() < 0 or ids.max() >= shape[-1])):
                bad = ids[(ids != np.round(ids)) | (ids < 0) | (ids >= shape[-1])].ravel()[0]
                raise DataError(
                    f"{where}: {label}: expected class ids 0..{shape[-1] - 1} for layer "
                    f"{layer} ({shape[-1]} units), found {bad}"
                )
            ids = ids.astype(np.int64)
            out[name] = ids if task == "sparse" else np.eye(shape[-1], dtype=dtype)[ids]
            continue
        if int(np.prod(a.shape[1:], dtype=np.int64)) != int(np.prod(shape, dtype=np.int64)):
            raise DataError(
                f"{where}: {label}: targets have shape {list(a.shape[1:])} per sample but layer "
                f"{layer} outputs {list(shape)}"
            )
        out[name] = a.reshape(len(a), *shape).astype(dtype, copy=False)
    return out


def _unnamed(x: dict, y: dict, spec: Spec) -> tuple:
    """The one unnamed input and output stay plain arrays (the model's one-input, one-output case)."""
    return (x if spec.model.inputs else x["input"]), (y if spec.model.outputs else y[""])


def load_split(spec: Spec | Mapping, path, output_shapes: dict) -> tuple:
    """(inputs, targets) of another labelled file, encoded for the model (``evaluate --data``, the test set);
    ``spec`` may be a checkpoint's stored spec."""
    spec = typed(spec)
    x, y = read(path, spec)
    return _unnamed(conform_inputs(spec, x, str(path)), encode_targets(spec, y, output_shapes, str(path)), spec)


def _is_set(value) -> bool:
    """Whether a data key asks for something: not None, "none" or an empty table or list."""
    if isinstance(value, Table):
        return bool(value.present())
    return value is not None and value != "none" and not (isinstance(value, (dict, list)) and not value)


def output_shapes(spec: Spec, x) -> dict:
    """{layer: output shape} of the spec's model for inputs ``x`` (before its targets are encoded): the model is
    built to learn them (build sits on the data layer's floor)."""
    named = spec.model.inputs
    shape = (
        tuple(next(iter(named.values())).shape)
        if named
        else tuple(x.shape[1:] if not isinstance(x, dict) else x["input"].shape[1:])
    )
    model = build_model(spec, shape, spec.seed, {})
    return {n.name: n.output_shape for n in model.nodes}


def load(spec: Spec, output_shapes) -> Dataset:
    """Every split of a named-inputs/outputs spec, encoded; ``output_shapes(x)`` builds the model to learn
    the outputs' shapes from the inputs."""
    data = spec.data
    for key in UNSUPPORTED:
        if _is_set(getattr(data, key)):
            raise DataError(
                f"{data.train}: data.{key}: not available with named inputs or outputs "
                f"(model.inputs/model.outputs); their data is fed as stored"
            )
    first_loss = next(iter(_outputs(spec).values()))[1]
    prep = Preprocessor(_kind(data.train), task_of(first_loss))
    prep.meta["named"] = True
    columns: dict = {}  # the column groups as resolved, stored with the spec for predict
    x_raw, y_raw = read(data.train, spec, resolved=columns)
    x = conform_inputs(spec, x_raw, data.train)
    shapes = output_shapes(x)
    y = encode_targets(spec, y_raw, shapes, data.train)
    n = len(next(iter(x.values())))
    x_val = y_val = x_test = y_test = None
    val = data.validation
    val_path = val if isinstance(val, str) else (val.path if val is not None else None)
    if val_path:
        x_val, y_val = _unnamed(*_encoded(spec, val_path, shapes), spec)
    elif val is not None and not isinstance(val, str):
        n_val = int(round(n * float(val.split)))
        if not 0 < n_val < n:
            raise DataError(f"{data.train}: validation split {val.split} of {n} samples leaves an empty split")
        rng = np.random.default_rng(np.random.SeedSequence(spec.seed, spawn_key=(2,)))
        mask = np.zeros(n, bool)
        mask[rng.permutation(n)[:n_val]] = True
        x_val, y_val = _unnamed({k: v[mask] for k, v in x.items()}, {k: v[mask] for k, v in y.items()}, spec)
        x, y = {k: v[~mask] for k, v in x.items()}, {k: v[~mask] for k, v in y.items()}
    if data.test:
        x_test, y_test = _unnamed(*_encoded(spec, data.test, shapes), spec)
    x_train, y_train = _unnamed(x, y, spec)
    named = {**(data.inputs or {}), **columns} if columns else None
    return Dataset(x_train, y_train, x_val, y_val, x_test, y_test, prep, {}, None, named)


def _encoded(spec: Spec, path, shapes: dict) -> tuple[dict, dict]:
    x, y = read(path, spec)
    return conform_inputs(spec, x, str(path)), encode_targets(spec, y, shapes, str(path))


def _kind(path) -> str:
    return "tabular" if str(path).lower().endswith(".csv") else "arrays"
