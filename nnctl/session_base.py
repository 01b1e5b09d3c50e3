"""What every training session shares, the supervised one (``session``) and the GAN's (``gan``): the signal
handling and the checks made before any data is read. Both import it; ``session`` and ``run`` re-export it."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from typing import TYPE_CHECKING

from nnctl import fs
from nnctl.errors import SpecError, quote

if TYPE_CHECKING:
    from nnctl.spec_model import Spec

GO, INTERRUPT, PREEMPT = 0, 1, 2  # stop levels; under MPI the ranks agree on the highest one asked for


class Signals:
    """What the signals asked for: ``level`` (GO, INTERRUPT, PREEMPT) and SIGUSR1 checkpoint requests."""

    def __init__(self, usr1_preempts: bool = False):
        self.level = GO
        self.name = ""  # the signal that asked for the preemption
        self.save_requested = False
        self.usr1_preempts = usr1_preempts

    @property
    def stop(self) -> bool:
        return self.level != GO

    def _on_int(self, signum, frame) -> None:
        if self.level == INTERRUPT:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.level = max(self.level, INTERRUPT)

    def _on_preempt(self, signum, frame) -> None:
        self.level, self.name = PREEMPT, signal.Signals(signum).name

    def _on_usr1(self, signum, frame) -> None:
        if self.usr1_preempts:
            self._on_preempt(signum, frame)
        else:
            self.save_requested = True

    @contextlib.contextmanager
    def installed(self) -> Iterator[Signals]:
        old: dict = {}
        wanted = [(signal.SIGINT, self._on_int), (signal.SIGTERM, self._on_preempt)]
        if hasattr(signal, "SIGUSR1"):
            wanted.append((signal.SIGUSR1, self._on_usr1))
        try:
            for sig, handler in wanted:
                old[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread (e.g. a test runner thread): no handlers
            pass
        try:
            yield self
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)


MAX_SEED = 2**32 - 1
MAX_EPOCHS = 1_000_000


def check_before_work(spec: Spec) -> None:
    """Fail before any data is read: seed and epochs in range, checkpoint, run and TensorBoard folders writable."""
    from nnctl.runlog import default_run_dir

    source = spec.source
    seed, epochs = spec.seed, spec.train.epochs
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise SpecError(f"{source}: seed: expected an integer from 0 to {MAX_SEED}, found {quote(seed)}")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or not 0 <= epochs <= MAX_EPOCHS:
        raise SpecError(f"{source}: train.epochs: expected an integer from 0 to {MAX_EPOCHS}, found {quote(epochs)}")
    ckpt = spec.output.checkpoint
    fs.check_output_file(ckpt, "checkpoint")
    fs.check_output_dir(spec.output.run_dir or default_run_dir(ckpt), "run folder")
    if spec.train.tensorboard:
        fs.check_output_dir(spec.train.tensorboard, "TensorBoard folder")
