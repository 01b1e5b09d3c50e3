"""The idx kind: MNIST-style IDX image files with their labels file beside them (gzipped or raw)."""

from __future__ import annotations

import pathlib
from typing import TYPE_CHECKING

import numpy as np

from nnctl.data.preprocess import Preprocessor
from nnctl.data.readers import read_idx
from nnctl.data.splits import Splits, check_finite
from nnctl.errors import DataError

if TYPE_CHECKING:
    from nnctl.spec_sections import DataSection


def idx_labels_path(images: str) -> pathlib.Path:
    """MNIST naming: ``...-images-idx3-ubyte[.gz]`` has its labels in ``...-labels-idx1-ubyte[.gz]``."""
    p = pathlib.Path(images)
    name = p.name.replace("images-idx3", "labels-idx1").replace("images.idx3", "labels.idx1")
    if name == p.name:
        raise DataError(f"{p}: cannot find the labels file (expected a name with 'images-idx3' in it)")
    return p.with_name(name)


def idx_xy(path):
    """Images (a channel axis added to (N, H, W)) and int64 labels of one IDX pair."""
    x, y = read_idx(path), read_idx(idx_labels_path(path))
    if len(x) != len(y):
        raise DataError(f"{path}: {len(x)} images but {len(y)} labels in {idx_labels_path(path).name}")
    check_finite(x, str(path), "images")
    return (x[..., None] if x.ndim == 3 else x), y.astype(np.int64)


def load(data: DataSection, prep: Preprocessor, seed: int = 0) -> Splits:
    s = Splits(*idx_xy(data.train))
    if data.test:
        s.x_test, s.y_test = idx_xy(data.test)
    return s
