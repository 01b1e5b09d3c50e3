"""The typed spec's building blocks: ``Table``, the base of every section class, and ``Named``, a registered name.

A validated spec is a tree of frozen dataclasses (``nnctl.spec_model.Spec`` at the root, the classes of
``nnctl.spec_sections`` below it). Each field is read as an attribute (``spec.train.early_stopping.patience``);
a change is ``dataclasses.replace``, never a write. ``to_plain`` turns a tree back into the JSON a checkpoint
stores: a key whose value is ``None`` by default is left out when ``None``, and in a table whose defaults are not
filled (``FILL = False``: ``data.augment``, ``data.missing``) a key equal to its default is left out.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from collections.abc import Mapping
from typing import Any, ClassVar


@dataclasses.dataclass(frozen=True)
class Named:
    """A registered entry and its keyword arguments: ``"adam"`` or ``{type = "adam", learning_rate = 0.01}``.

    ``table`` records which of the two the user wrote, so the stored spec reads back as written."""

    type: str
    params: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    table: bool = dataclasses.field(default=False, compare=False)

    @classmethod
    def of(cls, value) -> Named:
        """The Named of a validated value: a canonical name, a ``{type, ...}`` table, or a Named."""
        if isinstance(value, Named):
            return value
        if isinstance(value, str):
            return cls(value)
        table = dict(value)
        return cls(str(table.pop("type")), table, True)

    def plain(self) -> str | dict:
        """The value as the stored spec holds it."""
        return {"type": self.type, **self.params} if self.table or self.params else self.type


class Table:
    """Base of the typed spec's tables: fields read as attributes; ``to_plain`` gives the stored JSON."""

    FILL: ClassVar[bool] = True  # absent keys take the class's defaults; False: only the keys given are kept

    def present(self) -> list[str]:
        """The keys the stored spec has, in field order."""
        out = []
        for f in _fields(type(self)):  # type: ignore[arg-type]  # mypy: a dataclass type is hashable
            value, default = getattr(self, f.name), _default(f)
            if value is None and default is None:
                continue
            if not self.FILL and _same(value, default):
                continue
            out.append(f.name)
        return out

    def to_plain(self) -> dict:
        """This table as the JSON the checkpoint stores (plain dicts, lists and scalars)."""
        return {k: to_plain(getattr(self, k)) for k in self.present()}


@functools.cache
def _fields(cls) -> tuple[dataclasses.Field, ...]:
    return tuple(f for f in dataclasses.fields(cls) if f.init and f.metadata.get("stored", True))


def _default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _same(value, default) -> bool:
    if isinstance(default, Table) and isinstance(value, Table):
        return not value.present()
    return value == default and type(value) is type(default)


def to_plain(value):
    """A typed spec value as plain JSON data."""
    if isinstance(value, Table):
        return value.to_plain()
    if isinstance(value, Named):
        return value.plain()
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    return value


def table_class(annotation) -> type | None:
    """The Table class an annotation names (``Validation`` in ``str | Validation | None``), if any."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return table_class(typing.get_args(annotation)[0])
    if origin in (typing.Union, __import__("types").UnionType):
        for arg in typing.get_args(annotation):
            found = table_class(arg)
            if found is not None:
                return found
        return None
    return annotation if isinstance(annotation, type) and issubclass(annotation, Table) else None
