"""Spec files: parse TOML/YAML/JSON, apply ``--set`` overrides, validate every key, fill defaults.

Errors are one ``SpecError`` listing every problem, each naming the file and the dotted field
(``s.toml: model.layers[2].unit: unknown key for Dense; did you mean 'units'?``). Section keys come
from the dataclasses in ``nnctl.spec_sections``, layer, loss and optimizer keys from the classes'
signatures (``nnctl.fields``), names from the registries: one source for the validator, ``nnctl check``
and ``nnctl schema``. Keras spellings are rewritten first (``nnctl.keras_names``).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import pathlib
import tomllib
from collections.abc import Sequence
from typing import Any

from nnctl import (  # noqa: F401 - registers the loss/optimizer families
    anomaly,
    blocks,
    gan_spec,
    keras_names,
    losses,
    metrics,
    model_top,
    multi_spec,
    optimizers,
    schedules,
    spec_extends,
)
from nnctl.build import check_layers
from nnctl.errors import SpecError
from nnctl.fields import check_keys, fields_of
from nnctl.registry import suggestion
from nnctl.spec_model import Spec, typed
from nnctl.spec_sections import SECTIONS, SUBTABLES
from nnctl.spec_table import Named, to_plain

MAX_PROBLEMS = 20  # a spec with more problems than this is reported with the first ones and a count


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
            from nnctl.safe_yaml import load_yaml  # bounded: no alias bombs, plain tags only

            data = load_yaml(text, str(p))
        elif ext == ".json":
            data = json.loads(text)
        else:
            raise SpecError(f"{p}: unknown spec format {ext!r}; expected .toml, .yaml, .yml or .json")
    except SpecError:
        raise
    except Exception as exc:  # noqa: BLE001 - the parsers' own messages carry line and column
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


def load(path, overrides: Sequence[str] = (), extra: dict | None = None) -> Spec:
    """Read, override and validate a spec; relative paths resolve against the spec's folder."""
    raw, origins = spec_extends.load_chain(path, load_file)  # ``extends = "base.toml"`` merged in
    for item in overrides:
        apply_override(raw, item)
    try:
        spec = validate(raw, str(path), base_dir=pathlib.Path(path).resolve().parent)
    except SpecError as exc:  # each problem names the file of the chain its key came from
        raise spec_extends.relabel(exc, str(path), origins) from None
    return dataclasses.replace(spec, source=str(path))


def validate(raw: dict, source: str = "spec", base_dir: pathlib.Path | None = None) -> Spec:
    """Check every key of a spec dict and return it as one frozen ``Spec``, defaults filled in.

    Every problem is collected first; SpecError then lists them all (one line each, at most MAX_PROBLEMS).
    The checks run on the dict; only a spec that passes them all becomes typed (``nnctl.spec_model``)."""
    original, raw = raw, to_plain(raw)  # a fresh copy of plain dicts and lists, a typed Spec given included
    block_problems, origin = blocks.expand_model(raw.get("model"))
    problems = block_problems + keras_names.rewrite(raw)
    spec, found = _filled(raw, SECTIONS[""], "")
    problems += found
    for section in ("data", "model"):
        if section not in raw:
            problems.append(f"{section}: required section is missing")
    bad_sections = set()
    for section in ("data", "model", "train", "output"):
        table = spec.get(section, {})
        if not isinstance(table, dict):
            bad_sections.add(section)
            continue
        spec[section], found = _filled(table, SECTIONS[section], section)
        problems += found
        bad_sections |= {section} if found else set()
    for path, (cls, fill) in SUBTABLES.items():
        section, key = path.split(".")
        value = spec.get(section, {}).get(key) if section not in bad_sections else None
        if isinstance(value, dict):
            spec[section][key], found = _filled(value, cls, path, fill)
            problems += found
    # the checks below read the sections' values, so each needs its section well-formed
    gan = gan_spec.is_gan(spec)  # two models (model.generator, model.discriminator): their own rules
    if gan and not bad_sections & {"model", "train"}:
        problems += gan_spec.check(spec, raw)
    elif not gan:
        problems += gan_spec.misplaced(spec) if not bad_sections & {"model", "train"} else []
    if "train" not in bad_sections and not gan:
        problems += _check_train(spec)
    multi = not gan and "model" not in bad_sections and multi_spec.is_multi(spec)
    if multi:
        problems += multi_spec.check_inputs(spec["model"])
    if isinstance(spec.get("model", {}).get("layers"), list) and not gan and not block_problems:
        layers = spec["model"]["layers"]
        spec["model"]["layers"], found = check_layers(layers, multi_spec.input_names(spec) if multi else ("input",))
        problems += blocks.locate(found, origin[len(origin) - len(layers) :])  # an Input entry may be gone
    elif not gan and "model" in raw and "model" not in bad_sections and not block_problems:
        problems.append("model.layers: required key is missing")
    if not problems and multi and "data" not in bad_sections:
        problems += multi_spec.check_graph(spec)
    removed: list[str] = []  # include_top = false: the top's layers go, and with them the loss's head
    if not problems and not gan:
        found, removed = model_top.apply(spec)
        problems += found
    if not problems and not gan:
        if not removed and not spec["model"].get("outputs"):
            problems += losses.check_output(spec["train"]["loss"], spec["model"]["layers"][-1])
        problems += _check_monitors(spec)
    if not problems and isinstance(original.get("tune"), dict):  # nnctl tune's search space, on this spec
        from nnctl.tune_space import problems as tune_problems

        problems += tune_problems(original, spec, source)
    if problems:
        raise SpecError.many(source, problems, MAX_PROBLEMS)
    if base_dir is not None:
        _resolve_paths(spec, base_dir)
    return typed(spec, source, top_removed=tuple(removed))


def _filled(table: dict, cls, path: str, fill: bool = True) -> tuple[dict, list[str]]:
    """A section checked against its dataclass, with the defaults of absent keys filled in when ``fill``."""
    fields = fields_of(cls)
    out, problems = check_keys(table, fields, path)
    if fill:
        for key, f in fields.items():
            if key not in out and not f.required and f.default is not None:
                out[key] = copy.deepcopy(f.default)
    return out, problems


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


def _check_train(spec: dict) -> list[str]:
    train, problems = spec["train"], []
    loss_name = loss_config(train)[0]
    for i, m in enumerate(train["metrics"]):
        try:
            metrics.add_parametrised(m)  # top3_accuracy, f3
            name = train["metrics"][i] = metrics.METRICS.canonical(m)
        except LookupError as exc:
            problems.append(f"train.metrics[{i}]: {exc}")
            continue
        if metrics.METRICS.get(name).classification and not losses.is_classification(loss_name):
            problems.append(f"train.metrics[{i}]: {name} needs a classification loss, found loss {loss_name!r}")
    return (
        problems
        + schedules.check(train.get("lr_schedule"))
        + losses.check_class_weight(train.get("class_weight"), loss_name)
        + anomaly.check_spec(spec)
    )


def _check_monitors(spec: dict) -> list[str]:
    """Early stopping and plateau monitors must name a quantity the run logs (``val_`` only with validation)."""
    train = spec["train"]
    logged = multi_spec.logged(spec) if spec["model"].get("outputs") else {"loss", *train["metrics"]}
    has_val = spec["data"].get("validation") is not None
    problems = []
    for key in ("early_stopping", "lr_schedule"):
        table = train.get(key)
        if not isinstance(table, dict) or (key == "lr_schedule" and table.get("type") != "plateau"):
            continue
        monitor = str(table.get("monitor", "val_loss"))
        base = monitor.removeprefix("val_")
        try:
            base = metrics.METRICS.canonical(base) if base != "loss" else base
        except LookupError:
            pass
        known = sorted({*logged, *(f"val_{n}" for n in logged if has_val)})
        if base not in logged:
            problems.append(
                f"train.{key}.monitor: {monitor!r} is not logged by this run"
                f"{suggestion(monitor, known)}; expected one of {', '.join(known)}"
            )
        elif monitor.startswith("val_") and not has_val:
            problems.append(
                f"train.{key}.monitor: {monitor!r} needs validation data (data.validation = "
                f"{{ split = 0.2 }}); or monitor {base!r}"
            )
        else:
            table["monitor"] = f"val_{base}" if monitor.startswith("val_") else base
    return problems


def _named_config(value) -> tuple[str, dict]:
    """``"adam"`` or ``{type = "adam", ...}`` (or its ``Named``) -> (name, keyword arguments)."""
    if isinstance(value, Named):
        return value.type, dict(value.params)
    if isinstance(value, str):
        return value, {}
    return str(value["type"]), {k: v for k, v in value.items() if k != "type"}


def optimizer_config(train: dict) -> tuple[str, dict]:
    return _named_config(train["optimizer"])


def loss_config(train: dict) -> tuple[str, dict]:
    return _named_config(train["loss"])
