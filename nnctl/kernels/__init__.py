"""Compiled CPU kernels (Numba) for the work NumPy cannot express without extra memory traffic or per-call overhead.

A kernel is one alternative to a NumPy-path function, chosen at the call site with ``active()``:

    if kernels.active():
        kernels.load("lstm").forward(...)   # compiled, CPU only
    else:
        ...the xp code...               # NumPy on the CPU, CuPy on a GPU: the reference the kernel is tested against

Rules (docs/performance.md, "Compiled kernels"): a kernel exists only where benchmarks/ shows it earns its
place; its result equals the NumPy path's within float32 rounding (a test compares the two on random shapes);
it never runs on the GPU backend; Numba is imported (by ``load``) and a kernel compiled only at its first
call (``nnctl --help`` and ``nnctl predict`` on an MLP never import Numba), and compiled code is cached on disk.

``NNCTL_KERNELS=0`` (or ``off``) turns every kernel off for a process, which is how benchmarks/ measures
the NumPy path against the kernels in one run; ``use_kernels(False)`` does the same from code (tests).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import numpy as np

from nnctl import backend

_switch = os.environ.get("NNCTL_KERNELS", "1").strip().lower() not in ("0", "off", "false", "no")
_numba_found: bool | None = None


def _numba_installed() -> bool:
    global _numba_found
    if _numba_found is None:  # find_spec reads the file system only: Numba itself is not imported here
        _numba_found = importlib.util.find_spec("numba") is not None
    return _numba_found


def active() -> bool:
    """Whether compiled kernels run now: the CPU backend, Numba installed, and not switched off."""
    return _switch and backend.xp is np and _numba_installed()


_cold_work: dict[str, int] = {}  # inference work each kernel family has run on the xp path, before Numba loaded


def wanted(family: str, work: int, training: bool, cold_work: int) -> bool:
    """Whether a call of ``work`` elements runs a kernel of ``family`` (e.g. "conv", "rnn") instead of the xp code.

    Loading Numba costs about 1 s once per process (llvmlite's LLVM, then the cached code), so an inference
    call runs the xp code until Numba is loaded or the family's inference calls in this process have added
    up to ``cold_work`` elements, the work the kernels take to repay that load (each caller measured its
    own): a one-row ``nnctl predict`` never imports Numba. Training (a backward follows, and epochs) always
    runs the kernels.
    """
    if not active():
        return False
    if training or "numba" in sys.modules:
        return True
    _cold_work[family] = done = _cold_work.get(family, 0) + work
    return done >= cold_work


def use_kernels(on: bool) -> bool:
    """Switch the kernels on or off for this process; returns the previous setting."""
    global _switch
    previous, _switch = _switch, bool(on)
    return previous


@contextmanager
def kernels_off() -> Iterator[None]:
    """Run a block on the NumPy path (the reference side of a kernel test or an A/B measurement)."""
    previous = use_kernels(False)
    try:
        yield
    finally:
        use_kernels(previous)


# the options every kernel compiles with: compiled code cached on disk (next to the module, or Numba's
# user-wide cache where that is read-only) and the GIL released, so a thread pool can run kernels side by side
JIT_OPTIONS: Any = {"cache": True, "nogil": True}  # Any: numba types njit's keywords one by one


def load(name: str) -> ModuleType:
    """The kernel module ``nnctl.kernels.<name>``, imported (with Numba) at the first call that needs it.

    Kernel modules import numba at their top and compile each function at its first call; a layer
    reaches them only through this function, inside an ``if kernels.active():`` branch.
    """
    return importlib.import_module(f"{__name__}.{name}")
