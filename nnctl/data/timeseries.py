"""Cut time series into (window -> value ``horizon`` steps later) samples, split in time order.

A series file holds rows in time order (CSV with a header, or a .npy/.npz array (T, C) whose
columns are named "0", "1", ...). With w = window, h = horizon, s = stride, window k starts at row
t_k = k*s and gives

    x[k] = rows[t_k : t_k + w, features]            (w, F)
    y[k] = rows[t_k + w - 1 + h, targets]           (K,)

for every k with t_k + w - 1 + h <= T - 1, so N = (T - w - h) // s + 1. A window's inputs end h
steps before its target; no input is ever later than the target. A validation or test *file*
continues the file before it (train -> validation -> test): its windows are cut from the last
w - 1 + h rows of that file followed by its own rows, so the first target is its first row and
every one of its rows is a target exactly once (stride 1). ``evaluate --data FILE`` files stand
alone (their first target is row w - 1 + h).
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np

from nnctl.data import Splits
from nnctl.data.readers import read_arrays, read_csv_table, to_float_matrix
from nnctl.errors import DataError

if TYPE_CHECKING:
    from nnctl.spec_sections import DataSection


# -- reading ---------------------------------------------------------------------------------------
def _read_table(path, data: DataSection) -> tuple[list[str], object]:
    """Column names and a cell getter ``get(columns) -> (T, len(columns)) float64``."""
    name = str(path)
    if name.lower().endswith((".npy", ".npz", ".h5", ".hdf5")):
        arr = read_arrays(path, (data.x,))[0]
        arr = arr[:, None] if arr.ndim == 1 else arr
        if arr.ndim != 2:
            raise DataError(f"{name}: expected a series array (T, columns), found shape {list(arr.shape)}")
        try:
            arr = np.asarray(arr, dtype=np.float64)
        except (TypeError, ValueError):
            raise DataError(f"{name}: expected a numeric array, found dtype {arr.dtype}") from None
        bad = np.argwhere(~np.isfinite(arr))
        if len(bad):
            raise DataError(
                f"{name}: row {bad[0][0]}, column {bad[0][1]}: expected a finite number, found {arr[tuple(bad[0])]}"
            )
        header = [str(i) for i in range(arr.shape[1])]
        return header, lambda cols: arr[:, [header.index(c) for c in cols]]
    header, rows = read_csv_table(path)
    return header, lambda cols: to_float_matrix(rows, [header.index(c) for c in cols], header, name)


def _column(header, ref, path, what) -> str:
    if isinstance(ref, int) and not isinstance(ref, bool):
        if not -len(header) <= ref < len(header):
            raise DataError(f"{path}: {what} column index {ref} is out of range ({len(header)} columns)")
        return header[ref]
    if str(ref) not in header:
        raise DataError(f"{path}: no {what} column {ref!r}; columns are {', '.join(header)}")
    return str(ref)


def _settings(data: DataSection, path) -> tuple[int, int, int]:
    window, horizon, stride = data.window, data.horizon, data.stride
    if window is None:
        raise DataError(f"{path}: data.window is required for time series (input steps per window)")
    for key, v in (("window", window), ("horizon", horizon), ("stride", stride)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise DataError(f"{path}: data.{key}: expected a positive integer, found {v!r}")
    return window, horizon, stride


def _fit_columns(header, data: DataSection, path, prep) -> None:
    """Choose features/targets on the training file and record what predict/evaluate need."""
    target = data.target
    refs = target if isinstance(target, list) else [header[-1] if target is None else target]
    if not refs:
        raise DataError(f"{path}: data.target: expected at least one column")
    targets = [_column(header, t, path, "target") for t in refs]
    features = [_column(header, f, path, "feature") for f in (data.features or header)]
    window, horizon, stride = _settings(data, path)
    prep.feature_names, prep.target_names = features, targets
    prep.meta = {
        "window": window,
        "horizon": horizon,
        "stride": stride,
        "features": features,
        "targets": targets,
        "target_in_features": [features.index(t) if t in features else None for t in targets],
    }


def _series(path, data, prep) -> tuple[np.ndarray, np.ndarray]:
    """Feature rows (T, F) and target rows (T, K) of one file, columns found by name."""
    header, get = _read_table(path, data)
    if "window" not in prep.meta:
        _fit_columns(header, data, path, prep)
    features, targets = prep.meta["features"], prep.meta["targets"]
    for c in features + targets:
        if c not in header:
            raise DataError(f"{path}: no column {c!r} (used in training); columns are {', '.join(header)}")
    return get(features), get(targets)


# -- windows ---------------------------------------------------------------------------------------
def make_windows(
    feats: np.ndarray, targs: np.ndarray, window: int, horizon: int, stride: int, name: str = "series"
) -> tuple[np.ndarray, np.ndarray]:
    """x[k] = feats[k*s : k*s + w] (N, w, F), y[k] = targs[k*s + w - 1 + h] (N, K), in time order."""
    T = len(feats)
    if T < window + horizon:
        raise DataError(
            f"{name}: {T} rows make no window: window {window} + horizon {horizon} needs at "
            f"least {window + horizon} rows"
        )
    starts = np.arange(0, T - window - horizon + 1, stride)
    # (T - w + 1, F, w) view of every window; copy only the chosen ones
    view = np.lib.stride_tricks.sliding_window_view(feats, window, axis=0)
    x = np.ascontiguousarray(view[starts].transpose(0, 2, 1))
    return x, targs[starts + window - 1 + horizon].copy()


def _continued(prev: tuple, cur: tuple, meta: dict, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Windows of ``cur`` looking back into the tail of ``prev``: the first target is cur's row 0."""
    ctx = meta["window"] - 1 + meta["horizon"]  # rows before cur's row 0 that its first window needs
    feats = np.concatenate([prev[0][len(prev[0]) - ctx :], cur[0]])
    targs = np.concatenate([prev[1][len(prev[1]) - ctx :], cur[1]])
    return make_windows(feats, targs, meta["window"], meta["horizon"], meta["stride"], name)


def load(data: DataSection, prep, seed: int = 0) -> Splits:
    """Splits of windows (N, window, F) float64 and targets (N, K); ``ordered`` keeps validation last."""
    train = _series(data.train, data, prep)
    m = prep.meta
    s = Splits(*make_windows(*train, m["window"], m["horizon"], m["stride"], str(data.train)), ordered=True)
    before = train
    if isinstance(data.validation, str):
        val = _series(data.validation, data, prep)
        s.x_val, s.y_val = _continued(before, val, m, data.validation)
        before = tuple(np.concatenate(pair) for pair in zip(train, val))  # the test file continues both
    if data.test:
        s.x_test, s.y_test = _continued(before, _series(data.test, data, prep), m, data.test)
    return s


# -- evaluate and predict ----------------------------------------------------------------------------
def naive_metrics(x: np.ndarray, y: np.ndarray, prep) -> dict:
    """Error of repeating the last observed value, yhat[k] = x[k, -1, target], in original units.

    x (N, w, F) as the model sees it: x_orig = (x * x_scale + x_shift) / rescale; y (N, K) possibly
    standardised: y_orig = y * y_scale + y_shift. naive_mse = mean((yhat - y)^2) over N*K, as the
    trainer's mse.
    """
    idx = prep.meta.get("target_in_features", [])
    missing = [t for t, i in zip(prep.meta.get("targets", []), idx) if i is None]
    if missing or not idx:
        return {
            "naive_note": f"no naive baseline: target {', '.join(missing) or '?'} is not among the input "
            f"features, so there is no last observed value to repeat"
        }
    x = np.asarray(x.get() if hasattr(x, "get") else x)  # CuPy arrays come to the host
    y = np.asarray(y.get() if hasattr(y, "get") else y)
    last = x[:, -1, idx].astype(np.float64)
    if prep.x_shift is not None:
        last = last * prep.x_scale[idx] + prep.x_shift[idx]
    if prep.rescale is not None:
        last = last / prep.rescale
    yy = y.reshape(len(y), -1).astype(np.float64)
    if prep.y_shift is not None:
        yy = yy * prep.y_scale + prep.y_shift
    err = last - yy
    return {"naive_mse": float(np.mean(err * err)), "naive_mae": float(np.mean(np.abs(err)))}


def read_series_inputs(data_bytes: bytes, name: str, prep) -> np.ndarray:
    """Every full window (N, w, F) of a series given as CSV (feature columns by name) or .npy (T, F).

    Windows are aligned to the END: they end at rows T-1, T-1-s, T-1-2s, ... (s = training stride),
    returned in time order, so the last prediction is the forecast ``horizon`` steps after the last
    row. A .npy/.npz array that is already 3-D (N, w, F) is taken as windows as it is.
    """
    m = prep.meta
    w, stride, features = m["window"], m["stride"], m["features"]
    if name.endswith((".npy", ".npz")) or data_bytes[:6] == b"\x93NUMPY" or data_bytes[:2] == b"PK":
        try:
            arr = np.load(io.BytesIO(data_bytes), allow_pickle=False)
        except ValueError as exc:
            raise DataError(f"{name}: not a readable .npy/.npz array ({exc})") from None
        if isinstance(arr, np.lib.npyio.NpzFile):
            arr = arr["x" if "x" in arr.files else arr.files[0]]
        if arr.ndim == 3:
            return arr
        feats = arr[:, None] if arr.ndim == 1 else arr
        if feats.ndim != 2 or feats.shape[1] != len(features):
            raise DataError(
                f"{name}: expected a series array (T, {len(features)}) or windows "
                f"(N, {w}, {len(features)}), found shape {list(arr.shape)}"
            )
        feats = feats.astype(np.float64)
    else:
        header, rows = read_csv_table(io.StringIO(data_bytes.decode("utf-8-sig")), name)
        missing = [f for f in features if f not in header]
        if missing:
            raise DataError(f"{name}: missing feature column {missing[0]!r}; expected columns {', '.join(features)}")
        feats = to_float_matrix(rows, [header.index(f) for f in features], header, name)
    T = len(feats)
    if T < w:
        raise DataError(f"{name}: {T} rows, but a window needs {w} rows (data.window of the checkpoint)")
    ends = np.arange(T - 1, w - 2, -stride)[::-1]
    view = np.lib.stride_tricks.sliding_window_view(feats, w, axis=0)  # (T - w + 1, F, w)
    return np.ascontiguousarray(view[ends - w + 1].transpose(0, 2, 1))
