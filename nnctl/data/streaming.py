"""Arrays larger than memory: rows of an HDF5 dataset or a memory-mapped .npy, read when a batch needs them.

``Rows`` looks to the trainer like the (N, ...) array it would have had in memory: ``len``, ``shape``,
``dtype``, ``np.take(rows, idx, axis=0, out=buf)`` (NumPy calls ``Rows.take``) and slices ``rows[a:b]``
(evaluation, prediction) all return the same values, so training reads one batch at a time and each MPI
rank reads only its own share of each global batch. Subsets and validation splits are row maps
(``subset``), and the fitted preprocessing is applied per batch (``mapped``); ``chunks`` is the one
sequential pass that normalisation statistics are computed from.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

CHUNK_BYTES = 8 << 20  # bytes per read in sequential passes (statistics): small against any memory limit


class Rows:
    """(N, ...) rows of ``source`` (an h5py dataset or a memory-mapped array) through an optional row map
    and per-batch transform; every read returns an ndarray."""

    def __init__(
        self,
        source,
        index: np.ndarray | None = None,
        transform: Callable | None = None,
        dtype=None,
        keep=None,
        shuffle_buffer: int = 0,
        block_rows: int | None = None,
    ):
        self.source = source
        self.index = index  # logical row i is source row index[i] (sorted ascending), None = identity
        self.transform = transform
        self.dtype = np.dtype(dtype if dtype is not None else source.dtype)
        self._keep = keep  # the open h5py File, kept alive as long as any view of it
        self.shuffle_buffer = shuffle_buffer
        chunks = getattr(source, "chunks", None)  # HDF5 chunk shape; a contiguous array has none
        self.block_rows = block_rows or (chunks[0] if chunks else 4096)

    def _view(self, index, transform, dtype) -> Rows:
        return Rows(self.source, index, transform, dtype, self._keep, self.shuffle_buffer, self.block_rows)

    def epoch_order(self, rng: np.random.Generator) -> np.ndarray:
        """The order of one shuffled epoch. shuffle_buffer 0: ``rng.permutation(n)``, the order in-memory
        training draws. shuffle_buffer B: blocks of ``block_rows`` consecutive rows (one HDF5 chunk) in a
        random order, then the rows permuted within each window of B rows, so a batch reads a few chunks."""
        n = len(self)
        if not self.shuffle_buffer:
            return rng.permutation(n)
        b = self.block_rows
        starts = rng.permutation(-(-n // b)) * b
        seq = np.concatenate([np.arange(s, min(s + b, n)) for s in starts])
        w = self.shuffle_buffer
        for i in range(0, n, w):
            seq[i : i + w] = rng.permutation(seq[i : i + w])
        return seq

    # -- the ndarray surface the trainer and the data layer use -----------------------------------------
    @property
    def shape(self) -> tuple:
        n = len(self.index) if self.index is not None else self.source.shape[0]
        return (n, *self.source.shape[1:])

    @property
    def ndim(self) -> int:
        return len(self.source.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def take(self, indices, axis=0, out=None, mode="raise"):
        """Rows ``indices`` (any order, repeats allowed), as ``np.take(array, indices, axis=0)``."""
        if axis != 0:
            raise ValueError("Rows.take reads whole rows (axis=0) only")
        got = self._read(np.asarray(indices, dtype=np.int64))
        if out is None:
            return got
        out[...] = got
        return out

    def __getitem__(self, key):
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            return self._read(np.arange(start, stop, step, dtype=np.int64))
        if isinstance(key, (int, np.integer)):
            return self._read(np.array([int(key) % len(self)]))[0]
        key = np.asarray(key)
        return self._read(np.nonzero(key)[0] if key.dtype == bool else key.astype(np.int64))

    def __array__(self, dtype=None, copy=None):
        """Every row in memory: what training on this object avoids (used only by whole-array checks)."""
        a = self._read(np.arange(len(self), dtype=np.int64))
        return a if dtype is None else a.astype(dtype, copy=False)

    # whole-array comparisons (a layer's one-off input check, e.g. Embedding's id range) read every row
    def __lt__(self, other):
        return np.asarray(self) < other

    def __ge__(self, other):
        return np.asarray(self) >= other

    # -- views ---------------------------------------------------------------------------------------
    def subset(self, indices) -> Rows:
        """The rows ``indices`` (of this view) as a new view, sorted so reads stay in file order."""
        idx = np.sort(np.asarray(indices, dtype=np.int64))
        phys = idx if self.index is None else self.index[idx]
        return self._view(phys, self.transform, self.dtype)

    def mapped(self, fn: Callable, dtype) -> Rows:
        """This view with ``fn`` applied to every batch read (after any transform already set)."""
        inner = self.transform
        fn2 = fn if inner is None else (lambda a: fn(inner(a)))
        return self._view(self.index, fn2, dtype)

    def chunks(self, rows: int | None = None, raw: bool = False) -> Iterator[np.ndarray]:
        """Consecutive blocks of rows in file order, transformed unless ``raw`` (one sequential pass)."""
        row_bytes = max(1, int(np.prod(self.source.shape[1:], dtype=np.int64)) * self.source.dtype.itemsize)
        rows = rows or max(1, CHUNK_BYTES // row_bytes)
        for start in range(0, len(self), rows):
            yield self._read(np.arange(start, min(start + rows, len(self)), dtype=np.int64), raw=raw)

    # -- reading -------------------------------------------------------------------------------------
    def _read(self, idx: np.ndarray, raw: bool = False) -> np.ndarray:
        if len(idx) and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"row {int(idx.max())} is out of range for {len(self)} rows")
        phys = idx if self.index is None else self.index[idx]
        block = _read_sorted(self.source, phys, self.block_rows)
        if self.transform is not None and not raw:
            block = self.transform(block)
        return np.asarray(block, dtype=self.dtype) if not raw else block


def _read_sorted(source, phys: np.ndarray, block_rows: int) -> np.ndarray:
    """source[phys] for any phys; HDF5 takes one increasing selection (a range when the rows are dense)."""
    shape = source.shape[1:]
    if len(phys) == 0:
        return np.empty((0, *shape), dtype=source.dtype)
    uniq, inverse = np.unique(phys, return_inverse=True)
    lo, hi = int(uniq[0]), int(uniq[-1]) + 1
    if hi - lo == len(uniq):  # consecutive rows: one contiguous read
        block = np.asarray(source[lo:hi])
    elif hi - lo <= 4 * len(uniq):  # dense enough: read the range, pick the rows
        block = np.asarray(source[lo:hi])[uniq - lo]
    elif isinstance(source, np.ndarray):
        block = source[uniq]
    else:  # HDF5: one slice per chunk touched (point selections of many rows are slow in h5py)
        first = np.flatnonzero(np.diff(uniq // block_rows, prepend=-1))
        ends = [*first[1:], len(uniq)]
        block = np.concatenate(
            [np.asarray(source[int(uniq[a]) : int(uniq[b - 1]) + 1])[uniq[a:b] - uniq[a]] for a, b in zip(first, ends)]
        )
    return block if len(uniq) == len(phys) and np.array_equal(uniq, phys) else block[inverse.reshape(-1)]


def is_rows(x) -> bool:
    return isinstance(x, Rows)


def rows_of(x, indices):
    """x[indices] for an ndarray, a view for Rows (a subset or a split never reads the file)."""
    if not isinstance(x, Rows):
        return x[indices]
    indices = np.asarray(indices)
    return x.subset(np.nonzero(indices)[0] if indices.dtype == bool else indices)
