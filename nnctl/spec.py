"""Spec files: parse TOML/YAML/JSON, apply ``--set`` overrides, validate every key, fill defaults.

Errors are ``SpecError`` naming the file and the dotted field (``model.layers[2].unit: unknown key;
did you mean 'units'?``). Layer keys come from each layer class's signature, optimizer keys from the
optimizer's, so the registries are the one source of truth. The same tables produce ``nnctl schema``.
"""

from __future__ import annotations

import copy
import difflib
import json
import pathlib
import tomllib
from dataclasses import dataclass
from typing import Any

from nnctl import losses, metrics, optimizers, schedules
from nnctl.errors import SpecError


@dataclass(frozen=True)
class Field:
    types: tuple  # accepted Python types of the value
    default: Any = None
    choices: tuple | None = None
    doc: str = ""
    required: bool = False


NUM = (int, float)
PATH = (str,)
# Sections: every key a user may write, its type and default. ``None`` default = optional, absent.
SCHEMA: dict[str, dict[str, Field]] = {
    "": {
        "name": Field((str,), "model", doc="run name; default checkpoint runs/<name>.h5"),
        "seed": Field((int,), 0, doc="seed of weights, data order, dropout and augmentation"),
        "dtype": Field((str,), "float32", ("float32", "float64"), "array precision"),
        "data": Field((dict,), required=True, doc="what to train on"),
        "model": Field((dict,), required=True, doc="the network"),
        "train": Field((dict,), {}, doc="how to train"),
        "output": Field((dict,), {}, doc="where results go"),
    },
    "data": {
        "kind": Field((str,), "auto", ("auto", "tabular", "arrays", "idx", "images", "timeseries", "text"),
                      "data kind; auto picks from the file extension or folder"),
        "train": Field(PATH, required=True, doc="training file or folder"),
        "test": Field(PATH, doc="test file or folder, used by evaluate"),
        "validation": Field((str, dict), doc="a path, or {split = 0.2, stratify = true}"),
        "target": Field((str, int, list), doc="target column(s), name or index (default: the last column); tables, time series, text"),
        "features": Field((list,), doc="CSV input columns (default: every column but the target)"),
        "x": Field((str,), "x", doc="npz/h5 key of the inputs"),
        "y": Field((str,), "y", doc="npz/h5 key of the targets"),
        "normalize": Field((str,), "none", ("none", "standard", "minmax"),
                           "input scaling, statistics from the training split only"),
        "normalize_target": Field((str,), "none", ("none", "standard", "minmax"),
                                  "regression target scaling; predictions come back in original units"),
        "rescale": Field((int, float, str), doc="multiply inputs by this (e.g. 0.00392156862745098 or '1/255')"),
        "subset": Field((int,), doc="train on a seeded random subset of this many training samples"),
        "image_size": Field((list,), doc="image folders: resize every image to [height, width]"),
        "color_mode": Field((str,), "auto", ("auto", "grayscale", "rgb"), "image folders: channels"),
        "window": Field((int,), doc="time series: input steps per window"),
        "horizon": Field((int,), 1, doc="time series: predict this many steps after the window"),
        "stride": Field((int,), 1, doc="time series: steps between window starts"),
        "text": Field((str,), "text", doc="text: the column holding the text"),
        "tokenizer": Field((dict,), {}, doc="text: level, vocab_size, max_length, lowercase, oov_token, padding, truncating"),
        "augment": Field((dict,), {}, doc="on-the-fly augmentation of training batches"),
    },
    "model": {
        "input_shape": Field((list,), doc="input shape without the batch axis (inferred from the data)"),
        "layers": Field((list,), required=True, doc="the layers, in order"),
        "init_from": Field(PATH, doc="checkpoint whose weights initialise layers of the same name and shape"),
        "decode": Field((dict,), doc="greedy decoding for teacher-forced sequence models at predict time"),
    },
    "train": {
        "loss": Field((str, dict), "mse", doc="loss name or {type = ..., delta = ...}"),
        "optimizer": Field((str, dict), "adam", doc="optimizer name or {type = ..., learning_rate = ...}"),
        "metrics": Field((list,), [], doc="metrics logged each epoch"),
        "epochs": Field((int,), 10),
        "batch_size": Field((int, str), 32, doc="samples per step; 1 = stochastic, 'full' = batch gradient descent"),
        "shuffle": Field((bool,), True),
        "early_stopping": Field((dict,), doc="monitor, mode, patience, min_delta, restore_best"),
        "lr_schedule": Field((dict,), doc="type = step|exponential|cosine|plateau and its keys"),
        "save_best": Field((bool,), False, doc="also write <checkpoint>.best.h5 with the best epoch"),
        "save_every": Field((int,), 0, doc="also write <checkpoint>.epochNNN.h5 every N epochs (0 = never)"),
        "tensorboard": Field(PATH, doc="folder for TensorBoard event files"),
        "stop_on_nan": Field((bool,), True, doc="stop with exit code 3 on a non-finite loss"),
    },
    "output": {
        "checkpoint": Field(PATH, doc="checkpoint path (default runs/<name>.h5)"),
        "run_dir": Field(PATH, doc="run folder (default: <checkpoint without .h5>.run)"),
    },
}
NESTED = {
    "data.validation": {"split": Field(NUM, 0.2), "stratify": Field((bool,), False), "path": Field(PATH)},
    "data.tokenizer": {
        "level": Field((str,), "word", ("word", "char")), "vocab_size": Field((int,), 10000),
        "max_length": Field((int,), 32), "lowercase": Field((bool,), True), "oov_token": Field((str,), "<unk>"),
        "padding": Field((str,), "post", ("pre", "post")), "truncating": Field((str,), "post", ("pre", "post")),
    },
    "data.augment": {
        "flip": Field((str,), None, ("horizontal", "vertical", "both")), "rotation": Field(NUM),
        "width_shift": Field(NUM), "height_shift": Field(NUM), "zoom": Field(NUM), "crop_padding": Field((int,)),
        "brightness": Field(NUM), "contrast": Field(NUM), "noise": Field(NUM),
        "jitter": Field(NUM), "scaling": Field(NUM), "time_warp": Field(NUM), "step_dropout": Field(NUM),
        "token_deletion": Field(NUM), "token_swap": Field(NUM),
    },
    "model.decode": {
        "source_length": Field((int,), required=True, doc="input steps that are the source sequence"),
        "start_token": Field((int,), required=True, doc="id that starts the decoder input"),
        "steps": Field((int,), doc="output steps to generate (default: the model's output length)"),
    },
    "train.early_stopping": {
        "monitor": Field((str,), "val_loss"), "mode": Field((str,), "auto", ("auto", "min", "max")),
        "patience": Field((int,), 5), "min_delta": Field(NUM, 0.0), "restore_best": Field((bool,), True),
    },
    "train.lr_schedule": {
        "type": Field((str,), "constant", schedules.TYPES), "step_size": Field((int,), 10), "factor": Field(NUM, 0.5),
        "decay_rate": Field(NUM, 0.9), "decay_epochs": Field(NUM, 1.0), "warmup_epochs": Field((int,), 0),
        "min_lr": Field(NUM, 0.0), "monitor": Field((str,), "val_loss"), "patience": Field((int,), 5),
        "min_delta": Field(NUM, 0.0), "cooldown": Field((int,), 0),
    },
}


def _suggest(key: str, options) -> str:
    close = difflib.get_close_matches(str(key), list(options), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _type_name(types) -> str:
    names = {bool: "boolean", int: "integer", float: "number", str: "string", list: "list", dict: "table"}
    return " or ".join(dict.fromkeys(names[t] for t in types))


def _check_value(where: str, value, field: Field, err) -> None:
    ok = isinstance(value, field.types) and not (isinstance(value, bool) and bool not in field.types)
    if not ok:
        err(f"{where}: expected {_type_name(field.types)}, found {json.dumps(value)}")
    if field.choices and isinstance(value, str) and value.lower() not in field.choices:
        err(f"{where}: expected one of {', '.join(field.choices)}, found {value!r}{_suggest(value.lower(), field.choices)}")


def _check_table(where: str, table: dict, fields: dict[str, Field], err, fill: bool = True) -> dict:
    if not isinstance(table, dict):
        err(f"{where}: expected a table, found {json.dumps(table)}")
    out = {}
    for key, value in table.items():
        path = f"{where}.{key}" if where else key
        if key not in fields:
            err(f"{path}: unknown key{_suggest(key, fields)}")
        _check_value(path, value, fields[key], err)
        out[key] = value.lower() if fields[key].choices and isinstance(value, str) else value
    for key, field in fields.items():
        path = f"{where}.{key}" if where else key
        if key not in out:
            if field.required:
                err(f"{path}: required key is missing")
            if fill and field.default is not None:
                out[key] = copy.deepcopy(field.default)
    return out


def load_file(path: str | pathlib.Path) -> dict:
    """Read a spec file (format from the extension) into a plain dict."""
    p = pathlib.Path(path)
    if not p.is_file():
        raise SpecError(f"{p}: spec file not found")
    text = p.read_text(encoding="utf-8")
    ext = p.suffix.lower()
    try:
        if ext == ".toml":
            return tomllib.loads(text)
        if ext in (".yaml", ".yml"):
            from nnctl.safe_yaml import load_yaml  # noqa: PLC0415 - bounded: no alias bombs, plain tags only

            data = load_yaml(text, str(p))
        elif ext == ".json":
            data = json.loads(text)
        else:
            raise SpecError(f"{p}: unknown spec format {ext!r}; expected .toml, .yaml, .yml or .json")
    except SpecError:
        raise
    except Exception as exc:  # the parsers' own messages carry line and column
        raise SpecError(f"{p}: not valid {ext.lstrip('.').upper()}: {exc}".replace("\n", " ")) from None
    if not isinstance(data, dict):
        raise SpecError(f"{p}: expected a table at the top level")
    return data


def parse_scalar(text: str):
    """A ``--set`` value: TOML/JSON scalar or list (``0.01``, ``true``, ``[64, 32]``, ``"relu"``), else a string."""
    for parse in (lambda s: tomllib.loads(f"v = {s}")["v"], json.loads):
        try:
            return parse(text)
        except Exception:  # noqa: BLE001 - try the next reading
            continue
    return text


def apply_override(spec: dict, assignment: str, source: str = "--set") -> None:
    """Apply ``a.b[2].c=value`` to ``spec`` in place."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key.strip():
        raise SpecError(f"{source} {assignment!r}: expected KEY=VALUE")
    node: Any = spec
    parts = _split_path(key.strip(), source)
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                raise SpecError(f"{source} {key}: index [{part}] is out of range")
            if last:
                node[part] = parse_scalar(raw)
            else:
                node = node[part]
        else:
            if not isinstance(node, dict):
                raise SpecError(f"{source} {key}: {part!r} is not inside a table")
            if last:
                node[part] = parse_scalar(raw)
            else:
                if isinstance(node.get(part), str) and part in ("optimizer", "loss"):
                    node[part] = {"type": node[part]}  # optimizer = "adam" then --set optimizer.learning_rate
                node = node.setdefault(part, {})


def _split_path(key: str, source: str) -> list:
    parts: list = []
    for piece in key.split("."):
        name, _, rest = piece.partition("[")
        if name:
            parts.append(name)
        while rest:
            idx, _, rest = rest.partition("]")
            if not idx.isdigit():
                raise SpecError(f"{source} {key}: bad index [{idx}]")
            parts.append(int(idx))
            rest = rest.lstrip("[")
    return parts


def load(path, overrides: list[str] = (), extra: dict | None = None) -> dict:
    """Read, override and validate a spec; relative paths resolve against the spec's folder."""
    raw = load_file(path)
    for item in overrides:
        apply_override(raw, item)
    spec = validate(raw, str(path), base_dir=pathlib.Path(path).resolve().parent)
    spec["_source"] = str(path)
    return spec


def validate(raw: dict, source: str = "spec", base_dir: pathlib.Path | None = None) -> dict:
    """Check every key of a spec dict and return it with defaults filled in."""
    def err(msg):
        raise SpecError(f"{source}: {msg}")

    spec = _check_table("", raw, SCHEMA[""], err)
    for section in ("data", "model", "train", "output"):
        spec[section] = _check_table(section, spec[section], SCHEMA[section], err)
    for path, fields in NESTED.items():
        section, key = path.split(".")
        value = spec[section].get(key)
        if isinstance(value, dict):
            spec[section][key] = _check_table(path, value, fields, err, fill=path != "data.augment")
    _check_train(spec["train"], err)
    from nnctl.build import check_layers  # noqa: PLC0415 - the layer registry is heavier to import

    spec["model"]["layers"] = check_layers(spec["model"]["layers"], err)
    if spec["model"].get("input_shape") is not None:
        shape = spec["model"]["input_shape"]
        if not shape or not all(isinstance(d, int) and d > 0 for d in shape):
            err(f"model.input_shape: expected a list of positive integers, found {json.dumps(shape)}")
    if base_dir is not None:
        _resolve_paths(spec, base_dir)
    return spec


def _resolve_paths(spec: dict, base: pathlib.Path) -> None:
    def res(p):
        q = pathlib.Path(p).expanduser()
        return str(q if q.is_absolute() else (base / q).resolve())

    data = spec["data"]
    for key in ("train", "test"):
        if data.get(key):
            data[key] = res(data[key])
    if isinstance(data.get("validation"), str):
        data["validation"] = res(data["validation"])
    elif isinstance(data.get("validation"), dict) and data["validation"].get("path"):
        data["validation"]["path"] = res(data["validation"]["path"])
    if spec["model"].get("init_from"):
        spec["model"]["init_from"] = res(spec["model"]["init_from"])
    for section, key in (("output", "checkpoint"), ("output", "run_dir"), ("train", "tensorboard")):
        if spec[section].get(key):
            spec[section][key] = res(spec[section][key])
    if not spec["output"].get("checkpoint"):
        spec["output"]["checkpoint"] = res(f"runs/{spec['name']}.h5")


def _check_named(where: str, value, registry: dict, kind: str, err) -> tuple[str, dict]:
    """Split ``"adam"`` or ``{type = "adam", ...}`` into a registry name and its keyword arguments."""
    if isinstance(value, str):
        name, kwargs = value.lower(), {}
    else:
        kwargs = dict(value)
        name = str(kwargs.pop("type", "")).lower()
        if not name:
            err(f"{where}.type: required key is missing")
    if name not in registry:
        err(f"{where}: unknown {kind} {name!r}{_suggest(name, registry)}; expected one of {', '.join(sorted(registry))}")
    return name, kwargs


def _check_kwargs(where: str, cls, kwargs: dict, err, skip=("self",)) -> None:
    from nnctl.layers.base import layer_params  # noqa: PLC0415

    params = layer_params(cls)
    for key, value in kwargs.items():
        if key not in params or key in skip:
            err(f"{where}.{key}: unknown key{_suggest(key, [p for p in params if p not in skip])}")
        default = params[key].default
        if isinstance(default, (int, float)) and not isinstance(default, bool) and (
                not isinstance(value, (int, float)) or isinstance(value, bool)):
            err(f"{where}.{key}: expected a number, found {json.dumps(value)}")
        if isinstance(default, bool) and not isinstance(value, bool):
            err(f"{where}.{key}: expected true or false, found {json.dumps(value)}")


def _check_train(train: dict, err) -> None:
    for key in ("optimizer", "loss"):  # {learning_rate = 0.01} alone keeps the default type
        if isinstance(train[key], dict) and "type" not in train[key]:
            train[key] = {"type": SCHEMA["train"][key].default, **train[key]}
    name, kwargs = _check_named("train.optimizer", train["optimizer"], optimizers.OPTIMIZERS, "optimizer", err)
    _check_kwargs("train.optimizer", optimizers.OPTIMIZERS[name], kwargs, err)
    lname, lkwargs = _check_named("train.loss", train["loss"], losses.LOSSES, "loss", err)
    _check_kwargs("train.loss", losses.LOSSES[lname], lkwargs, err)
    for i, m in enumerate(train["metrics"]):
        if not isinstance(m, str) or metrics.canonical(m) not in metrics.NAMES:
            err(f"train.metrics[{i}]: unknown metric {m!r}{_suggest(str(m), metrics.NAMES)}; "
                f"expected one of {', '.join(metrics.NAMES)}")
        if metrics.canonical(m) in ("accuracy", "precision", "recall", "f1") and lname not in losses.CLASSIFICATION:
            err(f"train.metrics[{i}]: {m} needs a classification loss, found loss {lname!r}")
    bs = train["batch_size"]
    if (isinstance(bs, str) and bs.lower() != "full") or (isinstance(bs, int) and bs < 1):
        err(f"train.batch_size: expected a positive integer or 'full', found {json.dumps(bs)}")
    if train["epochs"] < 0:
        err(f"train.epochs: expected a non-negative integer, found {train['epochs']}")


def optimizer_config(train: dict) -> tuple[str, dict]:
    opt = train["optimizer"]
    return (opt.lower(), {}) if isinstance(opt, str) else (str(opt["type"]).lower(), {k: v for k, v in opt.items() if k != "type"})


def loss_config(train: dict) -> tuple[str, dict]:
    loss = train["loss"]
    return (loss.lower(), {}) if isinstance(loss, str) else (str(loss["type"]).lower(), {k: v for k, v in loss.items() if k != "type"})
