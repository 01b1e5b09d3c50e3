"""The layers and activations of issue 17 from the CLI: two test specs (tests/specs_extra/) validate with the
parameter counts of Keras's weight layouts, train on the 8x8 digits, and spec mistakes exit 2 with one line."""

import json
import pathlib
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from nnctl.cli.main import app

HERE = pathlib.Path(__file__).resolve().parent / "specs_extra"
runner = CliRunner()

# Keras layouts: DepthwiseConv2D (3, 3, C, M) + C*M; SeparableConv2D (3, 3, C, 1) + (1, 1, C, F) + F;
# Conv2DTranspose (3, 3, F, C) + F; GroupNormalization gamma + beta (C each)
MOBILE_PARAMS = [
    0,
    3 * 3 * 8 + 8,
    3 * 3 * 8 * 2 + 16,
    2 * 16,
    0,
    3 * 3 * 16 + 16 * 16 + 16,
    0,
    3 * 3 * 4 * 16 + 4,
    0,
    0,
    0,
    4 * 10 + 10,
]
# AdditiveAttention: scale (D,); Attention with use_scale: one scalar
ROWS_PARAMS = [
    0,
    0,
    8 * 16 + 16,
    16 * 16 + 16,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    16,
    1,
    0,
    0,
    0,
    3 * 16 + 16 * 16 + 16,
    0,
    3 * 16 + 16,
    2 * 8 * 16 + 8,
    0,
    0,
    0,
    128 * 10 + 10,
]


@pytest.mark.parametrize(
    "name,params,last_shapes",
    [
        ("digits_mobile.toml", MOBILE_PARAMS, [[8, 8, 4], [6, 6, 4], [4], [4], [10]]),
        ("digits_rows.toml", ROWS_PARAMS, [[16, 8], [8, 16], [8, 16], [128], [10]]),
    ],
)
def test_specs_check_with_keras_parameter_counts(name, params, last_shapes):
    r = runner.invoke(app, ["check", str(HERE / name), "--json"])
    assert r.exit_code == 0, r.output
    layers = json.loads(r.stdout)["layers"]
    assert [layer["params"] for layer in layers] == params
    assert [layer["output_shape"][1:] for layer in layers[-5:]] == last_shapes


@pytest.mark.parametrize("name,floor", [("digits_mobile.toml", 0.8), ("digits_rows.toml", 0.85)])
def test_specs_train_and_evaluate(tmp_path, name, floor):
    out = tmp_path / "model.h5"
    r = runner.invoke(
        app, ["train", str(HERE / name), "--out", str(out), "--quiet", "--run-dir", str(tmp_path / "run")]
    )
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["evaluate", str(out), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["accuracy"] >= floor


@pytest.mark.parametrize(
    "old,new,field,words",
    [
        ("depth_multiplier = 2", "depth_multiplier = 2\nfilters = 3", "model.layers[2].filters", "unknown key"),
        ("depth_multiplier = 2", "depth_multiplier = 0", "model.layers[2]", "depth_multiplier must be a positive"),
        ("groups = 4", "groups = 3", "model.layers[3]", "groups"),
        ('activation = "hard_swish"', 'activation = "relu7"', "model.layers[4].activation", "relu6"),
    ],
)
def test_spec_mistakes_exit_2_with_one_line(tmp_path, old, new, field, words):
    text = (HERE / "digits_mobile.toml").read_text().replace("../../examples", str(HERE.parent.parent / "examples"))
    assert old in text
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace(old, new, 1))
    p = subprocess.run([sys.executable, "-m", "nnctl", "check", str(bad)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 2, p.stderr
    assert p.stderr.startswith("error: ") and field in p.stderr and words in p.stderr, p.stderr
    assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1
