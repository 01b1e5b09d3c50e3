"""Read prediction inputs of every kind the data section trains on, from a file, a folder or stdin.

Kinds: image files (PNG/JPEG/...), a folder of images (recursively, in sorted order), IDX (gzipped
or raw), .npy/.npz/HDF5 arrays, CSV with a header, JSON lines, and raw text or series for text and
time-series models. CSV columns and JSON keys are matched to the training features by name, so their
order may differ. Images are decoded to the model's input size and channels (as training decoded
them); scaling and normalisation are left to the checkpoint's preprocessing, applied once by predict.
"""

from __future__ import annotations

import io
import json
import pathlib
import sys
import zipfile

import numpy as np

from nnctl.data.columns import TableEncoder
from nnctl.data.csvfile import columns_from_rows
from nnctl.data.readers import (
    decode_text,
    idx_from_bytes,
    load_npy,
    load_npz,
    looks_like_idx,
    read_bytes,
    read_csv_table,
    to_float_matrix,
)
from nnctl.data.splits import check_finite
from nnctl.errors import DataError, quote

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
IMAGE_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8")
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
PREDICT_HINT = "remove or fill NaN/inf first"


def _source_bytes(source: str) -> tuple[bytes, str]:
    if source in ("-", None):
        return sys.stdin.buffer.read(), "stdin"
    p = pathlib.Path(source)
    if not p.exists():
        raise DataError(f"{p}: input file not found")
    return read_bytes(p), str(p)  # a regular file: a FIFO is refused rather than waited on


def sniff(data: bytes, name: str) -> str:
    """The format of input bytes: image, idx, hdf5, npy, jsonl or csv (by magic bytes, then by name)."""
    lower = name.lower()
    if lower.endswith(IMAGE_SUFFIXES) or data.startswith(IMAGE_MAGIC):
        return "image"
    if data.startswith(HDF5_MAGIC) or lower.endswith((".h5", ".hdf5")):
        return "hdf5"
    if lower.endswith((".npy", ".npz")) or data[:6] == b"\x93NUMPY" or data[:2] == b"PK":
        return "npy"
    if looks_like_idx(data) or (("idx" in lower or "ubyte" in lower) and not lower.endswith((".csv", ".txt"))):
        return "idx"
    if lower.endswith((".jsonl", ".json", ".ndjson")) or data.lstrip()[:1] in (b"{", b"["):
        return "jsonl"
    return "csv"


def image_files(folder) -> list[pathlib.Path]:
    """Every image file under ``folder`` (recursively, dotfiles skipped), in sorted path order."""
    root = pathlib.Path(folder)
    files = sorted(
        p
        for p in root.rglob("*")
        if p.is_file()
        and p.suffix.lower() in IMAGE_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    if not files:
        raise DataError(f"{root}: no image files ({', '.join(IMAGE_SUFFIXES)}) in this folder or below")
    return files


def image_geometry(prep, sample_shape, name: str) -> tuple[str, tuple[int, int]]:
    """(colour mode, (height, width)) that images are decoded to for a model taking ``sample_shape``."""
    shape = tuple(sample_shape or ())
    if len(shape) != 3 or shape[-1] not in (1, 3):
        raise DataError(
            f"{name}: image input, but the model takes samples of shape {list(shape)}; images need "
            f"a model input of [height, width, 1 or 3]"
        )
    mode = prep.meta.get("color_mode") or ("grayscale" if shape[-1] == 1 else "rgb")
    return mode, (int(shape[0]), int(shape[1]))


class _NamedBytes(io.BytesIO):
    """Image bytes that name their source in errors (stdin)."""

    def __init__(self, data: bytes, name: str):
        super().__init__(data)
        self.name = name

    def __str__(self):
        return self.name


def decode_images(files, prep, sample_shape, name: str) -> np.ndarray:
    from nnctl.data.images import read_images

    mode, size = image_geometry(prep, sample_shape, name)
    return read_images(files, mode, size)


def read_inputs_named(source: str, prep, sample_shape=None, keys=("x",)) -> tuple[np.ndarray, list[str] | None]:
    """Raw inputs (before scaling) and, for image files, the file each row came from."""
    if source not in ("-", None) and pathlib.Path(source).is_dir():
        files = image_files(source)
        return decode_images(files, prep, sample_shape, str(source)), [str(p) for p in files]
    data, name = _source_bytes(source)
    if prep.kind == "text":
        from nnctl.data.text import read_text_inputs

        return read_text_inputs(data, name, prep), None
    if prep.kind == "timeseries":
        from nnctl.data.timeseries import read_series_inputs

        return _finite(read_series_inputs(data, name, prep), name, None, "window"), None
    fmt = sniff(data, name)
    if fmt == "image":
        return decode_images([_NamedBytes(data, name)], prep, sample_shape, name), [name]
    if fmt == "idx":
        return _finite(idx_from_bytes(data, name), name, None), None
    if fmt == "hdf5":
        return _hdf5(data, name, keys), None
    if fmt == "npy":
        return _npy(data, name, keys), None
    if fmt == "jsonl":
        if _encoded(prep):
            return _jsonl_table(data, name, prep), None
        return _jsonl(data, name, prep.feature_names), None
    header, rows = read_csv_table(io.StringIO(decode_text(data, name)), name)
    features = prep.feature_names
    if features and _encoded(prep) and all(f in header for f in features):
        return _table(header, rows, name, prep), None
    if features and all(f in header for f in features):
        cols = [header.index(f) for f in features]
    elif features:
        missing = [f for f in features if f not in header]
        raise DataError(f"{name}: missing feature column {quote(missing[0])}; expected columns {_names(features)}")
    else:
        cols = list(range(len(header)))
    return to_float_matrix(rows, cols, header, name), None


def _finite(x: np.ndarray, name: str, array: str | None, unit: str = "row") -> np.ndarray:
    """``x`` unchanged, unless it holds NaN or inf: then one error naming the source, array, row and column
    (a NaN input would otherwise come back as a NaN prediction)."""
    check_finite(x, name, array, PREDICT_HINT, unit)
    return x


def _encoded(prep) -> bool:
    """Whether the checkpoint's table has category or missing-value columns (else plain numbers are read)."""
    return any(c["kind"] == "category" or c["strategy"] != "error" for c in prep.meta.get("table") or ())


def _table(header, rows, name: str, prep, first_line: int = 2) -> np.ndarray:
    """CSV rows encoded by the checkpoint's column encoding (categories, missing values)."""
    enc = TableEncoder.from_json(prep.meta["table"])
    x, unseen = enc.transform(columns_from_rows(header, rows, name, enc.numeric, enc.text, enc.missing_ok, first_line))
    for k, v in unseen.items():
        prep.unseen[k] = prep.unseen.get(k, 0) + v
    return x.astype(np.int64) if enc.ids_only else x


def _jsonl_table(data: bytes, name: str, prep, first_line: int = 1) -> np.ndarray:
    """JSON lines of a table with category or missing-value columns: objects keyed by feature (or lists in
    feature order); null is a missing cell, every value is read as the CSV cell it would be."""
    features = prep.feature_names
    lines: list[int] = []
    rows = [["" if v is None else str(v) for v in row] for row in _jsonl_rows(data, name, features, lines, first_line)]
    if not rows:
        raise DataError(f"{name}: no JSON lines")
    return _table(features, rows, name, prep, first_line=lines[0])


def read_inputs(source: str, prep, sample_shape=None, keys=("x",)) -> np.ndarray:
    """Inputs as an array shaped like the training inputs (before preprocessing)."""
    return read_inputs_named(source, prep, sample_shape, keys)[0]


def conform(x: np.ndarray, sample_shape) -> np.ndarray:
    """Inputs as (N, *sample_shape): adds the channel axis training added ((N, 28, 28) for a (28, 28, 1)
    model) and the batch axis of a single sample; any other shape is left for the caller to report."""
    shape = tuple(sample_shape)
    if tuple(x.shape[1:]) == shape:
        return x
    if len(shape) >= 2 and shape[-1] == 1 and tuple(x.shape[1:]) == shape[:-1]:
        return x[..., None]
    if tuple(x.shape) == shape:
        return x[None]
    if len(shape) >= 2 and shape[-1] == 1 and tuple(x.shape) == shape[:-1]:
        return x[None, ..., None]
    return x


def _pick(names: list[str], keys, name: str) -> str:
    for k in keys:
        if k in names:
            return k
    if len(names) == 1:
        return names[0]
    raise DataError(f"{name}: no array named {' or '.join(map(repr, keys))}; found {', '.join(names) or 'none'}")


def _npy(data: bytes, name: str, keys) -> np.ndarray:
    """A .npy array or a .npz member (``keys`` in order, else the only one), sizes checked before reading."""
    if data[:2] != b"PK":
        return _finite(load_npy(io.BytesIO(data), name, len(data)), name, None)

    try:
        members = [n[:-4] for n in zipfile.ZipFile(io.BytesIO(data)).namelist() if n.endswith(".npy")]
    except zipfile.BadZipFile as exc:
        raise DataError(f"{name}: not a readable .npz file ({quote(exc, 80)})") from None
    key = _pick(members, keys, name)
    return _finite(load_npz(io.BytesIO(data), name, (key,))[0], name, key)


def _hdf5(data: bytes, name: str, keys) -> np.ndarray:
    import h5py

    try:
        with h5py.File(io.BytesIO(data), "r") as f:
            datasets = [k for k in f.keys() if isinstance(f[k], h5py.Dataset)]
            key = _pick(datasets, keys, name)
            x = np.asarray(f[key][()])
    except OSError as exc:
        raise DataError(f"{name}: not a readable HDF5 file ({exc})") from None
    return _finite(x, name, key)


def _jsonl_rows(
    data: bytes, name: str, features: list[str], lines: list[int] | None = None, first_line: int = 1
) -> list[list]:
    """One list of values per non-blank JSON line: a list as written (as many values as ``features``, when
    they are known), or an object's values in feature order; ``lines`` gets each row's line (the first of
    ``data`` is line ``first_line``)."""
    rows = []
    for i, line in enumerate(decode_text(data, name).splitlines(), start=first_line):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{name}: line {i}: not valid JSON ({exc.msg})") from None
        if isinstance(obj, list):
            if features and len(obj) != len(features):  # never broadcast one value across the features
                raise DataError(
                    f"{name}: line {i}: {len(obj)} values, the model expects {len(features)} "
                    f"features ({_names(features)})"
                )
            rows.append(obj)
            if lines is not None:
                lines.append(i)
        elif isinstance(obj, dict):
            missing = [f for f in features if f not in obj]
            if missing:
                raise DataError(
                    f"{name}: line {i}: missing feature {quote(missing[0])}; expected keys {_names(features)}"
                )
            rows.append([obj[f] for f in features])
            if lines is not None:
                lines.append(i)
        else:
            raise DataError(f"{name}: line {i}: expected a JSON object or list, found {line.strip()[:40]!r}")
    return rows


def _jsonl(data: bytes, name: str, features: list[str], first_line: int = 1) -> np.ndarray:
    lines: list[int] = []
    rows = _jsonl_rows(data, name, features, lines, first_line)
    try:
        arr = np.array(rows, dtype=np.float64)
    except (ValueError, TypeError):
        raise DataError(f"{name}: expected numeric features in every line") from None
    if arr.ndim < 2:
        raise DataError(f"{name}: expected rows of finite numbers")
    bad = ~np.isfinite(arr.reshape(len(arr), -1))
    if bad.any():  # the line and feature, as a CSV cell is reported
        r, c = (int(i) for i in np.argwhere(bad)[0])
        col = quote(features[c]) if arr.ndim == 2 and c < len(features) else str(c)
        raise DataError(
            f"{name}: line {lines[r]}, feature {col}: expected a finite number, found {arr.reshape(len(arr), -1)[r, c]}"
        )
    return arr


def _names(features, limit: int = 10) -> str:
    shown = ", ".join(str(f)[:40] for f in features[:limit])
    return shown + (f", ... ({len(features)} in all)" if len(features) > limit else "")
