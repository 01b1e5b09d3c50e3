"""model.top and model.include_top (nnctl/model_top.py): Keras's include_top as a spec key.

The expected counts are hand-computed from the layer sizes (a Dense of n -> m has n * m + m parameters)."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from helpers import ROOT, outputs_at
from nnctl import run, spec
from nnctl.cli.main import app
from nnctl.errors import SpecError

runner = CliRunner()

MLP = """
name = "mlp"
[data]
train = "d.npz"
[model]
input_shape = [6]
top = {top}
include_top = {include}
[[model.layers]]
type = "Dense"
name = "features"
units = 4
activation = "relu"
[[model.layers]]
type = "Dense"
name = "hidden"
units = 5
activation = "relu"
[[model.layers]]
type = "Dense"
name = "predictions"
units = 3
activation = "softmax"
[train]
loss = "categorical_crossentropy"
epochs = 1
"""
FULL = (6 * 4 + 4) + (4 * 5 + 5) + (5 * 3 + 3)


def mlp(tmp_path, top='["hidden", "predictions"]', include="true", y_width=3) -> str:
    rng = np.random.default_rng(0)
    y = np.eye(3)[rng.integers(0, 3, 40)] if y_width == 3 else rng.normal(size=(40, y_width))
    np.savez(tmp_path / "d.npz", x=rng.normal(size=(40, 6)).astype("float32"), y=y.astype("float32"))
    path = tmp_path / "mlp.toml"
    path.write_text(MLP.format(top=top, include=include))
    return str(path)


def check(path, *sets):
    r = runner.invoke(app, ["check", "--json", path, *(a for s in sets for a in ("--set", s))])
    return r, (json.loads(r.stdout) if r.exit_code == 0 else None)


@pytest.mark.parametrize("top", ['["hidden", "predictions"]', '"hidden"'], ids=["names", "first"])
def test_include_top_false_drops_the_top(tmp_path, top):
    path = mlp(tmp_path, top)
    _, with_top = check(path)
    assert with_top["total_params"] == FULL
    _, without = check(path, "model.include_top=false")
    assert without["total_params"] == 6 * 4 + 4
    assert [layer["name"] for layer in without["layers"]] == ["features"]


def test_the_validated_spec_lists_only_the_layers_built(tmp_path):
    s = spec.load(mlp(tmp_path), ["model.include_top=false", "train.loss=mse"])
    assert [e["name"] for e in s.model.layers] == ["features"]
    assert s.top_removed == ("hidden", "predictions")
    assert s.model.include_top is True and s.model.top is None  # validated again: the same model
    again = spec.validate(s.to_dict())
    assert [e["name"] for e in again.model.layers] == ["features"]


@pytest.mark.parametrize(
    "top, include, message",
    [
        (
            '["hidden", "predictons"]',
            "true",
            "model.top[1]: no layer named 'predictons' in model.layers; did you mean 'predictions'?",
        ),
        (
            '["features", "predictions"]',
            "true",
            "model.top: expected the model's last 2 layers in order (hidden, predictions), found features, predictions",
        ),
        (
            '["predictions", "hidden"]',
            "false",
            "model.top: expected the model's last 2 layers in order (hidden, predictions), found predictions, hidden",
        ),
        ('["predictions", "predictions"]', "true", "model.top[1]: 'predictions' is listed twice"),
        (
            '"features"',
            "false",
            "model.top: names every layer (features, hidden, predictions); include_top = false would leave no model",
        ),
        ('"fc9"', "false", "model.top: no layer named 'fc9' in model.layers"),
        ("[]", "false", "model.top: expected a list of layer names or the name of the first top layer, found []"),
        ("3", "true", "model.top: expected"),
        ('"hidden"', '"no"', "model.include_top: expected"),
    ],
)
def test_a_bad_top_is_one_clear_error(tmp_path, top, include, message):
    r, _ = check(mlp(tmp_path, top, include))
    assert r.exit_code == 2
    assert message in r.output and "Traceback" not in r.output


def test_include_top_false_needs_a_top(tmp_path):
    path = mlp(tmp_path)
    text = (tmp_path / "mlp.toml").read_text().replace('top = ["hidden", "predictions"]\n', "")
    (tmp_path / "mlp.toml").write_text(text)
    assert check(path)[0].exit_code == 0
    r, _ = check(path, "model.include_top=false")
    assert r.exit_code == 2 and "model.include_top: false needs model.top" in r.output


def test_training_a_model_without_its_top_on_labels_names_the_removed_top(tmp_path):
    r = runner.invoke(app, ["train", mlp(tmp_path), "--set", "model.include_top=false", "-o", str(tmp_path / "m.h5")])
    assert r.exit_code == 2
    assert (
        "targets have shape [3] per sample but the last layer (features) outputs [4]; model.include_top = "
        "false removed its top (hidden, predictions)" in r.output
    )
    assert not (tmp_path / "m.h5").exists()


def test_a_model_without_its_top_trains_on_targets_of_its_output_shape(tmp_path):
    """What include_top = false means for training: the features are the output, fitted to 4-wide targets."""
    s = spec.load(mlp(tmp_path, y_width=4), ["model.include_top=false", "train.loss=mse", "train.epochs=2"])
    s = outputs_at(s, str(tmp_path / "m.h5"))
    done = run.train(s)
    assert done["epochs_run"] == 2
    stored = run.stored_spec(str(tmp_path / "m.h5"), ["train.epochs=3"])  # --resume validates it again
    assert [e["name"] for e in stored.model.layers] == ["features"]
    restored = run.restore(str(tmp_path / "m.h5"))
    assert restored.model.output_shape == (4,) or list(restored.model.output_shape) == [4]


def test_the_zoo_small_variants_drop_their_tops():
    """vgg_small without its top ends at block3_pool: 3 stages of 3x3 convolutions (2, 2, 3; 16, 32, 64 filters)."""
    convs = [(3, 16), (16, 16), (16, 32), (32, 32), (32, 64), (64, 64), (64, 64)]
    r, out = check(str(ROOT / "specs" / "zoo" / "vgg_small.toml"), "model.include_top=false")
    assert r.exit_code == 0, r.output
    assert out["total_params"] == sum(9 * a * b + b for a, b in convs)
    assert out["layers"][-1]["name"] == "block3_pool"


def test_schema_documents_top_and_include_top():
    from nnctl.schema import spec_schema

    props = json.dumps(spec_schema())
    assert "include_top" in props and "the classifier top" in props


def test_the_library_raises_spec_error(tmp_path):
    with pytest.raises(SpecError, match="model.top"):
        spec.load(mlp(tmp_path, '["fc9"]'))
