"""The arrays kind: inputs and targets under two keys of a .npz or HDF5 file, or a .npy of inputs with its
targets in a second .npy (``y = "y_train.npy"``, beside the inputs).

``data.stream`` chooses how the inputs are read: ``memory`` (whole, as always), ``mmap`` (.npy memory-mapped),
``batches`` (HDF5 rows read per batch, .npy memory-mapped), or ``auto``: streamed when the inputs are larger
than ``data.stream_above_mb``. Streamed inputs are ``streaming.Rows``; targets are always read whole.
"""

from __future__ import annotations

import pathlib
from typing import TYPE_CHECKING

import numpy as np

from nnctl.data.preprocess import Preprocessor
from nnctl.data.readers import _exists, _npy_header, read_arrays
from nnctl.data.splits import Splits, check_finite, check_weights
from nnctl.data.streaming import Rows
from nnctl.errors import DataError, quote

if TYPE_CHECKING:
    from nnctl.spec_sections import DataSection


def _targets_beside(path: pathlib.Path, y: str) -> pathlib.Path | None:
    """The .npy of targets named by ``data.y`` for a .npy of inputs (relative to the inputs' folder)."""
    if not str(y).lower().endswith(".npy"):
        return None
    q = pathlib.Path(y).expanduser()
    return q if q.is_absolute() else path.parent / q


def _streams(data: DataSection, nbytes: int) -> bool:
    mode = data.stream
    return mode in ("mmap", "batches") or (mode == "auto" and nbytes > int(data.stream_above_mb) << 20)


def _npy_rows(p: pathlib.Path, buffer: int) -> Rows:
    with open(p, "rb") as f:
        shape, dtype = _npy_header(f, str(p), p.stat().st_size)  # sizes checked before mapping
        if not shape:
            raise DataError(f"{p}: holds a single value; expected an array of samples")
    try:
        return Rows(np.load(p, mmap_mode="r", allow_pickle=False), shuffle_buffer=buffer)
    except (ValueError, OSError) as exc:
        raise DataError(f"{p}: not a plain .npy array ({quote(exc, 80)})") from None


CHUNK_CACHE = 64 << 20  # HDF5 chunk cache: a shuffle window's chunks are read (and decompressed) once


def _h5_rows(p: pathlib.Path, key: str, buffer: int) -> Rows:
    import h5py

    try:
        f = h5py.File(p, "r", rdcc_nbytes=CHUNK_CACHE, rdcc_nslots=10007)
    except OSError as exc:
        raise DataError(f"{p}: not a readable HDF5 file ({quote(exc, 80)})") from None
    if key not in f:
        names = ", ".join(list(f.keys())[:20]) or "none"
        f.close()
        raise DataError(f"{p}: no array named {quote(key)}; found {names}")
    ds = f[key]
    if not isinstance(ds, h5py.Dataset) or not ds.shape or ds.dtype.kind not in "biuf":
        f.close()
        raise DataError(f"{p}: /{key} is not an array of numbers with a sample axis")
    return Rows(ds, keep=f, shuffle_buffer=buffer)


def _h5_nbytes(p: pathlib.Path, key: str) -> int:
    import h5py

    try:
        with h5py.File(p, "r") as f:
            ds = f.get(key)
            return int(getattr(ds, "nbytes", 0))
    except OSError:
        return 0  # read_arrays names what is wrong with the file


def arrays_xy(path, data: DataSection):
    """The (x, y) of one file, checked to hold as many samples each; x is a ``Rows`` when streamed."""
    p = _exists(path)
    ext = p.suffix.lower()
    y_file = _targets_beside(p, data.y) if ext == ".npy" else None
    if ext == ".npy" and y_file is not None:
        x = _npy_rows(p, data.shuffle_buffer) if _streams(data, p.stat().st_size) else read_arrays(p, ("x",))[0]
        y = read_arrays(_exists(y_file), ("y",))[0]
    elif ext in (".h5", ".hdf5") and _streams(data, _h5_nbytes(p, data.x)):
        x = _h5_rows(p, data.x, data.shuffle_buffer)
        y = read_arrays(p, (None, data.y))[1]
    else:
        if data.stream in ("mmap", "batches") and ext == ".npz":
            raise DataError(
                f"{p}: data.stream = {data.stream!r}: .npz members cannot be read in parts; "
                f"save the arrays as .npy or HDF5 (nnctl data convert)"
            )
        x, y = read_arrays(p, (data.x, data.y))
    if y is None:
        raise DataError(f"{path}: a .npy file holds only inputs; use .npz or .h5 with {data.x!r} and {data.y!r}")
    if len(x) != len(y):
        raise DataError(f"{path}: {data.x!r} has {len(x)} samples but {data.y!r} has {len(y)}")
    check_finite(x, str(path), "x" if ext == ".npy" else data.x)
    check_finite(y, str(y_file or path), "y" if y_file else data.y)
    return x, y


def sample_weights(path, name: str, n: int) -> np.ndarray:
    """``data.sample_weight`` of an arrays file: the array ``name`` beside x and y in a .npz/.h5 file, or a
    .npy file named relative to a .npy of inputs; (n,) non-negative finite numbers."""
    p = _exists(path)
    beside = _targets_beside(p, name) if p.suffix.lower() == ".npy" else None
    if p.suffix.lower() == ".npy" and beside is None:
        raise DataError(f"{p}: data.sample_weight: expected a .npy file of weights beside these inputs, found {name!r}")
    if beside is not None:
        where, w = f"{beside.name}", read_arrays(_exists(beside), ("w",))[0]
    else:
        where, w = f"array {name!r}", _named(p, name)
    return check_weights(w, p, n, where)


def _named(p: pathlib.Path, name: str):
    """The array ``name`` of a .npz/.h5 file, refused (naming the arrays there) when it is absent."""
    if p.suffix.lower() in (".h5", ".hdf5"):
        import h5py

        with h5py.File(p, "r") as f:
            names = list(f.keys())
    else:
        with np.load(p, allow_pickle=False) as z:
            names = list(z.files)
    if name not in names:
        raise DataError(
            f"{p}: data.sample_weight: expected an array named {name!r}, found {', '.join(names[:20]) or 'none'}"
        )
    return read_arrays(p, (name,))[0]


def load(data: DataSection, prep: Preprocessor, seed: int = 0) -> Splits:
    s = Splits(*arrays_xy(data.train, data))
    if data.sample_weight is not None:
        s.w_train = sample_weights(data.train, data.sample_weight, len(s.x_train))
    if data.test:
        s.x_test, s.y_test = arrays_xy(data.test, data)
    if isinstance(data.validation, str):
        s.x_val, s.y_val = arrays_xy(data.validation, data)
    return s
