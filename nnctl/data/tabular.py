"""The tabular kind: a CSV file with a header, its feature columns encoded into one input row per sample.

Feature columns are numbers or categories (``data.categorical``, or auto-detected: a column whose sampled
cells are all non-numeric and that has at most ``data.max_categories`` distinct values); missing cells
follow ``data.missing``. ``columns.TableEncoder`` does the encoding, fitted on the training split only.
"""

from __future__ import annotations

import pathlib

import numpy as np

from nnctl.data.columns import TableEncoder, plan
from nnctl.data.csvfile import Columns, header_of, is_missing, read_columns, sample_rows, try_fast
from nnctl.data.preprocess import Preprocessor
from nnctl.data.splits import Splits
from nnctl.errors import DataError

SAMPLE_ROWS = 200  # rows looked at to guess which columns hold text


def _names(path, data: dict, prep: Preprocessor, role: str, header: list[str]) -> tuple[list[str], list[str]]:
    target = data.get("target")
    if target == "input":  # an autoencoder: every column is an input; the dataset makes the target
        features = data.get("features") or (prep.feature_names if role != "train" and prep.feature_names else header)
        return _names(path, dict(data, target=features[0], features=features), prep, role, header)
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
    features = data.get("features") or known or [h for h in header if h not in targets]
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


def _encoder(path, data: dict, prep: Preprocessor, header: list[str], features: list[str]) -> TableEncoder:
    """The training split's encoder: declared and auto-detected categories, missing-value rules."""
    declared = set(data.get("categorical") or [])
    auto = data.get("max_categories", 50) > 0
    guess = _text_like(path, header, [f for f in features if f not in declared]) if auto else set()
    return TableEncoder(plan(data, features, guess, str(data.get("_source", "spec"))))


def _read(path, data, prep: Preprocessor, role: str, enc: TableEncoder | None = None):
    header = header_of(path)
    features, targets = _names(path, data, prep, role, header)
    fresh = role == "train"
    if fresh and enc is None:
        enc = _encoder(path, data, prep, header, features)
    elif enc is None:
        enc = TableEncoder.from_json(prep.meta["table"]) if prep.meta.get("table") else \
            TableEncoder.from_json([{"name": f} for f in features])
    classify = prep.task != "regression"
    numeric = enc.numeric + ([] if classify else targets)
    text = enc.text + (targets[:1] if classify else [])
    cols = None
    if classify and not enc.missing_ok and _text_like(path, header, targets[:1]) == set():
        # labels that look like numbers: parsed in C; they are read as text if any is not a number
        cols = try_fast(path, numeric + targets[:1], enc.text)
        if cols is not None:
            cols.text[targets[0]] = cols.numbers.pop(targets[0])
    if cols is None:
        cols = read_columns(path, numeric, text, enc.missing_ok)
    if fresh:
        guessed = [c for c in enc.columns if c.kind == "category" and c.name not in set(data.get("categorical") or [])]
        bad = [c.name for c in guessed if len(set(cols.text[c.name].tolist())) > data.get("max_categories", 50)]
        if bad:  # many levels: a text or mistyped column, read as numbers so the reader names the bad cell
            for c in enc.columns:
                if c.name in bad:
                    c.kind = "number"
            return _read(path, data, prep, role, enc)
        if guessed:
            prep.notes.append(f"{path}: read {', '.join(f'{c.name!r}' for c in guessed)} as categorical (not "
                              f"numbers); list them in data.categorical to choose their encoding")
        enc.fit(cols)
        prep.feature_names, prep.target_names = features, targets
        prep.meta["table"] = enc.to_json()
    x, unseen = enc.transform(cols)
    for k, v in unseen.items():
        prep.unseen[k] = prep.unseen.get(k, 0) + v
    if enc.ids_only:
        x = x.astype(np.int64)
    return x, _targets(cols, targets, classify), enc


def _targets(cols: Columns, targets: list[str], classify: bool) -> np.ndarray:
    if not classify:
        return np.stack([cols.numbers[t] for t in targets], axis=1)
    raw = cols.text[targets[0]]
    if raw.dtype.kind == "f":  # read as numbers by the fast path: the values float() gives the same text
        return raw.astype(np.int64) if np.all(raw == np.round(raw)) else raw
    try:
        y = raw.astype(np.float64)
        return y.astype(np.int64) if np.all(y == np.round(y)) else y
    except ValueError:
        return raw


def csv_xy(path, data: dict, prep: Preprocessor, role: str) -> tuple[np.ndarray, np.ndarray]:
    """Encoded inputs and raw targets of one CSV file; ``role`` "train" fits the column encoding."""
    x, y, _ = _read(path, data, prep, role)
    return x, y


def load(data: dict, prep: Preprocessor) -> Splits:
    size = pathlib.Path(data["train"]).stat().st_size if pathlib.Path(data["train"]).is_file() else 0
    if size > int(data.get("stream_above_mb", 1024)) << 20:
        prep.notes.append(f"{data['train']}: {size >> 20} MiB of CSV is read into memory; for data larger than "
                          f"memory, convert it once (nnctl data convert) and train on the HDF5 file streamed")
    x, y, enc = _read(data["train"], data, prep, "train")
    s = Splits(x, y)
    if enc.ids_only:
        s.defaults = {"input_dim": max(len(c.vocab) for c in enc.columns) + 1}
    if data.get("test"):
        s.x_test, s.y_test = csv_xy(data["test"], data, prep, "test")
    if isinstance(data.get("validation"), str):
        s.x_val, s.y_val = csv_xy(data["validation"], data, prep, "validation")
    return s
