"""Spec dicts as TOML text that ``tomllib`` reads back to the same dict (``check --print-spec``, ``init``, ``import``).

Tables become ``[a.b]`` sections, lists of tables ``[[a.b]]`` entries (an entry's own tables inline, as a
wrapper's ``layer``), everything else ``key = value`` with JSON's string escapes (a JSON string is a TOML
basic string). TOML has no null: with ``skip_null`` a None value is left out (it means "absent" in a
resolved spec), otherwise it is refused, for specs where a null means something (a Bidirectional's
``merge_mode``).
"""

from __future__ import annotations

import json
import math
import re

from nnctl.errors import SpecError, quote

_BARE = re.compile(r"^[A-Za-z0-9_-]+$")
_NO_NULL = "has no TOML form (null): write the spec as .yaml or .json"


def key(k) -> str:
    return k if _BARE.match(str(k)) else json.dumps(str(k))


def value(v, skip_null: bool = True) -> str:
    """One value in TOML's inline form."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return ("nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")) if not math.isfinite(v) else repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(value(x, skip_null) for x in _kept(v, skip_null)) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{key(k)} = {value(x, skip_null)}" for k, x in _items(v, skip_null)) + " }"
    if v is None:
        raise SpecError(f"a null value {_NO_NULL}")
    raise SpecError(f"spec value {quote(v)} cannot be written as TOML")


def dump(spec: dict, skip_null: bool = True) -> str:
    """A whole spec as TOML text."""
    lines: list[str] = []
    _table(spec, [], lines, skip_null)
    return "\n".join(lines).lstrip("\n") + "\n"


def _kept(items, skip_null: bool) -> list:
    return [x for x in items if x is not None] if skip_null else list(items)


def _items(table: dict, skip_null: bool) -> list:
    return [(k, v) for k, v in table.items() if v is not None or not skip_null]


def _is_table_list(v) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)


def _table(table: dict, path: list[str], lines: list[str], skip_null: bool) -> None:
    nested = []
    for k, v in _items(table, skip_null):
        if isinstance(v, dict) or _is_table_list(v):
            nested.append((k, v))
        else:
            lines.append(f"{key(k)} = {value(v, skip_null)}")
    for k, v in nested:
        sub = [*path, key(k)]
        if isinstance(v, dict):
            if not v or any(x is not None and not (isinstance(x, dict) or _is_table_list(x)) for x in v.values()):
                lines += ["", f"[{'.'.join(sub)}]"]  # a table of tables only needs no header of its own
            _table(v, sub, lines, skip_null)
        else:
            for item in v:
                lines += ["", f"[[{'.'.join(sub)}]]"]
                lines += [f"{key(ik)} = {value(iv, skip_null)}" for ik, iv in _items(item, skip_null)]
