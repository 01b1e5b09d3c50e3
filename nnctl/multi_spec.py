"""Checks of the spec's named inputs and outputs (``model.inputs``, ``model.outputs``, ``data.inputs/targets``).

A spec without them has one input named ``input`` and one output, the last layer, with ``train.loss``
and ``train.metrics``: the one-output case of the same path. Problems are one line each, collected
with the rest of the spec's.
"""

from __future__ import annotations

import copy

from nnctl import losses, metrics
from nnctl.errors import SpecError
from nnctl.fields import check_keys, fields_of, shown
from nnctl.registry import suggestion
from nnctl.spec_model import Spec
from nnctl.spec_sections import ModelInput, ModelOutput

INPUT = "input"  # graph.INPUT: the one unnamed input (graph imports the layers, which this module must not)


def is_multi(spec: dict | Spec) -> bool:
    """Whether the spec (a typed Spec, or a raw or stored dict) names its inputs or outputs."""
    if isinstance(spec, Spec):
        return bool(spec.model.inputs or spec.model.outputs)
    model = spec.get("model") or {}
    return bool(model.get("inputs") or model.get("outputs"))


def input_names(spec: dict | Spec) -> tuple:
    named = spec.model.inputs if isinstance(spec, Spec) else (spec.get("model") or {}).get("inputs")
    return tuple(named) if isinstance(named, dict) and named else (INPUT,)


def _name_problem(where: str, name) -> list[str]:
    if not isinstance(name, str) or not name or any(c in name for c in ":/ "):
        return [f"{where}: expected a name without ':', '/' or spaces, found {shown(name)}"]
    return []


def _table(where: str, entry, cls) -> tuple[dict, list[str]]:
    if not isinstance(entry, dict):
        return {}, [f"{where}: expected a table, found {shown(entry)}"]
    fields = fields_of(cls)
    out, problems = check_keys(entry, fields, where)
    for key, f in fields.items():
        if key not in out and not f.required and f.default is not None:
            out[key] = copy.deepcopy(f.default)
    return out, problems


def check_inputs(model: dict) -> list[str]:
    """``model.inputs``: a table of named inputs, each with its shape (and dtype); normalised in place."""
    named = model.get("inputs")
    if named is None:
        return []
    if not isinstance(named, dict) or not named:
        return [f"model.inputs: expected a table of named inputs {{name = {{shape = [...]}}}}, found {shown(named)}"]
    problems = []
    for name, entry in list(named.items()):
        where = f"model.inputs.{name}"
        problems += _name_problem(where, name)
        named[name], found = _table(where, entry, ModelInput)
        problems += found
    return problems


def check_graph(spec: dict) -> list[str]:
    """After the layers are checked: every named input is used, every output names a layer with a loss that
    suits it and metrics that suit the loss; data.inputs/targets name only declared inputs/outputs."""
    model, problems = spec["model"], []
    layers = [e for e in model.get("layers") or [] if isinstance(e, dict) and "name" in e]
    names = [e["name"] for e in layers]
    if model.get("inputs"):
        used = {str(r).partition(":")[0] for e in layers for r in e.get("inputs") or []}
        if layers and not layers[0].get("inputs"):
            used.add(next(iter(model["inputs"])))  # the first layer takes the first input by default
        for name in model["inputs"]:
            if name in names:
                problems.append(f"model.inputs.{name}: {name!r} is also a layer's name; rename one")
            elif name not in used:
                problems.append(f"model.inputs.{name}: never used; name it in a layer's inputs (inputs = [{name!r}])")
    problems += _check_outputs(spec, {e["name"]: e for e in layers})
    if spec["model"].get("outputs") and spec["train"].get("class_weight") is not None:
        problems.append("train.class_weight: not available with model.outputs (each output has its own loss)")
    for key, declared, what in (
        ("inputs", input_names(spec), "model.inputs"),
        ("targets", tuple(model.get("outputs") or ()), "model.outputs"),
    ):
        table = spec["data"].get(key)
        if table is None:
            continue
        if not isinstance(table, dict):
            problems.append(f"data.{key}: expected a table {{name = [columns] or 'array'}}, found {shown(table)}")
            continue
        for name, value in table.items():
            if name not in declared:
                problems.append(
                    f"data.{key}.{name}: not one of {what} ({', '.join(declared) or 'none'})"
                    f"{suggestion(str(name), declared)}"
                )
            elif not (isinstance(value, str) and value) and not (
                isinstance(value, list) and value and all(isinstance(c, (str, int)) for c in value)
            ):
                problems.append(
                    f"data.{key}.{name}: expected a list of CSV columns or an array name, found {shown(value)}"
                )
    return problems


def _check_outputs(spec: dict, by_name: dict) -> list[str]:
    named = spec["model"].get("outputs")
    if named is None:
        return []
    if not isinstance(named, dict) or not named:
        return [
            f"model.outputs: expected a table of named outputs {{name = {{layer = ..., loss = ...}}}}, "
            f"found {shown(named)}"
        ]
    problems = []
    for name, entry in list(named.items()):
        where = f"model.outputs.{name}"
        problems += _name_problem(where, name)
        named[name], found = _table(where, entry, ModelOutput)
        problems += found
        out = named[name]
        if found or "layer" not in out:
            continue
        if out["layer"] not in by_name:
            problems.append(
                f"{where}.layer: {out['layer']!r} is not a layer of model.layers"
                f"{suggestion(str(out['layer']), list(by_name))}"
            )
            continue
        loss_name = out["loss"] if isinstance(out["loss"], str) else out["loss"]["type"]
        for msg in losses.check_output(out["loss"], by_name[out["layer"]]):
            problems.append(msg.replace("model.layers[-1]", f"{where}.layer").replace("train.loss", f"{where}.loss"))
        for i, m in enumerate(out["metrics"]):
            try:
                metrics.add_parametrised(m)
                m = out["metrics"][i] = metrics.METRICS.canonical(m)
            except LookupError as exc:
                problems.append(f"{where}.metrics[{i}]: {exc}")
                continue
            if metrics.METRICS.get(m).classification and not losses.is_classification(loss_name):
                problems.append(f"{where}.metrics[{i}]: {m} needs a classification loss, found loss {loss_name!r}")
    return problems


def logged(spec: dict) -> set[str]:
    """The training quantities a multi-output run logs: loss and, per output, <name>_loss and <name>_<metric>
    (unprefixed for one output, as Keras)."""
    outputs = spec["model"].get("outputs") or {}
    if len(outputs) <= 1:
        only = next(iter(outputs.values()), {"metrics": spec["train"].get("metrics", [])})
        return {"loss", *only.get("metrics", [])}
    return {
        "loss",
        *(f"{n}_loss" for n in outputs),
        *(f"{n}_{m}" for n, o in outputs.items() for m in o.get("metrics", [])),
    }


def refuse_named(spec: dict | Spec, verb: str, source: str | None = None) -> None:
    """SpecError for a verb that takes only one unnamed input and one output (export, serve, lr-find...)."""
    if is_multi(spec):
        raise SpecError(
            f"{source or getattr(spec, 'source', 'spec')}: model.inputs/model.outputs: nnctl {verb} takes "
            f"a model with one input and one output; this one names its inputs or outputs (train, "
            f"evaluate and predict take it)"
        )
