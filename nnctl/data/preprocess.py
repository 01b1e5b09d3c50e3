"""Preprocessing fitted on the training split and stored in the checkpoint, so predict sees the same.

Inputs:  x' = (x * rescale - shift) / scale, statistics per feature over every axis but the last
         (per column for tables, per channel for images, per feature for sequences).
Targets: class labels -> indices in sorted order (one-hot for categorical losses, 0/1 for binary);
         regression targets optionally standardised, and mapped back for predictions and metrics.
"""

from __future__ import annotations

import json

import numpy as np

from nnctl.data.columns import TableEncoder
from nnctl.data.streaming import is_rows
from nnctl.errors import DataError
from nnctl.losses import LOSSES


def task_of(loss_name: str) -> str:
    """How a loss wants its targets: regression, binary, categorical or sparse."""
    return LOSSES.get(loss_name).task


def _stream_stats(x, how: str, rescaled) -> tuple[np.ndarray, np.ndarray]:
    """_stats over a ``streaming.Rows`` in one sequential pass: min/max exactly as in memory; mean and
    standard deviation by combining each block's (count, mean, sum of squared deviations) (Chan et al.),
    equal to the in-memory statistics to rounding."""
    n, mean, m2, lo, hi = 0, 0.0, 0.0, None, None
    for block in x.chunks():
        b = rescaled(block.reshape(-1, block.shape[-1]))  # the dtype the in-memory path computes in
        if how == "standard":
            b = b.astype(np.float64)
            k, bm = len(b), b.mean(axis=0)
            bm2 = ((b - bm) ** 2).sum(axis=0)
            delta = bm - mean
            mean = mean + delta * k / (n + k)
            m2 = m2 + bm2 + delta**2 * n * k / (n + k)
            n += k
        else:
            lo = b.min(axis=0) if lo is None else np.minimum(lo, b.min(axis=0))
            hi = b.max(axis=0) if hi is None else np.maximum(hi, b.max(axis=0))
    if how == "standard":
        shift, scale = np.asarray(mean), np.sqrt(np.asarray(m2) / max(n, 1))
    else:
        shift, scale = lo, hi - lo
    scale = np.where(scale > 0, scale, 1.0)
    return np.asarray(shift, dtype=np.float64), np.asarray(scale, dtype=np.float64)


def _stats(x: np.ndarray, how: str) -> tuple[np.ndarray, np.ndarray]:
    axes = tuple(range(x.ndim - 1))
    if how == "standard":
        shift, scale = x.mean(axis=axes), x.std(axis=axes)
    else:
        shift, scale = x.min(axis=axes), x.max(axis=axes) - x.min(axis=axes)
    scale = np.where(scale > 0, scale, 1.0)  # a constant feature is only shifted
    return shift.astype(np.float64), scale.astype(np.float64)


class Preprocessor:
    """Fitted input scaling and target encoding; ``to_arrays``/``from_arrays`` round-trip it through HDF5."""

    def __init__(self, kind="tabular", task="regression", normalize="none", normalize_target="none", rescale=None):
        self.kind, self.task = kind, task
        self.normalize, self.normalize_target = normalize, normalize_target
        self.rescale = None if rescale is None else float(rescale)
        self.x_shift = self.x_scale = self.y_shift = self.y_scale = None
        self.classes: np.ndarray | None = None
        self.feature_names: list[str] = []
        self.target_names: list[str] = []
        self.meta: dict = {}  # kind-specific JSON (tokenizer settings, window...)
        self.arrays: dict[str, np.ndarray] = {}  # kind-specific arrays (vocabulary...)
        # not stored: what the last reads found, for the caller to report
        self.notes: list[str] = []  # what was inferred (categorical columns), one line each
        self.unseen: dict[str, int] = {}  # category column -> cells with a level unseen in training

    # -- inputs ---------------------------------------------------------------------------------
    def fit_x(self, x: np.ndarray) -> None:
        if self.normalize != "none" and not self.keeps_ids(x):
            if is_rows(x):
                self.x_shift, self.x_scale = _stream_stats(x, self.normalize, self._rescaled)
            else:
                self.x_shift, self.x_scale = _stats(self._rescaled(x), self.normalize)
            if self.meta.get("table"):  # one-hot, id and indicator columns stay as they are
                keep = ~TableEncoder.from_json(self.meta["table"]).scaled_mask()
                self.x_shift[keep], self.x_scale[keep] = 0.0, 1.0

    def keeps_ids(self, x) -> bool:
        """Integer token or category ids, which reach an Embedding unscaled and as integers."""
        if x.dtype.kind not in "iu":
            return False
        if self.kind == "text":
            return True
        table = self.meta.get("table")
        return bool(table) and all(
            c["kind"] == "category" and c["encoding"] == "ids" and not c["indicator"] for c in table
        )

    def _rescaled(self, x):
        x = np.asarray(x, dtype=np.float64) if x.dtype.kind in "iub" or x.dtype == np.float64 else x
        return x * self.rescale if self.rescale is not None else x

    def transform_x(self, x: np.ndarray, dtype) -> np.ndarray:
        if is_rows(x):  # applied to each batch as it is read
            return x if self.keeps_ids(x) else x.mapped(lambda b: self.transform_x(b, dtype), dtype)
        if self.keeps_ids(x):
            return x
        if self.rescale is None and self.x_shift is None:
            return x.astype(dtype, copy=False)
        x = self._rescaled(x)
        if self.x_shift is not None:
            x = (x - self.x_shift) / self.x_scale
        return x.astype(dtype, copy=False)

    def inverse_x(self, x: np.ndarray) -> np.ndarray:
        """Scaled inputs (or an autoencoder's reconstructions) back in the raw input's units:
        x_raw = (x * scale + shift) / rescale."""
        x = np.asarray(x, dtype=np.float64)
        if self.x_shift is not None:
            x = x * self.x_scale + self.x_shift
        return x / self.rescale if self.rescale is not None else x

    # -- targets --------------------------------------------------------------------------------
    def fit_y(self, y: np.ndarray, name: str) -> None:
        if self.task == "regression":
            y = y.reshape(len(y), -1).astype(np.float64)
            if self.normalize_target != "none":
                self.y_shift, self.y_scale = _stats(y, self.normalize_target)
            return
        if y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1 and self.task == "binary"):
            self.classes = np.unique(_labels(y, name))
            if self.task == "binary" and len(self.classes) > 2:
                raise DataError(
                    f"{name}: a binary loss needs 2 classes, found {len(self.classes)}: "
                    f"{', '.join(map(str, self.classes[:6]))}"
                )

    def encode_y(self, y: np.ndarray, name: str, dtype) -> np.ndarray:
        """Targets as the loss wants them; labels unseen in training are errors naming the row."""
        if self.task == "regression":
            y = y.reshape(len(y), -1).astype(np.float64)
            if self.y_shift is not None:
                y = (y - self.y_shift) / self.y_scale
            return y.astype(dtype)
        if self.classes is None:  # already encoded: one-hot rows or integer ids per step
            return y.astype(dtype) if self.task != "sparse" else y.astype(np.int64)
        flat = _labels(y, name)
        idx = np.searchsorted(self.classes, flat)
        idx = np.clip(idx, 0, len(self.classes) - 1)
        bad = np.nonzero(self.classes[idx] != flat)[0]
        if len(bad):
            raise DataError(
                f"{name}: row {bad[0] + 1}: label {flat[bad[0]].item()!r} was not seen in training "
                f"(classes: {', '.join(map(str, self.classes[:10]))})"
            )
        if self.task == "sparse":
            return idx.astype(np.int64)
        if self.task == "binary":
            return idx.astype(dtype).reshape(-1, 1)
        return np.eye(len(self.classes), dtype=dtype)[idx]

    def decode_y(self, p: np.ndarray) -> np.ndarray:
        """Model outputs back to target units: labels for classifiers, original units for regression."""
        if self.task == "regression":
            p = p.astype(np.float64)
            return p * self.y_scale + self.y_shift if self.y_shift is not None else p
        if self.task == "binary":
            ids = (p.reshape(len(p), -1)[:, 0] > 0.5).astype(int)
        else:
            ids = p.argmax(axis=-1)
        return self.classes[ids] if self.classes is not None else ids

    def n_classes(self, output_units: int) -> int:
        return len(self.classes) if self.classes is not None else max(output_units, 2)

    # -- storage ----------------------------------------------------------------------------------
    def to_arrays(self) -> dict[str, np.ndarray]:
        meta = {
            "kind": self.kind,
            "task": self.task,
            "normalize": self.normalize,
            "normalize_target": self.normalize_target,
            "rescale": self.rescale,
            "feature_names": self.feature_names,
            "target_names": self.target_names,
            "meta": self.meta,
            "classes_are_text": bool(self.classes is not None and self.classes.dtype.kind in "USO"),
        }
        out = {"meta": np.array(json.dumps(meta))}
        for key in ("x_shift", "x_scale", "y_shift", "y_scale"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.classes is not None:
            out["classes"] = self.classes.astype(str) if meta["classes_are_text"] else self.classes
        out.update({f"extra_{k}": v for k, v in self.arrays.items()})
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> Preprocessor:
        meta = json.loads(str(arrays["meta"]))
        p = cls(meta["kind"], meta["task"], meta["normalize"], meta["normalize_target"], meta["rescale"])
        p.feature_names, p.target_names, p.meta = meta["feature_names"], meta["target_names"], meta["meta"]
        for key in ("x_shift", "x_scale", "y_shift", "y_scale"):
            if key in arrays:
                setattr(p, key, np.asarray(arrays[key], dtype=np.float64))
        if "classes" in arrays:
            c = np.asarray(arrays["classes"])
            p.classes = c.astype(str) if meta["classes_are_text"] else c
        p.arrays = {k.removeprefix("extra_"): np.asarray(v) for k, v in arrays.items() if k.startswith("extra_")}
        return p


def _labels(y: np.ndarray, name: str) -> np.ndarray:
    """Class labels as one flat array; a NaN or infinite label (a missing cell read as a number) is an error."""
    flat = y.reshape(-1)
    if flat.dtype.kind == "f" and not np.isfinite(flat).all():
        row = int(np.nonzero(~np.isfinite(flat))[0][0])
        raise DataError(f"{name}: row {row + 1}: expected a class label, found {flat[row].item()!r} (a missing value?)")
    return flat
