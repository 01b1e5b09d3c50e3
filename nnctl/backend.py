"""The one module that knows about CuPy: picks the array module and moves arrays between host and device.

Every other module writes its arithmetic once against ``backend.xp``; CuPy is imported lazily, only
when a GPU is asked for (or ``auto`` finds one), so CPU runs never pay for it.
"""

from __future__ import annotations

import os

import numpy as np

from nnctl.errors import BackendError

xp = np  # the active array module: numpy or cupy
device = "cpu"


def _cupy():
    try:
        import cupy  # noqa: PLC0415 - lazy on purpose
    except Exception as exc:  # ImportError, or a CUDA library that fails to load
        raise BackendError(f"CuPy is not installed or fails to load ({exc}); install nnctl[gpu]") from None
    return cupy


def gpu_status() -> tuple[bool, str]:
    """Whether a GPU is usable through CuPy, and why not when it is not."""
    try:
        cupy = _cupy()
    except BackendError as exc:
        return False, str(exc)
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        return False, f"CuPy found no CUDA driver or device ({exc})"
    return (n > 0, f"{n} GPU(s)" if n else "CuPy found no GPU")


def use(name: str = "auto") -> str:
    """Select the array module for ``cpu``, ``gpu`` or ``auto``; returns the device chosen."""
    global xp, device
    name, source = (name or "auto").lower(), "--device {}"
    if name == "auto" and os.environ.get("NNCTL_DEVICE"):  # NNCTL_DEVICE=gpu runs whatever is left on auto
        name, source = os.environ["NNCTL_DEVICE"].lower(), "NNCTL_DEVICE={}"
    if name not in ("auto", "cpu", "gpu"):
        raise BackendError(f"{source.format(repr(name))}: expected auto, cpu or gpu")
    if name == "auto":
        name = "gpu" if _gpu_installed() and gpu_status()[0] else "cpu"
    if name == "gpu":
        ok, why = gpu_status()
        if not ok:
            raise BackendError(f"{source.format('gpu')}: no usable GPU: {why}")
        xp, device = _cupy(), "gpu"
    else:
        xp, device = np, "cpu"
        keep_freed_memory()  # measured: about 20% off a CNN training step (benchmarks/)
    return device


def _gpu_installed() -> bool:
    import importlib.util  # noqa: PLC0415

    return importlib.util.find_spec("cupy") is not None


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed blocks instead of returning them to the OS.

    A training step allocates and frees the same large activation and gradient arrays every batch;
    by default glibc serves blocks above 128 KiB with mmap and unmaps them on free, so every step
    page-faults its working set in again. Raising the mmap threshold to its 32 MiB maximum and
    never trimming keeps those blocks in the heap for the next step. No effect off glibc.
    """
    import ctypes  # noqa: PLC0415
    import sys  # noqa: PLC0415

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, 32 * 1024 * 1024)) and bool(
            libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    except (OSError, AttributeError):
        return False


def asarray(a, dtype=None):
    """Move a host array (or scalar) to the active device."""
    return xp.asarray(a, dtype=dtype)


def to_numpy(a) -> np.ndarray:
    """Bring an array back to the host (no copy on the CPU)."""
    if isinstance(a, np.ndarray) or xp is np:
        return np.asarray(a)
    return a.get()


def synchronize() -> None:
    """Wait for queued device work (for honest timings)."""
    if xp is not np:
        xp.cuda.Stream.null.synchronize()


def scatter_add(target, indices, values) -> None:
    """target[indices] += values with repeated indices accumulated (np.add.at / cupyx.scatter_add)."""
    if xp is np:
        np.add.at(target, indices, values)
    else:
        import cupyx  # noqa: PLC0415

        cupyx.scatter_add(target, indices, values)


def info() -> dict:
    """Versions, the GPUs CuPy sees (name, memory) and the device ``auto`` would pick, for ``nnctl info``."""
    out = {"cupy": None, "cuda_runtime": None, "cuda_driver": None, "gpus": [], "auto": "cpu"}
    if not _gpu_installed():
        return out
    try:
        cupy = _cupy()
    except BackendError as exc:
        return {**out, "gpu_unavailable": str(exc)}
    out["cupy"] = cupy.__version__
    runtime = cupy.cuda.runtime
    try:
        out["cuda_runtime"] = _cuda_version(runtime.runtimeGetVersion())
        out["cuda_driver"] = _cuda_version(runtime.driverGetVersion())
        for i in range(runtime.getDeviceCount()):
            props = runtime.getDeviceProperties(i)
            name = props["name"]
            out["gpus"].append({"name": name.decode() if isinstance(name, bytes) else str(name),
                                "memory_bytes": int(props["totalGlobalMem"])})
    except Exception as exc:  # a CUDA error: no driver, no device, mismatched versions
        out["gpu_unavailable"] = f"CuPy found no CUDA driver or device ({exc})"
    if out["gpus"]:
        out["auto"] = "gpu"
    return out


def _cuda_version(v: int) -> str | None:
    """CUDA's integer version 1000*major + 10*minor as "major.minor" (None for 0: no driver)."""
    return f"{v // 1000}.{v % 1000 // 10}" if v else None
