"""Turn the spec's ``model.layers`` list into a built ``Model``: validate entries, name and wire nodes.

Default names follow Keras (``dense``, ``dense_1``...). Keys a layer needs from the data (an
Embedding's ``input_dim`` from the tokenizer's vocabulary) come in through ``defaults``.
"""

from __future__ import annotations

import re

import numpy as np

from nnctl.errors import SpecError
from nnctl.fields import ConfigError, check_keys, params_of, shown
from nnctl.graph import INPUT, Model, Node, parse_ref
from nnctl.layers import layer_class
from nnctl.layers.core import Activation
from nnctl.registry import UnknownName, suggestion
from nnctl.spec_model import Spec


def _snake(name: str) -> str:
    """Keras's default layer names: GlobalAveragePooling1D -> global_average_pooling1d, SimpleRNN -> simple_rnn."""
    return re.sub(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def check_entry(where: str, entry, data_keys=("input_dim",)) -> tuple[dict, list[str]]:
    """Validate one layer entry against its class signature: (entry with the canonical type, problems)."""
    if not isinstance(entry, dict):
        return entry, [f"{where}: expected a table with a 'type', found {shown(entry)}"]
    if "type" not in entry:
        return entry, [f"{where}.type: required key is missing"]
    try:
        cls = layer_class(entry["type"])
    except UnknownName as exc:
        return entry, [f"{where}.type: {exc}"]
    body = {k: v for k, v in entry.items() if k != "type"}
    wrapped = "layer" in body  # a wrapper's inner layer is an entry of its own, checked below
    inner = body.pop("layer", None)
    out, problems = check_keys(
        body, params_of(cls), where, cls.__name__, optional=(*data_keys, "layer") if wrapped else data_keys
    )
    if wrapped:
        out["layer"], found = check_entry(f"{where}.layer", inner)
        problems += found
    return {"type": cls.__name__, **out}, problems


def _default_name(type_name: str, seen: dict, counts: dict) -> str:
    base = _snake(type_name)
    n = counts.get(base, 0)
    while (name := base if n == 0 else f"{base}_{n}") in seen:
        n += 1
    counts[base] = n + 1
    return name


def check_layers(layers: list, input_names: tuple = (INPUT,)) -> tuple[list[dict], list[str]]:
    """Validate every entry, give each a unique name, check that ``inputs`` name earlier nodes or the model's
    inputs (``input``, or the names of ``model.inputs``): (entries, problems)."""
    if not layers:
        return layers, ["model.layers: expected at least one layer"]
    seen: dict[str, int] = {}
    counts: dict[str, int] = {}
    out, problems = [], []
    for i, entry in enumerate(layers):
        where = f"model.layers[{i}]"
        e, found = check_entry(where, entry)
        problems += found
        if not isinstance(e, dict) or "type" not in e or found and any(f.startswith(f"{where}.type") for f in found):
            out.append(e)
            continue
        if "name" not in e:
            e["name"] = _default_name(e["type"], seen, counts)
        if not isinstance(e["name"], str) or not e["name"] or ":" in e["name"] or "/" in e["name"]:
            problems.append(f"{where}.name: expected a non-empty name without ':' or '/', found {shown(e['name'])}")
        elif e["name"] in seen or e["name"] in (INPUT, *input_names):
            by = f" by model.layers[{seen[e['name']]}]" if e["name"] in seen else " by the model input"
            problems.append(f"{where}.name: {e['name']!r} is already used{by}")
        problems += _check_inputs(where, e, layers, i, seen, input_names)
        seen[e["name"]] = i
        out.append(e)
    return out, problems


def _check_inputs(where: str, e: dict, layers: list, i: int, seen: dict, input_names: tuple = (INPUT,)) -> list[str]:
    inputs = e.get("inputs")
    if inputs is None:
        return []
    if isinstance(inputs, str):
        inputs = e["inputs"] = [inputs]
    if not isinstance(inputs, list) or not inputs:
        return [f"{where}.inputs: expected a list of earlier layer names, found {shown(inputs)}"]
    problems = []
    for ref in inputs:
        name, _ = parse_ref(ref)
        if name not in input_names and name not in seen:
            later = any(isinstance(x, dict) and x.get("name") == name for x in layers[i:])
            why = "it comes later (inputs must name earlier layers)" if later else "no such layer or model input"
            problems.append(
                f"{where}.inputs: {ref!r}: {why}{suggestion(name, [*seen, *input_names]) if not later else ''}"
            )
    return problems


def _nodes(entry: dict, i: int, layer, refs: list) -> list[Node]:
    """The graph nodes of entry ``i``: its layer, and an Activation node after it for an ``activation`` key
    the layer applies to its output (the Activation takes the entry's name, so references read its output)."""
    name = entry["name"]
    act = getattr(layer, "activation", None)
    if not layer.activation_follows or not act or str(act).lower() == "linear":
        return [Node(name, layer, refs, spec=entry, index=i)]
    alpha = getattr(layer, "alpha", None)
    activation = Activation(activation=act, name=name, **({} if alpha is None else {"alpha": alpha}))
    linear = f"{name}/linear"
    return [
        Node(linear, layer, refs, spec=entry, index=i),
        Node(name, activation, [(linear, None)], spec=entry, index=i, part_of=linear),
    ]


def build_model(
    spec: Spec, input_shape, seed: int, defaults: dict | None = None, input_dtype=None, input_grad: bool = False
) -> Model:
    """Instantiate, wire and build the spec's layers for ``input_shape`` (weights drawn from ``seed``)."""
    source, dtype, section = spec.source, np.dtype(spec.dtype), spec.model
    nodes = []
    named = section.inputs  # named inputs {name: ModelInput} (nnctl.multi_spec)
    prev = next(iter(named)) if named else INPUT
    for i, entry in enumerate(section.layers or ()):
        where = f"{source}: model.layers[{i}] ({entry['name']})"
        kwargs = {k: v for k, v in entry.items() if k != "type"}
        cls = layer_class(entry["type"])
        for key, value in (defaults or {}).items():
            if key in params_of(cls) and key not in kwargs:
                kwargs[key] = value
        refs = [parse_ref(r) for r in kwargs.get("inputs") or [prev]]
        try:
            layer = cls(**kwargs)
        except ConfigError as exc:
            raise SpecError.many(source, [f"model.layers[{i}].{p}" for p in exc.problems]) from None
        except (TypeError, ValueError, KeyError) as exc:
            raise SpecError(f"{where}: {exc}") from None
        nodes += _nodes(entry, i, layer, refs)
        prev = entry["name"]
    inputs = {k: (v.shape, v.dtype or dtype) for k, v in named.items()} if named else None
    outputs = [v.layer for v in section.outputs.values()] if section.outputs else None
    model = Model(
        nodes,
        tuple(input_shape),
        dtype=dtype,
        input_dtype=input_dtype,
        input_grad=input_grad,
        inputs=inputs,
        outputs=outputs,
    )
    try:
        model.build(seed)
    except (ValueError, IndexError, TypeError) as exc:
        bad = next((n for n in nodes if n.output_shape is None), nodes[-1])
        i = bad.index
        shapes = [list(s) if not isinstance(s, list) else s for s in bad.layer.input_shapes]
        raise SpecError(
            f"{source}: model.layers[{i}] ({bad.layer.name}, {type(bad.layer).__name__}) on input shape "
            f"{shapes[0] if len(shapes) == 1 else shapes}: {exc}"
        ) from None
    return model
