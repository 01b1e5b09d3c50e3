"""How the trainer's batches are shared among processes: ``Local`` (one process) or ``DataParallel`` (MPI ranks).

The trainer calls a strategy at two points per batch, ``shard`` (which rows this process computes)
and ``exchange`` (the gradient every process steps with), and once per epoch (``end_epoch``,
``gather``, ``reduce``, ``epoch_logs``); ``agree_stop`` makes a stop request common to all processes.

Under ``DataParallel`` rank r of p takes rows [r*g//p, (r+1)*g//p) of each global batch of g rows and
scales its mean gradient by n_r*p/g, so the averaged gradient is

    (1/p) * sum_r (n_r*p/g) * (1/n_r) * sum_{i in r} grad_i  =  (1/g) * sum_i grad_i,

the gradient of one process on the whole batch. Random draws (augmentation, dropout) go through
``RowShare``: each rank draws for the whole global batch and keeps its rows. Validation is shared the
same way: rank r runs rows [r*n//p, (r+1)*n//p) of the n validation rows forward, the loss sums and
row counts are summed over ranks, and the outputs and targets are gathered in rank order, so the loss
(sum over ranks / n, plus the penalty) and every metric are those of one process on the whole set.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import numpy as np

from nnctl import backend as B
from nnctl.rowshare import RowShare
from nnctl.scoring import epoch_metrics, evaluate_model

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
        trainer.evaluate = functools.partial(self.evaluate, trainer)  # type: ignore[method-assign]
        trainer.aug_rng = RowShare(trainer.aug_rng)
        # the layers draw from the model's streams (RowShare from the build on); only their shares change here
        self.row_shares = [trainer.aug_rng, *trainer.model.streams]

    def shard(self, rows: np.ndarray) -> Shard:
        g = len(rows)
        lo, hi = self.rank * g // self.size, (self.rank + 1) * g // self.size
        for rng in self.row_shares:  # draw for all g rows, keep [lo:hi]: the numbers one process draws
            rng.share = (lo, hi, g)
        return Shard(rows[lo:hi], (hi - lo) * self.size / g if g else 1.0, g)

    def exchange(self, flat_grads: Any) -> None:
        self.comm.grad_hook(flat_grads)

    def evaluate(self, trainer: Trainer, x, y, batch_size: int = 1024) -> dict:
        """``Trainer.evaluate`` from this rank's share of the rows: the logs one process computes on all of them."""
        if isinstance(x, dict) or isinstance(y, dict) or len(trainer.heads.heads) > 1:
            # named inputs or outputs: each output's loss and metrics are not shared out yet; every rank scores
            # every row, which gives the same logs
            return type(trainer).evaluate(trainer, x, y, batch_size)
        n, model = len(x), trainer.model
        lo, hi = self.rank * n // self.size, (self.rank + 1) * n // self.size
        penalty = float(model.regularization(add_grads=False)) if model.has_regularization() else 0.0
        outputs: list = []
        loss_sum = 0.0
        if hi > lo:  # the share's mean loss (its penalty taken off again) times its rows
            logs = evaluate_model(
                model,
                trainer.loss,
                x[lo:hi],
                y[lo:hi],
                [],
                trainer.task,
                trainer.n_classes,
                trainer.decode,
                batch_size,
                outputs=outputs,
            )
            loss_sum = (logs["loss"] - penalty) * (hi - lo)
        totals = self.reduce(np.array([loss_sum, hi - lo], dtype=np.float64))
        out = {"loss": float(totals[0] / max(totals[1], 1)) + penalty}
        if trainer.metric_names:
            mine = outputs[0] if outputs else B.xp.zeros((0, *model.output_shape), model.dtype)
            y_all = self.gather(B.asarray(y[lo:hi]))  # every rank: every output and target, in row order
            out.update(
                epoch_metrics(
                    trainer.loss,
                    trainer.metric_names,
                    self.gather(mine),
                    y_all,
                    trainer.task,
                    trainer.n_classes,
                    trainer.decode,
                )
            )
        return out

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
