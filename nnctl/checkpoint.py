"""One HDF5 file per checkpoint, written atomically; the only module that uses h5py for checkpoints.

Layout (documented in docs/checkpoint.md):
  /                     attrs format="nnctl-checkpoint", format_version, nnctl_version, seed, epoch, best_epoch
  /spec                 the resolved spec as a JSON string dataset (no 64 KiB attribute limit): what the user wrote
  /model_facts          JSON: what the build learned from the data (defaults, input_dtype, sample_shape); older
                        checkpoints kept defaults and input_dtype as _defaults, _input_dtype inside /spec
  /weights/<layer>/<p>  weights used by evaluate/predict (the best epoch's when early stopping restores it)
  /state/<layer>/<s>    non-trained layer state for those weights (BatchNorm moving statistics)
  /preprocessing/<k>    normalisation statistics, class labels in order, tokenizer vocabulary, meta JSON
  /history/<name>       one float64 value per epoch for every loss, metric, lr, seconds
  /optimizer            attrs type, iterations; /optimizer/slots/<slot>/<layer>/<p>
  /resume               the state for --resume: weights/, state/ by name, a JSON dataset with epoch,
                        schedule, early stopping and RNG states, and position/epoch/<k> when saved mid-epoch
  /anomaly              an autoencoder's anomaly threshold (JSON: quantile, threshold, rows...), when fitted
"""

from __future__ import annotations

import json
import pathlib
import shutil

import numpy as np

from nnctl import __version__
from nnctl import backend as B
from nnctl.errors import CheckpointError, quote
from nnctl.fs import atomic_write

SPEC_SUFFIXES = (".toml", ".yaml", ".yml", ".json")  # a spec passed where a checkpoint belongs gets its own message

FORMAT = "nnctl-checkpoint"
FORMAT_VERSION = 2  # the newest this nnctl reads and writes
NAMED_IO_VERSION = 2  # a model with named inputs or outputs; every other checkpoint is still written as 1


def format_version(spec: dict) -> int:
    """1 for the layout every nnctl reads; 2 when the spec names its inputs or outputs (model.inputs,
    model.outputs), so an nnctl from before them refuses the file instead of predicting with one output."""
    model = spec.get("model") or {}
    return NAMED_IO_VERSION if model.get("inputs") or model.get("outputs") else 1


def _write_named(group, named: dict) -> None:
    for key, value in named.items():
        layer, _, param = key.partition("/")
        _dataset(group.require_group(layer), param, value)


def _json(group, name, value) -> None:
    group.create_dataset(name, data=json.dumps(value))


def _dataset(group, name, value) -> None:
    """A dataset from any array; text arrays become HDF5 variable-length UTF-8 strings."""
    import h5py

    value = np.asarray(value)
    if value.dtype.kind in "UO":
        group.create_dataset(name, data=value.astype(object), dtype=h5py.string_dtype())
    else:
        group.create_dataset(name, data=value)


def named_from_flat(flat: np.ndarray, slices: dict, shapes: dict) -> dict:
    return {k: flat[sl].reshape(shapes[k]) for k, sl in slices.items()}


def save(
    path,
    *,
    spec: dict,
    weights: dict,
    state: dict,
    prep_arrays: dict,
    history: dict,
    seed: int,
    epoch: int,
    best_epoch: int | None,
    optimizer: dict,
    resume: dict | None,
    facts: dict | None = None,
) -> None:
    """Write a checkpoint. ``optimizer`` = {type, iterations, config, slots: {slot: {name: array}}};
    ``resume`` = {weights, state, info} for the last finished epoch (None when equal to ``weights``)."""
    import h5py

    def write(tmp):
        with h5py.File(tmp, "w") as f:
            f.attrs.update(
                format=FORMAT,
                format_version=format_version(spec),
                nnctl_version=__version__,
                seed=seed,
                epoch=epoch,
                best_epoch=-1 if best_epoch is None else best_epoch,
            )
            _json(f, "spec", spec)
            if facts is not None:
                _json(f, "model_facts", facts)
            _write_named(f.create_group("weights"), weights)
            _write_named(f.create_group("state"), state)
            pg = f.create_group("preprocessing")
            for k, v in prep_arrays.items():
                _dataset(pg, k, v)
            hg = f.create_group("history")
            for k, v in history.items():
                hg.create_dataset(k, data=np.asarray(v, dtype=np.float64))
            og = f.create_group("optimizer")
            og.attrs.update(
                type=optimizer["type"], iterations=optimizer["iterations"], config=json.dumps(optimizer["config"])
            )
            sg = og.create_group("slots")
            for slot, named in optimizer["slots"].items():
                _write_named(sg.create_group(slot), named)
            if resume is not None:
                rg = f.create_group("resume")
                _write_named(rg.create_group("weights"), resume["weights"])
                _write_named(rg.create_group("state"), resume["state"])
                _json(rg, "info", resume["info"])
                if resume.get("position"):  # mid-epoch: the epoch's order, batch losses and outputs so far
                    _write_named(rg.create_group("position"), resume["position"])

    atomic_write(path, write)


def store_anomaly(path, info: dict) -> None:
    """Add (or replace) ``/anomaly`` in an existing checkpoint, atomically: a copy gets it, then replaces the file."""
    import h5py

    def write(tmp):
        shutil.copyfile(path, tmp)
        with h5py.File(tmp, "r+") as f:
            if "anomaly" in f:
                del f["anomaly"]
            _json(f, "anomaly", info)

    atomic_write(path, write)


MAX_DEPTH = 6  # / -> resume -> weights -> layer -> param is the deepest nnctl writes
MAX_OBJECTS = 200_000
ATTRS = ("format", "format_version", "nnctl_version", "seed", "epoch", "best_epoch")


class _Reader:
    """Checks a whole HDF5 file before anything is read, then reads objects by the kind nnctl wrote them as.

    Refused: soft and external links (a loop, or another file), external raw storage, virtual datasets,
    nesting deeper than nnctl writes, and any dataset declaring more bytes than the file holds (nnctl writes
    uncompressed data, so a larger declaration is a fill-value bomb)."""

    def __init__(self, f, path: pathlib.Path, file_size: int):
        self.f, self.path, self.file_size = f, path, file_size

    def error(self, where: str, what: str) -> CheckpointError:
        return CheckpointError(f"{self.path}: {where}: {what}")

    def check_tree(self) -> None:
        import h5py

        count = 0
        stack = [(self.f, "", 0)]
        while stack:
            group, prefix, depth = stack.pop()
            for name in group:
                count += 1
                where = f"{prefix}/{name}"
                if count > MAX_OBJECTS:
                    raise self.error(where, f"more than {MAX_OBJECTS} objects; not an nnctl checkpoint")
                link = group.get(name, getlink=True)
                if isinstance(link, h5py.ExternalLink):
                    raise self.error(where, "an external link to another file; refused")
                if isinstance(link, h5py.SoftLink):
                    raise self.error(where, "a soft link; refused (nnctl writes none)")
                obj = group[name]
                if isinstance(obj, h5py.Group):
                    if depth + 1 >= MAX_DEPTH:
                        raise self.error(where, "nested deeper than an nnctl checkpoint")
                    stack.append((obj, where, depth + 1))
                elif isinstance(obj, h5py.Dataset):
                    self._check_dataset(obj, where)
                else:
                    raise self.error(where, f"unexpected HDF5 object ({type(obj).__name__})")

    def _check_dataset(self, ds, where: str) -> None:
        if ds.is_virtual:
            raise self.error(where, "a virtual dataset (data in other files); refused")
        if ds.external:
            raise self.error(where, "stored in an external file; refused")
        declared = ds.size * max(ds.dtype.itemsize, 1)
        if declared > self.file_size:
            raise self.error(
                where,
                f"declares shape {list(ds.shape)} ({declared} bytes), more than the whole file "
                f"holds ({self.file_size} bytes)",
            )

    def node(self, where: str, kind):
        import h5py

        obj = self.f.get(where)
        if obj is None:
            raise self.error(f"/{where}", "missing; expected a complete nnctl checkpoint")
        want = h5py.Group if kind == "group" else h5py.Dataset
        if not isinstance(obj, want):
            found = "a group" if isinstance(obj, h5py.Group) else "a dataset"
            raise self.error(f"/{where}", f"expected {'a group' if kind == 'group' else 'a dataset'}, found {found}")
        return obj

    def json(self, where: str, expect=dict):
        ds = self.node(where, "dataset")
        if ds.shape != () or ds.dtype.kind not in "OSU":
            raise self.error(f"/{where}", f"expected a JSON string, found a {ds.dtype} array of shape {list(ds.shape)}")
        raw = ds[()]
        try:
            value = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
        except (ValueError, RecursionError, UnicodeDecodeError):
            raise self.error(f"/{where}", "not valid JSON") from None
        if not isinstance(value, expect):
            raise self.error(f"/{where}", f"expected a JSON {expect.__name__}, found {type(value).__name__}")
        return value

    def array(self, ds, where: str, kinds: str = "fiub", ndim: int | None = None) -> np.ndarray:
        if ds.dtype.kind not in kinds or (ndim is not None and ds.ndim != ndim):
            shape = "a scalar" if ds.ndim == 0 else f"shape {list(ds.shape)}"
            raise self.error(where, f"unexpected {ds.dtype} array of {shape}")
        return np.asarray(ds[()])

    def named(self, where: str) -> dict:
        """``/<where>/<layer>/<param>`` numeric arrays keyed ``layer/param``."""
        group, out = self.node(where, "group"), {}
        for layer in group:
            lg = self.node(f"{where}/{layer}", "group")
            for param in lg:
                out[f"{layer}/{param}"] = self.array(
                    self.node(f"{where}/{layer}/{param}", "dataset"), f"/{where}/{layer}/{param}"
                )
        return out

    def any(self, where: str):
        """A dataset back as an array (strings as str arrays) or a str scalar."""
        ds = self.node(where, "dataset")
        value = ds[()]
        if isinstance(value, bytes):
            return value.decode()
        if isinstance(value, np.ndarray) and value.dtype.kind == "O":
            return np.array([v.decode() if isinstance(v, bytes) else v for v in value.ravel()]).reshape(value.shape)
        return value


class Checkpoint:
    """A loaded checkpoint: plain arrays and dicts, checked (links, storage, sizes, structure) before reading."""

    def __init__(self, path):
        import h5py

        self.path = pathlib.Path(path)
        if not self.path.exists():
            raise CheckpointError(f"{self.path}: checkpoint not found")
        if not self.path.is_file():
            raise CheckpointError(f"{self.path}: not a regular file; expected an nnctl checkpoint (.h5)")
        try:
            with h5py.File(self.path, "r") as f:
                fmt = f.attrs.get("format")
                if fmt != FORMAT:
                    raise CheckpointError(
                        f"{self.path}: not an nnctl checkpoint (expected attribute "
                        f"format={FORMAT!r}, found {quote(fmt)})"
                    )
                version = int(f.attrs.get("format_version", -1))
                if version > FORMAT_VERSION:
                    raise CheckpointError(
                        f"{self.path}: checkpoint format {version} is newer than this "
                        f"nnctl reads ({FORMAT_VERSION}); upgrade nnctl"
                    )
                r = _Reader(f, self.path, self.path.stat().st_size)
                r.check_tree()
                self.attrs = {
                    k: (f.attrs[k].item() if hasattr(f.attrs[k], "item") else f.attrs[k]) for k in ATTRS if k in f.attrs
                }
                self.spec = r.json("spec")
                self.model_facts = r.json("model_facts") if "model_facts" in f else None
                self.weights = r.named("weights")
                self.state = r.named("state")
                prep = r.node("preprocessing", "group")
                self.prep_arrays = {k: r.any(f"preprocessing/{k}") for k in prep}
                history = r.node("history", "group")
                self.history = {
                    k: list(r.array(r.node(f"history/{k}", "dataset"), f"/history/{k}", "fiu", 1)) for k in history
                }
                og = r.node("optimizer", "group")
                try:
                    config = json.loads(og.attrs["config"])
                    self.optimizer = {
                        "type": str(og.attrs["type"]),
                        "iterations": int(og.attrs["iterations"]),
                        "config": config,
                    }
                except (KeyError, ValueError, TypeError, RecursionError):
                    raise r.error("/optimizer", "attributes type, iterations and config (JSON) expected") from None
                slots = r.node("optimizer/slots", "group")
                self.optimizer["slots"] = {s: r.named(f"optimizer/slots/{s}") for s in slots}
                self.anomaly = r.json("anomaly") if "anomaly" in f else None
                self.resume = None
                if "resume" in f:
                    r.node("resume", "group")
                    self.resume = {
                        "weights": r.named("resume/weights"),
                        "state": r.named("resume/state"),
                        "info": r.json("resume/info"),
                        "position": r.named("resume/position") if "position" in f["resume"] else {},
                    }
        except CheckpointError:
            raise
        except (OSError, KeyError, ValueError, TypeError, RuntimeError, json.JSONDecodeError) as exc:
            if pathlib.Path(self.path).suffix.lower() in SPEC_SUFFIXES:
                raise CheckpointError(
                    f"{self.path}: a spec, not a checkpoint; train it first (nnctl train "
                    f"{self.path}) and pass the checkpoint it writes"
                ) from None
            raise CheckpointError(f"{self.path}: unreadable or truncated checkpoint ({quote(exc, 80)})") from None

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
    loaded, skipped = [], []
    for kind, target, source_arrays in (
        ("weights", model.named_params(), weights),
        ("state", model.named_state(), state),
    ):
        for key, arr in target.items():
            src = source_arrays.get(key)
            if src is None:
                if strict:
                    raise CheckpointError(
                        f"{source}: missing /{kind}/{key}; the model expects an array of shape {list(arr.shape)}"
                    )
                skipped.append(f"{key} (not in the checkpoint)")
                continue
            if tuple(src.shape) != tuple(arr.shape):
                if strict:
                    raise CheckpointError(
                        f"{source}: /{kind}/{key} has shape {list(src.shape)}, the model expects {list(arr.shape)}"
                    )
                skipped.append(f"{key} (shape {list(src.shape)} in the checkpoint, {list(arr.shape)} in the model)")
                continue
            arr[...] = B.asarray(src.astype(arr.dtype, copy=False))
            loaded.append(key)
    return loaded, skipped
