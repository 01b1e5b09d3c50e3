"""Hostile spec entries through ``nnctl check``: exit 2, one ``error:`` line per problem naming the dotted
field, never a traceback; several problems are all listed in one run."""

import json
import pathlib

import pytest
from typer.testing import CliRunner

from nnctl.cli.main import app

DATA = pathlib.Path(__file__).resolve().parents[1] / "examples" / "data"
BASE = {
    "name": "hostile",
    "data": {"train": str(DATA / "iris.csv"), "target": "species", "validation": {"split": 0.2}},
    "model": {
        "input_shape": [4],
        "layers": [
            {"type": "Dense", "units": 8, "activation": "relu"},
            {"type": "Dropout", "rate": 0.2},
            {"type": "Dense", "units": 3, "activation": "softmax"},
        ],
    },
    "train": {
        "loss": "categorical_crossentropy",
        "optimizer": {"type": "adam", "learning_rate": 0.01},
        "metrics": ["accuracy"],
        "epochs": 2,
    },
    "output": {},
}
L0, L1, L2 = "model.layers[0]", "model.layers[1]", "model.layers[2]"


def _set(spec: dict, path: str, value) -> None:
    node = spec
    parts = []
    for piece in path.split("."):
        name, _, idx = piece.partition("[")
        parts.append(name)
        if idx:
            parts.append(int(idx.rstrip("]")))
    for key in parts[:-1]:
        node = node[key]
    if value is KeyError:
        del node[parts[-1]]
    else:
        node[parts[-1]] = value


# (dotted key, value, substrings the error must contain)
CASES = [
    # initializers, regularizers
    (f"{L0}.kernel_initializer", "glorot_unifrom", [f"{L0}.kernel_initializer", "did you mean 'glorot_uniform'"]),
    (f"{L0}.kernel_initializer", "he_norml", [f"{L0}.kernel_initializer", "unknown initializer"]),
    (f"{L0}.kernel_initializer", {"type": "constant", "valu": 1}, [f"{L0}.kernel_initializer.valu", "'value'"]),
    (f"{L0}.kernel_initializer", {"type": "random_normal", "stddev": -1}, ["stddev", "non-negative"]),
    (f"{L0}.kernel_initializer", 3, [f"{L0}.kernel_initializer", "initializer name or a table"]),
    (f"{L0}.kernel_regularizer", {"l3": 0.1}, [f"{L0}.kernel_regularizer.l3", "unknown key"]),
    (f"{L0}.kernel_regularizer", {"l2": -0.1}, [f"{L0}.kernel_regularizer.l2", "non-negative"]),
    (f"{L0}.kernel_regularizer", "l4", [f"{L0}.kernel_regularizer", "unknown regularizer"]),
    (f"{L0}.bias_regularizer", {"type": "l9"}, [f"{L0}.bias_regularizer.type", "unknown regularizer"]),
    # layer keys: types and ranges
    (f"{L0}.units", 0, [f"{L0}.units", "positive integer", "found 0"]),
    (f"{L0}.units", -2, [f"{L0}.units", "positive integer", "found -2"]),
    (f"{L0}.units", 2.5, [f"{L0}.units", "positive integer", "found 2.5"]),
    (f"{L0}.units", "8", [f"{L0}.units", "positive integer"]),
    (f"{L0}.units", True, [f"{L0}.units", "positive integer", "found true"]),
    (f"{L0}.units", KeyError, [f"{L0}.units", "required key is missing"]),
    (f"{L0}.unit", 8, [f"{L0}.unit", "did you mean 'units'"]),
    (f"{L0}.use_bias", "yes", [f"{L0}.use_bias", "true or false"]),
    (f"{L0}.activation", "rleu", [f"{L0}.activation", "did you mean 'relu'"]),
    (f"{L0}.activation", 1, [f"{L0}.activation", "activation name"]),
    (f"{L0}.type", "Dens", [f"{L0}.type", "did you mean 'Dense'", "expected one of"]),
    (f"{L0}.type", "Transformer", [f"{L0}.type", "unknown layer type", "Conv2D"]),
    (f"{L0}.name", "a/b", [f"{L0}.name", "without ':' or '/'"]),
    (f"{L1}.rate", 1.0, [f"{L1}.rate", "in [0, 1)", "found 1.0"]),
    (f"{L1}.rate", 1.5, [f"{L1}.rate", "in [0, 1)"]),
    (f"{L1}.rate", -0.5, [f"{L1}.rate", "in [0, 1)"]),
    (f"{L1}.rate", "half", [f"{L1}.rate", "in [0, 1)"]),
    (f"{L1}.inputs", ["nowhere"], [f"{L1}.inputs", "no such layer"]),
    (f"{L1}.inputs", 5, [f"{L1}.inputs", "expected"]),
    (f"{L2}.input_shape", [3], [f"{L2}.input_shape", "only the first layer"]),
    ("model.layers", [], ["model.layers", "at least one layer"]),
    ("model.layers", [5], ["model.layers[0]", "expected a table"]),
    ("model.input_shape", [0], ["model.input_shape", "positive integer"]),
    ("model.input_shape", "4", ["model.input_shape", "list"]),
    # top level
    ("seed", -1, ["seed", "found -1"]),
    ("seed", 2**70, ["seed", "in [0, 4.29497e+09]"]),
    ("seed", "one", ["seed", "integer"]),
    ("name", "../../escape", ["name", "no '/'", 'found "../../escape"']),
    ("name", ".hidden", ["name", "not starting with"]),
    ("name", "", ["name", "a file name"]),
    ("dtype", "float16", ["dtype", "one of float32, float64"]),
    ("name", 5, ["name", "string"]),
    ("modle", {}, ["modle", "did you mean 'model'"]),
    # data
    ("data.normalize", "zscore", ["data.normalize", "one of none, standard, minmax"]),
    ("data.kind", "spreadsheet", ["data.kind", "unknown data kind 'spreadsheet'", "expected one of arrays, auto"]),
    ("data.subset", 0, ["data.subset", "positive integer"]),
    ("data.subset", -5, ["data.subset", "positive integer"]),
    ("data.validation", {"split": 1.5}, ["data.validation.split", "in (0, 1)"]),
    ("data.validation", {"spilt": 0.2}, ["data.validation.spilt", "did you mean 'split'"]),
    ("data.validation", 0, ["data.validation.split", "in (0, 1)"]),
    ("data.train", KeyError, ["data.train", "required key is missing"]),
    ("data.window", 0, ["data.window", "positive integer"]),
    ("data.image_size", [0, 28], ["data.image_size", "positive integer"]),
    ("data.tokenizer", {"vocab_size": 1}, ["data.tokenizer.vocab_size", ">= 3"]),
    ("data.tokenizer", {"levl": "word"}, ["data.tokenizer.levl", "did you mean 'level'"]),
    ("data.augment", {"rotation": 400}, ["data.augment.rotation", "in [0, 180]"]),
    ("data.augment", {"brightness_range": [0.8, 1.2]}, ["data.augment.brightness_range", "brightness = 0.2"]),
    ("data.augment", {"flip": "diagonal"}, ["data.augment.flip", "one of horizontal, vertical, both"]),
    # train
    ("train.optimizer", {"type": "adam", "learning_rate": -0.1}, ["train.optimizer.learning_rate", "positive number"]),
    ("train.optimizer", {"type": "adam", "learning_rate": 0}, ["train.optimizer.learning_rate", "positive number"]),
    ("train.optimizer", {"type": "adam", "beta_1": 1.0}, ["train.optimizer.beta_1", "in [0, 1)"]),
    ("train.optimizer", {"type": "sgd", "momentum": 2}, ["train.optimizer.momentum", "in [0, 1]"]),
    ("train.optimizer", {"type": "adam", "learning_rat": 0.1}, ["train.optimizer.learning_rat", "'learning_rate'"]),
    ("train.optimizer", "adamm", ["train.optimizer", "unknown optimizer 'adamm'", "did you mean 'adam'"]),
    ("train.optimizer", {"type": "rmsprop", "epsilon": 0}, ["train.optimizer.epsilon", "positive number"]),
    ("train.loss", "categorical_crossentropi", ["train.loss", "unknown loss", "'categorical_crossentropy'"]),
    ("train.loss", {"type": "huber", "delta": -1}, ["train.loss.delta", "positive number"]),
    (
        "train.loss",
        {"type": "categorical_crossentropy", "from_logit": True},
        ["train.loss.from_logit", "'from_logits'"],
    ),
    ("train.metrics", ["acuracy"], ["train.metrics[0]", "did you mean 'accuracy'"]),
    ("train.metrics", "accuracy", ["train.metrics", "list"]),
    ("train.epochs", -1, ["train.epochs", "in [0, 1e+06]"]),
    ("train.epochs", 2**70, ["train.epochs", "in [0, 1e+06]"]),
    ("train.batch_size", 0, ["train.batch_size", "positive integer or one of full"]),
    ("train.batch_size", "all", ["train.batch_size", "one of full"]),
    ("train.epoch", 3, ["train.epoch", "did you mean 'epochs'"]),
    (
        "train.early_stopping",
        {"monitor": "val_auc"},
        ["train.early_stopping.monitor", "'val_auc' is not logged", "val_accuracy"],
    ),
    (
        "train.early_stopping",
        {"monitor": "val_loss", "patience": -2},
        ["train.early_stopping.patience", "non-negative"],
    ),
    ("train.early_stopping", {"monitor": "val_loss", "patiense": 3}, ["train.early_stopping.patiense", "'patience'"]),
    ("train.early_stopping", {"mode": "up"}, ["train.early_stopping.mode", "one of auto, min, max"]),
    ("train.lr_schedule", {"type": "plateau", "min_lr": -1}, ["train.lr_schedule.min_lr", "non-negative"]),
    ("train.lr_schedule", {"type": "plateau", "cooldown": -1}, ["train.lr_schedule.cooldown", "non-negative"]),
    ("train.lr_schedule", {"type": "plateau", "monitor": "val_f1"}, ["train.lr_schedule.monitor", "not logged"]),
    ("train.lr_schedule", {"type": "cyclic"}, ["train.lr_schedule.type", "one of constant"]),
    ("train.lr_schedule", {"type": "step", "factor": 2}, ["train.lr_schedule.factor", "in (0, 1)"]),
    ("train.save_every", -1, ["train.save_every", "non-negative"]),
    ("output.checkpoint", 5, ["output.checkpoint", "string"]),
    ("output.checkpoint", "", ["output.checkpoint", "expected a file or folder path", 'found ""']),
    ("data.train", " ", ["data.train", "expected a file or folder path"]),
    ("data.features", [], ["data.features", "expected a list of at least 1, found []"]),
    ("output.chekpoint", "x.h5", ["output.chekpoint", "did you mean 'checkpoint'"]),
]
# the loss and the output layer must agree
MISMATCH = [
    ({f"{L2}.activation": "linear"}, ["train.loss", "from_logits = true"]),
    ({f"{L2}.activation": KeyError}, ["train.loss", "linear last layer"]),
    ({f"{L2}.activation": "step"}, [f"{L2.replace('[2]', '[-1]')}", "perceptron"]),
    ({f"{L2}.activation": "relu"}, ["needs probabilities", "softmax"]),
    ({"train.loss": "perceptron"}, ["train.loss", "step"]),
    ({"train.loss": "binary_crossentropy", f"{L2}.units": 1}, ["softmax over 1 unit"]),
    ({"train.loss": "sparse_categorical_crossentropy", f"{L2}.activation": "sigmoid"}, ["needs a softmax output"]),
    ({"train.loss": {"type": "categorical_crossentropy", "from_logits": True}}, ["from_logits", "linear last layer"]),
    ({"data.validation": KeyError, "train.early_stopping": {"monitor": "val_loss"}}, ["needs validation data"]),
    ({"train.loss": "mse", "train.metrics": ["accuracy"]}, ["train.metrics[0]", "classification loss"]),
]


def check(tmp_path, spec: dict):
    path = tmp_path / "s.json"
    path.write_text(json.dumps(spec))
    result = CliRunner().invoke(app, ["check", str(path)])
    return result, path


def assert_clean_error(result, path, needles):
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines() if hasattr(result, "stderr") else result.output.strip().splitlines()
    assert lines and all(line.startswith(f"error: {path}: ") for line in lines), lines
    assert "Traceback" not in result.output
    text = "\n".join(lines)
    for needle in needles:
        assert needle in text, f"{needle!r} not in {text!r}"


@pytest.mark.parametrize("key,value,needles", CASES, ids=[f"{k}={str(v)[:20]}" for k, v, _ in CASES])
def test_hostile_entry_is_one_clear_error(tmp_path, key, value, needles):
    spec = json.loads(json.dumps(BASE))
    _set(spec, key, value)
    result, path = check(tmp_path, spec)
    assert_clean_error(result, path, needles)


@pytest.mark.parametrize("changes,needles", MISMATCH, ids=[str(c)[:40] for c, _ in MISMATCH])
def test_loss_and_output_must_agree(tmp_path, changes, needles):
    spec = json.loads(json.dumps(BASE))
    for key, value in changes.items():
        _set(spec, key, value)
    result, path = check(tmp_path, spec)
    assert_clean_error(result, path, needles)


def test_every_problem_is_listed_in_one_run(tmp_path):
    spec = json.loads(json.dumps(BASE))
    for key, value in (
        (f"{L0}.units", -2),
        (f"{L1}.rate", 1.5),
        ("train.optimizer", {"type": "adam", "lr": -1}),
        ("seed", -1),
        ("data.subset", 0),
        (f"{L0}.kernel_initializer", "glorot_unifrom"),
    ):
        _set(spec, key, value)
    result, path = check(tmp_path, spec)
    assert_clean_error(
        result,
        path,
        [
            f"{L0}.units",
            f"{L1}.rate",
            "train.optimizer.learning_rate",
            "seed",
            "data.subset",
            f"{L0}.kernel_initializer",
        ],
    )
    assert len(result.output.strip().splitlines()) == 6


def test_problems_beyond_the_cap_are_counted(tmp_path):
    spec = json.loads(json.dumps(BASE))
    spec["model"]["layers"] = [{"type": "Dense", "units": -i - 1} for i in range(30)]
    result, path = check(tmp_path, spec)
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 21 and "and 10 more problems" in lines[-1]


def test_a_huge_value_is_quoted_briefly(tmp_path):
    spec = json.loads(json.dumps(BASE))
    spec["model"]["layers"][0]["units"] = "x" * 100_000
    result, path = check(tmp_path, spec)
    assert result.exit_code == 2 and len(result.output) < 400


# what only the validator can see: cross-field rules (names, monitors, wiring, Keras rewrites)
SCHEMA_BLIND = ("monitor", "no such layer", "only the first layer", "without ':' or '/'", "expected a table")


def test_schema_accepts_shipped_specs_and_rejects_the_hostile_entries():
    import tomllib

    jsonschema = pytest.importorskip("jsonschema")
    from nnctl.schema import spec_schema

    validator = jsonschema.Draft202012Validator(spec_schema())
    for path in sorted((DATA.parent.parent / "specs").glob("*.toml")):
        assert validator.is_valid(tomllib.loads(path.read_text())), path.name
    assert validator.is_valid(BASE)
    missed = []
    for key, value, needles in CASES:
        spec = json.loads(json.dumps(BASE))
        _set(spec, key, value)
        if validator.is_valid(spec) and not any(b in " ".join(needles) for b in SCHEMA_BLIND):
            missed.append(f"{key}={str(value)[:30]}")
    assert not missed, missed
