"""``nnctl schema``: the JSON Schema (draft 2020-12) of spec files, for editors and CI checks.

Generated from the validator's own tables (``nnctl.spec.SCHEMA``/``NESTED``) and registries (layers,
losses, optimizers, metrics, activations), so it cannot drift from what ``nnctl check`` accepts.
Names nnctl reads case-insensitively (layer types, losses, choices) are an ``enum`` of the canonical
spellings, for completion, or-ed with a case-insensitive pattern, for validation.
"""

from __future__ import annotations

import inspect
import json
import re

import typer

DRAFT = "https://json-schema.org/draft/2020-12/schema"
JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object"}
ANNOTATION_TYPES = {"int": "integer", "float": "number", "bool": "boolean", "str": "string", "dict": "object",
                    "None": "null", "list": "array", "tuple": "array"}


def _ci(name: str) -> str:
    return "".join(f"[{c.lower()}{c.upper()}]" if c.lower() != c.upper() else re.escape(c) for c in name)


def names_schema(names, canonical=None) -> dict:
    """A string equal to one of ``names`` in any letter case (nnctl lowercases before it looks names up)."""
    names = list(dict.fromkeys(names))
    shown = list(canonical) if canonical is not None else names
    first = {"const": shown[0]} if len(shown) == 1 else {"enum": shown}
    return {"type": "string", "anyOf": [first, {"pattern": "^(?:" + "|".join(_ci(n) for n in names) + ")$"}]}


def _types(types) -> list[str]:
    out = list(dict.fromkeys(JSON_TYPES[t] for t in types))
    if "integer" in out and "number" in out:  # a JSON number already covers integers
        out.remove("integer")
    return out


def _jsonable(value):
    if isinstance(value, tuple):
        value = list(value)
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return None
    return value


def _type_entry(types: list[str]) -> dict:
    return {"type": types[0] if len(types) == 1 else types} if types else {}


def field_schema(field, nested: dict | None = None) -> dict:
    """Schema of one ``spec.Field``: JSON types, enum of choices, default, description."""
    if nested is not None and dict in field.types:
        obj = table_schema(nested)
        others = [t for t in field.types if t is not dict]
        out = {"anyOf": [_type_entry(_types(others)), obj]} if others else obj
    elif field.choices:
        out = names_schema(field.choices)
    else:
        out = _type_entry(_types(field.types))
    if field.doc:
        out["description"] = field.doc
    default = _jsonable(field.default)
    if default is not None:
        out["default"] = default
    return out


def table_schema(fields: dict, overrides: dict | None = None, doc: str = "") -> dict:
    """An object of the given fields; unknown keys are errors, as in ``spec._check_table``."""
    props = {k: (overrides or {}).get(k) or field_schema(f) for k, f in fields.items()}
    out = {"type": "object", "properties": props, "additionalProperties": False}
    required = [k for k, f in fields.items() if f.required]
    if required:
        out["required"] = required
    if doc:
        out["description"] = doc
    return out


def param_schema(p: inspect.Parameter) -> dict:
    """Schema of a constructor keyword: types from its annotation (else its default), and its default."""
    ann = p.annotation if isinstance(p.annotation, str) else getattr(p.annotation, "__name__", "")
    types: list[str] = []
    if ann and p.annotation is not inspect.Parameter.empty:
        for part in ann.split("|"):
            t = ANNOTATION_TYPES.get(part.strip().split("[")[0])
            if t is None:  # an annotation we cannot map: leave the value unconstrained
                types = []
                break
            types.append(t)
    elif p.default is not inspect.Parameter.empty and p.default is not None:
        types = [JSON_TYPES.get(type(p.default), "")] if type(p.default) in JSON_TYPES else []
        if types == ["integer"]:
            types = ["number"]  # the validator accepts any number where the default is a number
    if p.default is None and types and "null" not in types:
        types.append("null")
    types = list(dict.fromkeys(types))
    if "integer" in types and "number" in types:
        types.remove("integer")
    out = _type_entry(types)
    if p.default is not inspect.Parameter.empty:
        default = _jsonable(p.default)
        if default is not None:
            out["default"] = default
    return out


def _registry_objects(registry: dict, where: str) -> list[dict]:
    """``{type = "<name>", ...keywords}`` for each name of a loss or optimizer registry."""
    from nnctl.layers.base import layer_params  # noqa: PLC0415

    out = []
    for name, cls in sorted(registry.items()):
        props = {"type": names_schema([name])}
        props.update({k: param_schema(p) for k, p in layer_params(cls).items()})
        out.append({"type": "object", "title": f"{where} {name}", "properties": props, "required": ["type"],
                    "additionalProperties": False})
    return out


def _named(registry: dict, where: str, doc: str, default) -> dict:
    """A name (``"adam"``) or a table with ``type`` and the class's keywords."""
    return {"description": doc, "default": default,
            "anyOf": [names_schema(sorted(registry)), {"oneOf": _registry_objects(registry, where)}]}


def layer_schemas() -> list[dict]:
    """One object schema per layer class: ``type`` (its registered names), and its constructor keywords."""
    from nnctl.layers import REGISTRY  # noqa: PLC0415
    from nnctl.layers.base import layer_params  # noqa: PLC0415
    from nnctl.ops import activations  # noqa: PLC0415

    by_class: dict = {}
    for key, cls in REGISTRY.items():
        by_class.setdefault(cls, []).append(key)
    out = []
    for cls, keys in sorted(by_class.items(), key=lambda kv: kv[0].__name__):
        props = {"type": names_schema([cls.__name__, *keys], canonical=[cls.__name__])}
        required = ["type"]
        for key, p in layer_params(cls).items():
            if key == "layer":  # wrappers (Bidirectional) hold another layer entry
                props[key] = {"$ref": "#/$defs/layer"}
            elif key == "inputs":  # the validator also takes one name as a plain string
                props[key] = {"type": ["array", "string"], "items": {"type": "string"},
                              "description": "earlier layer names ('input' = the model input; 'name:1' = output 1)"}
            elif key in ("activation", "recurrent_activation"):
                act = names_schema(activations.NAMES)
                props[key] = {"anyOf": [act, {"type": "null"}]} if p.default is None else act
                if p.default not in (None, inspect.Parameter.empty):
                    props[key]["default"] = p.default
            else:
                props[key] = param_schema(p)
            if p.default is inspect.Parameter.empty and key != "input_dim":  # input_dim may come from the data
                required.append(key)
        doc = (inspect.getdoc(cls) or "").split("\n")[0]
        entry = {"type": "object", "title": cls.__name__, "properties": props, "required": required,
                 "additionalProperties": False}
        if doc:
            entry["description"] = doc
        out.append(entry)
    return out


def spec_schema() -> dict:
    """The whole JSON Schema of a spec file."""
    from nnctl import losses, metrics, optimizers  # noqa: PLC0415
    from nnctl.spec import NESTED, SCHEMA  # noqa: PLC0415

    top, data, model, train, output = (SCHEMA[k] for k in ("", "data", "model", "train", "output"))

    def with_nested(section: str, fields: dict) -> dict:
        return {k: field_schema(f, NESTED[f"{section}.{k}"]) for k, f in fields.items() if f"{section}.{k}" in NESTED}

    metric_names = [*metrics.NAMES, *metrics.ALIASES]
    train_overrides = {
        **with_nested("train", train),
        "loss": _named(losses.LOSSES, "loss", train["loss"].doc, train["loss"].default),
        "optimizer": _named(optimizers.OPTIMIZERS, "optimizer", train["optimizer"].doc, train["optimizer"].default),
        "metrics": {"type": "array", "items": names_schema(metric_names, canonical=metrics.NAMES),
                    "description": train["metrics"].doc, "default": []},
        "epochs": {"type": "integer", "minimum": 0, "default": train["epochs"].default},
        "batch_size": {"anyOf": [{"type": "integer", "minimum": 1}, names_schema(["full"])],
                       "description": train["batch_size"].doc, "default": train["batch_size"].default},
    }
    model_overrides = {
        "input_shape": {"type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 1,
                        "description": model["input_shape"].doc},
        "layers": {"type": "array", "items": {"$ref": "#/$defs/layer"}, "minItems": 1,
                   "description": model["layers"].doc},
    }
    sections = {
        "data": table_schema(data, with_nested("data", data), top["data"].doc),
        "model": table_schema(model, model_overrides, top["model"].doc),
        "train": table_schema(train, train_overrides, top["train"].doc),
        "output": table_schema(output, None, top["output"].doc),
    }
    schema = table_schema(top, sections)
    return {"$schema": DRAFT, "title": "nnctl spec",
            "description": "A declarative nnctl training spec (TOML, YAML or JSON): data, model, train, output.",
            **schema, "$defs": {"layer": {"oneOf": layer_schemas()}}}


def register(app: typer.Typer, reports_errors) -> None:
    @app.command()
    @reports_errors
    def schema():
        """Print the JSON Schema (draft 2020-12) of spec files, for editor completion and validation."""
        print(json.dumps(spec_schema(), indent=2))
