"""TensorBoard event files for ``train.tensorboard``: every logged number as a scalar, every weight as a histogram.

Tags: the log names as they are (``loss``, ``val_loss``, ``accuracy``, ``lr``...) and ``<layer>/<param>``
for parameters, with the epoch (1-based) as the step. tensorboardX is an optional extra, imported
only when a spec asks for TensorBoard.
"""

from __future__ import annotations

import json
import sys

import numpy as np

from nnctl import backend as B
from nnctl.errors import SpecError


class TensorBoardWriter:
    """Writes one event file in ``logdir``; ``epoch()`` after each epoch, ``close()`` at the end."""

    def __init__(self, logdir):
        SummaryWriter = _summary_writer_class()
        self.logdir = str(logdir)
        self._writer = SummaryWriter(logdir=self.logdir)

    def epoch(self, epoch: int, logs: dict, model) -> None:
        for tag, value in logs.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self._writer.add_scalar(tag, float(value), epoch)
        for node in model.nodes:
            for name, param in node.layer.params.items():
                values = B.to_numpy(param).astype(np.float64).ravel()
                values = values[np.isfinite(values)]  # a histogram of NaNs is an error in tensorboardX
                if values.size:
                    self._writer.add_histogram(f"{node.layer.name}/{name}", values, epoch)
        # flush every epoch so a TensorBoard watching the folder sees training as it happens
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


def hparams(logdir, name: str, params: dict, metrics: dict) -> None:
    """One hparams summary (TensorBoard's HPARAMS tab) for the ``nnctl tune`` trial whose events are in ``logdir/name``.

    Values that are not numbers, strings or booleans (a choice of tables) are shown as their JSON text."""
    writer = _summary_writer_class()(logdir=str(logdir))
    try:
        shown = {k: v if isinstance(v, (bool, int, float, str)) else json.dumps(v) for k, v in params.items()}
        writer.add_hparams(shown, {k: float(v) for k, v in metrics.items()}, name=name)
    finally:
        writer.close()


def _summary_writer_class():
    """tensorboardX's SummaryWriter, imported without PyTorch.

    tensorboardX tries ``import torch`` at import time only to accept torch tensors, which nnctl never
    passes; where PyTorch is installed that import alone takes seconds, so it is blocked for the
    duration of this import (a ``None`` entry in sys.modules makes ``import torch`` raise ImportError).
    """
    block = "torch" not in sys.modules
    if block:
        sys.modules["torch"] = None  # type: ignore[assignment]  # None: the import system's "blocked" mark
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        raise SpecError("train.tensorboard: needs tensorboardX (pip install nnctl[tensorboard])") from None
    finally:
        if block and sys.modules.get("torch", 0) is None:
            del sys.modules["torch"]
    return SummaryWriter
