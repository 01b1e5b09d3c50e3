"""The JSON Schema (draft 2020-12) of spec files, generated from the same fields the validator checks.

Sections come from ``nnctl.spec_sections``, layer, loss and optimizer keys from the classes'
signatures (``nnctl.fields``), names from the registries: it cannot drift from ``nnctl check``.
Names match as nnctl matches them (any case, ``_``/``-`` optional): an ``enum`` of the canonical
spellings for completion, or-ed with a pattern for validation. Keras spellings that nnctl rewrites
(``input_shape`` on a layer, ``lr``, ``validation_split``, ImageDataGenerator keys) are accepted too.
"""

from __future__ import annotations

import inspect

from nnctl import initializers, losses, metrics, optimizers, regularizers  # noqa: F401 - registers families
from nnctl.blocks import USE_SCHEMA
from nnctl.fields import REQUIRED, Field, fields_of, params_of
from nnctl.keras_names import AUGMENT_RENAMES
from nnctl.layers import LAYERS
from nnctl.ops import activations  # noqa: F401 - registers the activation family
from nnctl.registry import FAMILIES, normalise
from nnctl.spec_sections import SECTIONS, SUBTABLES, TuneParam

DRAFT = "https://json-schema.org/draft/2020-12/schema"
_JSON = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object"}


def name_pattern(names) -> str:
    """A regex matching every spelling nnctl accepts for ``names`` (case-free, separators optional)."""

    def one(name: str) -> str:
        return "[_ -]*".join(f"[{c}{c.upper()}]" if c.isalpha() else c for c in normalise(name))

    return "^[_ -]*(?:" + "|".join(one(n) for n in names) + ")[_ -]*$"


def names_schema(family: str) -> dict:
    registry = FAMILIES[family]
    accepted = [*registry.names(), *registry.aliases()]
    return {"type": "string", "anyOf": [{"enum": registry.names()}, {"pattern": name_pattern(accepted)}]}


def _numeric(f: Field, out: dict) -> None:
    r = f.range
    if r is None:
        return
    if r.lo is not None:
        out["exclusiveMinimum" if r.lo_open else "minimum"] = r.lo
    if r.hi is not None:
        out["exclusiveMaximum" if r.hi_open else "maximum"] = r.hi


def _jsonable(value):
    if isinstance(value, tuple):
        return list(value)
    return value if isinstance(value, (bool, int, float, str, list, dict, type(None))) else None


def field_schema(f: Field, nested: dict | None = None) -> dict:
    """Schema of one field: its JSON types with ranges, choices or registered names; default and doc."""
    if f.name_of is not None:
        options = [names_schema(f.name_of.family)]
        if f.name_of.tables:
            options.append(named_tables(f.name_of.family, f.name_of.default_type))
        out: dict = {"anyOf": options + ([{"type": "null"}] if f.nullable else [])}
    else:
        alternatives = []
        for t in f.types:
            if t is dict and nested is not None:
                alternatives.append(nested)
            elif t is str and f.choices:
                alternatives.append(
                    {"type": "string", "anyOf": [{"enum": list(f.choices)}, {"pattern": name_pattern(f.choices)}]}
                )
            elif t is str and f.pattern:
                alternatives.append({"type": "string", "pattern": f"^{f.pattern.regex}$"})
            elif t in (int, float):
                entry = {"type": _JSON[t]}
                _numeric(f, entry)
                alternatives.append(entry)
            elif t is list:
                entry = {"type": "array"}
                if f.item_types:
                    item = {"type": [_JSON.get(i, "string") for i in f.item_types]}
                    if f.item_range is not None:
                        _numeric(Field("item", range=f.item_range), item)
                    entry["items"] = item
                if f.min_items:
                    entry["minItems"] = f.min_items
                alternatives.append(entry)
            elif t in _JSON:
                alternatives.append({"type": _JSON[t]})
        if f.nullable:
            alternatives.append({"type": "null"})
        out = alternatives[0] if len(alternatives) == 1 else ({"anyOf": alternatives} if alternatives else {})
    if f.doc:
        out["description"] = f.doc
    if f.default is not REQUIRED and _jsonable(f.default) is not None:
        out["default"] = _jsonable(f.default)
    return out


def object_schema(
    fields: dict[str, Field],
    nested: dict | None = None,
    title: str = "",
    extra: dict | None = None,
    skip_required: tuple[str, ...] = (),
) -> dict:
    nested = nested or {}
    props = {k: field_schema(f, nested.get(k)) for k, f in fields.items()}
    props.update(extra or {})
    out: dict = {"type": "object", "properties": props, "additionalProperties": False}
    required = [k for k, f in fields.items() if f.required and k not in skip_required]
    if required:
        out["required"] = required
    if title:
        out["title"] = title
    return out


def named_tables(family: str, default_type: str | None) -> dict:
    """``{type = "<name>", ...keys}`` for each entry of a family (``type`` optional where a default exists)."""
    registry = FAMILIES[family]
    options = []
    for name, entry in registry.items():
        fields = params_of(entry) if isinstance(entry, type) else {}
        accepted = [name, *(alias for alias, canonical in registry.aliases().items() if canonical == name)]
        obj = object_schema(
            fields, title=f"{family} {name}", extra={"type": {"type": "string", "pattern": name_pattern(accepted)}}
        )
        if default_type is None or registry.canonical(default_type) != name:
            obj["required"] = ["type", *obj.get("required", [])]
        options.append(obj)
    return {"oneOf": options} if default_type is None else {"anyOf": options}


def layer_schemas() -> list[dict]:
    """One object schema per layer class: ``type`` (its registered names) and its constructor keys."""
    out = []
    for name, cls in LAYERS.items():
        fields = params_of(cls)
        extra = {
            "type": {"type": "string", "pattern": name_pattern([name]), "description": name},
            "input_shape": {"type": "array", "items": {"type": ["integer", "null"]}},
            "input_dim": {"type": "integer", "minimum": 1},
        }
        if "layer" in fields:
            extra["layer"] = {"$ref": "#/$defs/layer"}
        if "inputs" in fields:
            extra["inputs"] = {
                "type": ["array", "string"],
                "items": {"type": "string"},
                "description": "earlier layer names ('input' = the model input; 'name:1' = output 1)",
            }
        entry = object_schema(fields, title=name, extra=extra, skip_required=("input_dim",))
        entry["required"] = ["type", *entry.get("required", [])]
        doc = (inspect.getdoc(cls) or "").split("\n")[0]
        if doc:
            entry["description"] = doc
        out.append(entry)
    out.append(
        {
            "type": "object",
            "title": "Input",
            "additionalProperties": False,
            "required": ["type"],
            "properties": {
                "type": {"type": "string", "pattern": name_pattern(["Input", "InputLayer"])},
                "shape": {"type": "array"},
                "input_shape": {"type": "array"},
            },
        }
    )
    return out


def spec_schema() -> dict:
    """The whole JSON Schema of a spec file."""
    sub = {path: object_schema(fields_of(cls)) for path, (cls, _) in SUBTABLES.items()}
    aug = sub["data.augment"]["properties"]
    for old in AUGMENT_RENAMES:
        aug[old] = {"type": "number", "minimum": 0}
    aug["horizontal_flip"] = aug["vertical_flip"] = {"type": "boolean"}
    metric = names_schema("metric")

    def section(name: str, extra: dict | None = None) -> dict:
        nested = {key.split(".")[1]: schema for key, schema in sub.items() if key.startswith(name + ".")}
        return object_schema(fields_of(SECTIONS[name]), nested, extra=extra)

    data = section("data")
    data["properties"]["validation"] = {
        "anyOf": [
            {"type": "string"},
            sub["data.validation"],
            {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
        ]
    }
    model = section("model", {"layers": {"type": "array", "items": {"$ref": "#/$defs/layer"}, "minItems": 1}})
    train = section(
        "train",
        {
            "metrics": {"type": "array", "items": metric, "default": []},
            "validation_split": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
        },
    )
    for table in train["properties"]["optimizer"]["anyOf"][1]["anyOf"]:  # Keras's lr, rewritten to learning_rate
        table["properties"]["lr"] = {"type": "number", "exclusiveMinimum": 0}
    tune = section("tune")  # the space: dotted spec paths, each a TuneParam table
    tune["properties"]["space"] = {"type": "object", "additionalProperties": object_schema(fields_of(TuneParam))}
    top = object_schema(
        fields_of(SECTIONS[""]),
        {"data": data, "model": model, "train": train, "output": section("output"), "tune": tune},
    )
    top["required"] = ["data", "model"]
    return {
        "$schema": DRAFT,
        "title": "nnctl spec",
        "description": "A declarative nnctl training spec (TOML, YAML or JSON): data, model, train, output.",
        **top,
        "$defs": {"layer": {"oneOf": [*layer_schemas(), USE_SCHEMA]}},
    }
