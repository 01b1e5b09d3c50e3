"""Spec fields derived from Python signatures: one derivation serves validation, ``check`` and ``schema``.

A key's type, default, range and choices come from the annotation of a constructor parameter or a
dataclass field, e.g. ``units: PositiveInt`` or ``rate: Annotated[float, Range(0, 1, hi_open=True)]``.
``check(field, value, path)`` returns the value (normalised: ints accepted as floats, names lower-cased
where choices apply) and the problems found, one line each, so callers can report every error at once.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import re
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any

from nnctl.errors import quote
from nnctl.registry import FAMILIES, UnknownName, suggestion
from nnctl.spec_table import Named, Table

REQUIRED = inspect.Parameter.empty


@dataclass(frozen=True)
class Range:
    """Numeric bounds: lo <= x <= hi, with either end open."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def holds(self, x: float) -> bool:
        if self.lo is not None and (x <= self.lo if self.lo_open else x < self.lo):
            return False
        return not (self.hi is not None and (x >= self.hi if self.hi_open else x > self.hi))

    def text(self, integer: bool) -> str:
        if integer and self.lo is not None and self.hi is None:
            return {0: "a non-negative integer", 1: "a positive integer"}.get(
                int(self.lo), f"an integer >= {self.lo:g}"
            )
        if self.lo == 0 and self.hi is None:
            return "a positive number" if self.lo_open else "a non-negative number"
        lo = "(" if self.lo_open else "["
        hi = ")" if self.hi_open else "]"
        noun = "an integer" if integer else "a number"
        if self.hi is None:
            return f"{noun} {'>' if self.lo_open else '>='} {self.lo:g}"
        if self.lo is None:
            return f"{noun} {'<' if self.hi_open else '<='} {self.hi:g}"
        return f"{noun} in {lo}{self.lo:g}, {self.hi:g}{hi}"


@dataclass(frozen=True)
class Choices:
    """The value is one of these strings (matched case-insensitively)."""

    values: tuple[str, ...]


@dataclass(frozen=True)
class Pattern:
    """The string matches ``regex`` in full; ``text`` says what that means to a user."""

    regex: str
    text: str


@dataclass(frozen=True)
class MinItems:
    """A list value has at least ``n`` items."""

    n: int


@dataclass(frozen=True)
class Doc:
    text: str


@dataclass(frozen=True)
class NameOf:
    """The value names an entry of a registered family: a string, or (``tables``) ``{type = ..., keys}``.

    ``default_type`` is the entry a table without ``type`` means (``{learning_rate = 0.1}`` keeps adam)."""

    family: str
    tables: bool = True
    default_type: str | None = None


PositiveInt = Annotated[int, Range(1)]
NonNegativeInt = Annotated[int, Range(0)]
PositiveFloat = Annotated[float, Range(0, lo_open=True)]
NonNegativeFloat = Annotated[float, Range(0)]
Rate = Annotated[float, Range(0, 1, hi_open=True)]  # dropout-style rates: 1.0 would zero everything
Fraction = Annotated[float, Range(0, 1)]
Seed = Annotated[int, Range(0, 2**32 - 1)]
# A path a user names: "" would silently mean the default (or the current folder), so it is refused.
Path = Annotated[str, Pattern(r"[\s\S]*\S[\s\S]*", "a file or folder path")]
# A name that becomes a file name: no separator, no leading dot, so runs/<name>.h5 stays inside runs/.
FileStem = Annotated[
    str,
    Pattern(
        r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,99}",
        "a file name of letters, digits, '_', '-', '.', '+' (no '/', not starting with '.')",
    ),
]


@dataclass(frozen=True)
class Field:
    """One spec key: accepted Python types, default (REQUIRED when none), range, choices, list item types."""

    name: str
    types: tuple[type, ...] = ()  # () = anything
    default: Any = REQUIRED
    range: Range | None = None
    choices: tuple[str, ...] | None = None
    item_types: tuple[type, ...] = ()  # for list values
    item_range: Range | None = None
    nullable: bool = False
    doc: str = ""
    name_of: NameOf | None = None
    pattern: Pattern | None = None
    min_items: int = 0

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


def _flatten(annotation) -> tuple[list, list]:
    """(base types, metadata) of an annotation, unions and Annotated unpacked."""
    meta: list = []
    if typing.get_origin(annotation) is Annotated:
        base, *extra = typing.get_args(annotation)
        meta.extend(extra)
        annotation = base
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        bases: list = []
        for arg in typing.get_args(annotation):
            b, m = _flatten(arg)
            bases.extend(b)
            meta.extend(m)
        return bases, meta
    return [annotation], meta


def field_from(name: str, annotation, default=REQUIRED, doc: str = "") -> Field:
    """The Field of one annotated parameter."""
    bases, meta = _flatten(annotation)
    accepted: list[type] = []
    item_types: tuple[type, ...] = ()
    item_range = None
    nullable = default is None
    for b in bases:
        if b is type(None):
            nullable = True
            continue
        origin = typing.get_origin(b) or b
        if isinstance(origin, type) and issubclass(origin, Table):  # a sub-table, written as a table
            accepted.append(dict)
        elif origin is Named:  # a registered name, written as its name or a {type = ...} table
            accepted.extend((str, dict))
        elif origin in (list, tuple):
            accepted.append(list)
            args = [a for a in typing.get_args(b) if a is not Ellipsis]
            if args:
                ib, imeta = _flatten(args[0])
                found = [o if o in (list, tuple) else t for t in ib if isinstance(o := typing.get_origin(t) or t, type)]
                item_types = tuple(dict.fromkeys([*item_types, *(list if t is tuple else t for t in found)]))
                item_range = item_range or next((m for m in imeta if isinstance(m, Range)), None)
        elif origin in (dict, typing.Mapping) or b is typing.Any:
            accepted.append(dict if origin is not typing.Any else object)
        elif isinstance(origin, type):
            accepted.append(origin)
    if object in accepted:
        accepted = []
    rng = next((m for m in meta if isinstance(m, Range)), None)
    choices = next((m.values for m in meta if isinstance(m, Choices)), None)
    doc = next((m.text for m in meta if isinstance(m, Doc)), doc)
    name_of = next((m for m in meta if isinstance(m, NameOf)), None)
    pattern = next((m for m in meta if isinstance(m, Pattern)), None)
    min_items = next((m.n for m in meta if isinstance(m, MinItems)), 0)
    return Field(
        name,
        tuple(dict.fromkeys(accepted)),
        default,
        rng,
        choices,
        item_types,
        item_range,
        nullable,
        doc,
        name_of,
        pattern,
        min_items,
    )


@functools.cache
def params_of(cls) -> dict[str, Field]:
    """The keys a class accepts: keyword parameters of ``__init__``, and of its bases' while it passes ``**kw`` on."""
    chain: list[dict[str, Field]] = []
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        if klass is object:
            break
        try:
            hints = typing.get_type_hints(init, include_extras=True)
        except Exception:  # noqa: BLE001 - an annotation that does not evaluate: accept any type
            hints = {}
        params = inspect.signature(init).parameters.values()
        chain.append(
            {
                p.name: field_from(p.name, hints.get(p.name, typing.Any), p.default)
                for p in params
                if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
            }
        )
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    out: dict[str, Field] = {}
    for part in reversed(chain):  # base keys first, a subclass's own spelling of a key wins
        out.update(part)
    return out


def fields_of(datacls) -> dict[str, Field]:
    """The keys of a spec section written as a dataclass (``field(metadata={"doc": ...})`` documents one)."""
    hints = typing.get_type_hints(datacls, include_extras=True)
    out = {}
    for f in dataclasses.fields(datacls):
        if f.name.startswith("_") or not f.init:
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = REQUIRED
        if isinstance(default, (Table, Named)):  # a typed default as a user writes it: {} is the table of defaults
            default = {} if isinstance(default, Table) else default.plain()
        out[f.name] = field_from(f.name, hints[f.name], default, f.metadata.get("doc", ""))
    return out


def shown(value, limit: int = 40) -> str:
    """A spec value as a user wrote it, cut to ``limit`` characters: ``errors.quote`` of a spec value."""
    return quote(value, limit, as_written=True)


_NOUN = {bool: "true or false", int: "an integer", float: "a number", str: "a string", list: "a list", dict: "a table"}


def expectation(f: Field) -> str:
    """What a field accepts, in words (``a positive integer``, ``a number in [0, 1)``, ``one of a, b``)."""
    integer = int in f.types and float not in f.types
    if f.choices:
        numeric = [f.range.text(integer)] if f.range is not None and (int in f.types or float in f.types) else []
        return " or ".join([*numeric, "one of " + ", ".join(f.choices)])
    if f.range is not None and (int in f.types or float in f.types):
        words = [f.range.text(integer)]
        words += [_NOUN[t] for t in f.types if t not in (int, float, bool) and t in _NOUN]
        return " or ".join(words)
    if list in f.types and f.item_types:
        item = (
            f.item_range.text(int in f.item_types and float not in f.item_types)
            if f.item_range
            else _NOUN.get(f.item_types[0], "values")
        )
        words = [_NOUN[t] for t in f.types if t is not list and t in _NOUN] + [
            f"a list of {item.removeprefix('a ').removeprefix('an ')}s"
        ]
        return " or ".join(words)
    return " or ".join(dict.fromkeys(_NOUN.get(t, t.__name__) for t in f.types)) or "a value"


def _is(value, t: type) -> bool:
    if t is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if t is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if t is list:
        return isinstance(value, (list, tuple))  # defaults such as strides = (1, 1) are tuples
    return isinstance(value, t)


def check_name(name_of: NameOf, value, path: str) -> tuple[Any, list[str]]:
    """Resolve a registered name (``"HeNormal"`` -> ``"he_normal"``) or a ``{type = ..., keys}`` table."""
    registry = FAMILIES[name_of.family]
    if isinstance(value, str):
        try:
            return registry.canonical(value), []
        except UnknownName as exc:
            return value, [f"{path}: {exc}"]
    if not isinstance(value, dict) or not name_of.tables:
        return value, [
            f"{path}: expected a {name_of.family} name{' or a table' if name_of.tables else ''}, found {shown(value)}"
        ]
    table = dict(value)
    kind = table.pop("type", name_of.default_type)
    if kind is None:
        return value, [f"{path}.type: required key is missing"]
    try:
        canonical = registry.canonical(kind)
    except UnknownName as exc:
        return value, [f"{path}.type: {exc}"]
    entry = registry.get(canonical)
    fields = params_of(entry) if isinstance(entry, type) else getattr(entry, "fields", {})
    checked, problems = check_keys(table, fields, path, canonical)
    return {"type": canonical, **checked}, problems


def check(f: Field, value, path: str) -> tuple[Any, list[str]]:
    """(normalised value, problems) for ``value`` given at ``path``."""
    if value is not None and f.name_of is not None:
        return check_name(f.name_of, value, path)
    if value is None:
        return value, [] if f.nullable else [f"{path}: expected {expectation(f)}, found null"]
    if f.types and not any(_is(value, t) for t in f.types):
        return value, [f"{path}: expected {expectation(f)}, found {shown(value)}"]
    if isinstance(value, float) and not math.isfinite(value):
        return value, [f"{path}: expected {expectation(f)}, found {shown(value)}"]
    if f.choices and isinstance(value, str):
        low = value.lower()
        if low not in f.choices:
            return value, [
                f"{path}: expected one of {', '.join(f.choices)}, found {shown(value)}{suggestion(low, f.choices)}"
            ]
        return low, []
    if f.pattern is not None and isinstance(value, str) and not re.fullmatch(f.pattern.regex, value):
        return value, [f"{path}: expected {f.pattern.text}, found {shown(value)}"]
    if f.range is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
        if not f.range.holds(value):
            return value, [f"{path}: expected {expectation(f)}, found {shown(value)}"]
    if isinstance(value, list) and len(value) < f.min_items:
        return value, [f"{path}: expected a list of at least {f.min_items}, found {shown(value)}"]
    if isinstance(value, list) and f.item_types:
        for i, item in enumerate(value):
            numeric = isinstance(item, (int, float)) and not isinstance(item, bool)
            if not any(_is(item, t) for t in f.item_types) or (
                f.item_range is not None and numeric and not f.item_range.holds(item)
            ):
                return value, [f"{path}: expected {expectation(f)}, found {shown(value)} (item {i})"]
    if float in f.types and int not in f.types and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    return value, []


def check_keys(
    table: dict, fields: dict[str, Field], path: str, owner: str = "", optional=()
) -> tuple[dict, list[str]]:
    """Check every key of ``table`` against ``fields``: (checked values, problems).

    Required keys must be there, except those in ``optional`` (supplied later, e.g. from the data)."""
    out, problems = {}, []
    for key, value in table.items():
        where = f"{path}.{key}" if path else str(key)
        if key not in fields:
            problems.append(f"{where}: unknown key{' for ' + owner if owner else ''}{suggestion(str(key), fields)}")
            continue
        value, bad = check(fields[key], value, where)
        problems += bad
        out[key] = value
    for key, f in fields.items():
        if f.required and key not in table and key not in optional:
            where = f"{path}.{key}" if path else key
            problems.append(f"{where}: required key is missing{' for ' + owner if owner else ''}")
    return out, problems


class ConfigError(ValueError):
    """Arguments a constructor refuses: ``problems`` holds one line per bad key (``units: expected ...``)."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


def validate_kwargs(cls, kwargs: dict) -> None:
    """Raise ConfigError unless every keyword is a known, well-typed, in-range parameter of ``cls``."""
    fields = params_of(cls)
    _, problems = check_keys(kwargs, fields, "", cls.__name__, optional=fields)  # Python reports missing ones
    if problems:
        raise ConfigError(problems)
