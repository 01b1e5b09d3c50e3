"""The model graph as Graphviz DOT text (written here, no dependency), and as SVG/PNG through ``dot``.

One DOT node per graph node (plus the model input), labelled with its name, type, output shape,
parameter count and FLOPs; one edge per input reference, labelled with the output index when it
takes one output of a multi-output node, so branches and merges are drawn as the graph they are.
"""

from __future__ import annotations

import shutil
import subprocess

from nnctl.errors import NnctlError

FORMATS = ("dot", "svg", "png")


class GraphvizMissing(NnctlError):
    """``--format svg|png`` without Graphviz's ``dot`` program on PATH."""


def _quote(text: str) -> str:
    """A DOT double-quoted string: backslash and quote escaped, newlines as DOT's centred ``\\n``."""
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _shape(shape) -> str:
    if isinstance(shape, list) and shape and isinstance(shape[0], list):
        return " ".join(_shape(s) for s in shape)
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"


def to_dot(rows: list[dict], input_shape, title: str = "model", inputs: dict | None = None) -> str:
    """DOT text of a layer table (``inspect_cmds.layer_table`` rows: name, type, output_shape, params, flops, inputs);
    ``inputs`` {name: shape} replaces the one ``input`` of ``input_shape`` for named inputs."""
    lines = [
        f"digraph {_quote(title)} {{",
        "  rankdir=TB;",
        '  node [shape=box, style="rounded", fontname="Helvetica", fontsize=10];',
        '  edge [fontname="Helvetica", fontsize=9];',
    ]
    for name, shape in (inputs or {"input": input_shape}).items():
        lines.append(f"  {_quote(name)} [label={_quote(name + chr(10) + _shape([None, *shape]))}, shape=ellipse];")
    for r in rows:
        parts = [r["name"], r["type"], _shape(r["output_shape"]), f"{r['params']:,} params"]
        if r.get("flops") is not None:
            parts.append(f"{r['flops']:,} FLOPs")
        style = "" if r.get("trainable", True) else ', style="rounded,dashed"'
        lines.append(f"  {_quote(r['name'])} [label={_quote(chr(10).join(parts))}{style}];")
    for r in rows:
        for ref in r["inputs"]:
            src, _, idx = ref.partition(":")
            label = f" [label={_quote(idx)}]" if idx else ""
            lines.append(f"  {_quote(src)} -> {_quote(r['name'])}{label};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render(dot_text: str, fmt: str) -> bytes:
    """``dot_text`` as ``fmt`` bytes: DOT itself, or SVG/PNG drawn by Graphviz's ``dot`` executable."""
    if fmt == "dot":
        return dot_text.encode("utf-8")
    exe = shutil.which("dot")
    if exe is None:
        raise GraphvizMissing(
            f"--format {fmt} needs Graphviz's 'dot' program, which is not on PATH; install the "
            f"graphviz package (apt install graphviz, brew install graphviz, conda install "
            f"graphviz), or write --format dot and draw it elsewhere"
        )
    done = subprocess.run(
        [exe, f"-T{fmt}"], input=dot_text.encode("utf-8"), capture_output=True, timeout=120, check=False
    )
    if done.returncode != 0:
        why = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise NnctlError(f"graphviz dot -T{fmt} failed (exit {done.returncode}): {why[0] if why else 'no message'}")
    return done.stdout
