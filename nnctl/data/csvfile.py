"""Read the columns of a CSV file: numbers parsed in C by ``np.loadtxt``, the exact slow reader as fallback.

The fast path reads the whole file in one ``np.loadtxt`` call (every column, so ragged rows are caught),
with a converter for each text column (labels, categories) that maps its cells to codes. When it fails
for any reason (a cell that is not a number, an empty cell, a ragged row, bytes that are not UTF-8) the
file is read again by ``readers.read_csv_table`` and parsed cell by cell, which raises the error message
naming the file, line, column and what was found, or handles the missing cells. Both paths give the same
arrays: Python's ``float`` and NumPy's parser are both correctly rounded, and anything one accepts that
the other does not (``1_000``, non-finite values) sends the file to the slow path.
"""

from __future__ import annotations

import csv
import warnings
from dataclasses import dataclass, field

import numpy as np

from nnctl.data.readers import _exists, read_csv_table
from nnctl.errors import DataError, quote

#: cells read as missing in a column that has a missing-value strategy (compared after strip, any case)
MISSING_TOKENS = frozenset({"", "na", "n/a", "nan", "null", "none", "?"})


def is_missing(cell: str) -> bool:
    return cell.strip().lower() in MISSING_TOKENS


@dataclass
class Columns:
    """The cells of a CSV file by column: float64 for numbers (NaN where missing), str arrays for text."""

    name: str
    header: list[str]
    numbers: dict[str, np.ndarray] = field(default_factory=dict)
    text: dict[str, np.ndarray] = field(default_factory=dict)
    fast: bool = False  # which path read it (for tests and benchmarks)
    table: np.ndarray | None = None  # the fast path's (N, columns) array; ``numbers`` are views of it
    first_line: int = 2  # the line of the first row, for messages (2: after a CSV header)

    def block(self, names: list[str]) -> np.ndarray | None:
        """The numeric columns ``names`` as one (N, len(names)) view, where they are adjacent in the file."""
        if self.table is None or not names:
            return None
        first = self.header.index(names[0])
        if names != self.header[first : first + len(names)]:
            return None
        return self.table[:, first : first + len(names)]

    def take(self, rows: np.ndarray) -> Columns:
        """The cells of ``rows`` only (copies; no table view, lines no longer those of the file)."""
        return Columns(
            self.name,
            self.header,
            {k: v[rows] for k, v in self.numbers.items()},
            {k: v[rows] for k, v in self.text.items()},
            self.fast,
        )

    def __len__(self) -> int:
        for arrays in (self.numbers, self.text):
            for a in arrays.values():
                return len(a)
        return 0


def _header(path) -> list[str] | None:
    """The header line, or None when the fast path cannot use it (not UTF-8, a quoted line break)."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            line = f.readline()
    except (UnicodeDecodeError, OSError):
        return None
    if line.count('"') % 2:
        return None
    rows = list(csv.reader([line]))
    header = [h.strip() for h in rows[0]] if rows and rows[0] else None
    if header is None or len(set(header)) != len(header) or not all(header) or len(header) == 1:
        return None  # the full reader names the problem (or reads the one column)
    return header


class _Codes:
    """A loadtxt converter: each distinct stripped cell gets a code, in order of first appearance."""

    def __init__(self):
        self.codes: dict[str, float] = {}

    def __call__(self, cell: str) -> float:
        if len(cell) > csv.field_size_limit():  # the csv module refuses it: let the slow reader say so
            raise ValueError("field larger than field limit")
        cell = cell.strip()
        code = self.codes.get(cell)
        if code is None:
            code = self.codes[cell] = float(len(self.codes))
        return code

    def decode(self, codes: np.ndarray) -> np.ndarray:
        labels = np.array(list(self.codes) or [""])
        return labels[codes.astype(np.int64)]


def _fast(path, header: list[str], numeric: list[str], text: list[str]) -> Columns | None:
    index = {h: i for i, h in enumerate(header)}
    if not numeric or len(index) != len(header):
        return None  # an all-text file keeps blank-field rows the slow reader drops; duplicate names
    text_cols = {index[t]: _Codes() for t in text}
    unused = {i: _Codes() for i in range(len(header)) if header[i] not in numeric and i not in text_cols}
    try:
        with warnings.catch_warnings():  # an empty body warns; the slow reader then says what is wrong
            warnings.simplefilter("ignore")
            table = np.loadtxt(
                path,
                delimiter=",",
                quotechar='"',
                skiprows=1,
                comments=None,
                ndmin=2,
                encoding="utf-8-sig",
                dtype=np.float64,
                converters={**text_cols, **unused},
            )
    except (ValueError, UnicodeError, IndexError, OSError):
        return None
    if table.shape[0] == 0 or table.shape[1] != len(header):
        return None
    cols = [index[n] for n in numeric]
    if not all(np.isfinite(table[:, c]).all() for c in cols):  # column by column: no copy of the table
        return None
    out = Columns(str(path), header, fast=True, table=table)
    out.numbers = {n: table[:, index[n]] for n in numeric}  # views: no second copy of the file
    out.text = {t: text_cols[index[t]].decode(table[:, index[t]]) for t in text}
    return out


def _slow(path, numeric: list[str], text: list[str], missing_ok: set[str]) -> Columns:
    header, rows = read_csv_table(path)
    return columns_from_rows(header, rows, str(path), numeric, text, missing_ok)


def columns_from_rows(
    header: list[str],
    rows: list[list[str]],
    name: str,
    numeric: list[str],
    text: list[str],
    missing_ok=(),
    first_line: int = 2,
) -> Columns:
    """Columns of rows already split by the csv module (the slow path; predict's stdin, JSON lines)."""
    out = Columns(name, header, first_line=first_line)
    cols = [header.index(n) for n in numeric]
    strict = {c for n, c in zip(numeric, cols) if n not in missing_ok}
    parsed = _floats(rows, cols, header, name, strict, first_line)
    out.numbers = {n: parsed[:, j].copy() for j, n in enumerate(numeric)}
    out.text = {t: np.array([r[header.index(t)].strip() for r in rows]) for t in text}
    return out


def _floats(rows, cols: list[int], header: list[str], name: str, strict: set[int], first_line: int = 2) -> np.ndarray:
    """Cells as finite floats (NaN for a missing cell of a column not in ``strict``); the first bad cell,
    in row order, is an error naming the line and column."""
    try:  # the common case: every cell a finite number
        out = np.array([[float(r[c]) for c in cols] for r in rows], dtype=np.float64).reshape(len(rows), len(cols))
        if np.isfinite(out).all():
            return out
    except ValueError:
        pass
    values = []
    for i, r in enumerate(rows):
        row = []
        for c in cols:
            cell = r[c].strip()
            try:
                v = float(cell)
            except ValueError:
                v = None
            if v is None or not np.isfinite(v):
                if c not in strict and cell.lower() in MISSING_TOKENS:
                    v = np.nan
                elif v is None:
                    raise DataError(
                        f"{name}: line {i + first_line}, column {quote(header[c])}: expected a number, "
                        f"found {quote(cell)}"
                    )
                else:
                    raise DataError(
                        f"{name}: line {i + first_line}, column {quote(header[c])}: expected a finite "
                        f"number, found {quote(cell)}"
                    )
            row.append(v)
        values.append(row)
    return np.array(values, dtype=np.float64).reshape(len(rows), len(cols))


def try_fast(path, numeric: list[str], text: list[str]) -> Columns | None:
    """The fast path alone: None where it cannot read the file exactly."""
    p = _exists(path)
    header = _header(p)
    if header is None or not set(numeric) | set(text) <= set(header):
        return None
    return _fast(p, header, list(numeric), list(text))


def read_columns(path, numeric: list[str], text: list[str], missing_ok=(), fast: bool = True) -> Columns:
    """Columns ``numeric`` as float64 and ``text`` as stripped strings (names the caller took from
    ``header_of``); ``missing_ok`` columns read missing cells as NaN, others refuse them."""
    p = _exists(path)
    header = _header(p) if fast else None
    if header is not None and set(numeric) | set(text) <= set(header):
        got = _fast(p, header, list(numeric), list(text))
        if got is not None:
            return got
    return _slow(p, list(numeric), list(text), set(missing_ok))


def header_of(path) -> list[str]:
    """The header of a CSV file, with the exact errors of the full reader when it is not readable."""
    p = _exists(path)
    header = _header(p)
    if header is None:
        return read_csv_table(p)[0]
    return header


def sample_rows(path, limit: int = 1) -> list[list[str]]:
    """The first ``limit`` data rows (for guessing which columns hold text)."""
    rows: list[list[str]] = []
    try:
        with open(_exists(path), encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f)
            next(reader, None)
            for row in reader:
                if row and any(c.strip() for c in row):
                    rows.append(row)
                if len(rows) >= limit:
                    break
    except (UnicodeDecodeError, csv.Error, OSError):
        pass
    return rows
