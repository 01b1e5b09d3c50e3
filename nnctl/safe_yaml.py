"""YAML specs read with a bounded loader: plain values only, and aliases that cannot expand without limit.

PyYAML's safe loader shares one object for every use of an alias, so a few hundred bytes of nested
aliases describe a value of billions of nodes; anything that walks it (validation, an error message,
``json.dumps`` into a checkpoint) then runs out of time and memory. Here the composed node graph is
measured before any value is built: its size as a tree (every alias counted in full) must stay under
``MAX_NODES``, recursive aliases are refused, and only the tags a spec needs are accepted (string,
number, boolean, null, list, table and ``<<`` merges); ``!!binary``, ``!!set``, dates and custom tags are
errors naming the line.
"""

from __future__ import annotations

from nnctl.errors import SpecError, quote

MAX_NODES = 100_000
_CORE = "tag:yaml.org,2002:"
ALLOWED_TAGS = {_CORE + t for t in ("str", "int", "float", "bool", "null", "seq", "map", "merge")}


def load_yaml(text: str, source: str) -> object:
    """The value of a YAML document, or SpecError naming ``source`` (and the line) when it is not a plain spec."""
    import yaml

    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check(node, source)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise SpecError(f"{source}: not valid YAML: {' '.join(str(exc).split())[:300]}") from None
    except RecursionError:
        raise SpecError(f"{source}: not valid YAML: nested too deeply") from None
    finally:
        loader.dispose()


def _children(node) -> list:
    import yaml

    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _where(source: str, node) -> str:
    return f"{source}: line {node.start_mark.line + 1}"


def _check(root, source: str) -> None:
    """Refuse unknown tags, recursive aliases and a tree size over MAX_NODES (iterative: no recursion limit)."""
    size: dict[int, int] = {}
    on_path: set[int] = set()
    stack = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            total = 1 + sum(size[id(c)] for c in _children(node))
            if total > MAX_NODES:
                raise SpecError(
                    f"{_where(source, node)}: aliases expand to more than {MAX_NODES} values; a spec "
                    f"is far smaller (refused to protect memory)"
                )
            size[key] = total
            on_path.discard(key)
            continue
        if key in size:
            continue
        if key in on_path:
            raise SpecError(f"{_where(source, node)}: a recursive alias (a value that contains itself)")
        if node.tag not in ALLOWED_TAGS:
            if node.tag == _CORE + "timestamp":
                raise SpecError(
                    f"{_where(source, node)}: {quote(node.value)} reads as a YAML date; quote it to keep it as text"
                )
            tag = "!!" + node.tag[len(_CORE) :] if node.tag.startswith(_CORE) else node.tag
            raise SpecError(
                f"{_where(source, node)}: YAML tag {quote(tag)} is not supported in a spec "
                f"(only strings, numbers, booleans, null, lists and tables)"
            )
        on_path.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in _children(node))
