"""Data-parallel training over MPI (the Horovod / ChainerMN design): one flat gradient allreduce per step.

Every rank holds the whole model and takes rows [r*g//p, (r+1)*g//p) of each global batch of g
samples; the trainer scales rank r's mean gradient by n_r*p/g, so the summed-then-averaged gradient is

    (1/p) * sum_r (n_r*p/g) * (1/n_r) * sum_{i in r} grad_i  =  (1/g) * sum_i grad_i,

exactly the gradient one process computes on the whole batch (``strategy.DataParallel`` shares the
rows; this module is the communicator). mpi4py is imported only when a launcher (mpiexec, srun) is
detected or ``--distributed`` is given; on GPU runs the allreduce is NCCL's, through ``backend`` (the
one module that knows CuPy). It never prints or exits: the CLI's ``cli.ranks.guard`` does, on one rank's
failure, and then calls ``World.abort``.
"""

from __future__ import annotations

import os
import time

import numpy as np

from nnctl import backend as B
from nnctl.errors import BackendError
from nnctl.strategy import DataParallel

# environment variables that launchers set in every rank: world sizes, or rank ids only
_SIZE_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE")  # Open MPI; MPICH/Intel MPI (Hydra)
_RANK_ONLY_VARS = ("PMIX_RANK", "MPI_LOCALRANKID")  # PMIx launchers (Open MPI 5, srun --mpi=pmix); MPICH


def launched_by_mpi(environ=None) -> bool:
    """Whether this process is one of several started by mpiexec/mpirun or srun (a 1-rank launch is not)."""
    env = os.environ if environ is None else environ
    sizes = [env[k] for k in _SIZE_VARS if k in env]
    # SLURM_NTASKS alone is also set inside an sbatch script; SLURM_STEP_ID means srun started this task
    if "SLURM_PROCID" in env and "SLURM_STEP_ID" in env and "SLURM_NTASKS" in env:
        sizes.append(env["SLURM_NTASKS"])
    if sizes:
        return any(s.strip().isdigit() and int(s) > 1 for s in sizes)
    return any(k in env for k in _RANK_ONLY_VARS)


def _mpi():
    try:
        from mpi4py import MPI  # lazy: importing it initialises MPI
    except Exception as exc:  # noqa: BLE001 - ImportError, or an MPI library that fails to load
        raise BackendError(f"distributed training needs mpi4py: pip install nnctl[mpi] ({exc})") from None
    return MPI


class World:
    """This rank's view of the job: the collectives ``strategy.DataParallel`` calls, and the allreduce's time."""

    def __init__(self, comm, mpi):
        self.comm, self.MPI = comm, mpi
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self._node = comm.Split_type(mpi.COMM_TYPE_SHARED)  # ranks on this machine: local rank picks the GPU
        self.local_rank, self.local_size = self._node.Get_rank(), self._node.Get_size()
        self.comm_seconds = 0.0  # host seconds in grad_hook since the last epoch_logs()
        self._ctl = comm.Dup()  # control messages (stop votes) never interleave with gradient collectives
        self._vote_out, self._vote_in = np.zeros(1, np.int32), np.zeros(1, np.int32)
        self._vote = None  # the stop vote in flight, started one batch earlier
        self._voting = False  # whether the trainer calls agree_stop (then a stop is agreed by all ranks)
        self._nccl: B.DeviceAllreduce | None = None  # the GPU allreduce, once bind_device chose a GPU

    def strategy(self) -> DataParallel:
        """The trainer's strategy over this world: each rank its share of every batch."""
        return DataParallel(self)

    # -- device -------------------------------------------------------------------------------------
    def bind_device(self, device: str = "auto") -> str:
        """Resolve the backend; on a GPU, give each rank on a machine its own GPU and build the NCCL communicator."""
        chosen = B.use(device)
        if chosen == "gpu":
            self._init_nccl()
        return chosen

    def _init_nccl(self) -> None:
        device = self.local_rank % B.gpu_count()  # one GPU seen when the scheduler gives each rank its own
        # NCCL refuses two ranks on one GPU: compare physical ids, as CUDA_VISIBLE_DEVICES may renumber
        buses = self._node.allgather(B.gpu_bus_id(device))
        if len(set(buses)) < len(buses):
            raise BackendError(
                f"{self.local_size} ranks on this machine share {len(set(buses))} GPU(s): launch "
                f"one rank per GPU (mpiexec -ppn <GPUs per machine>) or use --device cpu"
            )
        B.use_gpu(device)
        uid = self.comm.bcast(B.nccl_unique_id() if self.rank == 0 else None, root=0)
        self._nccl = B.DeviceAllreduce(self.size, uid, self.rank)

    # -- hooks --------------------------------------------------------------------------------------
    def grad_hook(self, flat_grads) -> None:
        """In place: g <- (1/p) * sum_r g_r, one call for the whole contiguous gradient buffer."""
        t0 = time.perf_counter()
        if isinstance(flat_grads, np.ndarray):
            self.comm.Allreduce(self.MPI.IN_PLACE, flat_grads, op=self.MPI.SUM)
            flat_grads /= flat_grads.dtype.type(self.size)
        elif self._nccl is None:
            raise BackendError("GPU gradients but no NCCL communicator: call World.bind_device first")
        else:
            self._nccl.mean_(flat_grads)  # queued on the GPU: the host time here is not the allreduce's
        self.comm_seconds += time.perf_counter() - t0

    def reduce_hook(self, values: np.ndarray) -> np.ndarray:
        """Host sum across ranks (per-epoch [loss_sum, count]); identical on every rank."""
        values = np.ascontiguousarray(values, dtype=np.float64)
        out = np.empty_like(values)
        self.comm.Allreduce(values, out, op=self.MPI.SUM)
        return out

    def gather_hook(self, a):
        """Every rank's rows of ``a``, concatenated in rank order on every rank (same array module as ``a``)."""
        host = np.ascontiguousarray(B.to_numpy(a))
        counts = self.comm.allgather(host.shape[0])
        out = np.empty((sum(counts), *host.shape[1:]), dtype=host.dtype)
        row = int(np.prod(host.shape[1:], dtype=np.int64))
        self.comm.Allgatherv(host.reshape(-1), [out.reshape(-1), [c * row for c in counts]])
        return out if isinstance(a, np.ndarray) else B.asarray(out)

    def sync_rngs(self, states):
        """The last rank's generator states, on every rank: it has rows in every batch, so it drew as one process."""
        return self.comm.bcast(states, root=self.size - 1)

    def epoch_logs(self) -> dict:
        """{"allreduce_seconds": seconds this rank spent in the gradient allreduce since the last call}."""
        device_seconds = self._nccl.take_seconds() if self._nccl is not None else None  # GPU: the events' time
        seconds = self.comm_seconds if device_seconds is None else device_seconds
        self.comm_seconds = 0.0
        return {"allreduce_seconds": seconds}

    def agree_stop(self, local: int) -> int:
        """stop_k = max_r local_r at call k-1: the same answer on every rank, one batch late.

        A Ctrl-C reaches the ranks at slightly different batches; a rank stopping alone would leave
        the others in an allreduce. The vote is a non-blocking allreduce, so it costs no latency.
        ``local`` is a level (0 = go on; the session's stop reasons are 1, 2): the highest one wins.
        """
        self._voting = True
        if self._vote is not None:
            self._vote.Wait()
            self._vote = None
            if self._vote_in[0]:
                return int(self._vote_in[0])
        self._vote_out[0] = int(local)
        self._vote = self._ctl.Iallreduce(self._vote_out, self._vote_in, op=self.MPI.MAX)
        return 0

    # -- endings (cli.ranks.guard decides which) ---------------------------------------------------------
    def rendezvous(self) -> bool:
        """Finish the last stop vote, then a barrier with a deadline; whether every rank arrived."""
        deadline = time.monotonic() + (60.0 if self._voting else 10.0)  # rank 0 may still be writing
        requests = [self._vote] if self._vote is not None else []
        self._vote = None
        for request in [*requests, self._ctl.Ibarrier()]:
            while not request.Test():
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.005)
        return True

    def abort(self, code: int) -> None:
        """End every rank of the job with exit code ``code`` (after this rank reported its error)."""
        self.comm.Abort(code)


def connect(force: bool = False) -> World | None:
    """The MPI world when launched by mpiexec/srun (or ``force``); else None. Bind a device next (``bind_device``)."""
    if not (force or launched_by_mpi()):
        return None
    return World(_mpi().COMM_WORLD, _mpi())
