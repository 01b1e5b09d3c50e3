"""The arrays a loader returns (``Splits``) and the encoded, preprocessed arrays training takes (``Dataset``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nnctl.data.preprocess import Preprocessor
from nnctl.data.streaming import CHUNK_BYTES
from nnctl.errors import DataError, quote

TRAIN_HINT = "remove or fill NaN/inf first"


def check_finite(a, where: str, name: str | None, hint: str = TRAIN_HINT, unit: str = "row") -> None:
    """Refuse an array of numbers holding NaN or inf, naming ``where`` (the file), ``name`` (the array, or
    None for a file holding one) and the first bad ``unit`` (0-based along axis 0) with its column (2-D) or
    position in the sample; one vectorised ``isfinite`` pass, in blocks of about ``CHUNK_BYTES`` so a
    memory-mapped or streamed array is never read whole."""
    if a is None or np.dtype(a.dtype).kind not in "fc" or len(a) == 0:
        return  # integers, booleans and text cannot hold NaN/inf
    row_bytes = max(1, int(np.prod(a.shape[1:], dtype=np.int64)) * np.dtype(a.dtype).itemsize)
    step = max(1, CHUNK_BYTES // row_bytes)
    blocks = (
        a.chunks(rows=step, raw=True) if hasattr(a, "chunks") else (a[i : i + step] for i in range(0, len(a), step))
    )
    start = 0
    for block in blocks:
        block = np.asarray(block)
        ok = np.isfinite(block).reshape(len(block), -1).all(axis=1)
        if not ok.all():
            row = int(np.argmin(ok))
            sample = block[row]
            flat = int(np.argmin(np.isfinite(sample.reshape(-1))))
            value = sample.reshape(-1)[flat]
            within = ""
            if sample.ndim == 1:
                within = f", column {flat}"
            elif sample.ndim > 1:
                within = f", position {list(int(i) for i in np.unravel_index(flat, sample.shape))}"
            label = f"{quote(name)}: " if name is not None else ""
            raise NonFinite(
                f"{where}: {label}{unit} ", start + row, f"{within} holds {value}; expected finite numbers ({hint})"
            )
        start += len(block)


class NonFinite(DataError):
    """``check_finite``'s error: ``head`` + row + ``tail``; ``shifted(n)`` numbers the row ``n`` further on
    (a chunk of a longer input)."""

    def __init__(self, head: str, row: int, tail: str):
        super().__init__(f"{head}{row}{tail}")
        self.head, self.row, self.tail = head, row, tail

    def shifted(self, n: int) -> NonFinite:
        return NonFinite(self.head, self.row + n, self.tail)


@dataclass
class Splits:
    """Raw arrays of each split (validation/test may be None); ``ordered`` forbids shuffled splitting."""

    x_train: Any  # an ndarray, or an array-like read on demand (arrays.H5Rows, a memory-mapped .npy)
    y_train: Any
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    ordered: bool = False
    defaults: dict = field(default_factory=dict)  # layer keys taken from the data (Embedding input_dim)
    w_train: np.ndarray | None = None  # (N,) float64 data.sample_weight of the training rows, or None


@dataclass
class Dataset:
    x_train: Any
    y_train: Any
    x_val: np.ndarray | None
    y_val: np.ndarray | None
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    prep: Preprocessor
    defaults: dict
    w_train: np.ndarray | None = None  # (N,) float64 per-sample loss weights of the training rows, or None
    spec_inputs: dict | None = None  # named-input CSV: data.inputs as the columns were resolved (the stored spec's)

    @property
    def input_shape(self) -> tuple:
        return tuple(self.x_train.shape[1:])


def check_weights(w, path, n: int, where: str, first_row: int = 0, unit: str = "row") -> np.ndarray:
    """``data.sample_weight`` as (N,) float64, refused unless it holds ``n`` non-negative finite numbers.

    ``where`` names the column or array; the first row is reported as ``unit`` ``first_row`` (CSV: line 2)."""
    w = np.asarray(w)
    if w.ndim == 2 and w.shape[1] == 1:
        w = w[:, 0]
    if w.dtype.kind not in "biuf" or w.ndim != 1:
        raise DataError(
            f"{path}: data.sample_weight: expected {where} to hold one number per sample, found "
            f"an array of shape {list(w.shape)} and type {w.dtype}"
        )
    if len(w) != n:
        raise DataError(f"{path}: data.sample_weight: expected {n} weights in {where} (one per sample), found {len(w)}")
    w = w.astype(np.float64)
    bad = np.nonzero(~np.isfinite(w) | (w < 0))[0]
    if len(bad):
        raise DataError(
            f"{path}: data.sample_weight: expected a non-negative finite weight in {where}, found "
            f"{float(w[bad[0]])} at {unit} {first_row + int(bad[0])}"
        )
    return w
