import os
import pathlib
import sys

import pytest

# One BLAS thread for the suite: the per-step matrix products in tests are small, and a multithreaded
# BLAS on a shared 2-core machine runs them up to 100x slower. Set before NumPy is imported; the
# subprocesses the CLI tests start inherit it.
for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

sys.path.insert(0, str(pathlib.Path(__file__).parent))


EMULATOR = pathlib.Path(__file__).parent / "cupy_emulator"


@pytest.fixture
def emulated_gpu(monkeypatch):
    """The CuPy emulator (tests/cupy_emulator) as ``cupy`` for one test; yields the module.

    Any real CuPy is hidden meanwhile; afterwards the modules are dropped and the backend is back on NumPy.
    """

    def cupy_modules():
        return [m for m in sys.modules if m.split(".")[0] in ("cupy", "cupyx")]

    from nnctl import backend

    before = backend.xp, backend.device
    saved = {m: sys.modules.pop(m) for m in cupy_modules()}
    monkeypatch.syspath_prepend(str(EMULATOR))
    import cupy

    cupy.host_reads = 0
    yield cupy
    backend.xp, backend.device = before
    for m in cupy_modules():
        del sys.modules[m]
    sys.modules.update(saved)


@pytest.fixture(autouse=True)
def device_from_environment():
    """Every test starts on the device NNCTL_DEVICE names (NNCTL_DEVICE=gpu pytest), also the unit tests
    that never call ``backend.use``, whatever the test before it chose."""
    from nnctl import backend

    backend.use("auto")
