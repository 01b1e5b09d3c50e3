"""The one module that knows about CuPy: picks the array module and moves arrays between host and device.

Every other module writes its arithmetic once against ``backend.xp``; CuPy is imported lazily, only
when a GPU is asked for (or ``auto`` finds one), so CPU runs never pay for it.
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Any

import numpy as np

from nnctl.errors import BackendError

xp: ModuleType = np  # the active array module: numpy or cupy (typed as a module: CuPy ships no stubs)
device = "cpu"


def _cupy():
    try:
        import cupy  # lazy on purpose
    except Exception as exc:  # noqa: BLE001 - ImportError, or a CUDA library that fails to load
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
    except Exception as exc:  # noqa: BLE001 - CUDA errors have no common base below Exception
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
    return device


def _gpu_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("cupy") is not None


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed blocks instead of returning them to the OS (whole process).

    A process-wide setting, so the library never makes it on its own: the CLI's train, predict,
    evaluate and time verbs call this (an application's choice); a program that embeds nnctl may.

    A training step allocates and frees the same large activation and gradient arrays every batch;
    by default glibc serves blocks above 128 KiB with mmap and unmaps them on free, so every step
    page-faults its working set in again. Raising the mmap threshold to its 32 MiB maximum and
    never trimming keeps those blocks in the heap for the next step (measured in benchmarks/README.md).
    No effect off glibc; returns whether both settings took.
    """
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, 32 * 1024 * 1024)) and bool(
            libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
        )
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
        import cupyx

        cupyx.scatter_add(target, indices, values)


def info() -> dict:
    """Versions, the GPUs CuPy sees (name, memory) and the device ``auto`` would pick, for ``nnctl info``."""
    out: dict[str, Any] = {"cupy": None, "cuda_runtime": None, "cuda_driver": None, "gpus": [], "auto": "cpu"}
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
            out["gpus"].append(
                {
                    "name": name.decode() if isinstance(name, bytes) else str(name),
                    "memory_bytes": int(props["totalGlobalMem"]),
                }
            )
    except Exception as exc:  # noqa: BLE001 - a CUDA error: no driver, no device, mismatched versions
        out["gpu_unavailable"] = f"CuPy found no CUDA driver or device ({exc})"
    if out["gpus"]:
        out["auto"] = "gpu"
    return out


def _cuda_version(v: int) -> str | None:
    """CUDA's integer version 1000*major + 10*minor as "major.minor" (None for 0: no driver)."""
    return f"{v // 1000}.{v % 1000 // 10}" if v else None


# -- several GPUs, one per data-parallel rank (nnctl.distributed calls these) ----------------------------
def gpu_count() -> int:
    """How many GPUs CuPy sees (1 when the scheduler gives each rank its own)."""
    return int(_cupy().cuda.runtime.getDeviceCount())


def gpu_bus_id(index: int) -> str:
    """GPU ``index``'s PCI bus id: the physical card, however CUDA_VISIBLE_DEVICES renumbers them."""
    return str(_cupy().cuda.runtime.deviceGetPCIBusId(index))


def use_gpu(index: int) -> None:
    """Make GPU ``index`` this process's current device (before any allocation, so the model lands there)."""
    _cupy().cuda.Device(index).use()


def _nccl():
    try:
        from cupy.cuda import nccl
    except Exception as exc:  # noqa: BLE001 - ImportError, or an NCCL library that fails to load
        raise BackendError(
            f"multi-GPU training needs NCCL through CuPy (cupy.cuda.nccl fails to load: {exc})"
        ) from None
    return nccl


def nccl_unique_id() -> Any:
    """A new NCCL communicator id: one rank makes it and sends it to the others."""
    return _nccl().get_unique_id()


class DeviceAllreduce:
    """The mean of one device buffer over ``size`` ranks, in place over NCCL: b <- (1/p) * sum_r b_r.

    Each call is queued on the current stream, so the optimizer step queued after it waits on the GPU,
    not the host; CUDA events around it give the device time, read once per epoch (``take_seconds``).
    """

    def __init__(self, size: int, unique_id: Any, rank: int):
        nccl = _nccl()
        self.size = size
        self._comm = nccl.NcclCommunicator(size, unique_id, rank)
        self._types = {
            np.dtype(np.float16): nccl.NCCL_FLOAT16,
            np.dtype(np.float32): nccl.NCCL_FLOAT32,
            np.dtype(np.float64): nccl.NCCL_FLOAT64,
        }
        self._sum = nccl.NCCL_SUM
        self._events: list[tuple[Any, Any]] = []  # (start, end) around each call since take_seconds

    def mean_(self, buf) -> None:
        """In place: buf <- (1/p) * sum_r buf_r for a contiguous CuPy array ``buf``."""
        cuda = _cupy().cuda
        stream = cuda.get_current_stream()
        start, end = cuda.Event(), cuda.Event()
        start.record(stream)
        self._comm.allReduce(buf.data.ptr, buf.data.ptr, buf.size, self._types[buf.dtype], self._sum, stream.ptr)
        buf /= buf.dtype.type(self.size)
        end.record(stream)
        self._events.append((start, end))

    def take_seconds(self) -> float | None:
        """Device seconds in ``mean_`` since the last call (None when it was not called); waits for the last."""
        if not self._events:
            return None
        cuda = _cupy().cuda
        self._events[-1][1].synchronize()
        seconds = sum(cuda.get_elapsed_time(s, e) for s, e in self._events) / 1000.0
        self._events = []
        return seconds
