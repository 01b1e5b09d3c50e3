"""The training loop: shuffle, batch, forward, loss, backward, gradient exchange, optimizer step.

It emits per-epoch logs through a callback and never prints. Its whole state (weights, optimizer
slots and step, schedule, early stopping, epoch counter, data-order and dropout RNG states, history,
and inside an epoch the position in its order with the batch losses and outputs so far) is captured
by ``snapshot()``, so a resumed run continues bit-identically on the CPU, also from the middle of an
epoch (a stop request is honoured at a batch boundary).

How rows are shared among processes is a ``strategy.Local`` or ``strategy.DataParallel`` object,
called at two points of each batch (``shard``, ``exchange``). With ``gradient_accumulation = K``
the optimizer steps every K batches on the row-weighted mean of their gradients,

    g = sum_k n_k * g_k / sum_k n_k    (g_k the mean gradient of batch k of n_k rows),

which is the gradient of one batch of K*B rows. ``after_step()`` is the one point called after
every optimizer step (per-step schedules, weight averages, step checkpoints).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from nnctl import backend as B
from nnctl import losses, metrics, trainer_state
from nnctl.callbacks import EarlyStopping
from nnctl.errors import CheckpointError, TrainingDiverged
from nnctl.graph import Model, take
from nnctl.graph import rows as n_rows
from nnctl.optimizers import Optimizer, ema_swapped
from nnctl.outputs import Heads, device_targets
from nnctl.schedules import Schedule
from nnctl.scoring import evaluate_model, fuses
from nnctl.strategy import Local
from nnctl.trainer_state import EpochProgress, host_losses

if TYPE_CHECKING:
    from nnctl.spec_sections import TrainSection


@dataclass
class BatchProgress:
    """Where an epoch stands after a batch; ``mean_loss()`` reads the device, so callers throttle it."""

    epoch: int  # 1-based, counting resumed epochs
    batch: int  # batches done in this epoch
    batches: int
    samples: int  # this rank's samples done in this epoch
    started: float  # time.perf_counter() when the epoch began
    mean_loss: Callable[[], float]  # mean training loss over the batches so far (one host read)


@dataclass
class Hooks:
    """Callbacks the trainer makes; each is optional."""

    should_stop: Callable[[], bool] | None = None  # checked at each step boundary (signals)
    between_batches: Callable[[], None] | None = None  # after every batch (SIGUSR1 checkpoint requests)
    on_step: Callable[[int], None] | None = None  # after every optimizer step, with the step count
    augment: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None  # training batches only
    on_batch: Callable[[BatchProgress], None] | None = None  # progress bars; reads nothing itself


@dataclass
class TrainState:
    epoch: int = 0  # epochs finished
    history: dict = field(default_factory=dict)  # name -> list per epoch


class Trainer:
    """Fit a built ``Model`` with a loss, optimizer and the spec's training options."""

    def __init__(
        self,
        model: Model,
        loss: losses.Loss,
        optimizer: Optimizer,
        train_cfg: TrainSection,
        task: str,
        n_classes: int,
        seed: int,
        schedule: Schedule | None = None,
        early: EarlyStopping | None = None,
        hooks: Hooks | None = None,
        decode: Callable | None = None,
        strategy: Local | None = None,
        heads: Heads | None = None,
    ):
        self.model, self.loss, self.optimizer, self.cfg = model, loss, optimizer, train_cfg
        self.task, self.n_classes = task, n_classes
        self.metric_names = [metrics.METRICS.canonical(m) for m in train_cfg.metrics]
        # the outputs with their losses and metrics (nnctl.outputs); one output is the one-head case
        self.heads = heads or Heads.single(model, loss, self.metric_names, task, n_classes, decode)
        if heads is not None:
            self.metric_names = [m for h in heads.heads for m in h.metrics]
        self._parts: dict = {}  # the last batch's loss per output
        self.schedule = schedule or Schedule(optimizer.learning_rate)
        self.early = early
        self.hooks = hooks or Hooks()
        self.decode = decode  # maps regression outputs/targets back to original units for metrics
        self.accumulate = int(train_cfg.gradient_accumulation)
        self.data_rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(3,))))
        self.aug_rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(4,))))
        self._moved_targets = None  # the last batch's masks after joint augmentation (segmentation)
        self.strategy = strategy or Local()
        self.strategy.attach(self)
        self.state = TrainState()
        self.progress: EpochProgress | None = None  # set while an epoch runs, kept when it stops mid-way
        self.fused = fuses(model, loss)
        if isinstance(loss, losses.Perceptron) and not self.fused:
            raise ValueError("the perceptron loss needs a final 'step' activation")
        self.optimizer.init_slots(model.flat_params.size, model.dtype)
        self._buffers: dict = {}
        self.class_weight = None  # device (n_classes,) loss weights of train.class_weight (losses.class_weights)
        self.sample_weight: np.ndarray | None = None  # host (N,) data.sample_weight, by training row
        self._summed: Any = None  # K > 1: sum_k n_k * g_k over the batches of the step so far
        self._summed_rows = 0  # sum_k n_k

    # -- one step -----------------------------------------------------------------------------------
    def loss_and_grad(self, xb, yb, scale: float = 1.0, weights=None):
        """Forward and backward on one batch (``weights``: per-sample loss weights or None); returns the
        device loss (before regularisation)."""
        y = self.model.forward(xb, training=True)
        value, self._parts = self.heads.value_grad(y, yb, weights, scale)
        return value, self.heads.pack(y)

    def batch_weights(self, yb, rows: np.ndarray):
        """Per-sample loss weights of a batch, w_i = class_weight[label_i] * sample_weight[row_i] (either factor
        1 where absent), or None when neither is set."""
        w = None if self.class_weight is None else self.class_weight[losses.label_ids(yb, self.task)]
        if self.sample_weight is not None:
            sw = B.asarray(self.sample_weight[rows], dtype=self.model.dtype)
            w = sw if w is None else w * sw
        return w

    def step(self, lr: float) -> None:
        """Exchange the gradient and step the optimizer on it, then ``after_step``."""
        model = self.model
        self.strategy.exchange(model.flat_grads)
        self.optimizer.step(model.flat_params, model.flat_grads, model.slices.values(), lr=lr)
        self.after_step()

    def after_step(self) -> None:
        """The per-step point, once after every optimizer step (``optimizer.iterations`` counts them)."""
        if self.hooks.on_step is not None:
            self.hooks.on_step(self.optimizer.iterations)

    def _batch(self, x, y, rows: np.ndarray, lr: float, last_of_step: bool, regularized: bool):
        """One batch: its share's forward and backward, and a step at the end of each group of K batches."""
        model = self.model
        shard = self.strategy.shard(rows)
        if len(shard.rows) == 0:  # fewer rows than ranks (ragged last batch): a zero gradient, still exchanged
            model.flat_grads[...] = 0
            value, out = B.xp.zeros((), dtype=model.dtype), None
        else:
            xb, yb = self._gather(x, shard.rows, "x"), self._gather(y, shard.rows, "y")
            if getattr(self.hooks.augment, "joint", False):  # segmentation: the masks move with their images
                xb, yb = self.hooks.augment.pair(xb, yb, self.aug_rng)  # type: ignore[union-attr]
                self._moved_targets = yb  # the epoch's metrics compare the outputs with these
            elif self.hooks.augment is not None:
                xb = self.hooks.augment(xb, self.aug_rng)
            xb = model.device_inputs(xb)
            yb = device_targets(yb)
            value, out = self.loss_and_grad(xb, yb, scale=shard.scale, weights=self.batch_weights(yb, shard.rows))
        if self.accumulate == 1:
            if regularized:  # every rank adds the penalty's gradient: the exchange averages it back to once
                value = value + model.regularization(add_grads=True)
            self.step(lr)
        else:
            if regularized:  # the penalty's gradient is added once per step, below
                value = value + model.regularization(add_grads=False)
            self._accumulate(shard.weight)
            if last_of_step:
                self._take_accumulated()
                if regularized:
                    model.regularization(add_grads=True)
                self.step(lr)
        return value, out, shard.rows

    def _accumulate(self, weight: int) -> None:
        grads = self.model.flat_grads
        if self._summed is None:
            self._summed = B.xp.zeros_like(grads)
        self._summed += grads * grads.dtype.type(weight)
        self._summed_rows += weight

    def _take_accumulated(self) -> None:
        """flat_grads <- sum_k n_k g_k / sum_k n_k, and the sum starts again."""
        grads = self.model.flat_grads
        B.xp.divide(self._summed, grads.dtype.type(max(self._summed_rows, 1)), out=grads)
        self._summed[...] = 0
        self._summed_rows = 0

    def _batch_size(self, n: int) -> int:
        bs = self.cfg.batch_size
        return n if isinstance(bs, str) else min(int(bs), n)

    def _gather(self, x, idx, key):
        """x[idx] into a reused host buffer (full batches), moved to the device; each array of named data."""
        if isinstance(x, dict):
            return {k: self._gather(v, idx, f"{key}.{k}") for k, v in x.items()}
        buf = self._buffers.get((key, len(idx)))
        if buf is None or buf.dtype != x.dtype:
            buf = self._buffers[(key, len(idx))] = np.empty((len(idx), *x.shape[1:]), dtype=x.dtype)
        np.take(x, idx, axis=0, out=buf)
        return buf

    # -- one epoch ----------------------------------------------------------------------------------
    def run_epoch(self, x, y) -> dict:
        """One pass over (x, y), or the rest of it after a mid-epoch resume; {} when stopped between batches."""
        n = n_rows(x)
        bs = self._batch_size(n)
        if self.progress is None:
            if not self.cfg.shuffle:
                order = np.arange(n)
            elif hasattr(x, "epoch_order"):  # streamed rows (data.streaming.Rows) may shuffle in chunk order
                order = x.epoch_order(self.data_rng)
            else:
                order = self.data_rng.permutation(n)
            self.progress = EpochProgress(order, bs)
        self.check_progress(n)
        prog, epoch = self.progress, self.state.epoch
        n_batches = math.ceil(n / bs)
        lr = self.schedule.rate(epoch, n_batches - 1, n_batches)  # logged: the rate of the epoch's last step
        t0 = time.perf_counter()
        running, seen, first = _RunningLoss(prog.losses), 0, prog.batch
        regularized = self.model.has_regularization()
        for b in range(prog.batch, n_batches):
            # a stop is honoured where a step has just ended, so no accumulated gradient is left behind
            if b % self.accumulate == 0 and self.hooks.should_stop is not None and self.hooks.should_stop():
                return {}
            last_of_step = (b + 1) % self.accumulate == 0 or b == n_batches - 1
            value, out, rows = self._batch(
                x,
                y,
                prog.order[b * bs : (b + 1) * bs],
                self.schedule.rate(epoch, b, n_batches),
                last_of_step,
                regularized,
            )
            prog.losses.append(value * len(rows))
            if len(self.heads.heads) > 1 and out is not None:
                prog.parts.add(self._parts, len(rows))
            if self.metric_names and out is not None:
                prog.preds.append(out)
                prog.rows.append(rows)
                if getattr(self.hooks.augment, "joint", False):
                    prog.targets.append(self._moved_targets)
            prog.batch = b + 1
            if self.hooks.between_batches is not None:
                self.hooks.between_batches()
            if self.hooks.on_batch is not None:
                seen += len(rows)
                self.hooks.on_batch(
                    BatchProgress(epoch + 1, b + 1, n_batches, seen, t0, lambda n=max(seen, 1): running.total() / n)  # noqa: B008 - binds this batch's count
                )
        self.progress = None
        logs = self._epoch_logs(x, y, prog, epoch, lr, n_batches)
        seconds, rows_run = time.perf_counter() - t0, n - min(first * bs, n)  # a resumed epoch runs only the rest
        logs.update(seconds=seconds, samples_per_second=rows_run / seconds if seconds > 0 else 0.0)
        logs.update(self.strategy.epoch_logs())
        return logs

    def check_progress(self, n: int) -> None:
        """A mid-epoch resume needs the epoch it stopped in: the same rows, in batches of the same size."""
        prog, bs = self.progress, self._batch_size(n)
        if prog is not None and (len(prog.order) != n or prog.batch_size != bs):
            raise CheckpointError(
                f"the checkpoint stopped inside epoch {self.state.epoch + 1}, over "
                f"{len(prog.order)} rows in batches of {prog.batch_size}; this run has {n} rows "
                f"in batches of {bs}: resume with the same data and train.batch_size"
            )

    def _epoch_logs(self, x, y, prog: EpochProgress, epoch: int, lr: float, n_batches: int) -> dict:
        """The finished epoch's loss (NaN/inf checked, the batch named) and metrics over every rank's rows."""
        n, strategy = n_rows(x), self.strategy
        strategy.end_epoch(self)
        # one host read per epoch
        losses_host = host_losses(prog.losses, self.model.dtype).astype(np.float64)
        bad = np.nonzero(~np.isfinite(losses_host))[0]
        if len(bad) and self.cfg.stop_on_nan:
            raise TrainingDiverged(
                f"training diverged: loss is {losses_host[bad[0]]} at epoch {epoch + 1}, "
                f"batch {bad[0] + 1} of {n_batches}"
            )
        logs = {}
        if self.metric_names:
            p, done = self.epoch_outputs(prog)
            logs.update(self._metrics(p, device_targets(self._epoch_targets(prog, y, done))))
        totals = strategy.reduce(np.array([losses_host.sum(), n / strategy.size]))
        logs["loss"] = float((totals[0] + prog.carried_loss) / max(totals[1], 1))
        logs.update(prog.parts.logs(self.heads, strategy.reduce))  # each output's loss, as Keras's <name>_loss
        logs["lr"] = lr
        return logs

    def epoch_outputs(self, prog: EpochProgress):
        """The epoch's outputs so far and their rows, over every rank (batches before a resume first)."""
        parts = [prog.carried] if prog.carried is not None else []
        if prog.preds or self.strategy.size > 1:  # a rank with no rows still takes part in the gather
            dtype = self.model.dtype
            p = B.xp.concatenate(prog.preds) if prog.preds else B.xp.zeros((0, *self.heads.width()), dtype)
            rows = np.concatenate(prog.rows) if prog.rows else np.zeros(0, np.int64)
            parts.append((self.strategy.gather(p), self.strategy.gather(rows)))  # the same metrics on all ranks
        return B.xp.concatenate([B.asarray(a) for a, _ in parts]), np.concatenate([r for _, r in parts])

    def _epoch_targets(self, prog: EpochProgress, y, rows: np.ndarray):
        """The targets the epoch's outputs answer: y[rows], or, where masks moved with their images (joint
        augmentation), each batch's moved masks, gathered over the ranks as the outputs are (the batches before
        a mid-epoch resume keep y[rows]: their moved masks are not saved)."""
        if not getattr(self.hooks.augment, "joint", False):
            return take(y, rows)
        mine = np.concatenate(prog.targets) if prog.targets else np.zeros((0, *y.shape[1:]), y.dtype)
        before = len(prog.carried[1]) if prog.carried is not None else 0
        return np.concatenate([y[rows[:before]], np.asarray(B.to_numpy(self.strategy.gather(mine)))])

    def _metrics(self, p, y) -> dict:
        return self.heads.metrics(p, y)

    def evaluate(self, x, y, batch_size: int = 1024) -> dict:
        """Loss (with the regularisation term, as in training) and every metric in inference mode."""
        return evaluate_model(
            self.model,
            self.loss,
            x,
            y,
            self.metric_names,
            self.task,
            self.n_classes,
            self.decode,
            batch_size,
            heads=self.heads,
        )

    # -- whole run ----------------------------------------------------------------------------------
    def fit(self, x, y, epochs: int, x_val=None, y_val=None, on_epoch_end=None) -> TrainState:
        """Train until ``epochs`` epochs have run in total (counting resumed ones) or early stopping."""
        # overflow on the way to a NaN loss is expected: the NaN check reports it as one error, so NumPy's
        # RuntimeWarnings (with a source line each) would only repeat it
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            return self._fit(x, y, epochs, x_val, y_val, on_epoch_end)

    def _fit(self, x, y, epochs, x_val, y_val, on_epoch_end) -> TrainState:
        while self.state.epoch < epochs and not (self.early and self.early.stopped):
            logs = self.run_epoch(x, y)
            if not logs:
                break  # stopped between batches: ``progress`` says where
            if x_val is not None and n_rows(x_val):
                with ema_swapped(self.optimizer, self.model.flat_params):  # use_ema: validate what is saved
                    logs.update({f"val_{k}": v for k, v in self.evaluate(x_val, y_val).items()})
            self.state.epoch += 1
            for k, v in logs.items():
                self.state.history.setdefault(k, []).append(v)
            self.schedule.end_epoch(logs)
            is_best = self.early.update(self.state.epoch, logs) if self.early else False
            if on_epoch_end is not None:
                on_epoch_end(self.state.epoch, logs, is_best)
        return self.state

    # -- state for checkpoints and resume (nnctl.trainer_state) --------------------------------------
    def snapshot(self) -> dict:
        """Host copy of everything needed to resume exactly here (``trainer_state.snapshot``)."""
        return trainer_state.snapshot(self)

    def restore(self, snap: dict) -> None:
        """Continue from a ``snapshot()`` (``trainer_state.restore``)."""
        trainer_state.restore(self, snap)


class _RunningLoss:
    """Sum of the (sample-weighted) batch losses so far, summed on the device and read only when asked for.

    Each call adds only the batches since the previous one, so a bar refreshed a few times per second
    costs a few small device reductions and host reads per second, whatever the batch rate.
    """

    def __init__(self, weighted_losses: list):
        self.values, self.done, self.sum = weighted_losses, 0, 0.0

    def total(self) -> float:
        new = self.values[self.done :]
        if new:
            self.sum += float(B.to_numpy(B.xp.stack([B.xp.asarray(v) for v in new]).sum()))
            self.done = len(self.values)
        return self.sum
