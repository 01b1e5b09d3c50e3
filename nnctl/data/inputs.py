"""Read prediction inputs from a file or stdin: CSV with a header, JSON lines, .npy/.npz, raw text lines.

CSV columns and JSON keys are matched to the training features by name, so their order may differ.
"""

from __future__ import annotations

import io
import json
import pathlib
import sys

import numpy as np

from nnctl.data.readers import decode_text, load_npy, load_npz, read_bytes, read_csv_table, to_float_matrix
from nnctl.errors import DataError, quote


def _source_bytes(source: str) -> tuple[bytes, str]:
    if source in ("-", None):
        return sys.stdin.buffer.read(), "stdin"
    p = pathlib.Path(source)
    if not p.exists():
        raise DataError(f"{p}: input file not found")
    return read_bytes(p), str(p)  # a regular file: a FIFO is refused rather than waited on


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
    features = prep.feature_names
    if fmt == "npy":
        if data[:2] == b"PK":
            arr = load_npz(io.BytesIO(data), name, ("",))[0]
        else:
            arr = load_npy(io.BytesIO(data), name, len(data))
        if features and arr.ndim == 2 and arr.shape[1] != len(features):
            raise DataError(f"{name}: rows have {arr.shape[1]} values, the model expects {len(features)} features "
                            f"({_names(features)})")
        return arr
    if fmt == "jsonl":
        rows = []
        for i, line in enumerate(decode_text(data, name).splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{name}: line {i}: not valid JSON ({exc.msg})") from None
            if isinstance(obj, list):
                if features and len(obj) != len(features):
                    raise DataError(f"{name}: line {i}: {len(obj)} values, the model expects {len(features)} "
                                    f"features ({_names(features)})")
                rows.append(obj)
            elif isinstance(obj, dict):
                missing = [f for f in features if f not in obj]
                if missing:
                    raise DataError(f"{name}: line {i}: missing feature {quote(missing[0])}; expected keys "
                                    f"{_names(features)}")
                rows.append([obj[f] for f in features])
            else:
                raise DataError(f"{name}: line {i}: expected a JSON object or list, found {line.strip()[:40]!r}")
        try:
            arr = np.array(rows, dtype=np.float64)
        except (ValueError, TypeError):
            raise DataError(f"{name}: expected numeric features in every line") from None
        if arr.ndim < 2 or not np.isfinite(arr).all():
            raise DataError(f"{name}: expected rows of finite numbers")
        return arr
    header, rows = read_csv_table(io.StringIO(decode_text(data, name)), name)
    if features and all(f in header for f in features):
        cols = [header.index(f) for f in features]
    elif features:
        missing = [f for f in features if f not in header]
        raise DataError(f"{name}: missing feature column {quote(missing[0])}; expected columns {_names(features)}")
    else:
        cols = list(range(len(header)))
    return to_float_matrix(rows, cols, header, name)


def _names(features, limit: int = 10) -> str:
    shown = ", ".join(str(f)[:40] for f in features[:limit])
    return shown + (f", ... ({len(features)} in all)" if len(features) > limit else "")
