"""A GAN training session: a generator G and a discriminator D, each with its own optimizer, trained in turn.

This module builds the two models from a spec and runs the session (``GanSession``, as ``session.Session``
does for one model: checks, run lock, signals, --resume, checkpoints, run folder, the same events); the
updates themselves are ``gan_trainer.GanTrainer``, the losses ``gan_losses``. A conditional GAN
(``model.generator.classes``) feeds G [z, onehot(y)] and D the sample with one-hot label channels, so
both stay ordinary single-input layer lists; ``sample`` draws requested classes in rows. Logged per epoch: d_loss, g_loss and D's
accuracy on real (s > 0) and fake (s < 0) samples. Both models, both optimizers and every RNG live in
one checkpoint (``gan_checkpoint``), so ``nnctl train --resume`` continues bit-identically on the CPU.
Sampling (``generate``) undoes the checkpoint's preprocessing, so samples are in the data's units.
"""

from __future__ import annotations

import pathlib
import time

import numpy as np

from nnctl import backend as B
from nnctl import fs
from nnctl.checkpoint import Checkpoint
from nnctl.data import load_dataset
from nnctl.data.preprocess import Preprocessor
from nnctl.errors import DataError, Interrupted, Preempted, SpecError, TrainingDiverged
from nnctl.gan_checkpoint import load_generator, read_snapshot, write_checkpoint
from nnctl.gan_models import (
    build_generator,
    build_pair,
    built,
    classes_of,
    discriminator_input,
    discriminator_seed,
    generator_of,
    make_optimizer,
)
from nnctl.gan_spec import is_gan
from nnctl.gan_trainer import GanTrainer, draw_latent, with_labels
from nnctl.graph import Model
from nnctl.session_base import Signals, check_before_work
from nnctl.spec_model import ModelFacts, Spec
from nnctl.spec_sections import GanTrain, Generator, TrainSection
from nnctl.strategy import DataParallel, Local
from nnctl.train import Hooks

# output activations whose range the real data must lie in
RANGES = {"sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0)}


def _noop(event: dict) -> None:
    pass


def _gan(train: TrainSection) -> GanTrain:
    gan = train.gan
    assert gan is not None  # a GAN spec: the validator fills train.gan
    return gan


def class_labels(spec: Spec, y) -> np.ndarray | None:
    """A conditional GAN's training labels as int64 in 0..classes-1 (None when unconditional); one line if not."""
    k = classes_of(spec)
    if not k:
        return None
    where = f"{spec.data.train}: labels"
    fix = f"model.generator.classes = {k} needs integer class labels 0..{k - 1}"
    y = None if y is None else np.asarray(y)
    if y is None or y.ndim > 2 or (y.ndim == 2 and y.shape[1] != 1) or not len(y):
        shape = "none" if y is None else f"shape {list(y.shape)}"
        raise DataError(f"{where}: expected one class label per sample ({fix}), found {shape}")
    y = y.reshape(len(y))
    if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
        bad = y[~(np.isfinite(y) & (y == np.round(y)))][0]
        raise DataError(f"{where}: expected integer class labels ({fix}), found {bad!r}")
    labels = y.astype(np.int64)
    found = np.unique(labels)
    if labels.min() < 0 or labels.max() >= k or len(found) != k:
        raise DataError(
            f"{where}: expected {k} classes 0..{k - 1} (model.generator.classes), found {len(found)} "
            f"distinct labels from {labels.min()} to {labels.max()}"
        )
    return labels


def check_range(spec: Spec, g: Model, x: np.ndarray) -> None:
    """Real samples outside the generator's output range (a sigmoid against 0..255 pixels) let D win at once."""
    act = g.output_activation()
    if act not in RANGES or not len(x):
        return
    lo, hi = RANGES[act]
    x_lo, x_hi = float(x.min()), float(x.max())
    if x_lo < lo - 1e-6 or x_hi > hi + 1e-6:
        fix = 'set data.rescale = "1/255" for 0..255 pixels' if act == "sigmoid" else "rescale the data to [-1, 1]"
        raise DataError(
            f"{spec.data.train}: real samples range over [{x_lo:g}, {x_hi:g}] but the generator's "
            f"{act} output lies in [{lo:g}, {hi:g}], so the discriminator wins at once; {fix}"
        )


def _check_rounds(spec: Spec, n: int) -> None:
    """An epoch must hold at least one round of d_steps batches, or the generator never steps."""
    bs = spec.train.batch_size
    batches = 1 if isinstance(bs, str) else -(-n // min(int(bs), n))
    d_steps = _gan(spec.train).d_steps
    if d_steps > batches:
        raise SpecError(
            f"{spec.source}: train.gan.d_steps: {d_steps} discriminator steps per round, "
            f"but an epoch has {batches} batches of {bs}, so the generator would never step; lower "
            f"d_steps or train.batch_size"
        )


# -- the session -------------------------------------------------------------------------------------
def train(
    spec: Spec,
    emit=_noop,
    device: str = "auto",
    resume: str | None = None,
    init_from: str | None = None,
    hooks: Hooks | None = None,
    is_writer: bool = True,
    strategy: Local | None = None,
) -> dict:
    """Train a GAN spec; write its checkpoint and run folder; returns the final ``done`` event (as run.train).

    One process only: ``strategy`` must be None or ``Local`` (data parallelism is refused)."""
    source = spec.source
    if init_from:
        raise SpecError(f"--init-from: not supported for a GAN spec ({source}); resume a GAN checkpoint with --resume")
    if not is_writer or isinstance(strategy, DataParallel):
        raise SpecError(f'{source}: train.mode = "gan" trains in one process; run it without mpiexec or --distributed')
    check_before_work(spec)
    with fs.run_lock(spec.output.checkpoint):
        return GanSession(spec, emit, hooks).run(device, resume)


class GanSession:
    """One GAN training run: data, the two models and their trainer, signals, checkpoints and the run folder.

    The state the old closures shared lives on the instance: ``last`` is the snapshot of the last finished
    epoch (what every checkpoint written during or after a failure holds)."""

    def __init__(self, spec: Spec, emit=_noop, hooks: Hooks | None = None):
        self.spec, self.emit, self.hooks = spec, emit, hooks or Hooks()
        self.tcfg = spec.train
        self.epochs = int(self.tcfg.epochs)
        self.ckpt_path = spec.output.checkpoint
        self.signals = Signals()
        self.t_start = time.perf_counter()

    def run(self, device: str, resume: str | None) -> dict:
        """Load, build, train and write; the ``done`` event (raises Interrupted/Preempted when stopped)."""
        spec = self.spec
        B.use(device)
        self.t_start = time.perf_counter()
        self.ds = ds = load_dataset(spec, with_test=False)
        g, d = build_pair(spec, ds.input_shape)
        check_range(spec, g, ds.x_train)
        _check_rounds(spec, len(ds.x_train))
        self.labels = class_labels(spec, ds.y_train)
        self.facts = ModelFacts(sample_shape=list(ds.input_shape))  # what generate and --resume need without the data
        g.to_device()
        d.to_device()
        gcfg = _gan(self.tcfg)
        self.trainer = GanTrainer(
            g,
            d,
            make_optimizer(gcfg.generator_optimizer),
            make_optimizer(gcfg.discriminator_optimizer),
            self.tcfg,
            generator_of(spec),
            spec.seed,
            self.hooks,
        )
        if resume:
            self.trainer.restore(read_snapshot(resume, spec, self.trainer, self.facts))
            self.emit({"event": "resume", "checkpoint": str(resume), "epoch": self.trainer.epoch})
        self.start_epoch = self.trainer.epoch
        self.last = self.trainer.snapshot()
        self.hooks.should_stop = lambda: self.signals.stop
        self.hooks.between_batches = self.between_batches
        with self.signals.installed():  # also while the final checkpoint is written: a Ctrl-C then sets ``stop``
            done = self._fit()
        if self.signals.stop:
            self._stopped(done)
        return done

    def write(self, path, snap: dict) -> None:
        write_checkpoint(path, self.spec, self.trainer, self.ds.prep, snap, self.facts)

    def between_batches(self) -> None:
        """SIGUSR1 asks for a checkpoint of the last finished epoch, written between batches."""
        if self.signals.save_requested:
            self.signals.save_requested = False
            self.write(self.ckpt_path, self.last)
            self.emit(
                {"event": "checkpoint", "reason": "SIGUSR1", "checkpoint": self.ckpt_path, "epoch": self.last["epoch"]}
            )

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        self.last = self.trainer.snapshot()
        self.emit({"event": "epoch", "epoch": epoch, "epochs": self.epochs, **logs})
        if self.tcfg.save_every and epoch % self.tcfg.save_every == 0:
            stem = pathlib.Path(self.ckpt_path)
            self.write(stem.with_name(f"{stem.stem}.epoch{epoch:03d}.h5"), self.last)

    def _fit(self) -> dict:
        """Train; on a failure keep the last good epoch; the ``done`` event of the final checkpoint."""
        ckpt_path, last_epoch = self.ckpt_path, lambda: self.last["epoch"]
        try:
            self.trainer.fit(self.ds.x_train, self.epochs, self.on_epoch_end, self.labels)
        except BaseException as exc:
            kept = last_epoch() > 0
            if kept:  # keep the last good epoch (diverged or crashed)
                self.write(ckpt_path, self.last)
            if isinstance(exc, TrainingDiverged):
                exc.checkpoint = ckpt_path if kept else None
                exc.args = (
                    f"{exc}; "
                    + (
                        f"wrote {ckpt_path} with epoch {last_epoch()}, the last good one"
                        if kept
                        else "no epoch had finished, so no checkpoint was written"
                    ),
                )
            raise
        if self.signals.stop and last_epoch() == self.start_epoch:  # nothing new to save: never clobber
            kept_note = f"; {ckpt_path} is unchanged" if pathlib.Path(ckpt_path).exists() else ""
            raise Interrupted(f"interrupted before epoch {self.start_epoch + 1} finished: nothing written{kept_note}")
        return _finish(self.spec, ckpt_path, self.write, self.last, self.t_start)

    def _stopped(self, done: dict) -> None:
        """A stop request that ended training after a checkpoint was written: the done event, then the raise."""
        self.emit(done)
        ckpt_path, epoch = self.ckpt_path, self.last["epoch"]
        if self.signals.name:  # SIGTERM: the documented requeue code, 143 (docs/distributed.md)
            stopped: Interrupted = Preempted(f"terminated by {self.signals.name}: wrote {ckpt_path} with epoch {epoch}")
        else:
            stopped = Interrupted(f"interrupted: wrote {ckpt_path} with epoch {epoch}")
        stopped.checkpoint = ckpt_path  # the CLI adds the command that continues
        raise stopped


def diagnosis(history: dict, loss: str = "non_saturating") -> str:
    """What the last epochs' logs say about the usual failure modes (README: GANs, when training fails).

    A WGAN critic's score has no zero point, so its accuracies say nothing and no note is given."""
    real, fake = history.get("d_real_accuracy", []), history.get("d_fake_accuracy", [])
    if not real or loss == "wgan_gp":
        return ""
    if real[-1] > 0.95 and fake[-1] > 0.95:
        return (
            f"the discriminator is winning (it tells real from fake {real[-1]:.0%} / {fake[-1]:.0%} of the time): "
            f"the generator's gradient is fading; lower the discriminator's learning rate, raise "
            f"train.gan.g_steps or label_smoothing"
        )
    if fake[-1] < 0.05 and real[-1] < 0.5:
        return (
            f"the discriminator scores {1 - fake[-1]:.0%} of fakes as real: it has collapsed or the generator "
            f"found a blind spot; look at the samples (nnctl generate) for mode collapse"
        )
    return ""


def _finish(spec: Spec, ckpt_path: str, write, last: dict, t_start: float) -> dict:
    """Write the final checkpoint and the run folder; the ``done`` event."""
    from nnctl.runlog import default_run_dir, write_run

    write(ckpt_path, last)
    history, epochs_run = last["history"], last["epoch"]
    final = {k: v[-1] for k, v in history.items() if v}
    summary = {
        "epochs": epochs_run,
        "checkpoint_epoch": epochs_run,
        **{f"final_{k}": v for k, v in final.items() if k not in ("seconds", "samples_per_second")},
    }
    note = diagnosis(history, _gan(spec.train).loss)
    if note:
        summary["note"] = note
    run_dir = spec.output.run_dir or str(default_run_dir(ckpt_path))
    write_run(run_dir, spec, history, summary)
    return {
        "event": "done",
        "checkpoint": ckpt_path,
        "run_dir": run_dir,
        "epochs_run": epochs_run,
        "weights_epoch": epochs_run,
        "stopped_early": False,
        "seconds": time.perf_counter() - t_start,
        "metrics": final,
        "summary": summary,
    }


# -- sampling ------------------------------------------------------------------------------------------
def sample(generator: Model, latent: Generator, n: int, seed: int, labels=None) -> tuple[np.ndarray, np.ndarray | None]:
    """``n`` samples G(z) (host array, the model's units) and their labels, z from a generator seeded with ``seed``.

    Conditional: the requested ``labels`` (default every class) in rows of c = ceil(n / len(labels)) samples,
    row r all of class labels[r] and column j the same z_j in every row (the style held, the class changed);
    the first n in row order. One label is c = n draws, so sample i has the same z with or without it."""
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed)))
    classes = int(latent.classes or 0)
    if not classes:
        return generator.predict(draw_latent(rng, latent.latent, n, int(latent.latent_dim), generator.dtype)), None
    wanted = list(range(classes)) if labels is None else [int(k) for k in labels]
    per_row = -(-n // len(wanted))
    z = draw_latent(rng, latent.latent, per_row, int(latent.latent_dim), generator.dtype)
    z_all = np.concatenate([z] * len(wanted))[:n]
    y = np.repeat(np.asarray(wanted, dtype=np.int64), per_row)[:n]
    return generator.predict(with_labels(z_all, y, classes)), y


def to_data_units(x: np.ndarray, prep) -> np.ndarray:
    """Model-space samples back through the checkpoint's preprocessing: x s + m, then / rescale (float64)."""
    x = np.asarray(x, dtype=np.float64)
    if prep.x_shift is not None:
        x = x * prep.x_scale + prep.x_shift
    if prep.rescale:
        x = x / prep.rescale
    return x


def check_labels(path, spec: Spec, labels) -> None:
    """Requested labels must be a conditional checkpoint's classes; one line otherwise."""
    k = classes_of(spec)
    if labels is None:
        return
    if not k:
        raise SpecError(
            f"--label: {path} holds an unconditional GAN (no model.generator.classes); sample it "
            f"without --label/--labels"
        )
    if not len(labels):
        raise SpecError("--labels: expected at least one class label, found none")
    bad = [int(v) for v in labels if not 0 <= int(v) < k]
    if bad:
        raise SpecError(f"--label: expected a class 0..{k - 1} of {path}, found {bad[0]}")


def generate(path, n: int = 64, seed: int = 0, device: str = "auto", labels=None) -> tuple[np.ndarray, dict]:
    """``n`` samples of a GAN checkpoint's generator in the training data's units, and what was sampled.

    ``labels``: the classes to draw (conditional GAN; default all of them), see ``sample``."""
    ck, g, spec = load_generator(path, device)
    check_labels(path, spec, labels)
    try:
        prep = Preprocessor.from_arrays(ck.prep_arrays)
    except (KeyError, ValueError, TypeError) as exc:
        raise SpecError(f"{path}: checkpoint preprocessing is incomplete ({exc})") from None
    raw, y = sample(g, generator_of(spec), n, seed, labels)
    x = to_data_units(raw, prep)
    info = {
        "checkpoint": str(path),
        "samples": n,
        "seed": seed,
        "shape": list(x.shape[1:]),
        "epoch": ck.epoch,
        "kind": prep.kind,
    }
    if y is not None:
        wanted = list(range(classes_of(spec))) if labels is None else [int(k) for k in labels]
        info.update(labels=[int(v) for v in y], rows=wanted, per_row=-(-n // len(wanted)))
    return x, info


def is_gan_run(spec: Spec, resume: str | None = None) -> bool:
    """True for a GAN spec; a --resume checkpoint of the other kind is refused."""
    wanted = is_gan(spec)
    if wanted and resume == "auto":
        raise SpecError(f"{spec.source}: --resume auto: a GAN run resumes from a named checkpoint (--resume CKPT)")
    if resume and resume != "auto" and pathlib.Path(resume).is_file():
        stored = is_gan(Checkpoint(resume).spec)
        if stored != wanted:
            kinds = {True: 'a GAN (train.mode = "gan")', False: "an ordinary model"}
            raise SpecError(
                f"--resume {resume}: the checkpoint holds {kinds[stored]} but the spec trains {kinds[wanted]}"
            )
    return wanted


def models_for_check(spec: Spec) -> list[tuple[str, Model]]:
    """Both models built without data (D on G's output shape) for ``nnctl check`` and ``summary``."""
    g = build_generator(spec)
    shape = g.output_shape  # the data's sample shape: training refuses a generator that differs
    d = built(spec, "discriminator", discriminator_input(spec, shape), discriminator_seed(spec.seed))
    return [("generator", g), ("discriminator", d)]
