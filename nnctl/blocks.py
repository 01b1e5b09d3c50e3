"""Repeated blocks: expand ``{ block = "res", filters = 64, repeat = 3 }`` uses into plain layer entries.

A block is declared once under ``model.blocks.<block>``: ``params`` (names every use must give),
``defaults`` (optional parameters and their values) and ``layers`` (entries, or uses of other blocks).
In a block's layers a string that is exactly ``"{p}"`` becomes the value of parameter ``p`` with its
type; a string with ``{p}`` inside (``"{name}_conv1"``) has it replaced as text. Every use also knows
``{name}`` (the use's name; ``repeat`` instances get ``{name}`` with ``{index}`` filled in, or
``<name>_<index>`` when the name has no ``{index}``), ``{index}`` (the instance number, from
``index_from``, default 1) and ``{input}`` (the layer feeding the instance: the previous entry, or
``input`` for the first). In the name of a block used inside a block, ``{index}`` is that inner
use's own instance number. Expansion happens before validation, so ``nnctl check`` shows every
expanded layer and a problem in one names the block, the field and the use it came from.
"""

from __future__ import annotations

import copy
import re

from nnctl.fields import shown
from nnctl.registry import suggestion

BUILTINS = ("name", "index", "input")
USE_KEYS = ("block", "name", "repeat", "index_from")
MAX_DEPTH = 8  # blocks using blocks: deeper than this is a cycle or a mistake
MAX_LAYERS = 10000  # an expansion larger than this is refused (a typo in repeat, not a network)
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
#: JSON Schema of a use in model.layers (its parameters are the block's own, checked by expand_model)
USE_SCHEMA = {
    "type": "object",
    "title": "block use",
    "required": ["block"],
    "description": "a use of a block of model.blocks: block, name, repeat, index_from and its parameters",
    "properties": {
        "block": {"type": "string"},
        "name": {"type": "string"},
        "repeat": {"type": "integer", "minimum": 1},
        "index_from": {"type": "integer", "minimum": 0},
    },
}


def expand_model(model) -> tuple[list[str], list[str | None]]:
    """Expand the block uses in ``model["layers"]`` in place: (problems, origin of every expanded entry).

    ``origin[i]`` describes where expanded entry ``i`` came from (None for an entry written in
    ``model.layers`` itself); ``locate`` rewrites problems about expanded entries with it."""
    if not isinstance(model, dict) or not isinstance(model.get("layers"), list):
        return [], []
    blocks = model.pop("blocks", None)
    if blocks is None:
        blocks = {}
    problems: list[str] = []
    if not isinstance(blocks, dict):
        return [f"model.blocks: expected a table of blocks, found {shown(blocks)}"], []
    for bname, block in blocks.items():
        problems += _check_block(bname, block)
    if problems:
        return problems, []
    out: list = []
    origin: list[str | None] = []
    for i, entry in enumerate(model["layers"]):
        if isinstance(entry, dict) and "block" in entry:
            prev = _last_name(out)
            found = _expand_use(entry, f"model.layers[{i}]", blocks, prev, out, origin, 0)
            problems += found
        else:
            out.append(entry)
            origin.append(None)
        if len(out) > MAX_LAYERS:
            return [f"model.layers[{i}]: the blocks expand to more than {MAX_LAYERS} layers"], []
    model["layers"] = out
    return problems, origin


def locate(problems: list[str], origin: list[str | None]) -> list[str]:
    """Problems about expanded entry ``model.layers[i]`` say which block layer and which use it came from."""

    def src(i: int) -> str | None:
        return origin[i] if i < len(origin) and origin[i] else None

    out = []
    for p in problems:
        m = re.match(r"model\.layers\[(\d+)\]", p)
        tail = ""
        if m and (o := src(int(m.group(1)))):
            block_where, _, use = o.partition("|")
            p, tail = block_where + p[m.end() :], f" (in {use})"
        p = re.sub(r"model\.layers\[(\d+)\]", lambda m: (src(int(m.group(1))) or m.group(0)).partition("|")[0], p)
        out.append(p + tail)
    return out


def _check_block(bname: str, block) -> list[str]:
    where = f"model.blocks.{bname}"
    if not isinstance(block, dict):
        return [f"{where}: expected a table with params, defaults and layers, found {shown(block)}"]
    problems = []
    for key in block:
        if key not in ("params", "defaults", "layers", "doc"):
            problems.append(
                f"{where}.{key}: unknown key for a block{suggestion(key, ['params', 'defaults', 'layers'])}"
                "; expected params, defaults, layers or doc"
            )
    params = block.get("params", [])
    if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
        problems.append(f"{where}.params: expected a list of parameter names, found {shown(params)}")
    defaults = block.get("defaults", {})
    if not isinstance(defaults, dict):
        problems.append(f"{where}.defaults: expected a table of parameter values, found {shown(defaults)}")
    names = [*(params if isinstance(params, list) else []), *(defaults if isinstance(defaults, dict) else [])]
    for p in names:
        if p in BUILTINS or p in USE_KEYS:
            problems.append(f"{where}.params: {p!r} is set by every use; choose another parameter name")
        elif not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(p)):
            problems.append(f"{where}.params: {shown(p)} is not a parameter name (letters, digits, _)")
    layers = block.get("layers")
    if not isinstance(layers, list) or not layers:
        problems.append(f"{where}.layers: expected a list of at least one layer, found {shown(layers)}")
    return problems


def _expand_use(
    use: dict, where: str, blocks: dict, prev: str | None, out: list, origin: list, depth: int
) -> list[str]:
    bname = use.get("block")
    if not isinstance(bname, str) or bname not in blocks:
        known = sorted(blocks)
        return [
            f"{where}.block: unknown block {shown(bname)}{suggestion(str(bname), known)}; "
            f"expected one of {', '.join(known) or '(no model.blocks declared)'}"
        ]
    if depth >= MAX_DEPTH:
        return [f"{where}.block: blocks nest deeper than {MAX_DEPTH} (does block {bname!r} use itself?)"]
    block = blocks[bname]
    params, defaults = block.get("params", []), block.get("defaults", {})
    known = [*params, *defaults]
    problems = []
    for key in use:
        if key not in USE_KEYS and key not in known:
            hint = suggestion(key, known) or f"; expected one of {', '.join([*known, *USE_KEYS[1:]])}"
            problems.append(f"{where}.{key}: unknown parameter of block {bname!r}{hint}")
    for p in params:
        if p not in use:
            problems.append(f"{where}.{p}: required parameter of block {bname!r} is missing")
    repeat, start = use.get("repeat", 1), use.get("index_from", 1)
    for key, value, lo in (("repeat", repeat, 1), ("index_from", start, 0)):
        if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= MAX_LAYERS:
            problems.append(f"{where}.{key}: expected an integer from {lo} to {MAX_LAYERS}, found {shown(value)}")
    name = use.get("name", bname)
    if not isinstance(name, str) or not name:
        problems.append(f"{where}.name: expected a non-empty name, found {shown(name)}")
    if problems:
        return problems
    values = {**defaults, **{k: v for k, v in use.items() if k in known}}
    for k in range(start, start + repeat):
        inst = name.replace("{index}", str(k)) if "{index}" in name else (name if repeat == 1 else f"{name}_{k}")
        env = {**values, "name": inst, "index": k, "input": prev}
        tag = f"{where}, block {bname!r}, name {inst!r}"
        for j, entry in enumerate(block["layers"]):
            bwhere = f"model.blocks.{bname}.layers[{j}]"
            nested = isinstance(entry, dict) and "block" in entry and isinstance(entry.get("name"), str)
            # a nested use's {index} numbers its own instances, so it is left for that use to fill
            entry = {**entry, "name": entry["name"].replace("{index}", "\0")} if nested else entry
            body, found = _substitute(copy.deepcopy(entry), env, bwhere, bname)
            if nested and not found:
                body["name"] = body["name"].replace("\0", "{index}")
            problems += found
            if found:
                continue
            if isinstance(body, dict) and "block" in body:
                problems += _expand_use(body, bwhere, blocks, _last_name(out), out, origin, depth + 1)
            else:
                out.append(body)
                origin.append(f"{bwhere}|{tag}")
            if len(out) > MAX_LAYERS:
                return problems
        prev = _last_name(out)
    return problems


def _substitute(value, env: dict, where: str, bname: str):
    """``value`` with every ``{p}`` filled from ``env``: (value, problems naming the field)."""
    if isinstance(value, dict):
        out, problems = {}, []
        for k, v in value.items():
            out[k], found = _substitute(v, env, f"{where}.{k}", bname)
            problems += found
        return out, problems
    if isinstance(value, list):
        items = [_substitute(v, env, f"{where}[{i}]", bname) for i, v in enumerate(value)]
        return [v for v, _ in items], [p for _, found in items for p in found]
    if not isinstance(value, str) or "{" not in value:
        return value, []
    problems = [
        f"{where}: unknown parameter {{{m}}} in block {bname!r}{suggestion(m, list(env))}; "
        f"expected one of {', '.join('{' + k + '}' for k in env)}"
        for m in _PLACEHOLDER.findall(value)
        if m not in env
    ]
    if not problems and "input" in _PLACEHOLDER.findall(value) and env["input"] is None:
        problems = [f"{where}: {{input}} in block {bname!r}: the layer before this use has no name; name it"]
    if problems:
        return value, problems
    whole = _PLACEHOLDER.fullmatch(value)
    if whole:
        return copy.deepcopy(env[whole.group(1)]), []
    return _PLACEHOLDER.sub(lambda m: str(env[m.group(1)]), value), []


def _last_name(entries: list) -> str | None:
    """The layer feeding the next entry: the last entry's name, ``input`` for none, None when it is unnamed."""
    if not entries:
        return "input"
    last = entries[-1]
    return str(last["name"]) if isinstance(last, dict) and isinstance(last.get("name"), str) else None
