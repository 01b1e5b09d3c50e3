"""Convert a numeric CSV, however large, to an HDF5 file of inputs ``x`` and targets ``y`` that training
streams per batch (``data.stream = "batches"``).

The file is read in blocks of ``BLOCK_ROWS`` lines, each parsed in C by ``np.loadtxt`` and appended to
chunked, resizable datasets, so memory holds one block. A block the fast parser refuses is parsed again by
the csv module and ``float`` per cell, which names the file, line, column and what was found.
"""

from __future__ import annotations

import csv
import itertools
import pathlib
import warnings

import numpy as np

from nnctl.data.csvfile import header_of
from nnctl.data.readers import _exists
from nnctl.errors import DataError, quote

BLOCK_ROWS = 1 << 16


def _columns(header: list[str], name: str, target, features) -> tuple[list[int], list[int]]:
    targets = target if isinstance(target, list) else [target if target is not None else header[-1]]
    for t in targets:
        if t not in header:
            raise DataError(f"{name}: no target column {t!r}; columns are {', '.join(header)}")
    feats = features or [h for h in header if h not in targets]
    for f in feats:
        if f not in header:
            raise DataError(f"{name}: no feature column {f!r}; columns are {', '.join(header)}")
    return [header.index(f) for f in feats], [header.index(t) for t in targets]


def _exact_error(lines: list[str], first_line: int, header: list[str], name: str) -> DataError:
    """The error of the first bad cell or row of a block the fast parser refused (line numbers in the file)."""
    reader = csv.reader(lines)
    try:
        for row in reader:
            line = first_line + reader.line_num - 1
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(header):
                return DataError(f"{name}: line {line}: {len(row)} fields, expected {len(header)} (as in the header)")
            for c, cell in enumerate(row):
                try:
                    v = float(cell.strip())
                except ValueError:
                    return DataError(
                        f"{name}: line {line}, column {quote(header[c])}: expected a number, "
                        f"found {quote(cell.strip())}"
                    )
                if not np.isfinite(v):
                    return DataError(
                        f"{name}: line {line}, column {quote(header[c])}: expected a finite number, "
                        f"found {quote(cell.strip())}"
                    )
    except csv.Error as exc:
        return DataError(f"{name}: line {first_line + reader.line_num - 1}: not readable as CSV ({exc})")
    return DataError(f"{name}: lines {first_line}-{first_line + len(lines) - 1}: not readable as numbers")


def _block(lines: list[str], first_line: int, header: list[str], name: str) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            a = np.loadtxt(lines, delimiter=",", quotechar='"', comments=None, ndmin=2, dtype=np.float64)
    except ValueError:
        raise _exact_error(lines, first_line, header, name) from None
    if a.shape[0] and (a.shape[1] != len(header) or not np.isfinite(a).all()):
        raise _exact_error(lines, first_line, header, name)
    return a


def convert_csv(source, dest, target=None, features=None, dtype: str = "float32") -> dict:
    """Write ``dest`` (.h5) with x (features, ``dtype``) and y (targets, float64) from the CSV ``source``."""
    import h5py

    src, out = _exists(source), pathlib.Path(dest)
    if out.suffix.lower() not in (".h5", ".hdf5"):
        raise DataError(f"{out}: expected an .h5 or .hdf5 output file")
    name = str(src)
    header = header_of(src)
    x_cols, y_cols = _columns(header, name, target, features)
    tmp = out.with_name(f".{out.name}.partial")
    rows = 0
    try:
        with open(src, encoding="utf-8-sig", newline="") as f, h5py.File(tmp, "w") as h5:
            next(f)  # the header, read above
            chunk = max(1, min(BLOCK_ROWS, (1 << 20) // max(1, 4 * len(x_cols))))  # chunks of about 1 MiB
            dx = h5.create_dataset(
                "x", (0, len(x_cols)), maxshape=(None, len(x_cols)), dtype=dtype, chunks=(chunk, len(x_cols))
            )
            wide = len(y_cols) > 1  # one target: a vector, as a label column is
            dy = h5.create_dataset(
                "y",
                (0, len(y_cols)) if wide else (0,),
                dtype="f8",
                maxshape=(None, len(y_cols)) if wide else (None,),
                chunks=(chunk, len(y_cols)) if wide else (chunk,),
            )
            line = 2
            while True:
                lines = list(itertools.islice(f, BLOCK_ROWS))
                if not lines:
                    break
                a = _block(lines, line, header, name)
                line += len(lines)
                n = len(a)
                dx.resize(rows + n, axis=0)
                dy.resize(rows + n, axis=0)
                dx[rows : rows + n] = a[:, x_cols]
                dy[rows : rows + n] = a[:, y_cols] if wide else a[:, y_cols[0]]
                rows += n
        if rows == 0:
            raise DataError(f"{name}: no data rows after the header")
        tmp.replace(out)
    except UnicodeDecodeError as exc:
        raise DataError(f"{name}: not UTF-8 text ({exc.reason}); save it as UTF-8") from None
    finally:
        tmp.unlink(missing_ok=True)
    return {
        "source": name,
        "output": str(out),
        "rows": rows,
        "features": [header[c] for c in x_cols],
        "targets": [header[c] for c in y_cols],
        "dtype": dtype,
    }
