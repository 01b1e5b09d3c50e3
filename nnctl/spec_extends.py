"""Spec reuse: ``extends = "base.toml"`` merges a base spec under the one that names it.

merged = deep_merge(base, child): tables merge key by key with the child's value winning; lists (the
layer list, metrics) and scalars are replaced whole. A base may extend another (the chain is read
from the named spec towards the root and refused on a cycle). Relative paths a base writes (``data.train``,
``output.checkpoint``, ...) resolve against the base's own folder, so a base works from any child.
Every key remembers the file it came from, so a validation error names that file. ``nnctl.toml_write.dump``
writes a resolved spec back as TOML (``nnctl check --print-spec``).
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable

from nnctl.errors import SpecError, quote

MAX_DEPTH = 32  # an extends chain longer than this is surely a mistake
# the spec keys holding file paths that nnctl resolves against the spec's folder (nnctl.spec._resolve_paths)
PATH_KEYS = (
    ("data", "train"),
    ("data", "test"),
    ("data", "validation"),
    ("data", "validation", "path"),
    ("model", "init_from"),
    ("output", "checkpoint"),
    ("output", "run_dir"),
    ("train", "tensorboard"),
)


def load_chain(path, load_file: Callable[[pathlib.Path], dict]) -> tuple[dict, dict[str, str]]:
    """Read ``path`` and the specs it extends: (merged dict without ``extends``, {dotted key: file it came from})."""
    chain: list[pathlib.Path] = []
    tables: list[tuple[pathlib.Path, dict]] = []
    here = pathlib.Path(path)
    while True:
        resolved = here.resolve()
        if resolved in chain:
            names = " -> ".join(str(p) for p in [*chain[chain.index(resolved) :], resolved])
            raise SpecError(f"{tables[-1][0]}: extends: cycle {names}")
        if len(chain) >= MAX_DEPTH:
            raise SpecError(f"{path}: extends: the chain is longer than {MAX_DEPTH} files")
        chain.append(resolved)
        table = load_file(here)
        parent = table.pop("extends", None)
        tables.append((here, table))
        if parent is None:
            break
        if not isinstance(parent, str) or not parent.strip():
            raise SpecError(f"{here}: extends: expected the path of a base spec (a string), found {quote(parent)}")
        nxt = pathlib.Path(parent).expanduser()
        nxt = nxt if nxt.is_absolute() else here.parent / nxt
        if not nxt.is_file():
            raise SpecError(f"{here}: extends: {nxt}: spec file not found")
        here = nxt
    top_dir = pathlib.Path(path).resolve().parent
    merged: dict = {}
    origins: dict[str, str] = {}
    for file, table in reversed(tables):  # root first, so each child overrides what it inherits
        if file.resolve().parent != top_dir:
            _rebase_paths(table, file.resolve().parent)
        _merge(merged, table, origins, str(file), "")
    return merged, origins


def _rebase_paths(table: dict, base: pathlib.Path) -> None:
    """Make the relative paths a base spec writes absolute against the base's folder."""
    for keys in PATH_KEYS:
        node: object = table
        for k in keys[:-1]:
            node = node.get(k) if isinstance(node, dict) else None
        if isinstance(node, dict) and isinstance(node.get(keys[-1]), str):
            p = pathlib.Path(node[keys[-1]]).expanduser()
            if not p.is_absolute():
                node[keys[-1]] = str((base / p).resolve())


def _merge(into: dict, table: dict, origins: dict, file: str, prefix: str) -> None:
    for key, value in table.items():
        where = f"{prefix}{key}"
        if key in ("optimizer", "loss") and isinstance(into.get(key), str) and isinstance(value, dict):
            into[key] = {"type": into[key]}  # base optimizer = "adam", child [train.optimizer] learning_rate = ...
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            origins[where] = file
            _merge(into[key], value, origins, file, where + ".")
            continue
        for old in [k for k in origins if k.startswith((where + ".", where + "["))]:
            del origins[old]  # a replaced table or list forgets where its parts came from
        into[key] = value
        origins[where] = file


def origin(origins: dict[str, str], field: str, default: str) -> str:
    """The file holding ``field`` (``model.layers[2].units``): that of its longest recorded prefix."""
    path = field
    while path:
        if path in origins:
            return origins[path]
        cut = max(path.rfind("."), path.rfind("["))
        path = path[:cut] if cut > 0 else ""
    return default


def relabel(exc: SpecError, source: str, origins: dict[str, str]) -> SpecError:
    """The same problems as ``exc`` (a ``SpecError.many`` naming ``source``), each naming the file its key came from."""
    lines = getattr(exc, "lines", None)
    if not lines or len(set(origins.values())) < 2:
        return exc
    out = []
    for line in lines:
        problem = line.removeprefix(f"{source}: ")
        field = problem.split(":", 1)[0].split(" ", 1)[0]
        out.append(f"{origin(origins, field, source)}: {problem}" if problem != line else line)
    err = SpecError("\nerror: ".join(out))
    err.lines = out  # type: ignore[attr-defined]  # as SpecError.many sets it
    return err
