"""One training session: trainer + checkpoints + signals + run folder, from a validated spec to the ``done`` event.

Signals (docs/distributed.md):
- SIGINT stops after the current batch and keeps the last finished epoch (exit 130);
- SIGTERM, and SIGUSR1 with ``train.checkpoint_on_signal``, write a checkpoint at the next batch
  boundary, mid-epoch if need be, and end with ``Preempted`` (exit 143) so a job script can requeue;
- SIGUSR1 otherwise asks for a checkpoint of the last finished epoch and training goes on.
"""

from __future__ import annotations

import pathlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from nnctl import backend as B
from nnctl import fs, guards, losses
from nnctl.anomaly import fit_threshold
from nnctl.assemble import device_decoder, for_checkpoint, make_heads, make_loss, make_optimizer, model_for_data
from nnctl.callbacks import EarlyStopping
from nnctl.checkpoint import Checkpoint, load_into
from nnctl.data import Dataset, load_dataset
from nnctl.errors import Interrupted, Preempted, SpecError, TrainingDiverged
from nnctl.graph import rows
from nnctl.resume import (
    ResumeFrom,
    check_setup,
    find_auto,
    model_differences,
    resume_weights_only,
    snapshot_from_checkpoint,
    write_checkpoint,
)
from nnctl.schedules import Schedule
from nnctl.session_base import GO, INTERRUPT, PREEMPT, Signals, check_before_work
from nnctl.spec_model import ModelFacts, Spec
from nnctl.spec_sections import TrainSection
from nnctl.strategy import Local
from nnctl.train import Hooks, Trainer

if TYPE_CHECKING:
    from nnctl.tensorboard import TensorBoardWriter

Emit = Callable[[dict], None]


def _noop(event: dict) -> None:
    pass


def train(
    spec: Spec,
    emit: Emit = _noop,
    device: str = "auto",
    resume: str | None = None,
    init_from: str | None = None,
    hooks: Hooks | None = None,
    is_writer: bool = True,
    strategy: Local | None = None,
    dataset: Dataset | None = None,
    force: bool = False,
    weights_only: bool = False,
) -> dict:
    """Train ``spec``; write its checkpoint and run folder; returns the final ``done`` event.

    ``resume`` is a checkpoint path, or "auto": the newest readable checkpoint of this run, else a
    fresh start. Outputs are checked before the data is loaded, and the checkpoint path stays locked
    for the run (a second run on it is refused). ``dataset`` replaces the spec's data (a k-fold split,
    nnctl.kfold). A checkpoint of another model at the output path is refused unless ``force``
    (nnctl.guards), as is a folder without room for the checkpoint. ``weights_only`` takes only the
    resumed checkpoint's weights (nnctl.resume.resume_weights_only)."""
    if not is_writer:
        session = Session(spec, emit, hooks, is_writer, strategy)
        session.weights_only = weights_only
        return session.run(device, resume, init_from, dataset)
    check_before_work(spec)
    with fs.run_lock(spec.output.checkpoint):
        session = Session(spec, emit, hooks, is_writer, strategy)
        session.weights_only = weights_only
        session.replaces = guards.existing_model(spec, resume, force)
        return session.run(device, resume, init_from, dataset)


class Session:
    """A run of the trainer over one spec: what is kept (last, best), when it is written, and how it ends."""

    def __init__(
        self,
        spec: Spec,
        emit: Emit = _noop,
        hooks: Hooks | None = None,
        is_writer: bool = True,
        strategy: Local | None = None,
    ):
        self.spec, self.emit, self.is_writer = spec, emit, is_writer
        self.hooks = hooks or Hooks()
        self.strategy = strategy or Local()
        self.tcfg: TrainSection = spec.train
        self.ckpt_path: str = spec.output.checkpoint
        self.signals = Signals(self.tcfg.checkpoint_on_signal)
        self.agreed = GO  # the stop level every rank agreed on
        self.step_checkpoint_due = False
        self.tb: TensorBoardWriter | None = None
        self.t_start = time.perf_counter()
        self.replaces: dict | None = None  # weight shapes of the checkpoint this run may replace (guards)
        self.weights_only = False  # --resume-weights-only: take only the resumed checkpoint's weights
        self.set_keys = spec.set_keys  # keys --set changed: --resume accepts those changes
        self.facts: ModelFacts | None = None  # what the build learned from the data, for the checkpoint

    # -- setting up ---------------------------------------------------------------------------------
    def run(self, device: str, resume: str | None, init_from: str | None, dataset: Dataset | None = None) -> dict:
        B.use(device)
        self.t_start = time.perf_counter()
        self.ds = dataset if dataset is not None else load_dataset(self.spec)
        for note in self.ds.prep.notes:  # what the data layer inferred (categorical columns)
            self.emit({"event": "note", "message": note})
        self.trainer = self._trainer(self.ds, init_from)
        if self.is_writer:  # before the first epoch: the model's shapes and size are known now
            if self.replaces is not None:
                guards.check_same_shapes(self.ckpt_path, self.replaces, self.trainer.model)
            guards.check_free_space(self.ckpt_path, guards.checkpoint_bytes(self.trainer.model, self.trainer.optimizer))
        if resume:
            self._resume(resume)
        self.start_epoch = self.trainer.state.epoch
        self.last = self.trainer.snapshot()
        early = self.trainer.early
        self.best = self.last if self.trainer.state.epoch == 0 or not early else None
        self.best_epoch = early.best_epoch if early else None
        if self.tcfg.tensorboard and self.is_writer:
            from nnctl.tensorboard import TensorBoardWriter

            self.tb = TensorBoardWriter(self.tcfg.tensorboard)
        try:
            return self._fit()
        finally:
            if self.tb is not None:
                self.tb.close()

    def _trainer(self, ds: Dataset, init_from: str | None) -> Trainer:
        spec, tcfg = self.spec, self.tcfg
        from nnctl.memory import check_fits_for_data

        check_fits_for_data(spec, ds)  # a model too large for memory is refused before it is allocated
        model = model_for_data(spec, ds)
        self.spec, self.facts = for_checkpoint(spec, ds)  # the stored spec names the data's input shape
        init_from = init_from or spec.model.init_from
        if init_from:
            from nnctl.interop.keras_weights import init_arrays  # an nnctl checkpoint or a Keras file

            weights, state = init_arrays(init_from, model)
            loaded, skipped = load_into(model, weights, state, str(init_from), strict=False)
            self.emit({"event": "init_from", "checkpoint": str(init_from), "loaded": loaded, "skipped": skipped})
        model.to_device()
        loss, optimizer = make_loss(spec), make_optimizer(spec)
        schedule = Schedule(
            optimizer.learning_rate,
            total_epochs=int(tcfg.epochs),
            **(tcfg.lr_schedule.to_plain() if tcfg.lr_schedule is not None else {}),
        )
        early = EarlyStopping(**tcfg.early_stopping.to_plain()) if tcfg.early_stopping is not None else None
        if early and early.monitor.startswith("val_") and ds.x_val is None:
            raise SpecError(
                f"{spec.source}: train.early_stopping.monitor: {early.monitor!r} needs "
                f"validation data; set data.validation (a path or {{split = 0.2}})"
            )
        hooks = self.hooks
        hooks.should_stop, hooks.between_batches, hooks.on_step = self.should_stop, self.between_batches, self.on_step
        if spec.data.augment.present():  # keys given: augmentation asked for
            from nnctl.data.augment import build_augmenter

            try:
                hooks.augment = build_augmenter(spec.data.augment, ds.prep.kind, ds.x_train.shape[1:])
            except SpecError as exc:  # name the spec file, as validation errors do
                raise SpecError(f"{spec.source}: {exc}") from None
        trainer = Trainer(
            model,
            loss,
            optimizer,
            tcfg,
            ds.prep.task,
            ds.prep.n_classes(model.output_shape[-1]),
            spec.seed,
            schedule,
            early,
            hooks,
            device_decoder(ds.prep),
            self.strategy,
            heads=make_heads(spec, model),
        )
        if tcfg.class_weight is not None:  # Keras's class_weight: scales the training loss only
            try:
                trainer.class_weight = B.asarray(
                    losses.class_weights(
                        tcfg.class_weight,
                        losses.label_ids(ds.y_train, ds.prep.task),
                        trainer.n_classes,
                        ds.prep.classes,
                    )
                )
            except ValueError as exc:
                raise SpecError(f"{spec.source}: {exc}") from None
        trainer.sample_weight = ds.w_train  # data.sample_weight, sliced like x_train
        return trainer

    def _resume(self, resume: str) -> None:
        if resume == "auto":
            found = find_auto(self.ckpt_path)
            for note in found.notes if found else []:
                self.emit({"event": "note", "message": note})
            if found is None:
                self.emit(
                    {
                        "event": "note",
                        "message": f"--resume auto: no checkpoint of this run at {self.ckpt_path} yet; starting fresh",
                    }
                )
                return
        else:
            found = ResumeFrom(resume, Checkpoint(resume), [])
        diff = model_differences(self.spec.to_dict(), found.checkpoint.spec)  # in the stored form
        if diff:
            raise SpecError(
                f"--resume {found.path}: the spec's model differs from the checkpoint's: " + "; ".join(diff)
            )
        if self.weights_only:  # fine-tuning: its weights, this run's optimizer, schedule and epoch 0
            resume_weights_only(found, self.trainer.model, self.emit)
            return
        check_setup(found.path, self.spec.to_dict(), found.checkpoint.spec, self.set_keys)
        self.trainer.restore(snapshot_from_checkpoint(found.checkpoint, self.trainer))
        self.trainer.check_progress(rows(self.ds.x_train))
        progress = self.trainer.progress
        self.emit(
            {
                "event": "resume",
                "checkpoint": found.path,
                "epoch": self.trainer.state.epoch,
                **({"batch": progress.batch} if progress is not None else {}),
            }
        )

    # -- the trainer's hooks ------------------------------------------------------------------------
    def should_stop(self) -> bool:
        """At a step boundary: whether to stop (under MPI every rank stops at the same batch)."""
        self.agreed = self.strategy.agree_stop(self.signals.level)
        return self.agreed != GO

    def on_step(self, iterations: int) -> None:
        every = self.tcfg.checkpoint_every_steps
        if every and iterations % every == 0:
            self.step_checkpoint_due = True  # written once the batch is booked (between_batches)

    def between_batches(self) -> None:
        if self.step_checkpoint_due:
            self.step_checkpoint_due = False
            self._write_position("steps")
        if self.signals.save_requested:
            self.signals.save_requested = False
            self.write(self.ckpt_path, self._for_use(self.last), self.best_epoch)
            self.emit(
                {"event": "checkpoint", "reason": "SIGUSR1", "checkpoint": self.ckpt_path, "epoch": self.last["epoch"]}
            )

    def on_epoch_end(self, epoch: int, logs: dict, is_best: bool) -> None:
        self.last = self.trainer.snapshot()
        if is_best:
            self.best, self.best_epoch = self.last, epoch
        self.emit({"event": "epoch", "epoch": epoch, "epochs": int(self.tcfg.epochs), **logs})
        stem = pathlib.Path(self.ckpt_path)
        if self.tcfg.save_every and epoch % self.tcfg.save_every == 0:
            self.write(stem.with_name(f"{stem.stem}.epoch{epoch:03d}.h5"), self.last, self.best_epoch)
        if self.tcfg.save_best and is_best:
            self.write(stem.with_name(f"{stem.stem}.best.h5"), self.last, epoch)
        if self.tb is not None:
            self.tb.epoch(epoch, logs, self.trainer.model)

    # -- writing ------------------------------------------------------------------------------------
    def write(self, path, weights_snap: dict, best_epoch: int | None, last: dict | None = None) -> None:
        if self.is_writer:
            write_checkpoint(
                path, self.spec, self.trainer, self.ds.prep, last or self.last, weights_snap, best_epoch, self.facts
            )

    def _for_use(self, snap: dict) -> dict:
        """The weights a checkpoint offers for use: the best epoch's when early stopping restores it."""
        early = self.trainer.early
        return self.best if self.best is not None and early and early.restore_best else snap

    def _write_position(self, reason: str) -> dict:
        """A checkpoint of this very batch boundary (every rank snapshots; rank 0 writes)."""
        here = self.trainer.snapshot()
        self.write(self.ckpt_path, self._for_use(here), self.best_epoch, last=here)
        position = here["position"]
        self.emit(
            {
                "event": "checkpoint",
                "reason": reason,
                "checkpoint": self.ckpt_path,
                "epoch": here["epoch"],
                **({"batch": position["batch"]} if position is not None else {}),
            }
        )
        return here

    # -- the run and its endings --------------------------------------------------------------------
    def _fit(self) -> dict:
        ds, trainer = self.ds, self.trainer
        with self.signals.installed():  # also while the final checkpoint is written: a Ctrl-C then sets ``stop``
            try:
                trainer.fit(ds.x_train, ds.y_train, int(self.tcfg.epochs), ds.x_val, ds.y_val, self.on_epoch_end)
            except BaseException as exc:
                self._keep_last_good(exc)
                raise
            if self.agreed == PREEMPT:  # stopped at a batch boundary for it (a SIGTERM after the last one: done)
                self._preempted()
            if self._interrupted() and self.last["epoch"] == self.start_epoch:  # never clobber what is there
                kept = f"; {self.ckpt_path} is unchanged" if pathlib.Path(self.ckpt_path).exists() else ""
                raise Interrupted(f"interrupted before epoch {self.start_epoch + 1} finished: nothing written{kept}")
            done = self._finish()
        if self._interrupted():  # also by a Ctrl-C during the final write, which completed first
            self.emit(done)
            stopped = Interrupted(f"interrupted: wrote {self.ckpt_path} with epoch {self.last['epoch']}")
            stopped.checkpoint = self.ckpt_path  # the CLI adds the command that continues
            raise stopped
        return done

    def _interrupted(self) -> bool:
        """Whether a Ctrl-C stopped the run: agreed by every rank, or seen here after the last vote."""
        return (self.agreed or self.signals.level) == INTERRUPT

    def _keep_last_good(self, exc: BaseException) -> None:
        """Diverged or crashed: keep the last good epoch, and say what is on disk, and only that."""
        kept = self.last["epoch"] > 0 and self.is_writer
        if kept:
            self.write(self.ckpt_path, self.last, self.best_epoch)
        if isinstance(exc, TrainingDiverged):
            exc.checkpoint = self.ckpt_path if kept else None
            exc.args = (
                f"{exc}; "
                + (
                    f"wrote {self.ckpt_path} with epoch {self.last['epoch']}, the last good one"
                    if kept
                    else "no epoch had finished, so no checkpoint was written"
                ),
            )

    def _preempted(self) -> None:
        here = self._write_position(self.signals.name or "SIGTERM")
        position = here["position"]
        where = (
            f"epoch {here['epoch']}" if position is None else f"epoch {here['epoch'] + 1} at batch {position['batch']}"
        )
        exc = Preempted(
            f"terminated by {self.signals.name or 'a signal on another rank'}: wrote {self.ckpt_path} in {where}"
        )
        exc.checkpoint = self.ckpt_path
        raise exc

    def _finish(self) -> dict:
        """Write the final checkpoint and the run folder; the ``done`` event."""
        from nnctl.runlog import default_run_dir, overfit_summary, write_run

        early, last = self.trainer.early, self.last
        use_best = early is not None and early.restore_best and self.best is not None
        self.write(self.ckpt_path, self.best if use_best else last, self.best_epoch if use_best else None)
        if self.is_writer and self.tcfg.anomaly_quantile is not None:  # of the weights just written
            info = fit_threshold(self.ckpt_path, self.ds.x_train, self.tcfg.anomaly_quantile)
            self.emit(
                {
                    "event": "note",
                    "message": f"anomaly threshold {info['threshold']:.6g} (quantile "
                    f"{info['quantile']:g} of {info['rows']} training rows' errors) "
                    f"stored in {self.ckpt_path}",
                }
            )
        weights_epoch = self.best_epoch if use_best else last["epoch"]
        summary = overfit_summary(last["history"], weights_epoch)
        run_dir = self.spec.output.run_dir or str(default_run_dir(self.ckpt_path))
        final = {
            k: v[weights_epoch - 1] for k, v in last["history"].items() if weights_epoch and len(v) >= weights_epoch
        }
        done = {
            "event": "done",
            "checkpoint": self.ckpt_path,
            "run_dir": run_dir,
            "epochs_run": last["epoch"],
            "weights_epoch": weights_epoch,
            "stopped_early": bool(early and early.stopped),
            "seconds": time.perf_counter() - self.t_start,
            "metrics": final,
            "summary": summary,
        }
        if self.is_writer:
            write_run(run_dir, self.spec, last["history"], summary)
        return done
