"""Turn the spec's ``model.layers`` list into a built ``Model``: validate entries, name and wire nodes.

Default names follow Keras (``dense``, ``dense_1``...). Keys a layer needs from the data (an
Embedding's ``input_dim`` from the tokenizer's vocabulary) come in through ``defaults``.
"""

from __future__ import annotations

import inspect
import json
import re

import numpy as np

from nnctl.errors import SpecError
from nnctl.graph import INPUT, Model, Node, parse_ref
from nnctl.layers import REGISTRY, layer_class
from nnctl.layers.base import layer_params
from nnctl.layers.core import Activation
from nnctl.ops import activations


def _snake(name: str) -> str:
    """Keras's default layer names: GlobalAveragePooling1D -> global_average_pooling1d, SimpleRNN -> simple_rnn."""
    return re.sub(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def _suggest(key, options):
    import difflib  # noqa: PLC0415

    close = difflib.get_close_matches(str(key), list(options), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def check_entry(where: str, entry, err, data_keys=("input_dim",)) -> dict:
    """Validate one layer entry's keys and value types against its class signature."""
    if not isinstance(entry, dict):
        err(f"{where}: expected a table with a 'type', found {json.dumps(entry)}")
    if "type" not in entry:
        err(f"{where}.type: required key is missing")
    cls = layer_class(entry["type"])
    if cls is None:
        names = sorted({c.__name__ for c in REGISTRY.values()})
        err(f"{where}.type: unknown layer type {entry['type']!r}{_suggest(entry['type'], names)}")
    params = layer_params(cls)
    out = {"type": cls.__name__}
    for key, value in entry.items():
        if key == "type":
            continue
        if key not in params:
            err(f"{where}.{key}: unknown key for {cls.__name__}{_suggest(key, params)}")
        default = params[key].default
        if "list" in str(params[key].annotation) and isinstance(value, list):
            default = None  # an int-or-list key (strides = 1 or [2, 2]) given as a list: the layer checks it
        elif default is inspect.Parameter.empty:  # required keys: read the type from the annotation
            default = {"int": 0, "float": 0.0, "bool": False}.get(str(params[key].annotation), default)
        if isinstance(default, bool) and not isinstance(value, bool):
            err(f"{where}.{key}: expected true or false, found {json.dumps(value)}")
        elif isinstance(default, (int, float)) and not isinstance(default, bool) and (
                not isinstance(value, (int, float)) or isinstance(value, bool)):
            err(f"{where}.{key}: expected a number, found {json.dumps(value)}")
        if key in ("activation", "recurrent_activation") and value is not None:
            if str(value).lower() not in activations.NAMES:
                err(f"{where}.{key}: unknown activation {value!r}{_suggest(str(value).lower(), activations.NAMES)}; "
                    f"expected one of {', '.join(activations.NAMES)}")
        if key == "layer":
            value = check_entry(f"{where}.layer", value, err)
        out[key] = value
    missing = [k for k, p in params.items() if p.default is inspect.Parameter.empty and k not in out
               and k not in data_keys]
    if missing:
        err(f"{where}.{missing[0]}: required key is missing for {cls.__name__}")
    return out


def check_layers(layers: list, err) -> list[dict]:
    """Validate every entry, give each a unique name, and check that ``inputs`` name earlier nodes."""
    if not layers:
        err("model.layers: expected at least one layer")
    seen: dict[str, int] = {}
    counts: dict[str, int] = {}
    out = []
    for i, entry in enumerate(layers):
        where = f"model.layers[{i}]"
        e = check_entry(where, entry, err)
        if "name" not in e:
            base = _snake(e["type"])
            n = counts.get(base, 0)
            while (name := base if n == 0 else f"{base}_{n}") in seen:
                n += 1
            counts[base] = n + 1
            e["name"] = name
        if not isinstance(e["name"], str) or not e["name"] or ":" in e["name"] or "/" in e["name"]:
            err(f"{where}.name: expected a non-empty name without ':' or '/', found {json.dumps(e['name'])}")
        if e["name"] in seen or e["name"] == INPUT:
            err(f"{where}.name: {e['name']!r} is already used" + (f" by model.layers[{seen[e['name']]}]"
                                                                  if e["name"] in seen else " by the model input"))
        inputs = e.get("inputs")
        if inputs is not None:
            if isinstance(inputs, str):
                inputs = e["inputs"] = [inputs]
            if not isinstance(inputs, list) or not inputs:
                err(f"{where}.inputs: expected a list of earlier layer names, found {json.dumps(inputs)}")
            for ref in inputs:
                name, _ = parse_ref(ref)
                if name != INPUT and name not in seen:
                    later = any(isinstance(x, dict) and x.get("name") == name for x in layers[i:])
                    why = "it comes later (inputs must name earlier layers)" if later else "no such layer"
                    err(f"{where}.inputs: {ref!r}: {why}{_suggest(name, [*seen, INPUT]) if not later else ''}")
        seen[e["name"]] = i
        out.append(e)
    return out


def build_model(spec: dict, input_shape, seed: int, defaults: dict | None = None, input_dtype=None) -> Model:
    """Instantiate, wire and build the spec's layers for ``input_shape`` (weights drawn from ``seed``)."""
    source = spec.get("_source", "spec")
    dtype = np.dtype(spec.get("dtype", "float32"))
    nodes = []
    prev = INPUT
    for i, entry in enumerate(spec["model"]["layers"]):
        where = f"{source}: model.layers[{i}] ({entry['name']})"
        kwargs = {k: v for k, v in entry.items() if k != "type"}
        cls = layer_class(entry["type"])
        for key, value in (defaults or {}).items():
            if key in layer_params(cls) and key not in kwargs:
                kwargs[key] = value
        refs = [parse_ref(r) for r in kwargs.get("inputs") or [prev]]
        try:
            layer = cls(**kwargs)
        except (TypeError, ValueError, KeyError) as exc:
            raise SpecError(f"{where}: {exc}") from None
        act = None
        name = getattr(layer, "activation", None)
        if layer.activation_is_node and name and str(name).lower() != "linear":
            alpha = getattr(layer, "alpha", None)
            act = Activation(activation=name, **({} if alpha is None else {"alpha": alpha}))
        nodes.append(Node(entry["name"], layer, refs, act, spec=entry))
        layer.name = entry["name"]
        prev = entry["name"]
    model = Model(nodes, tuple(input_shape), dtype=dtype, input_dtype=input_dtype)
    try:
        model.build(seed)
    except (ValueError, IndexError, TypeError) as exc:
        bad = next((n for n in nodes if n.output_shape is None), nodes[-1])
        i = nodes.index(bad)
        shapes = [list(s) if not isinstance(s, list) else s for s in bad.layer.input_shapes]
        raise SpecError(f"{source}: model.layers[{i}] ({bad.name}, {type(bad.layer).__name__}) on input shape "
                        f"{shapes[0] if len(shapes) == 1 else shapes}: {exc}") from None
    return model
