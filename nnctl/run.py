"""The library entry points behind the CLI verbs, in one place: a facade over the modules that do the work.

- ``session``: ``train`` (one training session: trainer, checkpoints, signals, run folder);
- ``resume``: checkpoints <-> trainer snapshots, ``--resume auto``, the spec stored in a checkpoint;
- ``inference``: ``restore``, ``evaluate``, ``predict``, ``evaluation_data`` from a checkpoint alone;
- ``assemble``: the model built for a dataset, its loss and optimizer.

They emit events (plain dicts) through ``emit`` and return results; they never print or exit.
"""

from __future__ import annotations

from nnctl.assemble import check_targets, make_loss, make_optimizer, model_for_data
from nnctl.inference import Restored, evaluate, evaluation_data, predict, predict_named, restore
from nnctl.resume import model_differences, snapshot_from_checkpoint, stored_spec, write_checkpoint
from nnctl.session import Session, train
from nnctl.session_base import MAX_EPOCHS, MAX_SEED, Signals, check_before_work

__all__ = [
    "MAX_EPOCHS",
    "MAX_SEED",
    "Restored",
    "Session",
    "Signals",
    "check_before_work",
    "check_targets",
    "evaluate",
    "evaluation_data",
    "make_loss",
    "make_optimizer",
    "model_differences",
    "model_for_data",
    "predict",
    "predict_named",
    "restore",
    "snapshot_from_checkpoint",
    "stored_spec",
    "train",
    "write_checkpoint",
]
