"""The training loop: shuffle, batch, forward, loss, backward, gradient exchange, optimizer step.

It emits per-epoch logs through a callback and never prints. Its whole state (weights, optimizer
slots and step, schedule, early stopping, epoch counter, data-order and dropout RNG states, history)
is captured by ``snapshot()`` after each epoch, so a resumed run continues bit-identically on the CPU.

Data parallelism is two small hooks: ``world = (rank, size)`` makes each rank take its slice of
every global batch (gradients scaled by its share of the batch), and ``grad_hook(flat_grads)`` sums
them across ranks before the step; ``reduce_hook`` sums per-epoch statistics. Random draws
(augmentation, dropout) go through ``RowShare``: each rank draws for the whole global batch and keeps
its rows, so N ranks train as 1 process and keep equal generator states.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from nnctl import backend as B
from nnctl import losses, metrics
from nnctl.callbacks import EarlyStopping
from nnctl.errors import TrainingDiverged
from nnctl.graph import Model
from nnctl.optimizers import Optimizer, ema_swapped
from nnctl.rowshare import RowShare
from nnctl.schedules import Schedule


@dataclass
class Hooks:
    grad_hook: object = None  # flat_grads -> None, sums gradients across ranks in place
    reduce_hook: object = None  # host float64 array -> summed array across ranks
    world: tuple[int, int] = (0, 1)
    should_stop: object = None  # () -> bool, checked between batches (SIGINT)
    between_batches: object = None  # () -> None, e.g. SIGUSR1 checkpoint requests
    augment: object = None  # (x_batch, rng) -> x_batch, training batches only
    gather_hook: object = None  # this rank's rows -> every rank's rows, so training metrics cover the epoch
    epoch_logs: object = None  # () -> dict merged into each epoch's logs (allreduce_seconds)
    agree_stop: object = None  # local stop flag -> the flag all ranks agree on (run.train wires it)
    sync_rngs: object = None  # generator states -> the same states on every rank, at each epoch end
    on_batch: object = None  # BatchProgress -> None after every batch (progress bars); reads nothing itself


@dataclass
class BatchProgress:
    """Where an epoch stands after a batch; ``mean_loss()`` reads the device, so callers throttle it."""

    epoch: int  # 1-based, counting resumed epochs
    batch: int  # batches done in this epoch
    batches: int
    samples: int  # this rank's samples done in this epoch
    started: float  # time.perf_counter() when the epoch began
    mean_loss: object  # () -> float: mean training loss over the batches so far (one host read)


@dataclass
class TrainState:
    epoch: int = 0  # epochs finished
    history: dict = field(default_factory=dict)  # name -> list per epoch


class Trainer:
    """Fit a built ``Model`` with a loss, optimizer and the spec's training options."""

    def __init__(self, model: Model, loss: losses.Loss, optimizer: Optimizer, train_cfg: dict, task: str,
                 n_classes: int, seed: int, schedule: Schedule | None = None, early: EarlyStopping | None = None,
                 hooks: Hooks | None = None, decode=None):
        self.model, self.loss, self.optimizer, self.cfg = model, loss, optimizer, train_cfg
        self.task, self.n_classes = task, n_classes
        self.metric_names = [metrics.METRICS.canonical(m) for m in train_cfg.get("metrics", [])]
        self.schedule = schedule or Schedule(optimizer.learning_rate)
        self.early = early
        self.hooks = hooks or Hooks()
        self.decode = decode  # maps regression outputs/targets back to original units for metrics
        self.data_rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(3,))))
        self.aug_rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(4,))))
        self.row_shares = []  # under data parallelism: every generator a batch draws from, as a RowShare
        if self.hooks.world[1] > 1:
            self.aug_rng = RowShare(self.aug_rng)
            for node in model.nodes:
                node.layer.rng = RowShare(node.layer.rng)
            self.row_shares = [self.aug_rng, *(node.layer.rng for node in model.nodes)]
        self.state = TrainState()
        act = model.output_activation()
        self.fused = act is not None and act in loss.fused
        if isinstance(loss, losses.Perceptron) and not self.fused:
            raise ValueError("the perceptron loss needs a final 'step' activation")
        self.optimizer.init_slots(model.flat_params.size, model.dtype)
        self._buffers: dict = {}
        self.class_weight = None  # device (n_classes,) loss weights of train.class_weight (losses.class_weights)

    # -- one step -----------------------------------------------------------------------------------
    def loss_and_grad(self, xb, yb, scale: float = 1.0, weights=None):
        """Forward and backward on one batch (``weights``: per-sample loss weights or None); returns the
        device loss (before regularisation)."""
        model = self.model
        y = model.forward(xb, training=True)
        if self.fused:
            value, grad = self.loss.fused_value_grad(model.logits(), yb, model.output_activation(), weights)
        else:
            value, grad = self.loss.value_grad(y, yb, weights)
        if scale != 1.0:
            grad = grad * grad.dtype.type(scale)
        model.backward(grad, skip_output_activation=self.fused)
        return value, y

    def _batch_size(self, n: int) -> int:
        bs = self.cfg.get("batch_size", 32)
        return n if isinstance(bs, str) else min(int(bs), n)

    def _gather(self, x, idx, key):
        """x[idx] into a reused host buffer (full batches), moved to the device."""
        buf = self._buffers.get((key, len(idx)))
        if buf is None or buf.dtype != x.dtype:
            buf = self._buffers[(key, len(idx))] = np.empty((len(idx), *x.shape[1:]), dtype=x.dtype)
        np.take(x, idx, axis=0, out=buf)
        return buf

    # -- one epoch ----------------------------------------------------------------------------------
    def run_epoch(self, x, y) -> dict:
        model, opt = self.model, self.optimizer
        n = len(x)
        bs = self._batch_size(n)
        rank, size = self.hooks.world
        if not self.cfg.get("shuffle", True):
            order = np.arange(n)
        elif hasattr(x, "epoch_order"):  # streamed rows (data.streaming.Rows) may shuffle in chunk order
            order = x.epoch_order(self.data_rng)
        else:
            order = self.data_rng.permutation(n)
        epoch = self.state.epoch
        n_batches = math.ceil(n / bs)
        lr = self.schedule.rate(epoch, n_batches - 1, n_batches)  # logged: the rate of the epoch's last step
        batch_losses = []
        preds = []
        targets = []
        t0 = time.perf_counter()
        regularized = model.has_regularization()
        running, seen = _RunningLoss(batch_losses), 0
        for b in range(n_batches):
            if self.hooks.should_stop is not None and self.hooks.should_stop():
                return {}
            idx = order[b * bs:(b + 1) * bs]
            glob = len(idx)
            lo, hi = rank * glob // size, (rank + 1) * glob // size  # this rank's share of the global batch
            for rng in self.row_shares:  # draw for all glob rows, keep [lo:hi]: the numbers 1 process draws
                rng.share = (lo, hi, glob)
            idx = idx[lo:hi]
            if len(idx) == 0:  # fewer rows than ranks (ragged last batch): a zero gradient, still exchanged
                model.flat_grads[...] = 0
                value, out = B.xp.zeros((), dtype=model.dtype), None
            else:
                xb = self._gather(x, idx, "x")
                if self.hooks.augment is not None:
                    xb = self.hooks.augment(xb, self.aug_rng)
                xb = B.asarray(xb, dtype=model.input_dtype)
                yb = B.asarray(self._gather(y, idx, "y"))
                w = None if self.class_weight is None else self.class_weight[losses.label_ids(yb, self.task)]
                value, out = self.loss_and_grad(xb, yb, scale=len(idx) * size / glob, weights=w)
            if regularized:  # every rank adds the penalty's gradient: the exchange averages it back to once
                value = value + model.regularization(add_grads=True)
            if self.hooks.grad_hook is not None:
                self.hooks.grad_hook(model.flat_grads)
            opt.step(model.flat_params, model.flat_grads, model.slices.values(), lr=self.schedule.rate(epoch, b, n_batches))
            batch_losses.append(value * len(idx))
            if self.metric_names and out is not None:
                preds.append(out)
                targets.append(idx)  # indices, not yb: the gather buffer is reused by the next batch
            if self.hooks.between_batches is not None:
                self.hooks.between_batches()
            if self.hooks.on_batch is not None:
                seen += len(idx)
                self.hooks.on_batch(BatchProgress(epoch + 1, b + 1, n_batches, seen, t0,
                                                  lambda n=max(seen, 1): running.total() / n))
        # a rank with no rows in a (ragged last) batch skipped its draws, token_swap draws per-share rounds:
        # every rank takes the same states, so the checkpoint's (rank 0's) are every rank's
        if self.hooks.sync_rngs is not None:
            aug, layers = self.hooks.sync_rngs((self.aug_rng.bit_generator.state, self.model.rng_states()))
            self.aug_rng.bit_generator.state = aug
            self.model.set_rng_states(layers)
        # one host read per epoch: per-batch losses, checked for NaN/inf with the batch named
        losses_host = B.to_numpy(B.xp.stack([B.xp.asarray(v) for v in batch_losses])).astype(np.float64)
        totals = np.array([losses_host.sum(), n / size])
        bad = np.nonzero(~np.isfinite(losses_host))[0]
        if len(bad) and self.cfg.get("stop_on_nan", True):
            raise TrainingDiverged(f"training diverged: loss is {losses_host[bad[0]]} at epoch {epoch + 1}, "
                                   f"batch {bad[0] + 1} of {n_batches}")
        logs = {}
        if self.metric_names:
            p, rows = B.xp.concatenate(preds), np.concatenate(targets)
            if self.hooks.gather_hook is not None:  # every rank's rows: the same metrics on all ranks
                p, rows = self.hooks.gather_hook(p), self.hooks.gather_hook(rows)
            logs.update(self._metrics(p, B.asarray(y[rows])))
        if self.hooks.reduce_hook is not None:
            totals = self.hooks.reduce_hook(totals)
        logs["loss"] = float(totals[0] / max(totals[1], 1))
        seconds = time.perf_counter() - t0
        logs.update(lr=lr, seconds=seconds, samples_per_second=n / seconds if seconds > 0 else 0.0)
        if self.hooks.epoch_logs is not None:
            logs.update(self.hooks.epoch_logs())
        return logs

    def _metrics(self, p, y) -> dict:
        if not self.metric_names:
            return {}
        p = self.loss.probabilities(p)
        if self.decode is not None and self.task == "regression":
            p, y = self.decode(p), self.decode(y)
        return metrics.compute(self.metric_names, p, y, self.task, self.n_classes)

    def evaluate(self, x, y, batch_size: int = 1024) -> dict:
        """Loss (with the regularisation term, as in training) and every metric in inference mode."""
        model = self.model
        total, outs, ys = 0.0, [], []
        for start in range(0, len(x), batch_size):
            xb = B.asarray(x[start:start + batch_size], dtype=model.input_dtype)
            yb = B.asarray(y[start:start + batch_size])
            out = model.forward(xb, training=False)
            if self.fused:
                value = self.loss.fused_value_grad(model.logits(), yb, model.output_activation())[0]
            else:
                value = self.loss.value(out, yb)
            total = total + value * len(xb)
            outs.append(out)
            ys.append(yb)
            model._caches = []
        logs = {"loss": float(total) / max(len(x), 1)}
        if model.has_regularization():
            logs["loss"] += float(model.regularization(add_grads=False))
        logs.update(self._metrics(B.xp.concatenate(outs), B.xp.concatenate(ys)))
        return logs

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
                break  # stopped between batches: the state is still that of the last finished epoch
            if x_val is not None and len(x_val):
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

    # -- state for checkpoints and resume -----------------------------------------------------------
    def snapshot(self) -> dict:
        """Host copy of everything needed to resume exactly after the last finished epoch."""
        return {
            "flat_params": B.to_numpy(self.model.flat_params).copy(),
            "frozen": {k: B.to_numpy(v).copy() for k, v in self.model.named_params().items()
                       if k not in self.model.slices},  # parameters outside the flat buffer
            "model_state": {k: B.to_numpy(v).copy() for k, v in self.model.named_state().items()},
            "slots": {k: B.to_numpy(v).copy() for k, v in self.optimizer.slots.items()},
            "iterations": self.optimizer.iterations,
            "epoch": self.state.epoch,
            "history": {k: list(v) for k, v in self.state.history.items()},
            "schedule": self.schedule.state(),
            "early": self.early.state() if self.early else None,
            "data_rng": self.data_rng.bit_generator.state,
            "aug_rng": self.aug_rng.bit_generator.state,
            "layer_rngs": self.model.rng_states(),
        }

    def restore(self, snap: dict) -> None:
        xp = B.xp
        self.model.flat_params[...] = B.asarray(snap["flat_params"])
        params = self.model.named_params()
        for k, v in snap.get("frozen", {}).items():
            params[k][...] = B.asarray(v)
        state = self.model.named_state()
        for k, v in snap["model_state"].items():
            state[k][...] = B.asarray(v)
        for k, v in snap["slots"].items():
            self.optimizer.slots[k] = xp.asarray(v).copy()
        self.optimizer.iterations = int(snap["iterations"])
        self.state.epoch = int(snap["epoch"])
        self.state.history = {k: list(v) for k, v in snap["history"].items()}
        self.schedule.load_state(snap["schedule"])
        if self.early and snap.get("early"):
            self.early.load_state(snap["early"])
        self.data_rng.bit_generator.state = snap["data_rng"]
        self.aug_rng.bit_generator.state = snap["aug_rng"]
        self.model.set_rng_states(snap["layer_rngs"])


class _RunningLoss:
    """Sum of the (sample-weighted) batch losses so far, summed on the device and read only when asked for.

    Each call adds only the batches since the previous one, so a bar refreshed a few times per second
    costs a few small device reductions and host reads per second, whatever the batch rate.
    """

    def __init__(self, weighted_losses: list):
        self.values, self.done, self.sum = weighted_losses, 0, 0.0

    def total(self) -> float:
        new = self.values[self.done:]
        if new:
            self.sum += float(B.to_numpy(B.xp.stack([B.xp.asarray(v) for v in new]).sum()))
            self.done = len(self.values)
        return self.sum

