"""The arrays a loader returns (``Splits``) and the encoded, preprocessed arrays training takes (``Dataset``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nnctl.data.preprocess import Preprocessor


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
