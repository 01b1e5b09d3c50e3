"""cupy.cuda for the emulator: one device, a runtime that answers like CUDA's, streams and events that
have nothing to wait for."""

from __future__ import annotations

import time

MEMORY_BYTES = 16 * 2**30


class runtime:  # noqa: N801 - CuPy's layout
    @staticmethod
    def getDeviceCount():  # noqa: N802
        return 1

    @staticmethod
    def getDeviceProperties(i):  # noqa: N802
        return {"name": b"Emulated GPU (NumPy on the CPU)", "totalGlobalMem": MEMORY_BYTES}

    @staticmethod
    def runtimeGetVersion():  # noqa: N802
        return 12090

    @staticmethod
    def driverGetVersion():  # noqa: N802
        return 12090

    @staticmethod
    def deviceGetPCIBusId(i):  # noqa: N802
        return f"0000:00:{i:02x}.0"


class Stream:
    def synchronize(self):
        pass


Stream.null = Stream()


def get_current_stream():
    return Stream.null


class Event:
    def __init__(self):
        self.t = None

    def record(self, stream=None):
        self.t = time.perf_counter()

    def synchronize(self):
        pass


def get_elapsed_time(start: Event, end: Event) -> float:
    """Milliseconds between two recorded events, as CUDA reports them."""
    return (end.t - start.t) * 1000.0


class Device:
    def __init__(self, i=0):
        self.id = i

    def use(self):
        pass
