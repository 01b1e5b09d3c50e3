"""The arrays kind: inputs and targets stored under two keys of a .npz or HDF5 file (or a .npy of inputs)."""

from __future__ import annotations

from nnctl.data.preprocess import Preprocessor
from nnctl.data.readers import read_arrays
from nnctl.data.splits import Splits
from nnctl.errors import DataError


def arrays_xy(path, data: dict):
    """The (x, y) arrays of one file, checked to hold as many samples each."""
    x, y = read_arrays(path, (data["x"], data["y"]))
    if y is None:
        raise DataError(f"{path}: a .npy file holds only inputs; use .npz or .h5 with {data['x']!r} and {data['y']!r}")
    if len(x) != len(y):
        raise DataError(f"{path}: {data['x']!r} has {len(x)} samples but {data['y']!r} has {len(y)}")
    return x, y


def load(data: dict, prep: Preprocessor) -> Splits:
    s = Splits(*arrays_xy(data["train"], data))
    if data.get("test"):
        s.x_test, s.y_test = arrays_xy(data["test"], data)
    if isinstance(data.get("validation"), str):
        s.x_val, s.y_val = arrays_xy(data["validation"], data)
    return s
