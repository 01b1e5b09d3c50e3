import os
import pathlib
import sys

# One BLAS thread for the suite: the per-step matrix products in tests are small, and a multithreaded
# BLAS on a shared 2-core machine runs them up to 100x slower. Set before NumPy is imported; the
# subprocesses the CLI tests start inherit it.
for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

sys.path.insert(0, str(pathlib.Path(__file__).parent))
