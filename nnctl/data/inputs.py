"""Read prediction inputs from a file or stdin: CSV with a header, JSON lines, .npy/.npz, raw text lines.

CSV columns and JSON keys are matched to the training features by name, so their order may differ.
"""

from __future__ import annotations

import io
import json
import pathlib
import sys

import numpy as np

from nnctl.data.readers import read_csv_table, to_float_matrix
from nnctl.errors import DataError


def _source_bytes(source: str) -> tuple[bytes, str]:
    if source in ("-", None):
        return sys.stdin.buffer.read(), "stdin"
    p = pathlib.Path(source)
    if not p.is_file():
        raise DataError(f"{p}: input file not found")
    return p.read_bytes(), str(p)


def sniff(data: bytes, name: str) -> str:
    if name.endswith((".npy", ".npz")) or data[:6] == b"\x93NUMPY" or data[:2] == b"PK":
        return "npy"
    if name.endswith((".jsonl", ".json", ".ndjson")) or data.lstrip()[:1] in (b"{", b"["):
        return "jsonl"
    return "csv"


def read_inputs(source: str, prep) -> np.ndarray:
    """Inputs as an array shaped like the training inputs (before preprocessing)."""
    data, name = _source_bytes(source)
    if prep.kind == "text":
        from nnctl.data.text import read_text_inputs  # noqa: PLC0415

        return read_text_inputs(data, name, prep)
    if prep.kind == "timeseries":
        from nnctl.data.timeseries import read_series_inputs  # noqa: PLC0415

        return read_series_inputs(data, name, prep)
    fmt = sniff(data, name)
    if fmt == "npy":
        try:
            arr = np.load(io.BytesIO(data), allow_pickle=False)
        except ValueError as exc:
            raise DataError(f"{name}: not a readable .npy/.npz array ({exc})") from None
        if isinstance(arr, np.lib.npyio.NpzFile):
            key = "x" if "x" in arr.files else arr.files[0]
            arr = arr[key]
        return arr
    features = prep.feature_names
    if fmt == "jsonl":
        rows = []
        for i, line in enumerate(data.decode("utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{name}: line {i}: not valid JSON ({exc.msg})") from None
            if isinstance(obj, list):
                rows.append(obj)
            elif isinstance(obj, dict):
                missing = [f for f in features if f not in obj]
                if missing:
                    raise DataError(f"{name}: line {i}: missing feature {missing[0]!r}; expected keys {features}")
                rows.append([obj[f] for f in features])
            else:
                raise DataError(f"{name}: line {i}: expected a JSON object or list, found {line.strip()[:40]!r}")
        try:
            arr = np.array(rows, dtype=np.float64)
        except ValueError:
            raise DataError(f"{name}: expected numeric features in every line") from None
        if arr.ndim < 2 or not np.isfinite(arr).all():
            raise DataError(f"{name}: expected rows of finite numbers")
        return arr
    header, rows = read_csv_table(io.StringIO(data.decode("utf-8-sig")), name)
    if features and all(f in header for f in features):
        cols = [header.index(f) for f in features]
    elif features:
        missing = [f for f in features if f not in header]
        raise DataError(f"{name}: missing feature column {missing[0]!r}; expected columns {', '.join(features)}")
    else:
        cols = list(range(len(header)))
    return to_float_matrix(rows, cols, header, name)
