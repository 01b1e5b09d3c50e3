"""Read arrays from files: CSV with a header, .npy/.npz, HDF5 datasets, IDX (MNIST, gzipped or raw).

Every reader raises ``DataError`` naming the file and the row, column or key at fault.
"""

from __future__ import annotations

import csv
import gzip
import io
import pathlib
import stat
import zipfile
import zlib
from collections.abc import Iterator

import numpy as np

from nnctl.errors import DataError, quote

IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


# the most bytes of any one array (IDX payload, .npz member) read before its size is known to be sane
MAX_ARRAY_BYTES = 8 << 30
MAX_ZIP_RATIO = 200  # real arrays compress far less; zeros compress about 1000-fold


def _exists(path) -> pathlib.Path:
    """``path`` as a regular file: a FIFO or a device would block or never end, a folder is not data."""
    p = pathlib.Path(path)
    try:
        mode = p.stat().st_mode
    except FileNotFoundError:
        raise DataError(f"{p}: file not found") from None
    except OSError as exc:
        raise DataError(f"{p}: cannot read ({exc.strerror})") from None
    if stat.S_ISDIR(mode):
        raise DataError(f"{p}: is a folder; expected a data file")
    if not stat.S_ISREG(mode):
        raise DataError(f"{p}: not a regular file (a pipe or device); pass a file, or - for stdin where allowed")
    return p


def read_bytes(path) -> bytes:
    """The bytes of a regular file; OS errors name the file."""
    p = _exists(path)
    try:
        return p.read_bytes()
    except OSError as exc:
        raise DataError(f"{p}: cannot read ({exc.strerror})") from None


def decode_text(data: bytes, name: str) -> str:
    """UTF-8 text (a BOM is dropped); other bytes are an error naming the file, the line and what it looks like."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        kind = _binary_kind(data)
        raise DataError(
            f"{name}: line {line}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})"
            + (f"; the file looks like {kind}" if kind else "; save it as UTF-8")
        ) from None


def _binary_kind(data: bytes) -> str:
    for magic, kind in (
        (b"\x1f\x8b", "gzip-compressed data"),
        (b"\x89PNG", "a PNG image"),
        (b"\xff\xd8\xff", "a JPEG image"),
        (b"PK\x03\x04", "a zip/.npz archive"),
        (b"\x89HDF", "an HDF5 file"),
        (b"\xff\xfe", "UTF-16 text (save it as UTF-8)"),
        (b"\xfe\xff", "UTF-16 text (save it as UTF-8)"),
        (b"\x93NUMPY", "a .npy array"),
    ):
        if data.startswith(magic):
            return kind
    return ""


def check_header(header: list[str], name) -> None:
    """Refuse a header whose columns cannot be named: an empty or repeated name, or one column that is the
    whole line of a file separated by something other than commas."""
    if len(header) == 1 and any(sep in header[0] for sep in ";\t|"):
        sep = next(s for s in ";\t|" if s in header[0])
        raise DataError(
            f"{name}: header {quote(header[0])} is one column; nnctl reads comma-separated files and "
            f"this one looks {quote(sep)}-separated: save it with commas"
        )
    seen: dict[str, int] = {}
    for i, h in enumerate(header, start=1):
        if not h:
            why = "a trailing comma" if i > 1 else "an index column written by pandas? save with index=False"
            raise DataError(f"{name}: header: column {i} has no name ({why}); every column needs one")
        if h in seen:
            raise DataError(
                f"{name}: header: column name {quote(h)} appears twice (columns {seen[h]} and {i}); "
                f"names must be unique"
            )
        seen[h] = i


def data_rows(reader, width: int, name) -> Iterator[list[str]]:
    """The rows a ``csv.reader`` gives after the header, blank lines skipped (``reader.line_num`` is each
    row's line); a row of another width or unreadable CSV is an error naming the line."""
    try:
        for row in reader:
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != width:
                raise DataError(
                    f"{name}: line {reader.line_num}: {len(row)} fields, expected {width} (as in the header)"
                )
            yield row
    except csv.Error as exc:
        raise DataError(f"{name}: line {reader.line_num}: not readable as CSV ({exc})") from None


def read_csv_table(source, name: str | None = None) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a CSV file (or an open text stream); ragged rows are errors naming the line."""
    if isinstance(source, (str, pathlib.Path)):
        name = str(source)
        stream = io.StringIO(decode_text(read_bytes(source), name))
    else:
        stream = source
    reader = csv.reader(stream)
    try:
        header = next(reader)
    except StopIteration:
        raise DataError(f"{name}: empty file; expected a CSV header line") from None
    except csv.Error as exc:
        raise DataError(f"{name}: line {reader.line_num}: not readable as CSV ({exc})") from None
    header = [h.strip() for h in header]
    check_header(header, name)
    rows = list(data_rows(reader, len(header), name))
    if not rows:
        raise DataError(f"{name}: no data rows after the header")
    return header, rows


def to_float_matrix(
    rows: list[list[str]], columns: list[int], header: list[str], name: str, lines: list[int] | None = None
) -> np.ndarray:
    """Parse the given columns of CSV rows as finite floats; errors name the line (``lines[i]`` for row i,
    default i + 2: after the header) and the column."""
    try:
        out = np.array([[float(r[c]) for c in columns] for r in rows], dtype=np.float64)
    except ValueError:
        out = None
    if out is None or not np.isfinite(out).all():
        for i, r in enumerate(rows):
            line = lines[i] if lines is not None else i + 2
            for c in columns:
                cell = r[c].strip()
                try:
                    v = float(cell)
                except ValueError:
                    raise DataError(
                        f"{name}: line {line}, column {quote(header[c])}: expected a number, found {quote(cell)}"
                    ) from None
                if not np.isfinite(v):
                    raise DataError(
                        f"{name}: line {line}, column {quote(header[c])}: expected a finite number, found {quote(cell)}"
                    )
    return out


def read_idx(path) -> np.ndarray:
    """An IDX array (the MNIST format): magic 0 0 type ndim, big-endian dims, then the data.

    Gzipped files are decompressed as a stream that stops at the size the header declares, so a small
    file cannot expand into gigabytes before its size is checked."""
    p = _exists(path)
    try:
        with open(p, "rb") as raw:
            gz = raw.read(2) == b"\x1f\x8b"
            raw.seek(0)
            stream = gzip.GzipFile(fileobj=raw, mode="rb") if gz else raw
            return _read_idx_stream(stream, p, None if gz else p.stat().st_size)
    except (OSError, EOFError, zlib.error) as exc:
        if isinstance(exc, OSError) and not gz:
            raise DataError(f"{p}: cannot read ({exc.strerror or exc})") from None
        raise DataError(f"{p}: truncated or corrupt gzip data ({quote(exc, 80)})") from None


def looks_like_idx(raw: bytes) -> bool:
    """IDX magic (00 00 <known type> <ndim 1..4>), also inside gzip."""
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.GzipFile(fileobj=io.BytesIO(raw)).read(4)
        except (OSError, EOFError, zlib.error):
            return False
    return len(raw) >= 4 and raw[0] == 0 and raw[1] == 0 and raw[2] in IDX_TYPES and 1 <= raw[3] <= 4


def idx_from_bytes(raw: bytes, p) -> np.ndarray:
    """The array in IDX bytes (gzipped or raw, e.g. from stdin); ``p`` names the source in errors."""
    gz = raw[:2] == b"\x1f\x8b"
    try:
        stream = gzip.GzipFile(fileobj=io.BytesIO(raw), mode="rb") if gz else io.BytesIO(raw)
        return _read_idx_stream(stream, p, None if gz else len(raw))
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{p}: truncated or corrupt gzip data ({quote(exc, 80)})") from None


def _read_idx_stream(stream, p, file_size: int | None) -> np.ndarray:
    head = stream.read(4)
    if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in IDX_TYPES:
        raise DataError(f"{p}: not an IDX file (expected magic bytes 00 00 <type> <ndim>)")
    ndim = head[3]
    dims_raw = stream.read(4 * ndim)
    if len(dims_raw) != 4 * ndim:
        raise DataError(f"{p}: IDX header declares {ndim} dimensions but the file ends inside the header")
    dims = [int(d) for d in np.frombuffer(dims_raw, dtype=">u4")]
    dtype = np.dtype(IDX_TYPES[head[2]])
    need = dtype.itemsize
    for d in dims:
        need *= d
    if file_size is not None and file_size - 4 - 4 * ndim != need:
        raise DataError(
            f"{p}: IDX header promises {need} bytes of data for shape {dims}, found {file_size - 4 - 4 * ndim}"
        )
    if need > MAX_ARRAY_BYTES:
        raise DataError(
            f"{p}: IDX header declares {need} bytes of data for shape {dims}, more than nnctl reads "
            f"({MAX_ARRAY_BYTES} bytes)"
        )
    data = stream.read(need)
    extra = stream.read(1)
    if len(data) != need or extra:
        found = f"{len(data)}" if len(data) != need else "more"
        raise DataError(f"{p}: IDX header promises {need} bytes of data for shape {dims}, found {found}")
    return np.frombuffer(data, dtype=dtype).reshape(dims)


def read_arrays(path, keys: tuple[str, ...]) -> list[np.ndarray | None]:
    """Arrays stored under ``keys`` in a .npz/.h5 file (a .npy file holds one array: the first key)."""
    p = _exists(path)
    ext = "".join(p.suffixes[-1:]).lower()
    if ext == ".npy":
        with open(p, "rb") as f:
            return [load_npy(f, str(p), p.stat().st_size)] + [None] * (len(keys) - 1)
    if ext == ".npz":
        return load_npz(p, str(p), keys)
    if ext in (".h5", ".hdf5"):
        import h5py

        try:
            with h5py.File(p, "r") as f:
                return [_key(f, k, p, list(f.keys())) for k in keys]
        except (OSError, KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{p}: not a readable HDF5 file ({quote(exc, 80)})") from None
    raise DataError(f"{p}: unknown array format {quote(ext)}; expected .npy, .npz, .h5 or .hdf5")


def _npy_header(fp, name: str, available: int) -> tuple[tuple, np.dtype]:
    """Shape and dtype from a .npy header, refused when the data they declare is not there to read."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(fp)
        reader = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, _, dtype = reader(fp)
    except (ValueError, EOFError, OSError) as exc:
        raise DataError(f"{name}: not a plain .npy array ({quote(exc, 80)})") from None
    if dtype.hasobject:
        raise DataError(f"{name}: holds Python objects; nnctl reads plain numeric or text arrays only")
    nbytes = dtype.itemsize
    for d in shape:
        nbytes *= int(d)
    if nbytes > available or nbytes > MAX_ARRAY_BYTES:
        raise DataError(
            f"{name}: the .npy header declares shape {list(shape)} ({nbytes} bytes) but the array "
            f"holds at most {min(available, MAX_ARRAY_BYTES)} bytes"
        )
    return shape, dtype


def load_npy(fp, name: str, size: int) -> np.ndarray:
    """A .npy array from a seekable binary stream of ``size`` bytes, its header checked before the data is read."""
    start = fp.tell()
    _npy_header(fp, name, size)
    fp.seek(start)
    try:
        return np.lib.format.read_array(fp, allow_pickle=False)
    except (ValueError, EOFError, OSError) as exc:
        raise DataError(f"{name}: not a plain .npy array ({quote(exc, 80)})") from None


def load_npz(source, name: str, keys) -> list[np.ndarray | None]:
    """Members ``keys`` of a .npz archive (a path or binary stream; None keys give None), each size-checked first.

    ``keys`` may hold ``""`` for "x" if the archive has it, else its first member (prediction inputs)."""
    try:
        with zipfile.ZipFile(source) as zf:
            members = {i.filename[:-4]: i for i in zf.infolist() if i.filename.endswith(".npy")}
            out = []
            for key in keys:
                if key is None:
                    out.append(None)
                    continue
                key = key or ("x" if "x" in members else next(iter(members), ""))
                if key not in members:
                    raise DataError(
                        f"{name}: no array named {quote(key)}; found {', '.join(list(members)[:20]) or 'none'}"
                    )
                where = f"{name}: {key}"
                info = members[key]
                if info.file_size > 256 << 20 and info.file_size > MAX_ZIP_RATIO * max(info.compress_size, 1):
                    raise DataError(
                        f"{where}: expands {info.file_size // max(info.compress_size, 1)}-fold to "
                        f"{info.file_size} bytes; refused as a zip bomb"
                    )
                with zf.open(members[key]) as m:
                    _npy_header(m, where, members[key].file_size)
                with zf.open(members[key]) as m:
                    out.append(np.lib.format.read_array(m, allow_pickle=False))
            return out
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError) as exc:
        raise DataError(f"{name}: not a readable .npz file ({quote(exc, 80)})") from None


def _key(store, key, path, available):
    if key is None:
        return None
    if key not in store:
        raise DataError(f"{path}: no array named {quote(key)}; found {', '.join(available[:20]) or 'none'}")
    ds = store[key]
    if not hasattr(ds, "shape") or not hasattr(ds, "dtype"):
        raise DataError(f"{path}: /{key} is a group; expected an array")
    if getattr(ds, "nbytes", 0) > MAX_ARRAY_BYTES:
        raise DataError(f"{path}: /{key} declares {ds.nbytes} bytes, more than nnctl reads ({MAX_ARRAY_BYTES})")
    return np.asarray(ds[()])
