"""The generic registry, Keras spellings that specs understand, and from_logits."""

import dataclasses
import json
import pathlib

import numpy as np
import pytest

from nnctl import initializers, losses, metrics, optimizers, run, spec
from nnctl.layers import LAYERS
from nnctl.ops import activations
from nnctl.registry import DuplicateName, Registry, UnknownName

DATA = pathlib.Path(__file__).resolve().parents[1] / "examples" / "data"


# -- the registry ----------------------------------------------------------------------------------
def test_duplicate_registration_fails_at_once():
    reg = Registry("test family a")
    reg.add("he_normal", object())
    with pytest.raises(DuplicateName):
        reg.add("HeNormal", object())  # the same name once case and underscores are ignored
    with pytest.raises(DuplicateName):
        reg.add("other", object(), "he-normal")


def test_a_miss_lists_the_known_names_and_the_closest():
    reg = Registry("test family b")
    for name in ("glorot_uniform", "zeros"):
        reg.add(name, name)
    with pytest.raises(
        UnknownName,
        match=r"unknown test family b 'glorot_unifrom'; did you mean "
        r"'glorot_uniform'\?; expected one of glorot_uniform, zeros",
    ):
        reg.get("glorot_unifrom")


@pytest.mark.parametrize(
    "registry,alias,canonical",
    [
        (initializers.INITIALIZERS, "HeNormal", "he_normal"),
        (initializers.INITIALIZERS, "normal", "random_normal"),
        (initializers.INITIALIZERS, "uniform", "random_uniform"),
        (initializers.INITIALIZERS, "VarianceScaling", "variance_scaling"),
        (metrics.METRICS, "acc", "accuracy"),
        (metrics.METRICS, "categorical_accuracy", "accuracy"),
        (metrics.METRICS, "sparse_categorical_accuracy", "accuracy"),
        (metrics.METRICS, "binary_accuracy", "accuracy"),
        (losses.LOSSES, "mse", "mean_squared_error"),
        (losses.LOSSES, "kld", "kl_divergence"),
        (losses.LOSSES, "BinaryCrossentropy", "binary_crossentropy"),
        (optimizers.OPTIMIZERS, "RMSProp", "rmsprop"),
        (LAYERS, "conv2d", "Conv2D"),
        (LAYERS, "batch_normalization", "BatchNormalization"),
        (activations.ACTIVATION_NAMES, "LeakyReLU", "leaky_relu"),
    ],
)
def test_every_alias_resolves_to_the_canonical_entry(registry, alias, canonical):
    assert registry.get(alias) is registry.get(canonical)
    assert registry.canonical(alias) == canonical


def test_every_registered_alias_is_the_same_object():
    for registry in (initializers.INITIALIZERS, metrics.METRICS, losses.LOSSES, optimizers.OPTIMIZERS, LAYERS):
        for alias, canonical in registry.aliases().items():
            assert registry.get(alias) is registry.get(canonical)


def test_keras_initializers_draw_what_their_definitions_say():
    rng = np.random.default_rng(0)
    w = initializers.initialize({"type": "constant", "value": 0.25}, (3, 4), rng)
    assert (w == 0.25).all()
    assert np.array_equal(initializers.initialize("identity", (3, 3), rng), np.eye(3))
    t = initializers.initialize({"type": "truncated_normal", "stddev": 2.0}, (20000,), rng)
    assert np.abs(t).max() <= 4.0 and abs(t.std() - 2.0 * 0.8796) < 0.05  # N(0, 2^2) cut at 2 sigma
    v = initializers.initialize(
        {"type": "variance_scaling", "scale": 2.0, "mode": "fan_in", "distribution": "uniform"}, (50, 400), rng
    )
    assert abs(np.abs(v).max() - np.sqrt(3 * 2.0 / 50)) < 1e-3  # U[-sqrt(3 scale / fan_in), +]


# -- Keras habits in a spec ---------------------------------------------------------------------------
KERAS_SPEC = {
    "name": "keras-habits",
    "data": {"train": str(DATA / "iris.csv"), "target": "species", "normalize": "standard"},
    "model": {
        "layers": [
            {
                "type": "Dense",
                "units": 16,
                "input_shape": [4],
                "kernel_initializer": "HeNormal",
                "kernel_regularizer": "l2",
            },
            {"type": "ReLU"},
            {"type": "Dense", "units": 3},
            {"type": "Softmax"},
        ]
    },
    "train": {
        "loss": "categorical_crossentropy",
        "optimizer": {"type": "adam", "lr": 0.02, "weight_decay": 1e-4},
        "metrics": ["categorical_accuracy"],
        "epochs": 40,
        "batch_size": 16,
        "validation_split": 0.2,
        "early_stopping": {"monitor": "val_acc", "patience": 50},
    },
}


def test_keras_spellings_are_normalised_in_the_stored_spec():
    s = spec.validate(json.loads(json.dumps(KERAS_SPEC)))
    assert s.model.input_shape == [4] and "input_shape" not in s.model.layers[0]
    assert s.model.layers[0]["kernel_initializer"] == "he_normal"
    assert s.data.validation.split == 0.2 and "validation_split" not in s.train.to_plain()
    assert s.train.optimizer.params["learning_rate"] == 0.02 and "lr" not in s.train.optimizer.params
    assert s.train.metrics == ["accuracy"] and s.train.early_stopping.monitor == "val_accuracy"
    input_layer = json.loads(json.dumps(KERAS_SPEC))
    input_layer["model"]["layers"][0].pop("input_shape")
    input_layer["model"]["layers"].insert(0, {"type": "Input", "shape": [4]})
    assert spec.validate(input_layer).model.input_shape == [4]


def test_keras_habit_spec_trains_as_written(tmp_path):
    raw = json.loads(json.dumps(KERAS_SPEC))
    raw["output"] = {"checkpoint": str(tmp_path / "k.h5")}
    s = spec.validate(raw)
    result = run.train(s)
    assert result["metrics"]["val_accuracy"] >= 0.85


def test_imagedatagenerator_keys_map_onto_augment():
    raw = {
        "data": {
            "train": "x",
            "augment": {
                "rotation_range": 10,
                "width_shift_range": 0.1,
                "height_shift_range": 0.1,
                "zoom_range": 0.1,
                "shear_range": 5,
                "horizontal_flip": True,
                "fill_mode": "reflect",
            },
        },
        "model": {"input_shape": [8, 8, 1], "layers": [{"type": "Flatten"}, {"type": "Dense", "units": 1}]},
    }
    aug = spec.validate(raw).data.augment
    assert aug.to_plain() == {
        "rotation": 10.0,
        "width_shift": 0.1,
        "height_shift": 0.1,
        "zoom": 0.1,
        "shear": 5.0,
        "flip": "horizontal",
        "fill_mode": "reflect",
    }


# -- from_logits ---------------------------------------------------------------------------------------
def _weights(tmp_path, name, last_activation, loss):
    raw = {
        "name": name,
        "dtype": "float64",
        "data": {"train": str(DATA / "iris.csv"), "target": "species", "normalize": "standard"},
        "model": {
            "layers": [
                {"type": "Dense", "units": 8, "activation": "tanh"},
                {"type": "Dense", "units": 3, **({"activation": last_activation} if last_activation else {})},
            ]
        },
        "train": {"loss": loss, "optimizer": "sgd", "epochs": 3, "batch_size": 16, "metrics": ["accuracy"]},
        "output": {"checkpoint": str(tmp_path / f"{name}.h5")},
    }
    result = run.train(spec.validate(raw))
    from helpers import checkpoint_arrays

    return checkpoint_arrays(tmp_path / f"{name}.h5", ("weights",)), result


def test_from_logits_trains_exactly_like_the_fused_softmax(tmp_path):
    fused, a = _weights(tmp_path, "fused", "softmax", "categorical_crossentropy")
    logits, b = _weights(tmp_path, "logits", None, {"type": "categorical_crossentropy", "from_logits": True})
    assert fused.keys() == logits.keys()
    for key in fused:
        np.testing.assert_array_equal(fused[key], logits[key])
    assert a["metrics"]["accuracy"] == b["metrics"]["accuracy"]  # metrics read probabilities, not logits


def test_from_logits_predictions_are_probabilities(tmp_path):
    _weights(tmp_path, "logits", None, {"type": "categorical_crossentropy", "from_logits": True})
    restored = run.restore(tmp_path / "logits.h5")
    x = np.loadtxt(DATA / "iris-test.csv", delimiter=",", skiprows=1, usecols=range(4))
    p, _ = run.predict(restored, x)
    assert np.allclose(p.sum(axis=1), 1.0) and (p >= 0).all()


@pytest.mark.parametrize(
    "alias,canonical",
    [
        ("csv", "tabular"),
        ("CSV", "tabular"),
        ("npz", "arrays"),
        ("image_dataset_from_directory", "images"),
        ("auto", "auto"),
    ],
)
def test_data_kind_aliases_resolve_and_the_validated_spec_holds_the_kind(alias, canonical, tmp_path):
    from helpers import load_spec

    s = load_spec("iris_mlp.toml", tmp_path, f'data.kind="{alias}"')
    assert s.data.kind == canonical
    if canonical == "tabular":  # and the loader behind the alias reads the file
        one_epoch = dataclasses.replace(s, train=dataclasses.replace(s.train, epochs=1))
        assert run.train(one_epoch)["epochs_run"] == 1


def test_an_unknown_data_kind_names_the_closest():
    from nnctl.errors import SpecError

    with pytest.raises(SpecError, match=r"data.kind: unknown data kind 'tabluar'; did you mean 'tabular'\?"):
        spec.load(pathlib.Path(__file__).resolve().parents[1] / "specs" / "iris_mlp.toml", ['data.kind="tabluar"'])
