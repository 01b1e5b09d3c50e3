"""``extends = "base.toml"``: deep merge (child wins, lists replaced), nested chains, cycles, errors naming
the file that holds the bad key, mixed formats, ``check --print-spec`` and the checkpoint's resolved spec."""

import json
import pathlib
import subprocess
import sys
import tomllib

import pytest

from nnctl import spec
from nnctl.errors import SpecError
from nnctl.spec_extends import load_chain
from nnctl.toml_write import dump as dump_toml

ROOT = pathlib.Path(__file__).resolve().parent.parent
IRIS = ROOT / "examples" / "data" / "iris.csv"

BASE = f"""
name = "base"
seed = 3
[data]
train = "{IRIS}"
target = "species"
validation = {{ split = 0.2 }}
[[model.layers]]
type = "Dense"
units = 8
activation = "relu"
[[model.layers]]
type = "Dense"
units = 3
activation = "softmax"
[train]
loss = "categorical_crossentropy"
optimizer = {{ type = "adam", learning_rate = 0.01 }}
metrics = ["accuracy", "precision"]
epochs = 4
batch_size = 16
"""


def write(path: pathlib.Path, text: str) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def nnctl(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "nnctl", *map(str, args)], capture_output=True, text=True, cwd=cwd)


def test_child_wins_tables_merge_lists_replace(tmp_path):
    write(tmp_path / "base.toml", BASE)
    child = write(
        tmp_path / "child.toml",
        'extends = "base.toml"\nname = "child"\n[train]\nepochs = 2\n'
        'metrics = ["accuracy"]\n[train.optimizer]\nlearning_rate = 0.5\n',
    )
    merged, _ = load_chain(child, spec.load_file)
    assert merged["name"] == "child" and merged["seed"] == 3
    assert merged["train"]["epochs"] == 2 and merged["train"]["batch_size"] == 16
    assert merged["train"]["metrics"] == ["accuracy"]  # replaced, not appended
    assert merged["train"]["optimizer"] == {"type": "adam", "learning_rate": 0.5}
    assert "extends" not in merged
    s = spec.load(child)
    assert s.name == "child" and "extends" not in s.to_dict()


def test_child_layer_list_replaces_base_list(tmp_path):
    write(tmp_path / "base.toml", BASE)
    child = write(
        tmp_path / "c.toml",
        'extends = "base.toml"\n[[model.layers]]\ntype = "Dense"\nunits = 3\nactivation = "softmax"\n',
    )
    s = spec.load(child)
    assert [e["units"] for e in s.model.layers] == [3]


def test_nested_chain_and_relative_paths_of_a_base(tmp_path):
    root = write(tmp_path / "shared" / "deep" / "root.toml", BASE.replace(str(IRIS), "../../data/iris.csv"))
    write(tmp_path / "data" / "iris.csv", IRIS.read_text())
    write(tmp_path / "shared" / "mid.yaml", "extends: deep/root.toml\nseed: 7\ntrain:\n  epochs: 9\n")
    child = write(tmp_path / "exp" / "a.json", json.dumps({"extends": "../shared/mid.yaml", "train": {"epochs": 1}}))
    s = spec.load(child)
    assert s.seed == 7 and s.train.epochs == 1 and s.train.batch_size == 16
    # the root's relative data path is relative to the root's folder, not to the child's
    assert pathlib.Path(s.data.train) == (tmp_path / "data" / "iris.csv").resolve()
    assert root.exists()


def test_cycle_is_refused_naming_the_chain(tmp_path):
    a = write(tmp_path / "a.toml", 'extends = "b.toml"\n')
    write(tmp_path / "b.toml", 'extends = "c.toml"\n')
    write(tmp_path / "c.toml", 'extends = "a.toml"\n')
    with pytest.raises(SpecError) as e:
        spec.load(a)
    msg = str(e.value)
    assert "cycle" in msg and all(n in msg for n in ("a.toml", "b.toml", "c.toml"))
    chain = msg.split("cycle ", 1)[1].split(" -> ")
    assert [pathlib.Path(p).name for p in chain] == ["a.toml", "b.toml", "c.toml", "a.toml"]


def test_self_extends_is_a_cycle(tmp_path):
    a = write(tmp_path / "a.toml", 'extends = "a.toml"\n')
    with pytest.raises(SpecError, match="cycle"):
        spec.load(a)


def test_missing_base_and_bad_type_name_the_child(tmp_path):
    a = write(tmp_path / "a.toml", 'extends = "nope.toml"\n')
    with pytest.raises(SpecError, match=r"a\.toml: extends: .*nope\.toml: spec file not found"):
        spec.load(a)
    b = write(tmp_path / "b.toml", "extends = 3\n")
    with pytest.raises(SpecError, match=r"b\.toml: extends: expected"):
        spec.load(b)


def test_errors_name_the_file_holding_the_bad_key(tmp_path):
    base = write(tmp_path / "base.toml", BASE.replace("units = 8", "unit = 8"))
    child = write(tmp_path / "child.toml", 'extends = "base.toml"\n[train]\nepochs = -1\n')
    with pytest.raises(SpecError) as e:
        spec.load(child)
    lines = e.value.lines
    layer = next(line for line in lines if "model.layers[0].unit" in line)
    epochs = next(line for line in lines if "train.epochs" in line)
    assert layer.startswith(f"{base}: ") and epochs.startswith(f"{child}: ")


def test_mixed_formats_toml_child_yaml_base(tmp_path):
    write(
        tmp_path / "base.yaml",
        f"""
seed: 5
data: {{train: "{IRIS}", target: species}}
model:
  layers:
    - {{type: Dense, units: 3, activation: softmax}}
train: {{loss: categorical_crossentropy, epochs: 3}}
""",
    )
    child = write(tmp_path / "child.toml", 'extends = "base.yaml"\n[train]\nepochs = 1\n')
    s = spec.load(child)
    assert s.seed == 5 and s.train.epochs == 1 and s.train.loss.type == "categorical_crossentropy"


def test_dump_toml_round_trips():
    d = {
        "name": 'x "q"',
        "seed": 1,
        "f": 0.1,
        "b": True,
        "l": [1, 2],
        "nan": None,
        "data": {"validation": {"split": 0.2}, "features": ["a b", "c"]},
        "model": {
            "layers": [
                {"type": "Dense", "units": 4, "kernel_regularizer": {"l2": 0.01}},
                {"type": "TimeDistributed", "layer": {"type": "Dense", "units": 2}},
            ]
        },
        "train": {"optimizer": {"type": "adam"}, "weird key": 1},
        "output": {},
    }
    back = tomllib.loads(dump_toml(d))
    d.pop("nan")
    assert back == d


def test_check_print_spec_is_the_merged_spec_with_set(tmp_path):
    write(tmp_path / "base.toml", BASE)
    child = write(tmp_path / "child.toml", 'extends = "base.toml"\nname = "child"\n')
    r = nnctl("check", child, "--print-spec", "--set", "train.epochs=7")
    assert r.returncode == 0, r.stderr
    printed = tomllib.loads(r.stdout)
    assert printed["name"] == "child" and printed["seed"] == 3 and printed["train"]["epochs"] == 7
    assert "extends" not in printed
    # the printed spec is itself a complete spec
    again = write(tmp_path / "again.toml", r.stdout)
    assert spec.load(again).train.epochs == 7


def test_cli_cycle_is_one_error_line(tmp_path):
    a = write(tmp_path / "a.toml", 'extends = "b.toml"\n')
    write(tmp_path / "b.toml", 'extends = "a.toml"\n')
    r = nnctl("check", a)
    assert r.returncode == 2 and r.stderr.count("error:") == 1 and "cycle" in r.stderr and "Traceback" not in r.stderr


def test_checkpoint_stores_the_resolved_spec(tmp_path):
    from nnctl.checkpoint import Checkpoint

    write(tmp_path / "base.toml", BASE)
    child = write(
        tmp_path / "child.toml",
        f'extends = "base.toml"\nname = "child"\n[train]\nepochs = 1\n[output]\ncheckpoint = "{tmp_path / "c.h5"}"\n',
    )
    r = nnctl("train", child, "--quiet")
    assert r.returncode == 0, r.stderr
    stored = Checkpoint(tmp_path / "c.h5").spec
    assert "extends" not in stored and stored["seed"] == 3 and stored["train"]["epochs"] == 1
    assert stored["name"] == "child"


def test_child_table_refines_a_base_optimizer_named_by_a_string(tmp_path):
    write(
        tmp_path / "base.toml",
        BASE.replace('optimizer = { type = "adam", learning_rate = 0.01 }', 'optimizer = "rmsprop"'),
    )
    child = write(tmp_path / "c.toml", 'extends = "base.toml"\n[train.optimizer]\nlearning_rate = 0.2\n')
    assert spec.load(child).train.optimizer.plain() == {"type": "rmsprop", "learning_rate": 0.2}
