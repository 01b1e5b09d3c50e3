"""``nnctl summary --format dot|svg|png``: the DOT text parses (a small parser here), names every layer with its
type, shape and parameters, draws branches as edges; SVG/PNG through Graphviz when present, else one error line."""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from helpers import SPECS

BRANCHY = """
name = "branchy"
[data]
train = "x.csv"
[model]
input_shape = [6, 4]
[[model.layers]]
type = "LSTM"
units = 5
return_state = true
return_sequences = true
name = "enc"
[[model.layers]]
type = "Dense"
units = 3
inputs = ["enc:1"]
name = "from_h"
[[model.layers]]
type = "Dense"
units = 3
inputs = ["enc:2"]
name = "from_c"
trainable = false
[[model.layers]]
type = "Concatenate"
inputs = ["from_h", "from_c"]
name = "cat"
[[model.layers]]
type = "Dense"
units = 1
name = "out"
[train]
loss = "mse"
"""

STMT = re.compile(r'^\s*("(?:[^"\\]|\\.)*")\s*(?:->\s*("(?:[^"\\]|\\.)*"))?\s*(?:\[(.*)\])?\s*;\s*$')
ATTR = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|[\w.]+)')


def parse_dot(text: str):
    """A tiny DOT reader for what graph_dot writes: (graph name, {node: attrs}, [(src, dst, attrs)])."""
    lines = text.strip().splitlines()
    head = re.match(r'^digraph ("(?:[^"\\]|\\.)*") \{$', lines[0])
    assert head and lines[-1] == "}", text
    nodes, edges = {}, []
    unq = lambda s: json.loads(s)  # noqa: E731 - DOT's escapes used here are JSON's (\\, \", \n)
    for line in lines[1:-1]:
        if re.match(r"^\s*(rankdir|node|edge)\b", line):
            continue
        m = STMT.match(line)
        assert m, f"not a DOT statement: {line!r}"
        attrs = {k: unq(v) if v.startswith('"') else v for k, v in ATTR.findall(m.group(3) or "")}
        if m.group(2):
            edges.append((unq(m.group(1)), unq(m.group(2)), attrs))
        else:
            nodes[unq(m.group(1))] = attrs
    return unq(head.group(1)), nodes, edges


def nnctl(*args, env=None):
    return subprocess.run([sys.executable, "-m", "nnctl", *map(str, args)], capture_output=True, env=env)


def test_dot_names_every_layer_and_draws_branches(tmp_path):
    spec = tmp_path / "branchy.toml"
    spec.write_text(BRANCHY)
    r = nnctl("summary", spec, "--format", "dot")
    assert r.returncode == 0, r.stderr
    _, nodes, edges = parse_dot(r.stdout.decode())
    assert set(nodes) == {"input", "enc", "from_h", "from_c", "cat", "out"}
    assert nodes["enc"]["label"].split("\n")[:3] == ["enc", "LSTM", "(None, 6, 5) (None, 5) (None, 5)"]
    assert f"{4 * 20 + 5 * 20 + 20:,} params" in nodes["enc"]["label"]
    assert nodes["out"]["label"].split("\n")[1:4] == ["Dense", "(None, 1)", "7 params"]
    assert "FLOPs" in nodes["out"]["label"] and "dashed" in nodes["from_c"]["style"]
    pairs = {(a, b): attrs.get("label") for a, b, attrs in edges}
    assert pairs == {
        ("input", "enc"): None,
        ("enc", "from_h"): "1",
        ("enc", "from_c"): "2",
        ("from_h", "cat"): None,
        ("from_c", "cat"): None,
        ("cat", "out"): None,
    }


def test_dot_of_a_shipped_residual_spec_to_a_file(tmp_path):
    out = tmp_path / "g.dot"
    r = nnctl("summary", SPECS / "resnet_small.toml", "--format", "dot", "--output", out)
    assert r.returncode == 0, r.stderr
    _, nodes, edges = parse_dot(out.read_text())
    fan_in = {}
    for a, b, _ in edges:
        fan_in[b] = fan_in.get(b, 0) + 1
        assert a in nodes and b in nodes
    assert max(fan_in.values()) >= 2  # a residual Add has two inputs: drawn as a graph, not a chain


def test_svg_without_graphviz_is_one_error_naming_it(tmp_path):
    env = dict(os.environ, PATH=str(tmp_path))  # no dot here
    r = nnctl("summary", SPECS / "iris_mlp.toml", "--format", "svg", env=env)
    err = r.stderr.decode()
    assert r.returncode == 2 and err.count("error:") == 1 and "graphviz" in err and "Traceback" not in err


def test_unknown_format_is_a_usage_error():
    r = nnctl("summary", SPECS / "iris_mlp.toml", "--format", "jpeg")
    assert r.returncode == 2 and r.stderr.decode().count("error:") == 1


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz 'dot' is not installed")
@pytest.mark.parametrize("fmt", ["svg", "png"])
def test_svg_and_png_through_graphviz(tmp_path, fmt):
    out = tmp_path / f"g.{fmt}"
    r = nnctl("summary", SPECS / "iris_mlp.toml", "--format", fmt, "--output", out)
    assert r.returncode == 0, r.stderr
    data = out.read_bytes()
    assert data.startswith(b"\x89PNG") if fmt == "png" else b"<svg" in data


def test_check_and_summary_show_flops():
    from typer.testing import CliRunner

    from nnctl.cli.main import app

    r = CliRunner().invoke(app, ["check", str(SPECS / "iris_mlp.toml"), "--json"])
    info = json.loads(r.stdout)
    # iris: 4 -> 16 relu -> 3 softmax; 2 per multiply-add, 1 per bias add and activation output
    assert [row["flops"] for row in info["layers"]] == [2 * 4 * 16 + 16 + 16, 2 * 16 * 3 + 3 + 3]
    assert info["total_flops"] == 160 + 102 and "multiply-add counts 2" in info["flops_convention"]
    r = CliRunner().invoke(app, ["summary", str(SPECS / "iris_mlp.toml")])
    assert r.exit_code == 0 and "Total FLOPs: 262" in r.stdout
