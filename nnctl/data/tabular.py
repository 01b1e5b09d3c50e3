"""The tabular kind: a CSV file with a header, its feature columns encoded into one input row per sample.

Feature columns are numbers or categories (``data.categorical``, or auto-detected: a column whose sampled
cells are all non-numeric and that has at most ``data.max_categories`` distinct values); missing cells
follow ``data.missing``. ``columns.TableEncoder`` does the encoding, fitted on the training split only.
"""

from __future__ import annotations

import copy
import dataclasses
import pathlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from nnctl.data.columns import TableEncoder, plan
from nnctl.data.csvfile import Columns, header_of, is_missing, read_columns, sample_rows, try_fast
from nnctl.data.preprocess import Preprocessor
from nnctl.data.splits import Splits, check_weights
from nnctl.errors import DataError, quote

if TYPE_CHECKING:
    from nnctl.spec_sections import DataSection

SAMPLE_ROWS = 200  # rows looked at to guess which columns hold text


def _names(path, data: DataSection, prep: Preprocessor, role: str, header: list[str]) -> tuple[list[str], list[str]]:
    target = data.target
    if target == "input":  # an autoencoder: every column is an input; the dataset makes the target
        features = data.features or (
            prep.feature_names
            if role != "train" and prep.feature_names
            else [h for h in header if h != data.anomaly_label]
        )
        return _names(path, dataclasses.replace(data, target=features[0], features=features), prep, role, header)
    if isinstance(target, int):
        if not -len(header) <= target < len(header):
            raise DataError(f"{path}: target column index {target} is out of range ({len(header)} columns)")
        target = header[target]
    target = target if target is not None else header[-1]
    targets = target if isinstance(target, list) else [target]
    for t in targets:
        if t not in header:
            raise DataError(f"{path}: no target column {t!r}; columns are {', '.join(header)}")
    # another file (validation, test, evaluate --data) is read by the training columns' names
    known = prep.feature_names if role != "train" and prep.feature_names else None
    weight = data.sample_weight if role == "train" else None
    if weight is not None and weight not in header:
        raise DataError(
            f"{path}: data.sample_weight: expected a column named {weight!r}, found columns {', '.join(header)}"
        )
    if weight is not None and (weight in targets or weight in (data.features or [])):
        raise DataError(
            f"{path}: data.sample_weight: expected a column that is neither a feature nor a target, "
            f"found {weight!r} listed as one"
        )
    features = data.features or known or [h for h in header if h not in targets and h != weight]
    for f in features:
        if f not in header:
            raise DataError(f"{path}: no feature column {f!r}; columns are {', '.join(header)}")
    return list(features), list(targets)


def _text_like(path, header: list[str], candidates: list[str]) -> set[str]:
    """Candidates whose sampled non-missing cells are all non-numeric (at least one present)."""
    rows = sample_rows(path, SAMPLE_ROWS)
    out = set()
    for name in candidates:
        c = header.index(name)
        cells = [r[c] for r in rows if c < len(r) and not is_missing(r[c])]
        if cells and not any(_is_number(cell) for cell in cells):
            out.add(name)
    return out


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _encoder(path, data: DataSection, prep: Preprocessor, header: list[str], features: list[str]) -> TableEncoder:
    """The training split's encoder: declared and auto-detected categories, missing-value rules."""
    declared = set(data.categorical or [])
    auto = data.max_categories > 0
    guess = _text_like(path, header, [f for f in features if f not in declared]) if auto else set()
    return TableEncoder(plan(data, features, guess, "spec"))


def _columns(path, data: DataSection, prep: Preprocessor, role: str, enc: TableEncoder | None = None):
    """The file's cells by column and the (training: not yet fitted) encoder of its features; with
    ``role`` "train" the column kinds are settled (auto-detected categories with too many levels read as
    numbers) and the feature and target names recorded in ``prep``."""
    header = header_of(path)
    features, targets = _names(path, data, prep, role, header)
    fresh = role == "train"
    if fresh and enc is None:
        enc = _encoder(path, data, prep, header, features)
    elif enc is None:
        enc = (
            TableEncoder.from_json(prep.meta["table"])
            if prep.meta.get("table")
            else TableEncoder.from_json([{"name": f} for f in features])
        )
    classify = prep.task != "regression"
    weight = [data.sample_weight] if fresh and data.sample_weight is not None else []
    numeric = enc.numeric + ([] if classify else targets)
    # read as text: the weights' own check names data.sample_weight for a bad, missing or infinite cell
    text = enc.text + weight + (targets[:1] if classify else [])
    cols = None
    if classify and not enc.missing_ok and _text_like(path, header, targets[:1]) == set():
        # labels that look like numbers: parsed in C; they are read as text if any is not a number
        cols = try_fast(path, numeric + targets[:1], enc.text + weight)
        if cols is not None:
            cols.text[targets[0]] = cols.numbers.pop(targets[0])
    if cols is None:
        cols = read_columns(path, numeric, text, enc.missing_ok)
    if fresh:
        guessed = [c for c in enc.columns if c.kind == "category" and c.name not in set(data.categorical or [])]
        bad = [c.name for c in guessed if len(set(cols.text[c.name].tolist())) > data.max_categories]
        if bad:  # many levels: a text or mistyped column, read as numbers so the reader names the bad cell
            for c in enc.columns:
                if c.name in bad:
                    c.kind = "number"
            return _columns(path, data, prep, role, enc)
        if guessed:
            prep.notes.append(
                f"{path}: read {', '.join(f'{c.name!r}' for c in guessed)} as categorical (not "
                f"numbers); list them in data.categorical to choose their encoding"
            )
        prep.feature_names, prep.target_names = features, targets
    w = _weights(cols, path, weight[0], len(cols)) if weight else None
    return cols, enc, _targets(cols, targets, classify, path), w


def _encode(enc: TableEncoder, cols: Columns, prep: Preprocessor) -> np.ndarray:
    """Encoded inputs; unseen category levels counted into ``prep.unseen``."""
    x, unseen = enc.transform(cols)
    for k, v in unseen.items():
        prep.unseen[k] = prep.unseen.get(k, 0) + v
    return x.astype(np.int64) if enc.ids_only else x


def _fit(enc: TableEncoder, cols: Columns, prep: Preprocessor) -> None:
    enc.fit(cols)
    prep.meta["table"] = enc.to_json()


def _read(path, data: DataSection, prep: Preprocessor, role: str):
    cols, enc, y, w = _columns(path, data, prep, role)
    if role == "train":
        _fit(enc, cols, prep)
    return _encode(enc, cols, prep), y, enc, w


@dataclass
class Table:
    """A training CSV read but not encoded (for k-fold: each fold fits the encoding on its own rows)."""

    cols: Columns
    enc: TableEncoder  # column kinds settled, nothing fitted
    y: np.ndarray
    w: np.ndarray | None


def read_table(data: DataSection, prep: Preprocessor) -> Table:
    table = Table(*_columns(data.train, data, prep, "train"))
    # encoded once whole, thrown away: a missing cell nothing may fill is named by its line in the file
    whole = copy.deepcopy(table.enc)
    whole.fit(table.cols)
    whole.transform(table.cols)
    return table


def encode_fold(table: Table, train_rows: np.ndarray, val_rows: np.ndarray, prep: Preprocessor):
    """Inputs of a fold's training and held-out rows, the encoding (vocabularies, fill values) fitted on the
    training rows alone and stored in ``prep``; levels seen only in the held-out rows count as unseen there.
    Returns (x_train, x_val, layer defaults)."""
    enc = copy.deepcopy(table.enc)
    train = table.cols.take(train_rows)
    _fit(enc, train, prep)
    x_tr = _encode(enc, train, prep)
    prep.unseen.clear()  # what is reported is the held-out rows' count
    x_va = _encode(enc, table.cols.take(val_rows), prep)
    return x_tr, x_va, _defaults(enc)


def _defaults(enc: TableEncoder) -> dict:
    return {"input_dim": max(len(c.vocab) for c in enc.columns) + 1} if enc.ids_only else {}


def _targets(cols: Columns, targets: list[str], classify: bool, path) -> np.ndarray:
    if not classify:
        return np.stack([cols.numbers[t] for t in targets], axis=1)
    raw = cols.text[targets[0]]
    if raw.dtype.kind == "f":  # read as numbers by the fast path: the values float() gives the same text
        y = raw
    else:
        try:
            y = raw.astype(np.float64)
        except ValueError:
            y = raw
    missing = np.nonzero(~np.isfinite(y) if y.dtype.kind == "f" else np.char.strip(y) == "")[0]
    if len(missing):  # a label cell must name a class: an empty or NaN one is a missing value, not a class
        i = int(missing[0])
        raise DataError(
            f"{path}: line {i + cols.first_line}, column {quote(targets[0])}: expected a class label, "
            f"found {quote(str(raw[i]))} (a missing value)"
        )
    return y.astype(np.int64) if y.dtype.kind == "f" and np.all(y == np.round(y)) else y


def _weights(cols: Columns, path, name: str, n: int) -> np.ndarray:
    """The weight column's cells as numbers, the first that is not a number named with its line."""
    cells = cols.text[name]
    if cells.dtype.kind == "f":
        return check_weights(cells, path, n, f"column {name!r}", cols.first_line, "line")
    try:  # the common case, parsed in C
        return check_weights(cells.astype(np.float64), path, n, f"column {name!r}", cols.first_line, "line")
    except ValueError:
        pass
    out = np.empty(len(cells), np.float64)
    for i, cell in enumerate(cells.tolist()):
        try:
            out[i] = float(cell)
        except ValueError:
            raise DataError(
                f"{path}: data.sample_weight: expected a number in column {name!r}, found "
                f"{cell!r} at line {cols.first_line + i}"
            ) from None
    return check_weights(out, path, n, f"column {name!r}", cols.first_line, "line")


def csv_xy(path, data: DataSection, prep: Preprocessor, role: str) -> tuple[np.ndarray, np.ndarray]:
    """Encoded inputs and raw targets of one CSV file; ``role`` "train" fits the column encoding."""
    x, y, _, _ = _read(path, data, prep, role)
    return x, y


def load(data: DataSection, prep: Preprocessor, seed: int = 0) -> Splits:
    size = pathlib.Path(data.train).stat().st_size if pathlib.Path(data.train).is_file() else 0
    if size > int(data.stream_above_mb) << 20:
        prep.notes.append(
            f"{data.train}: {size >> 20} MiB of CSV is read into memory; for data larger than "
            f"memory, convert it once (nnctl data convert) and train on the HDF5 file streamed"
        )
    x, y, enc, w = _read(data.train, data, prep, "train")
    s = Splits(x, y, w_train=w, defaults=_defaults(enc))
    if data.test:
        s.x_test, s.y_test = csv_xy(data.test, data, prep, "test")
    if isinstance(data.validation, str):
        s.x_val, s.y_val = csv_xy(data.validation, data, prep, "validation")
    return s
