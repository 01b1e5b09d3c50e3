"""How the trainer's batches are shared among processes: ``Local`` (one process) or ``DataParallel`` (MPI ranks).

The trainer calls a strategy at two points per batch, ``shard`` (which rows this process computes)
and ``exchange`` (the gradient every process steps with), and once per epoch (``end_epoch``,
``gather``, ``reduce``, ``epoch_logs``); ``agree_stop`` makes a stop request common to all processes.

Under ``DataParallel`` rank r of p takes rows [r*g//p, (r+1)*g//p) of each global batch of g rows and
scales its mean gradient by n_r*p/g, so the averaged gradient is

    (1/p) * sum_r (n_r*p/g) * (1/n_r) * sum_{i in r} grad_i  =  (1/g) * sum_i grad_i,

the gradient of one process on the whole batch. Random draws (augmentation, dropout) go through
``RowShare``: each rank draws for the whole global batch and keeps its rows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import numpy as np

from nnctl.rowshare import RowShare

if TYPE_CHECKING:
    from nnctl.train import Trainer


class Shard(NamedTuple):
    rows: np.ndarray  # indices (into the training set) of the rows this process computes
    scale: float  # factor on this process's mean gradient (n_r * p / g)
    weight: int  # rows of the global batch (g): the batch's weight in an accumulated gradient


class Local:
    """One process: every row, no exchange; the identity at every point."""

    rank, size = 0, 1

    def attach(self, trainer: Trainer) -> None:
        """Prepare a trainer's generators (nothing to do for one process)."""

    def shard(self, rows: np.ndarray) -> Shard:
        return Shard(rows, 1.0, len(rows))

    def exchange(self, flat_grads: Any) -> None:
        """Make ``flat_grads`` the gradient every process steps with (here: already so)."""

    def agree_stop(self, local: int) -> int:
        """The stop level every process agrees on (the highest asked for)."""
        return local

    def end_epoch(self, trainer: Trainer) -> None:
        """Bring every process's generator states to the same values (here: already so)."""

    def gather(self, a: Any) -> Any:
        return a

    def reduce(self, values: np.ndarray) -> np.ndarray:
        return values

    def epoch_logs(self) -> dict:
        return {}


class Collectives(Protocol):
    """What ``DataParallel`` needs from a communicator (``distributed.World``)."""

    rank: int
    size: int

    def grad_hook(self, flat_grads: Any) -> None: ...  # in place: the mean over ranks
    def reduce_hook(self, values: np.ndarray) -> np.ndarray: ...  # host sum over ranks
    def gather_hook(self, a: Any) -> Any: ...  # every rank's rows, in rank order
    def sync_rngs(self, states: Any) -> Any: ...  # the last rank's states, on every rank
    def epoch_logs(self) -> dict: ...
    def agree_stop(self, local: int) -> int: ...


class DataParallel(Local):
    """Each rank computes its share of every global batch; gradients averaged over ranks before each step."""

    def __init__(self, comm: Collectives):
        self.comm = comm
        self.rank, self.size = comm.rank, comm.size
        self.row_shares: list[RowShare] = []

    def attach(self, trainer: Trainer) -> None:
        trainer.aug_rng = RowShare(trainer.aug_rng)
        for node in trainer.model.nodes:
            node.layer.rng = RowShare(node.layer.rng)
        self.row_shares = [trainer.aug_rng, *(node.layer.rng for node in trainer.model.nodes)]

    def shard(self, rows: np.ndarray) -> Shard:
        g = len(rows)
        lo, hi = self.rank * g // self.size, (self.rank + 1) * g // self.size
        for rng in self.row_shares:  # draw for all g rows, keep [lo:hi]: the numbers one process draws
            rng.share = (lo, hi, g)
        return Shard(rows[lo:hi], (hi - lo) * self.size / g if g else 1.0, g)

    def exchange(self, flat_grads: Any) -> None:
        self.comm.grad_hook(flat_grads)

    def agree_stop(self, local: int) -> int:
        return self.comm.agree_stop(local)

    def end_epoch(self, trainer: Trainer) -> None:
        # a rank with no rows in a (ragged last) batch skipped its draws, token_swap draws per-share rounds:
        # every rank takes the same states, so the checkpoint's (rank 0's) are every rank's
        aug, layers = self.comm.sync_rngs((trainer.aug_rng.bit_generator.state, trainer.model.rng_states()))
        trainer.aug_rng.bit_generator.state = aug
        trainer.model.set_rng_states(layers)

    def gather(self, a: Any) -> Any:
        return self.comm.gather_hook(a)

    def reduce(self, values: np.ndarray) -> np.ndarray:
        return self.comm.reduce_hook(values)

    def epoch_logs(self) -> dict:
        return self.comm.epoch_logs()
