"""Anomaly detection with an autoencoder (``data.target = "input"``): per-row reconstruction errors, a threshold
fitted on the training rows' errors only, the rows it flags, and their precision and recall against labels.

error_i = mean_j (x̂_ij - x_ij)² over the row's input values j, in the model's units (after the checkpoint's
rescale and normalisation: what the mse loss averages); threshold = np.quantile(training errors, q)
(linear interpolation); a row is flagged when error_i > threshold. Shapes: x (N, ...), errors (N,).
"""

from __future__ import annotations

import csv
import io
import json
import math
import pathlib
from typing import TYPE_CHECKING

import numpy as np

from nnctl import backend as B
from nnctl.assemble import make_loss
from nnctl.checkpoint import Checkpoint, store_anomaly
from nnctl.data import load_dataset, reconstructs
from nnctl.data.readers import read_arrays
from nnctl.errors import CheckpointError, DataError, SpecError
from nnctl.fs import atomic_write, run_lock
from nnctl.inference import restore

if TYPE_CHECKING:
    from nnctl.spec_model import Spec

TRUE = ("1", "1.0", "true", "yes", "y", "t", "anomaly")
FALSE = ("0", "0.0", "false", "no", "n", "f", "normal")


def check_spec(spec: dict) -> list[str]:
    """Cross-field rules of ``train.anomaly_quantile`` and ``data.anomaly_label``: both need an autoencoder."""
    train, data = spec.get("train", {}), spec.get("data", {})
    if not isinstance(train, dict) or not isinstance(data, dict) or data.get("target") == "input":
        return []
    return [
        f"{where}: expected data.target = 'input' (an autoencoder scores rows by reconstruction error), "
        f"found data.target = {data.get('target')!r}"
        for where, value in (
            ("train.anomaly_quantile", train.get("anomaly_quantile")),
            ("data.anomaly_label", data.get("anomaly_label")),
        )
        if value is not None
    ]


def row_errors(reconstructions, x) -> np.ndarray:
    """Mean squared error of each row's reconstruction: (N, ...) and (N, ...) -> (N,) float64."""
    r = np.asarray(reconstructions, dtype=np.float64).reshape(len(x), -1)
    return np.mean((r - np.asarray(x, dtype=np.float64).reshape(len(x), -1)) ** 2, axis=1)


def model_errors(model, loss, x, on_batch=None) -> np.ndarray:
    """Reconstruction errors of inputs ``x`` (already preprocessed) in inference mode: (N, ...) -> (N,)."""
    return row_errors(B.to_numpy(loss.probabilities(model.predict(x, on_batch=on_batch))), x)


def fit_threshold(path, x_train, quantile: float, device: str | None = None) -> dict:
    """The threshold of the model checkpoint ``path`` holds, from its errors on the training rows ``x_train``
    (preprocessed; never validation or test rows), stored in the checkpoint (atomically) and returned."""
    if not 0 < quantile < 1:
        raise DataError(f"anomaly quantile: expected a number strictly between 0 and 1, found {quantile!r}")
    ck, model, _, spec = restore(path, device or B.device)
    errors = model_errors(model, make_loss(spec), x_train)
    if len(errors) == 0 or not np.all(np.isfinite(errors)):
        raise DataError(
            f"{path}: the training rows' reconstruction errors are {'empty' if not len(errors) else 'not finite'}; "
            f"no anomaly threshold"
        )
    info = {
        "quantile": float(quantile),
        "threshold": float(np.quantile(errors, quantile)),
        "rows": int(len(errors)),
        "error": "mean squared reconstruction error per row, in the model's (preprocessed) units",
        "train_error_mean": float(errors.mean()),
        "train_error_max": float(errors.max()),
    }
    store_anomaly(path, info)
    return info


def stored(ck) -> dict | None:
    """The checkpoint's threshold record (``/anomaly``), checked, or None when it has none."""
    info = getattr(ck, "anomaly", None)
    if info is None:
        return None
    t, q = info.get("threshold"), info.get("quantile")
    if (
        not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (t, q))
        or not 0 < q < 1
    ):
        raise CheckpointError(
            f"{ck.path}: /anomaly: expected a finite threshold and a quantile in (0, 1), found {json.dumps(info)[:80]}"
        )
    return info


def flags(errors: np.ndarray, threshold: float) -> np.ndarray:
    """Rows flagged as anomalies: error strictly above the threshold."""
    return np.asarray(errors) > threshold


def summary(errors: np.ndarray) -> dict:
    """Summary statistics of per-row errors."""
    e = np.asarray(errors, dtype=np.float64)
    if not len(e):
        return {}
    return {
        "error_mean": float(e.mean()),
        "error_std": float(e.std()),
        "error_median": float(np.median(e)),
        "error_p95": float(np.quantile(e, 0.95)),
        "error_p99": float(np.quantile(e, 0.99)),
        "error_max": float(e.max()),
    }


def precision_recall(flagged: np.ndarray, labels: np.ndarray) -> dict:
    """Counts and scores of flagged rows against true anomalies; a score with a zero denominator is 0."""
    f, y = np.asarray(flagged, bool), np.asarray(labels, bool)
    tp, fp, fn = int(np.sum(f & y)), int(np.sum(f & ~y)), int(np.sum(~f & y))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "anomaly_precision": precision,
        "anomaly_recall": recall,
        "anomaly_f1": f1,
        "anomaly_tp": tp,
        "anomaly_fp": fp,
        "anomaly_fn": fn,
        "anomaly_tn": int(np.sum(~f & ~y)),
        "anomalies_true": int(y.sum()),
    }


def read_labels(path, column: str) -> np.ndarray | None:
    """The 0/1 (true/false, yes/no) anomaly marks of a CSV column or an npz/h5 key, or None when absent."""
    p = pathlib.Path(path)
    if p.suffix.lower() == ".csv":
        with open(p, newline="") as f:
            rows = csv.reader(f)
            header = next(rows, [])
            if column not in header:
                return None
            c = header.index(column)
            cells = [(i, r[c] if c < len(r) else "") for i, r in enumerate(rows, start=2) if r]
        return _marks([(f"{p}: line {i}", v) for i, v in cells], p, column)
    if p.suffix.lower() in (".npz", ".h5", ".hdf5"):
        found = read_arrays(p, (column,))[0]
        if found is None:
            return None
        values = np.asarray(found).ravel()
        return _marks([(f"{p}: {column}[{i}]", str(v)) for i, v in enumerate(values.tolist())], p, column)
    return None


def _marks(cells, path, column: str) -> np.ndarray:
    out = np.zeros(len(cells), bool)
    for k, (where, v) in enumerate(cells):
        v = v.strip().lower()
        if v in TRUE:
            out[k] = True
        elif v not in FALSE:
            raise DataError(f"{where}: {column}: expected an anomaly mark (1/0, true/false), found {v!r}")
    return out


def report(ck, model, loss, x, outputs, source, label: str | None, errors_path: str | None = None) -> dict:
    """What ``evaluate`` adds for an autoencoder: error statistics, the stored threshold and the rows it flags,
    precision and recall when ``label`` marks the true anomalies of ``source``; the per-row errors to
    ``errors_path`` (CSV: row, error[, anomaly][, label])."""
    errors = row_errors(B.to_numpy(loss.probabilities(outputs)), x)
    out = summary(errors)
    info = stored(ck)
    flagged = None
    if info is not None:
        flagged = flags(errors, info["threshold"])
        out.update(
            anomaly_threshold=info["threshold"], anomaly_quantile=info["quantile"], anomalies_flagged=int(flagged.sum())
        )
    labels = read_labels(source, label) if label else None
    if labels is not None and len(labels) != len(errors):
        raise DataError(f"{source}: {label}: {len(labels)} marks for {len(errors)} rows")
    if labels is not None and flagged is not None:
        out.update(precision_recall(flagged, labels))
    if errors_path:
        write_errors(errors_path, errors, flagged, labels)
        out["errors"] = str(errors_path)
    return out


def write_errors(path, errors, flagged=None, labels=None) -> None:
    """Per-row errors as CSV (row from 0, error, then anomaly and label when known), written atomically."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        ["row", "error"] + (["anomaly"] if flagged is not None else []) + (["label"] if labels is not None else [])
    )
    for i, e in enumerate(errors):
        w.writerow(
            [i, f"{float(e):.9g}"]
            + ([_word(flagged[i])] if flagged is not None else [])
            + ([int(labels[i])] if labels is not None else [])
        )
    text = buf.getvalue()
    atomic_write(path, lambda tmp: pathlib.Path(tmp).write_text(text))


def scores(restored, raw_inputs, outputs, preprocessed: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """``predict``'s per-row errors and flags (None without a stored threshold) from the model's outputs."""
    ck, model, prep, spec = restored
    from nnctl.data.inputs import conform

    x = conform(np.asarray(raw_inputs), model.input_shape)
    x = x.astype(np.float64, copy=False) if preprocessed else prep.transform_x(x, np.dtype(spec.dtype))
    errors = row_errors(outputs, x)
    info = stored(ck)
    return errors, (flags(errors, info["threshold"]) if info is not None else None)


def render_scores(errors, flagged, fmt: str, files=None) -> str:
    """``predict``'s rows of error and anomaly (true/false) as CSV or JSON lines; image inputs lead with their file."""
    rows = []
    for i, e in enumerate(errors):
        row = {"file": files[i]} if files is not None else {}
        row["error"] = float(e)
        if flagged is not None:
            row["anomaly"] = bool(flagged[i])
        rows.append(row)
    if fmt == "jsonl":
        return "".join(json.dumps(r) + "\n" for r in rows)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow((["file"] if files is not None else []) + ["error"] + (["anomaly"] if flagged is not None else []))
    for r in rows:
        w.writerow(
            ([r["file"]] if files is not None else [])
            + [f"{r['error']:.9g}"]
            + ([_word(r["anomaly"])] if flagged is not None else [])
        )
    return buf.getvalue()


def _word(flag) -> str:
    return "true" if flag else "false"


def denoising(model, loss, x, spec: Spec) -> dict:
    """A denoising autoencoder's figures on clean test inputs ``x``: MSE of the noisy inputs and of the model's
    reconstructions of them, both against the clean inputs (noise σ = ``data.augment.noise``, seeded by the spec)."""
    sigma = float(spec.data.augment.noise or 0)
    if not sigma or not len(x):
        return {}
    rng = np.random.default_rng(np.random.SeedSequence(spec.seed, spawn_key=(7,)))
    noisy = (np.asarray(x) + rng.normal(0.0, sigma, size=np.shape(x))).astype(np.asarray(x).dtype)

    denoised = B.to_numpy(loss.probabilities(model.predict(noisy)))
    return {
        "noisy_input_mse": float(row_errors(noisy, x).mean()),
        "denoised_mse": float(row_errors(denoised, x).mean()),
    }


def refit(path, quantile: float, device: str = "auto") -> dict:
    """``evaluate --anomaly-quantile``: the threshold from the training rows the stored spec names (the same
    seeded split and preprocessing as in training), stored in the checkpoint like ``train.anomaly_quantile``'s."""
    B.use(device)
    spec = Checkpoint(path).spec
    if (spec.get("data") or {}).get("target") != "input":
        raise SpecError(
            f"--anomaly-quantile: expected an autoencoder (data.target = 'input'), found {path} trained on targets"
        )
    ds = load_dataset(spec, with_test=False)
    if not reconstructs(ds.prep):
        raise SpecError(f"--anomaly-quantile: expected an autoencoder (data.target = 'input'), found {path}")

    with run_lock(path):  # not while a training run is writing this checkpoint
        return fit_threshold(path, ds.x_train, quantile)
