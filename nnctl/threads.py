"""The process's one pool of CPU threads: a layer's work over slices of the batch run side by side.

NumPy's OpenBLAS runs each matrix product on every core, but most of a CNN's step is products too small
to share well (a chunk of 3 samples' patches, (1728, 289) x (289, 64)) and compiled or elementwise passes
on one core; and OpenBLAS's idle threads spin for a while after each product, so any other thread next to
them waits for a core. Inside ``held()`` (a model with window layers holds it around its forward and
backward: graph.Model) OpenBLAS runs on one thread, and where a layer's work is a loop over slices of the
batch (a convolution's cache-sized chunks, pooling's samples, a large product's rows) ``run`` gives the
slices to this pool's workers: the machine's cores run one pool instead of two. Outside ``held()``
``run`` runs the slices in order on the calling thread, next to OpenBLAS's own threads.

Workers: OpenBLAS's thread count when the pool starts (OPENBLAS_NUM_THREADS, else the cores it found;
``OPENBLAS_NUM_THREADS=1`` makes every layer serial), capped by the CPUs this process may use;
``NNCTL_THREADS`` overrides it. One worker where no BLAS library's threads can be controlled (two
products side by side would each start a BLAS thread per core) and on the GPU backend.

Results do not depend on the worker count: the slices are fixed by the layer, never by the workers, and a
sum over slices is formed by the caller after ``run``, in slice order, as the serial loop forms it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from typing import Any

import numpy as np

from nnctl import backend as B
from nnctl.errors import BackendError

# a layer's batch work is cut into slices of at least ceil(N / SLICES) samples, whatever the worker count
SLICES = 8

_workers: int | None = None
_pool: ThreadPoolExecutor | None = None
_held = 0  # nesting depth of held(): slices run side by side only inside it
_blas: Any = None  # threadpoolctl's controller of the BLAS libraries NumPy loaded


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _start() -> int:
    """The worker count, found once (threadpoolctl scans the loaded libraries: about 6 ms)."""
    global _workers, _blas
    if _workers is None:
        from threadpoolctl import ThreadpoolController  # only a process that runs slices pays its import

        _blas = ThreadpoolController().select(user_api="blas")
        found = [lib["num_threads"] for lib in _blas.info()]
        chosen = os.environ.get("NNCTL_THREADS", "").strip()
        if chosen:
            if not chosen.isdigit() or int(chosen) < 1:
                raise BackendError(f"NNCTL_THREADS must be a positive integer, found {chosen!r}")
            _workers = int(chosen) if found else 1
        else:
            _workers = max(1, min(min(found, default=1), _cpus()))
    return _workers


def workers() -> int:
    """How many slices run at once: 1 on the GPU backend, else the pool's size (see the module docstring)."""
    return _start() if B.xp is np else 1


def set_workers(count: int | None) -> None:
    """Use ``count`` workers from now on (tests, benchmarks/ A/B runs); None finds the count again."""
    global _workers, _pool
    _start()
    _workers = None if count is None else max(1, int(count))
    if _pool is not None:
        _pool.shutdown()
        _pool = None


@contextmanager
def held(on: bool = True) -> Iterator[None]:
    """Run a block with OpenBLAS on one thread and ``run``'s slices side by side on the pool's workers
    (restored after; nested blocks hold it once). Nothing when ``on`` is False or there is one worker."""
    global _held
    if not on or workers() <= 1:
        yield
        return
    with _blas.limit(limits=1) if _held == 0 else nullcontext():
        _held += 1
        try:
            yield
        finally:
            _held -= 1


def run(count: int, task: Callable[[int, int], None]) -> None:
    """``task(worker, i)`` for every slice i in range(count): worker w of k runs the contiguous slices
    count*w//k ..< count*(w+1)//k, so ``worker`` names a buffer no other running slice uses.

    Inline, in slice order, outside ``held()``, with one worker or one slice. Otherwise the calling thread
    is worker 0 and the pool's threads the others; the first exception a worker raised is raised here,
    after all of them have stopped.
    """
    k = workers_for(count)
    if k <= 1:
        for i in range(count):
            task(0, i)
        return
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(_workers - 1 if _workers else 1, thread_name_prefix="nnctl-slices")

    def share(w: int) -> None:
        for i in range(count * w // k, count * (w + 1) // k):
            task(w, i)

    futures = [_pool.submit(share, w) for w in range(1, k)]
    try:
        share(0)
    finally:
        errors = [f.exception() for f in futures]
    for error in errors:
        if error is not None:
            raise error


def workers_for(count: int) -> int:
    """How many workers ``run`` uses for ``count`` slices now: the buffers a caller gives one per worker."""
    return max(1, min(workers(), count)) if _held else 1


def sum_in_order(parts):
    """parts[0] + parts[1] + ... formed left to right, in place in parts[0] (the serial loop's rounding)."""
    total = parts[0]
    for part in parts[1:]:
        total += part
    return total


def slice_size(n: int, most: int | None = None) -> int:
    """Samples per slice of a batch of ``n``: ceil(n / SLICES), at most ``most`` (a cache-sized chunk)."""
    per = -(-n // SLICES)
    return max(1, per if most is None else min(per, most))


def slice_count(n: int, per: int) -> int:
    """How many slices of ``per`` samples a batch of ``n`` is cut into (the last one ragged): ceil(n / per)."""
    return -(-n // per)


def run_slices(n: int, per: int, task: Callable[[int, int, int, int], None]) -> int:
    """``task(worker, i, a, b)`` for slice i, samples a ..< b, of a batch of ``n`` cut every ``per``
    samples (the last slice ragged), through ``run``; returns the slice count."""
    count = slice_count(n, per)
    run(count, lambda w, i: task(w, i, i * per, min(n, (i + 1) * per)))
    return count


# multiply-adds below which a product runs as one call: a slice's hand-over costs tens of microseconds
_MATMUL_MIN_WORK = 2**22


def matmul(a, b, out=None):
    """a (M, K) @ b (K, N), inside ``held()`` as row blocks of a side by side, one per worker: each row of
    the result is the same product of the same values either way (tests/test_threads.py compares them)."""
    m = a.shape[0]
    k = workers_for(m) if m * a.shape[1] * b.shape[1] >= _MATMUL_MIN_WORK else 1
    if k <= 1:
        return B.xp.matmul(a, b, out=out)
    if out is None:
        out = B.xp.empty((m, b.shape[1]), dtype=np.result_type(a, b))
    run(k, lambda w, i: B.xp.matmul(a[m * i // k : m * (i + 1) // k], b, out=out[m * i // k : m * (i + 1) // k]))
    return out
