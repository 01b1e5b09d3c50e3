"""Checkpoints <-> trainer snapshots, and which checkpoint a run resumes from (``--resume CKPT`` or ``auto``).

A snapshot (``Trainer.snapshot``) holds flat host arrays; a checkpoint holds arrays by layer name.
``write_checkpoint`` stores one snapshot's weights for use and another's full state for resume;
``snapshot_from_checkpoint`` is its inverse. A mid-epoch snapshot's position (the epoch's order,
batches done, batch losses and outputs so far) is stored under /resume/position.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from nnctl import spec as spec_mod
from nnctl.checkpoint import Checkpoint, load_into, named_from_flat, save
from nnctl.data.preprocess import Preprocessor
from nnctl.errors import CheckpointError, SpecError
from nnctl.fields import REQUIRED, params_of
from nnctl.graph import Model
from nnctl.losses import LOSSES
from nnctl.optimizers import OPTIMIZERS
from nnctl.registry import UnknownName
from nnctl.spec_model import ModelFacts, Spec
from nnctl.train import Trainer

INFO_KEYS = ("epoch", "schedule", "early", "data_rng", "aug_rng", "layer_rngs", "iterations")


class ResumeFrom(NamedTuple):
    """The checkpoint a run continues from, and why others were passed over."""

    path: str
    checkpoint: Checkpoint
    notes: list[str]  # one per newer candidate that could not be read


def _weights_of(model: Model, snap: dict, shapes: dict) -> tuple[dict, dict]:
    """Named weights (flat buffer and frozen layers) and layer state of a trainer snapshot."""
    weights = named_from_flat(snap["flat_params"], model.slices, shapes)
    weights.update(snap["frozen"])
    return weights, dict(snap["model_state"])


def write_checkpoint(
    path,
    spec: Spec,
    trainer: Trainer,
    prep: Preprocessor,
    last: dict,
    weights_snap: dict,
    best_epoch: int | None,
    facts: ModelFacts | None = None,
) -> None:
    """Checkpoint with ``weights_snap``'s weights for use, and ``last`` (if different) for --resume."""
    model = trainer.model
    shapes = {k: tuple(v.shape) for k, v in model.named_params().items()}
    slots = {name: named_from_flat(arr, model.slices, shapes) for name, arr in last["slots"].items()}
    if weights_snap["iterations"] and "ema" in weights_snap["slots"]:  # use_ema: the average is the model (Keras)
        weights_snap = {**weights_snap, "flat_params": weights_snap["slots"]["ema"]}
    weights, state = _weights_of(model, weights_snap, shapes)
    info = {k: last[k] for k in INFO_KEYS}
    info["history"] = last["history"]
    position = last.get("position")
    arrays = {}
    if position is not None:
        info["position"] = {k: position[k] for k in ("batch", "batch_size", "carried_loss")}
        arrays = {f"epoch/{k}": position[k] for k in ("order", "losses", "preds", "rows") if k in position}
    resume_weights, resume_state = _weights_of(model, last, shapes)
    name, config = spec.train.optimizer.type, dict(spec.train.optimizer.params)
    save(
        path,
        spec=spec.to_dict(),
        weights=weights,
        state=state,
        prep_arrays=prep.to_arrays(),
        history=last["history"],
        seed=spec.seed,
        epoch=last["epoch"],
        best_epoch=best_epoch,
        optimizer={"type": name, "iterations": last["iterations"], "config": config, "slots": slots},
        resume={"weights": resume_weights, "state": resume_state, "info": info, "position": arrays},
        facts=facts.to_dict() if facts is not None else None,
    )


def snapshot_from_checkpoint(ckpt: Checkpoint, trainer: Trainer) -> dict:
    """The --resume state stored in a checkpoint, in the trainer's snapshot form."""
    if ckpt.resume is None:
        raise SpecError(f"{ckpt.path}: holds no resume state")
    model = trainer.model
    info = ckpt.resume["info"]
    load_into(model, ckpt.resume["weights"], ckpt.resume["state"], str(ckpt.path))
    slots = {}
    for slot, named in ckpt.optimizer["slots"].items():
        flat = np.zeros(model.flat_params.size, dtype=model.dtype)
        for key, sl in model.slices.items():
            if key not in named:
                raise SpecError(f"{ckpt.path}: /optimizer/slots/{slot}/{key} is missing")
            flat[sl] = named[key].ravel()
        slots[slot] = flat
    snap = trainer.snapshot()
    snap.update(
        slots=slots,
        iterations=info["iterations"],
        epoch=info["epoch"],
        history=info["history"],
        schedule=info["schedule"],
        early=info["early"],
        data_rng=info["data_rng"],
        aug_rng=info["aug_rng"],
        layer_rngs=info["layer_rngs"],
        position=_position(ckpt, info),
    )
    return snap


def _position(ckpt: Checkpoint, info: dict) -> dict | None:
    """A stored mid-epoch position, checked for the arrays it needs (outputs only once a batch has run)."""
    pos = info.get("position")
    if pos is None:
        return None
    stored = (ckpt.resume or {}).get("position", {})
    arrays = {k.split("/", 1)[1]: v for k, v in stored.items()}
    missing = [k for k in ("order", "losses") if k not in arrays]
    missing += [k for k in ("batch", "batch_size") if not isinstance(pos.get(k), int)]
    if missing:
        raise CheckpointError(
            f"{ckpt.path}: /resume/position: the mid-epoch position is incomplete (missing {', '.join(missing)})"
        )
    return {
        **arrays,
        "batch": pos["batch"],
        "batch_size": pos["batch_size"],
        "carried_loss": float(pos.get("carried_loss", 0.0)),
    }


def model_differences(a: dict, b: dict) -> list[str]:
    """What differs between two specs' models (layers, input shape, dtype)."""
    out = []
    if a.get("dtype") != b.get("dtype"):
        out.append(f"dtype {b.get('dtype')!r} -> {a.get('dtype')!r}")
    if a["model"].get("input_shape") != b["model"].get("input_shape"):
        out.append(f"model.input_shape {b['model'].get('input_shape')} -> {a['model'].get('input_shape')}")
    la, lb = a["model"]["layers"], b["model"]["layers"]
    if len(la) != len(lb):
        out.append(f"{len(lb)} layers -> {len(la)} layers")
    for i, (x, y) in enumerate(zip(la, lb)):
        if x != y:
            keys = sorted(k for k in set(x) | set(y) if x.get(k) != y.get(k))
            out.append(f"model.layers[{i}]: " + ", ".join(f"{k} {y.get(k)!r} -> {x.get(k)!r}" for k in keys))
    return out


# train keys that change what a resumed run computes (epochs may grow: that is what resuming is for)
SETUP_KEYS = ("optimizer", "loss", "batch_size", "gradient_accumulation", "shuffle", "lr_schedule", "class_weight")


def _named_in_full(family: str, value) -> dict | None:
    """A registry entry as ``{type: canonical name, every keyword: its value or default}`` (``"adam"`` and
    ``{type = "Adam", learning_rate = 0.001}`` are the same), or None for a value no registry knows."""

    registry: Any = OPTIMIZERS if family == "optimizer" else LOSSES
    try:
        name, config = spec_mod._named_config(value)
        name = registry.canonical(name)
        cls = registry.get(name)
    except (UnknownName, KeyError, TypeError, AttributeError):
        return None
    full = {k: f.default for k, f in params_of(cls).items() if f.default is not REQUIRED}
    full.update(json.loads(json.dumps(config)))  # tuples and lists alike, as the stored spec reads back
    return {"type": name, **full}


def setup_differences(current: dict, stored: dict) -> dict[str, str]:
    """``{field: "stored -> current"}`` for each part of the training setup (``SETUP_KEYS``; the optimizer
    and loss key by key, defaults filled in) where the spec a run resumes with differs from the checkpoint's."""
    out: dict[str, str] = {}
    found = stored.get("train")
    ours: dict = current.get("train") or {}
    theirs: dict = found if isinstance(found, dict) else {}
    for key in SETUP_KEYS:
        if key not in theirs:  # a checkpoint written before nnctl had the key
            continue
        a, b = ours.get(key), theirs[key]
        if key in ("optimizer", "loss"):
            fa, fb = _named_in_full(key, a), _named_in_full(key, b)
            if fa is not None and fb is not None and fa["type"] != fb["type"]:
                out[f"train.{key}.type"] = f"{fb['type']!r} -> {fa['type']!r}"
                continue
            if fa is not None and fb is not None:
                for k in ["type", *sorted((set(fa) | set(fb)) - {"type"})]:
                    if fa.get(k) != fb.get(k):
                        out[f"train.{key}.{k}"] = f"{fb.get(k)!r} -> {fa.get(k)!r}"[:120]
                continue
        if a != b:
            out[f"train.{key}"] = f"{b!r} -> {a!r}"[:120]
    return out


def refused_changes(changes: dict[str, str], set_keys) -> dict[str, str]:
    """The setup changes a plain ``--resume`` refuses: all but those the command line asked for by name
    (``--set train.optimizer.learning_rate=...``, or ``--set train.optimizer=...`` for all its keys): a
    change in the spec file is silent, one on the command line is not."""

    def asked(field: str) -> bool:
        return any(field == k or field.startswith(k + ".") for k in set_keys)

    return {f: v for f, v in changes.items() if not asked(f)}


def check_setup(path: str, current: dict, stored: dict, set_keys=()) -> None:
    """Refuse to resume ``path`` with a training setup that differs from its stored one, unless each change
    was asked for on the command line (``set_keys``, the dotted keys of ``--set``)."""
    refused = refused_changes(setup_differences(current, stored), set_keys)
    if refused:
        shown = "; ".join(f"{k} {v}" for k, v in list(refused.items())[:4])
        more = f" (and {len(refused) - 4} more)" if len(refused) > 4 else ""
        raise SpecError(
            f"--resume {path}: the training setup differs from the checkpoint's: {shown}{more}; "
            f"resuming would not continue the same run: use the checkpoint's settings, change a "
            f"setting explicitly with --set, or pass --resume-weights-only to fine-tune from its "
            f"weights with the new setup (epochs count from 0)"
        )


def resume_weights_only(found: ResumeFrom, model: Model, emit) -> None:
    """``--resume-weights-only``: the checkpoint's weights for use (and layer state) into ``model``, every
    array required; the optimizer, its slots, the schedule, history and epoch counter stay this run's own."""
    ck = found.checkpoint
    load_into(model, ck.weights, ck.state, str(found.path))
    emit(
        {
            "event": "note",
            "message": f"--resume-weights-only: weights of {found.path} (epoch {ck.epoch}); the "
            f"optimizer, schedule and epochs start fresh",
        }
    )


def candidates(checkpoint: str) -> list[pathlib.Path]:
    """A run's checkpoints that hold resume state: the checkpoint and its .epochNNN copies, newest first."""
    path = pathlib.Path(checkpoint)
    found = [path] if path.is_file() else []
    if path.parent.is_dir():
        found += [p for p in path.parent.glob(f"{path.stem}.epoch*.h5") if p.is_file()]
    return sorted(found, key=lambda p: (p.stat().st_mtime_ns, p.name), reverse=True)


def find_auto(checkpoint: str) -> ResumeFrom | None:
    """``--resume auto``: the newest readable checkpoint of the run with resume state, or None (start fresh)."""
    notes = []
    for path in candidates(checkpoint):
        try:
            ck = Checkpoint(path)
        except CheckpointError as exc:
            notes.append(f"--resume auto: skipped {path}: {exc}")
            continue
        if ck.resume is None:
            notes.append(f"--resume auto: skipped {path}: it holds no resume state")
            continue
        return ResumeFrom(str(path), ck, notes)
    return None


def stored_spec(path: str, overrides: Sequence[str] = ()) -> Spec:
    """The spec stored in checkpoint ``path``, with ``--set`` overrides, validated again."""
    stored = Checkpoint(path).spec
    raw = {k: v for k, v in stored.items() if not k.startswith("_")}
    for item in overrides:
        spec_mod.apply_override(raw, item)
    spec = spec_mod.validate(raw, f"{path}: /spec", base_dir=pathlib.Path(os.path.abspath(path)).parent)
    return dataclasses.replace(spec, source=str(path))
