"""Prediction inputs read in chunks of rows: CSV with a header or JSON lines, from a file or stdin, of any
length, in bounded memory.

``chunks(source, prep)`` yields (N <= ``CHUNK_ROWS``, F) raw input arrays, exactly as ``inputs.read_inputs``
would have returned the same rows in one array (columns matched by name, categories and missing cells by the
checkpoint's encoding), so predicting chunk by chunk gives the rows of predicting the whole at once. Errors
name the file and the line, as the whole-file reader does; a bad line ends the stream there. ``streams``
says whether an input is one of these; others (images, arrays, IDX) are read whole by ``inputs``.
"""

from __future__ import annotations

import csv
import io
import itertools
import pathlib
import sys
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

import numpy as np

from nnctl.data import inputs, typed
from nnctl.data.readers import _exists, check_header, data_rows, to_float_matrix
from nnctl.errors import DataError, quote

if TYPE_CHECKING:
    from nnctl.spec_model import Spec

CHUNK_ROWS = 4096
HEAD_BYTES = 512  # enough to tell CSV and JSON lines from the binary formats


def streams(source: str, prep, spec: Spec | Mapping) -> bool:
    """Whether ``source`` is CSV or JSON lines for a model of one row of features (tabular or arrays kind);
    ``spec`` may be a checkpoint's stored spec."""
    model = typed(spec).model
    if prep.kind not in ("tabular", "arrays") or model.decode:
        return False
    if len(model.input_shape or ()) != 1:
        return False
    if source in ("-", None):
        peek = getattr(sys.stdin.buffer, "peek", None)
        head, name = (peek(HEAD_BYTES)[:HEAD_BYTES] if peek else b""), "stdin"
        if not head:
            return False  # an empty or unpeekable stdin: the whole-input reader says what is wrong
    else:
        p = pathlib.Path(source)
        if not p.is_file():
            return False
        with open(p, "rb") as f:
            head, name = f.read(HEAD_BYTES), str(p)
    if b"\x00" in head:
        return False  # binary (IDX, npy, HDF5...)
    return inputs.sniff(head, name) in ("csv", "jsonl")


def _lines(source: str) -> tuple[Iterator[str], str]:
    if source in ("-", None):
        return io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8-sig", newline=""), "stdin"
    p = _exists(source)
    return open(p, encoding="utf-8-sig", newline=""), str(p)


def _decoded(lines: Iterator[str], name: str) -> Iterator[str]:
    """The lines, with a decode error reported as one line naming the source and the line."""
    n = 0
    try:
        for n, line in enumerate(lines, start=1):  # noqa: B007 - n names the line after a failure
            yield line
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{name}: line {n + 1}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x}); save it as UTF-8"
        ) from None


def chunks(source: str, prep, rows: int | None = None) -> Iterator[np.ndarray]:
    """Raw input arrays of at most ``rows`` (default ``CHUNK_ROWS``) rows each, in input order, from CSV or
    JSON lines."""
    rows = rows or CHUNK_ROWS
    stream, name = _lines(source)
    try:
        lines = _decoded(stream, name)
        first = next(lines, None)
        if first is None:
            raise DataError(f"{name}: empty input")
        lines = itertools.chain([first], lines)
        if first.lstrip()[:1] in ("{", "[") or name.lower().endswith((".jsonl", ".json", ".ndjson")):
            yield from _jsonl_chunks(lines, name, prep, rows)
        else:
            yield from _csv_chunks(lines, name, prep, rows)
    finally:
        if stream is not sys.stdin:
            stream.close()


def _csv_chunks(lines: Iterator[str], name: str, prep, size: int) -> Iterator[np.ndarray]:
    reader = csv.reader(lines)
    try:
        header = [h.strip() for h in next(reader)]
    except csv.Error as exc:
        raise DataError(f"{name}: line 1: not readable as CSV ({exc})") from None
    check_header(header, name)
    features = prep.feature_names
    encoded = inputs._encoded(prep)
    if features and not all(f in header for f in features):
        missing = [f for f in features if f not in header]
        raise DataError(
            f"{name}: missing feature column {quote(missing[0])}; expected columns {inputs._names(features)}"
        )
    cols = [header.index(f) for f in features] if features else list(range(len(header)))
    batch: list[list[str]] = []
    numbers: list[int] = []  # the line of each row
    seen = 0
    for row in data_rows(reader, len(header), name):
        batch.append(row)
        numbers.append(reader.line_num)
        if len(batch) == size:
            yield _csv_block(batch, numbers, header, cols, name, prep, encoded)
            seen += len(batch)
            batch, numbers = [], []
    if batch:
        yield _csv_block(batch, numbers, header, cols, name, prep, encoded)
    elif not seen:
        raise DataError(f"{name}: no data rows after the header")


def _csv_block(rows, numbers, header, cols, name: str, prep, encoded: bool) -> np.ndarray:
    if encoded and prep.feature_names:
        return inputs._table(header, rows, name, prep, first_line=numbers[0])
    return to_float_matrix(rows, cols, header, name, numbers)


def _jsonl_chunks(lines: Iterator[str], name: str, prep, size: int) -> Iterator[np.ndarray]:
    block: list[str] = []
    start, filled, seen = 1, 0, False  # the block's first line; its non-blank lines
    for n, line in enumerate(lines, start=1):
        block.append(line)
        filled += bool(line.strip())
        if filled == size:
            yield _jsonl_block(block, start, name, prep)
            seen, start, block, filled = True, n + 1, [], 0
    if filled:
        yield _jsonl_block(block, start, name, prep)
    elif not seen:
        raise DataError(f"{name}: no JSON lines")


def _jsonl_block(block: list[str], first_line: int, name: str, prep) -> np.ndarray:
    data = "".join(block).encode("utf-8")
    if inputs._encoded(prep):
        return inputs._jsonl_table(data, name, prep, first_line)
    return inputs._jsonl(data, name, prep.feature_names, first_line)
