"""One HDF5 file per checkpoint, written atomically; the only module that uses h5py for checkpoints.

Layout (documented in docs/checkpoint.md):
  /                     attrs format="nnctl-checkpoint", format_version, nnctl_version, seed, epoch, best_epoch
  /spec                 the resolved spec as a JSON string dataset (no 64 KiB attribute limit)
  /weights/<layer>/<p>  weights used by evaluate/predict (the best epoch's when early stopping restores it)
  /state/<layer>/<s>    non-trained layer state for those weights (BatchNorm moving statistics)
  /preprocessing/<k>    normalisation statistics, class labels in order, tokenizer vocabulary, meta JSON
  /history/<name>       one float64 value per epoch for every loss, metric, lr, seconds
  /optimizer            attrs type, iterations; /optimizer/slots/<slot>/<layer>/<p>
  /resume               the last finished epoch for --resume: weights/, state/ by name, and a JSON
                        dataset with epoch, schedule, early stopping and RNG states
"""

from __future__ import annotations

import json
import pathlib

import numpy as np

from nnctl import __version__
from nnctl.errors import CheckpointError
from nnctl.fs import atomic_write  # noqa: F401 - also imported from here by older callers

FORMAT = "nnctl-checkpoint"
FORMAT_VERSION = 1


def _write_named(group, named: dict) -> None:
    for key, value in named.items():
        layer, _, param = key.partition("/")
        _dataset(group.require_group(layer), param, value)


def _read_named(group) -> dict:
    return {f"{layer}/{param}": np.asarray(group[layer][param][()]) for layer in group for param in group[layer]}


def _read_any(dataset):
    """A dataset back as an array (strings as str arrays) or a str scalar."""
    value = dataset[()]
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray) and value.dtype.kind == "O":
        return np.array([v.decode() if isinstance(v, bytes) else v for v in value.ravel()]).reshape(value.shape)
    return value


def _json(group, name, value) -> None:
    group.create_dataset(name, data=json.dumps(value))


def _dataset(group, name, value) -> None:
    """A dataset from any array; text arrays become HDF5 variable-length UTF-8 strings."""
    import h5py  # noqa: PLC0415

    value = np.asarray(value)
    if value.dtype.kind in "UO":
        group.create_dataset(name, data=value.astype(object), dtype=h5py.string_dtype())
    else:
        group.create_dataset(name, data=value)


def named_from_flat(flat: np.ndarray, slices: dict, shapes: dict) -> dict:
    return {k: flat[sl].reshape(shapes[k]) for k, sl in slices.items()}


def save(path, *, spec: dict, weights: dict, state: dict, prep_arrays: dict, history: dict, seed: int,
         epoch: int, best_epoch: int | None, optimizer: dict, resume: dict | None) -> None:
    """Write a checkpoint. ``optimizer`` = {type, iterations, config, slots: {slot: {name: array}}};
    ``resume`` = {weights, state, info} for the last finished epoch (None when equal to ``weights``)."""
    import h5py  # noqa: PLC0415

    def write(tmp):
        with h5py.File(tmp, "w") as f:
            f.attrs.update(format=FORMAT, format_version=FORMAT_VERSION, nnctl_version=__version__, seed=seed,
                           epoch=epoch, best_epoch=-1 if best_epoch is None else best_epoch)
            _json(f, "spec", spec)
            _write_named(f.create_group("weights"), weights)
            _write_named(f.create_group("state"), state)
            pg = f.create_group("preprocessing")
            for k, v in prep_arrays.items():
                _dataset(pg, k, v)
            hg = f.create_group("history")
            for k, v in history.items():
                hg.create_dataset(k, data=np.asarray(v, dtype=np.float64))
            og = f.create_group("optimizer")
            og.attrs.update(type=optimizer["type"], iterations=optimizer["iterations"],
                            config=json.dumps(optimizer["config"]))
            sg = og.create_group("slots")
            for slot, named in optimizer["slots"].items():
                _write_named(sg.create_group(slot), named)
            if resume is not None:
                rg = f.create_group("resume")
                _write_named(rg.create_group("weights"), resume["weights"])
                _write_named(rg.create_group("state"), resume["state"])
                _json(rg, "info", resume["info"])

    atomic_write(path, write)


class Checkpoint:
    """A loaded checkpoint: plain arrays and dicts, validated on load."""

    def __init__(self, path):
        import h5py  # noqa: PLC0415

        self.path = pathlib.Path(path)
        if not self.path.is_file():
            raise CheckpointError(f"{self.path}: checkpoint not found")
        try:
            with h5py.File(self.path, "r") as f:
                if f.attrs.get("format") != FORMAT:
                    raise CheckpointError(f"{self.path}: not an nnctl checkpoint (expected attribute "
                                          f"format={FORMAT!r}, found {f.attrs.get('format')!r})")
                version = int(f.attrs.get("format_version", -1))
                if version > FORMAT_VERSION:
                    raise CheckpointError(f"{self.path}: checkpoint format {version} is newer than this "
                                          f"nnctl reads ({FORMAT_VERSION}); upgrade nnctl")
                for group in ("spec", "weights", "state", "preprocessing", "history", "optimizer"):
                    if group not in f:
                        raise CheckpointError(f"{self.path}: missing /{group}; expected a complete nnctl checkpoint")
                self.attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}
                self.spec = json.loads(f["spec"][()])
                self.weights = _read_named(f["weights"])
                self.state = _read_named(f["state"])
                self.prep_arrays = {k: _read_any(f["preprocessing"][k]) for k in f["preprocessing"]}
                self.history = {k: list(f["history"][k][()]) for k in f["history"]}
                og = f["optimizer"]
                self.optimizer = {"type": og.attrs["type"], "iterations": int(og.attrs["iterations"]),
                                  "config": json.loads(og.attrs["config"]),
                                  "slots": {s: _read_named(og["slots"][s]) for s in og["slots"]}}
                self.resume = None
                if "resume" in f:
                    rg = f["resume"]
                    self.resume = {"weights": _read_named(rg["weights"]), "state": _read_named(rg["state"]),
                                   "info": json.loads(rg["info"][()])}
        except CheckpointError:
            raise
        except (OSError, KeyError, ValueError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"{self.path}: unreadable or truncated checkpoint ({exc})") from None

    @property
    def epoch(self) -> int:
        return int(self.attrs.get("epoch", 0))

    @property
    def best_epoch(self) -> int | None:
        b = int(self.attrs.get("best_epoch", -1))
        return None if b < 0 else b


def load_into(model, weights: dict, state: dict, source: str, strict: bool = True) -> tuple[list, list]:
    """Copy named arrays into a built model; strict: every parameter must be present with its shape.

    Returns (loaded, skipped) names; in non-strict mode (transfer learning) missing or mismatched
    arrays are skipped with the reason."""
    from nnctl import backend as B  # noqa: PLC0415

    loaded, skipped = [], []
    for kind, target, source_arrays in (("weights", model.named_params(), weights),
                                        ("state", model.named_state(), state)):
        for key, arr in target.items():
            src = source_arrays.get(key)
            if src is None:
                if strict:
                    raise CheckpointError(f"{source}: missing /{kind}/{key}; the model expects an array of shape "
                                          f"{list(arr.shape)}")
                skipped.append(f"{key} (not in the checkpoint)")
                continue
            if tuple(src.shape) != tuple(arr.shape):
                if strict:
                    raise CheckpointError(f"{source}: /{kind}/{key} has shape {list(src.shape)}, the model expects "
                                          f"{list(arr.shape)}")
                skipped.append(f"{key} (shape {list(src.shape)} in the checkpoint, {list(arr.shape)} in the model)")
                continue
            arr[...] = B.asarray(src.astype(arr.dtype, copy=False))
            loaded.append(key)
    return loaded, skipped
