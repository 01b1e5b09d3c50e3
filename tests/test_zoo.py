"""specs/zoo: each published architecture's parameter count from `nnctl check --json`, as Keras reports it.

The counts are literal numbers from Keras's published model summaries (keras.applications, weights=None;
BatchNormalization's moving statistics are non-trainable parameters there as here), from torchvision's
resnet18 (11,689,512 trainable, plus 9,600 moving statistics) and, for AlexNet, from the layer sizes of
Krizhevsky et al. 2012 as one tower (62,378,344). The `keras` test builds the Keras models themselves and
compares the count and every layer's output shape.
"""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from helpers import ROOT, train_spec
from nnctl import run
from nnctl.cli.main import app

ZOO = ROOT / "specs" / "zoo"
# spec: (total, non-trainable) with its top (include_top = true), then without it (include_top = false)
COUNTS = {
    "vgg16": ((138_357_544, 0), (14_714_688, 0)),
    "vgg19": ((143_667_240, 0), (20_024_384, 0)),
    "resnet50": ((25_636_712, 53_120), (23_587_712, 53_120)),
    "mobilenet": ((4_253_864, 21_888), (3_228_864, 21_888)),
    "mobilenet_v2": ((3_538_984, 34_112), (2_257_984, 34_112)),
    "inception_v3": ((23_851_784, 34_432), (21_802_784, 34_432)),
    # torchvision's resnet18: 11,689,512 trainable, of which fc (512 * 1000 + 1000) is the top
    "resnet18": ((11_689_512 + 9_600, 9_600), (11_689_512 - 513_000 + 9_600, 9_600)),
    # AlexNet, one tower: conv1-5, then fc6 (6*6*256 -> 4096), fc7, fc8 (the paper's Figure 2 sizes)
    "alexnet": (
        (
            11 * 11 * 3 * 96
            + 96
            + 5 * 5 * 96 * 256
            + 256
            + 3 * 3 * 256 * 384
            + 384
            + 3 * 3 * 384 * 384
            + 384
            + 3 * 3 * 384 * 256
            + 256
            + 9216 * 4096
            + 4096
            + 4096 * 4096
            + 4096
            + 4096 * 1000
            + 1000,
            0,
        ),
        (3_747_200, 0),
    ),
}
# the last layer left by include_top = false, as Keras names it, and its output shape
NOTOP_END = {
    "vgg16": ("block5_pool", [7, 7, 512]),
    "vgg19": ("block5_pool", [7, 7, 512]),
    "resnet50": ("conv5_block3_out", [7, 7, 2048]),
    "resnet18": ("conv5_block2_out", [7, 7, 512]),
    "mobilenet": ("conv_pw_13_relu", [7, 7, 1024]),
    "mobilenet_v2": ("out_relu", [7, 7, 1280]),
    "inception_v3": ("mixed10", [8, 8, 2048]),
    "alexnet": ("pool5", [6, 6, 256]),
}
INPUT = {"alexnet": [None, 227, 227, 3], "inception_v3": [None, 299, 299, 3]}
runner = CliRunner()


def check(name: str, top: bool = True) -> dict:
    r = runner.invoke(
        app, ["check", "--json", "--set", f"model.include_top={str(top).lower()}", str(ZOO / f"{name}.toml")]
    )
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_every_zoo_spec_has_a_count():  # the _small variants train on the sample (test_zoo_small_train)
    assert sorted(p.stem for p in ZOO.glob("*.toml") if not p.stem.endswith("_small")) == sorted(COUNTS)


@pytest.mark.parametrize("top", [True, False], ids=["top", "notop"])
@pytest.mark.parametrize("name", sorted(COUNTS))
def test_zoo_parameter_count(name, top):
    out = check(name, top)
    total, frozen = COUNTS[name][0 if top else 1]
    assert out["total_params"] == total
    assert out["non_trainable_params"] == frozen
    assert out["input_shape"] == INPUT.get(name, [None, 224, 224, 3])
    last = out["layers"][-1]
    assert (last["name"], last["output_shape"]) == (
        ("predictions", [None, 1000]) if top else (NOTOP_END[name][0], [None, *NOTOP_END[name][1]])
    )


def test_alexnet_count_is_the_published_one_tower_figure():
    assert COUNTS["alexnet"][0][0] == 62_378_344


KERAS_APPS = {
    "vgg16": "VGG16",
    "vgg19": "VGG19",
    "resnet50": "ResNet50",
    "mobilenet": "MobileNet",
    "mobilenet_v2": "MobileNetV2",
    "inception_v3": "InceptionV3",
}


@pytest.mark.keras
@pytest.mark.parametrize("name", sorted(KERAS_APPS))
@pytest.mark.parametrize("top", [True, False])
def test_zoo_against_keras_applications(name, top):
    keras = pytest.importorskip("keras")
    keras.backend.clear_session()  # Keras's default names (global_average_pooling2d) restart from 0
    size = (299, 299, 3) if name == "inception_v3" else (224, 224, 3)
    model = getattr(keras.applications, KERAS_APPS[name])(weights=None, include_top=top, input_shape=size)
    ours = check(name, top)
    assert ours["total_params"] == model.count_params()
    theirs = {layer.name: list(layer.output.shape) for layer in model.layers if not layer.name.startswith("input")}
    shapes = {layer["name"]: layer["output_shape"] for layer in ours["layers"]}
    if name == "inception_v3":
        # Keras leaves the convolutions of InceptionV3 unnamed (conv2d_93, ...): the named layers by name,
        # and every layer as the same multiset of (type, output shape)
        named = {n: s for n, s in theirs.items() if n.startswith(("mixed", "avg_pool", "predictions"))}
        assert {n: shapes.get(n) for n in named} == named and len(named) == 13 + top * 2
        kinds = sorted((type(layer).__name__, str(list(layer.output.shape))) for layer in model.layers[1:])
        assert sorted((layer["type"].split()[0], str(layer["output_shape"])) for layer in ours["layers"]) == kinds
        return
    assert {n: shapes.get(n) for n in theirs} == theirs  # every Keras layer, under its name, with its shape
    # ours has only Keras's layers, but for MobileNet's GlobalAveragePooling2D(keepdims=True) written as
    # global_average_pooling + a Reshape to (1, 1, C) under Keras's name
    assert set(shapes) - set(theirs) <= {"global_average_pooling"}


SMALL = sorted(p.stem for p in ZOO.glob("*_small.toml"))


def test_every_architecture_has_a_small_variant():
    assert SMALL == [
        "alexnet_small",
        "inception_small",
        "mobilenet_small",
        "mobilenet_v2_small",
        "resnet18_small",
        "resnet50_small",
        "vgg_small",
    ]


@pytest.mark.parametrize("name", SMALL)
def test_small_variant_trains_as_shipped(tmp_path, name):
    """End to end on the shipped sample (a subset, one epoch: the full runs' accuracies are in the README)."""
    s, done = train_spec(f"zoo/{name}.toml", tmp_path, "data.subset=120", "train.epochs=1")
    assert done["epochs_run"] == 1
    assert s.model.input_shape == [32, 32, 3]
    assert 0.0 <= run.evaluate(s.output.checkpoint)["accuracy"] <= 1.0


def test_seq2seq_attention_trains_and_decodes(tmp_path):
    s, done = train_spec("seq2seq_attention.toml", tmp_path, "data.subset=256", "train.epochs=1")
    assert done["epochs_run"] == 1
    src = np.load(ROOT / "examples" / "data" / "reverse15-test.npz")["x"][:8, :15]
    probs, ids = run.predict(run.restore(s.output.checkpoint, "auto"), src)
    assert probs.shape == (8, 15, 10) and ids.shape == (8, 15)


def test_the_json_schema_accepts_every_zoo_spec():
    import tomllib

    jsonschema = pytest.importorskip("jsonschema")
    from nnctl.schema import spec_schema

    validator = jsonschema.Draft202012Validator(spec_schema())
    for path in sorted(ZOO.glob("*.toml")):
        assert validator.is_valid(tomllib.loads(path.read_text())), path.name


def test_a_zoo_spec_without_its_top_refuses_class_labels(tmp_path):
    r = runner.invoke(
        app,
        [
            "train",
            str(ZOO / "vgg_small.toml"),
            "--set",
            "model.include_top=false",
            "--set",
            "data.subset=60",
            "-o",
            str(tmp_path / "v.h5"),
        ],
    )
    assert r.exit_code == 2
    assert (
        "classes but the last layer (block3_pool) has 64 units; model.include_top = false removed its top "
        "(flatten, fc1, drop1, fc2, predictions)" in r.output
    )


FULL_SIZE_TRAINED = "alexnet"  # the quickest full-size spec; the README has every one's time as shipped


@pytest.mark.slow
def test_a_full_size_spec_trains_as_shipped(request, tmp_path):
    """Opt-in (pytest -m slow): the published 227x227 network, 1000-way head, one epoch on the resized sample."""
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("a full-size network takes minutes on a CPU: run it with pytest -m slow")
    s, done = train_spec(f"zoo/{FULL_SIZE_TRAINED}.toml", tmp_path)
    assert done["epochs_run"] == 1 and np.isfinite(done["metrics"]["loss"])
    assert s["data"]["subset"] == 32 and s["model"]["input_shape"] == INPUT[FULL_SIZE_TRAINED][1:]
