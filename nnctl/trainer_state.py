"""A Trainer's whole state as host data (``snapshot``) and back (``restore``), so a resumed run continues
bit-identically on the CPU, also from the middle of an epoch. ``resume.py`` maps a snapshot to and from the
arrays of a checkpoint; this module knows only the trainer.

A snapshot is a dict of host values:
  flat_params   (P,) the model's flat buffer: every trainable parameter
  frozen        {layer/param: array} parameters outside it (layers with ``trainable = false``)
  model_state   {layer/name: array} saved, untrained state (BatchNorm's moving statistics)
  slots         {slot: (P,)} the optimizer's slots, laid out as the flat buffer; ``iterations`` its step count
  epoch         epochs finished; ``history`` {name: [value per epoch]}
  schedule      the learning-rate schedule's state; ``early`` early stopping's (None without it)
  data_rng, aug_rng, layer_rngs   bit-generator states: data order, augmentation, each layer's (dropout)
  position      the epoch in progress (None between epochs): ``order``, ``batch`` (done), ``batch_size``,
                ``losses`` (per batch, loss * rows, every rank's), ``carried_loss``, and, when metrics are
                logged, ``preds`` and ``rows`` (the batches' outputs and the rows they answer)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from nnctl import backend as B
from nnctl.outputs import PartSums

if TYPE_CHECKING:
    from nnctl.train import Trainer


@dataclass
class EpochProgress:
    """The epoch in progress: its order, batches done, and what its logs need from them."""

    order: np.ndarray
    batch_size: int
    batch: int = 0  # batches done
    losses: list = field(default_factory=list)  # per batch: loss * rows, on the device
    preds: list = field(default_factory=list)  # per batch: outputs, when metrics are logged
    rows: list = field(default_factory=list)  # per batch: the rows' indices (the gather buffer is reused)
    carried_loss: float = 0.0  # data parallel resume: the loss sum of the batches before the checkpoint
    carried: tuple | None = None  # resume: (outputs, rows) of every rank's batches before the checkpoint
    targets: list = field(default_factory=list)  # per batch: augmented masks (segmentation), which outputs answer
    parts: PartSums = field(default_factory=PartSums)  # several outputs: each one's loss over the batches


def host_losses(values: list, dtype) -> np.ndarray:
    """Per-batch device losses as one host array (one read); empty when no batch ran."""
    if not values:
        return np.zeros(0, dtype)
    return B.to_numpy(B.xp.stack([B.xp.asarray(v) for v in values]))


def snapshot(trainer: Trainer) -> dict:
    """Host copy of everything needed to resume exactly here (after an epoch, or mid-epoch after a stop).

    Mid-epoch under data parallelism every rank must call it (the batch outputs are gathered)."""
    model = trainer.model
    return {
        "flat_params": B.to_numpy(model.flat_params).copy(),
        "frozen": {k: B.to_numpy(v).copy() for k, v in model.named_params().items() if k not in model.slices},
        "model_state": {k: B.to_numpy(v).copy() for k, v in model.named_state().items()},
        "slots": {k: B.to_numpy(v).copy() for k, v in trainer.optimizer.slots.items()},
        "iterations": trainer.optimizer.iterations,
        "epoch": trainer.state.epoch,
        "history": {k: list(v) for k, v in trainer.state.history.items()},
        "schedule": trainer.schedule.state(),
        "early": trainer.early.state() if trainer.early else None,
        "data_rng": trainer.data_rng.bit_generator.state,
        "aug_rng": trainer.aug_rng.bit_generator.state,
        "layer_rngs": model.rng_states(),
        "position": position(trainer),
    }


def position(trainer: Trainer) -> dict | None:
    """The epoch in progress as host arrays: order, batches done, batch losses, outputs and their rows."""
    prog = trainer.progress
    if prog is None:
        return None
    out = {
        "order": prog.order.copy(),
        "batch": prog.batch,
        "batch_size": prog.batch_size,
        "losses": trainer.strategy.gather(host_losses(prog.losses, trainer.model.dtype)),
        "carried_loss": prog.carried_loss,
    }
    if trainer.metric_names and (prog.preds or prog.carried is not None or trainer.strategy.size > 1):
        p, rows = trainer.epoch_outputs(prog)
        out["preds"], out["rows"] = B.to_numpy(p), rows
    return out


def restore(trainer: Trainer, snap: dict) -> None:
    """Put a snapshot back: weights, state and optimizer slots into the model's arrays (in place: the layers
    keep their views of the flat buffer), counters, schedule, early stopping, generators and the position."""
    model = trainer.model
    model.flat_params[...] = B.asarray(snap["flat_params"])
    params = model.named_params()
    for k, v in snap.get("frozen", {}).items():
        params[k][...] = B.asarray(v)
    state = model.named_state()
    for k, v in snap["model_state"].items():
        state[k][...] = B.asarray(v)
    for k, v in snap["slots"].items():
        trainer.optimizer.slots[k] = B.xp.asarray(v).copy()
    trainer.optimizer.iterations = int(snap["iterations"])
    trainer.state.epoch = int(snap["epoch"])
    trainer.state.history = {k: list(v) for k, v in snap["history"].items()}
    trainer.schedule.load_state(snap["schedule"])
    if trainer.early and snap.get("early"):
        trainer.early.load_state(snap["early"])
    trainer.data_rng.bit_generator.state = snap["data_rng"]
    trainer.aug_rng.bit_generator.state = snap["aug_rng"]
    model.set_rng_states(snap["layer_rngs"])
    trainer.progress = progress_from(trainer, snap.get("position"))


def progress_from(trainer: Trainer, pos: dict | None) -> EpochProgress | None:
    """The epoch in progress from a snapshot's ``position``: this rank's batches so far, or under data
    parallelism every rank's, summed once, beside this rank's share of the rest."""
    if pos is None:
        return None
    prog = EpochProgress(np.asarray(pos["order"], dtype=np.int64), int(pos["batch_size"]), int(pos["batch"]))
    losses_host = np.asarray(pos["losses"])
    if trainer.strategy.size == 1:  # the same per-batch values in the same order: the same epoch loss
        prog.losses = [B.xp.asarray(v) for v in losses_host]
    else:
        prog.carried_loss = float(pos.get("carried_loss", 0.0)) + float(losses_host.astype(np.float64).sum())
    if "preds" in pos and len(pos["rows"]):
        prog.carried = (B.asarray(pos["preds"]), np.asarray(pos["rows"], dtype=np.int64))
    return prog
