"""Broken specs: each error is a SpecError whose message names the offending field."""

import json

import pytest

from nnctl import spec
from nnctl.errors import SpecError

BASE = {
    "data": {"train": "x.csv"},
    "model": {
        "layers": [
            {"type": "Dense", "units": 4, "activation": "relu"},
            {"type": "Dense", "units": 3, "activation": "softmax"},
        ]
    },
    "train": {"loss": "categorical_crossentropy", "metrics": ["accuracy"]},
}


def broken(path, value):
    s = json.loads(json.dumps(BASE))
    node = s
    for key in path[:-1]:
        node = node[key]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return s


CASES = [
    (broken(["model", "layers", 0, "unit"], 4), "model.layers[0].unit: unknown key for Dense; did you mean 'units'?"),
    (
        broken(["model", "layers", 0, "type"], "Dens"),
        "model.layers[0].type: unknown layer type 'Dens'; did you mean 'Dense'?",
    ),
    (
        broken(["model", "layers", 1, "activation"], "sofmax"),
        "model.layers[1].activation: unknown activation 'sofmax'; did you mean 'softmax'?",
    ),
    (
        broken(["model", "layers", 0, "units"], "four"),
        'model.layers[0].units: expected a positive integer, found "four"',
    ),
    (broken(["model", "layers", 0, "units"], KeyError), "model.layers[0].units: required key is missing"),
    (
        broken(["train", "optimizer"], {"type": "adam", "learning_rat": 0.1}),
        "train.optimizer.learning_rat: unknown key for adam; did you mean 'learning_rate'?",
    ),
    (broken(["train", "optimizer"], "adamm"), "train.optimizer: unknown optimizer 'adamm'; did you mean 'adam'?"),
    (broken(["train", "loss"], "categorical_crossentropi"), "train.loss: unknown loss"),
    (broken(["train", "metrics"], ["acuracy"]), "train.metrics[0]: unknown metric 'acuracy'; did you mean 'accuracy'?"),
    (broken(["train", "batch_size"], 0), "train.batch_size: expected a positive integer or one of full, found 0"),
    (broken(["train", "epoch"], 3), "train.epoch: unknown key; did you mean 'epochs'?"),
    (broken(["data", "normalize"], "zscore"), "data.normalize: expected one of none, standard, minmax"),
    (broken(["data", "train"], KeyError), "data.train: required key is missing"),
    (broken(["dtype"], "float16"), "dtype: expected one of float32, float64"),
    (broken(["model", "layers", 1, "inputs"], ["nowhere"]), "model.layers[1].inputs: 'nowhere': no such layer"),
    (broken(["model", "layers", 0, "name"], "dense_1"), None),  # fine alone; clash tested below
    (broken(["modle"], {}), "modle: unknown key; did you mean 'model'?"),
    (
        broken(["train", "early_stopping"], {"monitor": "val_loss", "patiense": 3}),
        "train.early_stopping.patiense: unknown key; did you mean 'patience'?",
    ),
    (broken(["train", "metrics"], ["accuracy", "r2"]), None),
]


@pytest.mark.parametrize(
    "raw,message", [c for c in CASES if c[1]], ids=lambda v: str(v)[:40] if isinstance(v, str) else ""
)
def test_broken_spec_names_the_field(raw, message):
    with pytest.raises(SpecError) as err:
        spec.validate(raw, "s.toml")
    assert str(err.value).startswith("s.toml: ")
    assert message in str(err.value)


def test_duplicate_names_and_forward_references():
    s = json.loads(json.dumps(BASE))
    s["model"]["layers"][0]["name"] = "a"
    s["model"]["layers"][1]["name"] = "a"
    with pytest.raises(SpecError, match=r"model.layers\[1\].name: 'a' is already used by model.layers\[0\]"):
        spec.validate(s)
    s = json.loads(json.dumps(BASE))
    s["model"]["layers"][0]["inputs"] = ["b"]
    s["model"]["layers"][1]["name"] = "b"
    with pytest.raises(SpecError, match="comes later"):
        spec.validate(s)


def test_accuracy_needs_classification_loss():
    s = json.loads(json.dumps(BASE))
    s["train"]["loss"] = "mse"
    with pytest.raises(SpecError, match=r"train.metrics\[0\]: accuracy needs a classification loss"):
        spec.validate(s)


def test_file_level_errors(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text("[data\ntrain = 1")
    with pytest.raises(SpecError, match="s.toml: not valid TOML"):
        spec.load(p)
    with pytest.raises(SpecError, match="spec file not found"):
        spec.load(tmp_path / "none.toml")
    q = tmp_path / "s.ini"
    q.write_text("x")
    with pytest.raises(SpecError, match="unknown spec format '.ini'"):
        spec.load(q)


def test_yaml_and_json_specs_equal_toml(tmp_path):
    import yaml

    (tmp_path / "s.json").write_text(json.dumps(BASE))
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(BASE))
    a, b = spec.load(tmp_path / "s.json"), spec.load(tmp_path / "s.yaml")
    assert a.source != b.source  # the file each came from, beside the spec: not part of it
    assert a == b


def test_override_parsing(tmp_path):
    raw = json.loads(json.dumps(BASE))
    spec.apply_override(raw, "train.optimizer.learning_rate=0.01")
    spec.apply_override(raw, "model.layers[0].units=8")
    spec.apply_override(raw, "model.input_shape=[4]")
    spec.apply_override(raw, "train.shuffle=false")
    spec.apply_override(raw, "name=run-2")
    assert raw["train"]["optimizer"] == {"learning_rate": 0.01}
    assert spec.validate(raw).train.optimizer.plain() == {"type": "adam", "learning_rate": 0.01}
    assert (
        raw["model"]["layers"][0]["units"] == 8
        and raw["model"]["input_shape"] == [4]
        and raw["train"]["shuffle"] is False
        and raw["name"] == "run-2"
    )
    with pytest.raises(SpecError, match="expected KEY=VALUE"):
        spec.apply_override(raw, "train.epochs")
    with pytest.raises(SpecError, match=r"index \[9\] is out of range"):
        spec.apply_override(raw, "model.layers[9].units=3")


def test_shape_errors_name_the_layer():
    from nnctl.build import build_model

    s = spec.validate(
        {
            "data": {"train": "x.csv"},
            "model": {"layers": [{"type": "Dense", "units": 4}, {"type": "Reshape", "target_shape": [3, 3]}]},
        }
    )
    with pytest.raises(SpecError, match=r"model.layers\[1\] \(reshape, Reshape\) on input shape \[4\]"):
        build_model(s, (5,), 0)
