"""The typed spec: one frozen Spec of section classes, its stored form, and old checkpoints' private keys."""

import csv
import dataclasses
import json

import h5py
import numpy as np
import pytest

from helpers import SPECS, outputs_at
from nnctl import run, spec
from nnctl.checkpoint import Checkpoint
from nnctl.spec_model import ModelFacts, Spec
from nnctl.spec_sections import Augment, EarlyStopping, LrSchedule, TrainSection, Validation
from nnctl.spec_table import Named

SHIPPED = sorted(p for p in SPECS.glob("*.toml") if p.name != "tune_iris.toml") + [SPECS / "tune_iris.toml"]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_the_stored_form_validates_back_to_an_equal_spec(path):
    s = spec.load(path)
    assert isinstance(s, Spec) and s.source == str(path)
    stored = json.loads(json.dumps(s.to_dict()))
    assert Spec.from_dict(stored) == s and Spec.from_dict(stored).to_dict() == stored
    if s.train.mode == "gan":  # its stored form has the supervised defaults filled, which a GAN spec refuses
        return
    again = spec.validate(stored)
    assert again == s
    assert again.to_dict() == s.to_dict()


def test_a_spec_is_frozen_at_every_level():
    s = spec.load(SPECS / "iris_mlp.toml")
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.seed = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.train.epochs = 1  # type: ignore[misc]
    with pytest.raises(TypeError):  # a table is not a dict: no key writes (and no key reads)
        s["train"] = {}
    with pytest.raises(TypeError):
        s.train["epochs"] = 1
    assert not isinstance(s.data.validation, dict) and not hasattr(s.data.validation, "pop")
    changed = dataclasses.replace(s, train=dataclasses.replace(s.train, epochs=3))
    assert (changed.train.epochs, s.train.epochs) == (3, 100)


def test_sub_tables_are_their_classes_with_defaults_from_the_dataclass(tmp_path):
    (tmp_path / "s.toml").write_text(
        """
[data]
train = "t.csv"
validation = { split = 0.25 }
augment = { noise = 0.1 }
[[model.layers]]
type = "Dense"
units = 1
[train]
early_stopping = { patience = 7 }
lr_schedule = { type = "step", step_size = 4 }
optimizer = { type = "sgd", learning_rate = 0.5 }
"""
    )
    s = spec.load(tmp_path / "s.toml")
    es = s.train.early_stopping
    assert isinstance(es, EarlyStopping) and isinstance(s.train, TrainSection)
    assert es.patience == 7 and type(es.patience) is int  # from the file
    assert (es.monitor, es.mode, es.min_delta, es.restore_best) == ("val_loss", "auto", 0.0, True)  # defaults
    assert isinstance(s.train.lr_schedule, LrSchedule) and s.train.lr_schedule.step_size == 4
    assert s.train.lr_schedule.factor == 0.5
    assert s.data.validation == Validation(split=0.25, stratify=False, path=None)
    assert isinstance(s.data.augment, Augment) and s.data.augment.noise == 0.1
    assert s.data.augment.fill_mode == "nearest"  # a default, not stored: augment holds the keys given
    assert s.to_dict()["data"]["augment"] == {"noise": 0.1}
    assert s.data.tokenizer.max_length == 32  # absent table: all its defaults
    assert s.train.optimizer == Named("sgd", {"learning_rate": 0.5})
    assert s.train.loss == Named("mean_squared_error")
    stored = s.to_dict()["train"]
    assert stored["optimizer"] == {"type": "sgd", "learning_rate": 0.5} and stored["loss"] == "mean_squared_error"
    assert "test" not in s.to_dict()["data"] and s.data.test is None  # a None default is not stored


def test_a_fresh_checkpoint_stores_the_users_spec_and_the_facts_beside_it(tmp_path):
    s = outputs_at(spec.load(SPECS / "iris_mlp.toml", ["train.epochs=1"]), str(tmp_path / "i.h5"))
    run.train(s)
    ck = Checkpoint(tmp_path / "i.h5")

    def keys(node, at=""):
        if isinstance(node, dict):
            for k, v in node.items():
                yield f"{at}.{k}", k
                yield from keys(v, f"{at}.{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                yield from keys(v, f"{at}[{i}]")

    assert [where for where, k in keys(ck.spec) if str(k).startswith("_")] == []
    built = dataclasses.replace(s, model=dataclasses.replace(s.model, input_shape=[4]))  # the data's shape
    assert ck.spec == built.to_dict()
    assert ck.model_facts == {"defaults": {}, "input_dtype": "float32", "sample_shape": None}


def _text_spec(tmp_path):
    rows = [("one two three", "x"), ("two three", "y"), ("three", "x"), ("one one", "y")] * 3
    with open(tmp_path / "train.csv", "w", newline="") as f:
        csv.writer(f).writerows([("text", "label"), *rows])
    (tmp_path / "s.toml").write_text(
        """
name = "words"
[data]
kind = "text"
train = "train.csv"
test = "train.csv"
tokenizer = { max_length = 4 }
[[model.layers]]
type = "Embedding"
output_dim = 3
[[model.layers]]
type = "GlobalAveragePooling1D"
[[model.layers]]
type = "Dense"
units = 2
activation = "softmax"
[train]
loss = "categorical_crossentropy"
epochs = 2
"""
    )
    return outputs_at(spec.load(tmp_path / "s.toml"), str(tmp_path / "new.h5"))


def test_an_old_layout_checkpoint_with_private_keys_in_its_spec_evaluates_identically(tmp_path):
    """Before /model_facts, the Embedding's input_dim (from the vocabulary) rode in /spec as ``_defaults``."""
    run.train(_text_spec(tmp_path))
    new = Checkpoint(tmp_path / "new.h5")
    assert new.model_facts["defaults"] == {"input_dim": 5}  # pad, oov and three words
    old_path = tmp_path / "old.h5"
    old_path.write_bytes((tmp_path / "new.h5").read_bytes())
    with h5py.File(old_path, "r+") as f:  # the layout nnctl wrote before: the facts inside the spec JSON
        spec_json = json.loads(f["spec"][()])
        spec_json.update(_source="s.toml", _defaults={"input_dim": 5}, _input_dtype="int64")
        del f["spec"], f["model_facts"]
        f.create_dataset("spec", data=json.dumps(spec_json))
    old = Checkpoint(old_path)
    assert old.model_facts is None
    assert ModelFacts.from_stored(old.model_facts, old.spec) == ModelFacts({"input_dim": 5}, "int64")
    test = str(tmp_path / "train.csv")
    a, b = run.evaluate(tmp_path / "new.h5", test, "cpu"), run.evaluate(old_path, test, "cpu")
    assert a.pop("checkpoint") != b.pop("checkpoint")
    assert a == b and a["samples"] == 12
    ra, rb = run.restore(tmp_path / "new.h5", "cpu"), run.restore(old_path, "cpu")
    assert ra.model.nodes[0].layer.input_dim == rb.model.nodes[0].layer.input_dim == 5
    x = np.array([[2, 3, 4, 0], [4, 0, 0, 0]])
    np.testing.assert_array_equal(run.predict(ra, x)[0], run.predict(rb, x)[0])
