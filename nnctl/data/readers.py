"""Read arrays from files: CSV with a header, .npy/.npz, HDF5 datasets, IDX (MNIST, gzipped or raw).

Every reader raises ``DataError`` naming the file and the row, column or key at fault.
"""

from __future__ import annotations

import csv
import gzip
import io
import pathlib

import numpy as np

from nnctl.errors import DataError

IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _exists(path) -> pathlib.Path:
    p = pathlib.Path(path)
    if not p.exists():
        raise DataError(f"{p}: file not found")
    return p


def read_csv_table(source, name: str | None = None) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a CSV file (or an open text stream); ragged rows are errors naming the line."""
    if isinstance(source, (str, pathlib.Path)):
        name = str(source)
        text = _exists(source).read_text(encoding="utf-8-sig")
        stream = io.StringIO(text)
    else:
        stream = source
    reader = csv.reader(stream)
    try:
        header = next(reader)
    except StopIteration:
        raise DataError(f"{name}: empty file; expected a CSV header line") from None
    header = [h.strip() for h in header]
    rows = []
    for line_no, row in enumerate(reader, start=2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != len(header):
            raise DataError(f"{name}: line {line_no}: {len(row)} fields, expected {len(header)} (as in the header)")
        rows.append(row)
    if not rows:
        raise DataError(f"{name}: no data rows after the header")
    return header, rows


def to_float_matrix(rows: list[list[str]], columns: list[int], header: list[str], name: str) -> np.ndarray:
    """Parse the given columns of CSV rows as finite floats; errors name the line and column."""
    try:
        out = np.array([[float(r[c]) for c in columns] for r in rows], dtype=np.float64)
    except ValueError:
        out = None
    if out is None or not np.isfinite(out).all():
        for i, r in enumerate(rows):
            for c in columns:
                cell = r[c].strip()
                try:
                    v = float(cell)
                except ValueError:
                    raise DataError(f"{name}: line {i + 2}, column {header[c]!r}: expected a number, "
                                    f"found {cell!r}") from None
                if not np.isfinite(v):
                    raise DataError(f"{name}: line {i + 2}, column {header[c]!r}: expected a finite number, "
                                    f"found {cell!r}")
    return out


def read_idx(path) -> np.ndarray:
    """An IDX array (the MNIST format): magic 0 0 type ndim, big-endian dims, then the data."""
    p = _exists(path)
    return idx_from_bytes(p.read_bytes(), p)


def looks_like_idx(raw: bytes) -> bool:
    """IDX magic (00 00 <known type> <ndim 1..4>), also inside gzip."""
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.GzipFile(fileobj=io.BytesIO(raw)).read(4)
        except (OSError, EOFError):
            return False
    return len(raw) >= 4 and raw[0] == 0 and raw[1] == 0 and raw[2] in IDX_TYPES and 1 <= raw[3] <= 4


def idx_from_bytes(raw: bytes, p) -> np.ndarray:
    """The array in IDX bytes (gzipped or raw); ``p`` names the source in errors."""
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise DataError(f"{p}: truncated or corrupt gzip data ({exc})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_TYPES:
        raise DataError(f"{p}: not an IDX file (expected magic bytes 00 00 <type> <ndim>)")
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4).astype(int)
    dtype = np.dtype(IDX_TYPES[raw[2]])
    need = int(np.prod(dims)) * dtype.itemsize
    data = raw[4 + 4 * ndim:]
    if len(data) != need:
        raise DataError(f"{p}: IDX header promises {need} bytes of data for shape {list(dims)}, found {len(data)}")
    return np.frombuffer(data, dtype=dtype).reshape(dims)


def read_arrays(path, keys: tuple[str, ...]) -> list[np.ndarray | None]:
    """Arrays stored under ``keys`` in a .npz/.h5 file (a .npy file holds one array: the first key)."""
    p = _exists(path)
    ext = "".join(p.suffixes[-1:]).lower()
    if ext == ".npy":
        try:
            return [np.load(p, allow_pickle=False)] + [None] * (len(keys) - 1)
        except ValueError as exc:
            raise DataError(f"{p}: not a plain .npy array ({exc})") from None
    if ext == ".npz":
        try:
            with np.load(p, allow_pickle=False) as z:
                return [_key(z, k, p, list(z.keys())) for k in keys]
        except (ValueError, OSError) as exc:
            raise DataError(f"{p}: not a readable .npz file ({exc})") from None
    if ext in (".h5", ".hdf5"):
        import h5py  # noqa: PLC0415

        try:
            with h5py.File(p, "r") as f:
                return [_key(f, k, p, list(f.keys())) for k in keys]
        except OSError as exc:
            raise DataError(f"{p}: not a readable HDF5 file ({exc})") from None
    raise DataError(f"{p}: unknown array format {ext!r}; expected .npy, .npz, .h5 or .hdf5")


def _key(store, key, path, available):
    if key is None:
        return None
    if key not in store:
        raise DataError(f"{path}: no array named {key!r}; found {', '.join(available) or 'none'}")
    return np.asarray(store[key][()])
