"""The arrays a loader returns (``Splits``) and the encoded, preprocessed arrays training takes (``Dataset``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nnctl.data.preprocess import Preprocessor
from nnctl.data.streaming import CHUNK_BYTES
from nnctl.errors import DataError, quote


def check_finite(a, where: str, name: str) -> None:
    """Refuse an array of numbers holding NaN or inf, naming ``where`` (the file), ``name`` (the array) and
    the first bad row (0-based along axis 0); one vectorised ``isfinite`` pass, in blocks of about
    ``CHUNK_BYTES`` so a memory-mapped or streamed array is never read whole."""
    if a is None or np.dtype(a.dtype).kind not in "fc" or len(a) == 0:
        return  # integers, booleans and text cannot hold NaN/inf
    row_bytes = max(1, int(np.prod(a.shape[1:], dtype=np.int64)) * np.dtype(a.dtype).itemsize)
    step = max(1, CHUNK_BYTES // row_bytes)
    blocks = a.chunks(rows=step, raw=True) if hasattr(a, "chunks") else (a[i:i + step] for i in range(0, len(a), step))
    start = 0
    for block in blocks:
        block = np.asarray(block)
        ok = np.isfinite(block).reshape(len(block), -1).all(axis=1)
        if not ok.all():
            row = int(np.argmin(ok))
            value = block[row].reshape(-1)[int(np.argmin(np.isfinite(block[row].reshape(-1))))]
            raise DataError(f"{where}: {quote(name)}: row {start + row} holds {value}; expected finite numbers "
                            f"(remove or fill NaN/inf before training)")
        start += len(block)


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

    @property
    def input_shape(self) -> tuple:
        return tuple(self.x_train.shape[1:])
