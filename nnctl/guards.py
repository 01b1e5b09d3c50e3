"""Checks a training run makes on its checkpoint path before it trains: another model's checkpoint is not
overwritten without ``--force``, and the folder has room for the checkpoint it will write."""

from __future__ import annotations

import os
import pathlib
import shutil
from typing import NoReturn

import numpy as np

from nnctl.checkpoint import Checkpoint
from nnctl.errors import CheckpointError, OutputError, quote
from nnctl.resume import model_differences
from nnctl.spec_model import Spec

MIB = 1 << 20
MARGIN_BYTES = 64 << 10  # HDF5 metadata, the stored spec, history and preprocessing arrays


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def existing_model(spec: Spec, resume: str | None, force: bool) -> dict | None:
    """The weight shapes of the checkpoint at the spec's output path when one is there and this run may
    replace it only if it builds the same model (``{name: shape}``), else None (no file, ``--force``, or
    ``--resume`` of that very file, or a damaged file under ``--resume auto``). Refuses now, before the data is read, a checkpoint of another spec
    name, another architecture (layers, declared input shape, dtype) or no readable nnctl checkpoint."""
    path = spec.checkpoint
    if force or not os.path.isfile(path) or (resume not in (None, "auto") and _same_file(str(resume), path)):
        return None
    try:
        ck = Checkpoint(path)
    except CheckpointError as exc:
        if resume == "auto":  # a damaged checkpoint of this run: --resume auto falls back past it
            return None
        reason = str(exc).removeprefix(f"{path}: ").split(" (")[0][:80]  # the first clause, bounded
        raise CheckpointError(
            f"{path}: exists and is not a readable nnctl checkpoint ({reason}); "
            f"pass --force to overwrite it, or --out another path"
        ) from None
    stored = ck.spec if isinstance(ck.spec, dict) else {}
    name, theirs = spec.name, stored.get("name")
    if name != theirs:
        refuse(path, f"spec {quote(theirs)}, this run is {quote(name)}")
    found = stored.get("model")
    model: dict = found if isinstance(found, dict) else {}
    if not isinstance(model.get("layers"), list):
        refuse(path, "a model without a layer list (a GAN or another kind of run)")
    ours = spec.to_dict()  # compared in the stored form, as the checkpoint holds it
    if ours["model"].get("input_shape") is None:  # taken from the data: compared by parameter shapes later
        ours["model"]["input_shape"] = model.get("input_shape")
    diff = model_differences(ours, stored)
    if diff:
        refuse(path, f"another architecture: {'; '.join(diff)[:200]}")
    return {k: tuple(np.shape(v)) for k, v in ck.weights.items()}


def check_same_shapes(path: str, stored: dict, model) -> None:
    """Refuse when the built model's parameter shapes differ from those of the checkpoint it would replace."""
    ours = {k: tuple(v.shape) for k, v in model.named_params().items()}
    for key in sorted(set(ours) | set(stored)):
        if ours.get(key) != stored.get(key):

            def show(s):
                return "absent" if s is None else list(s)

            refuse(
                path, f"another architecture: /weights/{key} {show(stored.get(key))}, this run's {show(ours.get(key))}"
            )


def refuse(path: str, what: str) -> NoReturn:
    raise CheckpointError(
        f"{path}: holds a different model ({what}); pass --force to overwrite it, or --out another path"
    )


def checkpoint_bytes(model, optimizer) -> int:
    """An upper estimate of the checkpoint's size: (parameters + optimizer slots + model state) x itemsize,
    plus a margin for metadata."""
    params = sum(int(np.prod(v.shape)) for v in model.named_params().values())
    state = sum(int(np.prod(v.shape)) for v in model.named_state().values())
    n_slots = len(optimizer.slots) or len(optimizer.slot_names) + int(bool(getattr(optimizer, "use_ema", False)))
    itemsize = max([np.dtype(v.dtype).itemsize for v in model.named_params().values()] or [4])
    return (params * (1 + n_slots) + state) * itemsize + MARGIN_BYTES


def check_free_space(path: str, need_bytes: int) -> None:
    """Refuse when the checkpoint's folder has less free space than twice ``need_bytes`` (the atomic write
    holds the temp file and the old checkpoint at once)."""
    folder = pathlib.Path(os.path.abspath(path)).parent
    need = 2 * need_bytes
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return  # the folder was checked writable; a file system without statistics is not refused
    if free < need:
        raise OutputError(
            f"{folder}: checkpoint folder has {free / MIB:.1f} MiB free; the checkpoint needs about "
            f"{need / MIB:.1f} MiB (twice its size, for the atomic write); free some space or use --out"
        )
