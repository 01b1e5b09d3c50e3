"""distributed.World binding GPUs through the backend's functions, on the CuPy emulator with a stand-in MPI
communicator (the real NCCL path needs several GPUs; docs/distributed.md)."""

import numpy as np
import pytest

from nnctl import backend as B
from nnctl.distributed import World
from nnctl.errors import BackendError


class FakeComm:
    """The few MPI calls World makes while binding a device, for ``size`` ranks of which this is ``rank``;
    ``allgather`` answers with what every rank on the machine would send (``peers`` copies of ours)."""

    COMM_TYPE_SHARED = 1

    def __init__(self, rank=0, size=1, peers=1):
        self.rank, self.size, self.peers = rank, size, peers
        self.sent = []

    def Get_rank(self):  # noqa: N802 - mpi4py's names
        return self.rank

    def Get_size(self):  # noqa: N802
        return self.size

    def Split_type(self, kind):  # noqa: N802
        return FakeComm(self.rank, self.peers, self.peers)

    def Dup(self):  # noqa: N802
        return self

    def allgather(self, value):
        self.sent.append(value)
        return [value] * self.peers

    def bcast(self, value, root=0):
        return value


def test_backend_reports_the_emulated_gpu(emulated_gpu):
    assert B.gpu_count() == 1
    assert B.gpu_bus_id(0) == emulated_gpu.cuda.runtime.deviceGetPCIBusId(0)
    B.use_gpu(0)  # nothing to check but that it goes through


def test_two_ranks_on_one_gpu_are_refused(emulated_gpu):
    world = World(FakeComm(rank=0, size=2, peers=2), FakeComm)
    with pytest.raises(BackendError, match="2 ranks on this machine share 1 GPU"):
        world.bind_device("gpu")


def test_a_gpu_without_nccl_is_a_backend_error(emulated_gpu):
    world = World(FakeComm(), FakeComm)
    with pytest.raises(BackendError, match="NCCL"):  # the emulator has no cupy.cuda.nccl
        world.bind_device("gpu")


def test_cpu_gradients_are_averaged_over_mpi():
    class SumComm(FakeComm):
        def Allreduce(self, send, recv, op=None):  # noqa: N802
            assert send is MPI.IN_PLACE and op is MPI.SUM
            recv *= self.size  # every rank holds the same values: the sum is size times ours

    class MPI:
        IN_PLACE, SUM, COMM_TYPE_SHARED = object(), object(), 1

    world = World(SumComm(size=4), MPI)
    assert world.bind_device("cpu") == "cpu"
    g = np.arange(6, dtype=np.float32)
    world.grad_hook(g)
    np.testing.assert_array_equal(g, np.arange(6, dtype=np.float32))  # (1/4) * (4 * g) = g
    assert world.epoch_logs()["allreduce_seconds"] >= 0.0
